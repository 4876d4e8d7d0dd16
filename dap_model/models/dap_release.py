"""DAP's released network (`model.pth` of the DAP release), rebuilt on the project's parts.

The release file holds DAP's module state dict (optionally under DataParallel's `module.`):
- `core.pretrained.model.*`: Meta's DINOv3 ViT in Meta's naming → timm's `vit_*_patch16_dinov3_qkvb`
  through timm's own converter (`eva.checkpoint_filter_fn`: storage_tokens → reg_token,
  ls1/ls2.gamma → gamma_1/2, qkv.bias → q_bias + v_bias with the key bias fixed at 0, which is
  what the release's `bias_mask` buffer does; `rope_embed.periods` is recomputed by timm and
  checked against the file; `mask_token` is pre-training only);
- `core.pretrained.blocks.*`: the same tensors again under a second name (checked, not stored);
- `core.pretrained.norm.*`: the adapter's extra LayerNorm;
- `core.depth_head.*`, `core.mask_head.*`: two Depth-Anything-V2 DPT heads, kept under DAP's names.

Forward (`rgb` [B,3,H,W] in [0,1]): ImageNet normalisation; DINOv3 taps (final norm, patch tokens
[B,N,C]); the adapter's two quirks (extra LayerNorm; first patch token dropped and the N−1 tokens
resized back to N along the token axis before the row-major [B,C,h,w] layout); both heads
(sigmoid outputs). `depth` = depth head × `max_depth_m` (100: the release's unit of 100 m),
`mask_logits` = −(mask head pre-sigmoid), i.e. the logit of "within range", so the project's
losses train it like any DapModel. DAP's mask rule: depth where 1 − pred_mask > 0.5, else
`max_depth_m` (beyond range = 100 m).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dap_model.compat import import_timm
from dap_model.config import ModelConfig
from dap_model.errors import ConfigError, InputError
from dap_model.models.backbones import Backbone, _check_taps, register_backbone
from dap_model.models.dap import DapModel

__all__ = [
    "DapReleaseModel",
    "build_release_model",
    "is_release_file",
    "is_release_state_dict",
    "load_release",
    "read_release",
    "release_layout",
    "release_model_config",
    "release_to_state_dict",
    "strip_module_prefix",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREFIX = "core."
BACKBONE = "core.pretrained.model."
ALIAS = "core.pretrained.blocks."
ADAPTER_NORM = "core.pretrained.norm."
HEADS = {"core.depth_head.": "depth_head.", "core.mask_head.": "mask_head."}
# embed dim → (registry backbone, timm model, depth, heads, taps) as in DAP / Depth-Anything-V2
SIZES: dict[int, tuple[str, str, int, int, list[int]]] = {
    384: ("dap_release_vits16", "vit_small_patch16_dinov3_qkvb", 12, 6, [2, 5, 8, 11]),
    768: ("dap_release_vitb16", "vit_base_patch16_dinov3_qkvb", 12, 12, [2, 5, 8, 11]),
    1024: ("dap_release_vitl16", "vit_large_patch16_dinov3_qkvb", 24, 16, [4, 11, 17, 23]),
}
HEAD_HIDDEN = 32  # Depth-Anything-V2's head_features_2
MAX_DEPTH_M = 100.0  # the release's depth unit: pred_depth 1.0 = 100 m


class ReleaseBackbone(Backbone):
    """timm DINOv3 (Meta's ViT with key-bias-free qkv) + the DAP adapter: taps [B,C,h,w]."""

    def __init__(self, model_name: str, taps: list[int], kwargs: dict[str, Any] | None = None):
        super().__init__()
        timm = import_timm()
        self._model_name, self._kwargs = model_name, dict(kwargs or {})
        self.vit = timm.create_model(model_name, pretrained=False, num_classes=0, dynamic_img_size=True,
                                     **self._kwargs)
        self.embed_dim = int(self.vit.embed_dim)
        self.patch_size = 16
        self.num_layers = len(self.vit.blocks)
        self.taps = _check_taps(taps, self.num_layers, model_name)
        self.norm = nn.LayerNorm(self.embed_dim)  # core.pretrained.norm: the adapter's extra norm

    def forward(self, x: Tensor) -> list[Tensor]:
        # x: [B,3,H,W], H and W multiples of 16 → per tap [B,C,h,w], h = H/16, w = W/16
        b, _, hh, ww = x.shape
        h, w = hh // self.patch_size, ww // self.patch_size
        tokens = self.vit.forward_intermediates(x, indices=self.taps, norm=True, output_fmt="NLC",
                                                intermediates_only=True, stop_early=True)  # 4 × [B,N,C]
        out = []
        for t in tokens:
            t = self.norm(t)  # quirk 1: a second LayerNorm
            n = t.shape[1]
            t = t[:, 1:].transpose(1, 2).unsqueeze(-1)  # quirk 2: [B,C,N-1,1], first patch token dropped
            t = F.interpolate(t, size=(n, 1), mode="bilinear", align_corners=False)  # [B,C,N,1]
            out.append(t.reshape(b, self.embed_dim, h, w))  # row-major [B,C,h,w]
        return out

    def arch(self) -> dict[str, Any]:
        return {"kind": "dap_release", "model_name": self._model_name, "kwargs": self._kwargs}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.vit.set_grad_checkpointing(enable)


def _release_backbone_builder(model_name: str):
    def build(params, *, taps, pretrained, tap_norm, arch):
        if pretrained:
            raise ConfigError(f"backbone {model_name!r}: weights come from the release file (train.init_from, "
                              "dap convert), not model.pretrained")
        if not tap_norm:
            raise ConfigError("DAP's released network taps after the backbone's final norm; model.tap_norm must be true")
        kwargs = dict(arch["kwargs"]) if arch is not None else dict(params)
        return ReleaseBackbone(model_name, taps, kwargs)

    return build


for _dim, (_name, _timm, _depth, _heads, _taps) in SIZES.items():
    register_backbone(_name, _release_backbone_builder(_timm), f"DAP release backbone: timm {_timm} + DAP adapter")


class ResidualConvUnit(nn.Module):
    """x + conv2(ReLU(conv1(ReLU(x)))), 3×3 convs with bias (DAv2, no batch norm)."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """path (+ resConfUnit1(lateral)) → resConfUnit2 → bilinear resize (align_corners) → out_conv 1×1."""

    def __init__(self, features: int):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: Tensor, lateral: Tensor | None = None, size: tuple[int, int] | None = None) -> Tensor:
        if lateral is not None:
            x = x + self.resConfUnit1(lateral)
        x = self.resConfUnit2(x)
        size = size or (2 * x.shape[-2], 2 * x.shape[-1])
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class ReleaseDptHead(nn.Module):
    """Depth-Anything-V2's DPT head under its own names; `forward` returns the pre-sigmoid map."""

    def __init__(self, embed_dim: int, channels: list[int], features: int, hidden: int = HEAD_HIDDEN):
        super().__init__()
        if len(channels) != 4:
            raise ConfigError(f"model.decoder_channels: the DPT head needs 4 widths, got {channels}")
        self.projects = nn.ModuleList(nn.Conv2d(embed_dim, c, 1) for c in channels)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(channels[0], channels[0], 4, stride=4),  # ×4
            nn.ConvTranspose2d(channels[1], channels[1], 2, stride=2),  # ×2
            nn.Identity(),  # ×1
            nn.Conv2d(channels[3], channels[3], 3, stride=2, padding=1),  # ×½
        ])
        s = nn.Module()
        for i, c in enumerate(channels, 1):
            setattr(s, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(s, f"refinenet{i}", FeatureFusionBlock(features))
        s.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        s.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, hidden, 3, padding=1), nn.ReLU(True), nn.Conv2d(hidden, 1, 1), nn.Sigmoid()
        )
        self.scratch = s

    def forward(self, feats: list[Tensor], size: tuple[int, int]) -> Tensor:
        # feats: 4 × [B,C,h,w] → [B,1,*size] pre-sigmoid
        s = self.scratch
        layers = [rs(proj(f)) for f, proj, rs in zip(feats, self.projects, self.resize_layers)]  # 4h,2h,h,h/2
        l1, l2, l3, l4 = (getattr(s, f"layer{i}_rn")(x) for i, x in enumerate(layers, 1))  # [B,F,·,·]
        p = s.refinenet4(l4, size=l3.shape[-2:])
        p = s.refinenet3(p, l3, size=l2.shape[-2:])
        p = s.refinenet2(p, l2, size=l1.shape[-2:])
        p = s.refinenet1(p, l1)  # [B,F,8h,8w]
        x = F.interpolate(s.output_conv1(p), size=tuple(size), mode="bilinear", align_corners=True)  # [B,F/2,H,W]
        return s.output_conv2[:3](x)  # [B,1,H,W]; output_conv2[3] is the sigmoid


def _check_release_config(cfg: ModelConfig) -> None:
    bad = {k: getattr(cfg, k) for k, v in (("shared_decoder", False), ("circular_padding", False),
                                             ("vertical_padding", "zeros"), ("latitude_encoding", "none"))
           if getattr(cfg, k) != v}
    if len(cfg.mask_ranges_m) != 1:
        bad["mask_ranges_m"] = cfg.mask_ranges_m
    if bad:
        raise ConfigError(f"model.architecture=dap_release is DAP's exact network; these knobs do not fit it: {bad}")


class DapReleaseModel(DapModel):
    """DAP's released network with `DapModel`'s interface (forward dict, predict, param groups);
    its own parts replace DapModel's decoders."""

    native_resolution = True  # inference at the input's own size (rounded to 16) unless eval.height is set

    def __init__(self, cfg: ModelConfig, backbone: ReleaseBackbone):
        nn.Module.__init__(self)  # DapModel's parts (ERP decoders) are not built
        _check_release_config(cfg)
        self.cfg = cfg.model_copy(deep=True)
        self.backbone = backbone
        self.mask_ranges_m = [float(cfg.mask_ranges_m[0])]
        ch, feat = list(cfg.decoder_channels), cfg.decoder_features
        self.depth_head = ReleaseDptHead(backbone.embed_dim, ch, feat, cfg.head_hidden)
        self.mask_head = ReleaseDptHead(backbone.embed_dim, ch, feat, cfg.head_hidden)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if cfg.grad_checkpointing:
            backbone.set_grad_checkpointing(True)

    def forward(self, rgb: Tensor) -> dict[str, Tensor]:
        if rgb.ndim != 4 or rgb.shape[1] != 3:
            raise InputError(f"DapReleaseModel expects rgb [B,3,H,W], got {tuple(rgb.shape)}")
        h, w = rgb.shape[-2:]
        x = (rgb - self.mean) / self.std  # [B,3,H,W]
        bh, bw = self.backbone_size(h, w)
        if (bh, bw) != (h, w):
            x = F.interpolate(x, size=(bh, bw), mode="bilinear", align_corners=False)
        feats = self.backbone(x)  # 4 × [B,C,bh/16,bw/16]
        depth_norm = torch.sigmoid(self.depth_head(feats, (h, w))).clamp_min(0)  # [B,1,H,W] pred_depth
        mask_logits = -self.mask_head(feats, (h, w))  # [B,1,H,W] logit of 1 − pred_mask
        return {"depth": depth_norm * self.cfg.max_depth_m, "depth_norm": depth_norm, "mask_logits": mask_logits}

    def in_range(self, out: dict[str, Tensor]) -> Tensor:
        """[B,1,H,W] bool, DAP's rule: 1 − pred_mask > 0.5."""
        return (1 - torch.sigmoid(-out["mask_logits"])) > 0.5

    def apply_mask_rule(self, out: dict[str, Tensor]) -> Tensor:
        """[B,1,H,W] metres; `max_depth_m` (100 m, DAP's value) where the pixel is beyond range."""
        return torch.where(self.in_range(out), out["depth"], torch.full_like(out["depth"], self.cfg.max_depth_m))


def build_release_model(cfg: ModelConfig, backbone_arch: dict[str, Any] | None = None) -> DapReleaseModel:
    """The release architecture that `cfg` describes (random weights; load a state dict next)."""
    from dap_model.models.backbones import build_backbone

    backbone = build_backbone(cfg.backbone, taps=list(cfg.taps), pretrained=cfg.pretrained,
                              overrides=cfg.backbone_overrides, tap_norm=cfg.tap_norm, arch=backbone_arch)
    if not isinstance(backbone, ReleaseBackbone):
        names = ", ".join(v[0] for v in SIZES.values())
        raise ConfigError(f"model.architecture=dap_release needs a release backbone ({names}), not {cfg.backbone!r}")
    return DapReleaseModel(cfg, backbone)


# ------------------------------------------------------------------------------------------------
# the release file


def strip_module_prefix(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop DataParallel's `module.` from every key that carries it."""
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def is_release_state_dict(sd: dict[str, Any]) -> bool:
    return any(k.startswith(BACKBONE) or k.startswith("module." + BACKBONE) for k in sd)


def read_release(path: str | Path) -> dict[str, Tensor]:
    """The release's state dict (`torch.load(weights_only=True)`), `module.` prefix removed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such release file")
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputError(f"{path}: not a readable state dict ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    if not isinstance(sd, dict) or not is_release_state_dict(sd):
        raise InputError(f"{path}: not a DAP release state dict (no {BACKBONE}* keys)")
    return strip_module_prefix(sd)


def is_release_file(path: str | Path) -> bool:
    """True for a `.pth/.pt/.bin` file whose state dict has DAP's `core.pretrained.model.*` keys."""
    path = Path(path)
    if not path.is_file() or path.suffix == ".safetensors":
        return False
    try:
        sd = torch.load(str(path), map_location="meta", weights_only=True)
    except Exception:
        return False
    return isinstance(sd, dict) and is_release_state_dict(sd)


def release_model_config(sd: dict[str, Tensor], source: str = "release") -> ModelConfig:
    """The `ModelConfig` of the network a release state dict holds (size read from its shapes)."""
    def shape(key: str) -> tuple[int, ...]:
        if key not in sd:
            raise InputError(f"{source}: missing key {key!r}")
        return tuple(sd[key].shape)

    dim = shape(BACKBONE + "cls_token")[-1]
    if dim not in SIZES:
        raise InputError(f"{source}: embed dim {dim} is none of the release sizes {sorted(SIZES)} (ViT-S/B/L)")
    name, _, depth, _, taps = SIZES[dim]
    blocks = {int(m.group(1)) for k in sd if (m := re.match(re.escape(BACKBONE) + r"blocks\.(\d+)\.", k))}
    if len(blocks) != depth:
        raise InputError(f"{source}: {len(blocks)} backbone blocks, the embed-{dim} release has {depth}")
    channels = [shape(f"core.depth_head.projects.{i}.weight")[0] for i in range(4)]
    features = shape("core.depth_head.scratch.layer1_rn.weight")[0]
    hidden = shape("core.depth_head.scratch.output_conv2.0.weight")[0]
    return ModelConfig(
        architecture="dap_release", backbone=name, taps=taps, tap_norm=True, max_depth_m=MAX_DEPTH_M,
        decoder_features=features, decoder_channels=channels, head_hidden=hidden, shared_decoder=False,
        circular_padding=False, vertical_padding="zeros", latitude_encoding="none",
        mask_ranges_m=[MAX_DEPTH_M], mask_threshold=0.5,
    )


def _to_release_name(key: str) -> str:
    """timm/project name of a backbone tensor → its Meta/DAP name."""
    k = key.replace("reg_token", "storage_tokens").replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
    return k


def release_layout(model: DapReleaseModel) -> dict[str, tuple[int, ...]]:
    """Every key DAP's module saves for this architecture, with its shape, in DAP's order."""
    vit = model.backbone.vit
    dim, depth = model.backbone.embed_dim, model.backbone.num_layers
    head_dim = dim // vit.blocks[0].attn.num_heads
    out: dict[str, tuple[int, ...]] = {
        BACKBONE + "cls_token": (1, 1, dim),
        BACKBONE + "storage_tokens": tuple(vit.reg_token.shape),
        BACKBONE + "mask_token": (1, dim),
        BACKBONE + "patch_embed.proj.weight": tuple(vit.patch_embed.proj.weight.shape),
        BACKBONE + "patch_embed.proj.bias": (dim,),
        BACKBONE + "rope_embed.periods": (head_dim // 4,),
    }
    block_keys: list[tuple[str, tuple[int, ...]]] = []
    for name, p in vit.blocks[0].named_parameters():
        if name == "attn.q_bias":
            block_keys += [("attn.qkv.bias", (3 * dim,)), ("attn.qkv.bias_mask", (3 * dim,))]
        elif name != "attn.v_bias":
            block_keys.append((_to_release_name(name), tuple(p.shape)))
    order = ["norm1.", "attn.qkv.weight", "attn.qkv.bias", "attn.qkv.bias_mask", "attn.proj.", "ls1.",
             "norm2.", "mlp.fc1.", "mlp.fc2.", "ls2."]
    block_keys.sort(key=lambda kv: next(i for i, o in enumerate(order) if kv[0].startswith(o)))
    for i in range(depth):
        out.update({f"{BACKBONE}blocks.{i}.{k}": s for k, s in block_keys})
    out[BACKBONE + "norm.weight"] = out[BACKBONE + "norm.bias"] = (dim,)
    for i in range(depth):
        out.update({f"{ALIAS}{i}.{k}": s for k, s in block_keys})
    out[ADAPTER_NORM + "weight"] = out[ADAPTER_NORM + "bias"] = (dim,)
    for rel, ours in HEADS.items():
        for k, p in getattr(model, ours[:-1]).state_dict().items():
            out[rel + k] = tuple(p.shape)
    return out


def _check_layout(sd: dict[str, Tensor], layout: dict[str, tuple[int, ...]], source: str) -> None:
    missing = [k for k in layout if k not in sd]
    unexpected = [k for k in sd if k not in layout]
    shaped = [f"{k} {tuple(sd[k].shape)} != {layout[k]}" for k in layout if k in sd and tuple(sd[k].shape) != layout[k]]
    if missing or unexpected or shaped:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{label} {len(items)}: {', '.join(items[:5])}{more}")
        raise InputError(f"{source}: not DAP's release layout; " + "; ".join(parts))


def release_to_state_dict(sd: dict[str, Tensor], model: DapReleaseModel, source: str = "release") -> dict[str, Tensor]:
    """The release state dict (no `module.`) in `model`'s names; checks keys, shapes, the
    aliased blocks, the qkv bias mask and the RoPE periods first (errors name the release keys)."""
    import sys

    _check_layout(sd, release_layout(model), source)
    dim = model.backbone.embed_dim
    for k in sd:
        if k.startswith(ALIAS):
            twin = BACKBONE + "blocks." + k[len(ALIAS):]
            if not torch.equal(sd[k], sd[twin]):
                raise InputError(f"{source}: {k} differs from {twin} (DAP saves one tensor under both names)")
        if k.endswith("qkv.bias_mask"):
            want = torch.ones(3 * dim)
            want[dim : 2 * dim] = 0
            if not torch.equal(sd[k].float(), want):
                raise InputError(f"{source}: {k} is not DINOv3's key-bias mask (1 for q and v, 0 for k)")
    vit = model.backbone.vit
    rope = getattr(vit, "rope", None)
    periods = getattr(rope, "periods", None)
    if periods is not None and not torch.allclose(periods.float().cpu(), sd[BACKBONE + "rope_embed.periods"].float(), rtol=1e-6):
        raise InputError(f"{source}: {BACKBONE}rope_embed.periods differ from DINOv3's (base 100)")
    backbone = {k[len(BACKBONE):]: v for k, v in sd.items() if k.startswith(BACKBONE)}
    with _quiet():
        converted = sys.modules[type(vit).__module__].checkpoint_filter_fn(backbone, vit)
    out = {f"backbone.vit.{k}": v for k, v in converted.items()}
    out.update({f"backbone.norm.{k[len(ADAPTER_NORM):]}": v for k, v in sd.items() if k.startswith(ADAPTER_NORM)})
    for rel, ours in HEADS.items():
        out.update({ours + k[len(rel):]: v for k, v in sd.items() if k.startswith(rel)})
    expected = model.state_dict()
    missing = sorted(set(expected) - set(out))
    if missing:  # a timm convention that no longer matches the release layout
        raise InputError(f"{source}: converted state dict lacks {missing[:5]}")
    return {k: v.contiguous() for k, v in out.items() if k in expected}


def _quiet():
    import contextlib
    import io

    return contextlib.redirect_stdout(io.StringIO())


def load_release(path: str | Path, map_location: str | torch.device = "cpu") -> DapReleaseModel:
    """A `DapReleaseModel` (eval mode) with the weights of a DAP release `model.pth`."""
    sd = read_release(path)
    cfg = release_model_config(sd, str(path))
    model = build_release_model(cfg)
    model.load_state_dict(release_to_state_dict(sd, model, str(path)), strict=True)
    return model.to(map_location).eval()


def convert_release(path: str | Path, out_dir: str | Path, cfg=None) -> tuple[DapReleaseModel, Path]:
    """Write a release file as the project's checkpoint: `<out_dir>/model.safetensors` (+ its JSON
    sidecar) and `config.resolved.yaml` (`cfg`, a `DapConfig`, with the release's model section).
    Returns the model and the safetensors file."""
    from dap_model.config import write_resolved_config
    from dap_model.models.dap import save_model

    model = load_release(path)
    file = save_model(model, Path(out_dir) / "model.safetensors", model.cfg)
    if cfg is not None:
        write_resolved_config(cfg.model_copy(update={"model": model.cfg}), file.parent)
    return model, file
