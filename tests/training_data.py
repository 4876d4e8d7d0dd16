"""Stores with every input the trainer and curation read, made here from analytic box rooms:
depth by exact ray-box intersection (metres along the ray, docs/architecture.md#conventions),
colour from the hit face and a checker pattern, so depth is learnable from the image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dap_model.data.shards import Sample, ShardWriter
from dap_model.io import atomic_write_bytes

FACE_COLOURS = np.array(
    [[200, 80, 60], [60, 160, 90], [70, 90, 200], [210, 190, 80], [150, 150, 150], [90, 60, 40]],
    np.float32,
)


def box_panorama(h: int, rng: np.random.Generator, outdoor: bool = False, tint: float = 0.0):
    """rgb [h,2h,3] uint8, depth [h,2h] float32 metres (0 = sky for `outdoor`)."""
    w = 2 * h
    lon = (np.arange(w) + 0.5) / w * 2 * np.pi - np.pi
    lat = np.pi / 2 - (np.arange(h) + 0.5) / h * np.pi
    lon, lat = np.meshgrid(lon, lat)
    d = np.stack([np.cos(lat) * np.sin(lon), np.sin(lat), np.cos(lat) * np.cos(lon)], -1)  # [h,w,3]
    half = rng.uniform([2.0, 1.2, 2.0], [6.0, 2.0, 6.0]) * (3.0 if outdoor else 1.0)
    cam = rng.uniform(-0.5, 0.5, 3) * half
    with np.errstate(divide="ignore"):
        t_pos = (half - cam) / d
        t_neg = (-half - cam) / d
    t_axis = np.where(d > 0, t_pos, t_neg)  # [h,w,3]
    t_axis = np.where(np.isfinite(t_axis) & (t_axis > 0), t_axis, np.inf)
    axis = np.argmin(t_axis, -1)
    t = np.take_along_axis(t_axis, axis[..., None], -1)[..., 0]
    sign = np.take_along_axis(d, axis[..., None], -1)[..., 0] > 0
    face = axis * 2 + sign
    hit = cam + d * t[..., None]
    checker = (np.floor(hit[..., 0] * 2) + np.floor(hit[..., 1] * 2) + np.floor(hit[..., 2] * 2)) % 2
    shade = 0.55 + 0.45 / (1.0 + 0.15 * t)
    rgb = FACE_COLOURS[face] * (0.75 + 0.25 * checker)[..., None] * shade[..., None]
    rgb = rgb * (1 + tint) + rng.normal(0, 3, rgb.shape)
    depth = t.astype(np.float32)
    if outdoor:
        sky = face == 3  # ceiling -> sky
        rgb[sky] = [135, 190, 235]
        depth[sky] = 0.0
    return np.clip(rgb, 0, 255).astype(np.uint8), depth


def _write(store_root: Path, prefix: str, name: str, samples: list[Sample], shard_size: int) -> list[tuple[str, str]]:
    w = ShardWriter(store_root / prefix, name, shard_size)
    for s in samples:
        w.write(s)
    w.close()
    return w.written


def build_store(root: Path, h: int = 32, n_train: int = 12, n_val: int = 4, n_test: int = 4,
                n_pool: int = 8, n_web_test: int = 4, seed: int = 0, shard_size: int = 4) -> Path:
    """Local data store at `root` with labeled/, pool/, web/test/, web/gt/, synth/gt/."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        samples = []
        for i in range(n):
            rgb, depth = box_panorama(h, rng, outdoor=bool(i % 2))
            samples.append(Sample(f"lab_{split}_{i:04d}", rgb, depth, meta={"split": split}))
        for shard, key in _write(root, "labeled", split, samples, shard_size):
            rows.append({"key": key, "split": split, "shard": shard})
    buf = root / "labeled" / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(buf)

    # pool: "web" frames (a colour shift: another domain) and "synth" indoor images; GT withheld
    pool_rows, web_gt, synth_gt = [], [], []
    pool = []
    for i in range(n_pool):
        outdoor = i % 2 == 1
        src = "web" if i % 4 < 2 else "synth"
        rgb, depth = box_panorama(h, rng, outdoor=outdoor, tint=0.15)
        key = f"pool_{src}_{i:04d}"
        pool.append(Sample(key, rgb, None, meta={"domain": "outdoor" if outdoor else "indoor", "source": src}))
        (web_gt if src == "web" else synth_gt).append(Sample(key, rgb, depth))
    for shard, key in _write(root, "pool", "pool", pool, shard_size):
        s = next(p for p in pool if p.key == key)
        pool_rows.append({"key": key, "shard": shard, "domain": s.meta["domain"], "source": s.meta["source"]})
    pd.DataFrame(pool_rows).to_parquet(root / "pool" / "manifest.parquet")
    _write(root, "web/gt", "gt", web_gt, shard_size)
    _write(root, "synth/gt", "gt", synth_gt, shard_size)
    web_test = [Sample(f"webtest_{i:04d}", *box_panorama(h, rng, outdoor=bool(i % 2), tint=0.15)) for i in range(n_web_test)]
    _write(root, "web/test", "test", web_test, shard_size)
    atomic_write_bytes(root / "README", b"test store\n")
    return root
