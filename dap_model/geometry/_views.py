"""Pinhole views of the sphere shared by perspective, cube and icosahedron sampling.

Pixel grid as py360convert (`e2p`, `e2c`): corner-aligned, i.e. the outermost pixel *centres*
lie on the field-of-view edges. Pixel (i, j) of an h×w view looks along the camera-frame ray
(x_j, y_i, 1) with x_j = tan(hfov/2)·(2j/(w−1) − 1), y_i = tan(vfov/2)·(1 − 2i/(h−1)); in
intrinsics: f_x = (w−1)/(2 tan(hfov/2)), c_x = (w−1)/2 (likewise for y, with y up).
"""

from __future__ import annotations

import math
from functools import lru_cache
from numbers import Real

import torch
from torch import Tensor

from ._checks import GeometryInputError, check_mode, check_positive_int
from ._sampler import ErpGrid, RemapMaps, build_erp_grid, build_remap_maps
from .erp import lonlat_to_erp_pixel, ray_to_lonlat
from .rotation import rotation_matrix

_CACHE = 32


def fov_pair(fn: str, fov_deg) -> tuple[float, float]:
    """Scalar or (h_fov, v_fov) degrees → (h_fov, v_fov), each in (0, 180)."""
    if isinstance(fov_deg, Real) and not isinstance(fov_deg, bool):
        pair = (float(fov_deg), float(fov_deg))
    elif isinstance(fov_deg, (tuple, list)) and len(fov_deg) == 2 and all(isinstance(f, Real) for f in fov_deg):
        pair = (float(fov_deg[0]), float(fov_deg[1]))
    else:
        raise GeometryInputError(f"{fn}: `fov_deg` must be a number or (h_fov, v_fov) in degrees, got {fov_deg!r}")
    if not all(0.0 < f < 180.0 for f in pair):
        raise GeometryInputError(f"{fn}: `fov_deg` must lie in (0, 180) degrees, got {fov_deg!r}")
    return pair


def out_size(fn: str, out_hw) -> tuple[int, int]:
    if not isinstance(out_hw, (tuple, list)) or len(out_hw) != 2:
        raise GeometryInputError(f"{fn}: `out_hw` must be (height, width), got {out_hw!r}")
    return check_positive_int(fn, "out_hw[0]", out_hw[0]), check_positive_int(fn, "out_hw[1]", out_hw[1])


@lru_cache(_CACHE)
def camera_plane_rays(h_fov: float, v_fov: float, out_h: int, out_w: int) -> Tensor:
    """Camera-frame rays (x, y, 1) [h,w,3] on the z = 1 plane, float64 on CPU (read-only use)."""
    xm, ym = math.tan(math.radians(h_fov) / 2), math.tan(math.radians(v_fov) / 2)
    x = torch.linspace(-xm, xm, out_w, dtype=torch.float64)  # [w] left → right
    y = torch.linspace(ym, -ym, out_h, dtype=torch.float64)  # [h] top → bottom
    return torch.stack(torch.broadcast_tensors(x[None, :], y[:, None], torch.ones(1, 1, dtype=torch.float64)), -1)


def views_grid(r: Tensor, cam: Tensor, h: int, w: int, mode: str, dtype: torch.dtype) -> ErpGrid:
    """Rotations r [G,K,3,3] (camera-to-world) × camera rays cam [h',w',3] → ErpGrid on an h×w ERP."""
    world = torch.einsum("gkij,hwj->gkhwi", r, cam.to(r.device, r.dtype))  # [G,K,h',w',3]
    lon, lat = ray_to_lonlat(world)
    u, v = lonlat_to_erp_pixel(lon, lat, h, w)  # [G,K,h',w']
    return build_erp_grid(u, v, h, w, mode, dtype)


@lru_cache(_CACHE)
def cached_views_grid(
    h: int,
    w: int,
    angles_deg: tuple[tuple[float, float, float], ...],
    fov: tuple[float, float],
    out_hw: tuple[int, int],
    mode: str,
    device: torch.device,
    dtype: torch.dtype,
) -> ErpGrid:
    """Grid for K fixed views (yaw, pitch, roll in degrees), one shared by the whole batch."""
    yaw, pitch, roll = (torch.tensor(a, dtype=torch.float64) for a in zip(*angles_deg))  # [K]
    r = rotation_matrix(yaw, pitch, roll, degrees=True)[None]  # [1,K,3,3]
    return views_grid(r.to(device), camera_plane_rays(*fov, *out_hw), h, w, check_mode("views", mode), dtype)


@lru_cache(_CACHE)
def cached_views_remap(
    h: int, w: int, angles_deg: tuple[tuple[float, float, float], ...], fov: tuple[float, float], out_hw: tuple[int, int], mode: str
) -> RemapMaps:
    """cv2 maps of `cached_views_grid` on the CPU (float32): the K views stacked into one map."""
    return build_remap_maps(cached_views_grid(h, w, angles_deg, fov, out_hw, mode, torch.device("cpu"), torch.float32))


def clear_sampling_caches() -> None:
    """Drop the cached view grids and maps (the next call of a view sampler rebuilds them: a cold call)."""
    cached_views_remap.cache_clear()
    cached_views_grid.cache_clear()
    camera_plane_rays.cache_clear()
