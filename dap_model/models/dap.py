"""The DAP network: backbone (ViT or convolutional encoder, `backbones`) → two distortion-aware
DPT heads (metric depth, range masks).

`forward(rgb[B,3,H,W] in [0,1])`:
- ImageNet normalisation inside the model (docs/architecture.md#conventions);
- H, W that are not multiples of the patch size are resized (bilinear, horizontally periodic) to
  the nearest multiples (at least one patch) before the backbone; every output is produced
  directly at the input's H×W;
- returns `depth` [B,1,H,W] metres = sigmoid(depth head) × max_depth_m, `depth_norm` [B,1,H,W]
  in (0,1), `mask_logits` [B,K,H,W] (one channel per `mask_ranges_m`, ascending).

Inference rule (`predict`): depth where sigmoid(mask logit of the largest range) ≥
`mask_threshold`, else 0 (= invalid / sky / beyond range, the dataset convention).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dap_model.config import ModelConfig
from dap_model.errors import InputError
from dap_model.io import atomic_path, atomic_write_text
from dap_model.models.backbones import Backbone, build_backbone
from dap_model.models.dpt import DptDecoder, DptHead, wrap_resize

__all__ = ["DapModel", "build_model", "load_model", "save_model", "CHECKPOINT_NAME"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECKPOINT_NAME = "model.safetensors"
_META_CONFIG = "dap.model_config"
_META_ARCH = "dap.backbone_arch"


class DapModel(nn.Module):
    def __init__(self, cfg: ModelConfig, backbone: Backbone):
        super().__init__()
        self.cfg = cfg.model_copy(deep=True)
        self.backbone = backbone
        self.mask_ranges_m = sorted(float(r) for r in cfg.mask_ranges_m)
        dec_kw = dict(
            circular=cfg.circular_padding, vertical=cfg.vertical_padding, latitude=cfg.latitude_encoding
        )

        def decoder() -> DptDecoder:
            return DptDecoder(backbone.out_channels, list(cfg.decoder_channels), cfg.decoder_features,
                              strides=backbone.strides, **dec_kw)

        self.depth_decoder = decoder()
        self.mask_decoder = None if cfg.shared_decoder else decoder()
        self.depth_head = DptHead(cfg.decoder_features, cfg.head_hidden, 1, **dec_kw)
        self.mask_head = DptHead(cfg.decoder_features, cfg.head_hidden, len(self.mask_ranges_m), **dec_kw)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if cfg.grad_checkpointing:
            backbone.set_grad_checkpointing(True)

    @property
    def patch_size(self) -> int:
        return self.backbone.patch_size

    def decoder_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("backbone.")]

    def param_groups(self, lr_backbone: float, lr_decoder: float) -> list[dict[str, Any]]:
        """Optimizer groups with DAP's two learning rates (backbone / everything else)."""
        return [
            {"params": list(self.backbone.parameters()), "lr": lr_backbone, "name": "backbone"},
            {"params": self.decoder_parameters(), "lr": lr_decoder, "name": "decoder"},
        ]

    def backbone_size(self, h: int, w: int) -> tuple[int, int]:
        p = self.patch_size
        return max(p, round(h / p) * p), max(p, round(w / p) * p)

    def forward(self, rgb: Tensor) -> dict[str, Tensor]:
        if rgb.ndim != 4 or rgb.shape[1] != 3:
            raise InputError(f"DapModel expects rgb [B,3,H,W], got {tuple(rgb.shape)}")
        h, w = rgb.shape[-2:]
        x = (rgb - self.mean) / self.std  # [B,3,H,W]
        bh, bw = self.backbone_size(h, w)
        x = wrap_resize(x, (bh, bw), self.cfg.circular_padding)  # [B,3,bh,bw]
        feats = self.backbone(x)  # 4 × [B,C_i,bh/s_i,bw/s_i] (ViT: s_i = p)
        fused = self.depth_decoder(feats)  # [B,F,·,·] (ViT: 8bh/p × 8bw/p; conv 4..32: bh/2 × bw/2)
        depth_norm = torch.sigmoid(self.depth_head(fused, (h, w)))  # [B,1,H,W]
        mfused = fused if self.mask_decoder is None else self.mask_decoder(feats)
        mask_logits = self.mask_head(mfused, (h, w))  # [B,K,H,W]
        return {
            "depth": depth_norm * self.cfg.max_depth_m,
            "depth_norm": depth_norm,
            "mask_logits": mask_logits,
        }

    def in_range(self, out: dict[str, Tensor]) -> Tensor:
        """[B,1,H,W] bool: the pixels the mask rule keeps, P(within the largest range) ≥ mask_threshold."""
        return torch.sigmoid(out["mask_logits"][:, -1:]) >= self.cfg.mask_threshold

    def apply_mask_rule(self, out: dict[str, Tensor]) -> Tensor:
        """[B,1,H,W] metres, 0 where the pixel is not `in_range`."""
        return torch.where(self.in_range(out), out["depth"], torch.zeros_like(out["depth"]))

    @torch.no_grad()
    def predict(self, rgb: Tensor) -> Tensor:
        """rgb [B,3,H,W] in [0,1] → metric depth [B,1,H,W] with the mask rule (eval mode)."""
        was_training = self.training
        self.eval()
        try:
            return self.apply_mask_rule(self(rgb))
        finally:
            self.train(was_training)


def build_model(cfg: ModelConfig, backbone_arch: dict[str, Any] | None = None) -> DapModel:
    """Backbone from the registry (pretrained weights per `cfg.pretrained`) + fresh decoders;
    `cfg.architecture == "dap_release"`: DAP's released network (`models.dap_release`)."""
    if cfg.architecture == "dap_release":
        from dap_model.models.dap_release import build_release_model

        return build_release_model(cfg, backbone_arch)
    backbone = build_backbone(
        cfg.backbone,
        taps=list(cfg.taps),
        pretrained=cfg.pretrained if backbone_arch is None else "",
        overrides=cfg.backbone_overrides,
        tap_norm=cfg.tap_norm,
        arch=backbone_arch,
        circular=cfg.circular_padding,
    )
    return DapModel(cfg, backbone)


def _checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / CHECKPOINT_NAME
    return path, path.with_suffix(".json")


def save_model(model: DapModel, path: str | Path, cfg: ModelConfig | None = None) -> Path:
    """Write `<dir>/model.safetensors` (or the given `.safetensors` file) with the model config and
    backbone architecture in its metadata, and the same config as JSON beside it. Returns the file."""
    from safetensors.torch import save_file

    cfg = cfg or model.cfg
    file, sidecar = _checkpoint_paths(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {
        _META_CONFIG: cfg.model_dump_json(),
        _META_ARCH: json.dumps(model.backbone.arch()),
    }
    with atomic_path(file) as tmp:
        save_file(state, str(tmp), metadata=meta)
    atomic_write_text(
        sidecar,
        json.dumps({"model": cfg.model_dump(mode="json"), "backbone_arch": model.backbone.arch()}, indent=2),
    )
    return file


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> DapModel:
    """Rebuild the architecture from the checkpoint's metadata and load its weights (no pickle).
    `path`: a `.safetensors` file or a folder holding `model.safetensors`. Returned in eval mode."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    file, _ = _checkpoint_paths(path)
    if not file.is_file():
        raise InputError(f"checkpoint {str(file)!r} not found")
    with safe_open(str(file), framework="pt") as fh:
        meta = fh.metadata() or {}
    if _META_CONFIG not in meta:
        raise InputError(f"checkpoint {str(file)!r} has no {_META_CONFIG!r} metadata (not a DAP model)")
    cfg = ModelConfig.model_validate_json(meta[_META_CONFIG])
    arch = json.loads(meta[_META_ARCH]) if _META_ARCH in meta else None
    model = build_model(cfg, backbone_arch=arch)
    state = load_file(str(file), device=str(map_location))
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval()
