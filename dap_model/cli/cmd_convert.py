"""`dap convert RELEASE.pth --out DIR [--register]`: DAP's release as the project's checkpoint."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dap_model.cli import add_config_arguments, config_from_args

NAME = "convert"
HELP = ("write DAP's release model.pth as the project's checkpoint (model.safetensors + config); "
        "--register adds it to MLflow as a version of mlflow.registered_model")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("release", type=Path, metavar="RELEASE.pth", help="DAP's released state dict")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument("--register", action="store_true",
                   help="log it as an MLflow run (stage 'release') and register a model version; the exported "
                   "graph takes inputs of eval.height (0 = train.height)")
    add_config_arguments(p)


def run(args: argparse.Namespace) -> int:
    from dap_model.config import RESOLVED_CONFIG_NAME
    from dap_model.models.dap_release import convert_release

    cfg = config_from_args(args)
    model, file = convert_release(args.release, args.out, cfg)
    print(f"checkpoint={file} backbone={model.cfg.backbone}")
    if args.register:
        from dap_model.inference import round_to_patch
        from dap_model.training.checkpoint import file_sha256, safetensors_digest
        from dap_model.training.tracking import log_model_version, start_run

        import mlflow

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep CLI output to our lines
        cfg = cfg.model_copy(update={"model": model.cfg})
        tags = {"dap.stage": "release", "dap.release_sha256": file_sha256(args.release),
                "dap.checkpoint_sha256": safetensors_digest(file), "dap.profile": cfg.profile}
        run = start_run(cfg, "release", None, tags)
        try:
            height = round_to_patch(cfg.eval.height or cfg.train.height, model.patch_size)
            files = [file, file.with_suffix(".json"), file.parent / RESOLVED_CONFIG_NAME]
            version = log_model_version(cfg, model, "release", height, files, register=True)
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        mlflow.end_run()
        print(f"run_id={run.info.run_id} model={cfg.mlflow.registered_model} version={version}")
    return 0
