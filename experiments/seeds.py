"""How much does one training's test error move with the seed alone? Re-trains one stage with
`train.seed` = each of --seeds on a private copy of a stage experiment's store (same data, same
pseudo-labels, same budget) and evaluates it like `experiments.stages` does. The spread is the
noise floor every stage-vs-stage difference is read against.

    python -m experiments.seeds --profile small --experiment small_v2 --stage stage1 --seeds 1 2
        [--set KEY=VALUE ...]   the overrides the stage experiment ran with (or a changed budget)
        [--name steps440]       suffix of the result file when the overrides differ from the experiment's
        [--truth-labels]        the stage's pseudo-labels replaced by the pool's withheld true depth
                                (a ceiling: the loop with perfect labels; measurement only)
        [--pseudo-from stage1]  stage 3 on the stage-1 pseudo-labels of the whole pool (no compounding
                                through stage 2)

Writes `<project>/seeds_<stage>[_<name>].json` and `.md` (project = .cache/experiments/<experiment>);
each training is a run in the stage experiment's MLflow db (tag `dap.experiment_arm` = `seed<N>`)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from experiments.common import CACHE, compact, evaluate_splits, flat_metrics, table_head, table_row, use_project


def truth_labels(cfg, store, stage: str) -> int:
    """Rewrite the shards of `stage`'s pseudo-label prefix with the withheld ground truth of the same
    keys (`evaluation.withheld`), resized to each pseudo-label's size (nearest); returns the count."""
    import numpy as np
    import torch

    from dap_model.data.shards import Sample, ShardWriter
    from dap_model.evaluation.withheld import withheld_ground_truth
    from dap_model.training.data import decode_raw, read_raw
    from dap_model.training.stages import manifest_shard_keys, stage_spec

    gt = {key: depth for key, (_, depth) in withheld_ground_truth(store).items()}
    n = 0
    for k in manifest_shard_keys(store, stage_spec(stage).pseudo_prefix):
        path = Path(store.fetch(k))
        tmp = path.parent / "truth"
        w = ShardWriter(tmp, "t", 10**6)
        for key, parts in read_raw(path):
            rgb, pseudo, meta = decode_raw(key, parts, k)
            g = gt[key]
            if g.shape != pseudo.shape:
                g = torch.nn.functional.interpolate(torch.from_numpy(g)[None, None], size=pseudo.shape, mode="nearest")[0, 0].numpy()
            w.write(Sample(key, rgb, np.ascontiguousarray(g, np.float32), meta=meta))
            n += 1
        w.close()
        (tmp / w.written[0][0]).replace(path)
        tmp.rmdir()
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="small")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--experiment", default="small", help="the stage experiment's project name under .cache/experiments/")
    ap.add_argument("--store", default="data", help="the store inside the experiment (data, data_random_topk, ...)")
    ap.add_argument("--stage", default="stage1", choices=["stage1", "stage2", "stage3"])
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    ap.add_argument("--name", default="", help="suffix of the result file and store copies (e.g. steps440)")
    ap.add_argument("--truth-labels", action="store_true", help="train on the pool's true depth instead of its pseudo-labels")
    ap.add_argument("--pseudo-from", choices=["stage1"], help="stage 3 trains on this stage's pseudo-labels of the pool")
    args = ap.parse_args()
    project = CACHE / args.experiment
    source = project / args.store
    if not (source / "labeled" / "manifest.parquet").exists():
        raise SystemExit(f"{source}: no stage experiment store (run python -m experiments.stages first)")
    use_project(project)

    from mlflow import MlflowClient

    from dap_model.config import load_config
    from dap_model.storage import LocalStore
    from dap_model.tracking import setup_mlflow
    from dap_model.training.stages import model_key, run_stage
    from dap_model.tracking import log_metrics_to_run

    tag = f"_{args.name}" if args.name else ""
    out = project / f"seeds_{args.stage}{tag}.json"
    summary = json.loads(out.read_text()) if out.exists() else {"results": {}, "mlflow_runs": {}, "seconds": {}}
    for seed in args.seeds:
        cfg = load_config(args.profile, [*args.overrides, f"train.seed={seed}"])
        root = project / f"{args.store}_seed{seed}_{args.stage}{tag}"
        if root.exists():
            shutil.rmtree(root)
        shutil.copytree(source, root, ignore=shutil.ignore_patterns("models"))
        store = LocalStore(root)
        if args.pseudo_from:
            if args.stage != "stage3":
                raise SystemExit("--pseudo-from applies to stage3 (whose input is pseudo/stage2)")
            shutil.rmtree(root / "pseudo" / "stage2", ignore_errors=True)
            shutil.copytree(root / "pseudo" / args.pseudo_from, root / "pseudo" / "stage2")
        if args.truth_labels:
            print(f"{args.stage}: {truth_labels(cfg, store, args.stage)} pseudo-labels replaced by the true depth", flush=True)
        setup_mlflow(cfg.mlflow)
        t = time.perf_counter()
        res = run_stage(cfg, store, args.stage, pipeline_run=f"experiment_seeds/{seed}", progress=False, register=False)
        MlflowClient().set_tag(res.run_id, "dap.experiment_arm", f"seed{seed}")
        evals = evaluate_splits(cfg, store, store.fetch(model_key(args.stage)))
        ev = compact(evals)
        log_metrics_to_run(cfg, res.run_id, flat_metrics(evals))
        name = f"{args.stage}_seed{seed}"
        summary["results"][name] = ev
        summary["mlflow_runs"][name] = res.run_id
        summary["seconds"][name] = time.perf_counter() - t
        summary["setting"] = {"profile": args.profile, "overrides": args.overrides, "experiment": args.experiment,
                              "store": args.store, "machine": f"{os.cpu_count()} CPU cores, no GPU"}
        out.write_text(json.dumps(summary, indent=2, default=float))
        print(table_row(name, ev), flush=True)
    lines = table_head("seed") + [table_row(k, v) for k, v in sorted(summary["results"].items())]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
