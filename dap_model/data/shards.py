"""WebDataset-style tar shards: the sample store for labelled panoramas, web frames,
synthesised images and pseudo-labels (one file per sample handles badly at DAP's 2M scale).

A sample is `<key>.rgb.png` (uint8 RGB), optionally `<key>.depth.npy` (float32 metres, 0 or
non-finite = invalid) and `<key>.mask.npy`, and `<key>.json` (metadata). Keys are unique within
a store and contain no dots or slashes. Each shard is written to a temporary name and renamed
when complete, so a reader never sees a half-written shard."""

from __future__ import annotations

import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from dap_model.errors import InputError
from dap_model.io import atomic_path

_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass
class Sample:
    key: str
    rgb: np.ndarray  # [H,W,3] uint8
    depth: np.ndarray | None = None  # [H,W] float32 metres
    mask: np.ndarray | None = None  # [H,W] uint8/bool/float32
    meta: dict[str, Any] = field(default_factory=dict)


def check_key(key: str) -> str:
    if not _KEY_RE.match(key):
        raise InputError(f"sample key {key!r}: only letters, digits, '_' and '-' are allowed")
    return key


def encode_png(rgb: np.ndarray) -> bytes:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"rgb: expected uint8 [H,W,3], got {rgb.dtype} {list(rgb.shape)}")
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError("rgb: PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes, name: str = "image") -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{name}: not a decodable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


class ShardWriter:
    """Writes `<out_dir>/<prefix>-NNNNNN.tar`, `shard_size` samples each.

    `written` lists `(shard_name, key)` for every sample, for the manifest. Deterministic bytes
    for the same samples (fixed mtime), so content hashes are stable."""

    def __init__(self, out_dir: str | Path, prefix: str, shard_size: int, mtime: float = 0.0):
        if shard_size < 1:
            raise InputError(f"shard_size must be >= 1, got {shard_size}")
        self.out_dir = Path(out_dir)
        self.prefix = prefix
        self.shard_size = shard_size
        self.mtime = mtime
        self.written: list[tuple[str, str]] = []
        self.shards: list[str] = []
        self._buffer: list[Sample] = []

    def write(self, sample: Sample) -> str:
        check_key(sample.key)
        self._buffer.append(sample)
        name = f"{self.prefix}-{len(self.shards):06d}.tar"
        self.written.append((name, sample.key))
        if len(self._buffer) >= self.shard_size:
            self._flush()
        return name

    def _flush(self) -> None:
        if not self._buffer:
            return
        name = f"{self.prefix}-{len(self.shards):06d}.tar"
        with atomic_path(self.out_dir / name) as tmp:
            with tarfile.open(tmp, "w") as tar:
                for s in self._buffer:
                    _add(tar, f"{s.key}.rgb.png", encode_png(s.rgb), self.mtime)
                    if s.depth is not None:
                        _add(tar, f"{s.key}.depth.npy", _npy_bytes(s.depth.astype(np.float32)), self.mtime)
                    if s.mask is not None:
                        _add(tar, f"{s.key}.mask.npy", _npy_bytes(s.mask), self.mtime)
                    _add(tar, f"{s.key}.json", json.dumps(s.meta, sort_keys=True).encode(), self.mtime)
        self.shards.append(name)
        self._buffer = []

    def close(self) -> list[str]:
        self._flush()
        return self.shards

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


def read_raw(path: str | Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) per sample of a shard, in stored order, without decoding (the writer
    stores a sample's members contiguously)."""
    path = Path(path)
    current, parts = None, {}
    try:
        with tarfile.open(path, "r") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.partition(".")
                if key != current:
                    if current is not None:
                        yield current, parts
                    current, parts = key, {}
                parts[ext] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError) as err:
        raise InputError(f"{path}: unreadable shard ({err})") from None
    if current is not None:
        yield current, parts


def iter_shard(path: str | Path, keys: Iterable[str] | None = None) -> Iterator[Sample]:
    """Samples of one shard in stored order (optionally only `keys`)."""
    wanted = set(keys) if keys is not None else None
    for key, p in read_raw(path):
        if wanted is not None and key not in wanted:
            continue
        yield Sample(
            key=key,
            rgb=decode_png(p["rgb.png"], f"{path}:{key}.rgb.png"),
            depth=np.load(io.BytesIO(p["depth.npy"]), allow_pickle=False) if "depth.npy" in p else None,
            mask=np.load(io.BytesIO(p["mask.npy"]), allow_pickle=False) if "mask.npy" in p else None,
            meta=json.loads(p.get("json", b"{}")),
        )


def iter_shards(paths: Iterable[str | Path]) -> Iterator[Sample]:
    for p in paths:
        yield from iter_shard(p)

