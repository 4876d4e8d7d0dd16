"""The bulk data store: a local folder or an S3 bucket (boto3, any S3-compatible endpoint).

Keys are relative POSIX paths (`labeled/shards/train-000000.tar`). Keys are checked, so that a
name taken from a URL or a video title can never escape the store's root. Credentials are never
passed in code: boto3 reads them from the environment."""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Protocol

from dap_model import layout
from dap_model.errors import InputError, StorageError
from dap_model.io import atomic_path, atomic_write_bytes


def safe_key(key: str) -> str:
    """Normalise a store key; reject absolute keys, `..`, empty parts and control characters."""
    if not isinstance(key, str) or not key.strip():
        raise InputError(f"store key {key!r}: empty")
    if any(ord(c) < 32 for c in key) or "\\" in key:
        raise InputError(f"store key {key!r}: control characters or backslashes are not allowed")
    p = PurePosixPath(key)
    if p.is_absolute() or any(part in ("..", ".", "") for part in key.split("/")) or key.startswith("~"):
        raise InputError(f"store key {key!r}: must be a relative path inside the store")
    return p.as_posix()


# `change(current bytes, or None when the object does not exist)` -> the new bytes, or None to
# leave the object as it is. Called again with fresh bytes when another writer got there first.
Change = Callable[[bytes | None], bytes | None]
CONFLICT_ATTEMPTS = 30  # conditional S3 writes that lose to another writer before giving up


class DataStore(Protocol):
    def uri(self, key: str) -> str: ...
    def exists(self, key: str) -> bool: ...
    def put_file(self, local: Path, key: str) -> str: ...
    def put_bytes(self, key: str, data: bytes) -> str: ...
    def get_bytes(self, key: str) -> bytes: ...
    def fetch(self, key: str, cache_dir: Path | None = None) -> Path: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def update_bytes(self, key: str, change: Change) -> bytes | None: ...


@dataclass
class LocalStore:
    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()

    def path(self, key: str) -> Path:
        return self.root / safe_key(key)

    def uri(self, key: str) -> str:
        return self.path(key).as_uri()

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def put_file(self, local: Path, key: str) -> str:
        dst = self.path(key)
        if Path(local).resolve() != dst:
            with atomic_path(dst) as tmp:
                shutil.copyfile(local, tmp)
        return self.uri(key)

    def put_bytes(self, key: str, data: bytes) -> str:
        atomic_write_bytes(self.path(key), data)
        return self.uri(key)

    def get_bytes(self, key: str) -> bytes:
        p = self.path(key)
        if not p.is_file():
            raise StorageError(f"{self.uri(key)}: no such object")
        return p.read_bytes()

    def fetch(self, key: str, cache_dir: Path | None = None) -> Path:
        p = self.path(key)
        if not p.is_file():
            raise StorageError(f"{self.uri(key)}: no such object")
        return p

    def list(self, prefix: str = "") -> list[str]:
        base = self.path(prefix) if prefix else self.root
        if base.is_file():
            return [safe_key(prefix)]
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def update_bytes(self, key: str, change: Change) -> bytes | None:
        """Read-modify-write of one object, exclusive across threads and processes: an advisory
        lock on the hidden `.<name>.lock` beside it. Returns the object's bytes afterwards."""
        from filelock import FileLock

        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(p.with_name(f".{p.name}.lock")):
            current = p.read_bytes() if p.is_file() else None
            new = change(current)
            if new is None:
                return current
            atomic_write_bytes(p, new)
            return new


@dataclass
class S3Store:
    bucket: str
    prefix: str = ""
    endpoint_url: str = ""
    region: str = "us-east-1"
    connect_timeout_s: float = 5.0
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if not self.bucket:
            raise StorageError("S3 store: `bucket` is empty")
        import boto3
        from botocore.config import Config

        self._client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url or None,
            region_name=self.region,
            config=Config(
                connect_timeout=self.connect_timeout_s,
                read_timeout=max(30.0, self.connect_timeout_s),
                retries={"max_attempts": self.max_attempts, "mode": "standard"},
            ),
        )

    def _key(self, key: str) -> str:
        key = safe_key(key)
        return f"{self.prefix.strip('/')}/{key}" if self.prefix.strip("/") else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _wrap(self, key: str, err: Exception) -> StorageError:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return StorageError(f"{self.uri(key)}{where}: {type(err).__name__}: {err}")

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._wrap(key, err) from None
        except Exception as err:  # connection errors: name the endpoint
            raise self._wrap(key, err) from None

    def put_file(self, local: Path, key: str) -> str:
        try:
            self._client.upload_file(str(local), self.bucket, self._key(key))
        except Exception as err:
            raise self._wrap(key, err) from None
        return self.uri(key)

    def put_bytes(self, key: str, data: bytes) -> str:
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except Exception as err:
            raise self._wrap(key, err) from None
        return self.uri(key)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except Exception as err:
            raise self._wrap(key, err) from None

    def fetch(self, key: str, cache_dir: Path | None = None) -> Path:
        """Download into `cache_dir` (atomically) and return the local path.

        The cached copy is reused only while the object's ETag is unchanged (an object rewritten
        under the same key is downloaded again)."""
        from dap_model.config import project_dir

        cache = Path(cache_dir) if cache_dir else project_dir() / ".cache" / "s3" / self.bucket
        dst = cache / self._key(key)
        tag_file = dst.with_name(f".{dst.name}.etag")
        try:
            etag = self._client.head_object(Bucket=self.bucket, Key=self._key(key))["ETag"]
            if dst.is_file() and tag_file.is_file() and tag_file.read_text() == etag:
                return dst
            with atomic_path(dst) as tmp:
                self._client.download_file(self.bucket, self._key(key), str(tmp))
        except Exception as err:
            raise self._wrap(key, err) from None
        atomic_write_bytes(tag_file, etag.encode())
        return dst

    def list(self, prefix: str = "") -> list[str]:
        base = self._key(prefix) if prefix else self.prefix.strip("/")
        strip = len(self.prefix.strip("/")) + 1 if self.prefix.strip("/") else 0
        keys: list[str] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base
            )
            for page in pages:
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        except Exception as err:
            raise self._wrap(prefix or ".", err) from None
        return sorted(keys)

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as err:
            raise self._wrap(key, err) from None

    def update_bytes(self, key: str, change: Change) -> bytes | None:
        """Read-modify-write of one object as a conditional PUT (`If-Match` the ETag that was
        read, `If-None-Match: *` to create): when another writer got there first (412, or 409
        for a concurrent conditional write) the object is read again and `change` re-applied.
        Returns the object's bytes afterwards."""
        from botocore.exceptions import ClientError

        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                got = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
                current, cond = got["Body"].read(), {"IfMatch": got["ETag"]}
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise self._wrap(key, err) from None
                current, cond = None, {"IfNoneMatch": "*"}
            except Exception as err:
                raise self._wrap(key, err) from None
            new = change(current)
            if new is None:
                return current
            try:
                self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=new, **cond)
                return new
            except ClientError as err:
                status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status not in (409, 412):  # 412: the ETag moved on; 409: a concurrent conditional PUT
                    raise self._wrap(key, err) from None
            except Exception as err:
                raise self._wrap(key, err) from None
            time.sleep(random.uniform(0.0, min(1.0, 0.02 * 2 ** attempt)))  # another writer won: back off
        raise StorageError(f"{self.uri(key)}: still changed by other writers after {CONFLICT_ATTEMPTS} attempts")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` → `("bucket", "a/b")`."""
    if not uri.startswith("s3://"):
        raise InputError(f"{uri!r}: not an s3:// URI")
    rest = uri[5:]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise InputError(f"{uri!r}: no bucket")
    return bucket, key


def open_store(cfg) -> DataStore:
    """Build the store from a `StorageConfig`."""
    from dap_model.config import project_dir

    if cfg.backend == "local":
        root = Path(cfg.root)
        if not root.is_absolute():
            root = project_dir() / root
        return LocalStore(root)
    return S3Store(
        bucket=cfg.bucket,
        prefix=cfg.prefix,
        endpoint_url=cfg.endpoint_url,
        region=cfg.region,
        connect_timeout_s=cfg.connect_timeout_s,
        max_attempts=cfg.max_attempts,
    )


def replace_prefix(store, prefix: str, local_dir: Path, keep: set[str]) -> None:
    """Upload every file of `local_dir` to `prefix/`, then delete objects under `prefix/` that
    are not in `keep` (stale shards of an earlier, larger run). The manifest goes last, so a
    reader never sees a manifest naming shards that are not there yet."""
    files = sorted(p for p in local_dir.iterdir() if p.is_file())
    for f in sorted(files, key=lambda p: p.name == layout.MANIFEST_NAME):
        store.put_file(f, layout.join(prefix, f.name))
    for k in store.list(prefix):
        if k.rsplit("/", 1)[-1] not in keep:
            store.delete(k)
