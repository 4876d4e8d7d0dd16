"""The experiments import the project normally, answer --help, and score through the evaluation package."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

MODULES = ["stages", "seeds", "distill", "summary", "web_look_factors", "backbones", "fit", "row_prior"]


@pytest.mark.parametrize("name", MODULES)
def test_help(name, monkeypatch, capsys):
    mod = importlib.import_module(f"experiments.{name}")
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    with pytest.raises(SystemExit) as exit_:
        mod.main()
    assert exit_.value.code == 0 and "usage:" in capsys.readouterr().out


def _result(seed: int, web1: float, web3: float) -> dict:
    split = lambda a: {"abs_rel": a, "abs_rel_aligned": a / 2, "delta1": 0.5}  # noqa: E731
    return {"setting": {"train": {"seed": seed}},
            "results": {"stage1": {"labeled_test": split(0.4), "web_test": split(web1)},
                        "stage3": {"labeled_test": split(0.5), "web_test": split(web3)}}}


def test_summary_pairs_stage3_with_stage1_by_seed(tmp_path):
    import json

    from experiments.summary import load, stage_table

    paths = []
    for seed, w1, w3 in ((1, 0.6, 0.5), (0, 0.5, 0.6)):
        paths.append(tmp_path / f"s{seed}.json")
        paths[-1].write_text(json.dumps(_result(seed, w1, w3)))
    text = stage_table(load(paths), "x")
    assert "| stage1 | 0,1 | 0.400 ± 0.000 | 0.550 ± 0.071 |" in text
    assert "| 0 | 0.500 | 0.600 | +0.100 |" in text and "| 1 | 0.600 | 0.500 | -0.100 |" in text
    assert "in 1 of 2 seeds" in text


def test_web_look_scale_errors_leave_out_invalid_predictions():
    import torch

    from experiments.web_look_factors import scale_errors

    class Fixed(torch.nn.Module):  # predicts 3 × the true depth, "invalid" (0) on the left half
        def predict(self, x):  # x [N,3,h,2h] -> [N,1,h,2h]
            d = torch.full((x.shape[0], 1, x.shape[2], x.shape[3]), 12.0)
            d[..., : x.shape[3] // 2] = 0
            return d

    gt = np.full((16, 32), 4.0, np.float32)
    r = scale_errors(Fixed(), [np.zeros((16, 32, 3), np.uint8)], [gt], 8, 100.0)
    assert r["frames"] == 1 and r["abs_rel"] == pytest.approx(2.0) and r["median_log_ratio"] == pytest.approx(np.log(3))


def _real_pairs(root):
    """Two source folders of one 8×16 pair each: depth 4 m in `a/`, 2 m in `b/` (npy layout)."""
    from PIL import Image

    for folder, depth in (("a", 4.0), ("b", 2.0)):
        (root / folder).mkdir(parents=True)
        Image.fromarray(np.full((8, 16, 3), 128, np.uint8)).save(root / folder / "x_rgb.png")
        np.save(root / folder / "x_depth.npy", np.full((8, 16), depth, np.float32))
    return root


def test_real_pairs_scored_per_folder_beside_constant_baselines(tmp_path):
    from dap_model.config import load_config
    from experiments.common import open_real, real_baselines, real_flat, real_table

    cfg = load_config("tiny", ["eval.baseline_depths_m=[3.0]"])
    assert open_real(tmp_path / "missing") is None
    base = real_baselines(cfg, open_real(_real_pairs(tmp_path / "pairs")))
    assert list(base) == ["constant 1.5 m", "constant 2 m", "constant 3 m"]
    two = base["constant 2 m"]  # 2 m against 4 m (AbsRel 0.5, δ1 0) and against 2 m (exact)
    assert two["by_folder"]["a"] == pytest.approx({"abs_rel": 0.5, "delta1": 0.0, "abs_rel_aligned": 0.0, "n_images": 1})
    assert two["by_folder"]["b"]["abs_rel"] == pytest.approx(0.0) and two["by_folder"]["b"]["delta1"] == 1.0
    assert two["abs_rel"] == pytest.approx(0.25) and two["delta1"] == pytest.approx(0.5) and two["n_images"] == 2
    assert real_flat(two)["real_dev/a/abs_rel"] == pytest.approx(0.5)
    table = real_table(base)
    assert table[0].startswith("| model | real AbsRel (2 pairs) |") and "a AbsRel / aligned / δ1" in table[0]
    assert "| constant 2 m | 0.2500 | 0.0000 | 0.5000 | 0.500 / 0.000 / 0.000 | 0.000 / 0.000 / 1.000 |" in table


def _real(abs_rel: float, delta1: float, folder_abs_rel: float) -> dict:
    one = {"abs_rel": abs_rel, "abs_rel_aligned": abs_rel / 2, "delta1": delta1, "n_images": 12}
    return {**one, "by_folder": {"f": {**one, "abs_rel": folder_abs_rel, "n_images": 5}}}


def test_summary_pairs_real_scores_by_seed(tmp_path):
    import json

    from experiments.summary import load, main, paired_differences

    paths = []
    for seed, (s1, s2, s3) in ((0, (0.5, 0.4, 0.6)), (1, (0.6, 0.5, 0.3)), (2, (0.4, 0.45, 0.35))):
        r = _result(seed, 0.6, 0.5)
        for stage, a in (("stage1", s1), ("stage2", s2), ("stage3", s3)):
            r["results"].setdefault(stage, r["results"]["stage1"] | {})["real_dev"] = _real(a, 1 - a, a + 0.1)
        r["real_baselines"] = {"constant 2 m": _real(0.387, 0.366, 0.3)}
        paths.append(tmp_path / f"s{seed}.json")
        paths[-1].write_text(json.dumps(r))
    diffs = {(d["later"], d["metric"], d["folder"]): d for d in paired_differences(load(paths))}
    d31 = diffs[("stage3", "abs_rel", None)]
    assert d31["by_seed"] == pytest.approx({0: 0.1, 1: -0.3, 2: -0.05})
    assert d31["mean"] == pytest.approx(-0.25 / 3) and d31["later_better"] == 2 and d31["n"] == 3
    assert diffs[("stage3", "delta1", None)]["later_better"] == 2  # δ1: higher is better
    assert diffs[("stage2", "abs_rel", "f")]["by_seed"] == pytest.approx({0: -0.1, 1: -0.1, 2: 0.05})
    assert not any(d["earlier"] == "stage1_3x_steps" for d in diffs.values())  # absent from the results
    out = tmp_path / "t.md"
    import sys as _sys

    argv, _sys.argv = _sys.argv, ["summary", *map(str, paths), "--out", str(out)]
    try:
        assert main() == 0
    finally:
        _sys.argv = argv
    text = out.read_text()
    assert "| stage3 − stage1 | abs_rel | +0.100 | -0.300 | -0.050 | -0.083 ± 0.202 | 2 of 3 |" in text
    assert "| stage1 | 0,1,2 | 0.500 ± 0.100 |" in text and "| constant 2 m | 0.3870 |" in text
    assert json.loads(out.with_suffix(".json").read_text())["real_paired_differences"][0]["later"] == "stage2"


def test_stage_evaluation_adds_the_real_pairs(tmp_path):
    from dap_model.config import load_config
    from dap_model.models import build_model, load_model, save_model
    from dap_model.storage import LocalStore
    from experiments.common import open_real, score_real
    from experiments.stages import evaluate

    cfg = load_config("test")
    model_file = save_model(build_model(cfg.model), tmp_path / "m", cfg.model)
    reader = open_real(_real_pairs(tmp_path / "pairs"))
    res, flat = evaluate(cfg, LocalStore(tmp_path / "store"), model_file, reader)
    want = score_real(cfg, load_model(model_file).eval(), reader)
    assert set(res) == {"real_dev"} and set(res["real_dev"]["by_folder"]) == {"a", "b"}
    assert res["real_dev"]["abs_rel"] == pytest.approx(want["abs_rel"])
    assert flat["real_dev/b/delta1"] == pytest.approx(want["by_folder"]["b"]["delta1"])
    assert evaluate(cfg, LocalStore(tmp_path / "store"), model_file)[0] == {}  # no real pairs: test splits only


def test_fit_trains_on_one_frame_per_sequence_and_records_the_curve(tmp_path, monkeypatch):
    import json

    from experiments import fit
    from tests.training_data import build_store

    root = build_store(tmp_path / "data", h=16, n_train=6)
    out = tmp_path / "fit.json"
    argv = ["fit", "--profile", "test", "--data", str(root), "--n", "3", "--steps", "5", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    assert fit.main() == 0
    monkeypatch.setattr(sys, "argv", [*argv, "--lr", "1e-4", "--network", "unet-gn"])
    assert fit.main() == 0  # a second run appends
    rows = json.loads(out.read_text())
    assert [r["lr"] for r in rows] == [1e-3, 1e-4] and len(rows[0]["keys"]) == 3 == len(set(rows[0]["keys"]))
    assert [r["network"] for r in rows] == ["profile", "unet-gn"] and rows[1]["keys"] == rows[0]["keys"]
    assert rows[1]["curve"][-1]["fit_abs_rel"] != rows[0]["curve"][-1]["fit_abs_rel"]
    curve = rows[0]["curve"]
    assert [c["step"] for c in curve] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(c["fit_abs_rel"]) and c["fit_abs_rel"] > 0 and c["skipped_steps"] == 0 for c in curve)


def test_row_prior_fits_the_labelled_train_split_per_domain_and_scores_the_real_pairs(tmp_path, monkeypatch):
    import json

    from dap_model.data.shards import Sample, ShardWriter
    from experiments import row_prior

    rows = np.linspace(1.0, 3.0, 8, dtype=np.float32)  # each indoor row at one depth
    rgb = np.full((8, 16, 3), 100, np.uint8)
    with ShardWriter(tmp_path / "data" / "labeled", "train", 8) as w:
        for i in range(2):
            w.write(Sample(f"in{i}", rgb, np.repeat(rows[:, None], 16, axis=1) * (i + 1), meta={"domain": "indoor"}))
        w.write(Sample("out0", rgb, np.full((8, 16), 50.0, np.float32), meta={"domain": "outdoor"}))
    with ShardWriter(tmp_path / "data" / "labeled", "test", 8) as w:  # not fitted on
        w.write(Sample("t0", rgb, np.full((8, 16), 0.1, np.float32), meta={"domain": "indoor"}))
    out = tmp_path / "row_prior.md"
    monkeypatch.setattr(sys, "argv", ["row_prior", "--profile", "test", "--data", str(tmp_path / "data"), "--set", "train.height=8",
                                      "--real", str(_real_pairs(tmp_path / "pairs")), "--out", str(out)])
    assert row_prior.main() == 0
    res = json.loads(out.with_suffix(".json").read_text())
    indoor = res["profiles_log_depth"]["row prior indoor"]
    assert np.allclose(indoor, np.log(rows) + 0.5 * np.log(2.0), atol=1e-5)  # geometric mean of x1 and x2
    assert np.allclose(res["profiles_log_depth"]["row prior outdoor"], np.log(50.0), atol=1e-5)
    assert set(res["real"]) >= {"row prior all", "constant 2 m"}
    # the outdoor prior (50 m) against pairs at 4 m and 2 m: AbsRel (11.5 + 24) / 2
    assert res["real"]["row prior outdoor"]["abs_rel"] == pytest.approx(17.75, rel=1e-4)
    assert "| row prior indoor |" in out.read_text()


def test_row_split_keeps_a_models_row_means_or_swaps_in_the_prior_rows():
    import torch

    from dap_model.evaluation.baseline import RowPriorModel
    from experiments.row_prior import RowSplit

    r, c = torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([0.0, 0.4, -0.4, 0.8, 0.2, -0.2, 0.6, -0.6])  # mean(c) = 0.1

    class Fixed(torch.nn.Module):  # log depth = r[row] + c[col]
        patch_size = 1

        def forward(self, x):
            return {"depth": (r[:, None] + c[None, :]).exp()[None, None].expand(x.shape[0], 1, 4, 8)}

    prior = RowPriorModel([0.5, 0.5, -1.0, -1.0])  # two bands; rows 0-1 in the first, 2-3 in the second
    x = torch.zeros(2, 3, 4, 8)
    flat = RowSplit(Fixed(), prior, "flat")(x)["depth"].log()
    assert torch.allclose(flat, (r[:, None] + 0.1).expand(4, 8)[None, None].expand(2, 1, 4, 8), atol=1e-6)
    swapped = RowSplit(Fixed(), prior, "prior")(x)["depth"].log()
    prior_rows = prior(x)["depth"].log()[0, 0, :, :1]  # [4,1]
    assert torch.allclose(swapped[0, 0], c[None, :] - 0.1 + prior_rows, atol=1e-6)
    assert RowSplit(Fixed(), prior, "flat").in_range(RowSplit(Fixed(), prior, "flat")(x)).all()


def test_layout_depth_puts_every_pixel_on_the_floor_the_ceiling_or_the_wall():
    """Depth rendered from a round room (wall 2.5 m away, floor 1.5 m below, ceiling 1.2 m above):
    each ray's 3-D point lies on the nearest of the three surfaces, and the surfaces meet where the
    floor and ceiling edges are (tan φ = −1.5/2.5 and 1.2/2.5)."""
    import math

    import torch

    from experiments.layout import layout_depth

    h = 180
    d = layout_depth(torch.full((1, 4), math.log(2.5)), torch.tensor([math.log(1.5)]), torch.tensor([math.log(1.2)]), h)[0, 0, :, 0]
    lat = torch.tensor([math.pi / 2 - (i + 0.5) * math.pi / h for i in range(h)], dtype=torch.float32)
    y, r = d * lat.sin(), d * lat.cos()  # height above the camera, horizontal distance
    floor, ceiling = lat < -math.atan(1.5 / 2.5), lat > math.atan(1.2 / 2.5)
    assert torch.allclose(y[floor], torch.tensor(-1.5), atol=1e-4) and (r[floor] <= 2.5 + 1e-4).all()
    assert torch.allclose(y[ceiling], torch.tensor(1.2), atol=1e-4) and (r[ceiling] <= 2.5 + 1e-4).all()
    wall = ~(floor | ceiling)
    assert torch.allclose(r[wall], torch.tensor(2.5), atol=1e-4) and ((y[wall] >= -1.5 - 1e-4) & (y[wall] <= 1.2 + 1e-4)).all()


@pytest.mark.slow
def test_layout_trains_on_the_indoor_train_split_and_scores_the_real_pairs(tmp_path, monkeypatch):
    import json

    from dap_model.data.shards import Sample, ShardWriter
    from experiments import layout

    rgb = np.random.default_rng(0).integers(0, 255, (16, 32, 3), dtype=np.uint8)
    with ShardWriter(tmp_path / "data" / "labeled", "train", 8) as w:
        for i in range(3):
            w.write(Sample(f"in{i}", rgb, np.full((16, 32), 2.0 + i, np.float32), meta={"domain": "indoor"}))
        w.write(Sample("out0", rgb, np.full((16, 32), 50.0, np.float32), meta={"domain": "outdoor"}))
    out = tmp_path / "layout.md"
    monkeypatch.setattr(sys, "argv", ["layout", "--profile", "test", "--data", str(tmp_path / "data"), "--set", "train.height=16",
                                      "--steps", "4", "--batch", "2", "--real", str(_real_pairs(tmp_path / "pairs")),
                                      "--save", str(tmp_path / "w"), "--out", str(out)])
    assert layout.main() == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["indoor_train"] == 3  # the outdoor panorama is left out
    assert set(res["real"]) >= {"layout, seed 0", "row prior indoor", "constant 2 m"}
    assert res["real"]["layout, seed 0"]["n_images"] == 2 and (tmp_path / "w" / "layout_seed0.safetensors").is_file()
    monkeypatch.setattr(sys, "argv", [*sys.argv, "--residual-l1", "0.1"])
    assert layout.main() == 0
    assert "layout + residual (L1 0.1), seed 0" in json.loads(out.with_suffix(".json").read_text())["real"]
