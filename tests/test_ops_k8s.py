"""What the Kubernetes deployment creates is valid Kubernetes: the step Jobs dagster-k8s builds for
every op of the location's jobs (dagster-k8s' own builder, our op tags and Helm run config), the
Indexed Job of the multi-node stage 3 and the raw manifests in infra/k8s, each checked by
kubernetes-validate against the Kubernetes OpenAPI schemas (strict: unknown fields fail)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes
import kubernetes_validate
import pytest
import yaml
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    UserDefinedDagsterK8sConfig,
    construct_dagster_k8s_job,
    get_k8s_job_name,
    get_user_defined_k8s_config,
)

from dap_assets.deployment import (
    K8S_CONFIG_TAG,
    POD_IP_ENV,
    RDZV_ENDPOINT_ENV,
    gpu_op_tags,
    load_deployment,
)
from dap_assets.multinode import WORKER_ENTRY, worker_job

ROOT = Path(__file__).resolve().parents[1]
HELM = yaml.safe_load((ROOT / "infra" / "helm" / "values.yaml").read_text())
K8S_DEPLOYMENT = load_deployment(ROOT / "infra" / "deployment" / "k8s.yaml")
RAW_MANIFESTS = sorted((ROOT / "infra" / "k8s").glob("*.yaml"))
NAMESPACE = "dap"
# The oldest Kubernetes minor the deployment supports, and the newest schema the validator ships.
K8S_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
_HELM_RUN_KEYS = {"containerConfig": "container_config", "podSpecConfig": "pod_spec_config",
                  "podTemplateSpecMetadata": "pod_template_spec_metadata", "jobSpecConfig": "job_spec_config",
                  "jobMetadata": "job_metadata", "jobConfig": "job_config"}


def _validate(manifest: dict) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


def _api_json(model) -> dict:
    """A kubernetes client model as the API server receives it (camelCase JSON)."""
    return kubernetes.client.ApiClient().sanitize_for_serialization(model)


def _step_job(op_tags: dict, step_key: str, run_id: str = "0123abcd-run") -> dict:
    """The Job the k8s_job_executor creates for one step: the Helm values' run launcher config
    (env secrets, service account, runK8sConfig) merged with the op's `dagster-k8s/config` tag,
    built by dagster-k8s' construct_dagster_k8s_job as `K8sStepHandler.launch_step` does."""
    launcher = HELM["runLauncher"]["config"]["k8sRunLauncher"]
    run_cfg = {_HELM_RUN_KEYS[k]: v for k, v in launcher["runK8sConfig"].items()}
    ctx = K8sContainerContext(
        namespace=NAMESPACE, service_account_name=HELM["global"]["serviceAccountName"],
        env_secrets=[s["name"] for s in launcher["envSecrets"]],
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(run_cfg),
    )
    tags = {k: v if isinstance(v, str) else json.dumps(v) for k, v in op_tags.items()}
    ctx = ctx.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(tags)))
    image = HELM["dagster-user-deployments"]["deployments"][0]["image"]
    job_config = DagsterK8sJobConfig(
        job_image=f"{image['repository']}:{image['tag']}", dagster_home="/opt/dagster/dagster_home",
        instance_config_map="dap-dagster-instance", postgres_password_secret=HELM["global"]["postgresqlSecretName"],
    )
    name = f"dagster-step-{get_k8s_job_name(run_id, step_key)}"
    job = construct_dagster_k8s_job(
        job_config=job_config, args=["dagster", "api", "execute_step"], job_name=name, pod_name=name,
        component="step_worker", user_defined_k8s_config=ctx.run_k8s_config,
        labels={"dagster/job": "weekly_retrain", "dagster/op": step_key, "dagster/run-id": run_id},
        env_vars=[{"name": "DAGSTER_RUN_STEP_KEY", "value": step_key}],
    )
    return _api_json(job)


def _step_pod(job: dict, ip: str = "10.4.0.7") -> dict:
    """The pod the Job controller makes from a step Job, as the API returns it to the pod itself."""
    pod = copy.deepcopy(job["spec"]["template"])
    pod["metadata"] |= {"name": f"{job['metadata']['name']}-x7k2p", "namespace": NAMESPACE, "uid": "5f0c2b9e-uid"}
    pod["status"] = {"podIP": ip}
    token = {"name": "kube-api-access-x2b9q", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
    pod["spec"]["volumes"].append(token)  # what the API server adds to every pod
    pod["spec"]["containers"][0]["volumeMounts"].append(
        {"name": token["name"], "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True})
    return pod


def _location_steps() -> list[tuple[str, str, dict]]:
    from dap_assets.definitions import defs

    steps = []
    for job in defs.resolve_all_job_defs():
        for node in job.graph.node_dict.values():
            steps.append((job.name, node.name, dict(node.definition.tags)))
    return steps


def test_every_step_job_of_the_location_is_valid_kubernetes():
    steps = _location_steps()
    assert {j for j, _, _ in steps} >= {"ingest", "web_video_ingest", "weekly_retrain"}
    cpu = [s for s in steps if K8S_CONFIG_TAG not in s[2]]
    assert cpu and len(cpu) < len(steps), "both CPU steps and the GPU step"
    for job_name, op, tags in steps:
        manifest = _step_job(tags, op)
        _validate(manifest)
        pod = manifest["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == HELM["global"]["serviceAccountName"]
        assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "dap-object-store"}}]
        if K8S_CONFIG_TAG not in tags:  # the Helm run config's CPU pool
            assert pod["nodeSelector"] == {"dap.io/node-pool": "cpu"}, f"{job_name}/{op}"


@pytest.mark.parametrize("nodes", [1, 4])
def test_gpu_step_job_of_the_k8s_deployment_is_valid_and_asks_for_the_gpu_pool(nodes):
    dep = K8S_DEPLOYMENT.model_copy(update={"gpu_nodes": nodes})
    manifest = _step_job(gpu_op_tags(dep), "dap_depth_model")
    _validate(manifest)
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == str(dep.gpus_per_run) == "8"
    assert pod["nodeSelector"] == dep.gpu_node_selector
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    env = {e["name"]: e for e in container["env"]}
    if nodes == 1:
        assert RDZV_ENDPOINT_ENV not in env
    else:  # downward API: the pod's own IP, then kubelet's $(VAR) expansion into host:port
        assert env[POD_IP_ENV]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert env[RDZV_ENDPOINT_ENV]["value"] == f"$({POD_IP_ENV}):{dep.rdzv_port}"
        names = [e["name"] for e in container["env"]]
        assert names.index(POD_IP_ENV) < names.index(RDZV_ENDPOINT_ENV), "$(VAR) expands only earlier vars"


def _multinode_manifest(nodes: int = 4) -> tuple[dict, dict, list[str]]:
    from dap_assets.assets.training import launch_command
    from dap_model.config import load_config

    dep = K8S_DEPLOYMENT.model_copy(update={"gpu_nodes": nodes})
    step = _step_pod(_step_job(gpu_op_tags(dep), "dap_depth_model"))
    os.environ[RDZV_ENDPOINT_ENV] = f"{step['status']['podIP']}:{dep.rdzv_port}"
    try:
        cmd = launch_command(load_config("test"), [], "RUN", gpus=dep.gpus_per_run, nodes=nodes, node_rank=None)
    finally:
        del os.environ[RDZV_ENDPOINT_ENV]
    return worker_job(step, cmd, nodes), step, cmd


def test_multinode_worker_job_is_a_valid_indexed_job_on_the_gpu_pool_owned_by_the_step_pod():
    job, step, cmd = _multinode_manifest(nodes=4)
    _validate(job)
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 3
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    step_container = step["spec"]["containers"][0]
    for key in ("image", "resources", "envFrom"):
        assert container[key] == step_container[key], key
    for key in ("nodeSelector", "tolerations", "serviceAccountName"):
        assert pod[key] == step["spec"][key], key
    assert container["command"] == ["/bin/sh", "-c", WORKER_ENTRY, *cmd] and "args" not in container
    assert not any(v["name"].startswith("kube-api-access-") for v in pod["volumes"]), "the API adds the workers' own"
    assert not any(m["name"].startswith("kube-api-access-") for m in container["volumeMounts"])
    names = {e["name"] for e in container["env"]}
    assert POD_IP_ENV not in names and RDZV_ENDPOINT_ENV not in names, "node 0's address is in the command"
    assert f"--rdzv_endpoint=10.4.0.7:{K8S_DEPLOYMENT.rdzv_port}" in cmd
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Pod", step["metadata"]["name"], step["metadata"]["uid"])
    assert len(job["metadata"]["name"]) + 1 + len(str(spec["completions"] - 1)) <= 63, "indexed pod hostname"


def test_worker_entry_gives_each_indexed_pod_the_next_node_rank():
    """The worker's shell entry, run for real: completion index 2 is node 3, the argv passes unchanged."""
    probe = [sys.executable, "-c", "import os, sys; print(os.environ['PET_NODE_RANK'], sys.argv[1:])", "a b", "--x=$y"]
    out = subprocess.run(["/bin/sh", "-c", WORKER_ENTRY, *probe], env={**os.environ, "JOB_COMPLETION_INDEX": "2"},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "3 ['a b', '--x=$y']"


def test_worker_job_refuses_a_fixed_node_rank_and_a_single_node():
    _, step, cmd = _multinode_manifest(nodes=2)
    with pytest.raises(ValueError, match="node_rank"):
        worker_job(step, [*cmd[:1], "--node_rank=0", *cmd[1:]], 2)
    with pytest.raises(ValueError, match="nodes=1"):
        worker_job(step, cmd, 1)


@pytest.mark.parametrize("path", RAW_MANIFESTS, ids=lambda p: p.name)
def test_raw_manifests_pass_kubernetes_validate(path):
    for version in K8S_VERSIONS:
        r = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version, str(path)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def test_rbac_binds_the_service_account_the_step_pods_run_as():
    docs = list(yaml.safe_load_all((ROOT / "infra" / "k8s" / "stage3-nodes-rbac.yaml").read_text()))
    role = next(d for d in docs if d["kind"] == "Role")
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": HELM["global"]["serviceAccountName"],
                                    "namespace": NAMESPACE}]
    verbs = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
             for v in rule["verbs"]}
    assert {("", "pods", "get"), ("batch", "jobs", "create")} <= verbs  # dap_assets.multinode.start_workers


def test_the_validator_rejects_a_broken_copy(tmp_path):
    """A misspelt field, a wrong type and a missing required field each fail, in generated Jobs
    and in a raw file. (The schemas carry no enums: `completionMode: Ordered` passes here and only
    the API server refuses it.)"""
    good = _step_job(gpu_op_tags(K8S_DEPLOYMENT), "dap_depth_model")
    typo = copy.deepcopy(good)
    pod = typo["spec"]["template"]["spec"]
    pod["nodeSelecter"] = pod.pop("nodeSelector")
    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["backoffLimit"] = "none"
    no_container, _, _ = _multinode_manifest()
    _validate(no_container)
    del no_container["spec"]["template"]["spec"]["containers"]
    for broken in (typo, wrong_type, no_container):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)
    text = (ROOT / "infra" / "k8s" / "stage3-nodes-rbac.yaml").read_text()
    broken_file = tmp_path / "rbac.yaml"
    broken_file.write_text(text.replace("roleRef:", "roleReference:", 1))
    r = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", K8S_VERSIONS[0],
                        str(broken_file)], capture_output=True, text=True)
    assert r.returncode != 0 and "'roleRef' is a required property" in r.stdout + r.stderr


def _torchrun_config(cmd: list[str]):
    """torchrun's own parser and launch config for a command `launch_command` built (the caller
    sets OMP_NUM_THREADS: config_from_args writes it into os.environ when unset)."""
    from torch.distributed.run import config_from_args, get_args_parser

    i = cmd.index("torch.distributed.run") + 1 if "torch.distributed.run" in cmd else 1
    args = get_args_parser().parse_args(cmd[i:])
    config, entry, entry_args = config_from_args(args)
    return args, config, entry_args


def test_multinode_launch_command_is_a_static_rendezvous_at_node_0(monkeypatch):
    from dap_assets.assets.training import launch_command
    from dap_model.config import load_config

    monkeypatch.setenv(RDZV_ENDPOINT_ENV, "10.4.0.7:29400")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    host = launch_command(load_config("test"), ["train.steps=3"], "RUN-7", gpus=8, nodes=4)
    args, config, entry_args = _torchrun_config(host)
    assert (config.min_nodes, config.max_nodes, config.nproc_per_node) == (4, 4, 8)
    assert (config.rdzv_backend, config.rdzv_endpoint, config.run_id) == ("static", "10.4.0.7:29400", "RUN-7")
    assert config.rdzv_configs["rank"] == 0, "node 0 holds global rank 0, the dagster-pipes reporter"
    module = entry_args[entry_args.index("-m") + 1:]
    assert args.module and module[:3] == ["dap_model.training.launch", "--stage", "stage3"]
    assert entry_args[-2:] == ["--set", "train.steps=3"]
    worker = launch_command(load_config("test"), ["train.steps=3"], "RUN-7", gpus=8, nodes=4, node_rank=None)
    assert [a for a in host if not a.startswith("--node_rank")] == worker
    monkeypatch.setenv("PET_NODE_RANK", "2")
    assert _torchrun_config(worker)[1].rdzv_configs["rank"] == 2


def test_multinode_launch_command_needs_the_rendezvous_endpoint(monkeypatch):
    from dap_assets.assets.training import launch_command
    from dap_model.config import load_config

    monkeypatch.delenv(RDZV_ENDPOINT_ENV, raising=False)
    with pytest.raises(ValueError, match=RDZV_ENDPOINT_ENV):
        launch_command(load_config("test"), [], "RUN", gpus=8, nodes=2)
    one_node = launch_command(load_config("test"), [], "RUN", gpus=8, nodes=1)
    assert "--standalone" in one_node and not any(a.startswith("--nnodes") for a in one_node)
