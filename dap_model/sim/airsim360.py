"""`dap simulate`: render sequences into the AirSim360 layout
`<out>/<sequence>/panorama_<i>.png` + `erp_distance_<i>.npy` + `meta.json` (kind, domain,
seed, style and the camera pose of every frame)."""

from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing as mp
import tempfile
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from dap_model import layout
from dap_model.config import DapConfig, SimConfig, project_dir, write_resolved_config
from dap_model.data.airsim360 import META_NAME, depth_name, panorama_name
from dap_model.io import atomic_write_bytes
from dap_model.sim.render import render_sequence
from dap_model.sim.scenes import derive_seed, pick_kind
from dap_model.storage import DataStore


@dataclass
class SequencePlan:
    name: str
    kind: str  # a concrete scene kind
    seed: int


@dataclass
class SimResult:
    out: str  # folder or store URI
    sequences: list[str]
    frames: int
    domains: dict[str, int]
    version: str  # content hash of everything written
    files: list[str] = field(default_factory=list)


def plan_sequences(sim: SimConfig) -> list[SequencePlan]:
    """Which scene every sequence shows: `mixed` makes sequence i indoor when ⌊(i+1)·share⌋ > ⌊i·share⌋
    (share = `indoor_share`; 0.5 alternates outdoor / indoor, 0.75 is three indoor in every four)."""
    plans = []
    for i in range(sim.scenes):
        seed = derive_seed("sim", sim.seed, i) % 2**31
        if sim.scene == "calibration":
            kind = "calibration"
        else:
            indoor = math.floor((i + 1) * sim.indoor_share + 1e-9) > math.floor(i * sim.indoor_share + 1e-9)
            group = sim.kind if sim.kind != "mixed" else ("indoor" if indoor else "outdoor")
            kind = pick_kind(group, seed)
        plans.append(SequencePlan(f"{i:04d}_{kind}", kind, seed))
    return plans


@contextmanager
def _threads(n: int):
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a, np.float32), allow_pickle=False)
    return buf.getvalue()


def _png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def render_plan(plan: SequencePlan, sim: SimConfig) -> tuple[str, list[tuple[str, bytes]]]:
    """Render one sequence → (domain, [(file name, bytes)]) in the AirSim360 layout."""
    with _threads(sim.threads):
        scene, frames = render_sequence(
            plan.kind, plan.seed, sim.frames_per_scene, sim.height, sim.style,
            shadows=sim.shadows, max_depth_m=sim.max_depth_m, weather=sim.weather,
            camera_height_m=sim.camera_height_m if sim.scene == "calibration" else None,
        )
    meta = {
        "sequence": plan.name, "kind": scene.kind, "domain": scene.domain, "seed": plan.seed,
        "style": sim.style, "weather": sim.weather, "height": sim.height, "width": 2 * sim.height,
        "depth": "euclidean ray distance, metres, float32; 0 = invalid (sky or beyond range)",
        "max_depth_m": sim.max_depth_m,
        "frames": [
            {"index": f.index, "position": [round(float(x), 6) for x in f.position],
             "rotation": [[round(float(x), 9) for x in row] for row in f.rotation]}
            for f in frames
        ],
        "scene": scene.summary(),
    }
    if sim.scene == "calibration":
        meta["camera_height_m"] = sim.camera_height_m
    blobs = [(panorama_name(f.index), _png_bytes(f.rgb)) for f in frames]
    blobs += [(depth_name(f.index), _npy_bytes(f.depth)) for f in frames]
    blobs.append((META_NAME, json.dumps(meta, sort_keys=True, indent=1).encode()))
    return scene.domain, blobs


def simulate(out_dir: str | Path, cfg: DapConfig, progress: Callable[[str], None] | None = None) -> SimResult:
    """Render `cfg.sim` into `out_dir` (AirSim360 layout); resolved config written beside it.

    `sim.workers` > 1 renders sequences in that many processes; the files are the same."""
    sim = cfg.sim
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    files: list[str] = []
    domains: dict[str, int] = {}
    total = 0
    plans = plan_sequences(sim)
    if sim.workers > 1 and len(plans) > 1:
        pool = ProcessPoolExecutor(min(sim.workers, len(plans)), mp_context=mp.get_context("spawn"))
        results = pool.map(render_plan, plans, [sim] * len(plans))
    else:
        pool = None
        results = (render_plan(p, sim) for p in plans)
    try:
        for plan, (domain, blobs) in zip(plans, results):
            for name, data in blobs:
                atomic_write_bytes(out / plan.name / name, data)
                rel = f"{plan.name}/{name}"
                files.append(rel)
                digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
            domains[domain] = domains.get(domain, 0) + 1
            total += len(blobs) // 2
            if progress:
                progress(f"{plan.name}: {len(blobs) // 2} frames")
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    write_resolved_config(cfg, out)
    return SimResult(str(out), [p.name for p in plans], total, domains, digest.hexdigest()[:16], files)


def simulate_to_store(cfg: DapConfig, store: DataStore, prefix: str = layout.AIRSIM360,
                      progress: Callable[[str], None] | None = None) -> SimResult:
    """Render into the data store under `prefix/`; objects of an earlier run that this run did
    not write are removed, so the prefix holds exactly this set."""
    cache = project_dir() / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sim-", dir=cache) as tmp:
        res = simulate(tmp, cfg, progress)
        keep = set()
        for rel in res.files + [layout.RESOLVED_CONFIG_NAME]:
            key = layout.join(prefix, rel)
            store.put_file(Path(tmp) / rel, key)
            keep.add(key)
        for key in store.list(prefix):
            if key not in keep:
                store.delete(key)
    res.out = store.uri(prefix)
    return res
