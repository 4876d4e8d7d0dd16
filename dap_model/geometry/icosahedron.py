"""The 12 icosahedron-vertex view directions and perspective views centred on them (DF loss).

Orientation: a vertex at each pole; the upper ring at lat +atan(1/2) ≈ 26.57°, lon 0°, 72°, …,
288°; the lower ring at lat −atan(1/2), lon 36°, 108°, …, 324°. Order: north, upper ring, lower
ring, south. Every vertex has 5 nearest neighbours at 63.43°. View k looks along vertex k with
roll 0 (camera-to-world R_k = rotation_matrix(lon_k, lat_k, 0); the polar views are the cube's
U and D faces)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import check_erp, check_mode, check_positive_int
from ._sampler import sample_erp
from ._views import cached_views_grid, fov_pair
from .erp import lonlat_to_ray
from .rotation import rotation_matrix

_RING_LAT = math.degrees(math.atan(0.5))
ICOSAHEDRON_VIEW_ANGLES = (
    ((0.0, 90.0),)
    + tuple((72.0 * k, _RING_LAT) for k in range(5))
    + tuple((36.0 + 72.0 * k, -_RING_LAT) for k in range(5))
    + ((0.0, -90.0),)
)  # (yaw = lon, pitch = lat) in degrees, one per vertex


def icosahedron_vertices(device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Unit vectors [12,3] (x right, y up, z forward) of the icosahedron's vertices."""
    lon, lat = torch.deg2rad(torch.tensor(ICOSAHEDRON_VIEW_ANGLES, dtype=torch.float64)).unbind(-1)
    v = lonlat_to_ray(lon, lat)
    v = torch.where(v.abs() < 1e-15, torch.zeros_like(v), v)  # exact poles
    return v.to(device or "cpu", dtype)


def icosahedron_rotations(device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Camera-to-world rotations [12,3,3] of the 12 vertex views (forward column = vertex)."""
    yaw, pitch = torch.tensor(ICOSAHEDRON_VIEW_ANGLES, dtype=torch.float64).unbind(-1)
    return rotation_matrix(yaw, pitch, torch.zeros_like(yaw), degrees=True).to(device or "cpu", dtype)


def erp_to_icosahedron_views(
    erp: Tensor, fov_deg, size: int, mode: str = "bilinear", *, allow_nan: bool = False
) -> Tensor:
    """ERP(s) [B,C,H,W] → 12 square perspective views [B,12,C,size,size] centred on the vertices
    (order as `icosahedron_vertices`; pixel grid as `erp_to_perspective`). Grid cached.
    `allow_nan=True` for depth maps with invalid pixels (values are Euclidean depth)."""
    fn = "erp_to_icosahedron_views"
    check_erp(fn, "erp", erp, allow_nan=allow_nan)
    check_positive_int(fn, "size", size)
    check_mode(fn, mode)
    fov = fov_pair(fn, fov_deg)
    h, w = erp.shape[-2:]
    angles = tuple((y, p, 0.0) for y, p in ICOSAHEDRON_VIEW_ANGLES)
    grid = cached_views_grid(h, w, angles, fov, (size, size), mode, erp.device, erp.dtype)
    return sample_erp(erp, grid)  # [B,12,C,size,size]
