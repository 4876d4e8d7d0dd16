"""Seam continuity of equirectangular images: the left and right edges are neighbours.

`blend_seam` enforces it by spreading the per-row mismatch across a
band on each side of the seam (a linear offset ramp, zero at the band's inner edge), so that
the wrap-around step equals the local horizontal gradient and nothing else changes.
`roll_packed_latents` rolls FLUX's packed 2x2-patch latents horizontally (the seam moves to a
different column at each denoising step, so no column is always an edge). The measure of a seam
is `dap_model.video.horizon.seam_ratio`, the one the web-frame check uses."""

from __future__ import annotations

import numpy as np

from dap_model.errors import InputError


def blend_seam(img: np.ndarray, band_frac: float) -> np.ndarray:
    """img [H,W,C] (uint8 or float) → same shape and dtype, continuous across the wrap.

    With L = col 0, R = col W−1 and the inner steps sL = col1 − col0, sR = colW−1 − colW−2,
    the target wrap step is (sL + sR)/2; the gap d = (L − R) − target is split in half: the left
    band is shifted by −d/2·w and the right band by +d/2·w, w ramping 1 → 0 over `band` columns."""
    if img.ndim != 3 or img.shape[1] < 4:
        raise InputError(f"blend_seam: expected [H,W,C] with W >= 4, got {list(img.shape)}")
    h, w, _ = img.shape
    band = int(round(band_frac * w))
    if band < 1:
        return img.copy()
    band = min(band, w // 2)
    x = img.astype(np.float64)
    target = 0.5 * ((x[:, 1] - x[:, 0]) + (x[:, -1] - x[:, -2]))  # [H,C]
    gap = (x[:, 0] - x[:, -1]) - target  # [H,C]
    ramp = 1.0 - (np.arange(band) + 0.5) / band  # [band] 1 → 0
    ramp = ramp / ramp[0]  # exactly 1 at the seam column
    x[:, :band] -= 0.5 * gap[:, None, :] * ramp[None, :, None]
    x[:, w - band :] += 0.5 * gap[:, None, :] * ramp[::-1][None, :, None]
    if img.dtype == np.uint8:
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return x.astype(img.dtype)


def unpack_latents(packed, h2: int, w2: int):
    """[B, h2*w2, C*4] → [B, C, 2*h2, 2*w2] (FLUX packs 2x2 latent patches into tokens)."""
    b, n, c4 = packed.shape
    c = c4 // 4
    x = packed.view(b, h2, w2, c, 2, 2).permute(0, 3, 1, 4, 2, 5)  # [B,C,h2,2,w2,2]
    return x.reshape(b, c, h2 * 2, w2 * 2)


def pack_latents(x):
    """[B, C, H, W] → [B, (H/2)*(W/2), C*4]."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)  # [B,h2,w2,C,2,2]
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def roll_packed_latents(packed, h2: int, w2: int, shift_tokens: int):
    """Roll packed latents by `shift_tokens` token columns (= 2 latent columns each) to the right.

    Rolling whole tokens keeps every 2x2 patch intact; equal to rolling the image by
    `shift_tokens * 16` pixels for FLUX's VAE (8x) and patching (2x)."""
    import torch

    x = packed.view(packed.shape[0], h2, w2, packed.shape[-1])  # [B,h2,w2,C*4]
    return torch.roll(x, shifts=shift_tokens, dims=2).reshape(packed.shape)
