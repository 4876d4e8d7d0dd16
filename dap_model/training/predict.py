"""Prediction on training-sized tensors (validation, pseudo-labelling): plain or averaged over
the ERP's symmetries, resized back to each image's stored size."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dap_model.accel import autocast


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
