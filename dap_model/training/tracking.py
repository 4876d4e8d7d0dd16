"""MLflow helpers of the trainer: run lifecycle, logged model, registry versions (tags, the
champion alias and metrics onto a run: `dap_model.tracking`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from dap_model.config import DapConfig
from dap_model.tracking import STAGE_TAG, setup_mlflow


class DepthPredictor(nn.Module):
    """What MLflow serves: rgb [B,3,H,W] float32 in [0,1] -> depth [B,1,H,W] metres (mask rule)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.model.predict(rgb)


def start_run(cfg: DapConfig, stage: str, run_id: str | None, tags: dict[str, str]):
    """Start (or, with `run_id`, resume) the training run `stage` in experiment `cfg.mlflow.experiment`."""
    import mlflow

    exp_id = setup_mlflow(cfg.mlflow)
    if run_id:
        return mlflow.start_run(run_id=run_id)
    run = mlflow.start_run(experiment_id=exp_id, run_name=stage, tags=tags)
    params = {k: str(v)[:500] for k, v in cfg.flat().items()}
    items = list(params.items())
    for i in range(0, len(items), 100):
        mlflow.log_params(dict(items[i : i + 100]))
    return run


def log_model_version(
    cfg: DapConfig,
    model: nn.Module,
    stage: str,
    height: int,
    files: list[Path],
    register: bool = True,
) -> str | None:
    """Log the model (torch.export "pt2": no pickle; input example float32 [2,3,H,2H] so the batch
    dimension stays dynamic — H and W are fixed by the export) with the safetensors checkpoint and
    config beside it, register it as a version of `cfg.mlflow.registered_model`, tag the version
    with its stage. Returns the version (None when not registering)."""
    import mlflow
    from mlflow import MlflowClient

    example = np.random.default_rng(0).random((2, 3, height, 2 * height), dtype=np.float32)
    was_training = model.training
    cpu_model = DepthPredictor(model).to("cpu").eval()
    info = mlflow.pytorch.log_model(
        cpu_model,
        name="model",
        input_example=example,
        registered_model_name=cfg.mlflow.registered_model if register else None,
        extra_files=[str(f) for f in files],
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "safetensors", "numpy"],
        await_registration_for=60,
        serialization_format="pt2",
        validate_serving_input=False,  # reloads the exported graph: slow, and checked by tests
    )
    model.train(was_training)
    version = getattr(info, "registered_model_version", None)
    if register and version is not None:
        client = MlflowClient()
        client.set_model_version_tag(cfg.mlflow.registered_model, str(version), STAGE_TAG, stage)
        client.set_model_version_tag(cfg.mlflow.registered_model, str(version), "dap.run_id", info.run_id)
        return str(version)
    return None
