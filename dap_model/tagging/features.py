"""Enclosure / open-sky features of an equirectangular panorama, for the `builtin` tagger.

Physics, not palette. A room encloses the camera: the wall–ceiling and wall–floor junctions are
closed curves around all 360° of longitude, at latitudes atan(h / d(lon)) well away from the
horizon (h: ceiling height above / camera height over the floor, d: wall distance), varying
smoothly with longitude; the first strong edge met going down from the zenith is that junction
(or something on the ceiling) in every column. Outdoors the zenith is sky: going down from it one
meets no strong edge until the skyline, which lies near the horizon (open land) or jumps from
column to column (buildings, trees), and no smooth curve of strong edges runs around the upper
band. Ground-side features mirror this for the floor.

Every edge is a step of the RGB colour vector (Euclidean norm after a light blur), thresholded
relative to the image's own strong edges: invariant to channel permutation, hue rotation about
the grey axis, brightness inversion and overall gain, so a green ceiling is as good as a white
one. The tagger combines the features with a logistic model (`builtin_coefficients.json`)."""

from __future__ import annotations

import cv2
import numpy as np

BLUR_SIGMA = 1.0  # px at feature height
EDGE_REL = 0.25  # a strong edge exceeds EDGE_REL × the image's 99th-percentile colour step ...
EDGE_MIN = 0.04  # ... and EDGE_MIN (RGB in [0, 1], step norm / sqrt(3))
UP_BAND = (8.0, 82.0)  # latitude bands (degrees) searched for a junction curve
DN_BAND = (-UP_BAND[1], -UP_BAND[0])
OPEN_LAT = 10.0  # a column is open to the sky if its first strong edge from the zenith is below this
JUMP_DEG = 6.0  # skyline step between neighbouring columns counted as a jump

FEATURES = (
    "up_curve_strength",  # mean capped strength (× threshold, ≤ 1) along the best smooth closed curve, upper band
    "up_curve_cover",  # fraction of columns where that curve is on a strong edge
    "up_curve_lat",  # median |latitude| of the curve / 90
    "dn_curve_strength",  # the same in the lower band (floor junction)
    "dn_curve_cover",
    "dn_curve_lat",
    "enclosure",  # min(up_curve_cover, dn_curve_cover): junction curves above and below at once
    "top_open_frac",  # fraction of columns whose first strong edge from the zenith lies below OPEN_LAT
    "top_first_lat",  # median latitude of that first edge / 90
    "top_jump_frac",  # fraction of neighbouring columns whose first-edge latitudes differ by > JUMP_DEG
    "bot_open_frac",  # mirrored from the nadir (first strong edge above −OPEN_LAT)
    "bot_first_lat",
    "bot_jump_frac",
    "log_edge_ratio_up_down",  # log((upper strong-edge density + .01) / (lower + .01)), solid-angle weighted
    "upper_edge_density",  # solid-angle weighted strong-edge density, lat > 10°
    "lower_edge_density",  # lat < −10°
)


def resize_erp(img: np.ndarray, height: int) -> np.ndarray:
    """uint8 [H,W,3] → float32 [height, 2·height, 3] in [0, 1] (any input aspect is resampled to 2:1)."""
    interp = cv2.INTER_AREA if img.shape[0] > height else cv2.INTER_LINEAR
    out = cv2.resize(img, (2 * height, height), interpolation=interp)
    return out.astype(np.float32) / 255.0


def colour_steps(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float [h,w,3] → (vertical step [h,w] between rows r and r+1 (last row 0),
    horizontal step [h,w] between columns c and c+1, wrapping), RGB norm / sqrt(3)."""
    xs = cv2.GaussianBlur(x, (0, 0), BLUR_SIGMA, borderType=cv2.BORDER_REFLECT)
    dv = np.zeros(x.shape[:2], np.float32)
    dv[:-1] = np.sqrt(((xs[1:] - xs[:-1]) ** 2).sum(-1) / 3.0)
    dh = np.sqrt(((np.roll(xs, -1, axis=1) - xs) ** 2).sum(-1) / 3.0)
    return dv, dh


def best_curve_totals(score: np.ndarray) -> np.ndarray:
    """score [K,R,C] ≥ 0 → [K] max over paths (one row per column, |Δrow| ≤ 1 between
    neighbouring columns, all C columns = 360° of longitude) of the path's Σ score, / C."""
    k, r, c = score.shape
    cols = np.ascontiguousarray(score.transpose(2, 0, 1), np.float32)  # [C,K,R]
    acc = np.full((k, r + 2), -np.inf, np.float32)  # [K,R+2] padded so row ±1 never leaves the band
    acc[:, 1:-1] = cols[0]
    best = np.empty((k, r), np.float32)
    for j in range(1, c):
        np.maximum(acc[:, :-2], acc[:, 1:-1], out=best)
        np.maximum(best, acc[:, 2:], out=best)
        np.add(best, cols[j], out=acc[:, 1:-1])
    return acc.max(1) / c


def _first_edge(strong: np.ndarray) -> np.ndarray:
    """strong [R,C] bool, scanned from row 0 → first strong row per column [C] (R if none)."""
    any_ = strong.any(0)
    return np.where(any_, strong.argmax(0), strong.shape[0])


def _curve_feats(dv: np.ndarray, thr: float, lat: np.ndarray) -> list[float]:
    """dv [R,C] vertical colour steps, lat [R] symmetric about 0 → up/dn (strength, cover, lat)."""
    up = (lat > UP_BAND[0]) & (lat < UP_BAND[1])
    dn = up[::-1]  # DN_BAND mirrors UP_BAND
    bands = np.stack([dv[up], dv[dn][::-1]])  # [2,R',C], row 0 nearest the pole
    s = np.minimum(bands / thr, 1.0)
    totals = best_curve_totals(np.concatenate([s, (s >= 1.0).astype(np.float32)]))  # [4]
    lat_b = np.abs(lat[up])  # [R']
    peak = np.median(lat_b[bands.argmax(1)], axis=1) / 90.0  # [2] median latitude of each column's strongest step
    return [totals[0], totals[2], peak[0], totals[1], totals[3], peak[1]]


def _scan_feats(strong: np.ndarray, lat: np.ndarray) -> list[float]:
    """strong [R,C] with row 0 at a pole, lat [R] |latitude| decreasing → open, median, jump."""
    first = _first_edge(strong)  # [C]
    flat = np.append(lat, -90.0)[first]  # none → the other pole
    jumps = np.abs(np.diff(np.append(flat, flat[0])))
    return [float((flat < OPEN_LAT).mean()), float(np.median(flat) / 90.0), float((jumps > JUMP_DEG).mean())]


def erp_features(img: np.ndarray, height: int = 64) -> np.ndarray:
    """uint8 [H,W,3] → float64 [len(FEATURES)]."""
    x = resize_erp(img, height)  # [h,2h,3]
    lat = 90.0 - (np.arange(height) + 1.0) / height * 180.0  # [h] latitude of the step between rows r, r+1
    dv, dh = colour_steps(x)  # [h,2h] each
    grad = np.maximum(dv, dh)
    thr = max(EDGE_MIN, EDGE_REL * float(np.percentile(grad, 99)))
    strong = grad > thr  # [h,2h]
    strong_v = dv > thr
    cos = np.cos(np.radians(lat))[:, None]  # [h,1] solid-angle weight
    up, dn = lat > 10.0, lat < -10.0
    dens_up = float((strong[up] * cos[up]).sum() / (cos[up].sum() * strong.shape[1]))
    dens_dn = float((strong[dn] * cos[dn]).sum() / (cos[dn].sum() * strong.shape[1]))
    top = _scan_feats(strong_v[:-1], lat[:-1])  # from the zenith down
    bot = _scan_feats(strong_v[:-1][::-1], -lat[:-1][::-1])  # from the nadir up
    curves = _curve_feats(dv[:-1], thr, lat[:-1])
    return np.array(
        [
            *curves,
            min(curves[1], curves[4]),
            *top,
            *bot,
            np.log((dens_up + 0.01) / (dens_dn + 0.01)),
            dens_up,
            dens_dn,
        ],
        dtype=np.float64,
    )
