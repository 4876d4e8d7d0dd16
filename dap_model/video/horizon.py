"""Horizon validation of equirectangular frames: is the camera upright, is the frame a full
360°×180° ERP, is there anything in it?

Tilt estimate. In an upright ERP, vertical world lines are image columns (great circles through
the poles) and the horizon is the equator. An image edge at ray r whose gradient, expressed in
the sphere's tangent plane, points along g lies on the great circle whose normal is n = g/|g|
(n ⟂ r, n ⟂ edge direction). Every great circle that carries a vertical world line contains the
vertical vanishing direction `up`, so its normal satisfies n·up = 0; horizontal world lines have
normals on meridians through `up`, which pile up near `up` itself. `up` is found by voting over
candidate directions within `search_deg` of +y (both terms), then refined by weighted least
squares on the great-circle inliers (smallest eigenvector of Σ w n nᵀ). The tilt is the angle
between `up` and +y. Works on a downscaled grey frame (`work_height`), so its cost does not grow
with the video's resolution."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from dap_model.errors import InputError

SEARCH_DEG = 45.0
HORIZ_W = 1.0
EDGE_BLUR = 0.8
EDGE_COH = 0.75
EDGE_PCT = 50.0
TENSOR_WIN = 5
VOTE_PX = 1.5


@dataclass(frozen=True)
class HorizonResult:
    ok: bool
    tilt_deg: float  # angle between the estimated world up and the camera's +y; nan if unknown
    reason: str  # "" when ok; else a short code: dark, blank, frozen, not_2to1, no_seam, no_poles, no_structure, tilted
    detail: str = ""  # one human-readable sentence
    roll_deg: float = math.nan  # up leaning towards camera +x (right), degrees
    pitch_deg: float = math.nan  # up leaning towards camera +z (forward), degrees
    up: tuple[float, float, float] = (math.nan, math.nan, math.nan)  # camera frame (x right, y up, z fwd)
    confidence: float = 0.0  # share of line evidence consistent with `up`
    seam_ratio: float = math.nan
    pole_ratio: float = math.nan
    stats: dict = field(default_factory=dict)


def _grey(frame: np.ndarray, work_height: int) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        desc = f"{frame.dtype} {list(frame.shape)}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise InputError(f"check_horizon: frame must be uint8 [H,W,3], got {desc}")
    h = min(work_height, frame.shape[0])
    g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if g.shape[0] != h or g.shape[1] != 2 * h:
        g = cv2.resize(g, (2 * h, h), interpolation=cv2.INTER_AREA)
    return g.astype(np.float32)  # [h, 2h]


def thumbnail(frame: np.ndarray, size: tuple[int, int] = (32, 16)) -> np.ndarray:
    """Grey thumbnail (float32 [16,32]) for duplicate / frozen detection."""
    g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
    return cv2.resize(g, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def seam_ratio(g: np.ndarray) -> float:
    """How different the first and last columns are, on a scale from ordinary neighbouring
    columns (0) to unrelated columns half a turn apart (1).

    ~0 for a 360° ERP (the seam is just another pair of neighbours); ~1 or more when the left
    and right edges do not meet (not a full turn). Per-column medians over rows, so a vertical
    edge that happens to fall on the seam (covering less than half the rows) does not count."""
    b = cv2.GaussianBlur(g, (5, 5), 0)  # [h,w]
    w = b.shape[1]
    adj = float(np.median(np.abs(np.diff(b, axis=1)), axis=0).mean())
    far = float(np.median(np.abs(b - np.roll(b, w // 2, axis=1)), axis=0).mean())
    seam = float(np.median(np.abs(b[:, 0] - b[:, -1])))
    return (seam - adj) / max(far - adj, 6.0)


def _fine_detail(rows: np.ndarray, sigma: float) -> np.ndarray:
    """Per row: std of the row profile above its 3rd Fourier harmonic ([R,W] -> [R])."""
    prof = cv2.GaussianBlur(rows, (0, 0), sigmaX=sigma, sigmaY=0.1)
    spec = np.fft.rfft(prof - prof.mean(axis=1, keepdims=True), axis=1)
    spec[:, :4] = 0
    return np.fft.irfft(spec, n=rows.shape[1], axis=1).std(axis=1)


def pole_ratio(g: np.ndarray, pole_rows: np.ndarray | None = None) -> float:
    """Fine detail along the top and bottom rows relative to an ordinary row (the larger of two).

    An ERP's first and last rows each circle a pole within a fraction of a degree, so along
    them only the coarsest variation is possible (an edge crossing the pole: one or two steps),
    and the profile's content above the 3rd harmonic is small. A cropped or perspective image
    has ordinary detail there (ratio ~1). `pole_rows` ([2,W'] grey, first and last row at the
    source resolution, where the pole circles are smallest) default to g's own."""
    h, w = g.shape
    sigma = max(1.0, w / 128)
    typical = float(np.median(_fine_detail(g[h // 4 : 3 * h // 4 : 2], sigma))) + 1.0
    rows = np.stack([g[0], g[-1]]) if pole_rows is None else pole_rows.astype(np.float32)
    if rows.shape[1] != w:
        rows = cv2.resize(rows, (w, 2), interpolation=cv2.INTER_AREA)
    return float(_fine_detail(rows, sigma).max()) / typical


def _line_normals(g: np.ndarray, max_samples: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Great-circle normals of line-like edges and their weights: ([N,3] float32, [N] float32)."""
    h, w = g.shape
    b = cv2.GaussianBlur(g, (0, 0), sigmaX=EDGE_BLUR)
    gx = cv2.Sobel(b, cv2.CV_32F, 1, 0, ksize=3)  # [h,w]
    gy = cv2.Sobel(b, cv2.CV_32F, 0, 1, ksize=3)
    lat = (np.pi / 2 - (np.arange(h, dtype=np.float32) + 0.5) / h * np.pi)[:, None]  # [h,1]
    lon = ((np.arange(w, dtype=np.float32) + 0.5) / w * 2 * np.pi - np.pi)[None, :]  # [1,w]
    coslat = np.cos(lat)
    a = gx / np.maximum(coslat, 0.05)  # gradient along e_lon (per radian of arc)
    c = -gy  # along e_lat
    k = (TENSOR_WIN, TENSOR_WIN)
    j11 = cv2.boxFilter(a * a, -1, k)
    j22 = cv2.boxFilter(c * c, -1, k)
    j12 = cv2.boxFilter(a * c, -1, k)
    tr = j11 + j22 + 1e-6
    coh = np.sqrt((j11 - j22) ** 2 + 4 * j12**2) / tr  # [h,w] 1 = one orientation
    theta = 0.5 * np.arctan2(2 * j12, j11 - j22)  # dominant gradient direction in (e_lon, e_lat)
    mag = np.sqrt(a * a + c * c)
    band = np.abs(lat) < np.deg2rad(72.0)
    strength = mag * (coh > EDGE_COH) * band
    if not np.any(strength > 0):
        return np.zeros((0, 3), np.float32), np.zeros(0, np.float32)
    thr = max(float(np.percentile(strength[strength > 0], EDGE_PCT)), 4.0)
    vv, uu = np.nonzero(strength > thr)
    if vv.size == 0:
        return np.zeros((0, 3), np.float32), np.zeros(0, np.float32)
    if vv.size > max_samples:
        sel = np.random.default_rng(0).choice(vv.size, max_samples, replace=False)
        vv, uu = vv[sel], uu[sel]
    la, lo = lat[vv, 0], lon[0, uu]
    t = theta[vv, uu]
    ct, st = np.cos(t), np.sin(t)
    sl, cl, so, co = np.sin(la), np.cos(la), np.sin(lo), np.cos(lo)
    e_lon = np.stack([co, np.zeros_like(co), -so], axis=1)  # [N,3]
    e_lat = np.stack([-sl * so, cl, -sl * co], axis=1)
    n = ct[:, None] * e_lon + st[:, None] * e_lat  # [N,3] unit
    wgt = np.minimum(strength[vv, uu], 4 * thr) * coh[vv, uu] * cl  # cos(lat): area on the sphere
    # Edges running within 45° of the image vertical may carry vertical world lines (a camera
    # tilted up to ~45° keeps them there); the others may carry horizontal ones. Keeping the
    # two apart stops floor/ceiling boundaries (normals ~35° from up) from voting as verticals.
    vert = np.abs(ct) > np.abs(st)
    return n.astype(np.float32), np.where(vert, wgt, -wgt).astype(np.float32)


def _candidates(search_deg: float, step_deg: float) -> np.ndarray:
    """Roughly uniform unit vectors within `search_deg` of +y: [M,3]."""
    cap = 1 - math.cos(math.radians(search_deg))
    n_sphere = int(4 * math.pi / math.radians(step_deg) ** 2)
    m = max(8, int(n_sphere * cap / 2))
    i = np.arange(m) + 0.5
    y = 1 - cap * i / m
    r = np.sqrt(1 - y * y)
    phi = i * math.pi * (3 - math.sqrt(5))
    return np.stack([r * np.cos(phi), y, r * np.sin(phi)], axis=1).astype(np.float32)


def _local_candidates(v: np.ndarray, radius_deg: float, step_deg: float) -> np.ndarray:
    base = _candidates(radius_deg, step_deg)  # around +y; rotate +y onto v
    y = np.array([0, 1, 0], np.float32)
    axis = np.cross(y, v)
    s, c = float(np.linalg.norm(axis)), float(np.dot(y, v))
    if s < 1e-8:
        return base if c > 0 else -base
    kx = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]]) / s
    rot = np.eye(3) + s * kx + (1 - c) * kx @ kx
    return (base @ rot.T.astype(np.float32)).astype(np.float32)


def _score(n: np.ndarray, w: np.ndarray, cands: np.ndarray, sigma: float) -> np.ndarray:
    """Vote of every edge for every candidate up direction: [M]. w > 0: vertical-ish edges
    (vote when their normal is ⟂ the candidate), w < 0: horizontal-ish (vote when parallel)."""
    d = np.abs(n @ cands.T)  # [N,M] |cos|
    wv, wh = np.maximum(w, 0), np.maximum(-w, 0)
    vert = np.maximum(0.0, 1.0 - (d * d) * (1.0 / (sigma * sigma)))
    horiz = np.maximum(0.0, 1.0 - (1.0 - d) * (2.0 / (sigma * sigma)))
    return wv @ vert + HORIZ_W * (wh @ horiz)  # [M]


def estimate_up(g: np.ndarray, search_deg: float = SEARCH_DEG) -> tuple[np.ndarray, float, int]:
    """World up in the camera frame from a grey ERP [h,2h]: (up [3], confidence, n_edges)."""
    n, w = _line_normals(g)
    if n.shape[0] < 30:
        return np.array([np.nan] * 3, np.float32), 0.0, int(n.shape[0])
    sigma = math.sin(math.radians(max(2.0, VOTE_PX * 180.0 / g.shape[0])))  # vote width: >= 1.5 px of arc
    cands = _candidates(search_deg, 3.0)
    coarse = slice(None) if n.shape[0] <= 1000 else slice(None, None, n.shape[0] // 1000 + 1)
    v = cands[int(np.argmax(_score(n[coarse], w[coarse], cands, 2 * sigma)))]
    fine = _local_candidates(v, 4.0, 0.75)
    v = fine[int(np.argmax(_score(n, w, fine, sigma)))]
    for tol in (3.0, 2.0, 1.5):
        d = n @ v
        inl = (np.abs(d) < math.sin(math.radians(tol))) & (w > 0)
        if inl.sum() < 10:
            break
        m = (n[inl] * w[inl, None]).T @ n[inl]  # [3,3]
        evals, evecs = np.linalg.eigh(m)
        cand = evecs[:, 0].astype(np.float32)
        v = cand if cand[1] >= 0 else -cand
    d = n @ v
    aw = np.abs(w)
    on = ((np.abs(d) < math.sin(math.radians(2.0))) & (w > 0)) | ((np.abs(d) > math.cos(math.radians(2.0))) & (w < 0))
    conf = float(aw[on].sum() / (aw.sum() + 1e-9))
    return v / np.linalg.norm(v), conf, int(n.shape[0])


def check_horizon(
    frame: np.ndarray,
    max_tilt_deg: float = 5.0,
    *,
    settings=None,
    prev: np.ndarray | None = None,
) -> HorizonResult:
    """Validate one ERP frame (uint8 [H,W,3] RGB, W = 2H).

    `settings` is a `VideoConfig` (its thresholds; default: `VideoConfig()`); `prev` is the
    previous sampled frame, to report a frozen stream."""
    from dap_model.config import VideoConfig

    s = settings if settings is not None else VideoConfig()
    h0, w0 = frame.shape[:2] if isinstance(frame, np.ndarray) and frame.ndim >= 2 else (0, 0)
    if h0 == 0 or abs(w0 / h0 - 2.0) > 2.0 * s.aspect_tolerance:
        _grey(frame, 8) if h0 else None
        return HorizonResult(False, math.nan, "not_2to1", f"frame is {w0}x{h0}, an ERP is 2:1")
    g = _grey(frame, s.horizon_height)
    mean, std = float(g.mean()), float(g.std())
    stats = {"mean": mean, "std": std}
    if mean < s.min_brightness:
        return HorizonResult(False, math.nan, "dark", f"mean grey level {mean:.1f} < {s.min_brightness}", stats=stats)
    if std < s.min_contrast:
        return HorizonResult(False, math.nan, "blank", f"grey-level std {std:.1f} < {s.min_contrast}", stats=stats)
    if prev is not None and prev.shape == frame.shape:
        diff = float(np.abs(thumbnail(frame) - thumbnail(prev)).mean())
        if diff < 0.25:
            return HorizonResult(False, math.nan, "frozen", f"identical to the previous frame (diff {diff:.2f})", stats=stats)
    sr = seam_ratio(g)
    pr = pole_ratio(g, cv2.cvtColor(np.ascontiguousarray(frame[[0, -1]]), cv2.COLOR_RGB2GRAY))
    up, conf, n_edges = estimate_up(g)
    stats["edges"] = n_edges
    known = bool(np.all(np.isfinite(up)))
    tilt = math.degrees(math.acos(float(np.clip(up[1], -1, 1)))) if known else math.nan
    common = dict(
        roll_deg=math.degrees(math.atan2(float(up[0]), float(up[1]))) if known else math.nan,
        pitch_deg=math.degrees(math.atan2(float(up[2]), float(up[1]))) if known else math.nan,
        up=tuple(float(x) for x in up), confidence=conf, seam_ratio=sr, pole_ratio=pr, stats=stats,
    )
    if sr > s.seam_tolerance:
        return HorizonResult(
            False, tilt, "no_seam",
            f"left and right edges do not meet (seam {sr:.2f} > {s.seam_tolerance}): not a 360° panorama",
            **common,
        )
    if pr > s.pole_max_variation:
        return HorizonResult(
            False, tilt, "no_poles",
            f"top/bottom rows have detail (pole ratio {pr:.2f} > {s.pole_max_variation}): not a full 180° vertical field",
            **common,
        )
    if not known:
        return HorizonResult(
            False, tilt, "no_structure", f"only {n_edges} line-like edge pixels: tilt cannot be estimated", **common
        )
    if tilt > max_tilt_deg:
        return HorizonResult(False, tilt, "tilted", f"camera tilted {tilt:.1f}° > {max_tilt_deg}°", **common)
    return HorizonResult(True, tilt, "", "", **common)
