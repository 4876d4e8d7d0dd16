"""Frame layout of a panoramic video: monoscopic ERP, stereo (top-bottom / side-by-side) ERP,
or something that is not a full panorama (180° video, fisheye, cubemap/EAC, letterboxed,
ordinary video).

Spherical-video metadata (`spherical.read_spherical`) decides first (`layout_from_metadata`);
without it the content of a few frames spread over the start of the video does (`detect_layout` on
each, `vote`: the majority); the decision is then applied to every frame (`take_eye`), and only
a stereo frame whose two eyes stop matching (`eyes_match`, a cheap thumbnail NCC) is classified
again on its own. Equirectangular video is often stored
anamorphically (a 1920×1080 container holding a mono ERP, or two ERPs stacked or side by side):
every eye is resampled to 2:1 (`take_eye`). By content, stereo is only called stereo when the two
halves actually show the same scene (colour NCC over a small horizontal disparity search) and a
frame that is not 2:1 is only called an ERP when its eye's left and right edges meet (seam
continuity), so a 4:1 strip, a 1:1 or a 16:9 ordinary video is not mistaken for a panorama."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import cv2
import numpy as np

from dap_model.video.horizon import seam_ratio

MONO, STEREO_TB, STEREO_SBS = "mono", "stereo_tb", "stereo_sbs"
VR180_SBS, VR180, FISHEYE, CUBEMAP = "vr180_sbs", "vr180", "fisheye", "cubemap"
LETTERBOXED, NOT_PANORAMIC = "letterboxed", "not_panoramic"
ACCEPTED_LAYOUTS = (MONO, STEREO_TB, STEREO_SBS)
METADATA, CONTENT = "metadata", "content"  # where a layout decision came from
VOTE_FRAMES = 5  # sampled frames whose content decides a video's layout (majority)
VOTE_SPACING_S = 0.2  # ... taken at least this far apart (the first ~second of an every-frame sampling)


@dataclass(frozen=True)
class Layout:
    name: str  # one of the constants above
    ok: bool  # an ERP eye can be taken from the frame
    detail: str = ""
    similarity: float = float("nan")  # NCC of the two halves, where compared
    source: str = CONTENT  # METADATA | CONTENT


def layout_from_metadata(meta, width: int, height: int) -> Layout | None:
    """The layout that spherical metadata (`SphericalMeta`) states, or None when it states none."""
    if not meta.spherical:
        return None
    what = meta.describe()
    if meta.projection in ("cubemap", "mesh"):
        kind = "cubemap" if meta.projection == "cubemap" else "mesh (equi-angular cubemap or custom)"
        return Layout(CUBEMAP, False, f"{what}: {kind} projection, not an ERP", source=METADATA)
    if meta.projection not in ("equirectangular", ""):
        return Layout(NOT_PANORAMIC, False, f"{what}: unsupported projection", source=METADATA)
    if meta.horizontal_fov_deg < 359.0:
        name = VR180_SBS if meta.stereo == "left-right" else VR180
        return Layout(name, False, f"{what}: not a full 360° panorama", source=METADATA)
    stereo = {"": MONO, "mono": MONO, "top-bottom": STEREO_TB, "left-right": STEREO_SBS}.get(meta.stereo)
    if stereo is None:
        return Layout(NOT_PANORAMIC, False, f"{what}: unsupported stereo mode", source=METADATA)
    return Layout(stereo, True, "", source=METADATA)


def _continuous(small: np.ndarray, tolerance: float) -> tuple[bool, float]:
    """Do the left and right edges of an eye [h,w,3] meet (a 360° ERP)? (verdict, seam ratio)"""
    eye = cv2.resize(small, (2 * small.shape[0] if small.shape[0] >= 16 else 32, max(small.shape[0], 16)))
    r = seam_ratio(eye.mean(axis=2))
    return r <= tolerance, r


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean(axis=(0, 1))
    b = b - b.mean(axis=(0, 1))
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-6 else 1.0


def halves_similarity(a: np.ndarray, b: np.ndarray, max_shift: float = 0.04) -> float:
    """Best colour NCC of two equally sized images [h,w,3] over horizontal shifts up to
    `max_shift` of the width (stereo disparity)."""
    w = a.shape[1]
    best = -1.0
    for s in range(-int(max_shift * w), int(max_shift * w) + 1):
        if s >= 0:
            best = max(best, _ncc(a[:, s:], b[:, : w - s]))
        else:
            best = max(best, _ncc(a[:, : w + s], b[:, -s:]))
    return best


def _bars(small: np.ndarray) -> str:
    """'rows' / 'cols' when both opposite borders are black bars (>= 3 % each), else ''."""
    grey = small.mean(axis=2)  # [h,w]
    h, w = grey.shape

    def black(x: np.ndarray) -> bool:
        return bool(x.size) and float(x.max()) < 20.0

    bh, bw = max(1, int(round(0.03 * h))), max(1, int(round(0.03 * w)))
    if black(grey[:bh]) and black(grey[h - bh :]):
        return "rows"
    if black(grey[:, :bw]) and black(grey[:, w - bw :]):
        return "cols"
    return ""


def _fisheye_corners(small: np.ndarray) -> bool:
    """Black corners around a bright disc: a circular fisheye image."""
    h, w = small.shape[:2]
    c = max(1, min(h, w) // 10)
    corners = [small[:c, :c], small[:c, w - c :], small[h - c :, :c], small[h - c :, w - c :]]
    centre = small[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3]
    return all(float(x.max()) < 24 for x in corners) and float(centre.mean()) > 24


def detect_layout(
    frame: np.ndarray, min_similarity: float = 0.8, aspect_tolerance: float = 0.03, seam_tolerance: float = 0.5
) -> Layout:
    """Classify one RGB frame [H,W,3] uint8."""
    h, w = frame.shape[:2]
    if h < 8 or w < 8:
        return Layout(NOT_PANORAMIC, False, f"frame {w}x{h} is too small")
    ar = w / h
    tw = 256 if ar >= 3 else 128
    small = cv2.resize(frame, (tw, max(8, int(round(tw / ar)))), interpolation=cv2.INTER_AREA).astype(np.float32)
    sh, sw = small.shape[:2]

    def near(target: float) -> bool:
        return abs(ar / target - 1.0) <= aspect_tolerance

    bars = _bars(small)
    if bars == "cols":
        return Layout(LETTERBOXED, False, f"black bars at left and right ({w}x{h}): not a full panorama")
    # Black rows at the top and bottom are letterboxing, or the black pole caps of an ERP whose rig
    # saw nothing there: stereo halves and 2:1 frames are judged as such, the rest below.
    if near(2.0) and all(_fisheye_corners(x) and float(x[:2, x.shape[1] // 2 - 2 : x.shape[1] // 2 + 2].mean()) >= 24
                         for x in (small[:, : sw // 2], small[:, sw // 2 :])):
        # black corners around two discs that reach the top edge (black pole caps of an ERP do not)
        return Layout(FISHEYE, False, "two circular fisheye images side by side: unstitched dual-fisheye footage")
    lit = np.flatnonzero(small.max(axis=(1, 2)) >= 20.0)  # rows that are not black
    core = small[lit[0] : lit[-1] + 1] if bars and lit.size >= 8 else small  # [h',sw,3]
    top = small[: sh // 2]
    sim_tb = halves_similarity(top, small[sh // 2 : 2 * (sh // 2)])
    left = core[:, : sw // 2]
    sim_sbs = halves_similarity(left, core[:, sw // 2 : 2 * (sw // 2)])
    if sim_tb >= min_similarity and _continuous(top, seam_tolerance)[0]:
        return Layout(STEREO_TB, True, "", sim_tb)
    if sim_sbs >= min_similarity:
        if near(4.0) or (not near(2.0) and _continuous(left, seam_tolerance)[0]):
            return Layout(STEREO_SBS, True, "", sim_sbs)
        if near(2.0):
            # Two similar halves are also what a 360° ERP of a symmetric room looks like; a VR180
            # pair differs in that its halves do not join up in the middle.
            mid = seam_ratio(np.roll(small.mean(axis=2), sw // 2, axis=1))
            if mid > seam_tolerance:
                return Layout(
                    VR180_SBS, False,
                    f"two similar 1:1 halves (NCC {sim_sbs:.2f}) that do not join in the middle: 180° side-by-side stereo",
                    sim_sbs,
                )
    if near(2.0):
        return Layout(MONO, True, "", sim_sbs)  # the horizon check tests the seam and the poles
    if near(1.0) and _fisheye_corners(small):
        return Layout(FISHEYE, False, "circular fisheye image (black corners): not an ERP", sim_tb)
    ok, ratio = _continuous(small, seam_tolerance)
    if bars and (not ok or abs(sw / core.shape[0] / 2.0 - 1.0) <= 4 * aspect_tolerance):
        # a picture between the bars that is not a full turn, or a 2:1 ERP letterboxed into another aspect
        return Layout(LETTERBOXED, False, f"black bars at top and bottom ({w}x{h}): not a full panorama")
    if ok:
        return Layout(MONO, True, "", sim_sbs)  # a mono ERP stored anamorphically (black pole caps allowed)
    return Layout(
        NOT_PANORAMIC, False,
        f"aspect {ar:.2f}:1 ({w}x{h}): no stereo halves (NCC {max(sim_tb, sim_sbs):.2f}) and the left and right "
        f"edges do not meet (seam ratio {ratio:.2f}): not a 360° ERP",
    )


def vote(layouts: list[Layout]) -> Layout:
    """The layout most of `layouts` (one per vote frame) agree on (ties: the earliest); its
    detail and similarity are those of the first frame that voted for it."""
    if not layouts:
        raise ValueError("vote: no layouts")
    name = Counter(x.name for x in layouts).most_common(1)[0][0]
    first = next(x for x in layouts if x.name == name)
    n = sum(x.name == name for x in layouts)
    return first if n == len(layouts) else replace(first, detail=first.detail + f" ({n} of {len(layouts)} vote frames)" * bool(first.detail))


def shrink(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area resampling to (width, height): first halved with OpenCV's fast 2x2 area path while
    at least twice the target (2-3x faster than one INTER_AREA at a non-integer ratio on a
    2-Mpixel frame; within ~0.5 grey level of it), then one INTER_AREA (INTER_LINEAR upwards)."""
    while img.shape[1] >= 2 * width and img.shape[0] >= 2 * height:
        h2, w2 = img.shape[0] // 2, img.shape[1] // 2
        img = cv2.resize(img[: 2 * h2, : 2 * w2], (w2, h2), interpolation=cv2.INTER_AREA)
    if img.shape[:2] == (height, width):
        return img
    up = img.shape[1] < width or img.shape[0] < height
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR if up else cv2.INTER_AREA)


def eye_view(frame: np.ndarray, layout: str, second: bool = False) -> np.ndarray:
    """The stored region (a view, no copy) of the left / top eye (`second`: the right / bottom
    one) of a frame [H,W,3] of an accepted layout."""
    h, w = frame.shape[:2]
    if layout == MONO:
        return frame
    if layout == STEREO_TB:
        return frame[h // 2 : 2 * (h // 2)] if second else frame[: h // 2]
    if layout == STEREO_SBS:
        return frame[:, w // 2 : 2 * (w // 2)] if second else frame[:, : w // 2]
    raise ValueError(f"layout {layout!r} has no ERP eye")


def take_eye(frame: np.ndarray, layout: str, height: int = 0) -> np.ndarray:
    """The ERP of one eye (left / top) from a frame of an accepted layout, resampled to 2:1 when
    stored anamorphically: [H,W,3] -> [h,2h,3] (h = the eye's stored height, or `height` when
    given: one resampling straight to the working size)."""
    eye = eye_view(frame, layout)
    eh, ew = eye.shape[:2]
    if height:
        return shrink(eye, 2 * height, height)
    if ew == 2 * eh:
        return eye
    th = max(ew // 2, eh)  # keep the larger dimension's resolution
    return cv2.resize(eye, (2 * th, th), interpolation=cv2.INTER_AREA if th * 2 < ew else cv2.INTER_LINEAR)


def eyes_match(frame: np.ndarray, layout: str, min_similarity: float) -> bool:
    """Do the two eyes of a stereo frame [H,W,3] still show the same scene? Grey 32x16
    thumbnails (point-sampled: ~0.1 ms on a 2-Mpixel frame), NCC without a disparity search (a
    few pixels of stereo disparity vanish at this size). Mono frames: always True."""
    if layout not in (STEREO_TB, STEREO_SBS):
        return True
    a, b = (cheap_thumbnail(eye_view(frame, layout, k)) for k in (False, True))
    return _ncc(a[..., None], b[..., None]) >= min_similarity


def cheap_thumbnail(img: np.ndarray, size: tuple[int, int] = (32, 16)) -> np.ndarray:
    """Grey thumbnail (float32 [16,32]) of a BGR/RGB image of any size in ~0.1-0.3 ms: bilinear
    samples on an 8x finer grid (256x128), then area-averaged (64 samples per thumbnail pixel).
    For duplicate detection and the eyes check, where a full area average of a 2-Mpixel frame
    (2-6 ms) buys nothing."""
    w, h = size
    fine = cv2.resize(img, (8 * w, 8 * h), interpolation=cv2.INTER_LINEAR)
    g = cv2.cvtColor(fine, cv2.COLOR_BGR2GRAY) if fine.ndim == 3 else fine
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
