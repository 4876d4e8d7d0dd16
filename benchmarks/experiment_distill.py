"""Ablation: stage 1 with and without the Depth Anywhere term, evaluated on the labelled test
split and the web-domain test split; results logged to MLflow (experiment `dap-distill-ablation`,
runs tagged dap.stage=stage1, dap.distill=on|off) and written to benchmarks/results/distill.json.

Setting (a 2-core CPU VM cannot run the `small` profile's 2000-step stage 1 twice in the time
available): the `test` profile's network, the trainer's analytic box-room store (tests/
training_data.py) at H=--height, --steps optimiser steps each. Teacher: a DAP model trained on the
same labelled data for --teacher-steps steps (standing in for the project's stage-3 model),
builtin sky mask, K=2 rotations.

    python benchmarks/experiment_distill.py [--steps 60] [--height 32] [--teacher-steps 120]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--teacher-steps", type=int, default=120)
    ap.add_argument("--height", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "distill.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="distill-ablation-"))
    os.environ["DAP_PROJECT_DIR"] = str(tmp)
    import mlflow
    import torch

    from dap_model.config import load_config
    from dap_model.distill.pseudo import build_perspective_pseudo_labels
    from dap_model.models import load_model
    from dap_model.storage import LocalStore
    from dap_model.training.stages import run_stage, split_shard_keys
    from dap_model.training.evaluate import evaluate_paths
    from tests.training_data import build_store

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    root = build_store(tmp / "data", h=args.height, n_train=24, n_val=4, n_test=8, n_pool=16, n_web_test=8)
    store = LocalStore(root)
    base = ["train.val_every=100000", f"train.checkpoint_every={10**6}", f"train.height={args.height}",
            "train.batch_size=4", f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db", "mlflow.experiment=dap-distill-ablation",
            "model.mask_threshold=1e-6"]
    t0 = time.perf_counter()
    teacher = run_stage(load_config("test", base + [f"train.steps={args.teacher_steps}"]), store, "stage1",
                        run_dir=tmp / "teacher", progress=False, register=False, log_model=False)
    store.put_file(teacher.checkpoint, "models/stage3/model.safetensors")  # the teacher, as a published model
    labels = build_perspective_pseudo_labels(load_config("test", base + ["distill.rotations=2"]), store, progress=False)
    results = {"setting": {"profile": "test (network)", "height": args.height, "steps": args.steps,
                           "teacher_steps": args.teacher_steps, "batch": "4 (2 labelled + 2 unlabelled with distill)",
                           "pseudo_labels": int(labels.manifest["kept"].sum()), "teacher": "dap (stage-1-trained stand-in)",
                           "mask": labels.masker, "device": "cpu", "machine": "2-core CPU VM, shared"}}
    test_paths = [Path(store.fetch(k)) for k in split_shard_keys(store, "labeled", "test")]
    web_paths = [Path(store.fetch(k)) for k in split_shard_keys(store, "web/test")]
    for arm in ("off", "on"):
        cfg = load_config("test", base + [f"train.steps={args.steps}", f"distill.enabled={arm == 'on'}"])
        res = run_stage(cfg, store, "stage1", run_dir=tmp / f"stage1-{arm}", progress=False, register=False,
                        log_model=False)
        model = load_model(res.checkpoint).eval()
        arm_res = {"seconds": round(res.seconds, 1), "train": {k: v for k, v in res.metrics.items() if k.startswith("train/")}}
        for name, paths in (("labeled_test", test_paths), ("web_test", web_paths)):
            m, _ = evaluate_paths(model, paths, args.height, 4, torch.device("cpu"), 100.0)
            arm_res[name] = m
            with mlflow.start_run(run_id=res.run_id):
                mlflow.set_tag("dap.distill", arm)
                mlflow.log_metrics({f"{name}/{k}": float(v) for k, v in m.items() if k != "n_images"})
        results[f"distill_{arm}"] = arm_res
    results["total_seconds"] = round(time.perf_counter() - t0, 1)
    results["mlflow"] = {"tracking_uri": f"sqlite:///{tmp}/mlflow.db", "experiment": "dap-distill-ablation"}
    Path(args.out).write_text(json.dumps(results, indent=2, default=float))
    print(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
