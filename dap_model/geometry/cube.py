"""ERP ↔ cube map, with py360convert's `e2c` faces: order F, R, B, L, U, D; face k is the 90°
perspective view at (yaw, pitch) = CUBE_FACE_ANGLES[k], roll 0 — U's top row looks back (−z),
D's top row looks forward (+z) — on the corner-aligned pixel grid of `_views` (edge pixel centres
lie on the cube edges, as `e2c`'s `linspace(-0.5, 0.5, face_w)`)."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import (
    GeometryInputError,
    check_erp,
    check_erp_size,
    check_finite,
    check_mode,
    check_positive_int,
    check_tensor,
)
from ._sampler import compute_dtype, remap_erp, remap_is_exact, sample_erp
from ._views import cached_views_grid, cached_views_remap, camera_plane_rays
from .erp import _erp_rays_cached
from .rotation import rotation_matrix

CUBE_FACES = ("F", "R", "B", "L", "U", "D")
CUBE_FACE_ANGLES = ((0.0, 0.0), (90.0, 0.0), (180.0, 0.0), (-90.0, 0.0), (0.0, 90.0), (0.0, -90.0))  # (yaw, pitch) deg
_ANGLES3 = tuple((y, p, 0.0) for y, p in CUBE_FACE_ANGLES)


def cube_face_rotations(device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Camera-to-world rotations [6,3,3] of the faces F,R,B,L,U,D (columns: right, up, forward)."""
    yaw, pitch = torch.tensor(CUBE_FACE_ANGLES, dtype=torch.float64).unbind(-1)
    r = rotation_matrix(yaw, pitch, torch.zeros_like(yaw), degrees=True)
    return r.round(decimals=12).to(device or "cpu", dtype)  # exact 0/±1 entries


def cube_face_rays(face_w: int, device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """World-frame unit rays [6,face_w,face_w,3] of every cube-face pixel (faces F,R,B,L,U,D).
    Planar depth on face k = Euclidean depth · (ray · forward_k)."""
    check_positive_int("cube_face_rays", "face_w", face_w)
    cam = F.normalize(camera_plane_rays(90.0, 90.0, face_w, face_w), dim=-1)  # [w,w,3]
    r = cube_face_rotations(dtype=torch.float64)
    return torch.einsum("kij,hwj->khwi", r, cam).to(device or "cpu", dtype)


def erp_to_cube(erp: Tensor, face_w: int, mode: str = "bilinear", *, allow_nan: bool = False) -> Tensor:
    """ERP(s) [B,C,H,W] (W = 2H) → cube faces [B,6,C,face_w,face_w] in order F,R,B,L,U,D.

    Pixel for pixel as py360convert: out[b, k] ≈ np.stack(e2c(img_hwc, face_w, mode,
    cube_format="list"))[k].transpose(2, 0, 1) (same grid, same seam/pole extension; the only
    differences are py360convert's 1/32-px fixed-point coordinates and rounding of exact
    half-pixel ties in "nearest"). On the CPU without gradients, for float32/16 and a channel
    count that OpenCV remaps at full precision (1, 3 or 4 from OpenCV 4.11), the six faces come
    from one `cv2.remap` over cached float32 maps (seam and pole samples by an exact gather) and
    the result has channels-last strides (memory [B,6,fw,fw,C], like e2c's HWC faces);
    otherwise `grid_sample` (float64, CUDA, gradients) gives a contiguous result. The sampling
    maps are cached per (H, W, face_w, mode, device, dtype). `allow_nan=True` for depth maps
    with invalid pixels. Channels-last input (e.g. an HWC numpy image viewed with
    `.permute(2, 0, 1)[None]`) is read without a copy."""
    fn = "erp_to_cube"
    check_erp(fn, "erp", erp, allow_nan=allow_nan)
    check_positive_int(fn, "face_w", face_w)
    check_mode(fn, mode)
    h, w = erp.shape[-2:]
    if (
        erp.device.type == "cpu"
        and compute_dtype(erp.dtype) == torch.float32
        and not (erp.requires_grad and torch.is_grad_enabled())
        and remap_is_exact(erp.shape[1])
    ):
        src = erp.detach().float()  # no copy for float32
        maps = cached_views_remap(h, w, _ANGLES3, (90.0, 90.0), (face_w, face_w), mode)  # one [6·fw, fw] map
        return remap_erp(src, maps).to(erp.dtype)  # [B,6,C,fw,fw]
    grid = cached_views_grid(h, w, _ANGLES3, (90.0, 90.0), (face_w, face_w), mode, erp.device, erp.dtype)
    return sample_erp(erp, grid)  # [B,6,C,fw,fw]


_EDGE = 1e-3  # keeps a sample's row inside its own face in the stacked-face image


@lru_cache(16)
def _cube_to_erp_grid(h: int, w: int, face_w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    rays = _erp_rays_cached(h, w, torch.device("cpu"), torch.float64)  # [H,W,3]
    r = cube_face_rotations(dtype=torch.float64)  # [6,3,3]
    local = torch.einsum("kji,hwj->hwki", r, rays)  # [H,W,6,3]: (right, up, forward) per face
    face = local[..., 2].argmax(-1)  # [H,W]
    sel = local.gather(2, face[..., None, None].expand(h, w, 1, 3))[:, :, 0]  # [H,W,3]
    # face plane coords ∈ [−1, 1] → pixel coords on the corner-aligned face grid
    col = ((sel[..., 0] / sel[..., 2]).clamp(-1, 1) + 1) * ((face_w - 1) / 2)  # [H,W]
    row = (1 - (sel[..., 1] / sel[..., 2]).clamp(-1, 1)) * ((face_w - 1) / 2)
    row = row.clamp(0, max(face_w - 1 - _EDGE, 0)) + face * face_w  # row in the [6·fw, fw] stack
    gx = col * (2 / max(face_w - 1, 1)) - 1  # align_corners=True normalisation
    gy = row * (2 / (6 * face_w - 1)) - 1
    return torch.stack((gx, gy), -1)[None].to(device, dtype)  # [1,H,W,2]


def cube_to_erp(cube: Tensor, h: int, w: int, mode: str = "bilinear", *, allow_nan: bool = False) -> Tensor:
    """Cube faces [B,6,C,fw,fw] (F,R,B,L,U,D as `erp_to_cube`) → ERP(s) [B,C,h,w] (w = 2h).

    The exact geometric inverse of `erp_to_cube` (same face orientation and corner-aligned pixel
    grid); each ERP pixel samples the face its ray hits, bilinear within that face. (py360convert's
    `c2e` uses a different, non-inverse pixel grid, so it is not reproduced.) Grid cached per
    (h, w, fw, device, dtype). `allow_nan=True` for depth with holes."""
    fn = "cube_to_erp"
    check_tensor(fn, "cube", cube, rank=5, shape_hint="[B,6,C,w,w]")
    if cube.shape[1] != 6 or cube.shape[-1] != cube.shape[-2]:
        raise GeometryInputError(f"{fn}: `cube` must have shape [B,6,C,w,w], got {tuple(cube.shape)}")
    check_positive_int(fn, "h", h)
    check_positive_int(fn, "w", w)
    check_erp_size(fn, "h, w", h, w)
    check_mode(fn, mode)
    if not allow_nan:
        check_finite(fn, "cube", cube)
    dtype = cube.dtype
    src = cube.to(compute_dtype(dtype))
    b, _, c, fw, _ = cube.shape
    stack = src.transpose(1, 2).reshape(b, c, 6 * fw, fw)  # [B,C,6·fw,fw], faces stacked vertically
    grid = _cube_to_erp_grid(h, w, fw, cube.device, src.dtype)  # [1,H,W,2]
    out = F.grid_sample(stack, grid.expand(b, -1, -1, -1), mode=mode, padding_mode="border", align_corners=True)
    return out.to(dtype)  # [B,C,H,W]
