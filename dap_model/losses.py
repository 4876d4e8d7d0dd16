"""DAP's six training losses on equirectangular depth, each distortion-weighted.

Conventions: `pred`, `gt` are [B,1,H,W] Euclidean depth in metres. A gt pixel is valid when it
is finite and > 0; invalid pixels never reach a log, a division or a gradient (they are replaced
with `torch.where` before any arithmetic). Per-pixel ERP weights `w` are the exact solid angles
(`geometry.solid_angle_weights`, ∝ cos lat) normalised to mean 1 (`distortion_weight`), and
"weighted mean" below is Σ w·m·x / Σ w·m over the term's mask m. All weights depend on the row
only, so every term except DF is exactly invariant to a yaw roll (torch.roll along W).

Terms (`DapLoss` returns their weighted sum and each unweighted value):
- silog:  d = log p − log g over valid pixels; sqrt(E_w[d²] − λ·E_w[d]² + ε) − sqrt(ε), ε = 1e-8
          (zero at p = g with a finite gradient; for p = s·g it is sqrt((1−λ)·log²s + ε) − sqrt(ε)).
- df:     dense fidelity. gt validity, gt and pred are sampled into 12 perspective views centred on
          the icosahedron's vertices (FOV `df_fov_deg`, side `df_size`); a view pixel is valid when
          its whole bilinear footprint is. Per view, with D the s×s depth matrix (invalid → 0),
          D̃ = D / ‖D‖_F and Gram G = D̃·D̃ᵀ (s×s, rows as features):
          L_v = sqrt(‖G(pred) − G(gt)‖²_F + ε) − sqrt(ε). DF = mean of L_v over views with ≥ 1
          valid pixel (equal weights: the views subtend equal solid angles). Scale-invariant
          (shape fidelity only). Views are fixed on the sphere, so a yaw roll by a multiple of
          W/5 permutes the 10 ring views exactly but turns the two polar views in-plane: DF is
          only approximately yaw-invariant.
- grad:   SILog (as above) restricted to edge pixels of the gt: Sobel of log gt (÷8 → per-pixel
          derivative, ×H/π → per radian of lon/lat, so the threshold does not depend on the
          resolution; columns wrap across the seam, rows replicate at the poles) with magnitude >
          `grad_edge_threshold`, the whole 3×3 neighbourhood valid. A plane seen at incidence θ
          has |∇ log d| = tan θ per radian: the default 4 keeps depth discontinuities and planes
          seen beyond ~76°.
- normal: weighted mean of ‖n(pred) − n(gt)‖₁ with `geometry.depth_to_normals`, over pixels
          whose gt normal is valid; the L1 is taken over the components in each pixel's local
          (east, north, ray) frame, which turns with the yaw (camera-frame xyz components would
          make an L1 depend on the heading).
- points: weighted mean of the Euclidean distance between back-projected points
          (`geometry.depth_to_points`) ÷ `max_depth_m` (the depth normalisation), smoothed as
          sqrt(‖ΔP‖² + ε) − sqrt(ε). Pred and gt share the ray, so this is the ray-wise absolute
          depth error (metric, unlike SILog); the Euclidean norm keeps it yaw-invariant.
- mask:   for each range r_k, target = valid & gt ≤ r_k; BCE-with-logits (or MSE of the
          probability, `mask_loss`) as a weighted mean + soft Dice 1 − (2Σw·p·t + 1)/(Σw·p + Σw·t + 1)
          per image and range, averaged. Invalid gt is a negative (sky / no return) when
          `mask_invalid_as_negative`, else excluded.

The trainer may add more terms (e.g. the Depth-Anywhere distillation) through `extra`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dap_model.config import DapConfig, LossConfig
from dap_model.geometry import (
    depth_to_normals,
    depth_to_points,
    erp_lonlat,
    erp_to_icosahedron_views,
    solid_angle_weights,
)

__all__ = [
    "DapLoss",
    "df_loss",
    "edge_mask",
    "gradient_loss",
    "gram_view_loss",
    "mask_loss",
    "normal_loss",
    "pixel_weights",
    "points_loss",
    "silog_loss",
    "valid_mask",
]

EPS = 1e-8  # smoothing inside square roots: zero loss at the optimum with finite gradients
_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


def _smooth_sqrt(x: Tensor) -> Tensor:
    return torch.sqrt(x.clamp_min(0) + EPS) - math.sqrt(EPS)


def valid_mask(gt: Tensor) -> Tensor:
    """[B,1,H,W] bool: finite and > 0."""
    return torch.isfinite(gt) & (gt > 0)


def _clean(gt: Tensor, valid: Tensor, fill: float = 1.0) -> Tensor:
    return torch.where(valid, gt, torch.full_like(gt, fill))


def pixel_weights(h: int, w: int, like: Tensor, kind: str = "solid_angle") -> Tensor:
    """[1,1,H,W] per-pixel weights with mean 1: solid angle (∝ cos lat) or uniform."""
    if kind == "none":
        return torch.ones(1, 1, h, w, device=like.device, dtype=like.dtype)
    sa = solid_angle_weights(h, w, device=like.device, dtype=like.dtype)  # [H,W]
    return (sa / sa.mean())[None, None]


def _wmean(x: Tensor, wm: Tensor) -> Tensor:
    """Σ x·wm / Σ wm over everything (0 when the mask is empty)."""
    return (x * wm).sum() / wm.sum().clamp_min(1e-12)


def silog_loss(pred: Tensor, gt: Tensor, weights: Tensor, lam: float = 0.5,
               min_depth: float = 1e-3, mask: Tensor | None = None) -> Tensor:
    """Scale-invariant log loss over valid (∧ mask) pixels, weighted; see module docstring."""
    valid = valid_mask(gt) if mask is None else (valid_mask(gt) & mask)
    wm = weights * valid  # [B,1,H,W]
    d = torch.log(pred.clamp_min(min_depth)) - torch.log(_clean(gt, valid))
    d = torch.where(valid, d, torch.zeros_like(d))
    m1 = _wmean(d, wm)
    m2 = _wmean(d * d, wm)
    return _smooth_sqrt(m2 - lam * m1 * m1)


def _erp_pad(x: Tensor, p: int = 1) -> Tensor:
    x = F.pad(x, (p, p, 0, 0), mode="circular")
    return F.pad(x, (0, 0, p, p), mode="replicate")


def edge_mask(gt: Tensor, threshold: float) -> Tensor:
    """[B,1,H,W] bool: Sobel |∇ log gt| per radian of arc > threshold, fully valid 3×3 window."""
    valid = valid_mask(gt)
    logd = torch.log(_clean(gt, valid))  # [B,1,H,W]
    kx = _SOBEL_X.to(gt.device, gt.dtype)[None, None]  # [1,1,3,3]
    ky = kx.transpose(-1, -2)
    padded = _erp_pad(logd)
    gx, gy = F.conv2d(padded, kx), F.conv2d(padded, ky)  # [B,1,H,W]
    mag = torch.sqrt(gx * gx + gy * gy) * (gt.shape[-2] / math.pi)  # per radian (pixel = π/H rad)
    window = -F.max_pool2d(-_erp_pad(valid.to(gt.dtype)), 3, stride=1)  # 3×3 min, [B,1,H,W]
    return (mag > threshold) & (window > 0.5)


def gradient_loss(pred: Tensor, gt: Tensor, weights: Tensor, lam: float, threshold: float,
                  min_depth: float = 1e-3) -> Tensor:
    return silog_loss(pred, gt, weights, lam, min_depth, mask=edge_mask(gt, threshold))


def gram_view_loss(pred_views: Tensor, gt_views: Tensor, valid: Tensor) -> Tensor:
    """Per-view Gram loss. pred_views, gt_views, valid: [N,s,s] → [N]
    (L_v = sqrt(‖G(p) − G(g)‖²_F + ε) − sqrt(ε), G(D) = D̃D̃ᵀ, D̃ = D·m / ‖D·m‖_F)."""
    m = valid.to(pred_views.dtype)

    def gram(d: Tensor) -> Tensor:
        d = d * m  # [N,s,s]
        norm = torch.sqrt((d * d).sum((-1, -2), keepdim=True) + 1e-20)
        d = d / norm
        return d @ d.transpose(-1, -2)  # [N,s,s]

    diff = gram(pred_views) - gram(gt_views)
    return _smooth_sqrt((diff * diff).sum((-1, -2)))


def df_loss(pred: Tensor, gt: Tensor, fov_deg: float, size: int) -> tuple[Tensor, Tensor]:
    """Dense-fidelity loss and the per-view losses [B,12] (NaN-free; 0 for views w/o valid pixels)."""
    valid = valid_mask(gt)
    vf = valid.to(pred.dtype)
    gt0 = torch.where(valid, gt, torch.zeros_like(gt))
    both = torch.cat([gt0, vf], 1).detach()  # [B,2,H,W]
    sampled = erp_to_icosahedron_views(both, fov_deg, size)  # [B,12,2,s,s]
    gv, vv = sampled[:, :, 0], sampled[:, :, 1] > 1 - 1e-4  # [B,12,s,s]
    pv = erp_to_icosahedron_views(pred, fov_deg, size)[:, :, 0]  # [B,12,s,s]
    b = pred.shape[0]
    per_view = gram_view_loss(pv.flatten(0, 1), gv.flatten(0, 1), vv.flatten(0, 1)).view(b, 12)
    has = vv.flatten(2).any(-1).to(pred.dtype)  # [B,12]
    per_view = per_view * has
    return per_view.sum() / has.sum().clamp_min(1.0), per_view


def _local_frames(h: int, w: int, like: Tensor) -> Tensor:
    """[3,3,H,W]: per-pixel (east, north, ray) unit vectors in camera coordinates."""
    lon, lat = erp_lonlat(h, w, device=like.device, dtype=like.dtype)  # [H,W] each
    zero = torch.zeros_like(lon)
    east = torch.stack([torch.cos(lon), zero, -torch.sin(lon)])  # [3,H,W]
    north = torch.stack([-torch.sin(lat) * torch.sin(lon), torch.cos(lat), -torch.sin(lat) * torch.cos(lon)])
    ray = torch.stack([torch.cos(lat) * torch.sin(lon), torch.sin(lat), torch.cos(lat) * torch.cos(lon)])
    return torch.stack([east, north, ray])


def normal_loss(pred: Tensor, gt: Tensor, weights: Tensor) -> Tensor:
    valid = valid_mask(gt)
    with torch.no_grad():
        n_gt, ok = depth_to_normals(torch.where(valid, gt, torch.zeros_like(gt)), return_mask=True)
    n_pred = depth_to_normals(pred)  # [B,3,H,W]
    frames = _local_frames(*gt.shape[-2:], pred)  # [3,3,H,W]
    delta = torch.einsum("bchw,kchw->bkhw", n_pred - n_gt, frames)  # [B,3,H,W] in (east, north, ray)
    err = delta.abs().sum(1, keepdim=True)  # [B,1,H,W]
    err = torch.where(ok, err, torch.zeros_like(err))
    return _wmean(err, weights * ok)


def points_loss(pred: Tensor, gt: Tensor, weights: Tensor, scale_m: float) -> Tensor:
    valid = valid_mask(gt)
    with torch.no_grad():
        p_gt = depth_to_points(torch.where(valid, gt, torch.zeros_like(gt)))  # [B,3,H,W]
    p_pred = depth_to_points(pred)
    diff = (p_pred - p_gt) / scale_m
    dist = _smooth_sqrt((diff * diff).sum(1, keepdim=True))  # [B,1,H,W]
    dist = torch.where(valid, dist, torch.zeros_like(dist))
    return _wmean(dist, weights * valid)


def mask_loss(logits: Tensor, gt: Tensor, weights: Tensor, ranges_m: Sequence[float],
              kind: str = "bce_dice", invalid_as_negative: bool = True) -> Tensor:
    """logits [B,K,H,W] (K = len(ranges_m), ascending) against valid & gt ≤ r_k."""
    if logits.shape[1] != len(ranges_m):
        raise ValueError(f"mask logits have {logits.shape[1]} channels, ranges {list(ranges_m)}")
    valid = valid_mask(gt)  # [B,1,H,W]
    g = _clean(gt, valid, fill=float("inf"))
    r = torch.tensor(list(ranges_m), device=gt.device, dtype=gt.dtype).view(1, -1, 1, 1)
    target = (valid & (g <= r)).to(logits.dtype)  # [B,K,H,W]
    region = torch.ones_like(valid) if invalid_as_negative else valid
    wm = (weights * region).expand_as(logits).to(logits.dtype)  # [B,K,H,W]
    prob = torch.sigmoid(logits)
    if kind == "bce_dice":
        pix = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    elif kind == "mse_dice":
        pix = (prob - target) ** 2
    else:
        raise ValueError(f"unknown mask loss {kind!r} (bce_dice | mse_dice)")
    inter = (wm * prob * target).sum((-1, -2))  # [B,K]
    denom = (wm * prob).sum((-1, -2)) + (wm * target).sum((-1, -2))
    dice = 1 - (2 * inter + 1) / (denom + 1)
    return _wmean(pix, wm) + dice.mean()


class DapLoss(nn.Module):
    """`(out, gt_depth[B,1,H,W], extra=None) -> (total, terms)`.

    `out` is `DapModel.forward`'s dict (`depth` [B,1,H,W] metres, `mask_logits` [B,K,H,W]).
    `extra`: {name: (weight, loss tensor)} added to the total and reported in `terms`.
    Terms with weight 0 are not computed (and not reported)."""

    def __init__(self, cfg: LossConfig, max_depth_m: float = 100.0,
                 mask_ranges_m: Sequence[float] = (100.0,)):
        super().__init__()
        self.cfg = cfg.model_copy(deep=True)
        self.max_depth_m = float(max_depth_m)
        self.mask_ranges_m = sorted(float(r) for r in mask_ranges_m)

    @classmethod
    def from_config(cls, cfg: DapConfig) -> "DapLoss":
        return cls(cfg.loss, cfg.model.max_depth_m, cfg.model.mask_ranges_m)

    def df_size(self, h: int) -> int:
        return self.cfg.df_size or max(8, round(h * self.cfg.df_fov_deg / 180.0))

    def forward(self, out: dict[str, Tensor], gt: Tensor,
                extra: dict[str, tuple[float, Tensor]] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.cfg
        pred = out["depth"].float()  # [B,1,H,W]; losses in fp32 under autocast
        if pred.shape != gt.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ")
        gt = gt.to(pred.dtype)
        h, w = gt.shape[-2:]
        wts = pixel_weights(h, w, pred, c.distortion_weight)  # [1,1,H,W]
        terms: dict[str, Tensor] = {}
        weighted: list[Tensor] = []

        def add(name: str, weight: float, fn) -> None:
            if weight > 0:
                terms[name] = fn()
                weighted.append(weight * terms[name])

        add("silog", c.w_silog, lambda: silog_loss(pred, gt, wts, c.silog_lambda, c.min_depth_m))
        add("df", c.w_df, lambda: df_loss(pred, gt, c.df_fov_deg, self.df_size(h))[0])
        add("grad", c.w_grad, lambda: gradient_loss(
            pred, gt, wts, c.silog_lambda, c.grad_edge_threshold, c.min_depth_m))
        add("normal", c.w_normal, lambda: normal_loss(pred, gt, wts))
        add("points", c.w_points, lambda: points_loss(pred, gt, wts, self.max_depth_m))
        add("mask", c.w_mask, lambda: mask_loss(
            out["mask_logits"].float(), gt, wts, self.mask_ranges_m, c.mask_loss, c.mask_invalid_as_negative))
        for name, (weight, value) in (extra or {}).items():
            terms[name] = value
            weighted.append(weight * value)
        total = torch.stack(weighted).sum() if weighted else pred.sum() * 0
        return total, terms
