"""DAP's released network: the fixture of DAP's own outputs (`../shared/fixtures/dap_release_vits`),
loading errors, conversion, fine-tuning from a release file with resume, point clouds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dap_model.cli import main as dap_main

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "dap_release_vits"
STEMS = ["aframe__lake", "panolens_js__cabin"]
TIE = 1e-4  # pixels whose reference mask probability is this close to 0.5 are ties of the mask rule

needs_fixture = pytest.mark.skipif(not (FIXTURE / "spec.json").is_file(), reason=f"{FIXTURE} absent")


def _write_release(out: Path, prefix: str = "") -> Path:
    """`build_state_dict.py spec.json OUT` as the fixture's README says; `prefix` re-saves it with
    DataParallel's `module.` in front of every key."""
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(FIXTURE / "build_state_dict.py"), str(FIXTURE / "spec.json"), str(out)],
                   check=True, cwd=FIXTURE, timeout=300)
    if prefix:
        sd = torch.load(out, map_location="cpu", weights_only=True)
        torch.save({prefix + k: v for k, v in sd.items()}, out)
    return out


@pytest.fixture(scope="module")
def release_file(tmp_path_factory) -> Path:
    if not (FIXTURE / "spec.json").is_file():
        pytest.skip(f"{FIXTURE} absent")
    return _write_release(tmp_path_factory.mktemp("release") / "model.pth")


def _rel_err(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.float64) - b) / np.maximum(np.abs(b.astype(np.float64)), 1e-12)


def _assert_matches_reference(out_dir: Path, stem: str) -> None:
    ref = {k: np.load(FIXTURE / "reference" / f"{stem}_{k}.npy") for k in ("pred_depth", "pred_mask", "depth_m")}
    got = {
        "pred_depth": np.load(out_dir / f"{stem}_pred_depth.npy"),
        "pred_mask": np.load(out_dir / f"{stem}_pred_mask.npy"),
        "depth_m": np.load(out_dir / f"{stem}_depth.npy"),
    }
    away = np.abs(ref["pred_mask"] - 0.5) > TIE  # [H,2H]
    assert away.mean() > 0.99
    for k in ref:
        assert got[k].shape == ref[k].shape, (stem, k)
        err = _rel_err(got[k], ref[k])[away]
        assert err.max() < 1e-4, f"{stem} {k}: max relative error {err.max():.2e}"
    # both sides of the mask rule occur, so the rule itself is compared
    kept = (1 - ref["pred_mask"]) > 0.5
    assert 0 < kept.sum() < kept.size
    assert np.all(got["depth_m"][~kept & away] == 100.0)


@pytest.mark.slow
@needs_fixture
@pytest.mark.parametrize("h", [256, 512])
def test_predict_on_release_file_equals_daps_reference_outputs(release_file, tmp_path, h):
    images = [str(FIXTURE / "inputs" / f"{s}_{h}.png") for s in STEMS]
    out = tmp_path / "out"
    assert dap_main(["predict", *images, "--checkpoint", str(release_file), "--out", str(out), "--raw",
                     "--profile", "test"]) == 0
    for s in STEMS:
        _assert_matches_reference(out, f"{s}_{h}")


@pytest.mark.slow
@needs_fixture
def test_module_prefixed_release_file_gives_the_same_outputs(tmp_path):
    release = _write_release(tmp_path / "dp" / "model.pth", prefix="module.")
    assert all(k.startswith("module.") for k in torch.load(release, map_location="meta", weights_only=True))
    out = tmp_path / "out"
    image = str(FIXTURE / "inputs" / f"{STEMS[1]}_256.png")
    assert dap_main(["predict", image, "--checkpoint", str(release), "--out", str(out), "--raw", "--profile", "test"]) == 0
    _assert_matches_reference(out, f"{STEMS[1]}_256")


@needs_fixture
def test_release_layout_is_daps_key_order_and_shapes():
    from dap_model.models.dap_release import build_release_model, release_layout, release_model_config

    spec = json.loads((FIXTURE / "spec.json").read_text())
    sd = {e["key"]: torch.empty(e["shape"], device="meta") for e in spec["entries"]}
    cfg = release_model_config(sd)
    assert (cfg.backbone, cfg.taps, cfg.decoder_features, cfg.decoder_channels) == (
        "dap_release_vits16", [2, 5, 8, 11], 64, [48, 96, 192, 384])
    layout = release_layout(build_release_model(cfg))
    assert list(layout) == [e["key"] for e in spec["entries"]]
    assert all(layout[e["key"]] == tuple(e["shape"]) for e in spec["entries"])


@pytest.mark.slow
@needs_fixture
def test_missing_unexpected_and_misshaped_keys_are_named(release_file, tmp_path, capsys):
    sd = torch.load(release_file, map_location="cpu", weights_only=True)
    image = str(FIXTURE / "inputs" / f"{STEMS[0]}_256.png")
    cases = {
        "missing": lambda d: d.pop("core.mask_head.scratch.output_conv2.2.bias"),
        "unexpected": lambda d: d.__setitem__("core.extra.weight", torch.zeros(1)),
        "mis-shaped": lambda d: d.__setitem__("core.depth_head.projects.1.bias", torch.zeros(7)),
    }
    names = {"missing": "core.mask_head.scratch.output_conv2.2.bias", "unexpected": "core.extra.weight",
             "mis-shaped": "core.depth_head.projects.1.bias (7,) != (96,)"}
    for label, edit in cases.items():
        bad = dict(sd)
        edit(bad)
        path = tmp_path / f"{label}.pth"
        torch.save(bad, path)
        assert dap_main(["predict", image, "--checkpoint", str(path), "--out", str(tmp_path / "o"), "--profile", "test"]) == 2
        err = capsys.readouterr().err
        assert label in err and names[label] in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_a_pth_that_is_not_a_release_is_refused(tmp_path, capsys):
    path = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(2)}, path)
    image = tmp_path / "x.png"
    from dap_model.inference import save_png

    save_png(image, np.zeros((16, 32, 3), np.uint8))
    assert dap_main(["predict", str(image), "--checkpoint", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "neither a .safetensors checkpoint nor a DAP release" in capsys.readouterr().err


@pytest.mark.slow
@needs_fixture
def test_convert_and_register_then_predict_from_the_registry_matches_the_reference(release_file, tmp_path):
    from safetensors import safe_open

    conv = tmp_path / "converted"
    assert dap_main(["convert", str(release_file), "--out", str(conv), "--register", "--profile", "test"]) == 0
    assert (conv / "config.resolved.yaml").is_file() and (conv / "model.json").is_file()
    with safe_open(str(conv / "model.safetensors"), framework="pt") as fh:
        assert '"architecture":"dap_release"' in fh.metadata()["dap.model_config"].replace(" ", "")
    out = tmp_path / "out"
    image = str(FIXTURE / "inputs" / f"{STEMS[0]}_256.png")
    assert dap_main(["predict", image, "--checkpoint", "models:/dap-depth/1", "--out", str(out), "--raw",
                     "--profile", "test"]) == 0
    _assert_matches_reference(out, f"{STEMS[0]}_256")


@needs_fixture
@pytest.mark.slow
def test_finetune_from_release_loss_falls_and_a_killed_run_resumes_to_the_same_weights(release_file, tmp_path):
    """Stage 1 for 20 steps from the ViT-S fixture release on the `test` profile's data, twice: once
    straight, once SIGKILLed after its first checkpoint and restarted."""
    import mlflow
    from safetensors import safe_open
    from safetensors.torch import load_file

    from dap_model.config import load_config
    from dap_model.tracking import resolve_tracking_uri
    from dap_model.training import checkpoint as ckpt
    from tests.test_training import _cli_env, _killed_run_resumes_to_the_uninterrupted_weights, _train_cmd
    from tests.training_data import build_store

    project = tmp_path / "project"
    build_store(project / "data", h=32, n_train=8, shard_size=4)
    steps = 20
    _killed_run_resumes_to_the_uninterrupted_weights(
        lambda run_dir: [*_train_cmd(run_dir, steps), "--set", f"train.init_from={release_file}"],
        _cli_env(project), tmp_path, steps)
    straight = tmp_path / "straight"
    wb = load_file(str(straight / "final" / "model.safetensors"))
    # the release's network was trained (not the profile's), and it moved away from the release weights
    with safe_open(str(straight / "final" / "model.safetensors"), framework="pt") as fh:
        assert '"backbone":"dap_release_vits16"' in fh.metadata()["dap.model_config"].replace(" ", "")
    assert "architecture: dap_release" in (straight / "config.resolved.yaml").read_text()
    sd = torch.load(release_file, map_location="cpu", weights_only=True)
    assert not torch.equal(wb["depth_head.scratch.output_conv1.weight"], sd["core.depth_head.scratch.output_conv1.weight"])

    mlflow.set_tracking_uri(resolve_tracking_uri(load_config("test").mlflow))
    run_id = (straight / "mlflow_run_id").read_text().strip()
    client = mlflow.MlflowClient()
    losses = [m.value for m in sorted(client.get_metric_history(run_id, "train/loss"), key=lambda m: m.step)]
    assert len(losses) == steps
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    assert client.get_run(run_id).data.tags["dap.init_from"] == ckpt.file_sha256(release_file)


def test_ply_keeps_the_mask_rules_pixels_under_the_cap_on_the_subsample_grid_with_normals(tmp_path):
    """`dap predict --ply` from a project checkpoint: one point per kept pixel, at depth × ray, in the
    pixel's colour, with unit normals facing the camera."""
    from plyfile import PlyData

    from dap_model.config import load_config
    from dap_model.geometry import erp_rays
    from dap_model.inference import save_png
    from dap_model.models import build_model, save_model

    torch.manual_seed(0)
    model = build_model(load_config("test").model).eval()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
    with torch.no_grad():  # centre the random mask head: about half the pixels in range, in patches
        logits = model(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)["mask_logits"]
        model.mask_head.conv3.bias -= logits.median()
    ckpt = save_model(model, tmp_path / "ckpt")
    save_png(tmp_path / "pano.png", rgb)
    out = tmp_path / "out"
    args = ["predict", str(tmp_path / "pano.png"), "--checkpoint", str(ckpt), "--out", str(out), "--raw", "--profile", "test"]
    assert dap_main(args) == 0
    depth, pred_mask = np.load(out / "pano_depth.npy"), np.load(out / "pano_pred_mask.npy")
    cap = float(np.median(depth[depth > 0]))
    assert dap_main([*args, "--ply", "--normals", "--max-depth", str(cap), "--subsample", "2"]) == 0

    keep = (pred_mask <= 0.5) & (depth > 0) & (depth <= cap)
    assert np.all(depth[pred_mask > 0.5] == 0)  # the project's mask rule: 0 beyond range
    grid = np.zeros_like(keep)
    grid[::2, ::2] = True
    keep &= grid
    assert 0 < keep.sum() < grid.sum()
    v = PlyData.read(str(out / "pano.ply"))["vertex"]
    assert len(v) == keep.sum()
    pts = np.stack([v["x"], v["y"], v["z"]], 1)
    rays = erp_rays(32, 64).numpy()  # [H,W,3]
    np.testing.assert_allclose(pts, depth[keep][:, None] * rays[keep], rtol=1e-5, atol=1e-5)
    assert np.array_equal(np.stack([v["red"], v["green"], v["blue"]], 1), rgb[keep])
    n = np.stack([v["nx"], v["ny"], v["nz"]], 1)
    has = np.linalg.norm(n, axis=1) > 0
    assert has.any()
    np.testing.assert_allclose(np.linalg.norm(n[has], axis=1), 1, atol=1e-5)
    assert np.all((n[has] * pts[has]).sum(1) < 0)
