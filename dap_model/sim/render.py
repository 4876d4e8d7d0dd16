"""ERP RGB + Euclidean ray-distance depth of a procedural scene (docs/architecture.md#conventions).

    scene = make_scene("city", seed=3)
    rgb, depth = render(scene, position=[0, 12, 0], rotation=None, height=256)
    # rgb uint8 [256,512,3]; depth float32 [256,512] metres, 0 = sky / beyond max_depth_m

`rotation` is camera-to-world ([3,3]; `dap_model.geometry.rotation_matrix(yaw, pitch, roll)`):
world ray = rotation @ camera ray, so a tilted or shaky camera is rendered exactly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dap_model.errors import InputError
from dap_model.geometry import erp_rays, rotation_matrix
from dap_model.sim import raycast, shading
from dap_model.sim.scenes import Scene, derive_seed, make_scene
from dap_model.sim.trajectory import trajectory

TILE = 16


@dataclass
class Frame:
    index: int
    rgb: np.ndarray  # [H,W,3] uint8
    depth: np.ndarray  # [H,W] float32 metres, 0 = invalid
    position: np.ndarray  # [3] world metres
    rotation: np.ndarray  # [3,3] camera-to-world


def _rotation(rotation) -> np.ndarray | None:
    if rotation is None:
        return None
    r = np.asarray(rotation, np.float64)
    if r.shape == (3,):
        return rotation_matrix(*r.tolist(), dtype=torch.float64).numpy()
    if r.shape != (3, 3) or not np.all(np.isfinite(r)):
        raise InputError(f"rotation: expected a finite [3,3] matrix or (yaw, pitch, roll), got shape {r.shape}")
    if not np.allclose(r @ r.T, np.eye(3), atol=1e-4) or np.linalg.det(r) < 0:
        raise InputError("rotation: not a proper rotation matrix (R Rᵀ ≠ I or det < 0)")
    return r


def render(
    scene: Scene,
    position,
    rotation=None,
    height: int = 128,
    style: str = "labeled",
    seed: int = 0,
    *,
    shadows: bool = True,
    max_depth_m: float = 1000.0,
    look: shading.Look | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one panorama → (rgb uint8 [H,2H,3], depth float32 [H,2H] metres, 0 = invalid).

    position: [3] world metres; rotation: None (gravity-aligned, lon 0 = +z), a [3,3]
    camera-to-world matrix, or (yaw, pitch, roll) radians; style: `labeled` | `web`; seed:
    per-frame randomness (sensor noise of the web style)."""
    if not isinstance(height, (int, np.integer)) or height < 2:
        raise InputError(f"height: expected an integer >= 2 pixels, got {height!r}")
    pos = np.asarray(position, np.float64).reshape(-1)
    if pos.shape != (3,) or not np.all(np.isfinite(pos)):
        raise InputError(f"position: expected 3 finite numbers, got {position!r}")
    look = look or shading.make_look(scene, style, shadows)
    h, w = int(height), 2 * int(height)
    dirs = erp_rays(h, w, dtype=torch.float64)  # [H,W,3]
    r = _rotation(rotation)
    if r is not None:
        dirs = dirs @ torch.from_numpy(r).T
    tiles = raycast.make_tiles(dirs.to(torch.float32), TILE)  # dirs [T,K,3]
    prims = raycast.Prims.from_scene(scene, pos)
    t, gid = raycast.cast_primary(tiles, prims)  # [T*K]
    d = tiles.dirs.reshape(-1, 3)  # [N,3]
    hit = torch.isfinite(t)
    idx = hit.nonzero().squeeze(1)
    th = t[idx]
    p_rel = d[idx] * th[:, None]  # [n,3] camera-relative
    n, mat = raycast.normals_and_materials(p_rel, gid[idx], prims)
    n = torch.where(((n * d[idx]).sum(1) > 0)[:, None], -n, n)  # face the camera
    p_world = p_rel + torch.from_numpy(pos.astype(np.float32))
    alb, emissive = shading.albedo(
        p_world, n, mat, torch.from_numpy(scene.mat_role), torch.from_numpy(scene.mat_param.astype(np.float32)), look
    )
    shadow = None
    if look.shadows:
        lit = ((n @ look.sun_dir) > 0) & ~emissive
        pts = torch.zeros(len(d), 3)
        pts[idx] = p_rel + n * (1e-3 * (1 + th))[:, None]
        valid = torch.zeros(len(d), dtype=torch.bool)
        valid[idx] = lit
        shadow = raycast.cast_shadow(pts, valid, look.sun_dir, prims)[idx]
    lamps = torch.from_numpy(scene.lamps.astype(np.float32))
    rooms = torch.from_numpy(scene.lamp_room.astype(np.float32))
    col = torch.empty(len(d), 3)
    col[idx] = shading.fog(shading.shade(alb, emissive, n, p_world, shadow, lamps, rooms, look), th, look)
    miss = (~hit).nonzero().squeeze(1)
    col[miss] = shading.sky(d[miss], look)
    rgb_flat = (shading.tonemap(col, look) * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    depth_flat = torch.where(hit & (t <= max_depth_m), t, torch.zeros(()))
    rgb = torch.empty(tiles.hp * tiles.wp, 3, dtype=torch.uint8)
    rgb[tiles.pix.reshape(-1)] = rgb_flat
    depth = torch.empty(tiles.hp * tiles.wp)
    depth[tiles.pix.reshape(-1)] = depth_flat
    rgb_img = rgb.reshape(tiles.hp, tiles.wp, 3)[:h, :w].numpy().copy()
    depth_img = depth.reshape(tiles.hp, tiles.wp)[:h, :w].numpy().astype(np.float32)
    if look.style == "web":
        rgb_img = shading.web_camera(rgb_img, derive_seed("camera", scene.seed, seed))
    return rgb_img, depth_img


def shaky_rotations(n_frames: int, seed: int, shake_deg: float) -> list[np.ndarray]:
    """Hand-held / drone wobble: yaw drifting freely, pitch and roll ~ N(0, shake_deg)."""
    rng = np.random.default_rng(derive_seed("shake", seed))
    yaw = rng.uniform(-np.pi, np.pi) + np.cumsum(rng.normal(0, 0.3, n_frames))
    pitch, roll = np.radians(rng.normal(0, shake_deg, (2, n_frames)))
    r = rotation_matrix(torch.from_numpy(yaw), torch.from_numpy(pitch), torch.from_numpy(roll), dtype=torch.float64)
    return list(r.numpy())


def render_sequence(
    kind: str,
    seed: int,
    n_frames: int,
    height: int,
    style: str = "labeled",
    *,
    shake_deg: float = 0.0,
    shadows: bool = True,
    max_depth_m: float = 1000.0,
    camera_height_m: float | None = None,
    scene: Scene | None = None,
    weather: str = "clear",
) -> tuple[Scene, list[Frame]]:
    """One flight through `make_scene(kind, seed)` → (scene, frames).

    shake_deg = 0: gravity-aligned, heading fixed (the labelled set); > 0: random yaw drift and
    pitch/roll wobble of that standard deviation (web-style footage)."""
    scene = scene or make_scene(kind, seed)
    look = shading.make_look(scene, style, shadows, weather)
    positions = trajectory(scene, n_frames, seed, height_m=camera_height_m)
    rots = shaky_rotations(n_frames, derive_seed(scene.seed, seed), shake_deg) if shake_deg > 0 else [np.eye(3)] * n_frames
    frames = []
    for i, (pos, rot) in enumerate(zip(positions, rots)):
        rgb, depth = render(scene, pos, None if shake_deg <= 0 else rot, height, style, seed=derive_seed(seed, i),
                            max_depth_m=max_depth_m, look=look)
        frames.append(Frame(i, rgb, depth, pos, np.asarray(rot, np.float64)))
    return scene, frames
