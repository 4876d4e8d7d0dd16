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


def _append(token: bytes, calls: list, meddle=None):
    """A `change` that appends `token`; `meddle(current)` runs once, on the first call (another
    writer acting between this writer's read and its write)."""
    def change(cur):
        calls.append(cur)
        if meddle is not None and len(calls) == 1:
            meddle(cur)
        return (cur or b"") + token
    return change


def _update_bytes_contract(store):
    calls: list = []
    assert store.update_bytes("u/obj", _append(b"a", calls)) == b"a" and calls == [None]  # created
    assert store.update_bytes("u/obj", lambda cur: None) == b"a"  # None: left as it is
    with pytest.raises(InputError, match="refused"):  # the change's own error, unwrapped
        store.update_bytes("u/obj", lambda cur: (_ for _ in ()).throw(InputError("refused")))
    assert store.get_bytes("u/obj") == b"a" and store.list("u") == ["u/obj"]


def test_local_update_bytes(tmp_path):
    _update_bytes_contract(LocalStore(tmp_path / "store"))


@pytest.mark.integration
def test_s3_update_bytes_rereads_when_another_writer_wins(s3_env):
    store = S3Store(bucket=s3_env["bucket"], prefix="pfx", endpoint_url=s3_env["endpoint_url"])
    _update_bytes_contract(store)
    other = S3Store(bucket=s3_env["bucket"], prefix="pfx", endpoint_url=s3_env["endpoint_url"])
    # create race: the other writer creates the object first (If-None-Match: * is refused)
    calls: list = []
    assert store.update_bytes("c", _append(b"x", calls, lambda cur: other.put_bytes("c", b"o"))) == b"ox"
    assert calls == [None, b"o"]
    # update race: the other writer rewrites it after our read (If-Match on the old ETag is refused)
    calls = []
    assert store.update_bytes("c", _append(b"y", calls, lambda cur: other.put_bytes("c", cur + b"p"))) == b"oxpy"
    assert calls == [b"ox", b"oxp"] and store.get_bytes("c") == b"oxpy"
