"""Does the three-stage loop help on the web domain? Stage 1, 2, 3 (and the control: stage 2/3
trained on K *random* stage-1 pseudo-labels per domain instead of the discriminator's top-K),
each evaluated on the labelled test split and the web-domain test split (`web/test/`), plus the
discriminator's rank correlation (score vs true AbsRel of each pseudo-label, on pool samples with
withheld GT: `dap_model.evaluation.withheld`). Where the real RGB + depth pairs exist (`--real`,
default ../shared/real/pairs), every model is also scored on them (AbsRel, δ1, scale-aligned
AbsRel, per source folder) beside constant-depth baselines (1.5 m, 2 m, `eval.baseline_depths_m`);
with `pool.real_sources` set, that is the sim → real measurement of the loop. Metrics are logged onto each training's MLflow run
(`labeled_test/abs_rel`, `web_test/abs_rel_aligned`, `web_test/city/abs_rel`, ...); the result goes
to `<project>/stages.json` and `.md` (`--out`); `python -m experiments.summary` tables seeds.

    python -m experiments.stages --profile tiny [--set KEY=VALUE ...]
        [--data-from DIR]   reuse a data store made by `make run` / the pipeline (its data/ folder)
        [--project DIR]     where this experiment keeps its store, runs and MLflow db
                            (default .cache/experiments/<profile>)
        [--real DIR]        the real pairs (default ../shared/real/pairs; skipped when absent)

Relative paths in --set values (`pool.real_sources`, `eval.benchmarks.*.root`) are under the
project folder, so real folders are best given absolute.

Without --data-from, the pipeline (`python -m dap_assets.pipeline`) first runs once into the
project folder with the same profile and overrides, for its data (simulator, web video,
synthesis, tags, pool); the experiment then trains its own stages on it."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from dap_model.io import atomic_write_text
from experiments.common import (CACHE, DEFAULT_REAL, REAL, compact, evaluate_splits, flat_metrics, open_real,
                                real_baselines, real_flat, real_table, score_real, table_head, table_row,
                                use_project)


def evaluate(cfg, store, model_file: Path, real=None) -> tuple[dict, dict[str, float]]:
    """(`compact` result per test split, MLflow metrics) of the model at `model_file`; with `real`
    (a reader of the real pairs) also its `score_real` result as split `real_dev`."""
    res = evaluate_splits(cfg, store, model_file)
    out, flat = compact(res), flat_metrics(res)
    if real is not None:
        from dap_model.models import load_model

        out[REAL] = score_real(cfg, load_model(model_file, map_location="cpu").eval(), real)
        flat |= real_flat(out[REAL])
    return out, flat


def oracle_arm(cfg, project: Path, data: Path, out: Path, real=None) -> int:
    """Stage 2 on the top-K per domain by true AbsRel of the stage-1 pseudo-labels (an upper bound for
    any curation; ground truth chooses here, so this is never a pipeline mode: it runs on a private
    copy of the store, whose curated manifest says `discriminator` because the schema knows only the
    two real selections). Appends `stage2_oracle` to `out` and its .md."""
    import pandas as pd

    from dap_model.evaluation.withheld import pseudo_label_errors
    from dap_model.storage import LocalStore
    from dap_model.tracking import setup_mlflow
    from dap_model.layout import CURATION_SCORES as SCORES_KEY
    from dap_model.training.curation import select_top_k, write_curated
    from dap_model.training.stages import model_key, run_stage
    from dap_model.tracking import log_metrics_to_run

    root = project / "data_oracle_topk"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(data, root, ignore=shutil.ignore_patterns("stage2", "stage3"))
    store = LocalStore(root)
    scores = pd.read_parquet(store.fetch(SCORES_KEY)).merge(
        pseudo_label_errors(cfg, store, "pseudo/stage1")[["key", "abs_rel"]], on="key")
    selected = select_top_k(scores.assign(score=1.0 / (1.0 + scores["abs_rel"])), cfg.curation.top_k_per_domain, "discriminator", 0)
    write_curated(cfg, store, selected, "pseudo/stage1")
    setup_mlflow(cfg.mlflow)
    t = time.perf_counter()
    res = run_stage(cfg, store, "stage2", pipeline_run="experiment_stages/oracle", progress=False, register=False)
    from mlflow import MlflowClient

    MlflowClient().set_tag(res.run_id, "dap.experiment_arm", "oracle")
    ev, flat = evaluate(cfg, store, store.fetch(model_key("stage2")), real)
    log_metrics_to_run(cfg, res.run_id, flat)
    summary = json.loads(out.read_text())
    summary["results"]["stage2_oracle"] = ev
    summary["mlflow_runs"]["stage2_oracle"] = res.run_id
    summary["seconds"]["stage2[oracle]"] = time.perf_counter() - t
    summary["curation"]["oracle"] = {"n_selected": len(selected), "true_abs_rel_selected": float(selected["abs_rel"].mean())}
    atomic_write_text(out, json.dumps(summary, indent=2, default=float))
    md = out.with_suffix(".md").read_text().split("\n")
    row = table_row("stage2_oracle", ev)
    at = md.index("") if "" in md else len(md)  # the end of the first table
    md.insert(at, row)
    md.append(f"Oracle (diagnostic): stage 2 on the {len(selected)} stage-1 pseudo-labels with the lowest true AbsRel "
              f"(mean {float(selected['abs_rel'].mean()):.4f}).")
    atomic_write_text(out.with_suffix(".md"), "\n".join(md).rstrip("\n") + "\n")
    print(row)
    return 0


def train_equal_compute(args, cfg, store):
    """Stage 1 for 3x `train.steps` on `store`'s labelled data alone, the steps stage 3 has had
    (stage 1 + 2 + 3 with `init_from_previous`), as an MLflow run tagged `stage1_3x_steps`:
    (training result, its config)."""
    from mlflow import MlflowClient

    from dap_model.config import load_config
    from dap_model.training.stages import default_run_dir, stage_inputs
    from dap_model.training.trainer import train as train_raw

    long_cfg = load_config(args.profile, [*args.overrides, f"train.steps={3 * cfg.train.steps}"])
    inputs = stage_inputs(long_cfg, store, "stage1")
    long = train_raw(long_cfg, "stage1", inputs.sources, inputs.val_paths,
                     default_run_dir(long_cfg, "stage1", inputs.data_versions), pipeline_run="experiment_stages/stage1_3x_steps",
                     data_versions=inputs.data_versions, progress=False, log_model=False)
    MlflowClient().set_tag(long.run_id, "dap.experiment_arm", "stage1_3x_steps")
    return long, long_cfg


def equal_compute_arm(args, cfg, project: Path, real=None) -> int:
    """On a finished run (its store and --out): `train_equal_compute`, scored as every arm and
    added to `--out` and its .md as `stage1_3x_steps`."""
    from dap_model.storage import LocalStore
    from dap_model.tracking import log_metrics_to_run, setup_mlflow

    summary = json.loads(args.out.read_text())
    store = LocalStore(project / "data")
    setup_mlflow(cfg.mlflow)
    t = time.perf_counter()
    long, long_cfg = train_equal_compute(args, cfg, store)
    ev, flat = evaluate(long_cfg, store, long.checkpoint, real)
    log_metrics_to_run(cfg, long.run_id, flat)
    res = summary["results"]
    res["stage1_3x_steps"] = ev
    summary["mlflow_runs"]["stage1_3x_steps"] = long.run_id
    summary["seconds"]["stage1_3x_steps"] = time.perf_counter() - t
    summary["stage3_beats_equal_compute_stage1_on_web"] = res["stage3"]["web_test"]["abs_rel"] < ev["web_test"]["abs_rel"]
    atomic_write_text(args.out, json.dumps(summary, indent=2, default=float))
    md = args.out.with_suffix(".md").read_text().split("\n")
    row = table_row("stage1_3x_steps", ev)
    at = md.index("") if "" in md else len(md)  # the end of the first table
    md.insert(at, row)
    if real is not None:
        r = ev[REAL]
        md.append(f"Equal compute: stage 1 for {3 * cfg.train.steps} steps, on the real pairs AbsRel {r['abs_rel']:.3f}, "
                  f"scale-aligned {r['abs_rel_aligned']:.3f}, δ1 {r['delta1']:.3f}.")
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(md).rstrip("\n") + "\n")
    print(row)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--data-from", type=Path, default=None)
    ap.add_argument("--project", type=Path, default=None)
    ap.add_argument("--no-control", action="store_true",
                    help="skip the random top-K arm (seed replicates of the discriminator arm)")
    ap.add_argument("--equal-compute", action="store_true",
                    help="also train stage 1 for 3x steps (stage 3 has had stage 1 + 2 + 3 steps)")
    ap.add_argument("--equal-compute-only", action="store_true",
                    help="on a finished run's store: train and score only the equal-compute stage 1, added to --out")
    ap.add_argument("--labeled-train-shards", type=int, default=0,
                    help="with --data-from: keep only the first N labelled train shards (a low-label regime)")
    ap.add_argument("--oracle", action="store_true",
                    help="diagnostic only, on a finished run's store: stage 2 on the K pseudo-labels per domain with the "
                         "lowest TRUE error (withheld GT) - the best any selection could do; added to --out")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default <project>/stages.json; .md beside it)")
    ap.add_argument("--real", type=Path, default=DEFAULT_REAL,
                    help="real RGB + depth pairs (npy layout, per source folder) every model is scored on; skipped when absent")
    args = ap.parse_args()
    project = use_project(args.project or CACHE / args.profile)
    args.out = args.out or project / "stages.json"

    import torch
    from mlflow import MlflowClient

    from dap_model.config import load_config
    from dap_model.storage import LocalStore
    from dap_model.tracking import setup_mlflow
    from dap_model.training.curation import run_curation, run_discriminator
    from dap_model.training.pseudo import pseudo_label_pool
    from dap_model.training.stages import model_key, run_stage
    from dap_model.tracking import log_metrics_to_run

    cfg = load_config(args.profile, args.overrides)
    data = project / "data"
    real = open_real(args.real)
    if args.oracle:
        return oracle_arm(cfg, project, data, args.out, real)
    if args.equal_compute_only:
        return equal_compute_arm(args, cfg, project, real)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if args.data_from:
        if data.exists():
            shutil.rmtree(data)
        shutil.copytree(args.data_from, data, ignore=shutil.ignore_patterns("models", "pseudo", "curation"))
        if args.labeled_train_shards:
            for extra in sorted((data / "labeled").glob("train-*.tar"))[args.labeled_train_shards:]:
                extra.unlink()
    elif not (data / "pool" / "manifest.parquet").exists():
        from dap_assets.pipeline import main as pipeline

        sets = [a for o in args.overrides for a in ("--set", o)]
        if pipeline(["--profile", args.profile, *sets]) != 0 and not (data / "pool" / "manifest.parquet").exists():
            raise SystemExit("the pipeline failed before the unlabelled pool existed")
    timings["data"] = time.perf_counter() - t0
    store = LocalStore(data)
    setup_mlflow(cfg.mlflow)
    client = MlflowClient()

    def step(name, fn):
        t = time.perf_counter()
        r = fn()
        timings[name] = time.perf_counter() - t
        print(f"{name}: {timings[name]:.0f} s", flush=True)
        return r

    runs: dict[str, dict] = {}

    def train(stage: str, arm: str, c, st):
        res = step(f"{stage}[{arm}]", lambda: run_stage(c, st, stage, pipeline_run=f"experiment_stages/{arm}",
                                                          progress=False, register=False))
        client.set_tag(res.run_id, "dap.experiment_arm", arm)
        runs[f"{stage}" if arm == "discriminator" else f"{stage}_{arm}"] = {
            "run_id": res.run_id, "file": st.fetch(model_key(stage)), "cfg": c, "store": st}

    train("stage1", "discriminator", cfg, store)
    step("pseudo_stage1", lambda: pseudo_label_pool(cfg, store, store.fetch(model_key("stage1")), "pseudo/stage1", "stage1", progress=False))
    step("discriminator", lambda: run_discriminator(cfg, store, store.fetch(model_key("stage1")), progress=False))
    arms = [("discriminator", cfg, store)]
    if not args.no_control:
        ctrl_root = project / "data_random_topk"
        if ctrl_root.exists():
            shutil.rmtree(ctrl_root)
        shutil.copytree(data, ctrl_root)
        arms.append(("random", load_config(args.profile, [*args.overrides, "curation.selection=random"]),
                     LocalStore(ctrl_root)))
    curation = {}
    for arm, c, st in arms:
        curation[arm] = step(f"curate[{arm}]", lambda: run_curation(c, st))
        train("stage2", arm, c, st)
        step(f"pseudo_stage2[{arm}]", lambda: pseudo_label_pool(c, st, st.fetch(model_key("stage2")), "pseudo/stage2", "stage2", progress=False))
        train("stage3", arm, c, st)


    import pandas as pd

    from dap_model.evaluation.withheld import pseudo_label_errors, rank_correlation, selection_error
    from dap_model.layout import CURATION_SCORES as SCORES_KEY, PSEUDO_CURATED as CURATED_PREFIX

    stage1_errors = pseudo_label_errors(cfg, store, "pseudo/stage1")
    rank_corr = rank_correlation(pd.read_parquet(store.fetch(SCORES_KEY)), stage1_errors)
    for arm, _, st in arms:
        selected = pd.read_parquet(st.fetch(f"{CURATED_PREFIX}/manifest.parquet"))["key"]
        curation[arm] |= selection_error(stage1_errors, selected)
    pseudo_quality = {}
    for name, st, prefix in (("stage1", store, "pseudo/stage1"), ("stage2", store, "pseudo/stage2"),
                             *[("stage2_random", st, "pseudo/stage2") for arm, _, st in arms if arm == "random"]):
        err = pseudo_label_errors(cfg, st, prefix)
        pseudo_quality[name] = {"n": len(err), "abs_rel_mean": float(err["abs_rel"].mean()),
                                "abs_rel_median": float(err["abs_rel"].median()),
                                "abs_rel_aligned_mean": float(err["abs_rel_aligned"].mean()),
                                "abs_rel_mean_by_source": err.groupby("gt_prefix")["abs_rel"].mean().to_dict()}

    results: dict[str, dict] = {}
    baselines = real_baselines(cfg, real) if real is not None else {}

    def write() -> None:
        """Score the runs not scored yet and (re)write the result JSON and .md."""
        for name, r in runs.items():
            if name not in results:
                res, flat = step(f"eval[{name}]", lambda: evaluate(r["cfg"], r["store"], r["file"], real))
                results[name] = res
                log_metrics_to_run(cfg, r["run_id"], flat)
        summary = {
            "setting": {"profile": args.profile, "overrides": args.overrides, "train": cfg.train.model_dump(),
                        "labeled_train_shards": args.labeled_train_shards or "all",
                        "curation": cfg.curation.model_dump(), "model": cfg.model.backbone,
                        "machine": f"{os.cpu_count()} CPU cores, torch {torch.__version__}, no GPU"},
            "results": results,
            "real_baselines": baselines,
            "rank_correlation": rank_corr,
            "curation": curation,
            "pseudo_label_true_error": pseudo_quality,
            "claim_stage3_beats_stage1_on_web": (
                results["stage3"]["web_test"]["abs_rel"] < results["stage1"]["web_test"]["abs_rel"]
                if "web_test" in results.get("stage1", {}) else None),
            "claim_stage3_beats_stage1_on_real": (
                results["stage3"][REAL]["abs_rel"] < results["stage1"][REAL]["abs_rel"] if real is not None else None),
            "stage3_beats_equal_compute_stage1_on_web": (
                results["stage3"]["web_test"]["abs_rel"] < results["stage1_3x_steps"]["web_test"]["abs_rel"]
                if "web_test" in results.get("stage1_3x_steps", {}) else None),
            "mlflow_runs": {k: v["run_id"] for k, v in runs.items()},
            "seconds": timings,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(summary, indent=2, default=float))
        lines = table_head("model") + [table_row(name, res) for name, res in results.items()]
        rc = summary["rank_correlation"]
        lines += ["", f"Discriminator: Spearman(score, true AbsRel) = {rc.get('spearman', float('nan')):.3f} "
                  f"(p = {rc.get('p_value', float('nan')):.3g}, n = {int(rc.get('n', 0))}); negative = useful; "
                  f"against the scale-aligned AbsRel (shape alone) {rc.get('spearman_aligned', float('nan')):.3f} "
                  f"(p = {rc.get('p_value_aligned', float('nan')):.3g}).",
                  f"Selected pseudo-labels' true AbsRel: discriminator {curation['discriminator'].get('true_abs_rel_selected', float('nan')):.4f}, "
                  f"random {curation.get('random', {}).get('true_abs_rel_selected', float('nan')):.4f}, "
                  f"pool mean {curation['discriminator'].get('true_abs_rel_all', float('nan')):.4f}."]
        lines.append("Pseudo-labels' true AbsRel over the pool (mean / median / scale-aligned mean): " + ", ".join(
            f"{k} {v['abs_rel_mean']:.4f} / {v['abs_rel_median']:.4f} / {v['abs_rel_aligned_mean']:.4f}"
            for k, v in pseudo_quality.items()) + ".")
        lines.append("Web test by scene kind, AbsRel (scale-aligned AbsRel, median log(pred/gt)): " + "; ".join(
            f"{name}: " + ", ".join(f"{k} {v['abs_rel']:.3f} ({v['abs_rel_aligned']:.3f}, {v['median_log_ratio']:+.2f})"
                                    for k, v in res.get("web_test", {}).get("by_kind", {}).items())
            for name, res in results.items()) + ".")
        if real is not None:
            lines += ["", f"Real pairs ({args.real}): AbsRel, scale-aligned AbsRel, δ1; per source folder "
                      "AbsRel / aligned / δ1.", ""]
            lines += real_table({**{n: r[REAL] for n, r in results.items()}, **summary["real_baselines"]})
            lines.append("")
        lines.append(f"Setting: profile {args.profile}, overrides {args.overrides or 'none'}, "
                     f"labelled train shards {args.labeled_train_shards or 'all'}, "
                     f"init_from_previous={cfg.train.init_from_previous}, pseudo_views={cfg.curation.pseudo_views}; "
                     f"{summary['setting']['machine']}.")
        atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
        print("\n".join(lines))

    write()
    # equal-compute baseline: stage 3 starts from stage 2, which starts from stage 1, so it has had
    # 3x the optimiser steps; stage 1 trained that long on labelled data alone separates "more
    # steps" from "pseudo-labels". It trains after the first write, so the stages' result is on
    # disk while it trains; the files are written again with it.
    long, long_cfg = step("stage1_3x_steps", lambda: train_equal_compute(args, cfg, store)) if args.equal_compute else (None, None)
    if long is not None:
        runs["stage1_3x_steps"] = {"run_id": long.run_id, "file": long.checkpoint, "cfg": long_cfg, "store": store}
        write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
