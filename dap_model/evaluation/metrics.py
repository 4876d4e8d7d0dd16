"""Metric-depth evaluation: AbsRel, SqRel, RMSE, RMSE-log, MAE, δ1/δ2/δ3.

Valid pixels: 0 < gt ≤ cap (100 m, DAP's cap; docs/architecture.md#conventions), gt finite,
pred finite. Predictions are clamped to ≥ 1e-6 m before logs/ratios (a 0 = "invalid/sky"
prediction on a valid gt pixel is scored as a very wrong depth, not skipped). RMSE is the true
root-mean-square error (DAP's released script reports the MAE under that name; both are reported).

Per image: each metric over that image's valid pixels. `MetricAccumulator.compute()` gives
`per_image` (the mean of per-image metrics over images with ≥ 1 valid pixel — DAP's protocol)
and `pooled` (every valid pixel of every image counted once; RMSE = sqrt of the pooled MSE).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = [
    "LOWER_IS_BETTER",
    "METRIC_NAMES",
    "RANGE_BINS_M",
    "MetricAccumulator",
    "better",
    "depth_metrics",
    "pool_range_bins",
    "range_binned_errors",
]

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "mae", "delta1", "delta2", "delta3")
LOWER_IS_BETTER = frozenset({"abs_rel", "sq_rel", "rmse", "rmse_log", "mae"})
RANGE_BINS_M = ((0.0, 10.0), (10.0, 20.0), (20.0, 50.0), (50.0, 100.0))
_PRED_FLOOR = 1e-6


def better(metric: str, a: float, b: float) -> bool:
    """Is value `a` strictly better than `b` for `metric`?"""
    return a < b if metric in LOWER_IS_BETTER else a > b


def _as_batch(x: Any) -> torch.Tensor:
    """numpy/torch [H,W] | [1,H,W] | [B,1,H,W] → float64 CPU tensor [B,H,W]."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x.detach())
    t = t.to("cpu", torch.float64)
    if t.ndim == 2:
        t = t[None]
    elif t.ndim == 4:
        if t.shape[1] != 1:
            raise ValueError(f"depth maps must be [B,1,H,W], got {tuple(t.shape)}")
        t = t[:, 0]
    elif t.ndim != 3:
        raise ValueError(f"depth maps must be [H,W], [B,H,W] or [B,1,H,W], got {tuple(t.shape)}")
    return t


def _valid(pred: torch.Tensor, gt: torch.Tensor, cap: float) -> torch.Tensor:
    return torch.isfinite(gt) & (gt > 0) & (gt <= cap) & torch.isfinite(pred)


def _sums(p: torch.Tensor, g: torch.Tensor) -> dict[str, float]:
    """Sufficient statistics over 1-D valid pixels p, g (float64)."""
    p = p.clamp_min(_PRED_FLOOR)
    ratio = torch.maximum(p / g, g / p)
    dlog = torch.log(p) - torch.log(g)
    return {
        "n": float(p.numel()),
        "abs_rel": float(((p - g).abs() / g).sum()),
        "sq_rel": float(((p - g) ** 2 / g).sum()),
        "se": float(((p - g) ** 2).sum()),
        "se_log": float((dlog**2).sum()),
        "ae": float((p - g).abs().sum()),
        "delta1": float((ratio < 1.25).sum()),
        "delta2": float((ratio < 1.25**2).sum()),
        "delta3": float((ratio < 1.25**3).sum()),
    }


def _finish(s: dict[str, float]) -> dict[str, float]:
    n = s["n"]
    return {
        "abs_rel": s["abs_rel"] / n,
        "sq_rel": s["sq_rel"] / n,
        "rmse": math.sqrt(s["se"] / n),
        "rmse_log": math.sqrt(s["se_log"] / n),
        "mae": s["ae"] / n,
        "delta1": s["delta1"] / n,
        "delta2": s["delta2"] / n,
        "delta3": s["delta3"] / n,
    }


def _median_align(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """p [N] × median(g) / median(p), both medians over the pixels where p > 0: a 0 (masked: no
    depth given) stays 0 and counts as wrong, and cannot drag the scale to infinity when it covers
    half the image; p unchanged if no pixel is positive."""
    pos = p > 0
    if not bool(pos.any()):
        return p
    return p * (torch.median(g[pos]) / torch.median(p[pos]))


def depth_metrics(pred: Any, gt: Any, cap: float = 100.0, align_median: bool = False) -> dict[str, float]:
    """Metrics of one image (pred/gt [H,W] or [1,1,H,W], numpy or torch). `n_valid` is included;
    with no valid pixel every metric is NaN."""
    p, g = _as_batch(pred), _as_batch(gt)
    if p.shape != g.shape or p.shape[0] != 1:
        raise ValueError(f"depth_metrics takes one image; got pred {tuple(p.shape)}, gt {tuple(g.shape)}")
    v = _valid(p, g, cap)
    n = int(v.sum())
    if n == 0:
        return {**{k: float("nan") for k in METRIC_NAMES}, "n_valid": 0}
    pv, gv = p[v], g[v]
    if align_median:
        pv = _median_align(pv, gv)
    return {**_finish(_sums(pv, gv)), "n_valid": n}


class MetricAccumulator:
    """Streaming evaluation: `update(pred, gt)` with [H,W] or [B,1,H,W] batches, then `compute()`."""

    def __init__(self, cap: float = 100.0, align_median: bool = False):
        self.cap = cap
        self.align_median = align_median
        self._per_image: list[dict[str, float]] = []
        self._pooled = {k: 0.0 for k in ("n", "abs_rel", "sq_rel", "se", "se_log", "ae",
                                          "delta1", "delta2", "delta3")}
        self.n_skipped = 0

    def update(self, pred: Any, gt: Any) -> list[dict[str, float]]:
        """Add a batch; returns the per-image metrics of this batch (skipped images omitted)."""
        p, g = _as_batch(pred), _as_batch(gt)
        if p.shape != g.shape:
            raise ValueError(f"pred {tuple(p.shape)} and gt {tuple(g.shape)} differ")
        out = []
        for pi, gi in zip(p, g):
            v = _valid(pi, gi, self.cap)
            if not bool(v.any()):
                self.n_skipped += 1
                continue
            pv, gv = pi[v], gi[v]
            if self.align_median:
                pv = _median_align(pv, gv)
            s = _sums(pv, gv)
            for k in self._pooled:
                self._pooled[k] += s[k]
            m = {**_finish(s), "n_valid": int(s["n"])}
            self._per_image.append(m)
            out.append(m)
        return out

    def compute(self) -> dict[str, dict[str, float]]:
        n_img = len(self._per_image)
        if n_img == 0:
            nan = {k: float("nan") for k in METRIC_NAMES}
            return {"per_image": {**nan, "n_images": 0}, "pooled": {**nan, "n_pixels": 0}}
        per_image = {k: float(np.mean([m[k] for m in self._per_image])) for k in METRIC_NAMES}
        return {
            "per_image": {**per_image, "n_images": n_img},
            "pooled": {**_finish(self._pooled), "n_pixels": int(self._pooled["n"])},
        }


def range_binned_errors(
    pred: Any, gt: Any, bins: tuple[tuple[float, float], ...] = RANGE_BINS_M, cap: float = 100.0
) -> dict[str, dict[str, float]]:
    """Pooled metrics per gt range bin (lo, hi] over all given pixels (any batch shape).
    Keys "0-10", "10-20", ...; a bin with no valid pixel has n_pixels 0 and NaN metrics."""
    p, g = _as_batch(pred).reshape(-1), _as_batch(gt).reshape(-1)
    v = _valid(p, g, cap)
    out: dict[str, dict[str, float]] = {}
    for lo, hi in bins:
        sel = v & (g > lo) & (g <= hi)
        key = f"{lo:g}-{hi:g}"
        if not bool(sel.any()):
            out[key] = {**{k: float("nan") for k in METRIC_NAMES}, "n_pixels": 0}
        else:
            s = _sums(p[sel], g[sel])
            out[key] = {**_finish(s), "n_pixels": int(s["n"])}
    return out


def pool_range_bins(parts: list[dict[str, dict[str, float]]],
                    bins: tuple[tuple[float, float], ...] = RANGE_BINS_M) -> dict[str, dict[str, float]]:
    """Combine per-image `range_binned_errors` into pooled ones (weights = pixels)."""
    out: dict[str, dict[str, float]] = {}
    for lo, hi in bins:
        key = f"{lo:g}-{hi:g}"
        rows = [p[key] for p in parts if p[key]["n_pixels"] > 0]
        n = sum(r["n_pixels"] for r in rows)
        if n == 0:
            out[key] = {**{k: float("nan") for k in METRIC_NAMES}, "n_pixels": 0}
            continue
        m = {}
        for k in METRIC_NAMES:
            if k in ("rmse", "rmse_log"):
                m[k] = math.sqrt(sum(r[k] ** 2 * r["n_pixels"] for r in rows) / n)
            else:
                m[k] = sum(r[k] * r["n_pixels"] for r in rows) / n
        out[key] = {**m, "n_pixels": int(n)}
    return out
