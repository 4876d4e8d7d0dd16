"""Vectorised ray casting against boxes, spheres, vertical cylinders, planes and room shells.

Rays are grouped in pixel tiles. Each tile gets a bounding cone (primary rays from one
origin) or a bounding ball of origins (parallel shadow rays); each primitive a bounding
sphere. Only (tile, primitive) pairs whose bounds meet are intersected, chunk by chunk, so the
work grows with the number of primitives a tile can see, not with the scene size. Planes and
shells are few and tested against every ray. float32 throughout; coordinates are relative to
the camera, so precision does not depend on where in the world the camera is."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dap_model.sim.scenes import Scene

INF = float("inf")
PAIR_CHUNK = 4096  # (tile, primitive) pairs intersected at once
TYPES = ("box", "sphere", "cylinder", "plane", "shell")


def _safe_dir(d: Tensor) -> Tensor:
    tiny = torch.full_like(d, 1e-12)
    return torch.where(d.abs() < 1e-12, torch.where(d < 0, -tiny, tiny), d)


# ----------------------------------------------------------------------------- kernels
# o [...,3] (broadcastable), d [...,3] unit, params [...,k] → t [...] (inf = miss)

def box_t(o: Tensor, d: Tensor, p: Tensor) -> Tensor:
    t1 = (p[..., 0:3] - o) / d
    t2 = (p[..., 3:6] - o) / d
    tn = torch.minimum(t1, t2).amax(-1)
    tf = torch.maximum(t1, t2).amin(-1)
    return torch.where((tn <= tf) & (tn > 0), tn, INF)


def shell_t(o: Tensor, d: Tensor, p: Tensor) -> Tensor:
    t1 = (p[..., 0:3] - o) / d
    t2 = (p[..., 3:6] - o) / d
    tn = torch.minimum(t1, t2).amax(-1)
    tf = torch.maximum(t1, t2).amin(-1)
    t = torch.where(tn > 0, tn, tf)
    return torch.where((tn <= tf) & (t > 0), t, INF)


def sphere_t(o: Tensor, d: Tensor, p: Tensor) -> Tensor:
    oc = o - p[..., 0:3]
    b = (oc * d).sum(-1)
    q = oc - b[..., None] * d  # closest approach of the line to the centre
    disc = p[..., 3] ** 2 - (q * q).sum(-1)  # no b² − c cancellation for far spheres
    t = -b - torch.sqrt(disc.clamp_min(0))
    return torch.where((disc >= 0) & (t > 0), t, INF)


def cylinder_t(o: Tensor, d: Tensor, p: Tensor) -> Tensor:
    ox, oy, oz = (o[..., i] for i in range(3))
    dx, dy, dz = (d[..., i] for i in range(3))
    cx, cz, r, y0, y1 = (p[..., i] for i in range(5))
    ex, ez = ox - cx, oz - cz
    a = dx * dx + dz * dz
    b = ex * dx + ez * dz
    c = ex * ex + ez * ez - r * r
    disc = b * b - a * c
    ts = (-b - torch.sqrt(disc.clamp_min(0))) / a.clamp_min(1e-12)
    ys = oy + ts * dy
    side = (disc >= 0) & (a > 1e-12) & (ts > 0) & (ys >= y0) & (ys <= y1)
    t = torch.where(side, ts, INF)
    for yc in (y0, y1):
        tc = (yc - oy) / dy
        hx, hz = ex + tc * dx, ez + tc * dz
        cap = (tc > 0) & (hx * hx + hz * hz <= r * r)
        t = torch.minimum(t, torch.where(cap, tc, INF))
    return t


def plane_t(o: Tensor, d: Tensor, p: Tensor) -> Tensor:
    n, c = p[..., 0:3], p[..., 3]
    dn = (n * d).sum(-1)
    t = (c - (n * o).sum(-1)) / torch.where(dn.abs() < 1e-12, torch.full_like(dn, -1e-12), dn)
    return torch.where((dn < 0) & (t > 0), t, INF)


KERNELS = {"box": box_t, "sphere": sphere_t, "cylinder": cylinder_t, "plane": plane_t, "shell": shell_t}


def bounding_spheres(kind: str, p: Tensor) -> tuple[Tensor, Tensor]:
    """Primitive parameters [N,k] → (centres [N,3], radii [N])."""
    if kind == "box":
        return (p[:, :3] + p[:, 3:]) / 2, (p[:, 3:] - p[:, :3]).norm(dim=1) / 2
    if kind == "sphere":
        return p[:, :3], p[:, 3]
    if kind == "cylinder":
        c = torch.stack([p[:, 0], (p[:, 3] + p[:, 4]) / 2, p[:, 1]], 1)
        return c, torch.sqrt(p[:, 2] ** 2 + ((p[:, 4] - p[:, 3]) / 2) ** 2)
    raise ValueError(kind)


# ----------------------------------------------------------------------------- scene on a device

@dataclass
class Prims:
    """Scene primitives as float32 tensors relative to an origin, plus material and bounds."""

    params: dict[str, Tensor]  # kind → [N,k]
    mats: dict[str, Tensor]  # kind → [N] (shell: [N,6])
    centres: dict[str, Tensor]  # culled kinds → [N,3]
    radii: dict[str, Tensor]  # culled kinds → [N]
    offsets: dict[str, int]  # kind → first global primitive id

    @classmethod
    def from_scene(cls, scene: Scene, origin: np.ndarray) -> "Prims":
        o = np.asarray(origin, np.float64)
        raw = {
            "box": (scene.boxes - np.concatenate([o, o]), scene.box_mat),
            "sphere": (scene.spheres - np.array([*o, 0.0]), scene.sphere_mat),
            "cylinder": (scene.cylinders - np.array([o[0], o[2], 0.0, o[1], o[1]]), scene.cyl_mat),
            "plane": (np.concatenate([scene.planes[:, :3], (scene.planes[:, 3] - scene.planes[:, :3] @ o)[:, None]], 1)
                      if len(scene.planes) else scene.planes, scene.plane_mat),
            "shell": (scene.shells - np.concatenate([o, o]), scene.shell_mat),
        }
        params, mats, centres, radii, offsets = {}, {}, {}, {}, {}
        start = 0
        for kind in TYPES:
            p, m = raw[kind]
            params[kind] = torch.from_numpy(np.ascontiguousarray(p, np.float32))
            mats[kind] = torch.from_numpy(np.asarray(m, np.int64))
            offsets[kind] = start
            start += len(p)
            if kind in ("box", "sphere", "cylinder") and len(p):
                centres[kind], radii[kind] = bounding_spheres(kind, params[kind])
        return cls(params, mats, centres, radii, offsets)


# ----------------------------------------------------------------------------- tiles

@dataclass
class Tiles:
    """Rays grouped in pixel tiles: dirs [T,K,3]; pix [T,K] flat index into the padded image."""

    dirs: Tensor
    pix: Tensor
    hp: int
    wp: int
    axis: Tensor  # [T,3] unit mean direction
    half_angle: Tensor  # [T] radians: every ray of the tile is within it of `axis`


def make_tiles(dirs: Tensor, tile: int) -> Tiles:
    """dirs [H,W,3] → tiles of tile×tile rays (edges padded by repetition)."""
    h, w, _ = dirs.shape
    hp, wp = -(-h // tile) * tile, -(-w // tile) * tile
    rows = torch.arange(hp).clamp_max(h - 1)
    cols = torch.arange(wp).clamp_max(w - 1)
    padded = dirs[rows][:, cols]  # [Hp,Wp,3]
    t = padded.reshape(hp // tile, tile, wp // tile, tile, 3).permute(0, 2, 1, 3, 4).reshape(-1, tile * tile, 3)
    pix = torch.arange(hp * wp).reshape(hp // tile, tile, wp // tile, tile).permute(0, 2, 1, 3).reshape(-1, tile * tile)
    axis = torch.nn.functional.normalize(t.sum(1), dim=1)  # [T,3]
    cosang = (t * axis[:, None]).sum(-1).amin(1).clamp(-1, 1)  # [T]
    half = torch.acos(cosang) + 1e-4
    return Tiles(_safe_dir(t), pix, hp, wp, axis, half)


def cull_cone(tiles: Tiles, centres: Tensor, radii: Tensor, far: float = INF) -> Tensor:
    """[T,N] bool: primitive bounding sphere can meet a ray of the tile (rays from the origin)."""
    dist = centres.norm(dim=1)  # [N]
    inside = dist <= radii
    ang_r = torch.asin((radii / dist.clamp_min(1e-6)).clamp(max=1.0))  # [N]
    u = centres / dist.clamp_min(1e-6)[:, None]
    ang = torch.acos((tiles.axis @ u.T).clamp(-1, 1))  # [T,N]
    hit = ang <= tiles.half_angle[:, None] + ang_r[None, :]
    hit |= inside[None, :]
    if math.isfinite(far):
        hit &= (dist - radii <= far)[None, :]
    return hit


# ----------------------------------------------------------------------------- casting

def _closest_pairs(kind, cull, origins, dirs, prims: Prims, best_t, best_id):
    """Intersect culled (tile, primitive) pairs; update best_t / best_id [T*K] in place."""
    k = dirs.shape[1]
    params = prims.params[kind]
    kernel = KERNELS[kind]
    pairs = cull.nonzero()  # [P,2]
    arange = torch.arange(k)
    for chunk in pairs.split(PAIR_CHUNK):
        ti, pi = chunk[:, 0], chunk[:, 1]
        o = origins if origins.shape[0] == 1 else origins[ti]
        t = kernel(o, dirs[ti], params[pi][:, None, :])  # [C,K]
        ray = (ti[:, None] * k + arange).reshape(-1)  # [C*K]
        t = t.reshape(-1)
        cmin = torch.full_like(best_t, INF).scatter_reduce(0, ray, t, "amin")
        win = torch.isfinite(t) & (t == cmin[ray])
        gid = (pi[:, None].expand(-1, k).reshape(-1) + prims.offsets[kind])
        cid = torch.full_like(best_id, -1).scatter_reduce(0, ray[win], gid[win], "amax")
        better = cmin < best_t
        best_t.copy_(torch.where(better, cmin, best_t))
        best_id.copy_(torch.where(better, cid, best_id))


def _any_pairs(kind, cull, origins, dirs, prims: Prims, hit):
    """Any-hit of culled (group, primitive) pairs: origins [G,K,3], dirs [1,1,3] or [G,K,3]."""
    k = origins.shape[1]
    params = prims.params[kind]
    kernel = KERNELS[kind]
    arange = torch.arange(k)
    for chunk in cull.nonzero().split(PAIR_CHUNK):
        ti, pi = chunk[:, 0], chunk[:, 1]
        t = kernel(origins[ti], dirs if dirs.shape[0] == 1 else dirs[ti], params[pi][:, None, :])  # [C,K]
        ray = (ti[:, None] * k + arange)[torch.isfinite(t)]
        hit[ray] = True


def cast_primary(tiles: Tiles, prims: Prims) -> tuple[Tensor, Tensor]:
    """Closest hit of every tiled ray from the origin → (t [T*K] (inf = miss), global id [T*K])."""
    n = tiles.dirs.shape[0] * tiles.dirs.shape[1]
    best_t = torch.full((n,), INF)
    best_id = torch.full((n,), -1, dtype=torch.int64)
    zero = torch.zeros(1, 1, 3)
    flat = tiles.dirs.reshape(-1, 3)
    for kind in ("plane", "shell"):
        p = prims.params[kind]
        for i in range(len(p)):
            t = KERNELS[kind](zero[0], flat, p[i][None, :])  # [N]
            better = t < best_t
            best_t = torch.where(better, t, best_t)
            best_id = torch.where(better, prims.offsets[kind] + i, best_id)
    for kind in ("box", "sphere", "cylinder"):
        if len(prims.params[kind]):
            cull = cull_cone(tiles, prims.centres[kind], prims.radii[kind])
            _closest_pairs(kind, cull, zero, tiles.dirs, prims, best_t, best_id)
    return best_t, best_id


def _part1by1(x: Tensor) -> Tensor:
    x = x & 0xFFFF
    x = (x | (x << 8)) & 0x00FF00FF
    x = (x | (x << 4)) & 0x0F0F0F0F
    x = (x | (x << 2)) & 0x33333333
    return (x | (x << 1)) & 0x55555555


def cast_shadow(points: Tensor, valid: Tensor, light: Tensor, prims: Prims, group: int = 256) -> Tensor:
    """points [N,3] (already offset from their surface), valid [N] bool, light [3] unit
    → occluded [N] bool (towards a light at infinity).

    Parallel rays are grouped by where they cross the plane perpendicular to the light (Morton
    order of that 2D position), so a group's rays form a thin bundle and each primitive is
    tested only against the bundles its bounding sphere's shadow can touch."""
    idx = valid.nonzero().squeeze(1)
    occluded = torch.zeros(len(points), dtype=torch.bool)
    if not len(idx):
        return occluded
    helper = torch.tensor([1.0, 0.0, 0.0]) if abs(float(light[0])) < 0.9 else torch.tensor([0.0, 0.0, 1.0])
    e1 = torch.nn.functional.normalize(torch.linalg.cross(light, helper), dim=0)
    e2 = torch.linalg.cross(light, e1)
    basis = torch.stack([e1, e2], 1)  # [3,2]
    pts = points[idx]  # [n,3]
    xy = pts @ basis  # [n,2]
    lo, span = xy.amin(0), (xy.amax(0) - xy.amin(0)).clamp_min(1e-6)
    q = ((xy - lo) / span * 65535).to(torch.int64)
    order = (_part1by1(q[:, 0]) | (_part1by1(q[:, 1]) << 1)).argsort()
    n = len(order)
    pad = torch.cat([order, order[-1:].expand((-n) % group)])
    g_pts = pts[pad].reshape(-1, group, 3)  # [G,K,3]
    g_xy = xy[pad].reshape(-1, group, 2)
    ctr = (g_xy.amin(1) + g_xy.amax(1)) / 2  # [G,2]
    rho = (g_xy - ctr[:, None]).norm(dim=-1).amax(1)  # [G]
    s_min = (g_pts @ light).amin(1)  # [G]
    d = _safe_dir(light).expand(1, 1, 3)
    hit = torch.zeros(g_pts.shape[0] * group, dtype=torch.bool)
    for kind in ("box", "sphere", "cylinder"):
        if len(prims.params[kind]):
            c, r = prims.centres[kind], prims.radii[kind]
            dist = torch.cdist(ctr, c @ basis)  # [G,N]
            cull = (dist <= r[None] + rho[:, None]) & ((c @ light + r)[None] >= s_min[:, None])
            _any_pairs(kind, cull, g_pts, d, prims, hit)
    occluded[idx[pad]] = hit
    return occluded


def normals_and_materials(p: Tensor, gid: Tensor, prims: Prims) -> tuple[Tensor, Tensor]:
    """Hit points p [N,3] (camera-relative) of primitives gid [N] (≥ 0) → (normals [N,3], mats [N])."""
    n = torch.zeros_like(p)
    mat = torch.zeros(len(p), dtype=torch.int64)
    bounds = [(kind, prims.offsets[kind], prims.offsets[kind] + len(prims.params[kind])) for kind in TYPES]
    for kind, lo, hi in bounds:
        sel = (gid >= lo) & (gid < hi)
        if not bool(sel.any()):
            continue
        i = gid[sel] - lo
        q = p[sel]
        prm = prims.params[kind][i]
        if kind in ("box", "shell"):
            dlo, dhi = (q - prm[:, :3]).abs(), (q - prm[:, 3:]).abs()
            dist = torch.cat([dlo, dhi], 1)  # [n,6]: faces -x,-y,-z,+x,+y,+z
            face = dist.argmin(1)
            sign = torch.where(face >= 3, 1.0, -1.0)
            nn = torch.nn.functional.one_hot(face % 3, 3).float() * sign[:, None]
            if kind == "shell":
                nn = -nn
                mat[sel] = prims.mats[kind][i, face]
            else:
                mat[sel] = prims.mats[kind][i]
        elif kind == "sphere":
            nn = torch.nn.functional.normalize(q - prm[:, :3], dim=1)
            mat[sel] = prims.mats[kind][i]
        elif kind == "cylinder":
            rx, rz = q[:, 0] - prm[:, 0], q[:, 2] - prm[:, 1]
            rad = torch.sqrt(rx * rx + rz * rz)
            cap = rad < prm[:, 2] * (1 - 1e-3)
            top = (q[:, 1] - prm[:, 4]).abs() < (q[:, 1] - prm[:, 3]).abs()
            capn = torch.stack([torch.zeros_like(rx), torch.where(top, 1.0, -1.0), torch.zeros_like(rx)], 1)
            siden = torch.stack([rx, torch.zeros_like(rx), rz], 1) / rad.clamp_min(1e-9)[:, None]
            nn = torch.where(cap[:, None], capn, siden)
            mat[sel] = prims.mats[kind][i]
        else:
            nn = prm[:, :3].clone()
            mat[sel] = prims.mats[kind][i]
        n[sel] = nn
    return n, mat
