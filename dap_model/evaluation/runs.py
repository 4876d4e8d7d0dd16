"""MLflow lookups behind a report: which models it covers (`ModelEntry`), found from a training
asset's metadata, a training run's tags or the registry's champion alias."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dap_model import layout
from dap_model.config import DapConfig
from dap_model.errors import DapError, InputError
from dap_model.tracking import without_credentials


@dataclass
class ModelEntry:
    name: str  # "scene_invariant_labeler", ..., "champion"
    stage: str  # "stage1" | "stage2" | "stage3" | "champion"
    checkpoint: str  # local file/folder or MLflow model URI
    run_id: str | None = None  # the model's training run (metrics are logged onto it)
    version: str | None = None  # registered version of `mlflow.registered_model`


def champion_entry(cfg: DapConfig) -> ModelEntry | None:
    """The model behind `models:/<registered_model>@<champion_alias>`, or None when the model is
    not registered or has no such alias. Any other failure (an unreachable or refusing registry)
    is a DapError naming the registry URI and the model: never read as "no champion", which
    would let the gate promote without a comparison."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    name, alias = cfg.mlflow.registered_model, cfg.mlflow.champion_alias
    client = MlflowClient()
    try:
        try:  # the alias is read from the model, not from the by-alias call, whose "no such
            # alias" error (INVALID_PARAMETER_VALUE) is shared with real request errors
            version = client.get_registered_model(name).aliases.get(alias)
        except MlflowException as err:
            if err.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                return None  # the model is not registered yet
            raise
        if version is None:
            return None
        mv = client.get_model_version(name, str(version))
    except Exception as err:  # noqa: BLE001 — re-raised as one line naming the registry
        uri = mlflow.get_registry_uri()
        text = (str(err).strip().splitlines() or [""])[0][:300]
        raise DapError(f"champion models:/{name}@{alias}: MLflow registry {without_credentials(uri)} "
                       f"failed: {type(err).__name__}: {without_credentials(text, uri)}") from None
    return ModelEntry("champion", "champion", f"models:/{name}/{mv.version}",
                      run_id=mv.run_id, version=str(mv.version))


def find_training_run(cfg: DapConfig, stage: str, pipeline_run: str) -> tuple[str | None, str | None]:
    """(run id, registered version) of the `stage` training run tagged with `pipeline_run` (the
    Dagster run that materialised it), newest first; (None, None) when there is none."""
    from mlflow import MlflowClient

    from dap_model.tracking import PIPELINE_TAG, STAGE_TAG

    client = MlflowClient()
    exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    if exp is None or not pipeline_run:
        return None, None
    runs = client.search_runs([exp.experiment_id], filter_string=(
        f"tags.`{STAGE_TAG}` = '{stage}' and tags.`{PIPELINE_TAG}` = '{pipeline_run}'"),
        order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return None, None
    run_id = runs[0].info.run_id
    return run_id, registered_version(cfg, run_id)


def registered_version(cfg: DapConfig, run_id: str) -> str | None:
    from mlflow import MlflowClient

    found = MlflowClient().search_model_versions(
        f"name = '{cfg.mlflow.registered_model}' and run_id = '{run_id}'")
    return str(max(int(v.version) for v in found)) if found else None


def model_entry_from_metadata(name: str, stage: str, meta: dict[str, Any], store,
                              registered_model: str = "dap-depth", *, cfg: DapConfig | None = None,
                              pipeline_run: str = "") -> ModelEntry:
    """A `ModelEntry` from a training asset's materialisation metadata: the MLflow run id
    (`run_id` / `mlflow_run_id`), the registered version (`model_version` / `version`) and the
    checkpoint, in this order: an explicit `checkpoint` (local path, MLflow model URI), the
    registered version `models:/<name>/<version>`, the data-store key `model_key` /
    `checkpoint_key`, else the stage's published `models/<stage>/model.safetensors`. With `cfg`,
    missing MLflow ids are looked up: the run tagged `dap.stage` = stage and `dap.pipeline_run`
    = `pipeline_run` (the Dagster run that materialised the asset), and its registered version."""
    from dap_model.inference import is_mlflow_uri

    def pick(*keys: str) -> str | None:
        for k in keys:
            v = meta.get(k)
            if v not in (None, "", "none", "None"):
                return str(v)
        return None

    run_id = pick("run_id", "mlflow_run_id")
    version = pick("model_version", "version", "registered_version")
    if cfg is not None and run_id is None:  # metadata without MLflow ids: find the run by its tags
        run_id, found = find_training_run(cfg, stage, pipeline_run)
        version = version or found
    elif cfg is not None and version is None and run_id:
        version = registered_version(cfg, run_id)
    ckpt = pick("checkpoint", "checkpoint_uri", "model_uri")
    if ckpt is None and version is not None:  # immutable, unlike a store key that the next run overwrites
        ckpt = f"models:/{registered_model}/{version}"
    if ckpt is None:
        ckpt = pick("checkpoint_key", "model_key") or layout.model_key(stage)
    if is_mlflow_uri(ckpt):
        return ModelEntry(name, stage, ckpt, run_id, version)
    if ckpt.startswith("file://"):
        ckpt = ckpt[len("file://"):]
    if Path(ckpt).is_absolute():
        if not Path(ckpt).exists():
            raise InputError(f"{name}: checkpoint {ckpt} not found")
        return ModelEntry(name, stage, ckpt, run_id, version)
    key = ckpt  # a data-store key or URI (s3://bucket/prefix/key)
    base = store.uri("x")[:-1]
    if key.startswith(base):
        key = key[len(base):]
    try:
        ckpt = str(store.fetch(key))
    except Exception as err:
        raise InputError(f"{name}: checkpoint {ckpt!r} not found in the data store ({err})") from None
    return ModelEntry(name, stage, ckpt, run_id, version)
