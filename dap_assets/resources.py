"""Resources: the resolved config, the data store, MLflow tracking.

Knobs are defined once, in `dap_model.config.DapConfig`; Dagster only picks a profile and
dotted overrides (launchpad: `resources.dap.config.overrides: ["train.steps=10"]`)."""

from __future__ import annotations

import os
import sys
from dagster import ConfigurableResource

from dap_model.config import DapConfig, load_config
from dap_model.storage import DataStore, open_store
from dap_model.tracking import PIPELINE_TAG, resolve_tracking_uri, setup_mlflow


def show_progress() -> bool:
    """Progress bars on long steps when a person watches (stderr is a terminal)."""
    return sys.stderr.isatty()


def pipeline_run_id(context) -> str:
    """The pipeline execution a Dagster run belongs to: its `dap.pipeline_run` tag (one id shared
    by every run that one `make run` launches), else the run's own id (a scheduled re-training)."""
    return context.run.tags.get(PIPELINE_TAG) or context.run.run_id


class DapConfigResource(ConfigurableResource):
    """Profile (default: $DAP_PROFILE or `tiny`) plus `KEY=VALUE` overrides of any knob."""

    profile: str = ""
    overrides: list[str] = []

    def get(self) -> DapConfig:
        return load_config(self.profile or os.environ.get("DAP_PROFILE") or None, self.overrides)


class StorageResource(ConfigurableResource):
    """The bulk data store chosen by the `storage.*` knobs (local folder or S3 via boto3).

    S3 credentials come only from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY),
    which boto3 reads itself; they are never part of run config or logs."""

    dap: DapConfigResource

    def store(self) -> DataStore:
        return open_store(self.dap.get().storage)


class MlflowResource(ConfigurableResource):
    """MLflow tracking: sqlite `mlflow.db` in the project folder unless configured otherwise."""

    dap: DapConfigResource

    def tracking_uri(self) -> str:
        return resolve_tracking_uri(self.dap.get().mlflow)

    def setup(self) -> str:
        """Connect (failing with a message naming the URI) and return the experiment id."""
        return setup_mlflow(self.dap.get().mlflow)


def default_resources(profile: str = "", overrides: list[str] | None = None) -> dict:
    dap = DapConfigResource(profile=profile, overrides=list(overrides or []))
    return {
        "dap": dap,
        "storage": StorageResource(dap=dap),
        "mlflow": MlflowResource(dap=dap),
    }
