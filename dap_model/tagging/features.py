"""Enclosure / structure features of an equirectangular panorama, for the `builtin` tagger.

An indoor ERP is enclosed: surfaces at a few metres in every direction, so strong edges (wall,
ceiling and floor boundaries, furniture, doors) cross most columns above and below the horizon,
and the band just below the horizon varies strongly with longitude. An outdoor ERP has open sky
above (smooth, few edges) and a far, uniform ground band. All features are computed on luma
normalised per image (zero mean, unit variance), so they do not depend on exposure, white balance
or palette; the tagger combines them with a logistic model whose numbers live in
`builtin_coefficients.json`."""

from __future__ import annotations

import cv2
import numpy as np

UPPER = (30.0, 85.0)  # latitude bands in degrees (ERP: lat = 90 − (v + 0.5)/H · 180)
LOWER = (-85.0, -30.0)
BELOW_HORIZON = (-30.0, -10.0)
ZENITH_MIN_LAT = 60.0
BANDS = ((60, 90), (30, 60), (10, 30), (-10, 10), (-30, -10), (-60, -30), (-90, -60))
EDGE_MIN = 0.03  # a "strong edge" exceeds max(EDGE_MIN, 90th percentile of the image's gradient)

FEATURES = (
    "log_edge_ratio_up_down",  # log((upper strong-edge density + .01) / (lower + .01)), cos-lat weighted
    "upper_enclosure",  # fraction of columns with a strong edge in the upper band
    "lower_enclosure",  # fraction of columns with a strong edge in the lower band
    "upper_vertical_enclosure",  # same with vertical steps only (horizontal boundaries)
    "zenith_rel_std",  # luma std in the zenith cap / whole-image luma std
    "below_horizon_lon_std",  # std over longitude of the column means just below the horizon / image std
    "upper_edge_density",
    "lower_edge_density",
) + tuple(f"{kind}@{lo}..{hi}" for lo, hi in BANDS for kind in ("vgrad", "hgrad", "lonstd"))


def resize_erp(img: np.ndarray, height: int) -> np.ndarray:
    """uint8 [H,W,3] → float32 [height, 2·height, 3] in [0, 1] (any input aspect is resampled to 2:1)."""
    interp = cv2.INTER_AREA if img.shape[0] > height else cv2.INTER_LINEAR
    out = cv2.resize(img, (2 * height, height), interpolation=interp)
    return out.astype(np.float32) / 255.0


def _between(lat: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    return (lat > band[0]) & (lat < band[1])


def erp_features(img: np.ndarray, height: int = 64) -> np.ndarray:
    """uint8 [H,W,3] → float64 [len(FEATURES)]."""
    x = resize_erp(img, height)  # [h,2h,3]
    luma = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]  # [h,2h]
    sm = cv2.GaussianBlur(luma, (0, 0), 0.8)
    gv = np.abs(np.diff(sm, axis=0, append=sm[-1:]))  # [h,2h] vertical step
    gh = np.abs(np.diff(sm, axis=1, append=sm[:, :1]))  # [h,2h] horizontal step (wraps)
    grad = np.maximum(gv, gh)
    thr = max(EDGE_MIN, float(np.percentile(grad, 90)))
    strong = grad > thr
    lat = 90.0 - (np.arange(height) + 0.5) / height * 180.0  # [h]
    cos = np.cos(np.radians(lat))[:, None]  # [h,1] solid-angle weight
    up, dn = _between(lat, UPPER), _between(lat, LOWER)
    density_up = float((strong[up] * cos[up]).sum() / (cos[up].sum() * strong.shape[1]))
    density_dn = float((strong[dn] * cos[dn]).sum() / (cos[dn].sum() * strong.shape[1]))
    std = float(luma.std()) + 1e-3
    below = luma[_between(lat, BELOW_HORIZON)].mean(0)  # [2h]

    z = (luma - luma.mean()) / std  # per-image normalised luma
    zs = cv2.GaussianBlur(z, (0, 0), 0.8)
    zgv = np.abs(np.diff(zs, axis=0, append=zs[-1:]))
    zgh = np.abs(np.diff(zs, axis=1, append=zs[:, :1]))
    bands = []
    for lo, hi in BANDS:
        m = (lat > lo) & (lat <= hi)
        bands += [zgv[m].mean(), zgh[m].mean(), zs[m].mean(0).std()]
    return np.array(
        [
            np.log((density_up + 0.01) / (density_dn + 0.01)),
            strong[up].any(0).mean(),
            strong[dn].any(0).mean(),
            (gv[up] > thr).any(0).mean(),
            luma[lat > ZENITH_MIN_LAT].std() / std,
            below.std() / std,
            density_up,
            density_dn,
            *bands,
        ],
        dtype=np.float64,
    )
