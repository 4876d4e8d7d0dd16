"""`champion_entry`: "no champion" only when the model or its alias does not exist; a registry
that cannot answer is an error naming it, never a free pass for the champion gate."""

from __future__ import annotations

import http.server
import threading

import pytest

from dap_model.config import load_config
from dap_model.errors import DapError
from dap_model.evaluation.runs import champion_entry
from tests._eval_support import fresh_mlflow_db
from tests.conftest import free_port


@pytest.fixture
def fast_http(monkeypatch):
    """One try, short timeout: a dead registry fails in well under a second."""
    import mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    before = mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(before)


def test_champion_from_a_real_registry():
    """sqlite store: no model, a model without the alias, then the alias set."""
    from mlflow import MlflowClient

    from dap_model.tracking import setup_mlflow

    cfg = load_config("test")
    fresh_mlflow_db()
    exp_id = setup_mlflow(cfg.mlflow)
    client = MlflowClient()
    name, alias = cfg.mlflow.registered_model, cfg.mlflow.champion_alias
    assert champion_entry(cfg) is None  # not registered
    client.create_registered_model(name)
    run = client.create_run(exp_id)
    v1 = client.create_model_version(name, "file:///nowhere/1", run_id=run.info.run_id)
    client.create_model_version(name, "file:///nowhere/2")
    client.set_registered_model_alias(name, "staging", "2")
    assert champion_entry(cfg) is None  # registered, versions, another alias, but no champion
    client.set_registered_model_alias(name, alias, v1.version)
    entry = champion_entry(cfg)
    assert (entry.checkpoint, entry.version, entry.run_id) == (f"models:/{name}/1", "1", run.info.run_id)


def test_unreachable_registry_is_an_error_naming_it_without_credentials(fast_http):
    import mlflow

    cfg = load_config("test")
    port = free_port()  # bound then released: nothing listens there
    mlflow.set_tracking_uri(f"http://dapuser:s3cr3t@127.0.0.1:{port}")
    with pytest.raises(DapError) as info:
        champion_entry(cfg)
    msg = str(info.value)
    assert f"http://***@127.0.0.1:{port}" in msg and "models:/dap-depth@champion" in msg
    assert "s3cr3t" not in msg and "dapuser" not in msg and "\n" not in msg


class _Refuse(http.server.BaseHTTPRequestHandler):
    """A registry behind a proxy that refuses every request (403 with MLflow's error body)."""

    def do_GET(self):  # noqa: N802
        body = b'{"error_code": "PERMISSION_DENIED", "message": "no access"}'
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_refusing_registry_is_an_error(fast_http):
    import mlflow

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        mlflow.set_tracking_uri(uri)
        with pytest.raises(DapError, match=f"MLflow registry {uri} failed: .*no access"):
            champion_entry(load_config("test"))
    finally:
        server.shutdown()
        server.server_close()


def test_unreachable_tracking_server_error_masks_credentials():
    from dap_model.tracking import check_reachable

    port = free_port()
    with pytest.raises(DapError) as err:
        check_reachable(f"http://dapuser:s3cr3t@127.0.0.1:{port}", timeout_s=2)
    msg = str(err.value)
    assert "s3cr3t" not in msg and "dapuser" not in msg and f"http://***@127.0.0.1:{port}" in msg
