"""Which backbone learns depth from scratch on CPU, and which of what it learns transfers to real
rooms? Stage 1 (labelled simulator panoramas only) trained once per arm — the ViT-tiny and timm
convolutional encoders behind the same DPT decoder — on one labelled set, at equal steps, batch,
seed and resolution; each model is scored through `dap_model.evaluation` on the labelled test split
and on the real RGB + depth pairs (`../shared/real/pairs`, per source folder, with the
median-scale-aligned AbsRel), beside the constant-depth baselines (`eval.baseline_depths_m`).
Wall time is reported as a ratio to the first arm only (the CPU is shared).

    python -m experiments.backbones --profile tiny [--set KEY=VALUE ...]   overrides of every arm
        [--arms vit_tiny resnet18 ...]   arms to run (ARMS); results of others are kept from --out
        [--arm-set ARM:KEY=VALUE ...]    an extra override of one arm (e.g. resnet18:train.lr_backbone=1e-3)
        [--name NAME]                    result file stem (default backbones)
        [--project DIR]                  default .cache/experiments/backbones_<profile>
        [--real DIR]                     the real pairs (default ../shared/real/pairs)

The labelled set (`airsim360/` rendered by `dap_model.sim`, ingested into `labeled/`) is made once
per project folder with the profile and the --set overrides, and reused while its sim/ingest
settings are unchanged. Writes `<project>/<name>.json` and `.md`; each training is a run in the
project's MLflow db (tag `dap.experiment_arm`)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from experiments.common import CACHE, DEFAULT_REAL, score_real, use_project

# arm -> model overrides (the decoder, loss and budget stay the profile's)
ARMS: dict[str, list[str]] = {
    "vit_tiny": ["model.backbone=vit_tiny_patch16_dinov3", "model.taps=[1, 2, 4, 5]"],
    "resnet18": ["model.backbone=resnet18", "model.taps=[1, 2, 3, 4]"],
    "resnet26d": ["model.backbone=resnet26d", "model.taps=[1, 2, 3, 4]"],
    "convnext_atto": ["model.backbone=convnext_atto", "model.taps=[0, 1, 2, 3]"],
    "efficientnet_b0": ["model.backbone=efficientnet_b0", "model.taps=[1, 2, 3, 4]"],
}
COLS = (("labeled_test", "abs_rel"), ("labeled_test", "delta1"), ("real_dev", "abs_rel"),
        ("real_dev", "abs_rel_aligned"), ("real_dev", "delta1"))


def make_labeled(cfg, store, root: Path) -> dict:
    """Render and ingest the labelled set unless `root` already holds one made with the same
    sim/ingest settings; returns the ingest counts."""
    from dap_model.data.labeled import ingest_labeled
    from dap_model.sim.airsim360 import simulate_to_store

    want = {"sim": cfg.sim.model_dump(), "ingest": cfg.ingest.model_dump()}
    stamp = root / "labeled_settings.json"
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return json.loads((root / "labeled_counts.json").read_text())
    for sub in ("airsim360", "labeled", "models"):
        shutil.rmtree(root / sub, ignore_errors=True)
    t = time.perf_counter()
    simulate_to_store(cfg, store)
    res = ingest_labeled(cfg, store)
    counts = {"counts": res.counts(), "seconds": time.perf_counter() - t}
    (root / "labeled_counts.json").write_text(json.dumps(counts, default=str))
    stamp.write_text(json.dumps(want))
    return counts


def render_md(summary: dict) -> str:
    head = ["| arm | labelled test AbsRel | δ1 | real AbsRel | real AbsRel, scale-aligned | real δ1 | wall time / first arm |",
            "|---|---|---|---|---|---|---|"]
    first = next(iter(summary["seconds"].values()), float("nan"))
    rows = []
    for name, res in summary["results"].items():
        vals = [res.get(b, {}).get(k, float("nan")) for b, k in COLS]
        ratio = summary["seconds"].get(name, float("nan")) / first
        rows.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in vals) + f" | {ratio:.2f} |")
    for name, res in summary.get("baselines", {}).items():
        rows.append(f"| {name} | — | — | {res['abs_rel']:.4f} | {res['abs_rel_aligned']:.4f} | {res['delta1']:.4f} | — |")
    folders = sorted({f for r in summary["results"].values() for f in r.get("real_dev", {}).get("by_folder", {})})
    fhead = ["| arm | " + " | ".join(f"{f} AbsRel / aligned" for f in folders) + " |", "|---|" + "---|" * len(folders)]
    frows = []
    for name, res in list(summary["results"].items()) + list(summary.get("baselines", {}).items()):
        bf = res.get("real_dev", res).get("by_folder", {})
        frows.append(f"| {name} | " + " | ".join(
            f"{bf[f]['abs_rel']:.3f} / {bf[f]['abs_rel_aligned']:.3f}" if f in bf else "—" for f in folders) + " |")
    return "\n".join(head + rows + ["", "Real pairs per source folder:", ""] + fhead + frows) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--arms", nargs="*", default=["vit_tiny", "resnet18", "convnext_atto"], choices=list(ARMS),
                    help="arms to train (none: only rewrite the .md from --out)")
    ap.add_argument("--arm-set", action="append", default=[], help="ARM:KEY=VALUE, an override of one arm")
    ap.add_argument("--name", default="backbones")
    ap.add_argument("--project", type=Path, default=None)
    ap.add_argument("--real", type=Path, default=DEFAULT_REAL)
    args = ap.parse_args()
    project = use_project(args.project or CACHE / f"backbones_{args.profile}")
    if not args.real.is_dir():
        raise SystemExit(f"{args.real}: real pairs folder does not exist")
    arm_sets: dict[str, list[str]] = {}
    for item in args.arm_set:
        arm, sep, kv = item.partition(":")
        if not sep or arm not in ARMS:
            raise SystemExit(f"--arm-set {item!r}: expected ARM:KEY=VALUE with ARM in {', '.join(ARMS)}")
        arm_sets.setdefault(arm, []).append(kv)

    from mlflow import MlflowClient

    from dap_model.benchmarks import open_benchmark
    from dap_model.config import load_config
    from dap_model.evaluation.baseline import ConstantDepthModel
    from dap_model.models import load_model
    from dap_model.storage import LocalStore
    from dap_model.tracking import log_metrics_to_run, setup_mlflow
    from dap_model.training.stages import run_stage
    from experiments.common import compact, evaluate_splits, flat_metrics

    base = load_config(args.profile, args.overrides)
    root = project / "data"
    store = LocalStore(root)
    data = make_labeled(base, store, root)
    print(f"labelled set: {data}", flush=True)
    reader = open_benchmark("npy", str(args.real))
    out = project / f"{args.name}.json"
    baselines = {ConstantDepthModel(d).name: score_real(base, ConstantDepthModel(d), reader)
                 for d in base.eval.baseline_depths_m}
    setup_mlflow(base.mlflow)
    for arm in args.arms:
        cfg = load_config(args.profile, [*args.overrides, *ARMS[arm], *arm_sets.get(arm, [])])
        name = arm + "".join(f" {kv}" for kv in arm_sets.get(arm, []))
        t = time.perf_counter()
        res = run_stage(cfg, store, "stage1", pipeline_run=f"experiment_backbones/{arm}", progress=False,
                        register=False, log_model=False)
        seconds = time.perf_counter() - t
        MlflowClient().set_tag(res.run_id, "dap.experiment_arm", name)
        model_file = project / "models" / args.name / f"{name.replace(' ', '_').replace('=', '-')}.safetensors"
        model_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(res.checkpoint, model_file)  # this run's own final model (arms may run side by side)
        evals = evaluate_splits(cfg, store, model_file)
        real = score_real(cfg, load_model(model_file).eval(), reader)
        log_metrics_to_run(cfg, res.run_id, {**flat_metrics(evals), "real_dev/abs_rel": real["abs_rel"],
                                             "real_dev/abs_rel_aligned": real["abs_rel_aligned"],
                                             "real_dev/delta1": real["delta1"]})
        # read again just before writing: processes training other arms into the same file merge
        summary = json.loads(out.read_text()) if out.exists() else {"results": {}, "seconds": {}, "mlflow_runs": {}}
        summary["baselines"] = baselines
        summary["results"][name] = {**compact(evals), "real_dev": real,
                                    "train_loss": res.metrics.get("train/loss", float("nan"))}
        summary["seconds"][name] = seconds
        summary["mlflow_runs"][name] = res.run_id
        summary["setting"] = {"profile": args.profile, "overrides": args.overrides, "labelled": data,
                              "steps": cfg.train.steps, "batch_size": cfg.train.batch_size, "height": cfg.train.height,
                              "machine": f"{os.cpu_count()} CPU cores (shared), no GPU"}
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2, default=float))
        tmp.replace(out)
        md = render_md(summary)
        out.with_suffix(".md").write_text(md)
        print(f"{name}: {seconds:.0f}s\n{md}", flush=True)
    if not args.arms and out.exists():
        out.with_suffix(".md").write_text(render_md(json.loads(out.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
