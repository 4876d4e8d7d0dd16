"""`dap evaluate` and `dap predict` end to end on a tiny random model."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dap_model.cli import main

H, W = 16, 32


@pytest.fixture(scope="module")
def ckpt() -> Path:
    from tests._eval_support import tiny_checkpoint

    return tiny_checkpoint()


def _write_npy_bench(root: Path, n: int = 3, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(root / f"pano{i}_rgb.png"), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        d = rng.uniform(0.5, 40.0, (H, W)).astype(np.float32)  # no pixel in the 50-100 m bin
        d[1, :6] = 120.0  # beyond the 100 m cap: not scored
        d[0, :4] = 0
        np.save(root / f"pano{i}_depth.npy", d)


def _metrics_numpy(pred: np.ndarray, gt: np.ndarray, cap: float = 100.0) -> dict[str, float]:
    """Independent recomputation: DAP's definitions, pred floored at 1e-6 m."""
    v = (gt > 0) & (gt <= cap) & np.isfinite(gt)
    p, g = np.maximum(pred[v].astype(np.float64), 1e-6), gt[v].astype(np.float64)
    r = np.maximum(p / g, g / p)
    return {
        "abs_rel": np.mean(np.abs(p - g) / g),
        "sq_rel": np.mean((p - g) ** 2 / g),
        "rmse": np.sqrt(np.mean((p - g) ** 2)),
        "rmse_log": np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2)),
        "mae": np.mean(np.abs(p - g)),
        "delta1": np.mean(r < 1.25),
        "delta2": np.mean(r < 1.25**2),
        "delta3": np.mean(r < 1.25**3),
    }


def test_evaluate_matches_independent_recomputation(tmp_path, ckpt):
    bench = tmp_path / "bench"
    _write_npy_bench(bench)
    out = tmp_path / "m.json"
    rc = main(["evaluate", "--checkpoint", str(ckpt), "--format", "npy", "--root", str(bench),
               "--out", str(out), "--save-predictions", str(tmp_path / "pred"), "--profile", "test"])
    assert rc == 0
    got = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert got["n_images"] == 3
    assert got["range_bins"]["50-100"]["n_pixels"] == 0 and got["range_bins"]["50-100"]["abs_rel"] is None
    per = []
    for i in range(3):
        gt = np.load(bench / f"pano{i}_depth.npy")
        pred = np.load(tmp_path / "pred" / f"pano{i}_pred.npy")
        assert pred.shape == gt.shape and pred.dtype == np.float32
        assert (pred > 0).any()
        per.append(_metrics_numpy(pred, gt))
    for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "mae", "delta1", "delta2", "delta3"):
        assert got[k] == pytest.approx(np.mean([m[k] for m in per]), rel=1e-6, abs=1e-9), k


@pytest.mark.slow
def test_evaluate_nested_keys_and_mlflow_uri(tmp_path, ckpt):
    """AirSim360 layout; the same checkpoint through `models:/dap-depth@champion` gives the same numbers."""
    import mlflow
    from mlflow import MlflowClient

    from dap_model.config import load_config
    from dap_model.tracking import setup_mlflow
    from tests._eval_support import fresh_mlflow_db

    rng = np.random.default_rng(1)
    for seq in ("a", "b"):
        (tmp_path / "air" / seq).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "air" / seq / "panorama_0.png"), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        np.save(tmp_path / "air" / seq / "erp_distance_0.npy", rng.uniform(1, 1000, (H, W)).astype(np.float32))
    args = ["evaluate", "--format", "airsim360", "--root", str(tmp_path / "air"), "--profile", "test"]
    assert main(args + ["--checkpoint", str(ckpt), "--out", str(tmp_path / "a.json"),
                        "--save-predictions", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "a" / "panorama_0_pred.npy").is_file()
    assert (tmp_path / "p" / "b" / "panorama_0_pred.npy").is_file()

    fresh_mlflow_db()
    setup_mlflow(load_config("test").mlflow)
    with mlflow.start_run() as run:  # the trainer's layout: <model>/extra_files/model.safetensors
        mlflow.log_artifact(str(ckpt), "model/extra_files")
    client = MlflowClient()
    client.create_registered_model("dap-depth")
    mv = client.create_model_version("dap-depth", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("dap-depth", "champion", mv.version)
    assert main(args + ["--checkpoint", "models:/dap-depth@champion", "--out", str(tmp_path / "b.json")]) == 0
    a, b = json.loads((tmp_path / "a.json").read_text()), json.loads((tmp_path / "b.json").read_text())
    assert a["abs_rel"] == b["abs_rel"] and a["delta1"] == b["delta1"]


def _fails(capsys, args, *needles):
    rc = main(args)
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


def test_bad_inputs_one_line_error_nothing_written(tmp_path, ckpt, capsys):
    import OpenEXR  # noqa: F401

    out = tmp_path / "metrics.json"
    out.write_text("previous results\n")
    base = ["evaluate", "--checkpoint", str(ckpt), "--out", str(out), "--profile", "test"]
    _fails(capsys, base + ["--format", "npy", "--root", str(tmp_path / "missing")], "missing", "does not exist")
    (tmp_path / "empty").mkdir()
    _fails(capsys, base + ["--format", "stanford2d3d", "--root", str(tmp_path / "empty")], "empty", "no stanford2d3d samples")
    wrong = tmp_path / "wrong"
    _write_npy_bench(wrong, n=2)
    np.save(wrong / "pano1_depth.npy", np.ones((H + 2, W), np.float32))
    _fails(capsys, base + ["--format", "npy", "--root", str(wrong)], str(wrong / "pano1_depth.npy"), "18x32")
    exr = tmp_path / "exr"
    exr.mkdir()
    cv2.imwrite(str(exr / "r_rgb.png"), np.zeros((H, W, 3), np.uint8))
    (exr / "r_depth.exr").write_bytes(b"\x76\x2f\x31\x01garbage")
    _fails(capsys, base + ["--format", "matterport3d", "--root", str(exr)], str(exr / "r_depth.exr"), "unreadable EXR")
    _fails(capsys, base + ["--format", "npy", "--root", str(wrong / "..") + "/bench_missing"], "does not exist")
    assert out.read_text() == "previous results\n"
    fresh = tmp_path / "fresh.json"
    _fails(capsys, ["evaluate", "--checkpoint", str(ckpt), "--out", str(fresh), "--profile", "test",
                    "--format", "npy", "--root", str(wrong)], "pano1_depth.npy")
    assert not fresh.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
    _fails(capsys, ["evaluate", "--checkpoint", str(tmp_path / "nockpt"), "--out", str(fresh), "--profile", "test",
                    "--format", "npy", "--root", str(tmp_path / "bench_ok_missing")], "does not exist")
    _write_npy_bench(tmp_path / "ok", n=1)
    _fails(capsys, ["evaluate", "--checkpoint", "models:/no-such-model@champion", "--out", str(fresh),
                    "--profile", "test", "--format", "npy", "--root", str(tmp_path / "ok")],
           "models:/no-such-model@champion")
    assert not fresh.exists()


def test_predict_writes_depth_colour_and_point_cloud(tmp_path, ckpt):
    from plyfile import PlyData

    rng = np.random.default_rng(2)
    imgs = []
    for name, (h, w) in {"room": (H, W), "hall": (24, 48)}.items():
        p = tmp_path / f"{name}.png"
        cv2.imwrite(str(p), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        imgs.append(p)
    out = tmp_path / "out"
    assert main(["predict", *map(str, imgs), "--checkpoint", str(ckpt), "--out", str(out), "--ply",
                 "--profile", "test"]) == 0
    depth = np.load(out / "hall_depth.npy")
    assert depth.shape == (24, 48) and depth.dtype == np.float32
    colour = cv2.imread(str(out / "hall_depth.png"))
    assert colour.shape == (24, 48, 3)
    assert (colour[depth <= 0] == 0).all()
    assert (colour[depth > 0].sum(-1) > 0).any()
    ply = PlyData.read(str(out / "hall.ply"))["vertex"]
    valid = depth > 0
    assert ply.count == int(valid.sum())
    # independent check of the points: depth · ray (docs/architecture.md#conventions), in row-major
    # order of valid pixels
    lon = (np.arange(48) + 0.5) / 48 * 2 * np.pi - np.pi
    lat = np.pi / 2 - (np.arange(24) + 0.5) / 24 * np.pi
    lon, lat = np.meshgrid(lon, lat)
    ray = np.stack([np.cos(lat) * np.sin(lon), np.sin(lat), np.cos(lat) * np.cos(lon)], -1)
    pts = (depth[..., None] * ray)[valid]
    got = np.stack([ply["x"], ply["y"], ply["z"]], -1)
    np.testing.assert_allclose(got, pts, rtol=1e-4, atol=1e-4)
    rgb = cv2.cvtColor(cv2.imread(str(imgs[1])), cv2.COLOR_BGR2RGB)[valid]
    assert np.array_equal(np.stack([ply["red"], ply["green"], ply["blue"]], -1), rgb)
    assert (out / "room_depth.npy").is_file() and (out / "room.ply").is_file()


def test_predict_rejects_non_panorama(tmp_path, ckpt, capsys):
    p = tmp_path / "square.png"
    cv2.imwrite(str(p), np.zeros((10, 10, 3), np.uint8))
    _fails(capsys, ["predict", str(p), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o"), "--profile", "test"],
           str(p), "not an equirectangular panorama")
    assert not (tmp_path / "o").exists()


def test_upsampling_keeps_invalid_out_of_valid_depth():
    import torch

    from dap_model.inference import resize_depth

    d = torch.tensor([[[[2.0, 4.0, 0.0, 8.0], [2.0, 4.0, 0.0, 8.0]]]])  # [1,1,2,4], column 2 invalid
    up = resize_depth(d, (4, 8), "bilinear_valid")[0, 0]
    vals = up[up > 0]
    assert bool(((vals >= 2.0) & (vals <= 8.0)).all())  # no blend towards 0
    assert bool((up[:, 4:6] == 0).all())  # the invalid column stays invalid (validity < 0.5)
    # periodic: output column 0 (source x = -0.25) mixes the last column (8) with the first (2)
    assert float(up[0, 0]) == pytest.approx(0.25 * 8.0 + 0.75 * 2.0)
    near = resize_depth(d, (4, 8), "nearest")[0, 0]
    assert set(near.unique().tolist()) == {0.0, 2.0, 4.0, 8.0}
