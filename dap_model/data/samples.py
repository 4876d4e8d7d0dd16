"""Samples read back from tar shards for the models: decoding, depth cleaning, resizing to a
training height, deterministic evaluation batches, and the shard sets of a data store."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import pandas as pd
import torch

from dap_model import layout
from dap_model.data.shards import decode_png, read_raw
from dap_model.errors import InputError


def decode_raw(key: str, parts: dict[str, bytes], where: str) -> tuple[np.ndarray, np.ndarray | None, dict]:
    if "rgb.png" not in parts:
        raise InputError(f"{where}:{key}: no rgb.png")
    rgb = decode_png(parts["rgb.png"], f"{where}:{key}.rgb.png")
    depth = np.load(io.BytesIO(parts["depth.npy"]), allow_pickle=False) if "depth.npy" in parts else None
    meta = json.loads(parts.get("json", b"{}"))
    return rgb, depth, meta


def resize_pair(rgb: np.ndarray, depth: np.ndarray | None, height: int):
    """rgb [h,w,3] uint8 -> [height,2*height,3]; depth nearest-neighbour (keeps invalid = 0)."""
    if rgb.shape[1] != 2 * rgb.shape[0]:
        raise InputError(f"panorama is {rgb.shape[1]}x{rgb.shape[0]}: width must be 2 x height")
    if rgb.shape[0] != height:
        interp = cv2.INTER_AREA if rgb.shape[0] > height else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (2 * height, height), interpolation=interp)
        if depth is not None:
            depth = cv2.resize(depth, (2 * height, height), interpolation=cv2.INTER_NEAREST)
    return rgb, depth


def clean_depth(depth: np.ndarray) -> np.ndarray:
    depth = depth.astype(np.float32, copy=False)
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)


def split_shard_keys(store, prefix: str, split: str | None = None) -> list[str]:
    """Tar shards under `prefix` (recursively), optionally only `<split>-*.tar`."""
    keys = [k for k in store.list(prefix) if k.endswith(".tar")]
    if split is not None:
        keys = [k for k in keys if PurePosixPath(k).name.startswith(f"{split}-")]
    return sorted(keys)


def manifest_shard_keys(store, prefix: str) -> list[str]:
    """Shards named by `<prefix>/manifest.parquet` (column `shard`, relative to `prefix`)."""
    key = layout.manifest(prefix)
    if not store.exists(key):
        raise InputError(f"{store.uri(key)}: no manifest (materialise the asset that writes {prefix}/ first)")
    df = pd.read_parquet(store.fetch(key))
    return [layout.join(prefix, s) for s in sorted(df["shard"].unique())]


def fetch_all(store, keys: list[str]) -> list[Path]:
    return [Path(store.fetch(k)) for k in keys]



def iter_eval_batches(
    paths: list[Path], height: int, batch_size: int, limit: int | None = None, need_depth: bool = True
) -> Iterator[dict]:
    """Deterministic, unaugmented batches in stored order: dict(rgb=[B,3,height,2*height]
    float32 in [0,1], gts=[[h,w] float32 metres at stored resolution | None], rgbs=[[h,w,3] uint8],
    keys, metas)."""
    batch: list[tuple] = []
    n = 0

    def pack(items: list[tuple]) -> dict:
        return {
            "rgb": torch.stack([torch.from_numpy(x.transpose(2, 0, 1).copy()) for _, x, _, _, _ in items]),
            "gts": [g for _, _, g, _, _ in items],
            "rgbs": [r for _, _, _, _, r in items],
            "keys": [k for k, _, _, _, _ in items],
            "metas": [m for _, _, _, m, _ in items],
        }

    for path in paths:
        if limit is not None and n >= limit:
            break
        for key, parts in read_raw(Path(path)):
            if limit is not None and n >= limit:
                break
            rgb, depth, meta = decode_raw(key, parts, str(path))
            if depth is None and need_depth:
                raise InputError(f"{path}:{key}: evaluation sample has no depth")
            small, _ = resize_pair(rgb, None, height)
            gt = None if depth is None else clean_depth(depth)
            batch.append((key, small.astype(np.float32) / 255.0, gt, meta, rgb))
            n += 1
            if len(batch) == batch_size:
                yield pack(batch)
                batch = []
    if batch:
        yield pack(batch)
