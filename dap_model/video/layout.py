"""Frame layout of a panoramic video: monoscopic ERP, stereo (top-bottom / side-by-side) ERP,
or something that is not a full panorama (180° video, fisheye, letterboxed, ordinary video).

Stereo is only called stereo when the two halves actually show the same scene (colour NCC
over a small horizontal disparity search), so a 4:1 strip or a 1:1 video is not mistaken for
a stereo pair."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dap_model.video.horizon import seam_ratio

MONO, STEREO_TB, STEREO_SBS = "mono", "stereo_tb", "stereo_sbs"
VR180_SBS, FISHEYE, LETTERBOXED, NOT_PANORAMIC = "vr180_sbs", "fisheye", "letterboxed", "not_panoramic"
ACCEPTED_LAYOUTS = (MONO, STEREO_TB, STEREO_SBS)


@dataclass(frozen=True)
class Layout:
    name: str  # one of the constants above
    ok: bool  # an ERP eye can be taken from the frame
    detail: str = ""
    similarity: float = float("nan")  # NCC of the two halves, where compared


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
    if bars:
        side = "top and bottom" if bars == "rows" else "left and right"
        return Layout(LETTERBOXED, False, f"black bars at {side} ({w}x{h}): not a full panorama")
    if near(2.0):
        sim = halves_similarity(small[:, : sw // 2], small[:, sw // 2 : 2 * (sw // 2)])
        if sim >= min_similarity:
            # Two similar halves are also what a 360° ERP of a symmetric room looks like; a
            # VR180 pair differs in that its halves do not join up in the middle.
            grey = small.mean(axis=2)
            mid = seam_ratio(np.roll(grey, sw // 2, axis=1))
            if mid > seam_tolerance:
                return Layout(
                    VR180_SBS, False,
                    f"two similar 1:1 halves (NCC {sim:.2f}) that do not join in the middle: 180° side-by-side stereo",
                    sim,
                )
        return Layout(MONO, True, "", sim)
    if near(1.0):
        sim = halves_similarity(small[: sh // 2], small[sh // 2 : 2 * (sh // 2)])
        if sim >= min_similarity:
            return Layout(STEREO_TB, True, "", sim)
        if _fisheye_corners(small):
            return Layout(FISHEYE, False, "circular fisheye image (black corners): not an ERP", sim)
        return Layout(NOT_PANORAMIC, False, f"1:1 frame whose halves differ (NCC {sim:.2f}): not top-bottom stereo", sim)
    if near(4.0):
        sim = halves_similarity(small[:, : sw // 2], small[:, sw // 2 : 2 * (sw // 2)])
        if sim >= min_similarity:
            return Layout(STEREO_SBS, True, "", sim)
        return Layout(NOT_PANORAMIC, False, f"4:1 frame whose halves differ (NCC {sim:.2f}): not side-by-side stereo", sim)
    return Layout(NOT_PANORAMIC, False, f"aspect {ar:.2f}:1 ({w}x{h}) is not 2:1 (ERP), 1:1 or 4:1 (stereo ERP)")


def take_eye(frame: np.ndarray, layout: str) -> np.ndarray:
    """The ERP of one eye (left / top) from a frame of an accepted layout: [H,W,3] -> [h,2h,3]."""
    h, w = frame.shape[:2]
    if layout == MONO:
        return frame
    if layout == STEREO_TB:
        return frame[: h // 2]
    if layout == STEREO_SBS:
        return frame[:, : w // 2]
    raise ValueError(f"layout {layout!r} has no ERP eye")
