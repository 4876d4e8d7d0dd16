"""Benchmark reader protocol, registry and the paired-file reader most formats share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, ClassVar, Iterator

import numpy as np

from dap_model.errors import InputError
from dap_model.storage import DataStore

from dap_model.images import decode_rgb

from ._files import name_of, open_root, posix_parent, read_bytes, root_label


@dataclass
class BenchSample:
    key: str  # unique within the benchmark; relative path without suffix ("area_1/camera_x")
    rgb: np.ndarray  # [H,W,3] uint8 ERP, W = 2H
    depth: np.ndarray  # [H,W] float32 metres, 0 = invalid
    source: str = ""  # the depth file (for messages)
    meta: dict[str, Any] = field(default_factory=dict)


class BenchmarkReader(ABC):
    """Lists a root once (`items`), then reads samples lazily in a stable (sorted) order.

    Construction checks the root exists; listing checks it holds samples. Every error is an
    `InputError`/`StorageError` whose message names the file or root."""

    format: ClassVar[str]
    layout: ClassVar[str]  # one-line description of the expected files (docs, errors)

    def __init__(self, root: str = "", *, store: DataStore | None = None, endpoint_url: str = "",
                 pattern: str = ""):
        self.store = store if store is not None else open_root(root, endpoint_url=endpoint_url)
        self.root = root or root_label(self.store)
        self.pattern = pattern
        self._items: list | None = None

    def items(self) -> list:
        if self._items is None:
            items = self._list()
            if not items:
                raise InputError(f"{self.root}: no {self.format} samples found (expected {self.layout})")
            self._items = items
        return self._items

    def __len__(self) -> int:
        return len(self.items())

    def __iter__(self) -> Iterator[BenchSample]:
        for item in self.items():
            yield from self._read(item)

    @abstractmethod
    def _list(self) -> list: ...

    @abstractmethod
    def _read(self, item) -> Iterator[BenchSample]: ...

    def name(self, key: str) -> str:
        return name_of(self.store, key)


def check_pair(rgb: np.ndarray, depth: np.ndarray, depth_name: str, rgb_name: str) -> None:
    if depth.shape != rgb.shape[:2]:
        raise InputError(
            f"{depth_name}: depth is {depth.shape[0]}x{depth.shape[1]} but its image {rgb_name} is "
            f"{rgb.shape[0]}x{rgb.shape[1]}"
        )
    h, w = depth.shape
    if w != 2 * h:
        raise InputError(f"{depth_name}: {h}x{w} is not an equirectangular panorama (width must be 2 x height)")


class PairedReader(BenchmarkReader):
    """`<stem><rgb_suffix>` + `<stem><depth_suffix>`, in the same folder or in sibling folders
    `.../rgb/` and `.../depth/`. Keys: the RGB path relative to the root, without suffix and
    without a final `rgb/` folder."""

    rgb_suffix: ClassVar[str] = "_rgb.png"
    depth_suffix: ClassVar[str]

    def _list(self) -> list[tuple[str, str, str]]:
        keys = self.store.list()
        present = set(keys)
        out = []
        for k in keys:
            if not k.endswith(self.rgb_suffix):
                continue
            stem = PurePosixPath(k).name[: -len(self.rgb_suffix)]
            parent = posix_parent(k)
            candidates = [f"{parent}/{stem}{self.depth_suffix}" if parent else f"{stem}{self.depth_suffix}"]
            key_dir = parent
            if PurePosixPath(parent).name == "rgb":
                up = posix_parent(parent)
                candidates.append(f"{up}/depth/{stem}{self.depth_suffix}" if up else f"depth/{stem}{self.depth_suffix}")
                key_dir = up
            depth_key = next((c for c in candidates if c in present), None)
            if depth_key is None:
                raise InputError(f"{self.name(k)}: no depth file {' or '.join(candidates)} beside it")
            out.append((f"{key_dir}/{stem}" if key_dir else stem, k, depth_key))
        return out

    @abstractmethod
    def decode_depth(self, depth_key: str) -> np.ndarray: ...

    def _read(self, item: tuple[str, str, str]) -> Iterator[BenchSample]:
        key, rgb_key, depth_key = item
        rgb = decode_rgb(read_bytes(self.store, rgb_key), self.name(rgb_key))
        depth = self.decode_depth(depth_key)
        check_pair(rgb, depth, self.name(depth_key), self.name(rgb_key))
        yield BenchSample(key=key, rgb=rgb, depth=depth, source=self.name(depth_key))


_REGISTRY: dict[str, type[BenchmarkReader]] = {}


def register(cls: type[BenchmarkReader]) -> type[BenchmarkReader]:
    _REGISTRY[cls.format] = cls
    return cls


def available_formats() -> list[str]:
    return sorted(_REGISTRY)


def reader_class(fmt: str) -> type[BenchmarkReader]:
    try:
        return _REGISTRY[fmt]
    except KeyError:
        raise InputError(f"unknown benchmark format {fmt!r}; available: {', '.join(available_formats())}") from None


def open_benchmark(fmt: str, root: str = "", *, store: DataStore | None = None, endpoint_url: str = "",
                   pattern: str = "") -> BenchmarkReader:
    """The reader for an explicit format name over a local folder, `s3://bucket/prefix` or a store."""
    return reader_class(fmt)(root, store=store, endpoint_url=endpoint_url, pattern=pattern)
