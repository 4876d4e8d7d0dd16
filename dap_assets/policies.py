"""Operational attributes that assets declare: retries for transient failures, the GPU pool and
the Kubernetes request of the GPU step. Values come from the `ops.*` knobs of the profile the
code location is loaded with ($DAP_PROFILE, a profile name or a resolved-config file).

    @dg.asset(retry_policy=transient_retry_policy())           # downloads, S3 reads/writes
    @dg.asset(pool=GPU_POOL, op_tags=gpu_op_tags())            # dap_depth_model
"""

from __future__ import annotations

from dagster import Backoff, Jitter, RetryPolicy, in_process_executor, multiprocess_executor

from dap_model.config import OpsConfig, load_config

K8S_CONFIG_TAG = "dagster-k8s/config"
MAX_RETRIES_TAG = "dagster/max_retries"
RETRY_STRATEGY_TAG = "dagster/retry_strategy"


def ops_config() -> OpsConfig:
    return load_config().ops


GPU_POOL = ops_config().gpu_pool


def transient_retry_policy(ops: OpsConfig | None = None) -> RetryPolicy:
    """Step retries with exponential backoff and jitter, for network and object-store steps."""
    ops = ops or ops_config()
    return RetryPolicy(
        max_retries=ops.step_retries,
        delay=ops.step_retry_delay_s,
        backoff=Backoff.EXPONENTIAL,
        jitter=Jitter.PLUS_MINUS,
    )


def run_retry_tags(ops: OpsConfig | None = None) -> dict[str, str]:
    """Run-level retries (the daemon re-launches a failed run when `run_retries` is enabled)."""
    ops = ops or ops_config()
    return {MAX_RETRIES_TAG: str(ops.run_retries), RETRY_STRATEGY_TAG: "FROM_FAILURE"}


def gpu_k8s_config(ops: OpsConfig | None = None) -> dict:
    """Pod spec of the GPU step: `nvidia.com/gpu` requests = limits, the GPU node pool's
    nodeSelector and the NVIDIA taint's toleration (torchrun: one process per GPU)."""
    ops = ops or ops_config()
    gpus = str(ops.gpus_per_run)
    return {
        "container_config": {
            "resources": {
                "requests": {"cpu": ops.gpu_cpu_request, "memory": ops.gpu_memory_request, "nvidia.com/gpu": gpus},
                "limits": {"memory": ops.gpu_memory_request, "nvidia.com/gpu": gpus},
            },
        },
        "pod_spec_config": {
            "node_selector": dict(ops.gpu_node_selector),
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
        },
    }


def gpu_op_tags(ops: OpsConfig | None = None) -> dict:
    return {K8S_CONFIG_TAG: gpu_k8s_config(ops)}


def _k8s_executor():
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor


EXECUTORS = {
    "multiprocess": lambda: multiprocess_executor,
    "in_process": lambda: in_process_executor,
    "k8s": _k8s_executor,
}


def executor_def(ops: OpsConfig | None = None):
    """The executor the `ops.executor` knob names."""
    return EXECUTORS[(ops or ops_config()).executor]()
