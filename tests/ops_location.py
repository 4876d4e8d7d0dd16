"""A second code location for the operations tests: small assets that exercise the deployment
path (data store, DVC data version, GPU pool, MLflow) without training anything."""

import json

import dagster as dg

from dap_assets.deployment import DEPLOYMENT, transient_retry_policy
from dap_assets.resources import MlflowResource, StorageResource, default_resources
from dap_model.versioning import store_hash

PROBE_PREFIX = "ops_probe"


@dg.asset(group_name="ops", retry_policy=transient_retry_policy())
def ops_probe(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    store = storage.store()
    for i in range(3):
        store.put_bytes(f"{PROBE_PREFIX}/part-{i}.json", json.dumps({"i": i, "run": context.run_id}).encode())
    version = store_hash(store, PROBE_PREFIX)
    return dg.MaterializeResult(
        metadata={"uri": store.uri(PROBE_PREFIX), "dvc_md5": version},
        data_version=dg.DataVersion(version),
    )


@dg.asset(group_name="ops", pool=DEPLOYMENT.gpu_pool, deps=[ops_probe])
def ops_gpu_probe() -> None:
    return None


@dg.asset(group_name="ops")
def ops_mlflow_probe(context: dg.AssetExecutionContext, mlflow: MlflowResource) -> dg.MaterializeResult:
    import mlflow as mlf

    mlflow.setup()
    with mlf.start_run(tags={"dap.stage": "ops_probe", "dap.pipeline_run": context.run_id}) as run:
        mlf.log_metric("probe", 1.0)
    return dg.MaterializeResult(metadata={"mlflow_run_id": run.info.run_id})


defs = dg.Definitions(
    assets=[ops_probe, ops_gpu_probe, ops_mlflow_probe],
    resources=default_resources(),
)
