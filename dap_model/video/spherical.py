"""Spherical-video metadata of an MP4/MOV file: Google's Spherical Video V2 boxes (`st3d` stereo
mode, `sv3d` → `proj` → `equi` / `cbmp` / `mshp` projection) in the first video sample entry, and
Spherical Video V1 (the RDF/XML in the `uuid` box ffcc8263-f855-4a93-8814-587a02521fdd of the
video `trak`: `ProjectionType`, `StereoMode`, cropped area).

Only the box tree under `moov` is read (seeking over `mdat`), so the cost does not depend on the
video's length. OpenCV's decoder does not expose these boxes and the bundled FFmpeg builds report
them only as opaque side data, so the boxes are parsed here from the published layouts
(github.com/google/spatial-media, docs/spherical-video-v2-rfc.md and spherical-video-rfc.md)."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

V1_UUID = bytes.fromhex("ffcc8263f8554a938814587a02521fdd")
CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"sv3d", b"proj", b"edts"}
VISUAL_ENTRY_FIELDS = 78  # after the box header: reserved(6) + data_reference_index(2) + visual fields(70)
STEREO_V2 = {0: "mono", 1: "top-bottom", 2: "left-right"}
MAX_MOOV = 64 << 20  # a moov larger than this is not read (metadata is then unknown)


@dataclass(frozen=True)
class SphericalMeta:
    version: str = ""  # "v2" | "v1" | "" (no spherical metadata)
    projection: str = ""  # "equirectangular" | "cubemap" | "mesh" | "" (unknown)
    stereo: str = ""  # "mono" | "top-bottom" | "left-right" | "" (not stated)
    # Part of the sphere the frame covers, as fractions cut from each side (V2 `equi` bounds,
    # V1 cropped area): 0 everywhere for a full 360°×180° ERP.
    crop_top: float = 0.0
    crop_bottom: float = 0.0
    crop_left: float = 0.0
    crop_right: float = 0.0

    @property
    def spherical(self) -> bool:
        return bool(self.version)

    @property
    def horizontal_fov_deg(self) -> float:
        return 360.0 * (1.0 - self.crop_left - self.crop_right)

    def describe(self) -> str:
        crop = ""
        if any((self.crop_top, self.crop_bottom, self.crop_left, self.crop_right)):
            crop = f", covers {self.horizontal_fov_deg:.0f}° of longitude"
        return f"spherical {self.version}: {self.projection or 'unknown'} projection, stereo {self.stereo or 'not stated'}{crop}"


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    """(type, payload_start, payload_end) of each box in data[start:end]."""
    end = len(data) if end is None else end
    i = start
    while i + 8 <= end:
        size, typ = struct.unpack(">I4s", data[i : i + 8])
        hdr = 8
        if size == 1:
            if i + 16 > end:
                return
            size = struct.unpack(">Q", data[i + 8 : i + 16])[0]
            hdr = 16
        elif size == 0:
            size = end - i
        if size < hdr or i + size > end:
            return
        yield typ, i + hdr, i + size
        i += size


def read_moov(path: str | Path) -> bytes | None:
    """The payload of the top-level `moov` box, or None (not an ISO-BMFF file, no/oversized moov)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        total = f.tell()
        pos = 0
        while pos + 8 <= total:
            f.seek(pos)
            head = f.read(16)
            if len(head) < 8:
                return None
            size, typ = struct.unpack(">I4s", head[:8])
            hdr = 8
            if size == 1:
                if len(head) < 16:
                    return None
                size, hdr = struct.unpack(">Q", head[8:16])[0], 16
            elif size == 0:
                size = total - pos
            if size < hdr or not re.fullmatch(rb"[\x20-\x7e]{4}", typ):
                return None
            if typ == b"moov":
                if size - hdr > MAX_MOOV:
                    return None
                f.seek(pos + hdr)
                return f.read(size - hdr)
            pos += size
    return None


def _find(data: bytes, start: int, end: int, typ: bytes) -> tuple[int, int] | None:
    for t, s, e in _boxes(data, start, end):
        if t == typ:
            return s, e
    return None


def _is_video_trak(moov: bytes, s: int, e: int) -> bool:
    mdia = _find(moov, s, e, b"mdia")
    hdlr = mdia and _find(moov, *mdia, b"hdlr")
    return bool(hdlr) and moov[hdlr[0] + 8 : hdlr[0] + 12] == b"vide"  # FullBox(4) + pre_defined(4) + handler_type


def _v2(moov: bytes, s: int, e: int) -> SphericalMeta | None:
    path = [b"mdia", b"minf", b"stbl", b"stsd"]
    span: tuple[int, int] | None = (s, e)
    for typ in path:
        span = _find(moov, *span, typ) if span else None
    if not span:
        return None
    entries = list(_boxes(moov, span[0] + 8, span[1]))  # FullBox(4) + entry_count(4)
    if not entries:
        return None
    _, es, ee = entries[0]
    stereo, projection, crop = "", "", (0.0, 0.0, 0.0, 0.0)
    found = False
    for t, cs, ce in _boxes(moov, es + VISUAL_ENTRY_FIELDS, ee):
        if t == b"st3d" and ce - cs >= 5:
            found = True
            stereo = STEREO_V2.get(moov[cs + 4], f"code {moov[cs + 4]}")
        elif t == b"sv3d":
            found = True
            proj = _find(moov, cs, ce, b"proj")
            for pt, ps, pe in _boxes(moov, *proj) if proj else ():
                if pt == b"equi" and pe - ps >= 20:
                    top, bottom, left, right = (v / 2**32 for v in struct.unpack(">4I", moov[ps + 4 : ps + 20]))
                    projection, crop = "equirectangular", (top, bottom, left, right)
                elif pt == b"cbmp":
                    projection = "cubemap"
                elif pt == b"mshp":
                    projection = "mesh"
    if not found:
        return None
    return SphericalMeta("v2", projection, stereo, *crop)


def _xml_value(xml: str, tag: str) -> str:
    m = re.search(rf"<GSpherical:{tag}>\s*([^<]*?)\s*</GSpherical:{tag}>", xml)
    return m.group(1) if m else ""


def _v1(moov: bytes, s: int, e: int) -> SphericalMeta | None:
    for t, bs, be in _boxes(moov, s, e):
        if t == b"uuid" and moov[bs : bs + 16] == V1_UUID:
            xml = moov[bs + 16 : be].decode("utf-8", "replace")
            if _xml_value(xml, "Spherical").lower() != "true":
                return None
            proj = _xml_value(xml, "ProjectionType").lower()
            stereo = _xml_value(xml, "StereoMode").lower()

            def num(tag: str) -> float:
                try:
                    return float(_xml_value(xml, tag))
                except ValueError:
                    return float("nan")

            full_w, crop_w, left = num("FullPanoWidthPixels"), num("CroppedAreaImageWidthPixels"), num("CroppedAreaLeftPixels")
            full_h, crop_h, top = num("FullPanoHeightPixels"), num("CroppedAreaImageHeightPixels"), num("CroppedAreaTopPixels")
            cl = cr = ct = cb = 0.0
            if full_w > 0 and crop_w > 0 and crop_w < full_w:
                cl = (left if left == left else 0.0) / full_w
                cr = max(0.0, 1.0 - cl - crop_w / full_w)
            if full_h > 0 and crop_h > 0 and crop_h < full_h:
                ct = (top if top == top else 0.0) / full_h
                cb = max(0.0, 1.0 - ct - crop_h / full_h)
            return SphericalMeta("v1", proj, stereo, ct, cb, cl, cr)
    return None


def read_spherical(path: str | Path) -> SphericalMeta:
    """Spherical metadata of the first video track (V2 preferred over V1); empty if none."""
    try:
        moov = read_moov(path)
    except OSError:
        return SphericalMeta()
    if moov is None:
        return SphericalMeta()
    for t, s, e in _boxes(moov):
        if t == b"trak" and _is_video_trak(moov, s, e):
            return _v2(moov, s, e) or _v1(moov, s, e) or SphericalMeta()
    return SphericalMeta()
