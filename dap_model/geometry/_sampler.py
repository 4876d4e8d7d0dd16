"""Sampling an ERP at arbitrary continuous pixel positions with correct wrap-around.

Most samples go through one `grid_sample` call (border padding, no copy of the image). Samples
whose bilinear footprint leaves the image — across the ±180° seam or past a pole — are
recomputed exactly by a small gather: column u wraps modulo W; row −1 is row 0 seen from the
opposite longitude (u + W/2), row H is row H−1 likewise (the same extension py360convert uses).
Building a grid costs trig; the grid builders in the view modules cache it per
(shape, device, dtype), so repeated calls only pay for `grid_sample`.

`RemapMaps` is the same grid for OpenCV's `cv2.remap` (the CPU path of fixed views without
gradients; cv2 is the library py360convert samples with, and its SIMD remap is about twice as fast
as `grid_sample` here): the K views stacked into one [K·h, w] pair of float32 maps, so an HWC image
is sampled by one remap call; the seam and pole samples are then overwritten by the exact gather
above. It is used only where `remap_is_exact` (OpenCV ≥ 4.11 interpolates float maps of 1, 3 or 4
channel images at full precision, others at 1/32 px), so both paths give the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

_LOW_PRECISION = (torch.float16, torch.bfloat16)  # sampled in float32: a 16-bit grid is off by ~W/2000 px


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _LOW_PRECISION else dtype


@dataclass(frozen=True, eq=False)
class ErpGrid:
    """Where to sample an H×W ERP: G grids (1 = shared by the batch, else one per batch item)
    of K views of h×w samples each."""

    h_src: int
    w_src: int
    mode: str
    grid: Tensor  # [G,K,h,w,2] normalised for grid_sample(align_corners=False), compute dtype
    fixes: tuple  # per g: (k [n], i [n], j [n], rows [m,n], cols [m,n], weights [m,n])


def _wrap(rows: Tensor, cols: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
    top = rows < 0
    bottom = rows > h - 1
    rows = torch.where(top, -1 - rows, rows)
    rows = torch.where(bottom, 2 * h - 1 - rows, rows)
    cols = torch.where(top | bottom, cols + w // 2, cols)
    return rows, torch.remainder(cols, w)


def build_erp_grid(u: Tensor, v: Tensor, h: int, w: int, mode: str, dtype: torch.dtype) -> ErpGrid:
    """u, v: [G,K,h,w] continuous pixel coordinates in the h×w source ERP (centres on integers);
    `dtype` is the image dtype the grid will sample."""
    dtype = compute_dtype(dtype)
    grid = torch.stack(((u + 0.5) * (2.0 / w) - 1.0, (v + 0.5) * (2.0 / h) - 1.0), dim=-1).to(dtype)
    fixes = []
    for g in range(u.shape[0]):
        ug, vg = u[g], v[g]  # [K,h,w]
        with torch.no_grad():
            if mode == "nearest":
                ru, rv = torch.round(ug), torch.round(vg)
                bad = (ru < 0) | (ru > w - 1) | (rv < 0) | (rv > h - 1)
            else:
                bad = (ug < 0) | (ug > w - 1) | (vg < 0) | (vg > h - 1)
            k, i, j = bad.nonzero(as_tuple=True)  # [n] each
        us, vs = ug[k, i, j], vg[k, i, j]  # [n]
        if mode == "nearest":
            rows = torch.round(vs).long()[None]  # [1,n]
            cols = torch.round(us).long()[None]
            weights = torch.ones_like(us)[None]
        else:
            u0, v0 = torch.floor(us.detach()), torch.floor(vs.detach())
            fu, fv = us - u0, vs - v0  # differentiable in u, v
            u0, v0 = u0.long(), v0.long()
            rows = torch.stack((v0, v0, v0 + 1, v0 + 1))  # [4,n]
            cols = torch.stack((u0, u0 + 1, u0, u0 + 1))
            weights = torch.stack(((1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv))
        rows, cols = _wrap(rows, cols, h, w)
        fixes.append((k, i, j, rows, cols, weights.to(dtype)))
    return ErpGrid(h, w, mode, grid, tuple(fixes))


def sample_erp(erp: Tensor, g: ErpGrid) -> Tensor:
    """erp [B,C,H,W] sampled on `g` → [B,K,C,h,w]. Differentiable in `erp` (and in the grid when
    it was built from tensors that require grad)."""
    if erp.dtype != g.grid.dtype:
        return sample_erp(erp.to(g.grid.dtype), g).to(erp.dtype)
    b_count = erp.shape[0]
    n_grids, k_views = g.grid.shape[:2]
    outs = []
    for b in range(b_count):  # loop over batch items; grid_sample parallelises over the K views
        gi = b if n_grids > 1 else 0
        src = erp[b : b + 1].expand(k_views, -1, -1, -1)  # [K,C,H,W] view, no copy
        out = F.grid_sample(src, g.grid[gi], mode=g.mode, padding_mode="border", align_corners=False)
        k, i, j, rows, cols, weights = g.fixes[gi]
        if k.numel():
            vals = (erp[b][:, rows, cols] * weights).sum(1)  # [C,m,n] → [C,n]
            out.permute(0, 2, 3, 1).index_put_((k, i, j), vals.t())  # out [K,C,h,w]
        outs.append(out)
    return outs[0].unsqueeze(0) if b_count == 1 else torch.stack(outs)  # [B,K,C,h,w]


@dataclass(frozen=True, eq=False)
class RemapMaps:
    """An `ErpGrid` with one shared grid as cv2 maps: K views of h×w stacked into one [K·h, w]
    pair of maps over the source ERP."""

    k: int
    h: int
    w: int
    map_x: np.ndarray  # [K·h,w] float32 source column (pixel centres on integers)
    map_y: np.ndarray  # [K·h,w] float32 source row
    interpolation: int
    fix: tuple  # (k, i, j, rows, cols, weights) of the grid: samples across the seam or a pole


def build_remap_maps(g: ErpGrid) -> RemapMaps:
    """cv2 maps of a float32 grid shared by the batch (g.grid [1,K,h,w,2])."""
    if g.grid.shape[0] != 1 or g.grid.device.type != "cpu":
        raise ValueError("build_remap_maps: needs one CPU grid shared by the batch")
    k, h, w = g.grid.shape[1:4]
    gd = g.grid[0].double()  # [K,h,w,2] normalised (align_corners=False)
    u = ((gd[..., 0] + 1.0) * (g.w_src / 2) - 0.5).reshape(k * h, w).float().numpy()  # [K·h,w] pixels
    v = ((gd[..., 1] + 1.0) * (g.h_src / 2) - 0.5).reshape(k * h, w).float().numpy()
    interpolation = cv2.INTER_NEAREST if g.mode == "nearest" else cv2.INTER_LINEAR
    return RemapMaps(k, h, w, u, v, interpolation, g.fixes[0])


@lru_cache(8)
def remap_is_exact(channels: int) -> bool:
    """Whether `cv2.remap` samples a float32 image of `channels` channels on float32 maps with
    exact bilinear weights (probed once on a small random image against the formula)."""
    rng = np.random.default_rng(0)
    img = rng.random((8, 8, channels), dtype=np.float32)  # [8,8,C]
    u = rng.uniform(0, 7, (4, 64)).astype(np.float32)  # [4,64]
    v = rng.uniform(0, 7, (4, 64)).astype(np.float32)
    out = cv2.remap(img, u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(4, 64, channels)
    x0, y0 = np.floor(u).astype(int), np.floor(v).astype(int)
    fx, fy = (u - x0)[..., None], (v - y0)[..., None]
    ref = (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x0 + 1] * fx * (1 - fy)
           + img[y0 + 1, x0] * (1 - fx) * fy + img[y0 + 1, x0 + 1] * fx * fy)
    return bool(np.abs(out - ref).max() < 1e-5)  # 1/32-px fixed point is off by up to ~1e-2


def remap_erp(erp: Tensor, m: RemapMaps) -> Tensor:
    """erp [B,C,H,W] float32 on the CPU (channels-last input is read without a copy) sampled
    on `m` → [B,K,C,h,w] with channels-last strides (memory [B,K,h,w,C], as cv2 writes it)."""
    b_count, c = erp.shape[:2]
    out = np.empty((b_count, m.k * m.h, m.w, c), np.float32)  # [B,K·h,w,C]
    for b in range(b_count):
        hwc = np.ascontiguousarray(erp[b].permute(1, 2, 0).numpy())  # [H,W,C], a view when channels-last
        dst = out[b] if c > 1 else out[b, ..., 0]  # [K·h,w,C] or [K·h,w], written in place
        cv2.remap(hwc, m.map_x, m.map_y, m.interpolation, dst=dst, borderMode=cv2.BORDER_REPLICATE)
    res = torch.from_numpy(out).view(b_count, m.k, m.h, m.w, c)  # [B,K,h,w,C]
    k, i, j, rows, cols, weights = m.fix
    if k.numel():
        for b in range(b_count):
            res[b].index_put_((k, i, j), (erp[b][:, rows, cols] * weights).sum(1).t())  # [n,C] exact
    return res.permute(0, 1, 4, 2, 3)  # [B,K,C,h,w]
