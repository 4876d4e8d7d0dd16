"""Rotated cube faces of ERP panoramas and planar depth ↔ disparity on them (Depth Anywhere).

A rotation R (camera-to-world, `rotation_matrix` convention) turns the panorama as `rotate_erp`
does: the rotated panorama at ray d is the original at R·d. `rotated_cube(x, R, w)` equals
`erp_to_cube(rotate_erp(x, R), w)` with a single interpolation (face k's pixel ray R_k·c is read
from the original at R·R_k·c), so teacher faces and projected student predictions share one
exact sampling grid."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dap_model.geometry import cube_face_rotations, euclidean_to_planar_depth, rotation_matrix, valid_depth
from dap_model.geometry._checks import GeometryInputError, check_erp, check_mode
from dap_model.geometry._sampler import sample_erp
from dap_model.geometry._views import camera_plane_rays, views_grid

FACE_FOV_DEG = 90.0


def random_rotations(n: int, max_deg: float, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """n rotations with (yaw, pitch, roll) uniform in ±max_deg → (angles [n,3] degrees, R [n,3,3] float64)."""
    angles = (torch.rand(n, 3, generator=generator, dtype=torch.float64) * 2 - 1) * max_deg  # [n,3]
    return angles, rotation_matrix(*angles.unbind(-1), degrees=True)


def face_size(height: int, ratio: float) -> int:
    """Cube-face side for an H-high panorama: round(ratio·H), at least 2 (Depth Anywhere: H/2)."""
    return max(2, int(round(ratio * height)))


def rotated_cube(erp: Tensor, R: Tensor, face_w: int, mode: str = "bilinear", *, allow_nan: bool = False) -> Tensor:
    """ERP(s) [B,C,H,W] seen by a camera rotated by R ([3,3] or [B,3,3]) → cube faces
    [B,6,C,face_w,face_w] (F,R,B,L,U,D as `erp_to_cube`). Differentiable in `erp`."""
    fn = "rotated_cube"
    check_erp(fn, "erp", erp, allow_nan=allow_nan)
    check_mode(fn, mode)
    b, _, h, w = erp.shape
    r = torch.as_tensor(R)
    r = r[None] if r.dim() == 2 else r
    if r.dim() != 3 or r.shape[-2:] != (3, 3) or r.shape[0] not in (1, b):
        raise GeometryInputError(f"{fn}: `R` must have shape [3,3] or [B,3,3] with B = {b}, got {tuple(r.shape)}")
    r = r.to(erp.device, torch.float64)
    faces = cube_face_rotations(device=erp.device, dtype=torch.float64)  # [6,3,3]
    views = torch.einsum("gij,kjl->gkil", r, faces)  # [G,6,3,3]
    cam = camera_plane_rays(FACE_FOV_DEG, FACE_FOV_DEG, face_w, face_w)  # [w,w,3]
    grid = views_grid(views, cam, h, w, mode, erp.dtype)
    return sample_erp(erp, grid)  # [B,6,C,w,w]


def planar_to_disparity(planar: Tensor) -> tuple[Tensor, Tensor]:
    """Planar depth (any shape) → (disparity 1/z with 0 where invalid, valid bool)."""
    valid = valid_depth(planar)
    disp = torch.where(valid, 1.0 / torch.where(valid, planar, torch.ones_like(planar)), torch.zeros_like(planar))
    return disp, valid


def erp_depth_to_face_planar(depth: Tensor, R: Tensor, face_w: int) -> Tensor:
    """Euclidean ERP depth [B,1,H,W] (0/NaN = invalid) → planar z-depth on the rotated cube faces
    [B,6,1,w,w] (NaN where an invalid pixel entered the interpolation)."""
    d = torch.where(valid_depth(depth), depth, torch.full_like(depth, math.nan))
    faces = rotated_cube(d, R, face_w, allow_nan=True)  # [B,6,1,w,w]
    b = faces.shape[0]
    planar = euclidean_to_planar_depth(faces.reshape(b * 6, 1, face_w, face_w), FACE_FOV_DEG)
    return planar.reshape(b, 6, 1, face_w, face_w)


def erp_depth_to_face_disparity(depth: Tensor, R: Tensor, face_w: int) -> tuple[Tensor, Tensor]:
    """Euclidean ERP depth [B,1,H,W] → (disparity [B,6,1,w,w] (0 invalid), valid [B,6,1,w,w])."""
    return planar_to_disparity(erp_depth_to_face_planar(depth, R, face_w))
