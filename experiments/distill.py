"""Ablation: stage 1 with and without the Depth Anywhere term, evaluated on the labelled test
split and the web-domain test split; each arm is an MLflow run in experiment
`dap-distill-ablation` (tags dap.stage=stage1, dap.distill=<arm>, metrics
`labeled_test/abs_rel`, `web_test/abs_rel`, ...). Results: `<project>/distill.json` + .md.

It runs on the store of `experiments.stages` (same profile and project folder): its labelled
set, unlabelled pool, web-domain test split, and its stage-3 model as the teacher (`distill.teacher
=dap`, the project's own model; docs/distillation.md). The store is copied first, so the stage experiment's
published models stay as they were. Every arm uses the same seed, data, steps and learning rates;
arms (ARMS): off, on, and off_labeled_half (no term, batch = the `on` arm's labelled half).

    python -m experiments.distill --profile small [--set KEY=VALUE ...] [--project DIR] [--arms ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from experiments.common import CACHE, compact, evaluate_splits, flat_metrics, table_head, table_row, use_project

# arm -> extra overrides. `off_labeled_half`: no distillation, batch = the labelled part of the `on`
# arm's batch, so the two differ only by the distillation term (the `on` arm gives half of each
# batch to unlabelled panoramas)
ARMS = {"off": ["distill.enabled=false"], "on": ["distill.enabled=true"], "off_labeled_half": ["distill.enabled=false"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="small")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--project", type=Path, default=None, help="the stage experiment's project folder")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS),
                    help="arms to run; results of arms not run are kept from an existing --out")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default <project>/distill.json)")
    args = ap.parse_args()
    project = (args.project or CACHE / args.profile).resolve()
    args.out = args.out or project / "distill.json"
    source = project / "data"
    if not (source / "models" / "stage3" / "model.safetensors").is_file():
        raise SystemExit(f"{source}: no stage-3 model; run python -m experiments.stages --profile {args.profile} first")
    use_project(project)

    import mlflow
    import torch
    from mlflow import MlflowClient

    from dap_model.config import load_config
    from dap_model.distill.pseudo import build_perspective_pseudo_labels
    from dap_model.storage import LocalStore
    from dap_model.tracking import setup_mlflow
    from dap_model.training.stages import model_key, run_stage
    from dap_model.tracking import log_metrics_to_run

    data = project / "data_distill"
    if data.exists():
        shutil.rmtree(data)
    shutil.copytree(source, data, ignore=shutil.ignore_patterns("pseudo", "curation", "distill"))
    store = LocalStore(data)
    base = [*args.overrides, "mlflow.experiment=dap-distill-ablation", "distill.teacher=dap",
            "distill.teacher_model=models/stage3/model.safetensors"]
    timings: dict[str, float] = {}
    t = time.perf_counter()
    labels = build_perspective_pseudo_labels(load_config(args.profile, base), store, progress=False)
    timings["perspective_pseudo_labels"] = time.perf_counter() - t
    setup_mlflow(load_config(args.profile, base).mlflow)
    client = MlflowClient()
    previous = json.loads(args.out.read_text()) if args.out.is_file() and set(args.arms) != set(ARMS) else {}
    results, runs = dict(previous.get("results", {})), dict(previous.get("mlflow_runs", {}))
    timings = {**previous.get("seconds", {}), **timings}
    for arm in args.arms:
        extra = list(ARMS[arm])
        if arm == "off_labeled_half":
            from dap_model.distill.train import split_batch

            full = load_config(args.profile, base)
            extra.append(f"train.batch_size={split_batch(full.train.batch_size, full.distill.unlabeled_fraction)[0]}")
        cfg = load_config(args.profile, [*base, *extra])
        t = time.perf_counter()
        res = run_stage(cfg, store, "stage1", pipeline_run=f"experiment_distill/{arm}", progress=False, register=False)
        timings[f"stage1[distill {arm}]"] = time.perf_counter() - t
        print(f"stage1[distill {arm}]: {timings[f'stage1[distill {arm}]']:.0f} s", flush=True)
        client.set_tag(res.run_id, "dap.distill", arm)
        evals = evaluate_splits(cfg, store, store.fetch(model_key("stage1")))
        log_metrics_to_run(cfg, res.run_id, flat_metrics(evals))
        results[f"distill_{arm}"] = compact(evals)
        runs[f"distill_{arm}"] = res.run_id
    cfg = load_config(args.profile, base)
    summary = {
        "setting": {"profile": args.profile, "overrides": base, "train": cfg.train.model_dump(),
                    "distill": cfg.distill.model_dump(), "model": cfg.model.backbone,
                    "teacher": "dap: experiments.stages' stage-3 model",
                    "rotated_views_kept": int(labels.manifest["kept"].sum()), "rotated_views": int(len(labels.manifest)),
                    "mask": labels.masker,
                    "machine": f"{os.cpu_count()} CPU cores, torch {torch.__version__}, no GPU"},
        "results": results,
        "mlflow_runs": runs,
        "mlflow": {"tracking_uri": mlflow.get_tracking_uri(), "experiment": cfg.mlflow.experiment},
        "seconds": timings,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, default=float))
    lines = table_head("stage 1") + [table_row(name.replace("_", " "), res) for name, res in results.items()]
    lines += ["", f"Setting: profile {args.profile}, {cfg.train.steps} steps per arm, teacher = the stage-3 model of "
              f"experiments.stages, {summary['setting']['rotated_views_kept']} of {summary['setting']['rotated_views']} "
              f"rotated pool panoramas kept ({cfg.distill.rotations} random rotations each), mask {labels.masker}; "
              f"{summary['setting']['machine']}. MLflow: {mlflow.get_tracking_uri()}, experiment {cfg.mlflow.experiment}."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
