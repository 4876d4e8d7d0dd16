"""Camera paths through free space: drone-like flights outdoors (≈1.5 m to ≈100 m above the
ground, smooth altitude changes), head-height walks indoors. Deterministic for a seed."""

from __future__ import annotations

import numpy as np

from dap_model.errors import InputError
from dap_model.sim.scenes import Scene, derive_seed


def _segment_free(scene: Scene, a: np.ndarray, b: np.ndarray, margin: float, step: float) -> bool:
    n = max(2, int(np.ceil(np.linalg.norm(b - a) / step)) + 1)
    pts = a[None] + np.linspace(0, 1, n)[:, None] * (b - a)[None]  # [n,3]
    return bool(scene.is_free(pts, margin).all())


def _start(scene: Scene, rng: np.random.Generator, h_fixed: float | None, margin: float) -> np.ndarray:
    b = scene.fly_bounds
    lo, hi = scene.cam_height
    for attempt in range(2000):
        x = rng.uniform(b[0] + 0.1 * (b[3] - b[0]), b[3] - 0.1 * (b[3] - b[0]))
        z = rng.uniform(b[2] + 0.1 * (b[5] - b[2]), b[5] - 0.1 * (b[5] - b[2]))
        if h_fixed is not None:
            h = h_fixed
        elif scene.domain == "outdoor":
            h = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        else:
            h = rng.uniform(lo, hi)
        p = np.array([x, h, z])
        if scene.is_free(p, margin)[0]:
            return p
    raise InputError(f"scene {scene.kind}/{scene.seed}: found no free camera position")


def trajectory(scene: Scene, n_frames: int, seed: int, height_m: float | None = None) -> list[np.ndarray]:
    """`n_frames` camera positions (world, metres) along one flight; each [3] float64.

    `height_m` fixes the height above the floor (e.g. the calibration scene)."""
    if n_frames < 1:
        raise InputError(f"n_frames must be >= 1, got {n_frames}")
    if height_m is not None and height_m <= 0:
        raise InputError(f"camera height must be > 0 m, got {height_m}")
    rng = np.random.default_rng(derive_seed("trajectory", scene.kind, scene.seed, seed))
    outdoor = scene.domain == "outdoor"
    margin = 1.0 if outdoor else 0.25
    lo, hi = scene.cam_height
    p = _start(scene, rng, height_m, margin)
    heading = rng.uniform(0, 2 * np.pi)
    out = [p]
    for _ in range(n_frames - 1):
        moved = False
        for attempt in range(40):
            turn = rng.normal(0, 0.25 if attempt == 0 else 1.2)
            hd = heading + turn
            step = float(np.clip(0.15 * p[1] + 2.0, 2.0, 18.0)) if outdoor else rng.uniform(0.4, 1.1)
            if height_m is not None:
                y = height_m
            elif outdoor:
                y = float(np.clip(p[1] * np.exp(rng.normal(0, 0.2)), lo, hi))
            else:
                y = float(np.clip(p[1] + rng.normal(0, 0.05), lo, hi))
            q = np.array([p[0] + step * np.sin(hd), y, p[2] + step * np.cos(hd)])
            if _segment_free(scene, p, q, margin, 0.5 if outdoor else 0.1):
                p, heading, moved = q, hd, True
                break
        if not moved:
            heading = rng.uniform(0, 2 * np.pi)
        out.append(p.copy())
    return out
