"""Enclosure / sky features of an equirectangular panorama, for the `builtin` tagger.

An indoor ERP is enclosed above the horizon: a ceiling at the zenith (neutral or lamp-lit, not
sky-coloured) and a wall/ceiling boundary crossing nearly every column in the upper band. An
outdoor ERP has sky there: smooth, bright, bluish or white, with structure only near the horizon.
Every feature is a plain statistic of the image (definitions below); the tagger combines them
with a logistic model whose numbers live in `builtin_coefficients.json`."""

from __future__ import annotations

import cv2
import numpy as np

# latitude bands in degrees (ERP: lat = 90 − (v + 0.5)/H · 180)
ZENITH_MIN_LAT = 55.0
UPPER_BAND = (5.0, 85.0)
LOWER_MAX_LAT = -10.0
EDGE_REL = 0.08  # a column "has a boundary" where |∂luma/∂v| exceeds this (luma in [0, 1])
SMOOTH_MAX = 0.02  # sky-like pixel: local luma std below this ...
BRIGHT_MIN = 0.35  # ... luma above this ...
BLUE_MIN = -0.02  # ... and b − r chromaticity above this (blue or white, not warm/green)

FEATURES = (
    "zenith_luma_minus_lower",  # mean luma, zenith cap − lower hemisphere
    "zenith_blue",  # mean (b − r) chromaticity in the zenith cap
    "zenith_green",  # mean (g − (r + b)/2) chromaticity in the zenith cap
    "zenith_texture",  # mean |∇luma| in the zenith cap
    "upper_texture",  # mean |∇luma| in the upper band
    "upper_enclosure",  # fraction of columns with a strong vertical edge in the upper band
    "upper_sky_fraction",  # fraction of upper-hemisphere pixels that are smooth, bright, blue/white
)


def resize_erp(img: np.ndarray, height: int) -> np.ndarray:
    """uint8 [H,W,3] → float32 [height, 2·height, 3] in [0, 1] (any input aspect is resampled to 2:1)."""
    interp = cv2.INTER_AREA if img.shape[0] > height else cv2.INTER_LINEAR
    out = cv2.resize(img, (2 * height, height), interpolation=interp)
    return out.astype(np.float32) / 255.0


def _lat(h: int) -> np.ndarray:
    return 90.0 - (np.arange(h) + 0.5) / h * 180.0  # [H] degrees


def erp_features(img: np.ndarray, height: int = 128) -> np.ndarray:
    """uint8 [H,W,3] → float64 [len(FEATURES)]."""
    x = resize_erp(img, height)  # [h,2h,3]
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b  # [h,2h]
    s = r + g + b + 1e-3
    blue = (b - r) / s * 3.0  # chromaticity differences, ≈[-1, 1]
    green = (g - 0.5 * (r + b)) / s * 3.0
    gv = np.abs(np.diff(luma, axis=0, append=luma[-1:]))  # [h,2h] vertical step
    gh = np.abs(np.diff(luma, axis=1, append=luma[:, :1]))  # [h,2h] horizontal step (wraps)
    grad = gv + gh
    mean = cv2.blur(luma, (5, 5), borderType=cv2.BORDER_REFLECT)
    sq = cv2.blur(luma * luma, (5, 5), borderType=cv2.BORDER_REFLECT)
    local_std = np.sqrt(np.maximum(sq - mean * mean, 0.0))

    lat = _lat(x.shape[0])
    zen = lat >= ZENITH_MIN_LAT
    upper = (lat >= UPPER_BAND[0]) & (lat <= UPPER_BAND[1])
    lower = lat <= LOWER_MAX_LAT
    above = lat > 0

    col_edge = gv[upper].max(axis=0)  # [2h] strongest vertical step per column in the upper band
    sky = (local_std[above] < SMOOTH_MAX) & (luma[above] > BRIGHT_MIN) & (blue[above] > BLUE_MIN)
    return np.array(
        [
            luma[zen].mean() - luma[lower].mean(),
            blue[zen].mean(),
            green[zen].mean(),
            grad[zen].mean(),
            grad[upper].mean(),
            (col_edge > EDGE_REL).mean(),
            sky.mean(),
        ],
        dtype=np.float64,
    )
