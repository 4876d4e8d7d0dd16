"""Depth → point cloud and surface normals on the ERP grid.

Depth is Euclidean distance along the ray (docs/architecture.md#conventions); invalid = ≤ 0 or
non-finite (NaN, ±Inf) and is accepted everywhere here: invalid pixels give zero points / zero
normals and are False in the optional validity mask. Gradients stay finite in the presence of
invalid pixels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import check_erp
from .erp import _erp_rays_cached


def valid_depth(depth: Tensor) -> Tensor:
    """Validity mask (same shape, bool): finite and > 0."""
    return torch.isfinite(depth) & (depth > 0)


def _rays_chw(h: int, w: int, depth: Tensor) -> Tensor:
    return _erp_rays_cached(h, w, depth.device, depth.dtype).permute(2, 0, 1)  # [3,H,W]


def depth_to_points(depth: Tensor, *, return_mask: bool = False):
    """Euclidean depth [B,1,H,W] → camera-frame points [B,3,H,W] = depth · ray (x right, y up,
    z forward). Invalid depth → (0,0,0). With `return_mask`, also the validity mask [B,1,H,W]."""
    check_erp("depth_to_points", "depth", depth, allow_nan=True, channels=1)
    _, _, h, w = depth.shape
    valid = valid_depth(depth)  # [B,1,H,W]
    d = torch.where(valid, depth, torch.zeros_like(depth))
    points = d * _rays_chw(h, w, depth)  # [B,3,H,W]
    return (points, valid) if return_mask else points


def depth_to_normals(depth: Tensor, *, return_mask: bool = False):
    """Euclidean depth [B,1,H,W] → unit surface normals [B,3,H,W] facing the camera (n · ray < 0).

    Central differences of the point cloud: along longitude with wrap-around across the ±180°
    seam, along latitude between the rows above and below. A normal is valid when the pixel and
    its four neighbours are valid and the tangents are not degenerate; the top and bottom rows
    (no row beyond the pole) are invalid. Invalid → zero normal; `return_mask` adds the mask
    [B,1,H,W]. Across depth discontinuities the normal is that of the bridging surface."""
    check_erp("depth_to_normals", "depth", depth, allow_nan=True, channels=1)
    points, valid = depth_to_points(depth, return_mask=True)  # [B,3,H,W], [B,1,H,W]
    t_lon = torch.roll(points, -1, dims=-1) - torch.roll(points, 1, dims=-1)  # [B,3,H,W], towards +lon
    t_lat = points[:, :, :-2] - points[:, :, 2:]  # [B,3,H-2,W], towards +lat (interior rows)
    n = torch.linalg.cross(t_lat, t_lon[:, :, 1:-1], dim=1)  # [B,3,H-2,W]
    norm2 = (n * n).sum(1, keepdim=True)  # [B,1,H-2,W]
    ok = (
        valid[:, :, 1:-1]
        & valid[:, :, :-2]
        & valid[:, :, 2:]
        & torch.roll(valid, -1, dims=-1)[:, :, 1:-1]
        & torch.roll(valid, 1, dims=-1)[:, :, 1:-1]
        & (norm2 > torch.finfo(n.dtype).tiny)
    )
    # unit length through a norm (backward ∝ 1/|n|) rather than rsqrt(|n|²) (backward ∝ |n|⁻³, which
    # overflows to inf·0 = NaN for near-zero tangents, e.g. a prediction collapsing towards 0 m)
    n = torch.nn.functional.normalize(n, dim=1, eps=math.sqrt(torch.finfo(n.dtype).tiny))
    rays = _rays_chw(*depth.shape[-2:], depth)[:, 1:-1]  # [3,H-2,W]
    n = torch.where((n * rays).sum(1, keepdim=True) > 0, -n, n)  # face the camera
    n = torch.where(ok, n, torch.zeros_like(n))
    normals = torch.nn.functional.pad(n, (0, 0, 1, 1))  # [B,3,H,W], rows 0 and H−1 zero
    if return_mask:
        return normals, torch.nn.functional.pad(ok, (0, 0, 1, 1))
    return normals
