"""The three trainings: `scene_invariant_labeler` (stage 1), `realism_invariant_labeler`
(stage 2), `dap_depth_model` (stage 3, the GPU job: an external torchrun process through
dagster-pipes, in the `gpu` pool, with its Kubernetes GPU request as op tags)."""


import os
import shutil
import sys
import warnings

from dagster import (
    AssetExecutionContext,
    AssetKey,
    DataVersion,
    MaterializeResult,
    PipesSubprocessClient,
    PreviewWarning,
    asset,
)

from dap_assets.deployment import DEPLOYMENT, RDZV_ENDPOINT_ENV, gpu_op_tags
from dap_assets.resources import DapConfigResource, MlflowResource, StorageResource, pipeline_run_id, show_progress
from dap_model.training.launch import result_metadata
from dap_model.training.stages import run_stage


def _materialize(result) -> MaterializeResult:
    return MaterializeResult(
        metadata=result_metadata(result),
        data_version=DataVersion(result.checkpoint_hash),
    )


@asset(group_name="training", deps=[AssetKey("labeled_panoramas")], code_version="train-1", kinds={"pytorch", "mlflow"})
def scene_invariant_labeler(context: AssetExecutionContext, dap: DapConfigResource, storage: StorageResource,
                            mlflow: MlflowResource) -> MaterializeResult:
    """Stage 1: the DAP model trained on labelled (synthetic) panoramas only."""
    mlflow.setup()
    return _materialize(run_stage(dap.get(), storage.store(), "stage1", pipeline_run=pipeline_run_id(context), progress=show_progress()))


@asset(group_name="training", deps=[AssetKey("labeled_panoramas"), AssetKey("curated_pseudo_labels"),
                                    scene_invariant_labeler], code_version="train-1", kinds={"pytorch", "mlflow"})
def realism_invariant_labeler(context: AssetExecutionContext, dap: DapConfigResource, storage: StorageResource,
                              mlflow: MlflowResource) -> MaterializeResult:
    """Stage 2: labelled + curated stage-1 pseudo-labels, starting from stage 1."""
    mlflow.setup()
    return _materialize(run_stage(dap.get(), storage.store(), "stage2", pipeline_run=pipeline_run_id(context), progress=show_progress()))


def launch_command(cfg, overrides: list[str], pipeline_run: str, gpus: int = DEPLOYMENT.gpus_per_run,
                   nodes: int = DEPLOYMENT.gpu_nodes, node_rank: int | None = 0) -> list[str]:
    """`python -m dap_model.training.launch` for one process, torchrun (`torch.distributed.run`) for more.

    One node: `--standalone`. Several: static rendezvous at `$DAP_RDZV_ENDPOINT` (node 0's address,
    the step pod's), so node 0 holds global rank 0, the rank that reports through dagster-pipes;
    `node_rank=None` leaves the node rank to `$PET_NODE_RANK` (set by each worker pod)."""
    args = ["-m", "dap_model.training.launch", "--stage", "stage3", "--profile", cfg.profile,
            "--pipeline-run", pipeline_run] + ([] if show_progress() else ["--no-progress"])
    for o in overrides:
        args += ["--set", o]
    if gpus == 1 and nodes == 1:
        return [sys.executable, *args]
    torchrun = shutil.which("torchrun")
    head = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
    if nodes == 1:
        return [*head, "--standalone", f"--nproc_per_node={gpus}", *args]
    endpoint = os.environ.get(RDZV_ENDPOINT_ENV)
    if not endpoint:
        raise ValueError(f"gpu_nodes={nodes} needs node 0's rendezvous address: ${RDZV_ENDPOINT_ENV} (host:port) is unset")
    rank = [] if node_rank is None else [f"--node_rank={node_rank}"]
    return [*head, f"--nnodes={nodes}", *rank, f"--nproc_per_node={gpus}", "--rdzv_backend=static",
            f"--rdzv_endpoint={endpoint}", f"--rdzv_id={pipeline_run}", *args]


@asset(group_name="training", deps=[AssetKey("labeled_panoramas"), AssetKey("stage2_pseudo_labels"),
                                    realism_invariant_labeler],
       pool=DEPLOYMENT.gpu_pool, op_tags=gpu_op_tags(), code_version="train-1", kinds={"pytorch", "mlflow"})
def dap_depth_model(context: AssetExecutionContext, dap: DapConfigResource, mlflow: MlflowResource) -> MaterializeResult:
    """Stage 3 (the GPU job): labelled + every stage-2 pseudo-label, as an external (torchrun)
    process that reports back through dagster-pipes; on CPU the same code runs in one process."""
    cfg = dap.get()
    mlflow.setup()
    cmd = launch_command(cfg, list(dap.overrides), pipeline_run_id(context))
    context.log.info(" ".join(cmd))
    if DEPLOYMENT.gpu_nodes > 1:
        from dap_assets.multinode import start_workers

        workers = launch_command(cfg, list(dap.overrides), pipeline_run_id(context), node_rank=None)
        context.log.info(f"nodes 1..{DEPLOYMENT.gpu_nodes - 1}: Kubernetes job {start_workers(workers, DEPLOYMENT.gpu_nodes)}")
    env = {"MLFLOW_TRACKING_URI": mlflow.tracking_uri()}
    with warnings.catch_warnings():  # dagster-pipes' message reader notes a preview API of its own
        warnings.simplefilter("ignore", PreviewWarning)
        return PipesSubprocessClient(env=env).run(context=context, command=cmd).get_materialize_result()
