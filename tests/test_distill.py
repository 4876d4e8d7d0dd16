"""Depth Anywhere distillation: face geometry against an analytic scene, the affine-invariant
loss, masks, and the tiny-config teacher / Grounded-SAM paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dap_model.config import DistillConfig
from dap_model.distill.faces import (
    erp_depth_to_face_disparity, erp_depth_to_face_planar, face_size, random_rotations, rotated_cube,
)
from dap_model.distill.loss import affine_invariant_loss, distill_loss
from dap_model.distill.masks import BuiltinMasker, build_masker, sky_mask
from dap_model.distill.teachers import build_teacher
from dap_model.geometry import cube_face_rotations, erp_rays, erp_to_cube, rotate_erp, rotation_matrix
from dap_model.geometry._views import camera_plane_rays
from tests.distill_tiny import tiny_depth_anything, tiny_grounded_sam
from tests.training_data import box_panorama

HALF = torch.tensor([3.0, 1.5, 4.0], dtype=torch.float64)  # box half extents (m)
CAM = torch.tensor([0.4, -0.3, 0.7], dtype=torch.float64)  # camera inside the box


def box_hit(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays d [...,3] (any length) → (t with CAM + t·d on the box, index of the wall's axis)."""
    t = torch.where(d > 0, (HALF - CAM) / d, (-HALF - CAM) / d)
    t = torch.where(torch.isfinite(t) & (t > 0), t, torch.full_like(t, math.inf))
    return t.min(-1)


def box_erp(h: int) -> torch.Tensor:
    return box_hit(erp_rays(h, 2 * h, dtype=torch.float64))[0][None, None]  # [1,1,H,W] Euclidean


@pytest.mark.parametrize("angles", [(30.0, -20.0, 40.0), (-45.0, 45.0, -45.0), (0.0, 0.0, 0.0)])
def test_rotated_faces_planar_depth_match_the_analytic_box(angles):
    w = 40
    R = rotation_matrix(*angles, degrees=True, dtype=torch.float64)
    planar = erp_depth_to_face_planar(box_erp(256), R, w)[0, :, 0]  # [6,w,w]
    # analytic: face k pixel (x, y, 1) in the face camera → world ray R·R_k·(x, y, 1); since that
    # ray has unit z in the face frame, its box parameter t IS the planar depth
    rays = torch.einsum("ij,kjl,hwl->khwi", R, cube_face_rotations(dtype=torch.float64), camera_plane_rays(90.0, 90.0, w, w))
    truth, axis = box_hit(rays)
    kink = torch.zeros_like(axis, dtype=torch.bool)
    for shift in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        kink |= axis != torch.roll(axis, shift, dims=(1, 2))
    kink[:, [0, -1]] = True
    kink[:, :, [0, -1]] = True
    rel = (planar - truth).abs() / truth
    assert rel[~kink].max() < 2e-3
    assert rel.max() < 3e-2  # at wall edges: the interpolation of a kink
    # a wrong convention (transposed R) would be far off
    wrong = erp_depth_to_face_planar(box_erp(256), R.T, w)[0, :, 0]
    if angles != (0.0, 0.0, 0.0):
        assert ((wrong - truth).abs() / truth)[~kink].max() > 0.05


def test_rotated_cube_is_rotate_then_cube():
    h, w = 64, 24
    lon_lat = erp_rays(h, 2 * h)
    img = torch.stack([lon_lat[..., 0] * 2 + lon_lat[..., 1], lon_lat[..., 2] ** 2], 0)[None]  # smooth [1,2,H,W]
    R = rotation_matrix(20.0, -35.0, 10.0, degrees=True)
    one = rotated_cube(img, R, w)
    two = erp_to_cube(rotate_erp(img, R), w)
    assert one.shape == (1, 6, 2, w, w)
    assert (one - two).abs().max() < 0.02
    assert (rotated_cube(img, torch.eye(3), w) - erp_to_cube(img, w)).abs().max() < 1e-5


def test_random_rotations_are_seeded_and_bounded():
    a1, r1 = random_rotations(50, 45.0, torch.Generator().manual_seed(3))
    a2, _ = random_rotations(50, 45.0, torch.Generator().manual_seed(3))
    assert torch.equal(a1, a2) and a1.abs().max() <= 45.0 and a1.abs().max() > 30.0
    assert torch.allclose(r1 @ r1.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(50, 3, 3), atol=1e-12)
    assert face_size(64, 0.5) == 32 and face_size(512, 0.5) == 256


def _faces(seed: int, n: int = 6, w: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    disp = torch.rand(n, 1, w, w, generator=g) + 0.1
    valid = torch.rand(n, 1, w, w, generator=g) > 0.3
    return disp, valid


def test_loss_zero_on_match_and_invariant_to_teacher_scale_and_shift():
    s, valid = _faces(0)
    assert affine_invariant_loss(s, s, valid) < 1e-6
    assert affine_invariant_loss(s, 3.7 * s + 12.0, valid) < 1e-5
    other, _ = _faces(1)
    base = affine_invariant_loss(s, other, valid)
    assert base > 0.3
    for a, b in ((0.01, 0.05), (250.0, -3.0)):
        assert torch.isclose(affine_invariant_loss(s, a * other + b, valid), base, rtol=1e-4)
    # the student side is normalised too
    assert torch.isclose(affine_invariant_loss(2.0 * s + 1.0, other, valid), base, rtol=1e-4)
    # per face: scaling one face of the teacher alone changes nothing either
    t = other.clone()
    t[2] = t[2] * 9.0 + 4.0
    assert torch.isclose(affine_invariant_loss(s, t, valid), base, rtol=1e-4)


def test_loss_value_on_a_hand_computed_face():
    s = torch.tensor([[1.0, 2.0, 3.0, 4.0, 100.0]])
    t = torch.tensor([[1.0, 2.0, 3.0, 5.0, -7.0]])
    valid = torch.tensor([[True, True, True, True, False]])
    # lower median of 4 values: 2 (student), 2 (teacher); MAD: (1+0+1+2)/4 = 1 and (1+0+1+3)/4 = 1.25
    s_hat = (torch.tensor([1.0, 2, 3, 4]) - 2) / 1.0
    t_hat = (torch.tensor([1.0, 2, 3, 5]) - 2) / 1.25
    assert torch.isclose(affine_invariant_loss(s, t, valid), (s_hat - t_hat).abs().mean(), atol=1e-5)


def test_masked_pixels_never_leak_into_the_loss():
    s, valid = _faces(4)
    t, _ = _faces(5)
    base = affine_invariant_loss(s, t, valid)
    bad = t.clone()
    bad[~valid] = 1e9
    assert torch.equal(affine_invariant_loss(s, bad, valid), base)
    bad[~valid] = float("nan")
    assert torch.equal(affine_invariant_loss(s, bad, valid), base)
    s_bad = s.clone()
    s_bad[~valid] = -1e9
    assert torch.equal(affine_invariant_loss(s_bad, t, valid), base)
    leak = t.clone()
    idx = valid.nonzero()[:5]
    leak[tuple(idx.T)] = 1e3
    assert (affine_invariant_loss(s, leak, valid) - base).abs() > 1e-2


def test_distill_loss_on_the_student_erp_prediction():
    """The student's ERP depth, rotated and projected, against a teacher made from the same scene:
    zero up to interpolation for any affine transform of the true disparity, masks respected."""
    depth = box_erp(128).float()
    R = rotation_matrix(torch.tensor([25.0, -40.0]), torch.tensor([-30.0, 10.0]), torch.tensor([15.0, 44.0]),
                        degrees=True)  # [2,3,3]
    depth2 = depth.expand(2, -1, -1, -1).contiguous()
    disp, ok = erp_depth_to_face_disparity(depth2, R, 24)  # [2,6,1,24,24]
    assert ok.all()
    teacher = 0.3 * disp + 2.0
    assert distill_loss(depth2, R, teacher, ok) < 1e-4
    # the teacher made with other rotations disagrees
    assert distill_loss(depth2, R.flip(0), teacher, ok) > 0.05
    # masked teacher garbage does not matter; the student's gradient exists and is finite
    valid = ok.clone()
    valid[:, :, :, :8] = False
    garbage = teacher.clone()
    garbage[~valid] = 1e6
    pred = (depth2 * 1.3).requires_grad_()
    loss = distill_loss(pred, R, garbage, valid)
    assert loss < 1e-4
    noisy = (depth2 * (1 + 0.2 * torch.rand_like(depth2))).requires_grad_()
    loss = distill_loss(noisy, R, garbage, valid)
    loss.backward()
    assert loss > 1e-3 and torch.isfinite(noisy.grad).all() and noisy.grad.abs().sum() > 0


def test_builtin_sky_mask_finds_the_sky_of_outdoor_boxes_and_nothing_indoors():
    c = DistillConfig()
    rng = np.random.default_rng(0)
    for i in range(4):
        rgb, depth = box_panorama(64, rng, outdoor=bool(i % 2))
        m = sky_mask(rgb, c.sky_min_brightness, c.sky_max_gradient, c.sky_min_lat_deg)
        truth = depth == 0
        if truth.any():
            assert (m & truth).sum() / (m | truth).sum() > 0.8
        else:
            assert m.mean() < 0.01


def test_builtin_watermark_is_a_static_overlay_of_one_video_only():
    cfg = DistillConfig(watermark_min_frames=4)
    rng = np.random.default_rng(1)
    frames = [box_panorama(32, rng, tint=t)[0] for t in (-0.3, 0.2, -0.1, 0.3, 0.0, -0.2)]  # a moving, changing scene
    for f in frames:
        f[2:6, 40:52] = [250, 250, 250]  # the logo
    masker = BuiltinMasker(cfg)
    for f in frames:
        masker.observe("web:v1", f)
        masker.observe("web:tripod", frames[0])  # a static camera: everything is static
    m = masker.erp_masks(np.stack(frames[:2]), ["web:v1", None])
    logo = np.zeros((32, 64), bool)
    logo[2:6, 40:52] = True
    assert m[0][logo].all() and m[0][~logo].mean() < 0.05
    assert not m[1][logo].any()
    assert masker.static_mask("web:tripod", (32, 64)) is None
    short = BuiltinMasker(cfg)
    for f in frames[:3]:
        short.observe("web:v1", f)
    assert short.static_mask("web:v1", (32, 64)) is None


@pytest.mark.slow
def test_depth_anything_tiny_teacher_end_to_end(tmp_path):
    folder = tiny_depth_anything(tmp_path / "da")
    cfg = DistillConfig(teacher="depth-anything", teacher_model=str(folder), teacher_input_size=42, teacher_batch_size=5)
    teacher = build_teacher(cfg, "cpu")
    rgb = torch.rand(2, 3, 32, 64)
    R = rotation_matrix(torch.tensor([10.0, -30.0]), torch.tensor([5.0, 40.0]), torch.tensor([0.0, 20.0]), degrees=True)
    disp, valid = teacher(rgb, R, 12)
    assert disp.shape == valid.shape == (2, 6, 1, 12, 12) and valid.dtype == torch.bool
    assert torch.isfinite(disp).all() and valid.any()
    # the teacher saw exactly the rotated faces, resized to its input size
    faces = rotated_cube(rgb, R, 12)[1]  # [6,3,12,12]
    x = torch.nn.functional.interpolate(faces, size=(42, 42), mode="bicubic", align_corners=False).clamp(0, 1)
    x = (x - teacher.mean) / teacher.std
    with torch.no_grad():
        ref = teacher.model(pixel_values=x).predicted_depth[:, None]
    ref = torch.nn.functional.interpolate(ref, size=(12, 12), mode="bilinear", align_corners=False)
    assert torch.allclose(torch.where(valid[1], disp[1], 0 * disp[1]), torch.where(valid[1], ref, 0 * ref), atol=1e-5)


@pytest.mark.slow
def test_grounded_sam_tiny_masker_end_to_end(tmp_path):
    det, seg = tiny_grounded_sam(tmp_path)
    faces = torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(0))

    def masker(th: float):
        return build_masker(DistillConfig(mask="grounded-sam", detector_model=str(det), segmenter_model=str(seg),
                                          box_threshold=th, text_threshold=0.01))

    loose = masker(0.01)
    m = loose.face_masks(faces)
    assert m.shape == (3, 1, 24, 24) and m.dtype == torch.bool and m.any()
    assert loose.text == "sky. watermark."
    mid = masker(0.9).face_masks(faces)  # fewer boxes: SAM masks each box on its own, so a subset
    assert not (mid & ~m).any() and mid.sum() < m.sum()
    assert not masker(0.999999).face_masks(faces).any()
