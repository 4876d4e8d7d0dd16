"""The affine-invariant disparity loss of Depth Anywhere (MiDaS-style), per cube face.

For each face with valid pixels V: t̂ = (t − median_V t) / mean_V |t − median_V t| and likewise
ŝ for the student; loss_face = mean_V |ŝ − t̂|; the loss is the mean over faces with any valid
pixel. Invariant to t → a·t + b (a > 0); masked pixels never enter any of the statistics."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dap_model.distill.faces import erp_depth_to_face_disparity


def normalize_disparity(x: Tensor, valid: Tensor, eps: float = 1e-12) -> Tensor:
    """x, valid [N,P] → (x − median) / mean-absolute-deviation over each row's valid entries;
    invalid entries are 0."""
    x = torch.where(valid, x, torch.zeros_like(x))
    med = torch.nanmedian(torch.where(valid, x, torch.full_like(x, math.nan)), dim=1, keepdim=True).values  # [N,1]
    med = torch.where(torch.isfinite(med), med, torch.zeros_like(med))
    dev = torch.where(valid, (x - med).abs(), torch.zeros_like(x))
    n = valid.sum(1, keepdim=True).clamp_min(1)  # [N,1]
    scale = dev.sum(1, keepdim=True) / n  # [N,1]
    return torch.where(valid, (x - med) / scale.clamp_min(eps), torch.zeros_like(x))


def affine_invariant_loss(student: Tensor, teacher: Tensor, valid: Tensor, eps: float = 1e-12) -> Tensor:
    """student, teacher [N,...], valid [N,...] bool (one face per row) → scalar loss."""
    n = student.shape[0]
    s = student.reshape(n, -1).float()
    t = teacher.reshape(n, -1).float()
    v = valid.reshape(n, -1).bool() & torch.isfinite(s) & torch.isfinite(t)
    s_hat = normalize_disparity(s, v, eps)
    t_hat = normalize_disparity(t, v, eps)
    count = v.sum(1)  # [N]
    per_face = (s_hat - t_hat).abs().sum(1) / count.clamp_min(1)  # [N]
    used = count > 0
    if not bool(used.any()):
        return student.sum() * 0.0
    return per_face[used].mean()


def distill_loss(pred_depth: Tensor, R: Tensor, teacher_disp: Tensor, teacher_valid: Tensor) -> Tensor:
    """Student ERP depth [B,1,H,W] (metres), rotations R [B,3,3], teacher disparity and mask
    [B,6,1,w,w] → scalar: the student is rotated by R, projected to the faces, turned into planar
    disparity and compared with the teacher over the pixels valid for both."""
    face_w = teacher_disp.shape[-1]
    disp, ok = erp_depth_to_face_disparity(pred_depth, R, face_w)  # [B,6,1,w,w]
    b = disp.shape[0]
    return affine_invariant_loss(
        disp.reshape(b * 6, -1), teacher_disp.reshape(b * 6, -1), (teacher_valid.bool() & ok).reshape(b * 6, -1)
    )
