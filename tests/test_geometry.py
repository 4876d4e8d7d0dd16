"""dap_model.geometry against analytic truths and py360convert (test-only dependency)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dap_model.geometry import (
    CUBE_FACES,
    GeometryInputError,
    cube_face_rays,
    cube_to_erp,
    depth_to_normals,
    depth_to_points,
    erp_lonlat,
    erp_pixel_to_lonlat,
    erp_rays,
    erp_to_cube,
    erp_to_icosahedron_views,
    erp_to_perspective,
    euclidean_to_planar_depth,
    icosahedron_rotations,
    icosahedron_vertices,
    lonlat_to_erp_pixel,
    lonlat_to_ray,
    perspective_camera_rays,
    perspective_rays,
    planar_to_euclidean_depth,
    ray_to_lonlat,
    rotate_erp,
    rotation_matrix,
    solid_angle_weights,
)

torch.set_num_threads(min(2, torch.get_num_threads()))

F64 = torch.float64


def smooth_erp(h: int, dtype=torch.float32, batch: int = 1) -> torch.Tensor:
    """Smooth RGB test panorama [B,3,h,2h]: functions of the ray, so continuous across the seam
    and the poles."""
    x, y, z = erp_rays(h, 2 * h, dtype=F64).unbind(-1)
    img = torch.stack((0.5 + 0.3 * x, 0.5 + 0.2 * torch.sin(2 * y + z), 0.5 + 0.25 * x * z), 0)
    return img[None].expand(batch, -1, -1, -1).to(dtype).contiguous()


def reference_sample(erp: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Plain bilinear sampling on an explicitly padded ERP (circular columns, rows continued over
    the poles): erp [1,C,H,W], u/v [h,w] pixel coordinates → [C,h,w]."""
    _, _, h, w = erp.shape
    top = torch.roll(erp[:, :, :1], w // 2, dims=-1)
    bottom = torch.roll(erp[:, :, -1:], w // 2, dims=-1)
    padded = torch.cat((top, erp, bottom), 2)
    padded = torch.cat((padded[..., -1:], padded, padded[..., :1]), 3)  # [1,C,H+2,W+2]
    gx = (u + 1) / (w + 1) * 2 - 1
    gy = (v + 1) / (h + 1) * 2 - 1
    grid = torch.stack((gx, gy), -1)[None].to(erp.dtype)
    return torch.nn.functional.grid_sample(padded, grid, align_corners=True)[0]


# ---------------------------------------------------------------- ERP ↔ lon/lat ↔ ray


def test_erp_pixel_centres_follow_design_convention():
    h, w = 4, 8
    lon, lat = erp_lonlat(h, w, dtype=F64)
    assert lon.shape == lat.shape == (h, w)
    assert lon[0, 0].item() == pytest.approx(0.5 / w * 2 * math.pi - math.pi)
    assert lat[0, 0].item() == pytest.approx(math.pi / 2 - 0.5 / h * math.pi)
    assert torch.allclose(lon[:, : w // 2], -lon[:, w // 2 :].flip(-1))  # centre = lon 0
    rays = erp_rays(h, w, dtype=F64)
    assert torch.allclose(rays.norm(dim=-1), torch.ones(h, w, dtype=F64))
    # lon 0, lat 0 looks along +z; lon +90° along +x; up is +y
    r = lonlat_to_ray(torch.tensor([0.0, math.pi / 2, 0.0], dtype=F64), torch.tensor([0.0, 0.0, math.pi / 2], dtype=F64))
    assert torch.allclose(r, torch.eye(3, dtype=F64)[[2, 0, 1]], atol=1e-12)


def test_lonlat_ray_pixel_round_trips():
    h, w = 16, 32
    lon, lat = erp_lonlat(h, w, dtype=F64)
    lon2, lat2 = ray_to_lonlat(lonlat_to_ray(lon, lat))
    assert torch.allclose(lon2, lon) and torch.allclose(lat2, lat)
    u, v = lonlat_to_erp_pixel(lon, lat, h, w)
    uu, vv = torch.meshgrid(torch.arange(h, dtype=F64), torch.arange(w, dtype=F64), indexing="ij")
    assert torch.allclose(u, vv, atol=1e-9) and torch.allclose(v, uu, atol=1e-9)
    lon3, lat3 = erp_pixel_to_lonlat(u, v, h, w)
    assert torch.allclose(lon3, lon) and torch.allclose(lat3, lat)
    # non-unit rays are fine
    lon4, lat4 = ray_to_lonlat(3.0 * lonlat_to_ray(lon, lat))
    assert torch.allclose(lon4, lon) and torch.allclose(lat4, lat)


@pytest.mark.parametrize("h", [1, 7, 64, 512])
def test_solid_angle_weights_sum_to_4pi(h):
    wts = solid_angle_weights(h, 2 * h, dtype=F64)
    assert wts.shape == (h, 2 * h) and bool((wts > 0).all())
    assert wts.sum().item() == pytest.approx(4 * math.pi, rel=1e-12)
    # equal per row, symmetric about the equator, ≈ cos(lat)·Δlon·Δlat for fine grids
    assert torch.allclose(wts, wts.flip(0))
    if h >= 64:
        _, lat = erp_lonlat(h, 2 * h, dtype=F64)
        approx = torch.cos(lat) * (2 * math.pi / (2 * h)) * (math.pi / h)
        assert torch.allclose(wts, approx, rtol=1e-3)


# ---------------------------------------------------------------- points and normals


def test_sphere_points_at_radius_and_normals_face_camera():
    h, r = 32, 2.5
    depth = torch.full((2, 1, h, 2 * h), r, dtype=F64)
    pts = depth_to_points(depth)
    assert pts.shape == (2, 3, h, 2 * h)
    assert torch.allclose(pts.norm(dim=1), torch.full((2, h, 2 * h), r, dtype=F64))
    normals, mask = depth_to_normals(depth, return_mask=True)
    rays = erp_rays(h, 2 * h, dtype=F64).permute(2, 0, 1)
    assert mask.shape == (2, 1, h, 2 * h)
    assert bool(mask[:, :, 1:-1].all()) and not bool(mask[:, :, [0, -1]].any())  # rows at the poles
    inner = mask.expand(-1, 3, -1, -1)
    assert torch.allclose(normals[inner], (-rays).expand(2, -1, -1, -1)[inner], atol=1e-9)
    assert bool((normals[:, :, [0, -1]] == 0).all())


def test_ground_plane_points_and_normals():
    h, cam_h = 64, 1.6
    _, lat = erp_lonlat(h, 2 * h, dtype=F64)
    below = lat < 0
    depth = torch.where(below, cam_h / torch.sin(-lat).clamp_min(1e-12), torch.zeros_like(lat))[None, None]
    pts, valid = depth_to_points(depth, return_mask=True)
    assert torch.equal(valid[0, 0], below)
    assert torch.allclose(pts[0, 1][below], torch.full_like(pts[0, 1][below], -cam_h))
    assert bool((pts[0][:, ~below] == 0).all())
    normals, mask = depth_to_normals(depth, return_mask=True)
    # every pixel below the first valid row (which borders the invalid sky) has the plane normal
    inner = mask[0, 0]
    rows_valid = below[:, 0].nonzero().squeeze(1)
    assert bool(inner[rows_valid[1:-1]].all()) and not bool(inner[~below].any())
    up = torch.tensor([0.0, 1.0, 0.0], dtype=F64)
    assert torch.allclose(normals[0].permute(1, 2, 0)[inner], up.expand(int(inner.sum()), 3), atol=1e-9)


def test_normals_wrap_across_seam():
    """A wall behind the camera (z = −d) crosses the ±180° seam: the seam columns must see it
    as a plane (normal +z, facing the camera), not as a step."""
    h, d = 32, 3.0
    rays = erp_rays(h, 2 * h, dtype=F64)
    behind = rays[..., 2] < -0.2
    depth = torch.where(behind, d / (-rays[..., 2]).clamp_min(1e-12), torch.zeros_like(rays[..., 2]))[None, None]
    normals, mask = depth_to_normals(depth, return_mask=True)
    m = mask[0, 0]
    assert bool(m[:, 0].any()) and bool(m[:, -1].any())  # the seam columns are valid
    n = normals[0].permute(1, 2, 0)[m]
    assert torch.allclose(n, torch.tensor([0.0, 0.0, 1.0], dtype=F64).expand_as(n), atol=1e-9)


def test_invalid_depth_gives_zero_normals_and_finite_gradients():
    h = 16
    depth = torch.full((1, 1, h, 2 * h), 2.0)
    depth[0, 0, 5, 7] = float("nan")
    depth[0, 0, 9, 20] = 0.0
    depth[0, 0, 3, 3] = float("inf")
    depth.requires_grad_(True)
    pts, pmask = depth_to_points(depth, return_mask=True)
    normals, nmask = depth_to_normals(depth, return_mask=True)
    assert bool(torch.isfinite(pts).all()) and bool(torch.isfinite(normals).all())
    for v, u in ((5, 7), (9, 20), (3, 3)):
        assert not bool(pmask[0, 0, v, u])
        for dv, du in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
            assert not bool(nmask[0, 0, v + dv, u + du])
            assert bool((normals[0, :, v + dv, u + du] == 0).all())
    (normals.sum() + pts.sum()).backward()
    assert bool(torch.isfinite(depth.grad).all())


@pytest.mark.parametrize("scale", [1e-8, 1e-12, 1e-16, 1e-30])
def test_normals_of_a_region_collapsing_to_zero_depth_have_finite_gradients(scale):
    # a network whose depth head saturates predicts ~1e-8 m in a region: its normals must not
    # poison the step with NaN gradients (an rsqrt of |n|² overflows in the backward there)
    gen = torch.Generator().manual_seed(0)
    depth = torch.rand(2, 1, 16, 32, generator=gen) * 3 + 1
    depth[:, :, 4:8, 5:12] *= scale
    depth.requires_grad_(True)
    normals, mask = depth_to_normals(depth, return_mask=True)
    assert bool(torch.isfinite(normals).all())
    ((normals * torch.randn(normals.shape, generator=gen)).sum()).backward()
    assert bool(torch.isfinite(depth.grad).all())
    n = normals[:, :, 5:7, 6:11]  # inside the region: unit normals where valid, zero where degenerate
    length = (n * n).sum(1)
    assert torch.allclose(length[mask[:, 0, 5:7, 6:11]], torch.tensor(1.0), atol=1e-4)
    assert bool((length[~mask[:, 0, 5:7, 6:11]] == 0).all())
    if scale >= 1e-8:  # |n|² above float32's smallest normal: still a surface with a normal
        assert bool(mask[:, 0, 5:7, 6:11].all())


# ---------------------------------------------------------------- rotations


def test_rotation_matrices_are_orthonormal_and_follow_the_convention():
    g = torch.Generator().manual_seed(0)
    yaw, pitch, roll = (torch.rand(5, generator=g, dtype=F64) * 4 - 2 for _ in range(3))
    r = rotation_matrix(yaw, pitch, roll)
    assert r.shape == (5, 3, 3)
    eye = torch.eye(3, dtype=F64).expand(5, 3, 3)
    assert torch.allclose(r @ r.transpose(-1, -2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(5, dtype=F64))
    # forward column = the ray at (lon = yaw, lat = pitch)
    assert torch.allclose(r[..., 2], lonlat_to_ray(yaw, pitch))
    # positive roll tips the camera's right axis downwards
    right = rotation_matrix(0.0, 0.0, 0.3, dtype=F64)[:, 0]
    assert torch.allclose(right, torch.tensor([math.cos(0.3), -math.sin(0.3), 0.0], dtype=F64))
    assert torch.allclose(rotation_matrix(90.0, 0.0, 0.0, degrees=True, dtype=F64)[:, 2],
                          torch.tensor([1.0, 0.0, 0.0], dtype=F64), atol=1e-12)


def test_rotate_then_inverse_returns_the_image():
    img = smooth_erp(64)
    r = rotation_matrix(torch.tensor([0.7, -2.0]), torch.tensor([0.4, -0.9]), torch.tensor([-0.3, 1.2]))
    back = rotate_erp(rotate_erp(img.expand(2, -1, -1, -1), r), r.transpose(-1, -2))
    err = (back - img).abs()
    assert err.mean().item() < 2e-3
    assert err[:, :, 8:-8].max().item() < 1e-2  # away from the poles' stretched rows


def test_pure_yaw_is_a_horizontal_roll():
    img = smooth_erp(32)
    w = img.shape[-1]
    for shift in (1, 5, -13, w // 2):
        out = rotate_erp(img, rotation_matrix(2 * math.pi * shift / w, 0.0, 0.0))
        assert torch.allclose(out, torch.roll(img, -shift, dims=-1), atol=1e-5)
        near = rotate_erp(img, rotation_matrix(2 * math.pi * shift / w, 0.0, 0.0), mode="nearest")
        assert torch.equal(near, torch.roll(img, -shift, dims=-1))
    # a half-pixel yaw is the average of two neighbouring columns, including across the seam
    half = rotate_erp(img, rotation_matrix(math.pi / w, 0.0, 0.0))
    assert torch.allclose(half, 0.5 * (img + torch.roll(img, -1, dims=-1)), atol=1e-5)


def test_rotate_erp_matches_padded_reference_at_seam_and_poles():
    img = smooth_erp(24, F64)
    r = rotation_matrix(0.9, 1.1, -0.4, dtype=F64)
    out = rotate_erp(img, r)
    d = torch.einsum("ij,hwj->hwi", r, erp_rays(24, 48, dtype=F64))
    u, v = lonlat_to_erp_pixel(*ray_to_lonlat(d), 24, 48)
    assert bool(((u > 47) | (u < 0) | (v < 0) | (v > 23)).any())  # the wrap paths are exercised
    assert torch.allclose(out[0], reference_sample(img, u, v), atol=1e-10)


def test_rotate_erp_gradients_flow_to_image_and_rotation():
    img = smooth_erp(16).requires_grad_(True)
    angles = torch.tensor([0.3, -0.2, 0.1], requires_grad=True)
    out = rotate_erp(img, rotation_matrix(*angles)[None])
    (out * torch.linspace(0, 1, out.numel()).reshape(out.shape)).sum().backward()
    assert bool(torch.isfinite(img.grad).all()) and img.grad.abs().sum() > 0
    assert bool(torch.isfinite(angles.grad).all()) and angles.grad.abs().sum() > 0


# ---------------------------------------------------------------- cube maps


def test_cube_erp_cube_round_trip():
    img = smooth_erp(64, batch=2)
    cube = erp_to_cube(img, 32)
    assert cube.shape == (2, 6, 3, 32, 32)
    erp = cube_to_erp(cube, 64, 128)
    assert erp.shape == img.shape
    assert (erp - img).abs().max().item() < 5e-3
    cube2 = erp_to_cube(erp, 32)
    assert (cube2 - cube).abs().max().item() < 5e-3


def test_cube_to_erp_takes_each_pixel_from_its_own_face():
    cube = torch.arange(6, dtype=torch.float32).reshape(1, 6, 1, 1, 1).expand(1, 6, 1, 16, 16)
    erp = cube_to_erp(cube, 32, 64)
    assert torch.allclose(erp, erp.round(), atol=1e-5)  # no blending across face borders
    rays = erp_rays(32, 64)
    face = torch.stack((rays[..., 2], rays[..., 0], -rays[..., 2], -rays[..., 0], rays[..., 1], -rays[..., 1]), -1).argmax(-1)
    assert torch.equal(erp[0, 0].round().long(), face)


def test_cube_faces_look_where_the_names_say():
    rays = cube_face_rays(9, dtype=F64)  # [6,9,9,3], odd size → a centre pixel
    centre = rays[:, 4, 4]
    expected = torch.tensor([[0, 0, 1], [1, 0, 0], [0, 0, -1], [-1, 0, 0], [0, 1, 0], [0, -1, 0]], dtype=F64)
    assert CUBE_FACES == ("F", "R", "B", "L", "U", "D")
    assert torch.allclose(centre, expected, atol=1e-12)
    assert torch.allclose(rays[4, 0, 4], torch.tensor([0, 1, -1], dtype=F64) / math.sqrt(2))  # U top → back
    assert torch.allclose(rays[5, 0, 4], torch.tensor([0, -1, 1], dtype=F64) / math.sqrt(2))  # D top → front


@pytest.fixture
def py360_exact(monkeypatch):
    """py360convert with its exact scipy bilinear path instead of cv2's 1/32-px fixed point."""
    py360convert = pytest.importorskip("py360convert")
    from py360convert import utils

    samplers = (utils.EquirecSampler.from_cubemap.__func__, utils.EquirecSampler.from_perspective.__func__)
    for s in samplers:
        s.cache_clear()
    monkeypatch.setattr(utils, "cv2", None)
    yield py360convert
    for s in samplers:
        s.cache_clear()


def _e2c(py360convert, img: torch.Tensor, face_w: int, mode: str = "bilinear") -> torch.Tensor:
    faces = py360convert.e2c(img[0].permute(1, 2, 0).numpy(), face_w, mode=mode, cube_format="list")
    return torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2)  # [6,C,w,w]


@pytest.mark.parametrize(("h", "face_w"), [(64, 32), (50, 31), (64, 100)])
def test_erp_to_cube_matches_py360convert(py360_exact, h, face_w):
    """Tolerance 1e-3 (values in [0,1]): same grid, same seam/pole extension; the only
    differences are float32 rounding and, for odd faces, the pixel exactly at a pole, whose
    longitude is undefined."""
    img = smooth_erp(h)
    ours = erp_to_cube(img, face_w)[0]
    ref = _e2c(py360_exact, img, face_w)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() < 1e-3
    near = erp_to_cube(img, face_w, mode="nearest")[0]
    ref_near = _e2c(py360_exact, img, face_w, mode="nearest")
    # exact half-pixel ties round apart (scipy rounds half up, torch half to even); odd faces put
    # their whole centre row/column on such ties
    assert (near == ref_near).float().mean().item() > 0.95


def test_erp_to_cube_matches_py360convert_cv2_backend():
    """py360convert's default cv2 backend quantises coordinates to 1/32 px: tolerance 2e-3."""
    py360convert = pytest.importorskip("py360convert")
    img = smooth_erp(64)
    assert (erp_to_cube(img, 32)[0] - _e2c(py360convert, img, 32)).abs().max().item() < 2e-3


@pytest.mark.parametrize(
    ("yaw", "pitch", "roll", "fov", "out_hw"),
    [(0, 0, 0, 90, (32, 32)), (30, 20, 10, (70, 50), (40, 61)), (-170, -60, 45, 100, (33, 47)), (180, 85, 0, 60, (30, 30))],
)
def test_erp_to_perspective_matches_py360convert(py360_exact, yaw, pitch, roll, fov, out_hw):
    """Tolerance 1e-4: identical sampling up to float32 rounding."""
    img = smooth_erp(64)
    ours = erp_to_perspective(img, yaw, pitch, roll, fov, out_hw)
    ref = py360_exact.e2p(img[0].permute(1, 2, 0).numpy(), fov, yaw, pitch, out_hw, in_rot_deg=roll)
    assert ours.shape == (1, 3, *out_hw)
    assert (ours[0] - torch.from_numpy(ref).permute(2, 0, 1)).abs().max().item() < 1e-4


def test_perspective_tensor_angles_and_rays():
    img = smooth_erp(32, batch=2)
    yaw = torch.tensor([10.0, -100.0])
    out = erp_to_perspective(img, yaw, torch.tensor(5.0), 0.0, 80, (16, 20))
    for b in range(2):
        ref = erp_to_perspective(img[b : b + 1], float(yaw[b]), 5.0, 0.0, 80, (16, 20))
        assert torch.allclose(out[b : b + 1], ref, atol=1e-5)
    rays, r = perspective_rays(yaw, 5.0, 0.0, 80, (16, 20))
    assert rays.shape == (2, 16, 20, 3) and r.shape == (2, 3, 3)
    assert torch.allclose(rays.norm(dim=-1), torch.ones(2, 16, 20), atol=1e-6)
    assert torch.allclose(r, rotation_matrix(yaw, 5.0, 0.0, degrees=True))


def test_euclidean_to_planar_depth_on_a_wall():
    """ERP of a wall z = 4 in front; the view straight at it has planar depth 4 everywhere."""
    h = 64
    rays = erp_rays(h, 2 * h, dtype=F64)
    z = rays[..., 2]
    depth = torch.where(z > 0.1, 4.0 / z.clamp_min(1e-9), torch.zeros_like(z))[None, None]
    view = erp_to_perspective(depth, 0.0, 0.0, 0.0, 60, (21, 21), allow_nan=True)
    planar = euclidean_to_planar_depth(view, 60)
    assert torch.allclose(planar, torch.full_like(planar, 4.0), rtol=2e-3)
    assert torch.allclose(planar_to_euclidean_depth(planar, 60), view)
    cam = perspective_camera_rays(60, (21, 21), dtype=F64)
    assert torch.allclose(cam[10, 10], torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    # corner-aligned grid: the corner pixel centre sits on the FOV edge
    assert cam[10, 0, 0] / cam[10, 0, 2] == pytest.approx(-math.tan(math.radians(30)))


# ---------------------------------------------------------------- icosahedron


def test_icosahedron_vertices_and_neighbours():
    v = icosahedron_vertices(dtype=F64)
    assert v.shape == (12, 3)
    assert torch.allclose(v.norm(dim=-1), torch.ones(12, dtype=F64))
    ang = torch.rad2deg(torch.acos((v @ v.T).clamp(-1, 1)))  # [12,12]
    ang.fill_diagonal_(1e9)
    nearest = ang.sort(dim=1).values[:, :6]
    expected = math.degrees(math.atan(2.0))  # 63.4349°
    assert torch.allclose(nearest[:, :5], torch.full((12, 5), expected, dtype=F64), atol=1e-9)
    assert bool((nearest[:, 5] > expected + 1).all())
    assert torch.allclose(icosahedron_rotations(dtype=F64)[..., 2], v, atol=1e-12)


def test_icosahedron_views_look_at_the_vertices():
    img = smooth_erp(64, batch=2)
    views = erp_to_icosahedron_views(img, 72.0, 15)
    assert views.shape == (2, 12, 3, 15, 15)
    x, y, z = icosahedron_vertices(dtype=F64).unbind(-1)
    expect = torch.stack((0.5 + 0.3 * x, 0.5 + 0.2 * torch.sin(2 * y + z), 0.5 + 0.25 * x * z), -1)  # [12,3]
    assert torch.allclose(views[:, :, :, 7, 7].double(), expect.expand(2, -1, -1).double(), atol=5e-3)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: erp_to_cube(torch.rand(1, 3, 100, 300), 16), "`erp` must be ERP with W = 2H, got 100×300"),
        (lambda: erp_to_cube(torch.randint(0, 255, (1, 3, 8, 16), dtype=torch.uint8), 4), "`erp` must be a floating-point"),
        (lambda: erp_to_cube(torch.rand(3, 8, 16), 4), "`erp` must have rank 4"),
        (lambda: erp_to_cube(np.zeros((1, 3, 8, 16), np.float32), 4), "`erp` must be a torch.Tensor"),
        (lambda: erp_to_cube(torch.full((1, 3, 8, 16), float("nan")), 4), "`erp` contains NaN"),
        (lambda: erp_to_cube(torch.rand(1, 3, 8, 16), 0), "`face_w` must be a positive int"),
        (lambda: erp_to_cube(torch.rand(1, 3, 8, 16), 4, mode="bicubic"), "`mode` must be one of"),
        (lambda: rotate_erp(torch.rand(2, 3, 8, 16), torch.eye(3).expand(3, 3, 3)), "`R` must have shape"),
        (lambda: rotate_erp(torch.rand(1, 3, 8, 12), torch.eye(3)), "rotate_erp: `erp` must be ERP"),
        (lambda: erp_to_perspective(torch.rand(1, 3, 8, 16), 0, 0, 0, 190, (4, 4)), "`fov_deg` must lie in"),
        (lambda: erp_to_perspective(torch.rand(1, 3, 8, 16), 0, 0, 0, 90, (4,)), "`out_hw` must be"),
        (lambda: cube_to_erp(torch.rand(1, 5, 3, 4, 4), 8, 16), "`cube` must have shape [B,6,C,w,w]"),
        (lambda: cube_to_erp(torch.rand(1, 6, 3, 4, 4), 8, 12), "must be ERP with W = 2H, got 8×12"),
        (lambda: depth_to_normals(torch.rand(1, 3, 8, 16)), "`depth` must have 1 channel"),
        (lambda: depth_to_points(torch.rand(8, 16)), "`depth` must have rank 4"),
        (lambda: erp_to_icosahedron_views(torch.rand(1, 3, 9, 16), 90, 8), "`erp` must be ERP"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, needle):
    with pytest.raises(GeometryInputError) as info:
        call()
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


def test_nan_allowed_where_documented():
    depth = torch.full((1, 1, 8, 16), 3.0)
    depth[0, 0, 2, 2] = float("nan")
    assert erp_to_cube(depth, 4, allow_nan=True).shape == (1, 6, 1, 4, 4)
    assert torch.isfinite(depth_to_points(depth)).all()


# ---------------------------------------------------------------- dtypes, devices, gradients


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtypes_are_preserved(dtype):
    img = smooth_erp(16, dtype)
    ref = erp_to_cube(smooth_erp(16, F64), 8)
    out = erp_to_cube(img, 8)
    assert out.dtype == dtype
    assert (out.double() - ref).abs().max().item() < (1e-9 if dtype == F64 else 1e-2)
    assert cube_to_erp(out, 16, 32).dtype == dtype
    assert rotate_erp(img, rotation_matrix(0.1, 0.2, 0.3)).dtype == dtype
    assert depth_to_normals(img[:, :1] + 1).dtype == dtype


def test_half_precision_samples_at_full_precision_positions():
    img = smooth_erp(256)
    ref = erp_to_cube(img, 64)
    assert (erp_to_cube(img.half(), 64).float() - ref).abs().max().item() < 2e-3
    r = rotation_matrix(0.3, -0.2, 0.1)
    assert (rotate_erp(img.bfloat16(), r).float() - rotate_erp(img, r)).abs().max().item() < 1e-2


def test_channels_last_input_gives_same_result():
    img = smooth_erp(32)
    cl = img.contiguous(memory_format=torch.channels_last)
    assert torch.equal(erp_to_cube(cl, 16), erp_to_cube(img, 16))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_value_is_found_in_any_memory_layout(bad):
    hwc = smooth_erp(8)[0].permute(1, 2, 0).contiguous()  # [H,W,3] as an HWC image array
    hwc[3, 5, 2] = bad
    for view in (hwc.permute(2, 0, 1)[None], hwc.permute(2, 0, 1)[None].contiguous(),
                 hwc.permute(2, 0, 1)[None].expand(2, -1, -1, -1)):
        with pytest.raises(GeometryInputError, match="contains NaN or Inf"):
            erp_to_cube(view, 4)
    assert erp_to_cube(hwc.permute(2, 0, 1)[None], 4, allow_nan=True).shape == (1, 6, 3, 4, 4)


def test_cold_and_warm_grid_caches_give_identical_cubes():
    from dap_model.geometry._views import cached_views_grid, cached_views_remap, clear_sampling_caches

    img = smooth_erp(16)
    for x in (img, img.double()):  # cv2 remap path (float32 CPU) and grid_sample path
        warm = erp_to_cube(x, 8)
        clear_sampling_caches()
        assert cached_views_grid.cache_info().currsize == cached_views_remap.cache_info().currsize == 0
        assert torch.equal(erp_to_cube(x, 8), warm)
        assert cached_views_grid.cache_info().currsize == 1
    assert cached_views_remap.cache_info().currsize == 0  # float64 needs no cv2 maps


def test_erp_to_cube_remap_path_wraps_the_seam_and_continues_over_the_poles():
    """The CPU float32 path (one cv2.remap, used where OpenCV's float-map remap is exact) on a
    random image, against the explicitly padded reference, seam and poles included. Clamping at
    the seam instead of wrapping would be off by up to the jump between columns W−1 and 0, and
    1/32-px fixed-point weights by up to ~1e-2."""
    from dap_model.geometry._sampler import remap_is_exact

    torch.manual_seed(0)
    h, fw = 32, 24
    img = torch.rand(1, 3, h, 2 * h)
    ours = erp_to_cube(img, fw)[0]  # [6,3,fw,fw]
    if remap_is_exact(3):
        assert ours.stride(1) == 1  # channels-last: cv2 wrote it
    lon, lat = ray_to_lonlat(cube_face_rays(fw, dtype=F64))
    u, v = lonlat_to_erp_pixel(lon, lat, h, 2 * h)  # [6,fw,fw]
    ref = torch.stack([reference_sample(img.double(), u[k], v[k]) for k in range(6)]).float()
    edge = (u < 0) | (u > 2 * h - 1) | (v < 0) | (v > h - 1)  # [6,fw,fw]
    assert edge[2].sum() >= fw and edge[4].any() and edge[5].any()  # seam down the B face, both poles
    assert (ours - ref).abs().max().item() < 1e-5
    grad_path = erp_to_cube(img.requires_grad_(True), fw)[0]  # grid_sample path
    assert (grad_path.detach() - ours).abs().max().item() < 1e-5


def test_gradients_flow_through_cube_and_normals():
    img = smooth_erp(32).requires_grad_(True)
    erp_to_cube(img, 16).pow(2).sum().backward()
    assert bool(torch.isfinite(img.grad).all()) and img.grad.abs().sum() > 0
    depth = (2.0 + smooth_erp(32)[:, :1]).requires_grad_(True)
    depth_to_normals(depth)[:, 1].sum().backward()
    assert bool(torch.isfinite(depth.grad).all()) and depth.grad.abs().sum() > 0
    cube = erp_to_cube(smooth_erp(32), 16).requires_grad_(True)
    cube_to_erp(cube, 32, 64).sum().backward()
    assert bool(torch.isfinite(cube.grad).all()) and cube.grad.abs().sum() > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    img = smooth_erp(64)
    dev = torch.device("cuda")
    ref = erp_to_cube(img.double(), 32).float()  # CPU grid_sample path (float32 CPU uses cv2.remap)
    assert torch.allclose(erp_to_cube(img.to(dev), 32).cpu(), ref, atol=1e-5)
    r = rotation_matrix(0.3, 0.2, 0.1)
    assert torch.allclose(rotate_erp(img.to(dev), r.to(dev)).cpu(), rotate_erp(img, r), atol=1e-4)
    depth = 2.0 + img[:, :1]
    assert torch.allclose(depth_to_normals(depth.to(dev)).cpu(), depth_to_normals(depth), atol=1e-4)
    assert torch.allclose(erp_to_icosahedron_views(img.to(dev), 72, 9).cpu(), erp_to_icosahedron_views(img, 72, 9), atol=1e-5)
