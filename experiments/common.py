"""What the experiments share: where they keep their state, how a trained model is scored on a
store's test splits (`dap_model.evaluation.evaluate.evaluate_shards`), and the table rows."""

from __future__ import annotations

import os
from pathlib import Path

from dap_model.evaluation.evaluate import EvalResult
from dap_model.evaluation.metrics import METRIC_NAMES

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "experiments"  # one project folder per experiment name: data/, mlflow.db, runs/
RESULTS = REPO / "experiments" / "results"
SPLITS = (("labeled_test", "labeled", "test"), ("web_test", "web/test", None))
TABLE_METRICS = ("abs_rel", "rmse", "delta1")


def use_project(project: Path) -> Path:
    """Make `project` the DAP project folder (its store, MLflow db and Dagster home) of this process."""
    project = project.resolve()
    project.mkdir(parents=True, exist_ok=True)
    os.environ["DAP_PROJECT_DIR"] = str(project)
    os.environ.setdefault("DAGSTER_HOME", str(project / ".dagster"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    return project


def evaluate_splits(cfg, store, model_file: Path) -> dict[str, EvalResult]:
    """The model at `model_file` on the store's labelled test split and web-domain test split
    (those present), at the training height: per-image metrics, scale-aligned metrics, scene kinds."""
    from dap_model.accel import resolve_device
    from dap_model.evaluation.evaluate import evaluate_shards
    from dap_model.models import load_model
    from dap_model.training.stages import fetch_all, split_shard_keys

    device = resolve_device(cfg.train.device)
    model = load_model(model_file, map_location=device).eval()
    out = {}
    for bench, prefix, split in SPLITS:
        keys = split_shard_keys(store, prefix, split) if split else split_shard_keys(store, prefix)
        if keys:
            out[bench] = evaluate_shards(model, fetch_all(store, keys), cfg.train.height, cfg.train.eval_batch_size,
                                         device, cfg.eval.cap_m, cfg.train.amp_dtype, benchmark=bench)
    return out


def compact(results: dict[str, EvalResult]) -> dict[str, dict]:
    """Per split: the eight metrics, n_images, abs_rel_aligned and the per-kind breakdown (result files)."""
    return {b: {**{k: r.metrics[k] for k in METRIC_NAMES}, "n_images": int(r.metrics["n_images"]),
                "abs_rel_aligned": r.aligned["abs_rel"], "by_kind": r.by_kind}
            for b, r in results.items()}


def flat_metrics(results: dict[str, EvalResult]) -> dict[str, float]:
    """MLflow metric names of every split (`web_test/abs_rel`, `web_test/city/abs_rel`, ...)."""
    return {k: v for r in results.values() for k, v in r.flat().items()}


def table_head(first: str) -> list[str]:
    return [f"| {first} | labelled test AbsRel | RMSE | δ1 | web test AbsRel | RMSE | δ1 | web AbsRel, scale-aligned |",
            "|---|---|---|---|---|---|---|---|"]


def table_row(name: str, res: dict) -> str:
    """One markdown row of a `compact` result: AbsRel, RMSE, δ1 on both splits, web aligned AbsRel."""
    cols = [(b, k) for b in ("labeled_test", "web_test") for k in TABLE_METRICS] + [("web_test", "abs_rel_aligned")]
    return f"| {name} | " + " | ".join(f"{res.get(b, {}).get(k, float('nan')):.4f}" for b, k in cols) + " |"
