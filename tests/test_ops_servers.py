"""Integration tests against real servers on loopback, started here: PostgreSQL (Dagster's
instance storage and MLflow's backend), `dagster dev` (webserver + daemon, the deployment's
infra/dagster.yaml), an MLflow tracking server with its artifacts on moto's S3 server, and the
faults an operator meets: the object store or the tracking server going away."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
import yaml

from dap_assets.resources import StorageResource
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _pg_bindir() -> Path | None:
    for cand in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (cand / "initdb").is_file():
            return cand
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return
        except Exception:
            time.sleep(0.3)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f}s:\n{tail}")


def _stop_group(proc: subprocess.Popen, timeout_s: float = 2) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def _failure_text(result) -> str:
    """Class names and messages of the first step failure, with its causes."""
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    parts, err = [], failure.step_failure_data.error
    while err is not None:
        parts.append(f"{err.cls_name}: {err.message}")
        err = err.cause or err.context
    return "\n".join(parts)


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL cluster in a temp folder on a free loopback port (databases dagster, mlflow)."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    import psycopg2

    base = Path(tempfile.mkdtemp(prefix="dap-pg-"))
    os.chmod(base, 0o755)
    run_as: dict = {}
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres") if _has_user("postgres") else pwd.getpwnam("nobody")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        run_as = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    password = secrets.token_hex(12)
    pwfile = base / "pwfile"
    pwfile.write_text(password)
    if run_as:
        os.chown(pwfile, run_as["user"], run_as["group"])
    data = base / "data"
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "dap", "--pwfile", str(pwfile),
         "-A", "scram-sha-256", "-E", "UTF8", "--no-sync"],
        check=True, capture_output=True, **run_as,
    )
    port = free_port()
    subprocess.run(
        [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60",
         "-o", f"-p {port} -h 127.0.0.1 -k {base} -c fsync=off", "start"],
        check=True, capture_output=True, **run_as,
    )
    info = {"host": "127.0.0.1", "port": port, "user": "dap", "password": password}
    try:
        conn = psycopg2.connect(dbname="postgres", **info)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE dagster")
            cur.execute("CREATE DATABASE mlflow")
        conn.close()
        yield info
    finally:
        subprocess.run(
            [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True, **run_as,
        )
        shutil.rmtree(base, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _pg_env(pg: dict, db: str = "dagster") -> dict[str, str]:
    return {
        "DAGSTER_POSTGRES_HOST": pg["host"],
        "DAGSTER_POSTGRES_PORT": str(pg["port"]),
        "DAGSTER_POSTGRES_USER": pg["user"],
        "DAGSTER_POSTGRES_PASSWORD": pg["password"],
        "DAGSTER_POSTGRES_DB": db,
    }


@pytest.fixture(scope="session")
def dagster_deployment(postgres, mlflow_process, tmp_path_factory):
    """`dagster dev` (webserver + daemon) on the deployment's infra/dagster.yaml (Postgres
    storage, queued runs, pools, run retries), serving the real code location and tests/ops_location.py."""
    base = tmp_path_factory.mktemp("dagster_deployment")
    home = base / "home"
    home.mkdir()
    shutil.copy(ROOT / "infra" / "dagster.yaml", home / "dagster.yaml")
    workspace = base / "workspace.yaml"
    location = _launch_target()[0]
    entry = (
        {"python_module": {"module_name": "dap_assets.definitions", "location_name": "dap_assets",
                           "working_directory": str(ROOT)}}
        if location == "dap_assets" else
        {"python_file": {"relative_path": str(ROOT / "tests" / "ops_location.py"), "location_name": "ops_test",
                         "working_directory": str(ROOT)}}
    )
    workspace.write_text(yaml.safe_dump({"load_from": [entry]}))
    project = base / "project"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DAGSTER_", "DAP_"))}
    env.update(_pg_env(postgres))
    env.update({
        "DAGSTER_HOME": str(home), "DAP_PROJECT_DIR": str(project), "DAP_PROFILE": "test",
        "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
        "MLFLOW_TRACKING_URI": mlflow_process["url"], "MLFLOW_S3_ENDPOINT_URL": mlflow_process["endpoint"],
        **mlflow_process["creds"],
    })
    port = free_port()
    log = base / "dagster-dev.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/server_info", 180, proc, log)
        _wait_locations_loaded(url, [location], 180, log)
        _wait_http(f"{mlflow_process['url']}/health", 180, mlflow_process["proc"], mlflow_process["log"])
        yield {"url": url, "home": home, "env": env, "project": project, "log": log}
    finally:
        _stop_group(proc)


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    req = urllib.request.Request(
        f"{url}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        body = json.loads(resp.read())
    assert "errors" not in body, body["errors"]
    return body["data"]


WORKSPACE_QUERY = """
query { workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def _wait_locations_loaded(url: str, names: list[str], timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    entries = []
    while time.monotonic() < deadline:
        entries = _graphql(url, WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
        status = {e["name"]: e for e in entries}
        if all(n in status and status[n]["loadStatus"] == "LOADED" for n in names):
            errors = [status[n]["locationOrLoadError"] for n in names
                      if status[n]["locationOrLoadError"]["__typename"] == "PythonError"]
            assert not errors, errors
            return
        time.sleep(1)
    raise RuntimeError(f"code locations not loaded: {entries}\n{log.read_text()[-3000:]}")


LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PipelineNotFoundError { message }
  }
}
"""

SCHEDULES = """
query Schedules($repo: RepositorySelector!) {
  schedulesOrError(repositorySelector: $repo) { __typename ... on Schedules { results { name cronSchedule } } }
}
"""

RUN_STATUS = """
query Run($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }
"""


def _launch_and_wait(url: str, location: str, asset_keys: list[str], timeout_s: float, log: Path) -> str:
    params = {
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": [k]} for k in asset_keys],
            "assetCheckSelection": [],
        },
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "dap.launched_by", "value": "test_ops_servers"}]},
    }
    result = _graphql(url, LAUNCH, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    run_id = result["run"]["runId"]
    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline:
        status = _graphql(url, RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS", f"run {run_id}: {status}\n{log.read_text()[-4000:]}"
    return run_id


def _launch_target() -> tuple[str, list[str]]:
    """`airsim360_scenes` of the real code location once it exists (and loads; tests/
    test_dagster_defs.py fails otherwise), else the ops test location's probes."""
    try:
        from dap_assets.definitions import defs

        keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    except Exception:
        keys = set()
    if "airsim360_scenes" in keys:
        return "dap_assets", ["airsim360_scenes"]
    return "ops_test", ["ops_probe", "ops_gpu_probe"]


def test_webserver_launches_a_materialisation_that_lands_in_postgres(dagster_deployment, postgres, monkeypatch):
    import psycopg2

    url, log = dagster_deployment["url"], dagster_deployment["log"]
    location, keys = _launch_target()
    run_id = _launch_and_wait(url, location, keys, 300, log)

    for k, v in _pg_env(postgres).items():
        monkeypatch.setenv(k, v)
    with dg.DagsterInstance.from_config(str(dagster_deployment["home"])) as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        records = instance.fetch_materializations(dg.AssetKey(keys[0]), limit=10).records
        assert run_id in {r.run_id for r in records}
        events = instance.all_logs(run_id)
        types = {e.dagster_event.event_type for e in events if e.dagster_event}
        assert {dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.RUN_SUCCESS} <= types
        assert instance.get_run_by_id(run_id).tags["dap.launched_by"] == "test_ops_servers"
        from dap_model.versioning import dvc_hash

        mat = next(r.asset_materialization for r in records if r.run_id == run_id)
        prefix = {"airsim360_scenes": "airsim360", "ops_probe": "ops_probe"}[keys[0]]
        assert mat.tags["dagster/data_version"] == dvc_hash(dagster_deployment["project"] / "data" / prefix)

    conn = psycopg2.connect(dbname="dagster", **postgres)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s", (run_id,))
        assert cur.fetchone()[0] >= 5
    conn.close()

    pool = _graphql(url, "query { instance { poolConfig { defaultPoolLimit poolGranularity } } }")
    assert pool["instance"]["poolConfig"] == {"defaultPoolLimit": 1, "poolGranularity": "op"}

    if location == "dap_assets":
        from dap_assets.assets.automation import retrain_schedule

        repo = {"repositoryLocationName": location, "repositoryName": "__repository__"}
        got = _graphql(url, SCHEDULES, {"repo": repo})["schedulesOrError"]
        assert {s["name"]: s["cronSchedule"] for s in got["results"]}[retrain_schedule.name] == \
            retrain_schedule.cron_schedule


def test_gpu_pool_limit_can_be_set_through_the_cli(dagster_deployment, postgres):
    env = {**dagster_deployment["env"]}
    out = subprocess.run(
        [str(BIN / "dagster"), "instance", "concurrency", "set", "gpu", "2"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    got = _graphql(dagster_deployment["url"],
                   'query { instance { concurrencyLimit(concurrencyKey: "gpu") { slotCount limit } } }')
    assert got["instance"]["concurrencyLimit"]["slotCount"] == 2


@pytest.fixture(scope="session")
def mlflow_process(postgres, s3_server, tmp_path_factory):
    """`mlflow server` with a PostgreSQL backend store and artifacts proxied to moto's S3
    (started here, waited for by `mlflow_server`, so it boots while Dagster does)."""
    import boto3

    bucket = "dap-mlflow-" + secrets.token_hex(4)
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    base = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(creds)
    env["MLFLOW_S3_ENDPOINT_URL"] = s3_server
    env["MLFLOW_BACKEND_STORE_URI"] = (f"postgresql://{postgres['user']}:{postgres['password']}@"
                                       f"{postgres['host']}:{postgres['port']}/mlflow")
    log = base / "mlflow.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--artifacts-destination", f"s3://{bucket}/artifacts", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            cwd=base, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        yield {"url": f"http://127.0.0.1:{port}", "bucket": bucket, "endpoint": s3_server,
               "creds": creds, "proc": proc, "log": log}
    finally:
        _stop_group(proc)


@pytest.fixture(scope="session")
def mlflow_server(mlflow_process):
    _wait_http(f"{mlflow_process['url']}/health", 180, mlflow_process["proc"], mlflow_process["log"])
    return mlflow_process


def test_runs_logged_through_dap_tracking_land_on_the_server_with_artifacts_in_s3(mlflow_server, postgres, tmp_path,
                                                                                  monkeypatch):
    import boto3
    import mlflow

    from dap_model.config import load_config
    from dap_model.tracking import resolve_tracking_uri, setup_mlflow

    for k, v in mlflow_server["creds"].items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server["url"])
    cfg = load_config("test")
    assert resolve_tracking_uri(cfg.mlflow) == mlflow_server["url"]
    exp_id = setup_mlflow(cfg.mlflow)
    artifact = tmp_path / "metrics.json"
    artifact.write_text(json.dumps({"abs_rel": 0.1}))
    with mlflow.start_run(experiment_id=exp_id, tags={"dap.stage": "stage1", "dap.pipeline_run": "r1"}) as run:
        mlflow.log_param("train.steps", 4)
        mlflow.log_metric("labeled_test/abs_rel", 0.1)
        mlflow.log_artifact(str(artifact))
    client = mlflow.MlflowClient(mlflow_server["url"])
    got = client.get_run(run.info.run_id)
    assert got.data.tags["dap.stage"] == "stage1"
    assert got.data.metrics["labeled_test/abs_rel"] == pytest.approx(0.1)
    assert client.get_experiment(exp_id).name == cfg.mlflow.experiment
    s3 = boto3.client("s3", endpoint_url=mlflow_server["endpoint"], region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=mlflow_server["bucket"]).get("Contents", [])]
    mine = [k for k in keys if k.endswith("metrics.json") and run.info.run_id in k]
    assert mine, keys
    body = s3.get_object(Bucket=mlflow_server["bucket"], Key=mine[0])["Body"].read()
    assert json.loads(body) == {"abs_rel": 0.1}
    import psycopg2

    conn = psycopg2.connect(dbname="mlflow", **postgres)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (run.info.run_id,))
        assert cur.fetchone() == ("FINISHED",)
    conn.close()


def test_embedded_default_tracks_into_sqlite_in_the_project_folder(tmp_path):
    import mlflow

    from dap_model.config import load_config, project_dir
    from dap_model.tracking import setup_mlflow

    cfg = load_config("test")
    exp_id = setup_mlflow(cfg.mlflow)
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_text("hello", "note.txt")
    assert mlflow.get_tracking_uri() == f"sqlite:///{project_dir() / 'mlflow.db'}"
    assert (project_dir() / "mlflow.db").is_file()
    assert list((project_dir() / "mlartifacts").rglob("note.txt"))
    assert mlflow.MlflowClient().get_run(run.info.run_id).info.status == "FINISHED"


def test_unreachable_tracking_server_fails_the_asset_naming_the_uri(monkeypatch):
    sys.path.insert(0, str(ROOT / "tests"))
    import ops_location

    from dap_assets.definitions import defs
    from dap_assets.resources import default_resources

    target = next(
        (a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)
         and dg.AssetKey("scene_invariant_labeler") in a.keys),
        ops_location.ops_mlflow_probe,
    )
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    result = dg.materialize([target], resources=default_resources(profile="test"), raise_on_error=False)
    assert not result.success
    message = _failure_text(result)
    assert dead in message and "unreachable" in message


class _Moto:
    """A moto S3 server that can be stopped and started again on the same port (its objects
    live in this process, like MinIO's on a volume)."""

    def __init__(self):
        self.port = free_port()
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        _wait_http(self.url, 30)

    def stop(self):
        self.server.stop()
        self.server = None


def test_s3_outage_mid_materialisation_fails_clearly_leaves_no_corrupt_object_and_recovers(monkeypatch, tmp_path):
    import boto3

    from dap_assets.resources import default_resources
    from dap_model.versioning import dvc_hash, store_hash

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    moto = _Moto()
    moto.start()
    bucket = "dap-outage"
    boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1").create_bucket(Bucket=bucket)
    local = tmp_path / "shards"
    local.mkdir()
    rng = __import__("numpy").random.default_rng(0)
    for i in range(3):
        (local / f"train-{i:06d}.tar").write_bytes(rng.bytes(600_000))
    uploaded_one = threading.Event()
    may_go_on = threading.Event()

    @dg.asset(name="outage_probe")
    def outage_probe(storage: StorageResource) -> dg.MaterializeResult:
        store = storage.store()
        for i, path in enumerate(sorted(local.iterdir())):
            store.put_file(path, f"shards/{path.name}")
            if i == 0 and not may_go_on.is_set():
                uploaded_one.set()
                may_go_on.wait(60)
        return dg.MaterializeResult(data_version=dg.DataVersion(store_hash(store, "shards")))

    overrides = ["storage.backend=s3", f"storage.bucket={bucket}", f"storage.endpoint_url={moto.url}",
                 "storage.max_attempts=2", "storage.connect_timeout_s=1"]
    resources = default_resources(profile="test", overrides=overrides)

    outcome = {}
    worker = threading.Thread(target=lambda: outcome.setdefault(
        "result", dg.materialize([outage_probe], resources=resources, raise_on_error=False)))
    worker.start()
    try:
        assert uploaded_one.wait(60), "the asset never uploaded its first shard"
        moto.stop()
    finally:
        may_go_on.set()
        worker.join(120)
    result = outcome["result"]
    assert not result.success
    message = _failure_text(result)
    assert "StorageError: " in message
    assert moto.url in message and f"s3://{bucket}/dap/shards/train-000001.tar" in message

    moto.start()
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    present = {o["Key"]: o for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    for key in present:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert body == (local / Path(key).name).read_bytes(), f"corrupt object {key}"
    assert len(present) < 3
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")

    again = dg.materialize([outage_probe], resources=resources)
    assert again.success
    version = again.asset_materializations_for_node("outage_probe")[0].tags["dagster/data_version"]
    assert version == dvc_hash(local)
    moto.stop()


def test_s3_outage_during_the_real_ingestion_is_retried_and_the_run_succeeds(monkeypatch):
    import boto3

    from dap_assets.definitions import defs
    from dap_assets.resources import default_resources
    from dap_model.storage import open_store
    from dap_model.versioning import store_hash

    by_key = {k: a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) for k in a.keys}
    keys = [dg.AssetKey("airsim360_scenes"), dg.AssetKey("labeled_panoramas")]
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    moto = _Moto()
    moto.start()
    bucket = "dap-outage-real"
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    overrides = ["storage.backend=s3", f"storage.bucket={bucket}", f"storage.endpoint_url={moto.url}",
                 "storage.max_attempts=1", "storage.connect_timeout_s=1"]
    resources = default_resources(profile="test", overrides=overrides)

    outcome: dict = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("result", dg.materialize(
        [by_key[k] for k in keys], selection=keys, resources=resources, raise_on_error=False)))
    worker.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not s3.list_objects_v2(Bucket=bucket, Prefix="dap/airsim360/").get("KeyCount"):
        time.sleep(0.02)
    moto.stop()
    time.sleep(2)
    moto.start()
    worker.join(300)
    result = outcome["result"]
    assert result.success, _failure_text(result)
    assert "STEP_UP_FOR_RETRY" in [e.event_type_value for e in result.all_events]
    store = open_store(resources["dap"].get().storage)
    for key in keys:
        version = result.asset_materializations_for_node(key.to_user_string())[0].tags["dagster/data_version"]
        prefix = {"airsim360_scenes": "airsim360", "labeled_panoramas": "labeled"}[key.to_user_string()]
        assert version == store_hash(store, prefix)
    moto.stop()
