"""Streaming training data over tar shards, with augmentations and an exact data position.

An epoch is one pass over the shards of every source (a source's shards repeated `repeat`
times), in an order fixed by (seed, epoch). With several processes, shards are split across
ranks (samples, when there are fewer shards than ranks). A shuffle buffer holds raw bytes, so a
sample is decoded only when emitted, and every emitted sample's augmentation is drawn from its
own generator seeded by (seed, epoch, rank, index): a stream restarted at (epoch, consumed)
continues exactly where it stopped without decoding the skipped samples.

Decoding and augmentation run in `train.loader_workers` DataLoader worker processes: each
worker reads its rank's shard bytes and decodes every W-th sample of the rank's sequence, and
the DataLoader's in-order round robin over the workers hands the samples back in sequence
order. The order, and so the resume position (epoch, consumed) of a rank, is the same for any
worker count. Shards named by store keys (S3) are fetched on first use into the store's local
cache, which the workers of a node share.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from filelock import FileLock

from dap_model.config import TrainConfig
from dap_model.data.samples import clean_depth, decode_raw, resize_pair
from dap_model.data.shards import read_raw
from dap_model.errors import InputError


@dataclass(frozen=True)
class ShardSource:
    name: str  # "labeled", "pseudo", ...
    paths: tuple[Path | str, ...]  # local shard files, or keys of `ShardStream.store`
    repeat: int = 1


@dataclass(frozen=True)
class Augment:
    flip_prob: float = 0.0
    roll_prob: float = 0.0
    jitter_prob: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    appearance_prob: float = 0.0
    channel_gain: float = 0.0
    gamma: float = 1.0
    grey_prob: float = 0.0
    noise_std: float = 0.0
    blur_sigma: float = 0.0

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> "Augment":
        """Each field is the knob `train.aug_<field>`."""
        return cls(**{f.name: getattr(cfg, f"aug_{f.name}") for f in fields(cls)})


def colour_jitter(rgb: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """rgb [H,W,3] float32 in [0,1] -> same; brightness, contrast, saturation, hue in that order."""
    b = rng.uniform(1 - aug.brightness, 1 + aug.brightness)
    c = rng.uniform(1 - aug.contrast, 1 + aug.contrast)
    s = rng.uniform(1 - aug.saturation, 1 + aug.saturation)
    h = rng.uniform(-aug.hue, aug.hue)
    out = rgb * b
    grey = out @ np.array([0.299, 0.587, 0.114], np.float32)  # [H,W]
    out = (out - grey.mean()) * c + grey.mean()
    grey = out @ np.array([0.299, 0.587, 0.114], np.float32)
    out = (out - grey[..., None]) * s + grey[..., None]
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    if h != 0.0:
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)  # H in [0,360)
        hsv[..., 0] = np.mod(hsv[..., 0] + h * 360.0, 360.0)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def appearance_shift(rgb: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """rgb [H,W,3] float32 in [0,1] -> same: a camera/lighting change that keeps geometry —
    per-channel gain (white balance, colour cast), gamma, grey, sensor noise, blur. Every draw is
    made whatever the knobs."""
    gain = rng.uniform(1 - aug.channel_gain, 1 + aug.channel_gain, 3).astype(np.float32)
    gamma = float(np.exp(rng.uniform(-np.log(aug.gamma), np.log(aug.gamma))))
    u_grey, noise, sigma = rng.random(), rng.uniform(0, aug.noise_std), rng.uniform(0, aug.blur_sigma)
    noise_rng = np.random.default_rng(rng.integers(0, 2**63))
    out = np.clip(rgb * gain, 0.0, 1.0) ** gamma
    if u_grey < aug.grey_prob:
        out = np.repeat(out @ np.array([0.299, 0.587, 0.114], np.float32)[:, None], 3, axis=-1)
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    if noise > 0:
        out = out + noise_rng.normal(0, noise, out.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def augment(
    rgb: np.ndarray, depth: np.ndarray, rng: np.random.Generator, aug: Augment
) -> tuple[np.ndarray, np.ndarray]:
    """rgb [H,W,3] float32, depth [H,W] float32. Roll (yaw) and flip act on both identically;
    colour jitter and the appearance shift (in that order) on rgb only. Every draw is made
    whatever the probabilities, so a sample's augmentation depends only on its generator."""
    u_roll, u_flip, u_jit = rng.random(3)
    shift = int(rng.integers(0, rgb.shape[1]))
    if u_roll < aug.roll_prob:
        rgb, depth = np.roll(rgb, shift, axis=1), np.roll(depth, shift, axis=1)
    if u_flip < aug.flip_prob:
        rgb, depth = rgb[:, ::-1], depth[:, ::-1]
    jit_rng = np.random.default_rng(rng.integers(0, 2**63))
    if u_jit < aug.jitter_prob:
        rgb = colour_jitter(np.ascontiguousarray(rgb), jit_rng, aug)
    app_rng = np.random.default_rng(jit_rng.integers(0, 2**63))
    if app_rng.random() < aug.appearance_prob:
        rgb = appearance_shift(np.ascontiguousarray(rgb), app_rng, aug)
    return np.ascontiguousarray(rgb), np.ascontiguousarray(depth)


@dataclass
class ShardStream:
    """Training samples: dict(rgb=[3,H,W] float32 in [0,1], depth=[1,H,W] float32 metres, key,
    source, epoch, index). With `store` set, `ShardSource.paths` are its keys, fetched lazily."""

    sources: list[ShardSource]
    height: int
    seed: int = 0
    rank: int = 0
    world: int = 1
    shuffle_buffer: int = 64
    aug: Augment = field(default_factory=Augment)
    store: Any = None

    def __post_init__(self) -> None:
        if not any(s.paths for s in self.sources):
            raise InputError("training data: no shards in " + ", ".join(s.name for s in self.sources))
        if not 0 <= self.rank < self.world:
            raise InputError(f"rank {self.rank} outside world size {self.world}")

    def _epoch_shards(self, epoch: int) -> tuple[list[tuple[str, Path | str]], bool]:
        items = [(s.name, p) for s in self.sources for _ in range(s.repeat) for p in s.paths]
        order = np.random.default_rng([self.seed, epoch, 1]).permutation(len(items))
        items = [items[i] for i in order]
        if len(items) >= self.world:
            return items[self.rank :: self.world], False
        return items, True

    def _local(self, shard: Path | str) -> Path:
        if self.store is None:
            return Path(shard)
        # one download per node: the other workers wait, then find the cached copy
        name = hashlib.sha256(self.store.uri(str(shard)).encode()).hexdigest()[:24]
        with FileLock(Path(tempfile.gettempdir()) / f"dap-fetch-{name}.lock"):
            return Path(self.store.fetch(str(shard)))

    def _raw(self, epoch: int) -> Iterator[tuple[str, str, dict[str, bytes], str]]:
        shards, split_samples = self._epoch_shards(epoch)
        j = 0
        for name, shard in shards:
            path = self._local(shard)
            for key, parts in read_raw(path):
                if not split_samples or j % self.world == self.rank:
                    yield name, key, parts, str(path)
                j += 1

    def _shuffled(self, epoch: int):
        rng = np.random.default_rng([self.seed, epoch, self.rank, 2])
        buf: list = []
        for item in self._raw(epoch):
            if len(buf) < self.shuffle_buffer:
                buf.append(item)
                continue
            i = int(rng.integers(0, len(buf)))
            buf[i], item = item, buf[i]
            yield item
        for i in rng.permutation(len(buf)):
            yield buf[i]

    def _decode(self, epoch: int, index: int, source: str, key: str, parts: dict, where: str) -> dict:
        rgb, depth, _ = decode_raw(key, parts, where)
        if depth is None:
            raise InputError(f"{where}:{key}: training sample has no depth")
        rgb, depth = resize_pair(rgb, clean_depth(depth), self.height)
        rng = np.random.default_rng([self.seed, epoch, self.rank, 3, index])
        rgb_f, depth = augment(rgb.astype(np.float32) / 255.0, depth, rng, self.aug)
        return {
            "rgb": torch.from_numpy(rgb_f.transpose(2, 0, 1).copy()),  # [3,H,W]
            "depth": torch.from_numpy(depth[None].copy()),  # [1,H,W]
            "key": key,
            "source": source,
            "epoch": epoch,
            "index": index,
        }

    def iter_epoch(self, epoch: int, skip: int = 0) -> Iterator[dict]:
        """Samples of `epoch` for this rank, starting after the first `skip`."""
        for index, (source, key, parts, where) in enumerate(self._shuffled(epoch)):
            if index >= skip:
                yield self._decode(epoch, index, source, key, parts, where)

    def iter_from(self, position: tuple[int, int], worker: int = 0, workers: int = 1) -> Iterator[dict]:
        """Endless samples over epochs from `position` = (epoch, samples consumed): the k-th sample
        of the sequence from there when k % workers == worker (the others are read, not decoded)."""
        epoch, skip = int(position[0]), int(position[1])
        k = 0
        while True:
            seen = 0
            for index, (source, key, parts, where) in enumerate(self._shuffled(epoch)):
                seen += 1
                if index < skip:
                    continue
                if k % workers == worker:
                    yield self._decode(epoch, index, source, key, parts, where)
                k += 1
            if seen == 0:
                raise InputError(f"training data: rank {self.rank} of {self.world} got no samples")
            epoch, skip = epoch + 1, 0


class _WorkerStream(torch.utils.data.IterableDataset):
    """`stream.iter_from(position)` split across the DataLoader's workers (every W-th sample each).
    Pickled into spawned workers; a dataclass store (S3Store, LocalStore) travels as its fields
    and is rebuilt there, with its own client."""

    def __init__(self, stream: ShardStream, position: tuple[int, int]):
        self.stream, self.position = stream, position

    def __getstate__(self) -> dict:
        store = self.stream.store
        if store is not None and dataclasses.is_dataclass(store):
            spec = (type(store), {f.name: getattr(store, f.name) for f in fields(store) if f.init})
            return {"stream": dataclasses.replace(self.stream, store=None), "store": spec, "position": self.position}
        return {"stream": self.stream, "store": None, "position": self.position}

    def __setstate__(self, state: dict) -> None:
        stream = state["stream"]
        if state["store"] is not None:
            cls, kwargs = state["store"]
            stream = dataclasses.replace(stream, store=cls(**kwargs))
        self.stream, self.position = stream, state["position"]

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return self.stream.iter_from(self.position, worker, workers)


def _exit_worker() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # one core per worker; decoding parallelises across workers
    cv2.setNumThreads(1)
    # A spawned worker stopped with large batches still queued aborts in a C++ static destructor
    # ("terminate called without an active exception"); its loop has returned by then, so it
    # leaves before the interpreter's teardown instead.
    atexit.register(_exit_worker)


class BatchLoader:
    """Endless batches over epochs; `position` = (epoch, samples of it consumed by this rank).

    `workers` > 0 decodes in that many DataLoader processes (`pin_memory` pins each batch for an
    asynchronous host-to-GPU copy); the batches are the same for every `workers`."""

    def __init__(self, stream: ShardStream, batch_size: int, position: tuple[int, int] = (0, 0),
                 workers: int = 0, pin_memory: bool = False, prefetch: int = 2):
        self.stream = stream
        self.batch_size = batch_size
        self.epoch, self.consumed = int(position[0]), int(position[1])
        self.pin_memory = pin_memory
        self._loader = None
        if workers > 0:
            self._loader = torch.utils.data.DataLoader(
                _WorkerStream(stream, (self.epoch, self.consumed)), batch_size=None, num_workers=workers,
                prefetch_factor=prefetch, worker_init_fn=_worker_init,
                multiprocessing_context="spawn",  # OpenCV's thread pool hangs in a forked child
                generator=torch.Generator().manual_seed(stream.seed),  # leaves the global RNG alone
            )
            self._it = iter(self._loader)
        else:
            self._it = stream.iter_from((self.epoch, self.consumed))

    @property
    def position(self) -> tuple[int, int]:
        return self.epoch, self.consumed

    def _next_sample(self) -> dict:
        s = next(self._it)
        self.epoch, self.consumed = s["epoch"], s["index"] + 1
        return s

    def next_batch(self) -> dict:
        """dict(rgb=[B,3,H,W], depth=[B,1,H,W], keys, sources)."""
        samples = [self._next_sample() for _ in range(self.batch_size)]
        rgb = torch.stack([s["rgb"] for s in samples])
        depth = torch.stack([s["depth"] for s in samples])
        if self.pin_memory:
            rgb, depth = rgb.pin_memory(), depth.pin_memory()
        return {
            "rgb": rgb,
            "depth": depth,
            "keys": [s["key"] for s in samples],
            "sources": [s["source"] for s in samples],
        }

    def close(self) -> None:
        """Stops the worker processes (also done when the loader is garbage-collected)."""
        self._it = None
        self._loader = None
