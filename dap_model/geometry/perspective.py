"""ERP → pinhole perspective views, matching py360convert's `e2p` (u_deg = yaw, v_deg = pitch,
in_rot_deg = roll; pixel grid as described in `_views`). Angles here are in degrees."""

from __future__ import annotations

from numbers import Real

import torch
from torch import Tensor

from ._checks import GeometryInputError, check_erp, check_mode, check_tensor
from ._sampler import sample_erp
from ._views import cached_views_grid, camera_plane_rays, fov_pair, out_size, views_grid
from .rotation import rotation_matrix


def perspective_camera_rays(fov_deg, out_hw, device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Unit rays [h,w,3] of a perspective view in its own camera frame (x right, y up, z forward).

    Their z component converts depth: planar (z) depth = Euclidean depth · ray_z."""
    fn = "perspective_camera_rays"
    cam = camera_plane_rays(*fov_pair(fn, fov_deg), *out_size(fn, out_hw))  # [h,w,3] float64
    return torch.nn.functional.normalize(cam, dim=-1).to(device or "cpu", dtype)


def perspective_rays(
    yaw_deg, pitch_deg, roll_deg, fov_deg, out_hw, device=None, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """World-frame unit rays [N,h,w,3] of perspective view(s) and their rotations R [N,3,3].

    N is the broadcast size of the angles (1 for scalars). R = rotation_matrix(yaw, pitch, roll)
    (camera-to-world); rays_world = R @ rays_cam with rays_cam from `perspective_camera_rays`."""
    cam = perspective_camera_rays(fov_deg, out_hw, device, dtype)  # [h,w,3]
    r = rotation_matrix(yaw_deg, pitch_deg, roll_deg, degrees=True, device=device, dtype=dtype).reshape(-1, 3, 3)
    return torch.einsum("nij,hwj->nhwi", r, cam), r


def erp_to_perspective(
    erp: Tensor, yaw_deg, pitch_deg, roll_deg, fov_deg, out_hw, mode: str = "bilinear", *, allow_nan: bool = False
) -> Tensor:
    """Perspective view(s) [B,C,h,w] of ERP(s) [B,C,H,W], as py360convert `e2p`.

    yaw_deg (+ right), pitch_deg (+ up), roll_deg: degrees, floats (grid cached) or tensors of
    shape [] / [B] (one view per batch item; differentiable in the angles). fov_deg: scalar or
    (h_fov, v_fov) degrees. out_hw: (h, w). `allow_nan=True` for depth maps with invalid pixels;
    the result is Euclidean depth — see `euclidean_to_planar_depth`."""
    fn = "erp_to_perspective"
    check_erp(fn, "erp", erp, allow_nan=allow_nan)
    check_mode(fn, mode)
    fov = fov_pair(fn, fov_deg)
    hw = out_size(fn, out_hw)
    b, _, h, w = erp.shape
    angles = (yaw_deg, pitch_deg, roll_deg)
    if all(isinstance(a, Real) for a in angles):
        grid = cached_views_grid(h, w, (tuple(float(a) for a in angles),), fov, hw, mode, erp.device, erp.dtype)
    else:
        for name, a in zip(("yaw_deg", "pitch_deg", "roll_deg"), angles):
            if isinstance(a, Tensor) and a.numel() not in (1, b):
                raise GeometryInputError(f"{fn}: `{name}` must be a number or a tensor of shape [] or [{b}], got {tuple(a.shape)}")
        cdtype = torch.float64 if erp.dtype == torch.float64 else torch.float32
        r = rotation_matrix(*(a.reshape(-1) if isinstance(a, Tensor) else a for a in angles),
                            degrees=True, device=erp.device, dtype=cdtype).reshape(-1, 1, 3, 3)  # [G,1,3,3]
        grid = views_grid(r, camera_plane_rays(*fov, *hw), h, w, mode, erp.dtype)
    return sample_erp(erp, grid)[:, 0]  # [B,C,h,w]


def _ray_z(fn: str, depth: Tensor, fov_deg) -> Tensor:
    check_tensor(fn, "depth", depth, rank=4, shape_hint="[B,1,h,w]")
    rays = perspective_camera_rays(fov_deg, tuple(depth.shape[-2:]), depth.device, depth.dtype)
    return rays[..., 2]  # [h,w]


def euclidean_to_planar_depth(depth: Tensor, fov_deg) -> Tensor:
    """Euclidean (ray-length) depth [B,1,h,w] of a perspective view → planar z-depth [B,1,h,w].
    Invalid values (0, NaN) stay invalid."""
    return depth * _ray_z("euclidean_to_planar_depth", depth, fov_deg)


def planar_to_euclidean_depth(depth: Tensor, fov_deg) -> Tensor:
    """Planar z-depth [B,1,h,w] of a perspective view → Euclidean ray-length depth [B,1,h,w]."""
    return depth / _ray_z("planar_to_euclidean_depth", depth, fov_deg)
