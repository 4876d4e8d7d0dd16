"""Backbones behind one registry + factory (timm `create_model` style).

A backbone maps an ImageNet-normalised image `[B,3,H,W]` (H, W multiples of `patch_size`) to one
feature map per tap, `[B,out_channels[i],H/strides[i],W/strides[i]]`. A ViT's taps are transformer
blocks (0-based, prefix tokens — class and register tokens — dropped), all at stride `patch_size`;
a convolutional encoder's taps are its feature levels (strides 4/8/16/32). Three implementations:

- `TimmViT`: any timm ViT/EVA (`vit_*_patch16_dinov3`, ...) with `dynamic_img_size=True`, so
  non-square ERP inputs (H×2H) work: DINOv3 uses RoPE, learned position tables are interpolated.
- `HfViT`: transformers' `DINOv3ViTModel` / `Dinov2Model` from a config, taps read from
  `output_hidden_states` (Dinov2 interpolates its position table to any grid).
- `TimmConv`: a timm convolutional encoder (`resnet18`, `convnext_atto`, ...) with
  `features_only=True`; every padded conv and pool wraps the ±180° seam (circular columns, zero
  rows at the poles), so rolling the input by a multiple of the deepest stride rolls every feature
  map. `patch_size` is the deepest tap's stride (inputs are rounded to its multiples). Small
  encoders learn from scratch on CPU, which the ViTs do not.

Weights: `pretrained=""` → random init; a local file (`.safetensors`, or a `.pth/.bin` state dict
read with `weights_only=True`) or HF folder → those weights; anything else is taken as a hub id and
fails loudly when the hub cannot be reached (never a silent random fallback).
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from dap_model.compat import ensure_torchvision_importable, import_timm
from dap_model.errors import ConfigError

__all__ = [
    "Backbone",
    "BackboneSpec",
    "HfViT",
    "TimmViT",
    "available_backbones",
    "build_backbone",
    "register_backbone",
]


class Backbone(nn.Module):
    """Common interface: `forward(x[B,3,H,W]) -> list[Tensor[B,out_channels[i],H/strides[i],W/strides[i]]]`,
    one per tap. ViTs: `out_channels` = embed_dim and `strides` = patch_size for every tap."""

    embed_dim: int  # width of the last tap
    patch_size: int  # inputs are multiples of it
    num_layers: int
    taps: list[int]

    @property
    def out_channels(self) -> list[int]:
        return [self.embed_dim] * len(self.taps)

    @property
    def strides(self) -> list[int]:
        return [self.patch_size] * len(self.taps)

    def arch(self) -> dict[str, Any]:
        """JSON-serialisable description that rebuilds this architecture without weights."""
        raise NotImplementedError

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        raise NotImplementedError


def _check_taps(taps: list[int], num_layers: int, name: str) -> list[int]:
    taps = [int(t) for t in taps]
    if not taps:
        raise ConfigError(f"model.taps: at least one tap is needed for backbone {name!r}")
    bad = [t for t in taps if not 0 <= t < num_layers]
    if bad:
        raise ConfigError(
            f"model.taps {taps}: {bad} outside 0..{num_layers - 1} for backbone {name!r}"
        )
    return taps


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    return sd


class TimmViT(Backbone):
    def __init__(
        self,
        model_name: str,
        taps: list[int],
        kwargs: dict[str, Any],
        pretrained: str = "",
        tap_norm: bool = True,
    ):
        super().__init__()
        timm = import_timm()
        kwargs = {"num_classes": 0, "dynamic_img_size": True, **kwargs}
        self._model_name, self._kwargs = model_name, dict(kwargs)
        if not pretrained:
            self.vit = timm.create_model(model_name, pretrained=False, **kwargs)
        elif Path(pretrained).exists():
            self.vit = timm.create_model(model_name, pretrained=False, **kwargs)
            self._load_local(Path(pretrained))
        else:
            try:
                self.vit = timm.create_model(
                    model_name, pretrained=True, pretrained_cfg_overlay={"hf_hub_id": pretrained},
                    **kwargs,
                )
            except Exception as err:  # hub unreachable / unknown id: say which and why
                raise ConfigError(
                    f"model.pretrained {pretrained!r}: not a local file/folder and the hub "
                    f"download failed ({type(err).__name__}: {err})"
                ) from err
        self.embed_dim = int(self.vit.embed_dim)
        ps = self.vit.patch_embed.patch_size
        self.patch_size = int(ps[0] if isinstance(ps, (tuple, list)) else ps)
        self.num_layers = len(self.vit.blocks)
        self.taps = _check_taps(taps, self.num_layers, model_name)
        self.tap_norm = tap_norm

    def _load_local(self, path: Path) -> None:
        if path.is_dir():
            files = sorted(path.glob("*.safetensors"))
            preferred = [f for f in files if f.name == "model.safetensors"]
            if not files:
                raise ConfigError(f"model.pretrained {str(path)!r}: no *.safetensors inside")
            path = (preferred or files)[0]
        sd = _read_state_dict(path)
        # the model family's own converter (e.g. Meta-format DINOv3 → timm keys), as timm does
        filter_fn = getattr(sys.modules[type(self.vit).__module__], "checkpoint_filter_fn", None)
        if filter_fn is not None:
            sd = filter_fn(sd, self.vit)
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
        try:
            missing, unexpected = self.vit.load_state_dict(sd, strict=False)
        except RuntimeError as err:  # shape mismatches
            raise ConfigError(
                f"model.pretrained {str(path)!r}: does not match {self._model_name!r} "
                f"with {self._kwargs} ({str(err).splitlines()[1:3]})"
            ) from err
        missing = [k for k in missing if not k.startswith("head.")]
        if missing or unexpected:
            raise ConfigError(
                f"model.pretrained {str(path)!r}: does not match {self._model_name!r} "
                f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
            )

    def forward(self, x: Tensor) -> list[Tensor]:
        # x: [B,3,H,W] → per tap [B,C,H/p,W/p]
        return list(
            self.vit.forward_intermediates(
                x, indices=self.taps, norm=self.tap_norm, output_fmt="NCHW",
                intermediates_only=True,
            )
        )

    def arch(self) -> dict[str, Any]:
        return {"kind": "timm", "model_name": self._model_name, "kwargs": self._kwargs}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.vit.set_grad_checkpointing(enable)


class _SeamPad(nn.Module):
    """A conv or pool whose horizontal padding wraps the ERP seam; its own padding stays on rows only."""

    def __init__(self, layer: nn.Module, pad_w: int):
        super().__init__()
        self.layer = layer
        self.pad_w = pad_w

    def forward(self, x: Tensor) -> Tensor:
        import torch.nn.functional as F

        return self.layer(F.pad(x, (self.pad_w, self.pad_w, 0, 0), mode="circular"))  # [B,C,H,W+2p] → layer


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def wrap_seam(module: nn.Module, name: str) -> int:
    """Make every padded `Conv2d`/`MaxPool2d`/`AvgPool2d` inside `module` pad columns circularly
    (in place). Returns how many layers were wrapped; raises ConfigError for a padded layer it
    cannot wrap (dynamic 'same' padding, non-zero padding modes)."""
    wrapped = 0
    for child_name, child in list(module.named_children()):
        if isinstance(child, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            pad = child.padding
            if isinstance(pad, str) or (isinstance(child, nn.Conv2d) and child.padding_mode != "zeros") \
                    or type(child) not in (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d):
                if pad not in (0, (0, 0), "valid") or type(child).__name__.endswith("Same"):
                    raise ConfigError(f"model.backbone {name!r}: layer {child_name} ({type(child).__name__}, "
                                      f"padding {pad!r}) cannot wrap the ERP seam")
                continue
            ph, pw = _pair(pad)
            if pw:
                child.padding = (ph, 0)
                setattr(module, child_name, _SeamPad(child, pw))
                wrapped += 1
        else:
            wrapped += wrap_seam(child, name)
    return wrapped


class TimmConv(Backbone):
    """timm convolutional encoder, `features_only=True`; taps = feature-level indices (e.g.
    resnet: 0..4 at strides 2..32, convnext: 0..3 at strides 4..32). `tap_norm` does not apply."""

    def __init__(self, model_name: str, taps: list[int], kwargs: dict[str, Any], pretrained: str = "",
                 circular: bool = True):
        super().__init__()
        timm = import_timm()
        self._model_name, self._kwargs = model_name, dict(kwargs)
        kw = {"features_only": True, **kwargs}
        try:
            if not pretrained:
                self.net = timm.create_model(model_name, pretrained=False, **kw)
            else:
                key = "file" if Path(pretrained).exists() else "hf_hub_id"
                self.net = timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay={key: pretrained}, **kw)
        except ConfigError:
            raise
        except Exception as err:
            raise ConfigError(f"model.backbone {model_name!r} (pretrained {pretrained!r}, {kwargs}): "
                              f"{type(err).__name__}: {err}") from err
        info = self.net.feature_info
        self.num_layers = len(info)
        self.taps = _check_taps(taps, self.num_layers, model_name)
        self._channels = [int(info.channels()[t]) for t in self.taps]
        self._strides = [int(info.reduction()[t]) for t in self.taps]
        self.embed_dim = self._channels[-1]
        self.patch_size = max(self._strides)
        self.circular = circular
        if circular:
            wrap_seam(self.net, model_name)

    @property
    def out_channels(self) -> list[int]:
        return list(self._channels)

    @property
    def strides(self) -> list[int]:
        return list(self._strides)

    def forward(self, x: Tensor) -> list[Tensor]:
        # x: [B,3,H,W] → per tap [B,C_i,H/s_i,W/s_i]
        feats = self.net(x)
        return [feats[t] for t in self.taps]

    def arch(self) -> dict[str, Any]:
        return {"kind": "timm_conv", "model_name": self._model_name, "kwargs": self._kwargs,
                "circular": self.circular}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.net.set_grad_checkpointing(enable)


def _hf_classes(family: str):
    ensure_torchvision_importable()
    if family == "dinov3":
        from transformers.models.dinov3_vit import DINOv3ViTConfig, DINOv3ViTModel

        return DINOv3ViTConfig, DINOv3ViTModel
    if family == "dinov2":
        from transformers import Dinov2Config, Dinov2Model

        return Dinov2Config, Dinov2Model
    raise ConfigError(f"unknown transformers backbone family {family!r}")


class HfViT(Backbone):
    def __init__(
        self,
        family: str,
        taps: list[int],
        config: dict[str, Any],
        pretrained: str = "",
        tap_norm: bool = True,
    ):
        super().__init__()
        cfg_cls, model_cls = _hf_classes(family)
        self._family = family
        if pretrained:
            try:
                self.vit = model_cls.from_pretrained(pretrained, trust_remote_code=False)
            except Exception as err:
                raise ConfigError(
                    f"model.pretrained {pretrained!r}: cannot load a {model_cls.__name__} "
                    f"({type(err).__name__}: {err})"
                ) from err
        else:
            self.vit = model_cls(cfg_cls(**config))
        c = self.vit.config
        self.embed_dim = int(c.hidden_size)
        self.patch_size = int(c.patch_size)
        self.num_layers = int(c.num_hidden_layers)
        self.num_prefix = 1 + int(getattr(c, "num_register_tokens", 0) or 0)
        self.taps = _check_taps(taps, self.num_layers, f"hf_{family}")
        self.tap_norm = tap_norm
        self._norm_attr = "norm" if family == "dinov3" else "layernorm"  # not re-registered

    def forward(self, x: Tensor) -> list[Tensor]:
        b, _, h, w = x.shape
        gh, gw = h // self.patch_size, w // self.patch_size
        hidden = self.vit(pixel_values=x, output_hidden_states=True).hidden_states
        feats = []
        for t in self.taps:
            tok = hidden[t + 1]  # [B, prefix + gh*gw, C]; hidden[0] is the embedding output
            if self.tap_norm:
                tok = getattr(self.vit, self._norm_attr)(tok)
            tok = tok[:, self.num_prefix :]  # [B, gh*gw, C]
            feats.append(tok.transpose(1, 2).reshape(b, self.embed_dim, gh, gw))
        return feats

    def arch(self) -> dict[str, Any]:
        return {"kind": "hf", "family": self._family, "config": self.vit.config.to_dict()}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            self.vit.gradient_checkpointing_enable()
        else:
            self.vit.gradient_checkpointing_disable()


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    builder: Callable[..., Backbone]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    pads_seam: bool = False  # the builder takes `circular` (a convolutional encoder's padding)


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(name: str, builder: Callable[..., Backbone], description: str = "", *,
                      pads_seam: bool = False, **defaults):
    """`builder(params, *, taps, pretrained, tap_norm, arch)`, plus `circular` when `pads_seam`."""
    if name in _REGISTRY:
        raise ValueError(f"backbone {name!r} registered twice")
    _REGISTRY[name] = BackboneSpec(name, builder, dict(defaults), description, pads_seam)


def available_backbones() -> list[str]:
    return sorted(_REGISTRY)


def build_backbone(
    name: str,
    taps: list[int],
    pretrained: str = "",
    overrides: dict[str, Any] | None = None,
    tap_norm: bool = True,
    arch: dict[str, Any] | None = None,
    circular: bool = True,
) -> Backbone:
    """Factory. `overrides` update the registered architecture (timm kwargs / HF config fields);
    `arch` (from `Backbone.arch()`, stored in checkpoints) rebuilds an exact architecture;
    `circular`: convolutional encoders wrap the ERP seam (ViTs have no padding to wrap)."""
    if name not in _REGISTRY:
        raise ConfigError(f"model.backbone {name!r} unknown; available: {', '.join(available_backbones())}")
    spec = _REGISTRY[name]
    params = {**copy.deepcopy(spec.defaults), **(overrides or {})}
    seam = {"circular": circular} if spec.pads_seam else {}
    return spec.builder(params, taps=taps, pretrained=pretrained, tap_norm=tap_norm, arch=arch, **seam)


def _timm_builder(model_name: str):
    def build(params, *, taps, pretrained, tap_norm, arch):
        if arch is not None:
            params = {k: v for k, v in arch["kwargs"].items()}
        return TimmViT(model_name, taps, params, pretrained=pretrained, tap_norm=tap_norm)

    return build


def _timm_conv_builder(model_name: str):
    def build(params, *, taps, pretrained, tap_norm, arch, circular):
        if arch is not None:
            return TimmConv(model_name, taps, dict(arch["kwargs"]), circular=arch["circular"])
        return TimmConv(model_name, taps, params, pretrained=pretrained, circular=circular)

    return build


def _hf_builder(family: str):
    def build(params, *, taps, pretrained, tap_norm, arch):
        if arch is not None:
            config = {k: v for k, v in arch["config"].items() if k not in ("transformers_version",)}
            return HfViT(family, taps, config, pretrained="", tap_norm=tap_norm)
        return HfViT(family, taps, params, pretrained=pretrained, tap_norm=tap_norm)

    return build


# timm DINOv3 ViTs (RoPE, 4 register tokens, patch 16). The real sizes take pretrained weights;
# `vit_tiny`/`vit_test` are the same architecture shrunk for CPU profiles and unit tests.
for _name in ("vit_small_patch16_dinov3", "vit_base_patch16_dinov3", "vit_large_patch16_dinov3"):
    register_backbone(_name, _timm_builder(_name), f"timm {_name}")
register_backbone(
    "vit_tiny_patch16_dinov3", _timm_builder("vit_small_patch16_dinov3"),
    "timm DINOv3 ViT shrunk to embed 128, depth 6, 4 heads (CPU-trainable)",
    embed_dim=128, depth=6, num_heads=4,
)
register_backbone(
    "vit_test_dinov3", _timm_builder("vit_small_patch16_dinov3"),
    "timm DINOv3 ViT shrunk to embed 32, depth 4, 2 heads (unit tests)",
    embed_dim=32, depth=4, num_heads=2,
)
# transformers DINOv3 / DINOv2 from configs (defaults = the ViT-S/16 and ViT-S/14 releases).
register_backbone(
    "hf_dinov3_vits16", _hf_builder("dinov3"), "transformers DINOv3ViTModel, ViT-S/16",
    hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
    num_register_tokens=4, patch_size=16,
)
register_backbone(
    "hf_dinov3_vitl16", _hf_builder("dinov3"), "transformers DINOv3ViTModel, ViT-L/16",
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
    num_register_tokens=4, patch_size=16,
)
register_backbone(
    "hf_dinov2_vits14", _hf_builder("dinov2"), "transformers Dinov2Model, ViT-S/14",
    hidden_size=384, num_hidden_layers=12, num_attention_heads=6, patch_size=14, image_size=518,
)
register_backbone(
    "hf_dinov2_vitl14", _hf_builder("dinov2"), "transformers Dinov2Model, ViT-L/14",
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, patch_size=14, image_size=518,
)
# timm convolutional encoders (random init unless model.pretrained): from-scratch CPU training.
# backbone_overrides take timm kwargs; model.circular_padding decides the seam padding.
for _name, _desc in (
    ("resnet18", "timm ResNet-18, 11M params, taps 1-4 at strides 4/8/16/32"),
    ("resnet26d", "timm ResNet-26-D (deep stem, avg-pool downsampling), taps 1-4"),
    ("convnext_atto", "timm ConvNeXt-atto, 3.4M params, taps 0-3 at strides 4/8/16/32"),
    ("efficientnet_b0", "timm EfficientNet-B0, taps 1-4 at strides 4/8/16/32"),
):
    register_backbone(_name, _timm_conv_builder(_name), _desc, pads_seam=True)
register_backbone(
    "resnet_test", _timm_conv_builder("resnet18"),
    "timm ResNet-18 shrunk to one block per stage, widths 8/16/32/64 (unit tests)", pads_seam=True,
    layers=[1, 1, 1, 1], channels=[8, 16, 32, 64], stem_width=8,
)
