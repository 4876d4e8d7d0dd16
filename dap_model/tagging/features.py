"""Features of an equirectangular panorama for the `builtin` tagger: enclosure / open-sky
geometry (`enclosure_features`) and appearance per latitude band (`appearance_features`).

Appearance: for six 30° latitude bands from zenith to nadir, mean luma, saturation, blue − red,
gradient magnitude and the share of gradient energy across vertical lines; plus the sky-like
share of the upper area, top-minus-horizon luma, ceiling highlights, warmth and median luma. Sky
is blue, smooth and bright above the horizon; ceilings carry lamps and warm light; rooms are full
of vertical lines. The ERP longitude wraps, so the horizontal gradient wraps too (yaw invariant).

Enclosure: physics, not palette. A room encloses the camera: the wall–ceiling and wall–floor junctions are
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

ENCLOSURE_FEATURES = (
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

# Appearance: colour, texture and line orientation per 30° latitude band, zenith to nadir.
BANDS = ((90, 60), (60, 30), (30, 0), (0, -30), (-30, -60), (-60, -90))
BAND_STATS = (
    "luma",  # mean luma (Rec. 601, [0, 1])
    "sat",  # mean HSV saturation
    "blue",  # mean (B − R): sky is blue, artificial light is warm
    "grad",  # mean luma gradient magnitude (texture; sky and smooth ceilings are low)
    "vert",  # share of gradient energy across vertical lines (|gx| > 2|gy|): walls, doors, furniture
)
APPEARANCE_FEATURES = tuple(f"b{i}_{s}" for i in range(len(BANDS)) for s in BAND_STATS) + (
    "sky_frac",  # fraction of the lat > 20° area that is sky-like: bright, blue ≥ red, smooth
    "top_minus_mid_luma",  # mean luma lat > 45° minus |lat| < 20°
    "top_highlights",  # 99th minus 50th percentile luma, lat > 20° (lamps and windows on a ceiling)
    "warmth",  # mean (R − B) of the whole image
    "luma_p50",  # median luma of the whole image
)
FEATURES = ENCLOSURE_FEATURES + APPEARANCE_FEATURES
APPEARANCE_HEIGHT = 128  # appearance features are computed at this ERP height (width 2·height)


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


def appearance_features(img: np.ndarray, height: int = APPEARANCE_HEIGHT) -> np.ndarray:
    """uint8 [H,W,3] → float64 [len(APPEARANCE_FEATURES)]."""
    x = resize_erp(img, height)  # [h,2h,3] in [0, 1]
    lat = 90.0 - (np.arange(height) + 0.5) / height * 180.0  # [h] row-centre latitude
    r, g, b = x[..., 0], x[..., 1], x[..., 2]  # [h,2h] each
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    mx, mn = x.max(-1), x.min(-1)
    sat = (mx - mn) / np.maximum(mx, 1e-3)
    ls = cv2.GaussianBlur(luma, (0, 0), BLUR_SIGMA, borderType=cv2.BORDER_REFLECT)
    gx = (np.roll(ls, -1, axis=1) - np.roll(ls, 1, axis=1)) * 0.5  # wraps: ERP longitude is periodic
    gy = np.zeros_like(ls)
    gy[1:-1] = (ls[2:] - ls[:-2]) * 0.5
    gmag = np.sqrt(gx * gx + gy * gy)  # [h,2h]
    vert = np.where(np.abs(gx) > 2.0 * np.abs(gy), gmag, 0.0)
    out: list[float] = []
    for hi, lo in BANDS:
        m = (lat <= hi) & (lat > lo)
        e = float(gmag[m].sum())
        out += [
            float(luma[m].mean()),
            float(sat[m].mean()),
            float((b[m] - r[m]).mean()),
            float(gmag[m].mean()) * height,  # per-radian-ish scale, independent of the feature height
            float(vert[m].sum() / e) if e > 1e-6 else 0.0,
        ]
    up = lat > 20.0
    smooth = gmag * height < 0.6
    skylike = (b >= r) & (luma > 0.35) & smooth
    top, mid = lat > 45.0, np.abs(lat) < 20.0
    lu = luma[up]
    out += [
        float(skylike[up].mean()),
        float(luma[top].mean() - luma[mid].mean()),
        float(np.percentile(lu, 99) - np.percentile(lu, 50)),
        float((r - b).mean()),
        float(np.median(luma)),
    ]
    return np.array(out, dtype=np.float64)


def enclosure_features(img: np.ndarray, height: int = 64) -> np.ndarray:
    """uint8 [H,W,3] → float64 [len(ENCLOSURE_FEATURES)]."""
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


def erp_features(img: np.ndarray, height: int = 64) -> np.ndarray:
    """uint8 [H,W,3] → float64 [len(FEATURES)]: enclosure at `height`, appearance at APPEARANCE_HEIGHT."""
    return np.concatenate([enclosure_features(img, height), appearance_features(img)])
