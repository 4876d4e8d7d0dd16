"""Multi-node stage 3 on Kubernetes (`Deployment.gpu_nodes > 1`).

The dagster-k8s step pod of `dap_depth_model` is node 0: its torchrun serves the static rendezvous
at its own address (`$DAP_RDZV_ENDPOINT`, from the downward API) and holds global rank 0, the rank
that reports through dagster-pipes. Nodes 1..N-1 are the pods of one Indexed Job built from the
step pod itself (same image, environment, secrets, GPU request, node pool and tolerations), each
pod running the same torchrun command with node rank `JOB_COMPLETION_INDEX + 1`. The Job is owned
by the step pod, so Kubernetes deletes the worker nodes with it.

    step pod (node 0, ranks 0..G-1) <- rendezvous <- Indexed Job pods 0..N-2 (nodes 1..N-1)
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence

from dap_assets.deployment import POD_IP_ENV, RDZV_ENDPOINT_ENV

# Each worker pod derives its node rank from its completion index (torchrun reads $PET_NODE_RANK).
WORKER_ENTRY = 'export PET_NODE_RANK=$((JOB_COMPLETION_INDEX + 1)); exec "$0" "$@"'
COMPONENT = "stage3-node"
FINISHED_TTL_S = 3600
_POD_KEYS = ("nodeSelector", "tolerations", "affinity", "serviceAccountName", "automountServiceAccountToken",
             "imagePullSecrets", "volumes", "securityContext", "priorityClassName", "schedulerName",
             "runtimeClassName")
_CONTAINER_KEYS = ("image", "imagePullPolicy", "envFrom", "resources", "volumeMounts", "securityContext",
                   "workingDir")
_API_TOKEN_VOLUME = "kube-api-access-"  # added to every pod by the API server; it adds the workers' own
_LABELS = ("dagster/job", "dagster/op", "dagster/run-id", "dagster/code-location", "app.kubernetes.io/instance")


def worker_job(step_pod: Mapping, command: Sequence[str], nodes: int) -> dict:
    """The Indexed Job of nodes 1..`nodes`-1, as the Kubernetes API takes it, from the step pod as
    the API returns it (camelCase) and node 0's torchrun command without `--node_rank`."""
    if nodes < 2:
        raise ValueError(f"worker_job: nodes={nodes}; a multi-node run has at least 2")
    if any(a.startswith("--node_rank") for a in command):
        raise ValueError("worker_job: the worker command must leave --node_rank to $PET_NODE_RANK")
    meta, spec = step_pod["metadata"], step_pod["spec"]
    step = spec["containers"][0]
    container = {k: copy.deepcopy(step[k]) for k in _CONTAINER_KEYS if k in step}
    # node 0's own address and endpoint are the step pod's; the command carries the endpoint
    env = [e for e in step.get("env", []) if e["name"] not in (POD_IP_ENV, RDZV_ENDPOINT_ENV)]
    container |= {"name": "stage3-node", "command": ["/bin/sh", "-c", WORKER_ENTRY, *command], "env": env}
    pod_spec = {k: copy.deepcopy(spec[k]) for k in _POD_KEYS if k in spec}
    pod_spec["volumes"] = [v for v in pod_spec.get("volumes", []) if not v["name"].startswith(_API_TOKEN_VOLUME)]
    container["volumeMounts"] = [m for m in container.get("volumeMounts", [])
                                 if not m["name"].startswith(_API_TOKEN_VOLUME)]
    pod_spec |= {"restartPolicy": "Never", "containers": [container]}
    labels = {k: v for k, v in meta.get("labels", {}).items() if k in _LABELS}
    labels["app.kubernetes.io/component"] = COMPONENT
    # Indexed pods are named <job>-<index>: keep the job name well under the 63-character limit
    name = f"{meta['name'][:50].rstrip('-')}-nodes"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}],
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": nodes - 1,
            "parallelism": nodes - 1,
            "backoffLimit": 0,  # static rendezvous needs every node: a lost node fails the run (run retries)
            "ttlSecondsAfterFinished": FINISHED_TTL_S,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def start_workers(command: Sequence[str], nodes: int) -> str:
    """Create the worker Job from inside the step pod (in-cluster credentials; the step's service
    account may read its pod and create Jobs: infra/k8s/stage3-nodes-rbac.yaml). Returns its name."""
    import kubernetes
    from dagster_k8s.utils import detect_current_namespace

    pod_name = os.environ.get("HOSTNAME")
    namespace = detect_current_namespace(None)
    if not pod_name or not namespace:
        raise RuntimeError("gpu_nodes > 1 runs only in a Kubernetes step pod ($HOSTNAME and the service account "
                           "namespace are missing)")
    kubernetes.config.load_incluster_config()
    api = kubernetes.client.ApiClient()
    pod = kubernetes.client.CoreV1Api(api).read_namespaced_pod(pod_name, namespace)
    body = worker_job(api.sanitize_for_serialization(pod), command, nodes)
    kubernetes.client.BatchV1Api(api).create_namespaced_job(namespace, body)
    return body["metadata"]["name"]
