"""Test clips in real containers, re-encoded from a real mono ERP video: mono / top-bottom /
side-by-side stereo in 2:1 and 16:9 frames, flat and VR180 clips, with and without spherical
metadata. OpenCV writes the MP4; the Spherical Video V2 (`st3d`, `sv3d`) and V1 (`uuid` XML) boxes
are then spliced into its `moov` by a small ISO-BMFF box writer (parent box sizes adjusted)."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from dap_model.video.spherical import V1_UUID, VISUAL_ENTRY_FIELDS, _boxes


def read_frames(path: Path, n: int, size: tuple[int, int], step: int = 1) -> list[np.ndarray]:
    """n RGB frames [h,w,3] resized to size=(w,h), every `step`-th frame."""
    cap = cv2.VideoCapture(str(path))
    out, i = [], 0
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            break
        if i % step == 0:
            out.append(cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA))
        i += 1
    cap.release()
    return out


def write_mp4(path: Path, frames: list[np.ndarray], fps: float = 4.0) -> Path:
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert vw.isOpened(), f"cannot write {path}"
    for f in frames:
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()
    return path


# ---------------------------------------------------------------- layouts from a mono ERP

def compose(erp: np.ndarray, layout: str, size: tuple[int, int], disparity: int = 3) -> np.ndarray:
    """An RGB frame of `size`=(w,h) holding `erp` [h,2h,3] as `layout`: mono, tb, sbs, flat, letterbox,
    dual_fisheye, vr180."""
    w, h = size
    other = np.roll(erp, disparity, axis=1)  # the second eye: a small horizontal disparity
    if layout == "mono":
        return cv2.resize(erp, (w, h), interpolation=cv2.INTER_AREA)
    if layout == "tb":
        return np.concatenate([cv2.resize(e, (w, h // 2), interpolation=cv2.INTER_AREA) for e in (erp, other)], 0)
    if layout == "sbs":
        return np.concatenate([cv2.resize(e, (w // 2, h), interpolation=cv2.INTER_AREA) for e in (erp, other)], 1)
    eh, ew = erp.shape[:2]
    if layout == "flat":  # a 100° window of the panorama: an ordinary video's field of view
        return cv2.resize(erp[eh // 5 : 4 * eh // 5, ew // 4 : ew // 4 + ew * 100 // 360], (w, h), interpolation=cv2.INTER_AREA)
    if layout == "letterbox":  # the 2:1 picture centred between black bars
        pic = cv2.resize(erp, (w, w // 2), interpolation=cv2.INTER_AREA)
        bar = np.zeros(((h - w // 2) // 2, w, 3), np.uint8)
        return np.concatenate([bar, pic, np.zeros((h - w // 2 - len(bar), w, 3), np.uint8)], 0)
    if layout == "dual_fisheye":  # a two-lens camera's raw output: front and back 190° equidistant circles
        side = w // 2
        yy, xx = np.mgrid[0:h, 0:side].astype(np.float32)
        r = np.hypot(xx - side / 2, yy - h / 2) / (min(side, h) / 2)  # 1 at the circle's edge
        theta = r * np.radians(95.0)  # angle from the optical axis
        phi = np.arctan2(yy - h / 2, xx - side / 2)
        x, y, z = np.sin(theta) * np.cos(phi), -np.sin(theta) * np.sin(phi), np.cos(theta)
        halves = []
        for sign in (1.0, -1.0):  # front, back
            lon = np.arctan2(sign * x, sign * z)
            lat = np.arcsin(np.clip(y, -1, 1))
            mx = ((lon / (2 * np.pi) + 0.5) * ew).astype(np.float32)
            my = ((0.5 - lat / np.pi) * eh).astype(np.float32)
            img = cv2.remap(erp, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
            img[r > 1.0] = 0
            halves.append(img)
        return np.concatenate(halves, 1)
    if layout == "vr180":  # the front hemisphere of each eye, side by side
        front = [e[:, ew // 4 : 3 * ew // 4] for e in (erp, other)]
        return np.concatenate([cv2.resize(e, (w // 2, h), interpolation=cv2.INTER_AREA) for e in front], 1)
    raise ValueError(layout)


# ---------------------------------------------------------------- box writer

def box(typ: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), typ) + payload


def full_box(typ: bytes, payload: bytes, version: int = 0) -> bytes:
    return box(typ, bytes([version, 0, 0, 0]) + payload)


def v2_boxes(stereo: str | None, projection: str = "equi", bounds: tuple[float, float, float, float] = (0, 0, 0, 0)) -> bytes:
    out = b""
    if stereo is not None:
        out += full_box(b"st3d", bytes([{"mono": 0, "top-bottom": 1, "left-right": 2}[stereo]]))
    svhd = full_box(b"svhd", b"dap test\x00")
    prhd = full_box(b"prhd", struct.pack(">3i", 0, 0, 0))
    if projection == "equi":
        proj_box = full_box(b"equi", struct.pack(">4I", *(int(round(b * 2**32)) for b in bounds)))
    elif projection == "cbmp":
        proj_box = full_box(b"cbmp", struct.pack(">2I", 0, 0))
    else:
        proj_box = full_box(b"mshp", b"\x00" * 8)
    return out + box(b"sv3d", svhd + box(b"proj", prhd + proj_box))


def v1_box(stereo: str | None, projection: str = "equirectangular", crop: tuple[int, int, int] | None = None) -> bytes:
    """crop = (full width, cropped width, left) in pixels."""
    tags = ["<GSpherical:Spherical>true</GSpherical:Spherical>", "<GSpherical:Stitched>true</GSpherical:Stitched>",
            "<GSpherical:StitchingSoftware>dap test</GSpherical:StitchingSoftware>",
            f"<GSpherical:ProjectionType>{projection}</GSpherical:ProjectionType>"]
    if stereo is not None:
        tags.append(f"<GSpherical:StereoMode>{stereo}</GSpherical:StereoMode>")
    if crop is not None:
        tags += [f"<GSpherical:FullPanoWidthPixels>{crop[0]}</GSpherical:FullPanoWidthPixels>",
                 f"<GSpherical:CroppedAreaImageWidthPixels>{crop[1]}</GSpherical:CroppedAreaImageWidthPixels>",
                 f"<GSpherical:CroppedAreaLeftPixels>{crop[2]}</GSpherical:CroppedAreaLeftPixels>"]
    xml = ('<?xml version="1.0"?><rdf:SphericalVideo xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
           'xmlns:GSpherical="http://ns.google.com/videos/1.0/spherical/">' + "".join(tags) + "</rdf:SphericalVideo>")
    return box(b"uuid", V1_UUID + xml.encode())


def _top_level(data: bytes) -> list[tuple[bytes, int, int]]:
    return [(t, s - 8, e) for t, s, e in _boxes(data)]  # (type, box start, box end); 32-bit headers


def _splice(data: bytes, chain: list[int], at: int, insert: bytes) -> bytes:
    """Insert bytes at `at`, growing the 32-bit size field of every box starting at `chain`."""
    out = bytearray(data[:at] + insert + data[at:])
    for start in chain:
        size = struct.unpack(">I", out[start : start + 4])[0]
        out[start : start + 4] = struct.pack(">I", size + len(insert))
    return bytes(out)


def _child(data: bytes, start: int, end: int, typ: bytes) -> tuple[int, int]:
    for t, s, e in _boxes(data, start, end):
        if t == typ:
            return s - 8, e
    raise AssertionError(f"no {typ!r} box")


def inject(path: Path, v2: bytes = b"", v1: bytes = b"") -> Path:
    """Add V2 boxes to the first video sample entry and/or a V1 uuid box to its trak, in place."""
    data = path.read_bytes()
    tops = _top_level(data)
    moov = next((s, e) for t, s, e in tops if t == b"moov")
    # OpenCV's muxer writes moov after mdat, so growing moov moves no media (no chunk offsets to fix)
    assert not any(t == b"mdat" and s > moov[0] for t, s, _ in tops), f"{path}: moov before mdat"
    trak = _child(data, moov[0] + 8, moov[1], b"trak")
    mdia = _child(data, trak[0] + 8, trak[1], b"mdia")
    minf = _child(data, mdia[0] + 8, mdia[1], b"minf")
    stbl = _child(data, minf[0] + 8, minf[1], b"stbl")
    stsd = _child(data, stbl[0] + 8, stbl[1], b"stsd")
    entry_start = stsd[0] + 16  # header(8) + FullBox(4) + entry_count(4)
    entry_end = entry_start + struct.unpack(">I", data[entry_start : entry_start + 4])[0]
    assert entry_end > entry_start + 8 + VISUAL_ENTRY_FIELDS
    if v2:
        data = _splice(data, [moov[0], trak[0], mdia[0], minf[0], stbl[0], stsd[0], entry_start], entry_end, v2)
    if v1:
        data = _splice(data, [moov[0], trak[0]], trak[1] + len(v2), v1)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path
