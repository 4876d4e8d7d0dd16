"""MLflow wiring shared by the CLI, the trainer and the Dagster resource (no Dagster here).

Default: a sqlite file `mlflow.db` in the project folder with artifacts under `mlartifacts/`,
unless `MLFLOW_TRACKING_URI` or the `mlflow.tracking_uri` knob says otherwise."""

from __future__ import annotations

import contextlib
import fcntl
import os
import urllib.parse
import urllib.request
import time
from pathlib import Path
from typing import Any

from dap_model.config import DapConfig, MlflowConfig, project_dir
from dap_model.errors import DapError

STAGE_TAG = "dap.stage"  # MLflow tag: which training (stage1, stage2, stage3, discriminator)
PIPELINE_TAG = "dap.pipeline_run"  # MLflow tag: one id per pipeline execution
DATA_TAG_PREFIX = "dap.data."  # MLflow tags: data versions a run read


def resolve_tracking_uri(cfg: MlflowConfig) -> str:
    if cfg.tracking_uri:
        return cfg.tracking_uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{project_dir() / 'mlflow.db'}"


def default_artifact_root() -> str:
    return (project_dir() / "mlartifacts").as_uri()


def without_credentials(text: str, uri: str | None = None) -> str:
    """`text` with the user:password part of `uri` (default: `text` itself as a URI) masked."""
    try:
        userinfo = urllib.parse.urlsplit(uri if uri is not None else text).netloc.rpartition("@")[0]
    except ValueError:
        return text
    return text.replace(userinfo + "@", "***@") if userinfo else text


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail early, naming the URI, when an HTTP tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    url = urllib.parse.urljoin(uri.rstrip("/") + "/", "health")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            pass
    except Exception as err:
        raise DapError(f"MLflow tracking server {without_credentials(uri)} is unreachable: "
                       f"{without_credentials(str(err), uri)}") from None


@contextlib.contextmanager
def _sqlite_init_lock(uri: str):
    """Serialise the first use of a sqlite store across processes: MLflow creates and migrates
    the schema on first connection, and two processes doing it at once collide ("table ...
    already exists")."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def setup_mlflow(cfg: MlflowConfig) -> str:
    """Point mlflow at the tracking store and make sure experiment `cfg.experiment` exists.

    Returns the experiment id."""
    import mlflow

    uri = resolve_tracking_uri(cfg)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    with _sqlite_init_lock(uri):
        return _ensure_experiment(mlflow, cfg, uri)


def _ensure_experiment(mlflow, cfg: MlflowConfig, uri: str) -> str:
    exp = mlflow.get_experiment_by_name(cfg.experiment)
    if exp is None:
        artifact_location = default_artifact_root() if uri.startswith("sqlite:") else None
        if artifact_location:
            Path(project_dir() / "mlartifacts").mkdir(parents=True, exist_ok=True)
        exp_id = mlflow.create_experiment(cfg.experiment, artifact_location=artifact_location)
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def set_alias(cfg: DapConfig, version: str, alias: str | None = None) -> None:
    """Point `models:/<registered_model>@<alias>` (default: the champion alias) at `version`."""
    from mlflow import MlflowClient

    setup_mlflow(cfg.mlflow)
    MlflowClient().set_registered_model_alias(
        cfg.mlflow.registered_model, alias or cfg.mlflow.champion_alias, str(version)
    )


def log_metrics_to_run(cfg: DapConfig, run_id: str, metrics: dict[str, Any], step: int | None = None) -> None:
    """Log numeric `metrics` onto an existing run (e.g. `web_test/abs_rel`)."""
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    setup_mlflow(cfg.mlflow)
    client = MlflowClient()
    ts = int(time.time() * 1000)

    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), ts, step or 0) for k, v in metrics.items() if np.isfinite(float(v))],
    )
