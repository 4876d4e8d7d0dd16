"""Frames from a panoramic video: time sampling (grab() for skipped frames, retrieve() only for
sampled ones), the layout decided once per video (metadata, else a vote over a few frames at the
start) and eye extraction, duplicate dropping (grey 32x16 thumbnail vs the last kept frame),
horizon validation on the eye at its working size, resize to the profile's size.

`extract_frames` yields one `FrameRecord` per sampled frame with the frame itself (RGB uint8
[h,2h,3]) when accepted, so callers decide where accepted frames go (shards, PNG files)."""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pandas as pd
import pandera.pandas as pa

from dap_model.errors import InputError
from dap_model.video.horizon import check_horizon
from dap_model.video.layout import (
    ACCEPTED_LAYOUTS, CONTENT, METADATA, VOTE_FRAMES, VOTE_SPACING_S, Layout, cheap_thumbnail, detect_layout, eye_view, eyes_match,
    layout_from_metadata, take_eye, vote,
)
from dap_model.video.spherical import SphericalMeta, read_spherical
from dap_model.schema import validate_table

REASONS = (
    "", "duplicate", "dark", "blank", "frozen", "not_2to1", "no_seam", "no_poles", "no_structure", "tilted",
    "vr180_sbs", "vr180", "fisheye", "cubemap", "letterboxed", "not_panoramic", "unreadable",
)

FRAMES_SCHEMA = pa.DataFrameSchema(
    {
        "video_id": pa.Column(str, nullable=False),
        "source": pa.Column(str, nullable=False),
        "frame_index": pa.Column(int, pa.Check.ge(0)),
        "time_s": pa.Column(float, pa.Check.ge(0)),
        "layout": pa.Column(str, nullable=False),
        "layout_source": pa.Column(str, pa.Check.isin([METADATA, CONTENT])),
        "accepted": pa.Column(bool),
        "reason": pa.Column(str, pa.Check.isin(REASONS)),
        "detail": pa.Column(str),
        "tilt_deg": pa.Column(float, nullable=True),
        "valid_lat_top": pa.Column(float, pa.Check.in_range(-90, 90), nullable=True),
        "valid_lat_bottom": pa.Column(float, pa.Check.in_range(-90, 90), nullable=True),
        "shard": pa.Column(str, nullable=True),
        "key": pa.Column(str, nullable=True),
    },
    checks=[
        pa.Check(lambda df: (df["accepted"] == (df["reason"] == "")).all(), error="accepted iff reason is empty"),
        pa.Check(lambda df: (df["accepted"] == df["key"].notna()).all(), error="accepted frames have a key"),
    ],
    strict=True,
    ordered=False,
    unique=["video_id", "frame_index"],
    name="web frames manifest",
)


@dataclass
class FrameRecord:
    frame_index: int
    time_s: float
    layout: str
    accepted: bool
    reason: str
    detail: str
    tilt_deg: float
    layout_source: str = CONTENT  # where the layout decision came from: metadata | content
    # latitude band (degrees) outside the pole caps (black, white or blurred fill where the rig saw
    # nothing); nan for rejected frames
    valid_lat_top: float = math.nan
    valid_lat_bottom: float = math.nan


@dataclass
class VideoInfo:
    width: int
    height: int
    fps: float
    frames_expected: int
    frames_decoded: int = 0
    limited: bool = False  # stopped at max_frames_per_video


def open_video(path: str | Path, name: str | None = None) -> tuple[cv2.VideoCapture, VideoInfo]:
    name = name or str(path)
    if not Path(path).is_file():
        raise InputError(f"{name}: no such file")
    if Path(path).stat().st_size == 0:
        raise InputError(f"{name}: empty file (0 bytes)")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"{name}: not a decodable video (OpenCV/FFmpeg cannot open it)")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not math.isfinite(fps) or fps <= 0:
        cap.release()
        raise InputError(f"{name}: video reports no frame rate")
    info = VideoInfo(
        int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), fps,
        int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
    )
    return cap, info


_END = object()  # end of the decoded stream in `sample_frames`' queue


def sample_frames(
    path: str | Path, every_s: float, max_frames: int = 0, name: str | None = None, info_out: list | None = None,
    prefetch: int = 4,
) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame_index, time_s, BGR frame [H,W,3]) every `every_s` seconds; grab() skips the rest.

    A decoder thread reads ahead up to `prefetch` sampled frames (OpenCV releases the GIL while
    it decodes, so decoding overlaps the caller's work on earlier frames); frames come in order
    and a decoder error is raised here. After the loop `info_out[0]` (if given) is the VideoInfo
    with `frames_decoded` filled in."""
    cap, info = open_video(path, name)
    if info_out is not None:
        info_out.append(info)
    step = max(1, int(round(every_s * info.fps)))
    q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def decode() -> None:
        i, taken, end = 0, 0, _END
        try:
            while not stop.is_set() and cap.grab():
                if i % step == 0:
                    ok, frame = cap.retrieve()
                    if ok and frame is not None:
                        if not put((i, i / info.fps, frame)):
                            break
                        taken += 1
                        if max_frames and taken >= max_frames:
                            i += 1
                            info.limited = True
                            break
                i += 1
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            end = e
        finally:
            info.frames_decoded = i
            cap.release()
            put(end)

    thread = threading.Thread(target=decode, name=f"decode {name or path}", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class FrameValidator:
    """Per-video state (the video's layout, the last kept thumbnail, the previous sampled frame)
    and the per-frame decision.

    The layout is decided once per video: from the spherical metadata when it states one, else
    by a majority vote of `detect_layout` over `VOTE_FRAMES` sampled frames at least
    `VOTE_SPACING_S` apart at the start of the video (`pending` holds the frames sampled until
    then, halved down to less than twice `preview_width` wide with their aspect kept). Each frame then costs a cheap
    thumbnail (duplicates stop there) and, for a new frame, one area resampling of its eye to the
    working size, the horizon check and the resize to the stored size."""

    def __init__(self, settings, meta: SphericalMeta | None = None) -> None:
        self.s = settings
        self.meta = meta or SphericalMeta()
        self.eye_height = max(settings.height, settings.horizon_height)  # working size of the eye
        self.layout: Layout | None = layout_from_metadata(self.meta, 0, 0)
        self.votes: list[Layout] = []
        self.last_vote_t = -math.inf
        # (preview BGR [h,w,3], index, time_s, {accepted layout: cheap thumbnail of its eye at full size})
        self.pending: list[tuple[np.ndarray, int, float, dict]] = []
        self.last_kept: np.ndarray | None = None  # cheap thumbnail of the last kept frame
        self.prev: tuple[np.ndarray, str] | None = None  # previous sampled frame (BGR) and its layout
        self.prev_eye: np.ndarray | None = None  # its eye (RGB, working size), once computed

    @property
    def preview_width(self) -> int:
        """Width of the frames kept until the layout is decided: any eye of any accepted layout
        still has the working size (a side-by-side eye is half the width)."""
        return max(4 * self.eye_height, 512)

    def preview(self, bgr: np.ndarray) -> np.ndarray:
        """The frame [H,W,3] halved (2x2 area averages, aspect kept) while at least twice
        `preview_width` wide: the cheapest shrink (~0.4 ms from 1920x960)."""
        while bgr.shape[1] >= 2 * self.preview_width and bgr.shape[0] >= 2:
            h2, w2 = bgr.shape[0] // 2, bgr.shape[1] // 2
            bgr = cv2.resize(bgr[: 2 * h2, : 2 * w2], (w2, h2), interpolation=cv2.INTER_AREA)
        return bgr

    def detect(self, bgr: np.ndarray) -> Layout:
        s = self.s
        return detect_layout(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), s.stereo_min_similarity, s.aspect_tolerance, s.seam_tolerance)

    def eye(self, bgr: np.ndarray, layout: str) -> np.ndarray:
        """The eye of a BGR frame as RGB [h,2h,3] at the working size (or the eye's own height,
        the larger of its stored height and half its width, when that is smaller)."""
        vh, vw = eye_view(bgr, layout).shape[:2]
        return cv2.cvtColor(take_eye(bgr, layout, min(self.eye_height, max(vw // 2, vh))), cv2.COLOR_BGR2RGB)

    def feed(self, bgr: np.ndarray, index: int, time_s: float) -> list[tuple[FrameRecord, np.ndarray | None]]:
        """Take one sampled BGR frame [H,W,3]; the records of the frames that are now decided
        (none while the layout vote is open, then the held frames at once)."""
        if self.layout is not None:
            return [self(bgr, index, time_s)]
        # thumbnails from the full frame, as for every later frame (duplicates are judged against them)
        thumbs = {name: cheap_thumbnail(eye_view(bgr, name)) for name in ACCEPTED_LAYOUTS}
        self.pending.append((self.preview(bgr), index, time_s, thumbs))
        if time_s >= self.last_vote_t + VOTE_SPACING_S - 1e-9:
            self.votes.append(self.detect(self.pending[-1][0]))
            self.last_vote_t = time_s
        return self.flush() if len(self.votes) >= VOTE_FRAMES else []

    def flush(self) -> list[tuple[FrameRecord, np.ndarray | None]]:
        """Decide the layout from the votes so far and process the held frames."""
        if self.layout is None and self.votes:
            self.layout = vote(self.votes)
        held, self.pending = self.pending, []
        return [self(f, i, t, thumbs) for f, i, t, thumbs in held]

    def __call__(
        self, bgr: np.ndarray, index: int, time_s: float, thumbs: dict | None = None
    ) -> tuple[FrameRecord, np.ndarray | None]:
        """One BGR frame [H,W,3] (full size, or a held preview with `thumbs`, the thumbnails of
        its full-size eyes) under the decided layout."""
        s, lay = self.s, self.layout
        if lay.ok and lay.source == CONTENT and not eyes_match(bgr, lay.name, s.stereo_min_similarity):
            lay = self.detect(self.preview(bgr))  # a stereo frame whose eyes stopped matching: on its own
        prev, self.prev = self.prev, None

        def rec(accepted: bool, reason: str, detail: str, tilt: float, band=(math.nan, math.nan)) -> FrameRecord:
            return FrameRecord(index, time_s, lay.name, accepted, reason, detail, tilt, lay.source, *band)

        if not lay.ok:
            self.prev_eye = None
            return rec(False, lay.name, lay.detail, math.nan), None
        self.prev, prev_eye, self.prev_eye = (bgr, lay.name), self.prev_eye, None
        thumb = thumbs[lay.name] if thumbs else cheap_thumbnail(eye_view(bgr, lay.name))
        if self.last_kept is not None and s.dedup_threshold > 0:
            diff = float(np.abs(thumb - self.last_kept).mean())
            if diff < s.dedup_threshold:
                return rec(False, "duplicate", f"differs from the last kept frame by {diff:.2f} < {s.dedup_threshold}", math.nan), None
        eye = self.prev_eye = self.eye(bgr, lay.name)  # [eh,2eh,3]
        if prev_eye is None and prev is not None:  # the previous frame was a duplicate: its eye now
            prev_eye = self.eye(*prev)
        res = check_horizon(eye, s.max_tilt_deg, settings=s, prev=prev_eye)
        if not res.ok:
            return rec(False, res.reason, res.detail, res.tilt_deg), None
        self.last_kept = thumb
        out = eye if eye.shape[0] == s.height else cv2.resize(eye, (2 * s.height, s.height), interpolation=cv2.INTER_AREA)
        return rec(True, "", "", res.tilt_deg, valid_band(eye, s.cap_max_std)), np.ascontiguousarray(out)


def valid_band(eye: np.ndarray, cap_max_std: float) -> tuple[float, float]:
    """(top, bottom) latitude in degrees of the band outside the pole caps of an ERP [h,2h,3]:
    from each pole, the rows whose grey level varies less than `cap_max_std` along the row after
    a light blur across rows (a black or white fill, or a blur patch) are cap rows."""
    g = cv2.cvtColor(eye, cv2.COLOR_RGB2GRAY).astype(np.float32)  # [h,w]
    h = g.shape[0]
    g = cv2.resize(g, (2 * min(h, 128), min(h, 128)), interpolation=cv2.INTER_AREA) if h > 128 else g
    hh = g.shape[0]
    flat = g.std(axis=1) < cap_max_std  # [hh]
    top = int(np.argmin(flat)) if not flat.all() else hh
    bottom = int(np.argmin(flat[::-1])) if not flat.all() else hh
    if top + bottom >= hh:
        return math.nan, math.nan
    return 90.0 - 180.0 * top / hh, -90.0 + 180.0 * bottom / hh


def collect_frames(path: str | Path, settings, video_id: str, source: str, sink) -> tuple[pd.DataFrame, VideoInfo]:
    """The frames manifest of one video (validated) and its VideoInfo; each accepted frame goes
    to `sink(key, rgb [h,2h,3], record) -> shard` (where it was written). The one code path of
    `dap frames` and the `web_frames` asset."""
    frames, info = extract_frames(path, settings, source)
    rows = []
    for rec, rgb in frames:
        shard = key = None
        if rgb is not None:
            key = f"{video_id}_{rec.frame_index:06d}"
            shard = sink(key, rgb, rec)
        rows.append(record_row(video_id, source, rec, shard, key))
    check_complete(info[0], source)
    return validate_frames_manifest(records_frame(rows), f"frames manifest of {video_id}"), info[0]


def extract_frames(path: str | Path, settings, name: str | None = None) -> tuple[Iterator[tuple[FrameRecord, np.ndarray | None]], list]:
    """Iterator of (record, rgb [h,2h,3] or None) for every sampled frame, and a list that holds
    the VideoInfo once iteration has started."""
    info: list = []
    validate = FrameValidator(settings, read_spherical(path) if Path(path).is_file() else None)

    def gen():
        for index, t, bgr in sample_frames(path, settings.sample_every_s, settings.max_frames_per_video, name, info):
            yield from validate.feed(bgr, index, t)
        yield from validate.flush()

    return gen(), info


def check_complete(info: VideoInfo, name: str) -> None:
    """Raise InputError when the decoder stopped well before the container's frame count."""
    if not info.limited and info.frames_expected > 0 and info.frames_decoded < 0.9 * info.frames_expected - 1:
        raise InputError(
            f"{name}: truncated video: decoded {info.frames_decoded} of {info.frames_expected} frames"
        )
    if info.frames_decoded == 0:
        raise InputError(f"{name}: no frame could be decoded")


def records_frame(rows: list[dict]) -> pd.DataFrame:
    cols = list(FRAMES_SCHEMA.columns)
    df = pd.DataFrame(rows, columns=cols)
    if df.empty:
        df = df.astype({"frame_index": int, "time_s": float, "accepted": bool, "tilt_deg": float,
                        "valid_lat_top": float, "valid_lat_bottom": float})
    df["frame_index"] = df["frame_index"].astype(int)
    df["time_s"] = df["time_s"].astype(float)
    for c in ("tilt_deg", "valid_lat_top", "valid_lat_bottom"):
        df[c] = df[c].astype(float)
    df["accepted"] = df["accepted"].astype(bool)
    for c in ("shard", "key"):
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


def validate_frames_manifest(df: pd.DataFrame, name: str = "frames manifest") -> pd.DataFrame:
    return validate_table(FRAMES_SCHEMA, df, name)


def record_row(video_id: str, source: str, rec: FrameRecord, shard: str | None, key: str | None) -> dict:
    d = asdict(rec)
    d.update(video_id=video_id, source=source, shard=shard, key=key)
    return d
