"""PatchGAN depth-quality discriminator conditioned on the RGB panorama.

Input: concat(ImageNet-normalised rgb [B,3,H,W], log-depth mapped to [-1,1] over
`depth_range_m` [B,1,H,W], validity [B,1,H,W]) → `n_layers` stride-2 4×4 convs (circular
horizontal padding, channels base·2^i capped at 8·base, norm, LeakyReLU 0.2) → one stride-1 4×4
conv to per-patch logits [B,1,h,w]. `score` = mean sigmoid of the patch logits, per image [B]:
"how real this depth looks for this image" — the curation ranking.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dap_model.config import DiscriminatorConfig

__all__ = ["PatchDiscriminator", "build_discriminator", "discriminator_loss", "generator_loss"]

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class _PadConv(nn.Module):
    """4×4 conv with 1-pixel padding: circular across the seam, replicate at the poles."""

    def __init__(self, cin: int, cout: int, stride: int, circular: bool, spectral: bool):
        super().__init__()
        conv = nn.Conv2d(cin, cout, 4, stride=stride, padding=0)
        self.conv = nn.utils.parametrizations.spectral_norm(conv) if spectral else conv
        self.circular = circular

    def forward(self, x: Tensor) -> Tensor:
        # stride 2: pad 1 each side → out = in/2; stride 1: pad (1,2) → out = in
        right = 1 if self.conv.stride[0] == 2 else 2
        x = F.pad(x, (1, right, 0, 0), mode="circular" if self.circular else "constant")
        x = F.pad(x, (0, 0, 1, right), mode="replicate")
        return self.conv(x)


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "group":
        return nn.GroupNorm(min(8, ch), ch)
    return nn.Identity()


class PatchDiscriminator(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = cfg.model_copy(deep=True)
        lo, hi = cfg.depth_range_m
        if not 0 < lo < hi:
            raise ValueError(f"discriminator.depth_range_m must be 0 < min < max, got {cfg.depth_range_m}")
        layers: list[nn.Module] = []
        cin, base = 5, cfg.base_channels
        for i in range(cfg.n_layers):
            cout = base * min(2**i, 8)
            layers.append(_PadConv(cin, cout, 2, cfg.circular_padding, cfg.spectral_norm))
            if i > 0:
                layers.append(_norm(cfg.norm, cout))
            layers.append(nn.LeakyReLU(0.2))
            cin = cout
        layers.append(_PadConv(cin, 1, 1, cfg.circular_padding, cfg.spectral_norm))
        self.net = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def inputs(self, rgb: Tensor, depth: Tensor) -> Tensor:
        """[B,5,H,W]: normalised rgb, log-depth in [-1,1] (0 where invalid), validity."""
        lo, hi = self.cfg.depth_range_m
        valid = torch.isfinite(depth) & (depth > 0)
        d = torch.where(valid, depth, torch.ones_like(depth)).clamp(lo, hi)
        logd = 2 * (torch.log(d) - math.log(lo)) / (math.log(hi) - math.log(lo)) - 1  # [B,1,H,W]
        logd = torch.where(valid, logd, torch.zeros_like(logd))
        return torch.cat([(rgb - self.mean) / self.std, logd, valid.to(rgb.dtype)], 1)

    def forward(self, rgb: Tensor, depth: Tensor) -> Tensor:
        """rgb [B,3,H,W] in [0,1], depth [B,1,H,W] metres → patch logits [B,1,H/2^n,W/2^n]."""
        return self.net(self.inputs(rgb, depth))

    @torch.no_grad()
    def score(self, rgb: Tensor, depth: Tensor) -> Tensor:
        """Per-image realism score in (0,1): mean sigmoid of the patch logits, [B]."""
        return torch.sigmoid(self(rgb, depth)).flatten(1).mean(1)


def build_discriminator(cfg: DiscriminatorConfig) -> PatchDiscriminator:
    return PatchDiscriminator(cfg)


def discriminator_loss(d_real: Tensor, d_fake: Tensor, kind: str = "hinge") -> Tensor:
    """hinge: E[relu(1−D(real))] + E[relu(1+D(fake))]; bce: BCE(real→1) + BCE(fake→0)."""
    if kind == "hinge":
        return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
            F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
    raise ValueError(f"unknown GAN loss {kind!r} (hinge | bce)")


def generator_loss(d_fake: Tensor, kind: str = "hinge") -> Tensor:
    """hinge: −E[D(fake)]; bce: BCE(fake→1) (non-saturating)."""
    if kind == "hinge":
        return -d_fake.mean()
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
    raise ValueError(f"unknown GAN loss {kind!r} (hinge | bce)")
