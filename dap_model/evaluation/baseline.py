"""Reference predictors scored through the same evaluation code as the models.

`ConstantDepthModel(d)` answers `d` metres at every pixel and keeps every pixel (its range mask
says "in range" everywhere). It has the model interface that `inference.predict_outputs` uses
(`patch_size`, `forward` → `depth`/`depth_norm`/`mask_logits`, `in_range`, `apply_mask_rule`), so a
report row for it comes out of `evaluate` like any model's. A depth model that does not beat it
on real rooms has learned nothing that transfers."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dap_model.errors import ConfigError

_IN_RANGE_LOGIT = 20.0  # sigmoid(20) ≈ 1: every pixel kept


class ConstantDepthModel(nn.Module):
    """rgb [B,3,H,W] → `depth` [B,1,H,W] = `depth_m` everywhere, every pixel in range."""

    patch_size = 1

    def __init__(self, depth_m: float):
        super().__init__()
        if not depth_m > 0:
            raise ConfigError(f"constant-depth baseline {depth_m!r}: must be > 0 metres")
        self.depth_m = float(depth_m)

    @property
    def name(self) -> str:
        """The report's row label, e.g. `constant 2 m`."""
        return f"constant {self.depth_m:g} m"

    def forward(self, rgb: Tensor) -> dict[str, Tensor]:
        b, _, h, w = rgb.shape
        depth = torch.full((b, 1, h, w), self.depth_m, dtype=rgb.dtype, device=rgb.device)
        return {
            "depth": depth,
            "depth_norm": torch.ones_like(depth),
            "mask_logits": torch.full_like(depth, _IN_RANGE_LOGIT),
        }

    def in_range(self, out: dict[str, Tensor]) -> Tensor:
        return out["mask_logits"][:, -1:] > 0  # [B,1,H,W] bool

    def apply_mask_rule(self, out: dict[str, Tensor]) -> Tensor:
        return torch.where(self.in_range(out), out["depth"], torch.zeros_like(out["depth"]))
