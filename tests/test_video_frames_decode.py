"""The decode-ahead thread of `sample_frames`: the same frames, in order, as a plain
grab()/retrieve() loop, hence the same frames-manifest rows from `extract_frames`; a decoder
error reaches the caller; stopping early ends the thread. Real clips from ../shared (skipped
without it)."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from dap_model.config import VideoConfig
from dap_model.video import frames as frames_mod
from dap_model.video.frames import FrameValidator, extract_frames, sample_frames
from dap_model.video.spherical import read_spherical

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
FIXTURE = SHARED / "fixtures" / "gvr_testRoom1_1920Mono.mp4"
REAL_CLIP = SHARED / "real" / "videos" / "Valiant360__overpass-clip.mp4"
needs_fixture = pytest.mark.skipif(not FIXTURE.is_file(), reason="../shared/fixtures absent")


def plain_loop(path: Path, every_s: float, max_frames: int = 0) -> list[tuple[int, float, np.ndarray]]:
    """The frames a single-threaded grab()/retrieve() loop samples."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    step = max(1, int(round(every_s * fps)))
    out, i = [], 0
    while cap.grab():
        if i % step == 0:
            ok, f = cap.retrieve()
            if ok:
                out.append((i, i / fps, f))
                if max_frames and len(out) >= max_frames:
                    break
        i += 1
    cap.release()
    return out


def reference_rows(path: Path, s: VideoConfig) -> list[tuple]:
    """Rows of a FrameValidator fed by the plain loop (no decode thread)."""
    v = FrameValidator(s, read_spherical(path))
    recs = [r for i, t, f in plain_loop(path, s.sample_every_s, s.max_frames_per_video) for r in v.feed(f, i, t)]
    return [_row(r, rgb) for r, rgb in recs + v.flush()]


def _row(rec, rgb) -> tuple:
    nan = lambda x: None if math.isnan(x) else x  # noqa: E731 - nan != nan
    return (rec.frame_index, rec.time_s, rec.layout, rec.accepted, rec.reason, rec.detail, nan(rec.tilt_deg),
            nan(rec.valid_lat_top), nan(rec.valid_lat_bottom), None if rgb is None else rgb.tobytes())


@needs_fixture
@pytest.mark.parametrize(("every_s", "max_frames"), [(1 / 30, 0), (0.25, 0), (0.1, 7)])
def test_sampled_frames_match_a_plain_decode_loop(every_s, max_frames):
    info: list = []
    got = list(sample_frames(FIXTURE, every_s, max_frames, info_out=info, prefetch=2))
    ref = plain_loop(FIXTURE, every_s, max_frames)
    assert [(i, t) for i, t, _ in got] == [(i, t) for i, t, _ in ref]
    assert all(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(got, ref))
    assert info[0].limited == bool(max_frames)
    assert info[0].frames_decoded == (ref[-1][0] + 1 if max_frames else 360)


@pytest.mark.parametrize("path", [
    pytest.param(FIXTURE, marks=needs_fixture),
    pytest.param(REAL_CLIP, marks=pytest.mark.skipif(not REAL_CLIP.is_file(), reason="../shared/real absent")),
])
def test_every_frame_rows_match_the_sequential_path(path):
    s = VideoConfig(height=128, sample_every_s=1 / 30)
    frames, _ = extract_frames(path, s)
    got = [_row(r, rgb) for r, rgb in frames]
    assert len(got) >= 120 and any(r[3] for r in got)
    assert got == reference_rows(path, s)


@needs_fixture
def test_stopping_early_ends_the_decoder_thread():
    gen = sample_frames(FIXTURE, 1 / 30, prefetch=1)
    next(gen)
    gen.close()
    assert not any(t.name.startswith("decode ") and t.is_alive() for t in threading.enumerate())


@needs_fixture
def test_a_decoder_error_reaches_the_caller(monkeypatch):
    real = cv2.VideoCapture

    class Failing:
        def __init__(self, path):
            self.cap, self.n = real(path), 0

        def grab(self):
            self.n += 1
            if self.n > 5:
                raise cv2.error("decoder broke")
            return self.cap.grab()

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(frames_mod.cv2, "VideoCapture", Failing)
    got = []
    with pytest.raises(cv2.error, match="decoder broke"):
        for item in sample_frames(FIXTURE, 1 / 30):
            got.append(item[0])
    assert got == [0, 1, 2, 3, 4]
