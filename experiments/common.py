"""What the experiments share: where they keep their state, how a trained model is scored on a
store's test splits (`dap_model.evaluation.evaluate.evaluate_shards`) and on the real RGB + depth
pairs (`../shared/real/pairs`, per source folder, beside constant-depth baselines), and the table
rows."""

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
DEFAULT_REAL = REPO.parent / "shared" / "real" / "pairs"  # npy layout, one sub-folder per source
REAL = "real_dev"  # the real pairs' benchmark name (as the profiles' eval.benchmarks call it)
REAL_METRICS = ("abs_rel", "abs_rel_aligned", "delta1")
REAL_BASELINES_M = (1.5, 2.0)  # constant depths scored beside the models on the real pairs (with eval.baseline_depths_m)


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


def open_real(path: Path | None):
    """The `npy` benchmark reader of the real pairs at `path`, or None (with the reason printed)
    when `path` is None or not a folder."""
    if path is None:
        return None
    if not Path(path).is_dir():
        print(f"{path}: real pairs folder does not exist; real-pair scores skipped", flush=True)
        return None
    from dap_model.benchmarks import open_benchmark

    return open_benchmark("npy", str(path))


def require_real(path: Path):
    """`open_real(path)`, or exit naming the folder: for experiments that only score the real pairs."""
    reader = open_real(path)
    if reader is None:
        raise SystemExit(f"{path}: no real pairs to score on")
    return reader


def write_real_results(rows: dict[str, dict], out: Path | None, meta: dict) -> None:
    """Print `real_table(rows)`; with `out`, write it there and `meta` plus `real: rows` as JSON beside it."""
    import json

    from dap_model.io import atomic_write_text

    text = "\n".join(real_table(rows)) + "\n"
    print(text)
    if out:
        atomic_write_text(out, text)
        atomic_write_text(out.with_suffix(".json"), json.dumps({**meta, "real": rows}, indent=1, default=float))


def score_real(cfg, model, reader) -> dict:
    """AbsRel, δ1, median-scale-aligned AbsRel and n_images of `model` (a loaded network or a
    `ConstantDepthModel`) on the real pairs, overall and under `by_folder` per source folder."""
    from dap_model.evaluation.evaluate import evaluate

    r = evaluate(model, reader, cfg, benchmark=REAL, by_folder=True)
    one = lambda e: {"abs_rel": e.metrics["abs_rel"], "delta1": e.metrics["delta1"],  # noqa: E731
                     "abs_rel_aligned": e.aligned.get("abs_rel", float("nan")), "n_images": int(e.metrics["n_images"])}
    return {**one(r), "by_folder": {g.split("/", 1)[-1]: one(e) for g, e in r.groups.items()}}


def real_baselines(cfg, reader) -> dict[str, dict]:
    """`score_real` of each constant depth in REAL_BASELINES_M and `eval.baseline_depths_m`, by row
    label (`constant 2 m`)."""
    from dap_model.evaluation.baseline import ConstantDepthModel

    depths = sorted({*REAL_BASELINES_M, *cfg.eval.baseline_depths_m})
    return {ConstantDepthModel(d).name: score_real(cfg, ConstantDepthModel(d), reader) for d in depths}


def real_flat(real: dict) -> dict[str, float]:
    """MLflow metric names of a `score_real` result (`real_dev/abs_rel`, `real_dev/<folder>/delta1`)."""
    out = {f"{REAL}/{k}": real[k] for k in REAL_METRICS}
    out |= {f"{REAL}/{f}/{k}": r[k] for f, r in real.get("by_folder", {}).items() for k in REAL_METRICS}
    return out


def real_table(rows: dict[str, dict]) -> list[str]:
    """Markdown lines: per row (name -> `score_real` result) the real pairs' AbsRel, aligned AbsRel
    and δ1 overall, then AbsRel / aligned / δ1 per source folder."""
    folders = sorted({f for r in rows.values() for f in r.get("by_folder", {})})
    n = next((r["n_images"] for r in rows.values() if "n_images" in r), 0)
    cell = lambda r: f"{r['abs_rel']:.3f} / {r['abs_rel_aligned']:.3f} / {r['delta1']:.3f}"  # noqa: E731
    lines = [f"| model | real AbsRel ({n} pairs) | scale-aligned | δ1 | " + " | ".join(
                 f"{f} AbsRel / aligned / δ1" for f in folders) + " |",
             "|---|---|---|---|" + "---|" * len(folders)]
    for name, r in rows.items():
        bf = r.get("by_folder", {})
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.4f}" for k in REAL_METRICS) + " | "
                     + " | ".join(cell(bf[f]) if f in bf else "—" for f in folders) + " |")
    return lines
