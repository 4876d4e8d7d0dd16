"""3-D rotations of the camera frame (x right, y up, z forward) and ERP resampling under them.

Convention (shared by every module, and identical to py360convert's `e2p`):

    R = rotation_matrix(yaw, pitch, roll) = Ry(yaw) · Rx(−pitch) · Rz(−roll)

with the elementary matrices Rx(a) = [[1,0,0],[0,c,−s],[0,s,c]], Ry(a) = [[c,0,s],[0,1,0],[−s,0,c]],
Rz(a) = [[c,−s,0],[s,c,0],[0,0,1]]. R is camera-to-world: its columns are the rotated camera's
right, up and forward axes in the original frame, and R @ d_cam = d_world. Roll is applied first
(about the forward axis), then pitch, then yaw (intrinsic yaw → pitch → roll). Effects:
positive yaw turns the view to the right (forward = ray at lon = +yaw), positive pitch looks up
(forward = ray at lat = +pitch), positive roll turns the camera's right axis downwards
(right = (cos roll, −sin roll, 0) at yaw = pitch = 0), so the picture turns counter-clockwise.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import GeometryInputError, check_erp, check_mode, check_tensor
from ._sampler import build_erp_grid, sample_erp
from .erp import _erp_rays_cached, lonlat_to_erp_pixel, ray_to_lonlat


def _as_tensors(*vals, device=None, dtype=None) -> list[Tensor]:
    ref = next((v for v in vals if isinstance(v, Tensor)), None)
    if dtype is None:
        dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    if device is None and ref is not None:
        device = ref.device
    return [torch.as_tensor(v, dtype=dtype, device=device) for v in vals]


def rotation_matrix(yaw, pitch, roll, *, degrees: bool = False, device=None, dtype=None) -> Tensor:
    """Camera-to-world rotation(s) Ry(yaw)·Rx(−pitch)·Rz(−roll) → [...,3,3] (see module doc).

    yaw, pitch, roll: floats or tensors (broadcast together), radians unless `degrees`.
    Differentiable in tensor angles."""
    yaw, pitch, roll = _as_tensors(yaw, pitch, roll, device=device, dtype=dtype)
    if degrees:
        yaw, pitch, roll = (torch.deg2rad(a) for a in (yaw, pitch, roll))
    yaw, pitch, roll = torch.broadcast_tensors(yaw, pitch, roll)
    cy, sy = torch.cos(yaw), torch.sin(yaw)
    cp, sp = torch.cos(pitch), torch.sin(pitch)
    cr, sr = torch.cos(roll), torch.sin(roll)
    one, zero = torch.ones_like(cy), torch.zeros_like(cy)

    def mat(*rows):  # 9 tensors [...] → [...,3,3]
        return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))

    ry = mat(cy, zero, sy, zero, one, zero, -sy, zero, cy)
    rx = mat(one, zero, zero, zero, cp, sp, zero, -sp, cp)  # Rx(−pitch)
    rz = mat(cr, sr, zero, -sr, cr, zero, zero, zero, one)  # Rz(−roll)
    return ry @ rx @ rz


def _check_rotation(fn: str, r, batch: int) -> Tensor:
    check_tensor(fn, "R", r)
    if r.dim() == 2:
        r = r[None]
    if r.dim() != 3 or r.shape[-2:] != (3, 3) or r.shape[0] not in (1, batch):
        raise GeometryInputError(f"{fn}: `R` must have shape [3,3] or [B,3,3] with B = {batch}, got {tuple(r.shape)}")
    if not bool(torch.isfinite(r).all()):
        raise GeometryInputError(f"{fn}: `R` contains NaN or Inf values")
    return r


def rotate_erp(erp: Tensor, R: Tensor, mode: str = "bilinear", *, allow_nan: bool = False) -> Tensor:
    """Resample ERP(s) [B,C,H,W] as seen by a camera rotated by R ([3,3] or [B,3,3]) → [B,C,H,W].

    out(d) = erp(R · d) for every output ray d, so `rotate_erp(x, rotation_matrix(a, 0, 0))`
    turns the view right by a (content moves left by a·W/2π px), and rotating by R then by Rᵀ
    returns the image. Longitude wraps across the ±180° seam and rows continue over the poles.
    Euclidean depth is unchanged by a rotation about the camera, so depth maps may be rotated
    directly: pass `allow_nan=True` for depth with invalid pixels (NaN spreads to bilinear
    neighbours; use mode="nearest" to keep invalid pixels crisp). Differentiable in `erp` and R.
    """
    fn = "rotate_erp"
    check_erp(fn, "erp", erp, allow_nan=allow_nan)
    check_mode(fn, mode)
    b, _, h, w = erp.shape
    r = _check_rotation(fn, R, b)
    cdtype = torch.float64 if erp.dtype == torch.float64 else torch.float32
    rays = _erp_rays_cached(h, w, erp.device, cdtype)  # [H,W,3]
    d = torch.einsum("gij,hwj->ghwi", r.to(erp.device, cdtype), rays)  # [G,H,W,3]
    lon, lat = ray_to_lonlat(d)  # [G,H,W]
    u, v = lonlat_to_erp_pixel(lon, lat, h, w)
    grid = build_erp_grid(u[:, None], v[:, None], h, w, mode, erp.dtype)  # K = 1 view
    return sample_erp(erp, grid)[:, 0]  # [B,C,H,W]

