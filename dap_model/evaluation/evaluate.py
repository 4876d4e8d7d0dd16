"""Evaluate a model: over a benchmark reader (`evaluate`) or over stored shards (`evaluate_shards`,
training validation and the experiments), both scored by the one metric loop (`Scorer`).

Per image over its valid pixels (0 < gt ≤ cap), then averaged over images (`metrics`, DAP's
protocol); `pooled` counts every valid pixel once; `range_bins` pools the pixels of each gt range
(0–10, 10–20, 20–50, 50–100 m); `aligned` are the per-image means after median scale alignment;
`by_kind` breaks AbsRel down by scene kind (`breakdown`); with `by_folder`, `groups` holds a full
result per top-level folder of the sample keys (a benchmark made of several sources).

Prediction: readers go through `inference.predict_batch` (periodic bilinear input resize,
`eval.upsample` back to the gt's size); shards go through `inference.predict_at` (the
stored image at the training height, nearest upsampling, optional equivariant views)."""

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
from dap_model.evaluation.breakdown import KindBreakdown, median_log_ratio, scene_kind
from dap_model.evaluation.metrics import METRIC_NAMES, MetricAccumulator, pool_range_bins, range_binned_errors


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
    aligned: dict[str, float] = field(default_factory=dict)  # per-image mean after median alignment
    by_kind: dict[str, dict[str, float]] = field(default_factory=dict)  # kind -> breakdown.BREAKDOWN_FIELDS
    per_image: list[dict[str, Any]] = field(default_factory=list)  # {"key", metric...}
    groups: dict[str, "EvalResult"] = field(default_factory=dict)  # top-level key folder -> its result
    figures: list[FigureSample] = field(default_factory=list)
    n_skipped: int = 0  # images without a valid gt pixel
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            **{k: self.metrics[k] for k in METRIC_NAMES},
            "n_images": int(self.metrics["n_images"]),
            "abs_rel_aligned": self.aligned.get("abs_rel", float("nan")),
            "pooled": self.pooled,
            "range_bins": self.range_bins,
            "aligned": self.aligned,
            "by_kind": self.by_kind,
            "n_skipped": self.n_skipped,
            **({"groups": {g: r.summary() for g, r in self.groups.items()}} if self.groups else {}),
        }

    def flat(self) -> dict[str, float]:
        """MLflow metric names: `<benchmark>/<metric>`, `<benchmark>/n_images`,
        `<benchmark>/abs_rel_aligned`, range bins `<benchmark>/abs_rel_0-10m` (and rmse), and per
        scene kind `<benchmark>/<kind>/abs_rel` (abs_rel_aligned, median_log_ratio); each folder
        group's own names under `<benchmark>/<folder>/`."""
        b = self.benchmark
        out = {f"{b}/{k}": self.metrics[k] for k in METRIC_NAMES}
        out[f"{b}/n_images"] = self.metrics["n_images"]
        if "abs_rel" in self.aligned:
            out[f"{b}/abs_rel_aligned"] = self.aligned["abs_rel"]
        for rng, m in self.range_bins.items():
            if m["n_pixels"]:
                out[f"{b}/abs_rel_{rng}m"] = m["abs_rel"]
                out[f"{b}/rmse_{rng}m"] = m["rmse"]
        for kind, d in self.by_kind.items():
            out |= {f"{b}/{kind}/{n}": x for n, x in d.items() if n != "n"}
        for g in self.groups.values():  # per-image means only (no range bins or kinds)
            out |= {f"{g.benchmark}/{k}": g.metrics[k] for k in (*METRIC_NAMES, "n_images")}
            if "abs_rel" in g.aligned:
                out[f"{g.benchmark}/abs_rel_aligned"] = g.aligned["abs_rel"]
        return out


def json_safe(obj: Any) -> Any:
    """Non-finite floats → None (strict JSON has no NaN), recursively."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class Scorer:
    """The metric loop every evaluation shares: `add` one prediction at a time, then `result`.
    `by_folder`: samples whose key has a folder (`<folder>/...`) are also scored per folder."""

    def __init__(self, cap: float, figure_samples: int = 0, by_folder: bool = False):
        self.cap = cap
        self.by_folder = by_folder
        self.groups: dict[str, Scorer] = {}
        self.figure_samples = figure_samples
        self.acc = MetricAccumulator(cap=cap)
        self.aligned = MetricAccumulator(cap=cap, align_median=True)
        self.kinds = KindBreakdown()
        self.per_image: list[dict[str, Any]] = []
        self.bins: list[dict[str, dict[str, float]]] = []
        self.figures: list[FigureSample] = []
        self.n_seen = 0
        self._t0 = time.perf_counter()

    def add(self, key: str, pred: np.ndarray, gt: np.ndarray, meta: dict[str, Any] | None = None,
            rgb: np.ndarray | None = None) -> None:
        """Score pred [H,W] against gt [H,W] (metres, 0 = invalid); an image without a valid gt
        pixel counts as skipped."""
        self.n_seen += 1
        if self.by_folder and "/" in key:
            self.groups.setdefault(key.split("/", 1)[0], Scorer(self.cap)).add(key, pred, gt, meta)
        m = self.acc.update(pred, gt)
        if not m:
            return
        a = self.aligned.update(pred, gt)
        self.per_image.append({"key": key, **m[0]})
        self.bins.append(range_binned_errors(pred, gt, cap=self.cap))
        kind = scene_kind(meta)
        if kind:
            self.kinds.add(kind, m[0]["abs_rel"], a[0]["abs_rel"], median_log_ratio(pred, gt, self.cap))
        if rgb is not None and len(self.figures) < self.figure_samples:
            self.figures.append(FigureSample(key, rgb, gt, pred))

    def result(self, benchmark: str) -> EvalResult:
        res = self.acc.compute()
        return EvalResult(
            benchmark=benchmark,
            metrics={k: float(v) for k, v in res["per_image"].items()},
            pooled={k: float(v) for k, v in res["pooled"].items()},
            range_bins=pool_range_bins(self.bins),
            aligned={k: float(v) for k, v in self.aligned.compute()["per_image"].items()},
            by_kind=self.kinds.summary(),
            per_image=self.per_image,
            groups={g: sc.result(f"{benchmark}/{g}") for g, sc in sorted(self.groups.items()) if sc.per_image},
            figures=self.figures,
            n_skipped=self.acc.n_skipped,
            seconds=time.perf_counter() - self._t0,
        )


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
    by_folder: bool = False,
) -> EvalResult:
    """Predict every sample of `reader` and score it against its ground truth.

    `save_predictions`: write `<DIR>/<key>_pred.npy` (float32 metres at the gt's resolution,
    0 = invalid) for every sample. `by_folder`: also a result per top-level key folder
    (`EvalResult.groups`). Raises InputError when the benchmark has no sample with
    ground truth."""
    from dap_model.accel import apply_cpu_threads, resolve_device
    from dap_model.inference import inference_height, predict_batch, save_npy

    apply_cpu_threads(cfg.train.threads)
    device = device or resolve_device(cfg.eval.device)
    model = model.to(device).eval()
    height = inference_height(cfg, model)
    cap = cfg.eval.cap_m
    scorer = Scorer(cap, figure_samples, by_folder)
    out_dir = Path(save_predictions) if save_predictions else None
    for batch in _batches(iter(reader), cfg.eval.batch_size, cfg.eval.max_images):
        preds = predict_batch(model, [s.rgb for s in batch], height, [s.depth.shape for s in batch],
                              cfg.eval.upsample, device)
        for s, pred in zip(batch, preds):
            if out_dir is not None:
                save_npy(out_dir / f"{s.key}_pred.npy", pred)
            scorer.add(s.key, pred, s.depth, s.meta, s.rgb)
        if progress:
            progress(scorer.n_seen)
    if scorer.n_seen == 0:
        raise InputError(f"{reader.root}: no {reader.format} sample with ground-truth depth")
    res = scorer.result(benchmark or reader.format)
    if res.metrics["n_images"] == 0:
        raise InputError(f"{reader.root}: none of the {scorer.n_seen} samples has a valid ground-truth pixel "
                         f"(0 < depth <= {cap:g} m)")
    return res


def evaluate_shards(
    model,
    paths: list[Path],
    height: int,
    batch_size: int,
    device: torch.device,
    cap_m: float,
    amp_dtype: str = "fp32",
    *,
    limit: int | None = None,
    figure_samples: int = 0,
    benchmark: str = "shards",
) -> EvalResult:
    """Score a model on shard files (stored order, unaugmented) at the ground truth's resolution:
    each image enters at `height` × 2·`height`; the prediction is resized (nearest) to the gt."""
    from dap_model.data.samples import iter_eval_batches
    from dap_model.inference import predict_at

    scorer = Scorer(cap_m, figure_samples)
    for batch in iter_eval_batches(paths, height, batch_size, limit=limit):
        preds = predict_at(model, batch["rgb"], [g.shape for g in batch["gts"]], device, amp_dtype)
        for key, rgb, gt, meta, pred in zip(batch["keys"], batch["rgbs"], batch["gts"], batch["metas"], preds):
            scorer.add(key, pred, gt, meta, rgb)
    return scorer.result(benchmark)
