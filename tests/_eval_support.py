"""Shared by the evaluation/report tests: one tiny checkpoint per seed and one migrated MLflow
sqlite database per session (copied into each test's project folder; creating it costs seconds)."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path

_TMP = Path(tempfile.mkdtemp(prefix="dap-eval-tests-"))


@functools.lru_cache(maxsize=None)
def tiny_checkpoint(seed: int = 0, mask_bias: float = 3.0) -> Path:
    """A random `test`-profile DapModel whose range mask says "valid" (bias) almost everywhere."""
    import torch

    from dap_model.config import load_config
    from dap_model.models import build_model, save_model

    torch.manual_seed(seed)
    model = build_model(load_config("test").model)
    with torch.no_grad():
        model.mask_head.conv3.weight.mul_(0.01)
        model.mask_head.conv3.bias.fill_(mask_bias)
    return save_model(model, _TMP / f"ckpt-{seed}-{mask_bias}")


@functools.lru_cache(maxsize=None)
def _mlflow_template() -> Path:
    from mlflow import MlflowClient

    db = _TMP / "template-mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()  # creates + migrates the schema
    return db


def fresh_mlflow_db() -> Path:
    """Copy the migrated empty database to `<project>/mlflow.db` (the default tracking store)."""
    project = Path(os.environ["DAP_PROJECT_DIR"])
    project.mkdir(parents=True, exist_ok=True)
    dst = project / "mlflow.db"
    shutil.copyfile(_mlflow_template(), dst)
    return dst


@functools.lru_cache(maxsize=None)
def constant_checkpoint(depth_m: float) -> Path:
    """A `test`-profile DapModel that predicts `depth_m` metres everywhere (valid everywhere)."""
    import math

    import torch

    from dap_model.config import load_config
    from dap_model.models import build_model, save_model

    cfg = load_config("test").model
    torch.manual_seed(0)
    model = build_model(cfg)
    p = depth_m / cfg.max_depth_m
    with torch.no_grad():
        model.depth_head.conv3.weight.zero_()
        model.depth_head.conv3.bias.fill_(math.log(p / (1 - p)))
        model.mask_head.conv3.weight.zero_()
        model.mask_head.conv3.bias.fill_(5.0)
    return save_model(model, _TMP / f"const-{depth_m:g}")
