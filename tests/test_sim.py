"""Simulator: analytic depth, culling = brute force, rotation convention, determinism, CLI."""

import json
import math

import numpy as np
import pytest
import torch

from dap_model.cli import main as dap_main
from dap_model.errors import InputError
from dap_model.geometry import erp_rays, rotation_matrix
from dap_model.sim import make_scene, render, render_sequence, trajectory
from dap_model.sim import raycast
from dap_model.sim.scenes import KINDS, _Builder, room


def _lat(h):
    return math.pi / 2 - (np.arange(h, dtype=np.float64) + 0.5) / h * math.pi


def test_calibration_depth_is_h_over_sin_minus_lat_via_cli(tmp_path, capsys):
    out = tmp_path / "cal"
    rc = dap_main(["simulate", "--out", str(out), "--scene", "calibration", "--camera-height", "1.7",
                   "--height", "64", "--scenes", "1", "--frames", "2", "--profile", "test"])
    assert rc == 0, capsys.readouterr().err
    seq = out / "0000_calibration"
    meta = json.loads((seq / "meta.json").read_text())
    assert meta["camera_height_m"] == 1.7 and meta["domain"] == "outdoor"
    assert (out / "config.resolved.yaml").is_file()
    lat = _lat(64)[:, None] * np.ones((1, 128))
    lower = lat < 0
    expected = 1.7 / np.sin(-lat[lower])
    for i in range(2):
        depth = np.load(seq / f"erp_distance_{i}.npy")
        assert depth.dtype == np.float32 and depth.shape == (64, 128)
        np.testing.assert_allclose(depth[lower], expected, rtol=1e-6, atol=0)
        assert np.all(depth[~lower] == 0)
        assert (seq / f"panorama_{i}.png").is_file()


def _room_truth(lo, hi, o, dirs):
    """float64 exit distance from inside an axis-aligned box along unit dirs [...,3]."""
    lo, hi, o = (np.asarray(a, np.float64) for a in (lo, hi, o))
    with np.errstate(divide="ignore"):
        t = np.where(dirs > 0, (hi - o) / dirs, (lo - o) / dirs)
    return np.where(np.isfinite(t) & (t > 0), t, np.inf).min(-1)


@pytest.mark.parametrize("angles,h", [(None, 48), ((0.7, 0.2, -0.35), 48), (None, 21)])
def test_camera_in_axis_aligned_room_gives_analytic_depth(angles, h):
    size = (4.0, 2.8, 6.5)
    scene = room(0, size=size)
    pos = np.array([1.3, 1.6, 2.2])
    rot = None if angles is None else rotation_matrix(*angles, dtype=torch.float64).numpy()
    rgb, depth = render(scene, pos, rot, height=h)
    assert rgb.shape == (h, 2 * h, 3) and rgb.dtype == np.uint8 and depth.dtype == np.float32
    d = erp_rays(h, 2 * h, dtype=torch.float64).numpy()
    if rot is not None:
        d = d @ rot.T
    truth = _room_truth((0, 0, 0), size, pos, d)
    np.testing.assert_allclose(depth, truth, rtol=2e-6)


def test_box_sphere_and_cylinder_depths():
    b = _Builder(0)
    m = b.material("wall")
    b.box((-100, -100, 10), (100, 100, 11), m)  # a wall z = 10 in front
    b.sphere((0, 0, -20), 5, m)  # behind: the centre ray (lon = π) hits at 15
    b.cylinder(12.0, 0.0, 1.0, -50, 50, m)  # right (+x): side at x = 11
    scene = b.build("test", "outdoor", 0, (-1, -1, -1, 1, 1, 1), (1, 1))
    h = 64
    _, depth = render(scene, (0, 0, 0), None, height=h)
    d = erp_rays(h, 2 * h, dtype=torch.float64).numpy()
    wall = (d[..., 2] > 0) & (np.abs(d[..., 0] / d[..., 2] * 10) < 9) & (np.abs(d[..., 1] / d[..., 2] * 10) < 90)
    np.testing.assert_allclose(depth[wall], 10 / d[..., 2][wall], rtol=1e-5)
    # sphere: analytic ray-sphere distance on every ray that hits it
    c = np.array([0, 0, -20.0])
    b_ = d @ c
    disc = b_**2 - (c @ c - 25)
    hits = (disc > 1e-3) & (b_ > 0)
    np.testing.assert_allclose(depth[hits], (b_ - np.sqrt(np.clip(disc, 0, None)))[hits], rtol=1e-4)
    # cylinder: horizontal rays towards +x at lat≈0 hit the side at x = 11
    v, u = h // 2, int(round((math.pi / 2 + math.pi) / (2 * math.pi) * 2 * h - 0.5))
    ray = d[v, u]
    ex, ez = -12.0, 0.0
    a = ray[0] ** 2 + ray[2] ** 2
    bb = ex * ray[0] + ez * ray[2]
    t = (-bb - math.sqrt(bb * bb - a * (ex * ex - 1))) / a
    assert depth[v, u] == pytest.approx(t, rel=1e-5)


def test_tile_culling_matches_brute_force():
    scene = make_scene("city", 4)
    pos = trajectory(scene, 1, 0)[0]
    dirs = erp_rays(32, 64, dtype=torch.float64).to(torch.float32)
    tiles = raycast.make_tiles(dirs, 8)
    prims = raycast.Prims.from_scene(scene, pos)
    t, gid = raycast.cast_primary(tiles, prims)
    n = tiles.dirs.shape[0] * tiles.dirs.shape[1]
    bt, bid = torch.full((n,), raycast.INF), torch.full((n,), -1, dtype=torch.int64)
    flat = tiles.dirs.reshape(-1, 3)
    p = prims.params["plane"][0]
    bt = torch.minimum(bt, raycast.plane_t(torch.zeros(3), flat, p[None]))
    for kind in ("box", "sphere", "cylinder"):
        allp = torch.ones(tiles.dirs.shape[0], len(prims.params[kind]), dtype=torch.bool)
        raycast._closest_pairs(kind, allp, torch.zeros(1, 1, 3), tiles.dirs, prims, bt, bid)
    assert torch.equal(t, bt)


def test_yaw_rotation_rolls_the_panorama():
    scene = room(1, size=(5.0, 3.0, 4.0))
    h, k = 32, 8
    pos = (2.0, 1.5, 1.7)
    _, d0 = render(scene, pos, None, height=h)
    _, d1 = render(scene, pos, (2 * math.pi * k / (2 * h), 0.0, 0.0), height=h)
    np.testing.assert_allclose(d1, np.roll(d0, -k, axis=1), rtol=1e-4)


def test_styles_share_geometry_but_not_look():
    scene = make_scene("rooms", 2)
    pos = trajectory(scene, 1, 0)[0]
    rgb_l, d_l = render(scene, pos, height=32, style="labeled")
    rgb_w, d_w = render(scene, pos, height=32, style="web", seed=1)
    np.testing.assert_array_equal(d_l, d_w)
    assert np.abs(rgb_l.astype(int) - rgb_w.astype(int)).mean() > 10
    with pytest.raises(InputError, match="style"):
        render(scene, pos, height=32, style="cartoon")


def test_varied_weather_changes_light_not_geometry_or_materials(tmp_path):
    from dap_model.sim import shading

    looks = [(shading.make_look(make_scene(k, s), "labeled"), shading.make_look(make_scene(k, s), "labeled", weather="varied"))
             for k in ("city", "rural") for s in range(20)]
    for clear, varied in looks:  # palette draws unchanged, only the daylight differs
        torch.testing.assert_close(clear.c1, varied.c1)
        torch.testing.assert_close(clear.c2, varied.c2)
    elev = np.degrees([math.asin(float(v.sun_dir[1])) for _, v in looks])
    zen = torch.stack([v.zenith for _, v in looks])
    clear_zen = torch.stack([c.zenith for c, _ in looks])
    assert elev.min() < 15 and elev.max() > 50  # clear weather: 25-65 deg
    assert float(clear_zen.std(0).max()) == 0 and float(zen.std(0).min()) > 0.02
    overcast = [v for _, v in looks if float(v.zenith[0] / v.zenith[2]) > 0.8]  # grey, not blue
    assert 0 < len(overcast) < len(looks)
    again = shading.make_look(make_scene("city", 3), "labeled", weather="varied")
    torch.testing.assert_close(again.zenith, looks[3][1].zenith)
    scene = make_scene("city", 3)
    pos = trajectory(scene, 1, 0)[0]
    rgb_c, d_c = render(scene, pos, height=32, style="labeled")
    rgb_v, d_v = render(scene, pos, height=32, style="labeled", look=looks[3][1])
    np.testing.assert_array_equal(d_c, d_v)
    assert np.abs(rgb_c.astype(int) - rgb_v.astype(int)).mean() > 3
    with pytest.raises(InputError, match="labelled style"):
        shading.make_look(scene, "web", weather="varied")
    args = ["simulate", "--scenes", "1", "--frames", "1", "--height", "16", "--kind", "outdoor", "--profile", "test"]
    assert dap_main(args + ["--out", str(tmp_path / "c")]) == 0
    assert dap_main(args + ["--out", str(tmp_path / "v"), "--weather", "varied"]) == 0
    (seq,) = [p.name for p in (tmp_path / "v").iterdir() if p.is_dir()]
    assert json.loads((tmp_path / "v" / seq / "meta.json").read_text())["weather"] == "varied"
    np.testing.assert_array_equal(np.load(tmp_path / "c" / seq / "erp_distance_0.npy"),
                                  np.load(tmp_path / "v" / seq / "erp_distance_0.npy"))
    assert (tmp_path / "c" / seq / "panorama_0.png").read_bytes() != (tmp_path / "v" / seq / "panorama_0.png").read_bytes()
    with pytest.raises(InputError, match="weather"):
        shading.make_look(scene, "labeled", weather="stormy")


def test_scenes_trajectories_and_sequences():
    for kind in KINDS:
        s = make_scene(kind, 3)
        assert s.domain in ("indoor", "outdoor") and s.n_primitives >= 1
        traj = trajectory(s, 4, 1)
        assert len(traj) == 4
        if kind != "calibration":
            assert s.is_free(np.stack(traj), 0.2).all()
        if s.domain == "indoor":
            assert all(1.0 <= p[1] <= 2.0 for p in traj)
        else:
            assert all(1.5 <= p[1] <= 100.0 for p in traj)
    with pytest.raises(InputError, match="scene kind"):
        make_scene("moon", 0)
    scene, frames = render_sequence("outdoor", 5, 3, 16, style="web", shake_deg=4.0)
    assert scene.domain == "outdoor" and len(frames) == 3
    for f in frames:
        assert f.rgb.shape == (16, 32, 3) and f.depth.shape == (16, 32)
        np.testing.assert_allclose(f.rotation @ f.rotation.T, np.eye(3), atol=1e-9)
    assert not np.allclose(frames[0].rotation, np.eye(3))
    outdoor_depth = np.concatenate([f.depth.ravel() for f in frames])
    assert (outdoor_depth == 0).any() and (outdoor_depth > 0).any()  # sky and ground
    with pytest.raises(InputError, match="rotation"):
        render(scene, (0, 10, 0), np.ones((3, 3)), height=16)


def test_same_seed_identical_files_different_seed_different_scenes(tmp_path):
    args = ["simulate", "--scenes", "2", "--frames", "2", "--height", "16", "--profile", "test"]
    assert dap_main(args + ["--out", str(tmp_path / "a"), "--seed", "7"]) == 0
    assert dap_main(args + ["--out", str(tmp_path / "b"), "--seed", "7"]) == 0
    assert dap_main(args + ["--out", str(tmp_path / "c"), "--seed", "8"]) == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 2 * 5 + 1
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    da = [np.load(p) for p in sorted((tmp_path / "a").rglob("*.npy"))]
    dc = [np.load(p) for p in sorted((tmp_path / "c").rglob("*.npy"))]
    assert all(not np.array_equal(x, y) for x, y in zip(da, dc))
    seqs = sorted(p.name for p in (tmp_path / "a").iterdir() if p.is_dir())
    assert seqs[0].split("_", 1)[1] in ("city", "rural") and seqs[1].split("_", 1)[1] in ("rooms", "corridor")
    meta = json.loads((tmp_path / "a" / seqs[1] / "meta.json").read_text())
    assert meta["domain"] == "indoor" and len(meta["frames"]) == 2 and meta["seed"] > 0


def test_indoor_share_spreads_indoor_sequences_evenly():
    from dap_model.config import load_config
    from dap_model.sim.airsim360 import plan_sequences
    from dap_model.sim.scenes import make_scene

    def domains(share: float, n: int = 8) -> str:
        sim = load_config("test", [f"sim.scenes={n}", "sim.kind=mixed", f"sim.indoor_share={share}"]).sim
        return "".join(make_scene(p.kind, p.seed).domain[0] for p in plan_sequences(sim))

    assert domains(0.5) == "oioioioi"  # the default alternates, outdoor first
    assert domains(0.75) == "oiiioiii"
    assert domains(1.0) == "i" * 8 and domains(0.0) == "o" * 8
    assert domains(0.25, 12).count("i") == 3


def test_cli_rejects_bad_input(tmp_path, capsys):
    assert dap_main(["simulate", "--out", str(tmp_path / "x"), "--height", "3"]) == 2
    assert "sim.height" in capsys.readouterr().err
    assert dap_main(["simulate", "--out", str(tmp_path / "x"), "--camera-height", "2"]) == 2
    assert "calibration" in capsys.readouterr().err
    (tmp_path / "f").write_text("x")
    assert dap_main(["simulate", "--out", str(tmp_path / "f"), "--profile", "test"]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_worker_processes_write_the_same_files(tmp_path):
    from dap_model.config import load_config
    from dap_model.sim.airsim360 import simulate

    over = ["sim.scenes=2", "sim.frames_per_scene=1", "sim.height=16", "sim.threads=1"]
    one = simulate(tmp_path / "one", load_config("test", over))
    two = simulate(tmp_path / "two", load_config("test", over + ["sim.workers=2"]))
    assert one.version == two.version and one.files == two.files and one.domains == two.domains


def test_shadow_grouping_matches_brute_force():
    scene = make_scene("city", 6)
    pos = trajectory(scene, 1, 2)[0]
    prims = raycast.Prims.from_scene(scene, pos)
    gen = torch.Generator().manual_seed(0)
    pts = (torch.rand(3000, 3, generator=gen) - 0.5) * torch.tensor([400.0, 0.0, 400.0])
    pts[:, 1] = torch.rand(3000, generator=gen) * 30 - pos[1] + 0.01  # camera-relative, above ground
    valid = torch.rand(3000, generator=gen) < 0.9
    light = torch.nn.functional.normalize(torch.tensor([0.4, 0.7, -0.3]), dim=0)
    fast = raycast.cast_shadow(pts, valid, light, prims, group=64)
    brute = torch.zeros(3000, dtype=torch.bool)
    d = light.expand(1, 1, 3)
    for kind in ("box", "sphere", "cylinder"):
        t = raycast.KERNELS[kind](pts[:, None, :], d, prims.params[kind][None])  # [N,P]
        brute |= torch.isfinite(t).any(1)
    brute &= valid
    assert 0 < int(brute.sum()) < int(valid.sum())
    assert torch.equal(fast, brute)
