"""ERP pixel ↔ (lon, lat) ↔ unit ray, and per-pixel solid angles (docs/architecture.md#conventions).

Pixel (v, u) of an H×W ERP (W = 2H) has its centre at
    lon = (u + 0.5)/W · 2π − π      (image centre = lon 0, growing to the right)
    lat = π/2 − (v + 0.5)/H · π     (top row = up)
and looks along ray = (cos lat · sin lon, sin lat, cos lat · cos lon): x right, y up, z forward.
Continuous pixel coordinates put pixel centres on integers: u ∈ [−0.5, W − 0.5).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

from ._checks import GeometryInputError, check_positive_int, check_tensor

_CACHE = 16


def _device(device) -> torch.device:
    return torch.device(device) if device is not None else torch.device("cpu")


@lru_cache(_CACHE)
def _lonlat_1d(h: int, w: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    lon = (torch.arange(w, dtype=torch.float64) + 0.5) / w * (2 * math.pi) - math.pi  # [W]
    lat = math.pi / 2 - (torch.arange(h, dtype=torch.float64) + 0.5) / h * math.pi  # [H]
    return lon.to(device, dtype), lat.to(device, dtype)


@lru_cache(_CACHE)
def _erp_rays_cached(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    lon, lat = _lonlat_1d(h, w, torch.device("cpu"), torch.float64)
    rays = lonlat_to_ray(lon[None, :], lat[:, None])  # [H,W,3]
    return rays.to(device, dtype)


def erp_lonlat(h: int, w: int, device=None, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """(lon [H,W], lat [H,W]) in radians at the pixel centres of an h×w ERP."""
    check_positive_int("erp_lonlat", "h", h)
    check_positive_int("erp_lonlat", "w", w)
    lon, lat = _lonlat_1d(h, w, _device(device), dtype)
    return lon[None, :].expand(h, w).clone(), lat[:, None].expand(h, w).clone()


def erp_rays(h: int, w: int, device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Unit ray directions [H,W,3] (x right, y up, z forward) at the pixel centres of an h×w ERP."""
    check_positive_int("erp_rays", "h", h)
    check_positive_int("erp_rays", "w", w)
    return _erp_rays_cached(h, w, _device(device), dtype).clone()


def lonlat_to_ray(lon: Tensor, lat: Tensor) -> Tensor:
    """(lon [...], lat [...]) radians → unit rays [...,3]; broadcasts lon against lat."""
    c = torch.cos(lat)
    lon, lat, c = torch.broadcast_tensors(lon, lat, c)
    return torch.stack((c * torch.sin(lon), torch.sin(lat), c * torch.cos(lon)), dim=-1)


def ray_to_lonlat(ray: Tensor) -> tuple[Tensor, Tensor]:
    """Rays [...,3] (need not be unit length) → (lon [...] ∈ [−π, π], lat [...] ∈ [−π/2, π/2])."""
    check_tensor("ray_to_lonlat", "ray", ray)
    if ray.dim() == 0 or ray.shape[-1] != 3:
        raise GeometryInputError(f"ray_to_lonlat: `ray` must have shape [...,3], got {tuple(ray.shape)}")
    x, y, z = ray.unbind(-1)
    lon = torch.atan2(x, z)
    lat = torch.atan2(y, torch.hypot(x, z))
    return lon, lat


def lonlat_to_erp_pixel(lon: Tensor, lat: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
    """(lon, lat) radians → continuous ERP pixel coordinates (u [...], v [...]); centres are integers.

    u = (lon + π)/(2π)·W − 0.5, v = (π/2 − lat)/π·H − 0.5 (no wrapping applied)."""
    u = (lon + math.pi) * (w / (2 * math.pi)) - 0.5
    v = (math.pi / 2 - lat) * (h / math.pi) - 0.5
    return u, v


def erp_pixel_to_lonlat(u: Tensor, v: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
    """Continuous ERP pixel coordinates (u, v) → (lon, lat) radians; inverse of `lonlat_to_erp_pixel`."""
    lon = (u + 0.5) * (2 * math.pi / w) - math.pi
    lat = math.pi / 2 - (v + 0.5) * (math.pi / h)
    return lon, lat


@lru_cache(_CACHE)
def _solid_angle_cached(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    edges = math.pi / 2 - torch.arange(h + 1, dtype=torch.float64) * (math.pi / h)  # [H+1] top→bottom
    band = torch.sin(edges[:-1]) - torch.sin(edges[1:])  # [H]
    return (band * (2 * math.pi / w)).to(device, dtype)  # [H]


def solid_angle_weights(h: int, w: int, device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Exact solid angle [H,W] (steradians) of each ERP pixel: Δlon · (sin lat_top − sin lat_bottom).

    Sums to 4π. Use as per-pixel weights for area-correct losses and metrics."""
    check_positive_int("solid_angle_weights", "h", h)
    check_positive_int("solid_angle_weights", "w", w)
    return _solid_angle_cached(h, w, _device(device), dtype)[:, None].expand(h, w).clone()
