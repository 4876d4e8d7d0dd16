"""Horizon check, layout detection and frame sampling on the real ERP fixture video."""

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dap_model.config import VideoConfig
from dap_model.geometry import rotate_erp, rotation_matrix
from dap_model.video import check_horizon
from dap_model.video.frames import extract_frames
from dap_model.video.horizon import seam_ratio
from dap_model.video.layout import detect_layout

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "gvr_testRoom1_1920Mono.mp4"
needs_fixture = pytest.mark.skipif(not FIXTURE.is_file(), reason=f"fixture video missing: {FIXTURE} (../shared beside the repo)")
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real" / "unlabeled"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real panoramas missing: {REAL} (../shared beside the repo)")
NOT_UPRIGHT = "outdoor/vrview__christ-redeemer.jpg"  # camera rolled ~8° (evidence: benchmarks/bench_video.NOT_UPRIGHT)


def _fixture_frames(every: int = 60, size=(1024, 512)) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(FIXTURE))
    out, i = [], 0
    while cap.grab():
        if i % every == 0:
            _, f = cap.retrieve()
            out.append(cv2.cvtColor(cv2.resize(f, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
        i += 1
    return out


def _rotate(rgb: np.ndarray, r: torch.Tensor) -> np.ndarray:
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()  # [1,3,H,W]
    y = rotate_erp(x, r.float())
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


@pytest.mark.slow
@needs_fixture
def test_upright_accepted_tilted_rejected_with_tilt_estimate():
    frames = _fixture_frames()
    rng = np.random.default_rng(0)
    up = [check_horizon(f) for f in frames]
    assert sum(r.ok for r in up) / len(up) >= 0.95, [r.reason for r in up]
    assert all(abs(r.tilt_deg) < 2.0 for r in up)
    errs, rejected, n = [], 0, 0
    for f in frames:
        for _ in range(2):
            roll, pitch = (rng.uniform(8, 30) * rng.choice([-1, 1]) for _ in range(2))
            if rng.random() < 0.5:
                roll, pitch = (roll, 0.0) if rng.random() < 0.5 else (0.0, pitch)
            r = rotation_matrix(rng.uniform(-math.pi, math.pi), math.radians(pitch), math.radians(roll), dtype=torch.float64)
            true = math.degrees(math.acos(float(r[1, 1])))
            res = check_horizon(_rotate(f, r))
            n += 1
            rejected += not res.ok
            errs.append(abs(res.tilt_deg - true))
    assert rejected / n >= 0.90
    assert np.median(errs) < 3.0, errs


@needs_fixture
def test_check_horizon_from_several_threads_equals_serial():
    from concurrent.futures import ThreadPoolExecutor

    frames = _fixture_frames(every=90, size=(256, 128)) * 3
    serial = [(r.ok, r.reason, r.tilt_deg) for r in map(check_horizon, frames)]
    with ThreadPoolExecutor(4) as pool:
        threaded = [(r.ok, r.reason, r.tilt_deg) for r in pool.map(check_horizon, frames)]
    assert threaded == serial


@needs_fixture
def test_non_panoramic_blank_dark_frozen_rejected():
    f = _fixture_frames(every=400)[0]
    assert check_horizon(f).ok
    # a perspective-like crop stretched to 2:1 (the fixture is a grid room: a crop whose two edges
    # cut the same grid cells meets itself like a 360° seam, so this one includes the box at x 0-80)
    crop = cv2.resize(f[100:400, 0:600], (1024, 512))
    assert check_horizon(crop).reason in ("no_seam", "no_poles")
    assert check_horizon(np.full_like(f, 128)).reason == "blank"
    assert check_horizon((f // 40).astype(np.uint8)).reason == "dark"
    assert check_horizon(f, prev=f.copy()).reason == "frozen"
    assert check_horizon(f[:, :700]).reason == "not_2to1"
    with pytest.raises(Exception, match="uint8"):
        check_horizon(f.astype(np.float32))


@needs_fixture
def test_layouts():
    f = _fixture_frames(every=400, size=(512, 256))[0]
    s = VideoConfig()
    lay = lambda x: detect_layout(x, s.stereo_min_similarity, s.aspect_tolerance, s.seam_tolerance).name  # noqa: E731
    assert lay(f) == "mono"
    assert lay(np.concatenate([f, np.roll(f, 3, axis=1)], 0)) == "stereo_tb"
    assert lay(np.concatenate([f, np.roll(f, 4, axis=1)], 1)) == "stereo_sbs"
    # VR180 and letterboxing: tests/test_video_containers.py (on a real clip; this CG room repeats
    # every 180°, so two 180° halves of it join in the middle as a 360° room does)
    other = np.random.default_rng(0).integers(0, 255, (256, 512, 3), dtype=np.uint8)
    assert lay(np.concatenate([f, other], 1)) == "not_panoramic"


@needs_fixture
def test_fixture_video_yields_upright_frames_and_drops_duplicates():
    s = VideoConfig(height=64, sample_every_s=0.5)
    frames, info = extract_frames(FIXTURE, s)
    recs = list(frames)
    assert len(recs) == 24 and info[0].frames_decoded == 360
    kept = [(r, img) for r, img in recs if r.accepted]
    assert 1 <= len(kept) <= 3  # a static camera: near-duplicates dropped
    assert all(img.shape == (64, 128, 3) and abs(r.tilt_deg) < 2 for r, img in kept)
    assert {r.reason for r, _ in recs} <= {"", "duplicate"}


# Held-out simulator seeds: the horizon check's constants were tuned on seeds 1-20 (and the
# benchmark reports seeds 300-314); these seeds were used for nothing else.
HELD_OUT_SEEDS = (500, 501, 502, 503, 504, 505)


@pytest.fixture(scope="module")
def generated_panoramas():
    """Web-style simulator renders at 128 px: (upright [n,128,256,3], tilted [n,...], true tilt [n] deg).

    Each tilted frame is rendered from the same spot with the camera rolled/pitched by 8-30°
    (and a random yaw), so it carries the simulator's own noise and compression, not a resampling."""
    from dap_model.sim import render, render_sequence

    torch.set_num_threads(1)
    rng = np.random.default_rng(7)
    up, tilted, truth = [], [], []
    for seed in HELD_OUT_SEEDS:
        for kind in ("rooms", "city", "corridor", "rural"):
            scene, frames = render_sequence(kind, seed, 1, 128, style="web")
            up.append(frames[0].rgb)
            roll, pitch = (rng.uniform(8, 30) * rng.choice([-1, 1]) for _ in range(2))
            if rng.random() < 0.5:
                roll, pitch = (roll, 0.0) if rng.random() < 0.5 else (0.0, pitch)
            r = rotation_matrix(rng.uniform(-math.pi, math.pi), math.radians(pitch), math.radians(roll), dtype=torch.float64)
            rgb, _ = render(scene, frames[0].position, r.numpy(), 128, "web", seed=7)
            tilted.append(rgb)
            truth.append(math.degrees(math.acos(float(r[1, 1]))))
    return up, tilted, np.array(truth)


@pytest.mark.slow
def test_simulator_panoramas_upright_accepted_tilted_rejected(generated_panoramas):
    up, tilted, truth = generated_panoramas
    res_up = [check_horizon(f) for f in up]
    res_t = [check_horizon(f) for f in tilted]
    accepted = [r.ok for r in res_up]
    rejected = [not r.ok for r in res_t]
    err_up = np.array([r.tilt_deg for r in res_up])
    err_t = np.abs(np.array([r.tilt_deg for r in res_t]) - truth)
    detail = [(r.reason, round(r.tilt_deg, 1)) for r in res_up]
    # Issue #4's bars: >= 95 % upright accepted, >= 90 % tilted [8°, 30°] rejected.
    assert np.mean(accepted) >= 0.95, detail
    assert np.mean(rejected) >= 0.90, [(r.reason, round(r.tilt_deg, 1)) for r in res_t]
    assert np.median(err_up) < 2.5 and np.percentile(err_up, 90) < 5.0, err_up.round(1)
    assert np.median(err_t) < 2.5, err_t.round(1)


@needs_fixture
def test_frames_cli_writes_accepted_pngs_and_parquet(tmp_path, capsys):
    import pandas as pd

    from dap_model.cli import main

    out = tmp_path / "frames"
    missing = tmp_path / "missing.mp4"
    rc = main(["frames", str(FIXTURE), str(missing), "--out", str(out), "--fps", "1", "--set", "video.height=64"])
    assert rc == 0
    cap = capsys.readouterr()
    assert "missing.mp4" in cap.err
    df = pd.read_parquet(out / "frames.parquet")
    assert set(df.columns) >= {"source", "time_s", "layout", "layout_source", "accepted", "reason", "tilt_deg", "shard"}
    vid = df[df["source"] == str(FIXTURE)]
    assert len(vid) == 12 and (vid["layout"] == "mono").all()  # 12 s at 1 frame per second
    assert vid["time_s"].tolist() == pytest.approx(list(range(12)))
    kept = vid[vid["accepted"]]
    assert len(kept) >= 1 and (kept["reason"] == "").all() and (kept["tilt_deg"].abs() < 2).all()
    assert set(vid.loc[~vid["accepted"], "reason"]) <= {"duplicate"}
    assert (kept["valid_lat_top"] > 60).all() and (kept["valid_lat_bottom"] < -60).all()
    for rel in kept["shard"]:
        img = cv2.imread(str(out / rel))
        assert img is not None and img.shape == (64, 128, 3)
    assert vid.loc[~vid["accepted"], "shard"].isna().all()
    pngs = sorted(q.relative_to(out).as_posix() for q in out.rglob("*.png"))
    assert pngs == sorted(kept["shard"])
    failures = json.loads((out / "failures.json").read_text())
    assert [f["source"] for f in failures] == [str(missing)] and "no such file" in failures[0]["error"]
    assert (df["source"] != str(missing)).all()
    assert f"{len(df)} rows, {len(kept)} accepted" in cap.out
    assert main(["frames", str(missing), "--out", str(tmp_path / "none")]) != 0


def _tilt_rotation(tilt_deg: float, axis_azimuth: float) -> torch.Tensor:
    """[3,3] rotation by `tilt_deg` about the horizontal axis at `axis_azimuth` (the camera's up
    ends exactly `tilt_deg` from the world's)."""
    a = torch.tensor([math.cos(axis_azimuth), 0.0, math.sin(axis_azimuth)], dtype=torch.float64)
    k = torch.tensor([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]], dtype=torch.float64)
    t = math.radians(tilt_deg)
    return torch.eye(3, dtype=torch.float64) + math.sin(t) * k + (1 - math.cos(t)) * k @ k


@pytest.fixture(scope="module")
def real_panoramas():
    """The 46 real panoramas at 512x256 (RGB uint8), sorted by path."""
    from dap_model.tagging.base import read_image

    out = []
    for p in _real_paths():
        img, why = read_image(p)
        assert img is not None, f"{p}: {why}"
        out.append(cv2.resize(img, (512, 256), interpolation=cv2.INTER_AREA))
    return out


def _real_paths() -> list[Path]:
    return sorted(p for d in ("indoor", "outdoor") for p in (REAL / d).iterdir())


@pytest.mark.slow
@needs_real
def test_real_panoramas_upright_accepted_tilted_rejected(real_panoramas):
    """The 45 upright ones. Measured at 1024x512 (benchmarks/results/video.json, horizon.json): upright 0.93,
    tilted 10-30° rejected 0.98, median upright error 1.5°; the bars leave room for the differences of this
    512x256 copy."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(11)
    upright = [f for f, p in zip(real_panoramas, _real_paths()) if f"{p.parent.name}/{p.name}" != NOT_UPRIGHT]
    assert len(upright) == len(real_panoramas) - 1
    res_up = [check_horizon(f) for f in upright]
    truth, res_t = [], []
    for f in upright:
        r = _tilt_rotation(rng.uniform(10, 30), rng.uniform(0, 2 * math.pi))
        truth.append(math.degrees(math.acos(float(r[1, 1]))))
        res_t.append(check_horizon(_rotate(f, r)))
    accepted = np.mean([r.ok for r in res_up])
    rejected = np.mean([not r.ok for r in res_t])
    err_up = np.array([r.tilt_deg for r in res_up])
    err_t = np.abs(np.array([r.tilt_deg for r in res_t]) - np.array(truth))
    assert accepted >= 0.80, [(r.reason, round(r.tilt_deg, 1)) for r in res_up]
    assert rejected >= 0.93, [(r.reason, round(r.tilt_deg, 1)) for r in res_t]
    assert np.median(err_up) < 2.0 and np.median(err_t) < 2.0, (err_up.round(1), err_t.round(1))



@needs_real
def test_a_real_panorama_taken_with_a_rolled_camera_is_rejected_and_passes_once_levelled(real_panoramas):
    """Its sea horizon lies 7.4-7.7° below level on one side: the check reads the roll, and the
    frame turned by the check's own up estimate passes (the estimate is the camera's tilt)."""
    f = real_panoramas[[f"{p.parent.name}/{p.name}" for p in _real_paths()].index(NOT_UPRIGHT)]
    res = check_horizon(f)
    assert res.reason == "tilted" and 6.0 < res.tilt_deg < 12.0, (res.reason, res.tilt_deg)
    u = torch.tensor(res.up, dtype=torch.float64)
    axis = torch.linalg.cross(u, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    angle = torch.atan2(axis.norm(), u[1])
    k = axis / axis.norm()
    kx = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], dtype=torch.float64)
    to_up = torch.eye(3, dtype=torch.float64) + torch.sin(angle) * kx + (1 - torch.cos(angle)) * kx @ kx  # to_up @ u = +y
    levelled = check_horizon(_rotate(f, to_up.T))
    assert levelled.ok and levelled.tilt_deg < 3.0, (levelled.reason, levelled.tilt_deg)


@needs_real
def test_real_seams_meet_and_half_turns_do_not(real_panoramas):
    """The seam is measured at the frame's own resolution: every real panorama's edges meet
    (at 128 px the restaurant panorama's curtain edge, 3 source px from the seam, fell on the
    seam column: ratio 0.58); 180° halves stretched to 2:1 (four per panorama) mostly do not
    (0.90 above the tolerance at 512x256; the rest have similar content at both edges)."""
    tol = VideoConfig().seam_tolerance
    up = np.array([seam_ratio(f) for f in real_panoramas])
    assert up.max() <= 0.6 * tol, up.round(2)
    halves = [
        cv2.resize(np.ascontiguousarray(np.roll(f, k * 128, axis=1)[:, :256]), (512, 256))
        for f in real_panoramas for k in range(4)
    ]
    assert np.mean([seam_ratio(h) > tol for h in halves]) >= 0.85

def _logo(rgb: np.ndarray, x: int, y: int) -> np.ndarray:
    """A static overlay: a white box with a dark border and text, ~12 % of the width."""
    out = rgb.copy()
    h, w = rgb.shape[:2]
    bw, bh = max(8, w // 8), max(4, h // 10)
    cv2.rectangle(out, (x, y), (x + bw, y + bh), (255, 255, 255), -1)
    cv2.rectangle(out, (x, y), (x + bw, y + bh), (20, 20, 20), max(1, h // 128))
    cv2.putText(out, "LOGO", (x + 2, y + bh - 2), cv2.FONT_HERSHEY_SIMPLEX, bh / 40, (200, 0, 0), max(1, h // 128))
    return out


def _capped(rgb: np.ndarray, top_deg: float, bottom_deg: float, fill: str) -> np.ndarray:
    """Pole caps as web video has them: the rows within `top_deg`/`bottom_deg` of the poles
    replaced by black fill or by a heavy blur of what was there."""
    out = rgb.copy()
    h = rgb.shape[0]
    t, b = round(h * top_deg / 180), round(h * bottom_deg / 180)
    for sl in (slice(0, t), slice(h - b, h)):
        if sl.stop - sl.start == 0:
            continue
        if fill == "black":
            out[sl] = 0
        else:
            band = out[sl]
            out[sl] = cv2.blur(band, (rgb.shape[1] // 2 + 1, band.shape[0] * 2 + 1), borderType=cv2.BORDER_REFLECT)
    return out


def _artefacts(rgb: np.ndarray) -> dict[str, np.ndarray]:
    h, w = rgb.shape[:2]
    return {
        "logo_corner": _logo(rgb, w - w // 8 - w // 40, h - h // 10 - h // 20),
        "logo_middle": _logo(rgb, w // 3, h // 2 + h // 8),
        "black_caps": _capped(rgb, 25, 30, "black"),
        "blurred_nadir": _capped(rgb, 0, 35, "blur"),
        "caps_and_logo": _logo(_capped(rgb, 20, 25, "black"), w // 2, h - h // 5),
    }


def _artefact_check(frames: list[np.ndarray]) -> list[tuple]:
    """(frame index, artefact, reason, tilt) for each artefact that turns an accepted frame into
    a rejected one or moves its tilt estimate by more than 2°."""
    bad = []
    for i, f in enumerate(frames):
        clean = check_horizon(f)
        if not clean.ok:
            continue
        for name, g in _artefacts(f).items():
            r = check_horizon(g)
            if not r.ok or abs(r.tilt_deg - clean.tilt_deg) > 2.0:
                bad.append((i, name, r.reason, round(r.tilt_deg, 1)))
    return bad


def test_logos_and_pole_caps_keep_simulator_frames_upright():
    from dap_model.sim import render_sequence

    torch.set_num_threads(1)
    frames = [render_sequence(kind, seed, 1, 128, style="web")[1][0].rgb for seed in (510, 511) for kind in ("rooms", "city", "corridor", "rural")]
    n_checked = sum(check_horizon(f).ok for f in frames) * len(_artefacts(frames[0]))
    bad = _artefact_check(frames)
    assert n_checked >= 30 and len(bad) <= 0.05 * n_checked, bad


@pytest.mark.slow
@needs_real
def test_logos_and_pole_caps_keep_real_frames_upright(real_panoramas):
    frames = real_panoramas[::3]  # 16 of 46, indoor and outdoor
    n_checked = sum(check_horizon(f).ok for f in frames) * len(_artefacts(frames[0]))
    bad = _artefact_check(frames)
    assert n_checked >= 50 and len(bad) <= 0.05 * n_checked, bad


def test_black_caps_with_a_tilt_are_still_rejected():
    """Caps are excluded from the evidence, not read as a level horizon: a tilted frame with
    black caps (as a rig that blanks the same image rows) is still rejected."""
    from dap_model.sim import render, render_sequence

    torch.set_num_threads(1)
    scene, fr = render_sequence("city", 512, 1, 128, style="web")
    r = _tilt_rotation(15.0, 0.7)
    rgb, _ = render(scene, fr[0].position, r.numpy(), 128, "web", seed=7)
    res = check_horizon(_capped(rgb, 20, 25, "black"))
    assert res.reason == "tilted" and abs(res.tilt_deg - 15.0) < 4.0, (res.reason, res.tilt_deg)


def test_estimate_up_by_cue():
    """`cues` selects the evidence (what `bench_horizon.py` reports per image): the line cue alone
    and both cues find the tilt of a tilted street; the appearance cue alone gives another
    estimate; an unknown cue is a clear error."""
    from dap_model.sim import render, render_sequence
    from dap_model.video.horizon import InputError, estimate_up

    torch.set_num_threads(1)
    scene, fr = render_sequence("city", 512, 1, 128, style="web")
    rgb, _ = render(scene, fr[0].position, _tilt_rotation(15.0, 0.7).numpy(), 128, "web", seed=7)
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    tilt = {}
    for cues in (("lines",), ("appearance",), ("lines", "appearance")):
        up, _, _ = estimate_up(g, rgb, cues=cues)
        tilt[cues] = math.degrees(math.acos(float(up[1])))
    assert abs(tilt[("lines",)] - 15.0) < 4.0 and abs(tilt[("lines", "appearance")] - 15.0) < 4.0, tilt
    assert abs(tilt[("appearance",)] - tilt[("lines", "appearance")]) > 0.5, tilt
    with pytest.raises(InputError, match="cues"):
        estimate_up(g, rgb, cues=("sky",))
