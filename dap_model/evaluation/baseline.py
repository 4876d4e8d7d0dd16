"""Reference predictors scored through the same evaluation code as the models.

`ConstantDepthModel(d)` answers `d` metres at every pixel; `RowPriorModel` answers a fixed depth
per latitude (a mean room: the median log depth of each latitude band of labelled depth maps,
averaged over them) and ignores the image. Both keep every pixel (their range mask says "in
range" everywhere) and have the model interface that `inference.predict_outputs` uses
(`patch_size`, `forward` → `depth`/`depth_norm`/`mask_logits`, `in_range`, `apply_mask_rule`), so a
report row for them comes out of `evaluate` like any model's. A depth model that does not beat
them on real rooms has learned nothing from the images that transfers."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from dap_model.errors import ConfigError

_IN_RANGE_LOGIT = 20.0  # sigmoid(20) ≈ 1: every pixel kept


class ReferenceModel(nn.Module):
    """What the reference predictors share: every pixel in range, the model's mask rule."""

    patch_size = 1

    @staticmethod
    def _outputs(depth: Tensor) -> dict[str, Tensor]:
        return {"depth": depth, "depth_norm": torch.ones_like(depth), "mask_logits": torch.full_like(depth, _IN_RANGE_LOGIT)}

    def in_range(self, out: dict[str, Tensor]) -> Tensor:
        return out["mask_logits"][:, -1:] > 0  # [B,1,H,W] bool

    def apply_mask_rule(self, out: dict[str, Tensor]) -> Tensor:
        return torch.where(self.in_range(out), out["depth"], torch.zeros_like(out["depth"]))


class ConstantDepthModel(ReferenceModel):
    """rgb [B,3,H,W] → `depth` [B,1,H,W] = `depth_m` everywhere, every pixel in range."""

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
        return self._outputs(torch.full((b, 1, h, w), self.depth_m, dtype=rgb.dtype, device=rgb.device))


class RowPriorModel(ReferenceModel):
    """rgb [B,3,H,W] → `depth` [B,1,H,W]: one depth per row, exp of `log_depth` ([R] over R equal
    latitude bands, top to bottom) interpolated linearly in latitude between the finite bands to the
    H row centres. A NaN band (no labelled depth there, e.g. an outdoor sky) is out of range: rows
    falling in it get mask "beyond range" and so depth 0 under the mask rule."""

    def __init__(self, log_depth, label: str = "row prior"):
        super().__init__()
        prof = torch.as_tensor(np.asarray(log_depth, dtype=np.float32))
        if prof.ndim != 1 or int(torch.isfinite(prof).sum()) < 2 or bool(torch.isinf(prof).any()):
            raise ConfigError(f"row prior {label!r}: log depth must be a 1-D profile with >= 2 finite bands (NaN: "
                              f"no depth), got {prof.tolist() if prof.numel() < 9 else list(prof.shape)}")
        self.register_buffer("log_depth", prof)
        self.label = label

    @property
    def name(self) -> str:
        return self.label

    @classmethod
    def fit(cls, depths, bands: int, label: str = "row prior", cap: float = 100.0) -> "RowPriorModel":
        """From depth maps ([H,W] each, any H ≥ 1; valid = finite, 0 < d ≤ cap): per map the median
        log depth of each of `bands` latitude bands (row i of H belongs to band ⌊(i + ½)·bands/H⌋),
        then the mean over the maps that have valid pixels there; NaN where none has."""
        sums, counts = np.zeros(bands), np.zeros(bands)
        for d in depths:
            d = np.asarray(d, dtype=np.float64)
            band = np.floor((np.arange(d.shape[0]) + 0.5) * bands / d.shape[0]).astype(int)  # [H]
            for k in range(bands):
                v = d[band == k]
                v = v[np.isfinite(v) & (v > 0) & (v <= cap)]
                if v.size:
                    sums[k] += np.median(np.log(v))
                    counts[k] += 1
        if (counts > 0).sum() < 2:
            raise ConfigError(f"row prior {label!r}: valid depth in fewer than 2 of {bands} latitude bands")
        return cls(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan), label)

    def forward(self, rgb: Tensor) -> dict[str, Tensor]:
        b, _, h, w = rgb.shape
        prof = self.log_depth.cpu().numpy()
        r = prof.size
        have = np.isfinite(prof)
        centre = (np.arange(h) + 0.5) / h
        rows = np.interp(centre, ((np.arange(r) + 0.5) / r)[have], prof[have])  # [h]
        keep = have[np.minimum((centre * r).astype(int), r - 1)]  # [h] the row's band has depth
        depth = torch.from_numpy(np.exp(rows)).to(device=rgb.device, dtype=rgb.dtype)[None, None, :, None].expand(b, 1, h, w)
        out = self._outputs(depth.contiguous())
        out["mask_logits"][:, :, torch.from_numpy(~keep).to(rgb.device)] = -_IN_RANGE_LOGIT
        return out
