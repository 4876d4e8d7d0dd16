"""Horizon validation of equirectangular frames: is the camera upright, is the frame a full
360°×180° ERP, is there anything in it?

All work happens on the frame downscaled to `VideoConfig.horizon_height` (128 px: a [128,256]
grey image and a [32,64] thumbnail), so the cost does not grow with the video's resolution.
Pole caps (rows that are flat fill: black bands, a blurred or painted nadir, see
`dap_model.video.frames.valid_band`) take no part in either cue.

Tilt estimate: the world up `u` (camera frame) that best explains two independent cues, as a
sum of log-likelihoods over candidate directions within `SEARCH_DEG` of +y.

1. Line segments (OpenCV LSD on the grey frame), at least `SEGMENT_MIN_PX` long and arcs of a
   great circle (midpoint within `ARC_TOLERANCE_PX` of the circle through the end points: a long
   image-straight edge away from the equator — a logo's or a cap's border — is not the image of
   a 3-D line). A segment's two end rays span the great circle that carries it; its normal n is
   ⟂ the segment's 3-D direction. Vertical world lines have n·u = 0; horizontal ones have n ⟂ their horizontal
   direction, and in a man-made (Manhattan) scene most horizontal lines follow two
   perpendicular directions h1, h2 = u × h1; distant lines on the horizon have n ∥ u. Each
   segment scores log(1 + K/ε), K = a kernel of its best residual |n·a| over the axes
   a ∈ {u, h1(θ), h2(θ)} (θ per candidate from an azimuth histogram with period 90°; the h1, h2
   kernels at `MANHATTAN_WEIGHT`, since clutter fits some θ), weighted by its length: long
   consistent segments are decisive, short clutter (foliage, rocks) is dropped.
2. Appearance vs elevation: the share η² of the variance of two rank-transformed channels
   (grey level, blue − red) explained by the elevation above the candidate horizon (bins of
   asin(u·r)): sky above, ground below, ceiling lights, floor. Ranks bound what one small bright
   region (the sun, a lamp) can contribute. Scored as the Gaussian log-likelihood
   −(N_eff/2)·log(1 − η²). This carries outdoor scenes with few straight lines.

Coarse-to-fine search (`LEVELS`: a 6° grid over the whole cap, then 2° and 0.75° grids around
the best); the tilt is the angle between `u` and +y. Candidate grids and per-pixel rays are
cached per size."""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from dap_model.errors import InputError

SEARCH_DEG = 45.0  # largest tilt searched (and so estimated)
# coarse-to-fine search: (radius deg (level 0: SEARCH_DEG), grid step deg, segment kernel width deg, thumbnail level)
LEVELS = ((SEARCH_DEG, 6.0, 4.5, 0), (7.5, 2.0, 3.0, 0), (2.5, 0.75, 2.0, 1))
LINE_EPS = 0.5  # segment log-likelihood floor: log(1 + K/eps), K in [0,1]
MANHATTAN_WEIGHT = 0.5  # a Manhattan-consistent segment counts half a vertical one (clutter fits some θ)
AZIMUTH_BIN_DEG = 2.0  # azimuth histogram bin for the Manhattan horizontal directions
SEGMENT_MAX_LAT_DEG = 65.0  # segments whose midpoint is nearer a pole are dropped (ERP smear there)
MAX_SEGMENTS = 120  # longest segments kept (the cost of the search grows with the count)
SEGMENT_MIN_PX = 6.0  # shorter segments (at 128 px) are clutter, dropped
ARC_TOLERANCE_PX = 1.0  # a segment whose midpoint is further off its end points' great circle is not a 3-D line
CAP_MARGIN_DEG = 3.0  # segments ending this near a pole cap's edge are dropped (the cap's border)
_GREY = np.array([0.299, 0.587, 0.114], np.float32)  # RGB -> grey weights (ITU-R BT.601, as OpenCV)
LSD_MIN_HEIGHT = 128  # LSD runs on the grey frame upsampled to at least this height
BRIGHT_HEIGHT = (16, 32)  # appearance cue: thumbnail height (width 2x) in the coarse, fine levels
BRIGHT_BINS = (24, 48)  # elevation bins of the appearance cue (over 180°) in the coarse, fine levels
BRIGHT_NEFF = 800.0  # effective number of independent samples of the appearance cue
MIN_SEGMENTS = 8  # fewer segments and a flat appearance profile: tilt unknown (no_structure)
MIN_BRIGHT_ETA2 = 0.1  # appearance cue needs at least this share of variance explained


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


def _work(frame: np.ndarray, work_height: int) -> tuple[np.ndarray, np.ndarray]:
    """The frame at the working size: (RGB uint8 [h,2h,3], grey float32 [h,2h]), h = min(work_height, H)."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        desc = f"{frame.dtype} {list(frame.shape)}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise InputError(f"check_horizon: frame must be uint8 [H,W,3], got {desc}")
    h = min(work_height, frame.shape[0])
    rgb = frame
    if rgb.shape[0] != h or rgb.shape[1] != 2 * h:
        rgb = cv2.resize(frame, (2 * h, h), interpolation=cv2.INTER_AREA)
    return rgb, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


def thumbnail(frame: np.ndarray, size: tuple[int, int] = (32, 16)) -> np.ndarray:
    """Grey thumbnail (float32 [16,32]) for duplicate / frozen detection."""
    g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
    return cv2.resize(g, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def seam_ratio(img: np.ndarray, samples: int = 128) -> float:
    """How different the first and last columns are, on a scale from ordinary neighbouring
    columns (0) to unrelated columns half a turn apart (1).

    `img`: grey [h,w] or RGB [h,w,3] ERP, best at the source resolution: there a vertical edge
    (a door frame, a curtain) that lies a few source pixels from the seam is a few pixels away
    from it, where in a downscaled frame it falls on the seam column. Statistics over up to
    `samples` rows and `samples` pairs of neighbouring columns (so the cost does not depend on
    the resolution). ~0 for a 360° ERP (the seam is just another pair of neighbours); ~1 or more
    when the left and right edges do not meet (not a full turn). Per-column medians over rows,
    so an edge covering less than half the rows does not count; the seam is compared with the
    90th percentile of the neighbouring-column differences, so noise and 8-px JPEG block edges
    (which lie on every seam) do not count either."""
    h, w = img.shape[:2]
    rows = np.unique(np.linspace(0, h - 1, min(h, samples)).round().astype(np.int64))
    xs = np.unique(np.linspace(0, w - 2, min(w - 1, samples)).round().astype(np.int64))
    n = xs.size
    cols = np.concatenate([xs, xs + 1, (xs + w // 2) % w, [0, w - 1]])
    s = np.take(np.take(img, rows, axis=0), cols, axis=1).astype(np.float32)  # [r,3n+2] (RGB: [r,3n+2,3])
    if s.ndim == 3:
        s = s @ _GREY
    s = np.ascontiguousarray(s.T)  # [3n+2,r]: the medians run along contiguous rows
    near = np.median(np.abs(s[:n] - s[n : 2 * n]), axis=1)  # [n]
    adj, ref = float(near.mean()), float(np.percentile(near, 90))
    far = float(np.median(np.abs(s[:n] - s[2 * n : 3 * n]), axis=1).mean())
    seam = float(np.median(np.abs(s[-2] - s[-1])))
    return (seam - ref) / max(far - adj, 6.0)


def _fine_detail(rows: np.ndarray, sigma: float) -> np.ndarray:
    """Per row: std of the row profile above its 3rd Fourier harmonic ([R,W] -> [R])."""
    prof = cv2.GaussianBlur(rows, (0, 0), sigmaX=sigma, sigmaY=0.1)
    spec = np.fft.rfft(prof - prof.mean(axis=1, keepdims=True), axis=1)
    spec[:, :4] = 0
    return np.fft.irfft(spec, n=rows.shape[1], axis=1).std(axis=1)


def pole_ratio(g: np.ndarray, pole_rows: np.ndarray | None = None) -> float:
    """Fine detail along the top and bottom rows relative to an ordinary row (the smaller of two).

    An ERP's first and last rows each circle a pole within a fraction of a degree, so along
    them only the coarsest variation is possible (an edge crossing the pole: one or two steps),
    and the profile's content above the 3rd harmonic is small. A cropped or perspective image
    has ordinary detail there (ratio ~1). `pole_rows` ([2,W'] grey, first and last row at the
    source resolution, where the pole circles are smallest) default to g's own. The smaller of
    the two counts: a thin line under the camera (a floor-tile joint, a road marking) crossing
    one pole puts narrow spikes into that row, but a full ERP rarely has that at both poles."""
    h, w = g.shape
    sigma = max(1.0, w / 128)
    typical = float(np.median(_fine_detail(g[h // 4 : 3 * h // 4 : 2], sigma))) + 1.0
    rows = np.stack([g[0], g[-1]]) if pole_rows is None else pole_rows.astype(np.float32)
    if rows.shape[1] != w:
        rows = cv2.resize(rows, (w, 2), interpolation=cv2.INTER_AREA)
    return float(_fine_detail(rows, sigma).min()) / typical


_LSD = threading.local()  # one LineSegmentDetector per thread (a detector is not thread-safe), made on first use


def _erp_rays(u: np.ndarray, v: np.ndarray, h: int, w: int) -> np.ndarray:
    """Unit rays of (sub)pixel positions u (column), v (row) of an [h,w] ERP: [...,3]."""
    lon = (u + 0.5) * (2 * np.pi / w) - np.pi
    lat = np.pi / 2 - (v + 0.5) * (np.pi / h)
    cl = np.cos(lat)
    return np.stack([cl * np.sin(lon), np.sin(lat), cl * np.cos(lon)], axis=-1)


def line_segments(g: np.ndarray, band_deg: tuple[float, float] = (90.0, -90.0)) -> tuple[np.ndarray, np.ndarray]:
    """LSD segments of a grey ERP [h,2h] as great-circle normals and weights: ([N,3], [N]).

    Normal = end ray × end ray (unit); weight = length in pixels of `g`. Dropped: segments
    shorter than `SEGMENT_MIN_PX` (scaled to g's height), segments near the poles (the ERP
    stretches everything there into image rows, whose chords would all vote for the camera's
    own +y) and segments ending within `CAP_MARGIN_DEG` of a pole cap (`band_deg` = (top,
    bottom) latitude of the valid band: the cap's border is an image row, not a world line)."""
    h, w = g.shape
    k = max(1, math.ceil(LSD_MIN_HEIGHT / h))
    g8 = np.clip(g + 0.5, 0, 255).astype(np.uint8)
    if k > 1:
        g8 = cv2.resize(g8, (w * k, h * k), interpolation=cv2.INTER_CUBIC)
    if not hasattr(_LSD, "detector"):
        _LSD.detector = cv2.createLineSegmentDetector(cv2.LSD_REFINE_STD, 1.0)
    lines = _LSD.detector.detect(g8)[0]
    if lines is None:
        return np.zeros((0, 3)), np.zeros(0)
    seg = lines.reshape(-1, 4).astype(np.float64) / k - 0.5 * (k - 1) / k  # [N,4] x1 y1 x2 y2 in g's pixels
    n = np.cross(_erp_rays(seg[:, 0], seg[:, 1], h, w), _erp_rays(seg[:, 2], seg[:, 3], h, w))  # [N,3]
    s = np.linalg.norm(n, axis=1)
    lat = 90.0 - (seg[:, [1, 3]] + 0.5) * (180.0 / h)  # [N,2] end latitudes
    top, bottom = band_deg
    length = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1])
    mid = _erp_rays(0.5 * (seg[:, 0] + seg[:, 2]), 0.5 * (seg[:, 1] + seg[:, 3]), h, w)  # [N,3]
    bulge = np.abs((n * mid).sum(axis=1)) / np.maximum(s, 1e-12)  # sin(angle of the midpoint off the great circle)
    keep = (
        (s > 1e-6)
        & (bulge < math.sin(ARC_TOLERANCE_PX * math.pi / h))
        & (np.abs(lat.mean(axis=1)) < SEGMENT_MAX_LAT_DEG)
        & (length >= SEGMENT_MIN_PX * h / 128)
        & (lat.max(axis=1) < top - CAP_MARGIN_DEG)
        & (lat.min(axis=1) > bottom + CAP_MARGIN_DEG)
    )
    n, s, length = n[keep], s[keep], length[keep]
    if length.size > MAX_SEGMENTS:  # the longest carry the weight; the cost grows with the count
        top_k = np.argpartition(-length, MAX_SEGMENTS)[:MAX_SEGMENTS]
        n, s, length = n[top_k], s[top_k], length[top_k]
    return n / s[:, None], length


@functools.lru_cache(maxsize=16)
def _candidates(search_deg: float, step_deg: float) -> np.ndarray:
    """Roughly uniform unit vectors within `search_deg` of +y: [M,3] (read-only, cached)."""
    cap = 1 - math.cos(math.radians(search_deg))
    n_sphere = int(4 * math.pi / math.radians(step_deg) ** 2)
    m = max(8, int(n_sphere * cap / 2))
    i = np.arange(m) + 0.5
    y = 1 - cap * i / m
    r = np.sqrt(1 - y * y)
    phi = i * math.pi * (3 - math.sqrt(5))
    out = np.stack([r * np.cos(phi), y, r * np.sin(phi)], axis=1)
    out.setflags(write=False)
    return out


def _local_candidates(v: np.ndarray, radius_deg: float, step_deg: float) -> np.ndarray:
    """`_candidates(radius_deg, step_deg)` rotated from +y onto v: [M,3] float64."""
    base = _candidates(radius_deg, step_deg)
    y = np.array([0.0, 1.0, 0.0])
    axis = np.cross(y, v)
    s, c = float(np.linalg.norm(axis)), float(np.dot(y, v))
    if s < 1e-8:
        return base if c > 0 else -base
    kx = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]]) / s
    rot = np.eye(3) + s * kx + (1 - c) * kx @ kx
    return base @ rot.T


def _basis(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors spanning the plane ⟂ each row of u [M,3]: ([M,3], [M,3])."""
    ref = np.where(np.abs(u[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 0, 1.0]]))
    e1 = np.cross(u, ref)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    return e1, np.cross(u, e1)


def line_score(n: np.ndarray, w: np.ndarray, cands: np.ndarray, sigma_deg: float) -> np.ndarray:
    """Log-likelihood of the segments (normals n [N,3], weights w [N]) for each candidate up [M,3]: [M].

    Per candidate, the Manhattan azimuth θ of the horizontal directions comes from a histogram of
    the segments' horizontal vanishing azimuths (mod 90°); each segment then scores
    log(1 + K/ε) of its best residual over {u, h1(θ), h2(θ)} (K = 1 − (r/σ)², ≥ 0)."""
    m = cands.shape[0]
    s2 = 1.0 / math.sin(math.radians(sigma_deg)) ** 2
    e1, e2 = _basis(cands)
    du = n @ cands.T  # [N,M] residual for a vertical line
    a, b = n @ e1.T, n @ e2.T  # [N,M] n's components in the candidate's horizontal plane
    k_vert = np.maximum(0.0, 1.0 - du * du * s2)
    k_horizon = np.maximum(0.0, 1.0 - (a * a + b * b) * s2)  # n ∥ u: a line on the horizon circle
    k_any = np.maximum(k_vert, k_horizon)
    nb = int(round(90.0 / AZIMUTH_BIN_DEG))
    phi = np.mod(np.arctan2(b, a), np.pi / 2) * (nb / (np.pi / 2))  # [N,M] in [0, nb)
    i0 = np.floor(phi).astype(np.int64) % nb
    fr = phi - np.floor(phi)
    vote = w[:, None] * (1.0 - k_any)  # segments already explained by u do not pick θ
    off = np.arange(m) * nb
    hist = np.bincount((i0 + off).ravel(), (vote * (1 - fr)).ravel(), m * nb)
    hist += np.bincount(((i0 + 1) % nb + off).ravel(), (vote * fr).ravel(), m * nb)
    hist = hist.reshape(m, nb)
    smooth = hist + 0.5 * (np.roll(hist, 1, axis=1) + np.roll(hist, -1, axis=1))
    theta = (np.argmax(smooth, axis=1) + 0.5) * math.radians(AZIMUTH_BIN_DEG)  # [M]
    c, s = np.cos(theta), np.sin(theta)
    r1, r2 = a * c + b * s, b * c - a * s  # [N,M] residuals for h1(θ), h2(θ)
    k = np.maximum(k_any, MANHATTAN_WEIGHT * np.maximum(1.0 - r1 * r1 * s2, 1.0 - r2 * r2 * s2))
    return w @ np.log1p(k / LINE_EPS)  # [M]


@functools.lru_cache(maxsize=8)
def _pixel_rays(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel rays [h*w,3], cos(lat) [h*w] and latitude of each row in degrees [h] of an [h,w] ERP."""
    v, u = np.mgrid[0:h, 0:w]
    lat_row = 90.0 - (np.arange(h) + 0.5) * (180.0 / h)
    out = (_erp_rays(u, v, h, w).reshape(-1, 3), np.cos(np.radians(np.repeat(lat_row, w))), lat_row)
    for x in out:
        x.setflags(write=False)
    return out


def _rank(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Ranks of x's valid entries scaled to [0,1] (ties broken by position); invalid entries 0: same shape."""
    out = np.zeros(x.shape, np.float64)
    xv = x[valid]
    if xv.size > 1:
        r = np.empty(xv.size)
        r[np.argsort(xv, kind="stable")] = np.arange(xv.size) / (xv.size - 1)
        out[valid] = r
    return out


def appearance(rgb: np.ndarray, band_deg: tuple[float, float]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per level of `BRIGHT_HEIGHT`: (features [hb*2hb,2] float64, area weight [hb*2hb]) of an
    RGB ERP [h,2h,3]: ranks of the grey level and of blue − red among the pixels of the valid
    band (`band_deg` = (top, bottom) latitude), area weight cos(lat) there and 0 in the caps."""
    out = []
    for bh in BRIGHT_HEIGHT:
        f = cv2.resize(rgb, (2 * bh, bh), interpolation=cv2.INTER_AREA).astype(np.float32)  # [bh,2bh,3]
        _, cos_lat, lat_row = _pixel_rays(bh, 2 * bh)
        valid = np.repeat((lat_row <= band_deg[0]) & (lat_row >= band_deg[1]), 2 * bh)  # [bh*2bh]
        grey = f @ _GREY
        chroma = f[..., 2] - f[..., 0]
        feat = np.stack([_rank(grey.ravel(), valid), _rank(chroma.ravel(), valid)], axis=1)
        out.append((feat, cos_lat * valid))
    return out


def brightness_eta2(feat: np.ndarray, area: np.ndarray, h: int, cands: np.ndarray, bins: int) -> np.ndarray:
    """Share of the variance of per-pixel features (feat [h*2h,C] of an [h,2h] ERP, weights `area`
    [h*2h]) explained by elevation above each candidate horizon (cands [M,3]; `bins` bins of
    equal width in sin(elevation), i.e. equal area, finest at the horizon): [M] in [0,1]."""
    rays = _pixel_rays(h, 2 * h)[0]
    keep = area > 0
    rays, area, col = rays[keep], area[keep], feat[keep]
    col = col - (col * area[:, None]).sum(0) / max(area.sum(), 1e-12)
    total = float((area[:, None] * col * col).sum()) + 1e-9
    m = cands.shape[0]
    z = rays @ cands.T  # [P,M] sin(elevation)
    idx = (np.minimum(((z + 1) * (bins / 2)).astype(np.int64), bins - 1) + np.arange(m) * bins).ravel()
    cnt = np.bincount(idx, np.repeat(area, m), m * bins)
    explained = np.zeros(m * bins)
    for ch in range(col.shape[1]):
        s = np.bincount(idx, np.repeat(col[:, ch] * area, m), m * bins)
        explained += s * s
    return (explained / np.maximum(cnt, 1e-12)).reshape(m, bins).sum(1) / total


def estimate_up(
    g: np.ndarray,
    rgb: np.ndarray,
    band_deg: tuple[float, float] = (90.0, -90.0),
    search_deg: float = SEARCH_DEG,
    cues: tuple[str, ...] = ("lines", "appearance"),
) -> tuple[np.ndarray, float, int]:
    """World up in the camera frame from a grey ERP g [h,2h] and the RGB frame [H,2H,3], both
    cues restricted to the valid band `band_deg` = (top, bottom) latitude:
    (up [3], confidence, n_segments); up is nan when neither cue has any evidence. `cues`
    selects the evidence summed in the search (both by default; one alone shows which cue
    drives an estimate)."""
    if not cues or set(cues) - {"lines", "appearance"}:
        raise InputError(f"estimate_up: cues must be a non-empty subset of ('lines', 'appearance'), got {cues}")
    n, w = line_segments(g, band_deg)
    thumbs = appearance(rgb, band_deg)
    v = np.array([0.0, 1.0, 0.0])
    for level, (radius, step, sigma, t) in enumerate(LEVELS):
        cands = _local_candidates(v, search_deg if level == 0 else radius, step)
        eta2 = brightness_eta2(*thumbs[t], BRIGHT_HEIGHT[t], cands, BRIGHT_BINS[t])
        ll = -0.5 * BRIGHT_NEFF * np.log1p(-np.minimum(eta2, 0.999)) if "appearance" in cues else np.zeros(len(cands))
        if n.shape[0] and "lines" in cues:
            ll = ll + line_score(n, w, cands, sigma)
        if level == 0 and n.shape[0] < MIN_SEGMENTS and float(eta2.max()) < MIN_BRIGHT_ETA2:
            return np.full(3, np.nan, np.float32), 0.0, int(n.shape[0])
        v = cands[int(np.argmax(ll))]
    conf = 0.0
    if n.shape[0]:  # share of segment weight within 2° of an axis-consistent line
        d = np.abs(n @ v)
        conf = float(w[(d < math.sin(math.radians(2.0))) | (d > math.cos(math.radians(2.0)))].sum() / w.sum())
    return (v / np.linalg.norm(v)).astype(np.float32), conf, int(n.shape[0])


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
    from dap_model.video.frames import valid_band  # frames imports this module

    s = settings if settings is not None else VideoConfig()
    h0, w0 = frame.shape[:2] if isinstance(frame, np.ndarray) and frame.ndim >= 2 else (0, 0)
    if h0 == 0 or abs(w0 / h0 - 2.0) > 2.0 * s.aspect_tolerance:
        _work(frame, 8) if h0 else None
        return HorizonResult(False, math.nan, "not_2to1", f"frame is {w0}x{h0}, an ERP is 2:1")
    rgb, g = _work(frame, s.horizon_height)  # [h,2h,3], [h,2h]
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
    sr = seam_ratio(frame)  # at the source resolution
    pr = pole_ratio(g, cv2.cvtColor(np.ascontiguousarray(frame[[0, -1]]), cv2.COLOR_RGB2GRAY))
    band = valid_band(rgb, s.cap_max_std)  # (top, bottom) latitude outside the pole caps
    band = band if math.isfinite(band[0]) else (90.0, -90.0)
    up, conf, n_edges = estimate_up(g, rgb, band)
    stats.update(segments=n_edges, valid_lat_top=band[0], valid_lat_bottom=band[1])
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
            False, tilt, "no_structure", f"only {n_edges} line segments and no brightness structure: tilt cannot be estimated", **common
        )
    if tilt > max_tilt_deg:
        return HorizonResult(False, tilt, "tilted", f"camera tilted {tilt:.1f}° > {max_tilt_deg}°", **common)
    return HorizonResult(True, tilt, "", "", **common)
