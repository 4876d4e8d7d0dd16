"""Real containers: spherical metadata (V2 `st3d`/`sv3d`, V1 `uuid` XML) read before any content
heuristic; mono / top-bottom / side-by-side ERP in 2:1 and 16:9 frames, each eye resampled to 2:1;
flat, VR180 and cubemap clips rejected with their own reason; `dap frames` and `web_frames` give the
same rows. Clips are re-encoded here from a real mono 360° video in ../shared (skipped without it)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from dap_model.config import VideoConfig
from dap_model.video.frames import collect_frames, extract_frames
from dap_model.video.layout import take_eye
from dap_model.video.spherical import SphericalMeta, read_spherical
from tests.spherical_clips import compose, inject, read_frames, v1_box, v2_boxes, write_mp4

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
REAL_CLIP = SHARED / "real" / "videos" / "vrview__richoh1_0_3.mp4"  # prison walk, mono ERP, hand at the nadir
needs_clip = pytest.mark.skipif(not REAL_CLIP.is_file(), reason="../shared/real/videos absent")

W169 = (512, 288)
W21 = (512, 256)


@pytest.fixture(scope="module")
def erps():
    fr = read_frames(REAL_CLIP, 4, (512, 256), step=25)
    assert len(fr) == 4
    return fr


def _clip(tmp_path, erps, name, layout, size, v2=b"", v1=b""):
    p = write_mp4(tmp_path / f"{name}.mp4", [compose(f, layout, size) for f in erps])
    return inject(p, v2=v2, v1=v1) if (v2 or v1) else p


def _run(path):
    s = VideoConfig(height=64, sample_every_s=0.25, dedup_threshold=0.0)
    frames, _ = extract_frames(path, s)
    return list(frames)


CASES = [
    # name, composed layout, frame size, v2 stereo, v1 stereo, expected layout
    ("mono_2to1", "mono", W21, None, None, "mono"),
    ("mono_16x9", "mono", W169, None, None, "mono"),
    ("tb_16x9", "tb", W169, None, None, "stereo_tb"),
    ("sbs_16x9", "sbs", W169, None, None, "stereo_sbs"),
    ("tb_2to1", "tb", W21, None, None, "stereo_tb"),
    ("mono_2to1_v2", "mono", W21, "mono", None, "mono"),
    ("mono_16x9_v1", "mono", W169, None, "mono", "mono"),
    ("tb_16x9_v2", "tb", W169, "top-bottom", None, "stereo_tb"),
    ("tb_16x9_v1", "tb", W169, None, "top-bottom", "stereo_tb"),
    ("sbs_16x9_v2", "sbs", W169, "left-right", None, "stereo_sbs"),
    ("tb_2to1_v1", "tb", W21, None, "top-bottom", "stereo_tb"),
    ("sbs_2to1_v2", "sbs", W21, "left-right", None, "stereo_sbs"),
    ("sbs_2to1_v1", "sbs", W21, None, "left-right", "stereo_sbs"),
]


@needs_clip
@pytest.mark.parametrize("name,layout,size,v2,v1,expected", CASES, ids=[c[0] for c in CASES])
def test_accepted_layouts(tmp_path, erps, name, layout, size, v2, v1, expected):
    path = _clip(tmp_path, erps, name, layout, size, v2_boxes(v2) if v2 else b"", v1_box(v1) if v1 else b"")
    meta = read_spherical(path)
    assert meta.spherical == bool(v2 or v1)
    recs = _run(path)
    assert len(recs) == 4
    assert {r.layout for r, _ in recs} == {expected}, [(r.layout, r.detail) for r, _ in recs]
    assert {r.layout_source for r, _ in recs} == {"metadata" if (v2 or v1) else "content"}
    kept = [(r, img) for r, img in recs if r.accepted]
    # a side-by-side pair in a 2:1 frame halves each eye's horizontal resolution (256 px here)
    assert len(kept) >= (2 if (layout, size) == ("sbs", W21) else 3), [(r.reason, r.detail) for r, _ in recs]
    for r, img in kept:
        assert img.shape == (64, 128, 3) and abs(r.tilt_deg) < 5
        # the right eye: the top / left one, i.e. the ERP itself (the second eye is shifted 3 px at 512)
        small = cv2.resize(erps[r.frame_index], (128, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
        assert np.abs(img.astype(np.float32) - small).mean() < 12.0


REJECTS = [
    ("flat_16x9", "flat", W169, b"", b"", "not_panoramic", "content"),
    ("letterboxed_16x9", "letterbox", W169, b"", b"", "letterboxed", "content"),
    ("dual_fisheye_2to1", "dual_fisheye", W21, b"", b"", "fisheye", "content"),
    ("vr180_content", "vr180", W21, b"", b"", "vr180_sbs", "content"),
    ("vr180_v2", "vr180", W21, v2_boxes("left-right", bounds=(0, 0, 0.25, 0.25)), b"", "vr180_sbs", "metadata"),
    ("vr180_v1", "vr180", W21, b"", v1_box("left-right", crop=(4096, 2048, 1024)), "vr180_sbs", "metadata"),
    ("cubemap_v2", "mono", W169, v2_boxes("mono", projection="cbmp"), b"", "cubemap", "metadata"),
    ("eac_mesh_v2", "mono", W169, v2_boxes(None, projection="mshp"), b"", "cubemap", "metadata"),
]


@needs_clip
@pytest.mark.parametrize("name,layout,size,v2,v1,reason,source", REJECTS, ids=[c[0] for c in REJECTS])
def test_rejected_layouts(tmp_path, erps, name, layout, size, v2, v1, reason, source):
    recs = _run(_clip(tmp_path, erps, name, layout, size, v2, v1))
    assert len(recs) == 4
    assert {r.reason for r, _ in recs} == {reason}, [(r.reason, r.detail) for r, _ in recs]
    assert {r.layout_source for r, _ in recs} == {source}
    assert all(img is None and r.detail for r, img in recs)


def test_spherical_metadata_reader(tmp_path):
    frames = [np.full((64, 128, 3), v, np.uint8) for v in (40, 200)]
    plain = write_mp4(tmp_path / "plain.mp4", frames)
    assert read_spherical(plain) == SphericalMeta()
    v2 = inject(write_mp4(tmp_path / "v2.mp4", frames), v2=v2_boxes("top-bottom", bounds=(0.1, 0.0, 0.0, 0.0)))
    m = read_spherical(v2)
    assert (m.version, m.projection, m.stereo) == ("v2", "equirectangular", "top-bottom")
    assert m.crop_top == pytest.approx(0.1, abs=1e-6) and m.horizontal_fov_deg == pytest.approx(360.0)
    both = inject(write_mp4(tmp_path / "both.mp4", frames), v2=v2_boxes("left-right"), v1=v1_box("top-bottom"))
    assert read_spherical(both).version == "v2" and read_spherical(both).stereo == "left-right"  # V2 wins
    v1 = inject(write_mp4(tmp_path / "v1.mp4", frames), v1=v1_box(None, crop=(4000, 2000, 1000)))
    m1 = read_spherical(v1)
    assert (m1.version, m1.projection, m1.stereo) == ("v1", "equirectangular", "")
    assert m1.horizontal_fov_deg == pytest.approx(180.0)
    not_mp4 = tmp_path / "x.mp4"
    not_mp4.write_bytes(b"\x00garbage" * 10)
    assert read_spherical(not_mp4) == SphericalMeta()
    cap = cv2.VideoCapture(str(both))  # the spliced file still decodes
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 2


def test_take_eye_resamples_anamorphic_to_2to1():
    f = np.zeros((288, 512, 3), np.uint8)
    assert take_eye(f, "mono").shape == (288, 576, 3)  # the larger side's resolution is kept
    assert take_eye(f, "stereo_tb").shape == (256, 512, 3)
    assert take_eye(f, "stereo_sbs").shape == (288, 576, 3)
    assert take_eye(np.zeros((256, 512, 3), np.uint8), "mono").shape == (256, 512, 3)


@needs_clip
def test_cli_frames_and_web_frames_share_rows(tmp_path, erps):
    """`dap frames` and the `web_frames` code path (`collect_frames`) give the same rows."""
    from dap_model.cli import main as cli_main

    path = _clip(tmp_path, erps, "tb", "tb", W169, v2_boxes("top-bottom"))
    out = tmp_path / "out"
    rc = cli_main(["frames", str(path), "--out", str(out), "--profile", "test", "--fps", "4",
                   "--set", "video.height=64", "--set", "video.dedup_threshold=0"])
    assert rc == 0
    cli = pd.read_parquet(out / "frames.parquet")
    from dap_model.config import load_config

    v = load_config("test", {"video.height": 64, "video.dedup_threshold": 0.0, "video.sample_every_s": 0.25}).video
    web, _ = collect_frames(path, v, "vid", "src", lambda key, rgb, rec: "shard-000000.tar")
    cols = ["frame_index", "time_s", "layout", "layout_source", "accepted", "reason", "detail", "tilt_deg",
            "valid_lat_top", "valid_lat_bottom"]
    pd.testing.assert_frame_equal(cli[cols].reset_index(drop=True), web[cols].reset_index(drop=True))
    assert set(cli.columns) == set(web.columns)
    assert cli["accepted"].sum() >= 3 and (out / cli.loc[cli["accepted"], "shard"].iloc[0]).is_file()


@needs_clip
@pytest.mark.parametrize("layout,size", [("mono", W21), ("tb", W169)], ids=["mono_2to1", "tb_16x9"])
def test_black_and_white_pole_caps_are_accepted_and_masked(tmp_path, erps, layout, size):
    """A rig that saw nothing at the poles: black zenith cap (10 % of the rows), white nadir patch
    (8 %). Not letterboxed, frames accepted, and the valid band excludes the caps."""
    capped = []
    for f in erps:
        c = f.copy()
        c[: int(0.10 * c.shape[0])] = 0
        c[c.shape[0] - int(0.08 * c.shape[0]) :] = 255
        capped.append(c)
    path = write_mp4(tmp_path / "caps.mp4", [compose(f, layout, size) for f in capped])
    recs = _run(path)
    assert {r.layout for r, _ in recs} == {"mono" if layout == "mono" else "stereo_tb"}, [r.detail for r, _ in recs]
    kept = [r for r, _ in recs if r.accepted]
    assert len(kept) >= 3, [(r.reason, r.detail) for r, _ in recs]
    for r in kept:
        assert 68.0 <= r.valid_lat_top <= 76.0, r.valid_lat_top  # cap edge at 90 - 18 = 72°
        assert -80.0 <= r.valid_lat_bottom <= -72.0, r.valid_lat_bottom  # at -90 + 14.4 = -75.6°
    plain = [r for r, _ in _run(_clip(tmp_path, erps, "plain", layout, size)) if r.accepted]
    assert plain and all(r.valid_lat_top > 85.0 and r.valid_lat_bottom < -85.0 for r in plain)


@needs_clip
def test_layout_voted_once_and_a_frame_whose_eyes_differ_rechecked(tmp_path, erps):
    """Without metadata the layout is the majority of the first frames' content: one flat frame
    opening a top-bottom clip does not change the others' layout; that frame's eyes do not match,
    so it is classified on its own and rejected."""
    flat = compose(erps[1], "flat", W169)
    frames = [compose(erps[0], "tb", W169), flat] + [compose(f, "tb", W169) for f in erps[1:]]
    recs = _run(write_mp4(tmp_path / "tb_with_flat.mp4", frames))
    assert len(recs) == 5
    assert [r.layout for r, _ in recs] == ["stereo_tb", "not_panoramic", "stereo_tb", "stereo_tb", "stereo_tb"], \
        [(r.layout, r.detail) for r, _ in recs]
    assert recs[1][0].reason == "not_panoramic" and recs[1][1] is None
    assert {r.layout_source for r, _ in recs} == {"content"}
    assert sum(r.accepted for r, _ in recs) >= 3


def test_vote_majority_and_its_detail():
    from dap_model.video.layout import Layout, vote

    flat = Layout("not_panoramic", False, "aspect 1.78:1")
    assert vote([flat, Layout("mono", True), Layout("mono", True)]).name == "mono"
    v = vote([flat, flat, Layout("mono", True)])
    assert (v.name, v.ok) == ("not_panoramic", False) and "2 of 3 vote frames" in v.detail
    assert vote([Layout("stereo_tb", True), Layout("mono", True)]).name == "stereo_tb"  # tie: the earliest
    with pytest.raises(ValueError):
        vote([])
