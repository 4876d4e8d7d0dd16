"""Distortion-aware DPT decoder (Depth-Anything-v2 layout) for equirectangular feature maps.

Reassemble (per tap: 1×1 projection, resample to strides s/4, s/2, s, 2s of the input, s = the
third tap's stride) → 3×3 conv to `features` → four fusion blocks (residual conv units, ×2
upsampling) → head (3×3 conv, resize to the output size, 3×3 conv, ReLU, 1×1 conv). The resample
follows the taps' strides: a ViT's four taps at one stride p are resized ×4/×2/×1/×½ (DPT); a
convolutional encoder's taps at strides 4/8/16/32 already form the pyramid (×1 each). ERP awareness:
- every spatial conv pads the ±180° seam circularly (left/right columns wrap) and the poles by
  replication (or zeros), and every bilinear resize wraps horizontally, so a yaw roll of the
  input by a whole number of feature columns rolls the output exactly;
- latitude: `concat` appends (sin lat, cos lat) channels before the reassemble 3×3 convs and the
  head's second conv; `film` applies a learned per-row scale/shift `x·(1+γ(lat)) + β(lat)` after
  each fusion block (zero-initialised: identity at start).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DptDecoder",
    "DptHead",
    "ErpConv2d",
    "LatitudeFiLM",
    "latitude_channels",
    "wrap_resize",
]


def latitude_channels(h: int, w: int, like: Tensor) -> Tensor:
    """[1,2,h,w]: (sin lat, cos lat) at ERP pixel centres, lat = π/2 − (v+0.5)/h·π."""
    v = torch.arange(h, device=like.device, dtype=torch.float32)
    lat = math.pi / 2 - (v + 0.5) / h * math.pi  # [h]
    enc = torch.stack([torch.sin(lat), torch.cos(lat)])  # [2,h]
    return enc[None, :, :, None].expand(1, 2, h, w).to(like.dtype)


def wrap_resize(x: Tensor, size: tuple[int, int], circular: bool = True) -> Tensor:
    """Bilinear resize (align_corners=False) of x[B,C,h,w] to size; horizontally periodic if circular."""
    h, w = x.shape[-2:]
    ho, wo = size
    if (h, w) == (ho, wo):
        return x
    if not circular:
        return F.interpolate(x, size=(ho, wo), mode="bilinear", align_corners=False)
    if wo % w == 0:  # integer upscale: wrap one column each side, resize, crop (fast backward)
        s = wo // w
        x = F.pad(x, (1, 1, 0, 0), mode="circular")  # [B,C,h,w+2]
        x = F.interpolate(x, size=(ho, wo + 2 * s), mode="bilinear", align_corners=False)
        return x[..., s : s + wo]  # [B,C,ho,wo]
    if ho != h:
        x = F.interpolate(x, size=(ho, w), mode="bilinear", align_corners=False)  # [B,C,ho,w]
    if wo == w:
        return x
    # separable horizontal pass with wrap-around: source coordinate of output column j
    pos = (torch.arange(wo, device=x.device, dtype=torch.float64) + 0.5) * (w / wo) - 0.5
    left = torch.floor(pos)
    frac = (pos - left).to(x.dtype)  # [wo]
    i0 = left.long() % w
    i1 = (i0 + 1) % w
    return x[..., i0] * (1 - frac) + x[..., i1] * frac  # [B,C,ho,wo]


class ErpConv2d(nn.Conv2d):
    """Conv2d whose padding wraps columns (ERP seam) and replicates/zeros rows (poles)."""

    def __init__(self, cin, cout, kernel_size, stride=1, bias=True, circular=True, vertical="replicate"):
        super().__init__(cin, cout, kernel_size, stride=stride, padding=0, bias=bias)
        self.pad = (kernel_size - 1) // 2
        self.circular = circular
        self.vertical = vertical

    def forward(self, x: Tensor) -> Tensor:
        p = self.pad
        if p:
            if self.circular:
                x = F.pad(x, (p, p, 0, 0), mode="circular")
            else:
                x = F.pad(x, (p, p, 0, 0))
            x = F.pad(x, (0, 0, p, p), mode="replicate" if self.vertical == "replicate" else "constant")
        return super().forward(x)


class LatitudeFiLM(nn.Module):
    """x[B,C,h,w] · (1 + γ(lat)) + β(lat), γ/β from a small MLP of (sin lat, cos lat)."""

    def __init__(self, channels: int, hidden: int = 16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2, hidden), nn.GELU(), nn.Linear(hidden, 2 * channels))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        h = x.shape[-2]
        enc = latitude_channels(h, 1, x)[0, :, :, 0].t()  # [h,2]
        gamma, beta = self.mlp(enc).t().chunk(2, dim=0)  # [C,h] each
        return x * (1 + gamma[None, :, :, None]) + beta[None, :, :, None]


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int, conv_kw: dict):
        super().__init__()
        self.conv1 = ErpConv2d(features, features, 3, **conv_kw)
        self.conv2 = ErpConv2d(features, features, 3, **conv_kw)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act(self.conv1(self.act(x))))


class FusionBlock(nn.Module):
    """out = conv1x1(resize(rcu2(x + rcu1(skip)))), as DAv2's FeatureFusionBlock."""

    def __init__(self, features: int, conv_kw: dict, film: bool, has_skip: bool):
        super().__init__()
        self.rcu1 = ResidualConvUnit(features, conv_kw) if has_skip else None
        self.rcu2 = ResidualConvUnit(features, conv_kw)
        self.film = LatitudeFiLM(features) if film else None
        self.out_conv = nn.Conv2d(features, features, 1)
        self.circular = conv_kw["circular"]

    def forward(self, x: Tensor, skip: Tensor | None, size: tuple[int, int]) -> Tensor:
        if skip is not None:
            x = x + self.rcu1(skip)
        x = self.rcu2(x)
        if self.film is not None:
            x = self.film(x)
        x = wrap_resize(x, size, self.circular)
        return self.out_conv(x)


def _resample(factor: float, c: int, conv_kw: dict) -> nn.Module:
    """The reassemble resample of one tap by `factor` (×4, ×2, ×1, ×½)."""
    if factor == 4:
        return nn.ConvTranspose2d(c, c, 4, stride=4)
    if factor == 2:
        return nn.ConvTranspose2d(c, c, 2, stride=2)
    if factor == 1:
        return nn.Identity()
    if factor == 0.5:
        return ErpConv2d(c, c, 3, stride=2, **conv_kw)
    raise ValueError(f"DPT reassemble: cannot resample a tap by ×{factor:g} (taps' strides must be "
                     "all equal, or double from tap to tap)")


class DptDecoder(nn.Module):
    """Four tap maps [B,C_i,H/s_i,W/s_i] → fused features [B,features,2·h1,2·w1], (h1, w1) the
    first reassembled map (at stride s_3/4): stride p/8 for a ViT of patch p ([B,F,8gh,8gw]),
    stride 2 for a convolutional encoder with taps at 4/8/16/32.

    `in_channels`: one width for all taps (ViT embed dim) or one per tap; `strides`: each tap's
    stride (None = all equal, the ViT case)."""

    def __init__(
        self,
        in_channels: int | list[int],
        channels: list[int],
        features: int,
        circular: bool = True,
        vertical: str = "replicate",
        latitude: str = "concat",
        strides: list[int] | None = None,
    ):
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"DPT needs 4 reassemble widths, got {channels}")
        ins = [in_channels] * 4 if isinstance(in_channels, int) else list(in_channels)
        strides = list(strides) if strides is not None else [1] * 4
        if len(ins) != 4 or len(strides) != 4:
            raise ValueError(f"DPT needs 4 taps, got widths {ins} and strides {strides}")
        conv_kw = {"circular": circular, "vertical": vertical}
        self.circular = circular
        self.lat_concat = "concat" in latitude
        extra = 2 if self.lat_concat else 0
        self.project = nn.ModuleList(nn.Conv2d(cin, c, 1) for cin, c in zip(ins, channels))
        # target stride of tap i: s_2 · 2^(i-2) — ViT (all p): ×4/×2/×1/×½; conv 4/8/16/32: ×1 each
        factors = [strides[i] / (strides[2] * 2.0 ** (i - 2)) for i in range(4)]
        self.resize = nn.ModuleList(_resample(f, c, conv_kw) for f, c in zip(factors, channels))
        self.layer_rn = nn.ModuleList(
            ErpConv2d(c + extra, features, 3, bias=False, **conv_kw) for c in channels
        )
        film = "film" in latitude
        self.fusion = nn.ModuleList(
            FusionBlock(features, conv_kw, film, has_skip=i < 3) for i in range(4)
        )

    def forward(self, feats: list[Tensor]) -> Tensor:
        # feats: 4 × [B,C_i,H/s_i,W/s_i] (ViT: 4 × [B,E,gh,gw])
        layers = []
        for f, proj, rs, rn in zip(feats, self.project, self.resize, self.layer_rn):
            x = rs(proj(f))  # [B,c_i,·,·] at strides s/4, s/2, s, 2s (ViT: 4gh, 2gh, gh, gh/2 rows)
            if self.lat_concat:
                x = torch.cat([x, latitude_channels(*x.shape[-2:], x).expand(x.shape[0], -1, -1, -1)], 1)
            layers.append(rn(x))  # [B,F,·,·]
        l1, l2, l3, l4 = layers
        h1, w1 = l1.shape[-2:]
        p = self.fusion[3](l4, None, l3.shape[-2:])  # [B,F,h1/4,w1/4]
        p = self.fusion[2](p, l3, l2.shape[-2:])  # [B,F,h1/2,w1/2]
        p = self.fusion[1](p, l2, (h1, w1))  # [B,F,h1,w1]
        return self.fusion[0](p, l1, (2 * h1, 2 * w1))  # [B,F,2h1,2w1]


class DptHead(nn.Module):
    """[B,F,h,w] → raw output [B,out,H,W] (3×3 conv, resize, 3×3 conv, ReLU, 1×1 conv)."""

    def __init__(self, features: int, hidden: int, out_channels: int, circular=True,
                 vertical="replicate", latitude="concat"):
        super().__init__()
        conv_kw = {"circular": circular, "vertical": vertical}
        self.circular = circular
        self.lat_concat = "concat" in latitude
        half = max(features // 2, 1)
        self.conv1 = ErpConv2d(features, half, 3, **conv_kw)
        self.conv2 = ErpConv2d(half + (2 if self.lat_concat else 0), hidden, 3, **conv_kw)
        self.conv3 = nn.Conv2d(hidden, out_channels, 1)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        x = wrap_resize(self.conv1(x), size, self.circular)  # [B,F/2,H,W]
        if self.lat_concat:
            x = torch.cat([x, latitude_channels(*size, x).expand(x.shape[0], -1, -1, -1)], 1)
        return self.conv3(F.relu(self.conv2(x)))  # [B,out,H,W]
