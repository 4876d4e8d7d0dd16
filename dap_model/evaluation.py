"""Evaluate a model over a benchmark reader: DAP's metrics at the ground truth's resolution.

Metrics (`dap_model.metrics`): valid = 0 < gt ≤ cap; each image's metrics over its valid pixels,
then averaged over images (`metrics`, DAP's protocol); `pooled` counts every valid pixel once;
`range_bins` pools the pixels of each gt range (0–10, 10–20, 20–50, 50–100 m)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from dap_model.benchmarks import BenchmarkReader, BenchSample
from dap_model.config import DapConfig
from dap_model.errors import InputError
from dap_model.inference import inference_height, pick_device, predict_batch, save_npy
from dap_model.metrics import METRIC_NAMES, RANGE_BINS_M, MetricAccumulator, range_binned_errors

LOWER_IS_BETTER = {"abs_rel", "sq_rel", "rmse", "rmse_log", "mae"}


@dataclass
class FigureSample:
    key: str
    rgb: np.ndarray  # [H,W,3] uint8
    gt: np.ndarray  # [H,W] metres
    pred: np.ndarray  # [H,W] metres


@dataclass
class EvalResult:
    benchmark: str
    metrics: dict[str, float]  # per-image mean + n_images
    pooled: dict[str, float]
    range_bins: dict[str, dict[str, float]]
    per_image: list[dict[str, Any]] = field(default_factory=list)  # {"key", metric...}
    figures: list[FigureSample] = field(default_factory=list)
    n_skipped: int = 0  # images without a valid gt pixel
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            **{k: self.metrics[k] for k in METRIC_NAMES},
            "n_images": int(self.metrics["n_images"]),
            "pooled": self.pooled,
            "range_bins": self.range_bins,
            "n_skipped": self.n_skipped,
        }


def json_safe(obj: Any) -> Any:
    """Non-finite floats → None (strict JSON has no NaN), recursively."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def better(metric: str, a: float, b: float) -> bool:
    """Is value `a` strictly better than `b` for `metric`?"""
    return a < b if metric in LOWER_IS_BETTER else a > b


def _batches(samples: Iterator[BenchSample], size: int, limit: int) -> Iterator[list[BenchSample]]:
    batch: list[BenchSample] = []
    for i, s in enumerate(samples):
        if limit and i >= limit:
            break
        batch.append(s)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _pool_bins(parts: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Combine per-image range-bin metrics into pooled ones (weights = pixels)."""
    out: dict[str, dict[str, float]] = {}
    for lo, hi in RANGE_BINS_M:
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


def evaluate(
    model,
    reader: BenchmarkReader,
    cfg: DapConfig,
    *,
    benchmark: str = "",
    save_predictions: str | Path | None = None,
    figure_samples: int = 0,
    device: torch.device | None = None,
    progress: Callable[[int], None] | None = None,
) -> EvalResult:
    """Predict every sample of `reader` and score it against its ground truth.

    `save_predictions`: write `<DIR>/<key>_pred.npy` (float32 metres at the gt's resolution,
    0 = invalid) for every sample. Raises InputError when the benchmark has no sample with
    ground truth."""
    from dap_model.accel import apply_cpu_threads

    apply_cpu_threads(cfg.train.threads)
    device = device or pick_device(cfg.eval.device)
    model = model.to(device).eval()
    height = inference_height(cfg, model.patch_size)
    cap = cfg.eval.cap_m
    acc = MetricAccumulator(cap=cap)
    per_image: list[dict[str, Any]] = []
    bins: list[dict[str, dict[str, float]]] = []
    figures: list[FigureSample] = []
    out_dir = Path(save_predictions) if save_predictions else None
    n_seen = 0
    t0 = time.perf_counter()
    for batch in _batches(iter(reader), cfg.eval.batch_size, cfg.eval.max_images):
        preds = predict_batch(model, [s.rgb for s in batch], height, [s.depth.shape for s in batch],
                              cfg.eval.upsample, device)
        for s, pred in zip(batch, preds):
            n_seen += 1
            if out_dir is not None:
                save_npy(out_dir / f"{s.key}_pred.npy", pred)
            m = acc.update(pred, s.depth)
            if m:
                per_image.append({"key": s.key, **m[0]})
                bins.append(range_binned_errors(pred, s.depth, cap=cap))
                if len(figures) < figure_samples:
                    figures.append(FigureSample(s.key, s.rgb, s.depth, pred))
        if progress:
            progress(n_seen)
    if n_seen == 0:
        raise InputError(f"{reader.root}: no {reader.format} sample with ground-truth depth")
    res = acc.compute()
    if res["per_image"]["n_images"] == 0:
        raise InputError(f"{reader.root}: none of the {n_seen} samples has a valid ground-truth pixel "
                         f"(0 < depth <= {cap:g} m)")
    return EvalResult(
        benchmark=benchmark or reader.format,
        metrics={k: float(v) for k, v in res["per_image"].items()},
        pooled={k: float(v) for k, v in res["pooled"].items()},
        range_bins=_pool_bins(bins),
        per_image=per_image,
        figures=figures,
        n_skipped=acc.n_skipped,
        seconds=time.perf_counter() - t0,
    )
