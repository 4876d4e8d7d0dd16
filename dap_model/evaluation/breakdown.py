"""Breakdowns of a model's error beyond the per-image means: scale-aligned and per scene kind.

- Scale-aligned metrics: each prediction is multiplied by median(gt) / median(pred) over its
  valid pixels with a prediction (pred > 0) first (`MetricAccumulator(align_median=True)`): the shape error without the
  global metric scale.
- Per scene kind (`kind`, else `domain`, of a sample's metadata: `city`, `rural`, `indoor`, ...):
  the mean over that kind's images of AbsRel, scale-aligned AbsRel and the median log(pred / gt)
  (> 0: the model places the scene too far, < 0: too near)."""

from __future__ import annotations

from typing import Any

import numpy as np

BREAKDOWN_FIELDS = ("abs_rel", "abs_rel_aligned", "median_log_ratio", "n")
_RATIO_FLOOR_M = 1e-3


def scene_kind(meta: dict[str, Any] | None) -> str:
    """The sample's scene kind from its metadata (`kind`, else `domain`); "" when it has neither."""
    meta = meta or {}
    return str(meta.get("kind", meta.get("domain", "")))


def median_log_ratio(pred: np.ndarray, gt: np.ndarray, cap: float) -> float:
    """median over valid gt pixels (0 < gt ≤ cap) of log(pred / gt), pred floored at 1 mm; pred/gt [H,W]."""
    v = np.isfinite(gt) & (gt > 0) & (gt <= cap)
    return float(np.median(np.log(np.maximum(pred[v], _RATIO_FLOOR_M) / gt[v])))


class KindBreakdown:
    """Per-image (abs_rel, abs_rel_aligned, median_log_ratio) grouped by scene kind."""

    def __init__(self) -> None:
        self._rows: dict[str, list[tuple[float, float, float]]] = {}

    def add(self, kind: str, abs_rel: float, abs_rel_aligned: float, log_ratio: float) -> None:
        self._rows.setdefault(kind, []).append((abs_rel, abs_rel_aligned, log_ratio))

    def summary(self) -> dict[str, dict[str, float]]:
        """kind -> {abs_rel, abs_rel_aligned, median_log_ratio (means over images, 4 decimals), n}."""
        return {k: dict(zip(BREAKDOWN_FIELDS, (*np.mean(v, 0).round(4).tolist(), len(v))))
                for k, v in sorted(self._rows.items())}
