"""Evaluation of a model on shards (labelled val/test, web test) and preview panels."""

from __future__ import annotations

import contextlib
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from dap_model.metrics import MetricAccumulator
from dap_model.training.data import iter_eval_batches


def autocast(device: torch.device, amp_dtype: str):
    """bf16/fp16 autocast on CUDA; a no-op elsewhere (CPU trains in fp32)."""
    if device.type != "cuda" or amp_dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp_dtype == "bf16" else torch.float16)


@torch.no_grad()
def predict_equivariant(model, rgb: torch.Tensor, views: int) -> torch.Tensor:
    """Test-time averaging over the ERP's exact symmetries: views/2 yaw rolls evenly spaced over
    360°, each also mirrored (the whole dihedral group, so the result commutes with those rolls
    and with the mirror); outputs are mapped back, depth averaged in log space, the range-mask
    probability averaged before the mask rule. views = 1: one plain pass. rgb [B,3,H,W] -> [B,1,H,W]."""
    if views == 1:
        return model.predict(rgb)
    if views % 2:
        raise ValueError(f"views must be 1 or even (rolls x mirror), got {views}")
    was_training = model.training
    model.eval()
    try:
        w, rolls = rgb.shape[-1], views // 2
        log_depth, keep_p = 0.0, 0.0
        for k in range(rolls):
            shift = (k * w) // rolls
            for mirror in (False, True):
                x = torch.roll(rgb, shift, dims=-1)
                x = x.flip(-1) if mirror else x
                out = model(x)
                d, m = out["depth"].float(), torch.sigmoid(out["mask_logits"][:, -1:].float())  # [B,1,H,W] each
                if mirror:
                    d, m = d.flip(-1), m.flip(-1)
                log_depth = log_depth + torch.roll(d, -shift, dims=-1).clamp_min(1e-6).log()
                keep_p = keep_p + torch.roll(m, -shift, dims=-1)
        depth, keep = (log_depth / views).exp(), keep_p / views >= model.cfg.mask_threshold
        return torch.where(keep, depth, torch.zeros_like(depth))
    finally:
        model.train(was_training)


@torch.no_grad()
def predict_at(model, rgb: torch.Tensor, sizes: list[tuple[int, int]], device, amp_dtype: str,
               views: int = 1) -> list[np.ndarray]:
    """rgb [B,3,h,w] in [0,1] -> per image [H_i,W_i] float32 metres (mask rule applied), resized
    (nearest, keeps 0 = invalid) to each image's stored size; `views` > 1 = `predict_equivariant`."""
    with autocast(device, amp_dtype):
        x = rgb.to(device)
        pred = predict_equivariant(model, x, views).float()  # [B,1,h,w]
    out = []
    for i, (h, w) in enumerate(sizes):
        p = pred[i : i + 1]
        if p.shape[-2:] != (h, w):
            p = F.interpolate(p, size=(h, w), mode="nearest")
        out.append(p[0, 0].cpu().numpy())
    return out


def evaluate_paths(
    model,
    paths: list[Path],
    height: int,
    batch_size: int,
    device,
    cap_m: float,
    amp_dtype: str = "fp32",
    limit: int | None = None,
    keep_panels: int = 0,
) -> tuple[dict[str, float], list[np.ndarray]]:
    """Per-image-averaged metrics (abs_rel, rmse, delta1, ... , n_images) at the ground truth's
    resolution, and up to `keep_panels` RGB | GT | pred preview images."""
    acc = MetricAccumulator(cap=cap_m)
    panels: list[np.ndarray] = []
    for batch in iter_eval_batches(paths, height, batch_size, limit=limit):
        preds = predict_at(model, batch["rgb"], [g.shape for g in batch["gts"]], device, amp_dtype)
        for rgb, gt, pred in zip(batch["rgbs"], batch["gts"], preds):
            acc.update(pred, gt)
            if len(panels) < keep_panels:
                panels.append(panel(rgb, gt, pred, cap_m))
    res = acc.compute()["per_image"]
    return {k: float(v) for k, v in res.items()}, panels


def colourise(depth: np.ndarray, vmax: float) -> np.ndarray:
    """[H,W] metres -> [H,W,3] uint8 (inverse depth, turbo; invalid black)."""
    valid = np.isfinite(depth) & (depth > 0)
    inv = np.zeros_like(depth, dtype=np.float32)
    inv[valid] = 1.0 / np.clip(depth[valid], 0.1, vmax)
    lo = 1.0 / vmax
    norm = np.clip((inv - lo) / max(1e-6, 10.0 - lo), 0, 1)
    img = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
    img = img.copy()
    img[~valid] = 0
    return img


def panel(rgb: np.ndarray, gt: np.ndarray | None, pred: np.ndarray, cap_m: float) -> np.ndarray:
    """RGB | GT | pred stacked vertically, [3H,W,3] uint8."""
    h, w = pred.shape
    rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA) if rgb.shape[:2] != (h, w) else rgb
    rows = [rgb]
    if gt is not None:
        rows.append(colourise(gt, cap_m))
    rows.append(colourise(pred, cap_m))
    return np.concatenate(rows, axis=0)
