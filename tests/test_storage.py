import pytest

from dap_model.config import load_config
from dap_model.errors import InputError, StorageError
from dap_model.storage import LocalStore, S3Store, open_store, safe_key


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", "", "a//b", "a\\b", "~/x", "a\nb"])
def test_safe_key_rejects_escapes(bad):
    with pytest.raises(InputError):
        safe_key(bad)


def _roundtrip(store, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    store.put_file(src, "a/b/c.bin")
    store.put_bytes("a/d.txt", b"hello")
    assert store.exists("a/b/c.bin") and not store.exists("a/zzz")
    assert store.get_bytes("a/d.txt") == b"hello"
    assert store.fetch("a/b/c.bin", tmp_path / "cache").read_bytes() == b"payload"
    assert store.list("a") == ["a/b/c.bin", "a/d.txt"]
    store.delete("a/d.txt")
    assert store.list("a") == ["a/b/c.bin"]
    with pytest.raises(StorageError, match="no such object|NoSuchKey|404"):
        store.get_bytes("missing")


def test_local_store(tmp_path):
    store = LocalStore(tmp_path / "store")
    _roundtrip(store, tmp_path)
    assert not list((tmp_path / "store").rglob("*.tmp"))


def test_open_store_local_is_relative_to_project(tmp_path):
    store = open_store(load_config("test").storage)
    assert str(store.root).startswith(str(tmp_path))


@pytest.mark.integration
def test_s3_store_on_moto_server(s3_env, tmp_path):
    store = S3Store(bucket=s3_env["bucket"], prefix="pfx", endpoint_url=s3_env["endpoint_url"])
    _roundtrip(store, tmp_path)
    assert store.uri("x/y") == f"s3://{s3_env['bucket']}/pfx/x/y"
    store.put_bytes("a/b/c.bin", b"rewritten")
    assert store.fetch("a/b/c.bin", tmp_path / "cache").read_bytes() == b"rewritten"


@pytest.mark.integration
def test_s3_unreachable_names_the_endpoint(monkeypatch, tmp_path):
    from tests.conftest import free_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    url = f"http://127.0.0.1:{free_port()}"
    store = S3Store(bucket="nobucket", endpoint_url=url, connect_timeout_s=0.5, max_attempts=1)
    with pytest.raises(StorageError, match=url.replace(".", r"\.")):
        store.put_bytes("k", b"x")


def test_atomic_write_keeps_old_file_on_failure_and_uses_umask(tmp_path):
    from dap_model.io import atomic_open, atomic_write_bytes

    (tmp_path / "w").mkdir()
    target = tmp_path / "w" / "f.bin"
    atomic_write_bytes(target, b"good")
    assert (target.stat().st_mode & 0o777) == (0o666 & ~_current_umask())
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"good"
    assert [p.name for p in (tmp_path / "w").iterdir()] == ["f.bin"]


def _current_umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
