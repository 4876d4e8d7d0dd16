"""Process entry point of a training: `python -m dap_model.training.launch --stage stage3 ...`,
`torchrun --nproc_per_node=N -m dap_model.training.launch ...` (DDP) or `dap train ...`.

Started by Dagster through dagster-pipes (`PipesSubprocessClient`), rank 0 reports the
materialisation (metadata, data version = checkpoint hash) and its log lines back; `dagster_pipes`
is the small, dependency-free protocol package, imported only then (never Dagster itself)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from dap_model import layout


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dap_model.config import add_config_arguments
    from dap_model.training.stages import STAGES

    add_config_arguments(p)
    p.add_argument("--stage", required=True, choices=sorted(STAGES), help="which training")
    p.add_argument("--run-dir", type=Path, default=None, help="checkpoint folder (default: train.run_root/<stage>-<hash>)")
    p.add_argument("--pipeline-run", default="", help="Dagster run id (MLflow tag dap.pipeline_run)")
    p.add_argument("--stop-after", type=int, default=None, help="return after N steps (resumable)")
    p.add_argument("--no-register", action="store_true", help="log the model without registering a version")
    p.add_argument("--no-log-model", action="store_true", help="do not log the model to MLflow (implies --no-register)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--champion", action="store_true", help="point the champion alias at the new version")


def _pipes():
    """The dagster-pipes context when Dagster launched this process (rank 0 only)."""
    from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

    if os.environ.get("RANK", "0") != "0" or not PipesEnvVarParamsLoader().is_dagster_pipes_process():
        return contextlib.nullcontext(None)
    return open_dagster_pipes()


def result_metadata(result) -> dict:
    return {
        "stage": result.stage,
        "model_key": layout.model_key(result.stage),
        "mlflow_run_id": result.run_id or "",
        "model_version": result.model_version or "",
        "checkpoint_sha256": result.checkpoint_hash,
        "step": result.step,
        "resumed_from_step": result.resumed_from,
        "seconds": round(result.seconds, 2),
        **{k: float(v) for k, v in result.metrics.items()},
    }


def run_args(args: argparse.Namespace) -> int:
    from dap_model.config import config_from_args
    from dap_model.storage import open_store
    from dap_model.training.stages import run_stage
    from dap_model.tracking import set_alias

    cfg = config_from_args(args)
    store = open_store(cfg.storage)
    with _pipes() as pipes:
        if pipes is not None:
            pipes.log.info(f"{args.stage}: {cfg.train.steps} steps, world size {os.environ.get('WORLD_SIZE', '1')}")
        result = run_stage(
            cfg, store, args.stage, pipeline_run=args.pipeline_run, run_dir=args.run_dir,
            progress=not args.no_progress, stop_after=args.stop_after, register=not args.no_register, log_model=not args.no_log_model,
        )
        if os.environ.get("RANK", "0") != "0":
            return 0
        if args.champion and result.model_version:
            set_alias(cfg, result.model_version)
        meta = result_metadata(result)
        if pipes is None:  # standalone: the result on stdout; under Dagster it is the materialisation
            print(json.dumps(meta), flush=True)
        else:
            pipes.report_asset_materialization(
                metadata={k: v for k, v in meta.items()}, data_version=result.checkpoint_hash or None
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    from dap_model.errors import DapError

    p = argparse.ArgumentParser(prog="python -m dap_model.training.launch", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run_args(args)
    except DapError as err:
        print(f"dap train: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
