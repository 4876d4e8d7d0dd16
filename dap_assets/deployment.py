"""Deployment settings of the code location: the re-training schedule, retries, the executor, the
GPU pool and the Kubernetes request of the GPU step.

These are not ML knobs (those live in `dap_model.config.DapConfig` and reach assets through run
config); they describe where and how the code location runs, so they are read once, when Dagster
loads the location, from the YAML file named by `$DAP_DEPLOYMENT` (`infra/deployment/*.yaml`),
else the defaults below (the embedded local deployment).

    @dg.asset(retry_policy=transient_retry_policy())           # downloads, S3 reads/writes
    @dg.asset(pool=DEPLOYMENT.gpu_pool, op_tags=gpu_op_tags())  # dap_depth_model
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from dagster import Backoff, Jitter, RetryPolicy, multi_or_in_process_executor
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEPLOYMENT_ENV = "DAP_DEPLOYMENT"
K8S_CONFIG_TAG = "dagster-k8s/config"
POD_IP_ENV = "DAP_POD_IP"
RDZV_ENDPOINT_ENV = "DAP_RDZV_ENDPOINT"  # host:port of node 0's rendezvous store (multi-node torchrun)
MAX_RETRIES_TAG = "dagster/max_retries"
RETRY_STRATEGY_TAG = "dagster/retry_strategy"


class Deployment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    retrain_cron: str = Field("0 3 * * 1", description="weekly re-training schedule (cron)")
    timezone: str = "UTC"
    retrain_schedule_enabled: bool = Field(False, description="the schedule runs as soon as the daemon loads it")
    step_retries: int = Field(3, ge=0, description="retries of a download/S3 step after a transient failure")
    step_retry_delay_s: float = Field(5.0, ge=0, description="first step retry delay; grows exponentially")
    run_retries: int = Field(1, ge=0, description="run-level retries (tag dagster/max_retries; run_retries enabled)")
    executor: Literal["default", "k8s"] = Field(
        "default", description="default = Dagster's multiprocess executor (run config may choose in_process); "
        "k8s = one pod per step (dagster-k8s)"
    )
    gpu_pool: str = Field("gpu", description="Dagster concurrency pool of the GPU steps")
    gpus_per_run: int = Field(1, ge=1, description="GPUs of the stage-3 step: torchrun nproc and nvidia.com/gpu")
    gpu_nodes: int = Field(
        1, ge=1, description="nodes of the stage-3 step: >1 = multi-node torchrun, the step pod is node 0 and an "
        "Indexed Job of gpu_nodes-1 pods (dap_assets.multinode) runs the others"
    )
    rdzv_port: int = Field(29400, ge=1, le=65535, description="torchrun rendezvous port on the step pod (node 0)")
    gpu_cpu_request: str = "8"
    gpu_memory_request: str = "64Gi"
    gpu_node_selector: dict[str, str] = Field(
        default_factory=lambda: {"dap.io/node-pool": "gpu"}, description="Kubernetes nodeSelector of GPU steps"
    )


def load_deployment(path: str | Path | None = None) -> Deployment:
    """The settings in `path` (default `$DAP_DEPLOYMENT`; neither = the local defaults)."""
    path = path or os.environ.get(DEPLOYMENT_ENV) or None
    if path is None:
        return Deployment()
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{DEPLOYMENT_ENV}={path}: no such deployment file")
    try:
        return Deployment.model_validate(yaml.safe_load(p.read_text()) or {})
    except ValidationError as err:
        parts = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ValueError(f"deployment file {p}: {parts}") from None


DEPLOYMENT = load_deployment()


def transient_retry_policy(dep: Deployment = DEPLOYMENT) -> RetryPolicy:
    """Step retries with exponential backoff and jitter, for network and object-store steps."""
    return RetryPolicy(max_retries=dep.step_retries, delay=dep.step_retry_delay_s,
                       backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


def run_retry_tags(dep: Deployment = DEPLOYMENT) -> dict[str, str]:
    """Run-level retries (the daemon re-launches a failed run when `run_retries` is enabled)."""
    return {MAX_RETRIES_TAG: str(dep.run_retries), RETRY_STRATEGY_TAG: "FROM_FAILURE"}


def gpu_k8s_config(dep: Deployment = DEPLOYMENT) -> dict:
    """Pod spec of the GPU step: `nvidia.com/gpu` requests = limits, the GPU node pool's
    nodeSelector and the NVIDIA taint's toleration (torchrun: one process per GPU). With
    `gpu_nodes > 1` the pod also learns its own address (downward API) as the rendezvous endpoint
    `$DAP_RDZV_ENDPOINT` that node 0's torchrun serves and the worker pods join."""
    gpus = str(dep.gpus_per_run)
    container: dict = {
        "resources": {
            "requests": {"cpu": dep.gpu_cpu_request, "memory": dep.gpu_memory_request, "nvidia.com/gpu": gpus},
            "limits": {"memory": dep.gpu_memory_request, "nvidia.com/gpu": gpus},
        },
    }
    if dep.gpu_nodes > 1:
        container["env"] = [
            {"name": POD_IP_ENV, "value_from": {"field_ref": {"field_path": "status.podIP"}}},
            {"name": RDZV_ENDPOINT_ENV, "value": f"$({POD_IP_ENV}):{dep.rdzv_port}"},  # kubelet expands $(VAR)
        ]
    return {
        "container_config": container,
        "pod_spec_config": {
            "node_selector": dict(dep.gpu_node_selector),
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    }


def gpu_op_tags(dep: Deployment = DEPLOYMENT) -> dict:
    return {K8S_CONFIG_TAG: gpu_k8s_config(dep)}


def executor_def(dep: Deployment = DEPLOYMENT):
    """The executor of every job of the location."""
    if dep.executor == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return multi_or_in_process_executor
