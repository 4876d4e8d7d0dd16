"""An `npy`-layout benchmark of several source folders in the report (`real_dev`): relative roots,
the skip path, per-folder results, the constant-depth baseline through the one evaluation loop."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from dap_model.config import load_config
from tests._eval_support import constant_checkpoint, fresh_mlflow_db

H, W = 16, 32
GT = {"indoor_a": 4.0, "indoor_b": 1.0}  # folder -> constant ground-truth depth (metres)


def _write_pairs(root: Path) -> None:
    """Two source folders of npy pairs: indoor_a 2 pairs at 4 m, indoor_b 1 pair at 1 m (one row invalid)."""
    rng = np.random.default_rng(0)
    for folder, n in (("indoor_a", 2), ("indoor_b", 1)):
        d = root / folder
        d.mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(d / f"p{i}_rgb.png"), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
            depth = np.full((H, W), GT[folder], np.float32)
            depth[0] = 0
            np.save(d / f"p{i}_depth.npy", depth)


def _cfg(*extra: str):
    return load_config("test", ["eval.benchmarks.real_dev={format: npy, root: pairs, by_folder: true}",
                                "eval.benchmarks.labeled_test=null", "eval.benchmarks.web_test=null", *extra])


def test_profile_entries_add_to_the_default_benchmarks():
    cfg = load_config("test", ["eval.benchmarks.real_dev={format: npy, root: x}"])
    assert sorted(cfg.eval.benchmarks) == ["labeled_test", "real_dev", "web_test"]
    assert sorted(_cfg().eval.benchmarks) == ["real_dev"]
    for profile in ("tiny", "small"):
        spec = load_config(profile).eval.benchmarks["real_dev"]
        assert (spec.format, spec.root, spec.by_folder) == ("npy", "../shared/real/pairs", True)
    assert load_config("test").eval.baseline_depths_m == [2.0]


def test_missing_root_is_skipped_with_a_logged_reason():
    from dap_model.errors import InputError
    from dap_model.evaluation.report import configured_benchmarks, run_benchmark_report
    from dap_model.evaluation.runs import ModelEntry

    cfg = _cfg()
    readers, skipped = configured_benchmarks(cfg, None)
    project = Path(os.environ["DAP_PROJECT_DIR"])
    assert readers == {} and skipped["real_dev"] == f"{project / 'pairs'}: benchmark root does not exist"
    fresh_mlflow_db()
    lines: list[str] = []
    entry = ModelEntry("dap_depth_model", "stage3", str(constant_checkpoint(2.0)))
    with pytest.raises(InputError, match="no benchmark could be read: real_dev: .*does not exist"):
        run_benchmark_report(cfg, None, [entry], final="dap_depth_model", log=lines.append)
    assert lines == [f"real_dev: skipped ({project / 'pairs'}: benchmark root does not exist)"]


def test_real_dev_per_folder_with_the_constant_baseline():
    from dap_model.evaluation.report import configured_benchmarks, evaluate_baselines, evaluate_models, metric_table
    from dap_model.evaluation.runs import ModelEntry

    project = Path(os.environ["DAP_PROJECT_DIR"])
    _write_pairs(project / "pairs")  # the relative root resolves against the project folder
    cfg = _cfg("eval.baseline_depths_m=[2.0, 3.0]")
    readers, skipped = configured_benchmarks(cfg, None)
    assert list(readers) == ["real_dev"] and skipped == {}
    entry = ModelEntry("dap_depth_model", "stage3", str(constant_checkpoint(4.0)))
    results = evaluate_models(cfg, [entry], readers, log=lambda _: None)
    results.update(evaluate_baselines(cfg, readers, log=lambda _: None))
    assert sorted(results) == ["constant 2 m", "constant 3 m", "dap_depth_model"]

    def abs_rel(pred_m: float, gt_m: float) -> float:
        return abs(pred_m - gt_m) / gt_m

    for name, pred_m in (("constant 2 m", 2.0), ("constant 3 m", 3.0), ("dap_depth_model", 4.0)):
        r = results[name]["real_dev"]
        per_image = [abs_rel(pred_m, 4.0)] * 2 + [abs_rel(pred_m, 1.0)]
        assert r.metrics["n_images"] == 3
        assert r.metrics["abs_rel"] == pytest.approx(np.mean(per_image), rel=1e-3)
        assert r.aligned["abs_rel"] == pytest.approx(0.0, abs=1e-3)  # constant gt: only scale is wrong
        assert sorted(r.groups) == ["indoor_a", "indoor_b"]
        for folder, gt_m in GT.items():
            g = r.groups[folder]
            assert g.benchmark == f"real_dev/{folder}"
            assert g.metrics["n_images"] == (2 if folder == "indoor_a" else 1)
            assert g.metrics["abs_rel"] == pytest.approx(abs_rel(pred_m, gt_m), rel=1e-3)
        flat = r.flat()
        assert flat["real_dev/indoor_b/abs_rel"] == pytest.approx(abs_rel(pred_m, 1.0), rel=1e-3)
        assert "real_dev/indoor_b/abs_rel_aligned" in flat and "real_dev/indoor_b/abs_rel_0-10m" not in flat

    table = metric_table(results, [entry], cfg)
    rows = {(b, m): row for b, m, row in zip(table["benchmark"], table["model"], table.to_dict("records"))}
    assert len(rows) == 9  # 3 predictors × (all + 2 folders)
    assert rows[("real_dev/indoor_b", "constant 2 m")]["stage"] == "baseline"
    assert rows[("real_dev/indoor_b", "constant 2 m")]["abs_rel"] == pytest.approx(1.0, rel=1e-3)
    assert rows[("real_dev", "dap_depth_model")]["stage"] == "stage3"
    assert list(table.columns[5:7]) == ["abs_rel", "abs_rel_aligned"]


def test_constant_depth_model_is_a_predictor():
    import torch

    from dap_model.errors import ConfigError
    from dap_model.evaluation.baseline import ConstantDepthModel
    from dap_model.inference import predict_batch

    rgb = np.zeros((8, 16, 3), np.uint8)
    (pred,) = predict_batch(ConstantDepthModel(2.5), [rgb], 4, [(8, 16)], "bilinear_valid", torch.device("cpu"))
    assert pred.shape == (8, 16) and np.allclose(pred, 2.5)
    with pytest.raises(ConfigError, match="must be > 0"):
        ConstantDepthModel(0.0)


def test_row_prior_fits_the_median_log_depth_per_latitude_band_and_predicts_it():
    import torch

    from dap_model.errors import ConfigError
    from dap_model.evaluation.baseline import RowPriorModel
    from dap_model.inference import predict_batch

    # two 8x16 maps, each row constant; the second twice the first: band means are geometric means
    rows = np.array([1.0, 2.0, 3.0, 4.0, 4.0, 3.0, 2.0, 1.0])
    a = np.repeat(rows[:, None], 16, axis=1)
    b = 2 * a
    b[:, :3] = 0.0  # invalid pixels take no part
    b[0, 5:9] = np.nan
    prior = RowPriorModel.fit([a, b], bands=4)
    # band k holds rows 2k, 2k+1: per map median log over the band, then the mean over maps
    expect = [np.mean([np.median(np.log(m[2 * k : 2 * k + 2][np.isfinite(m[2 * k : 2 * k + 2]) & (m[2 * k : 2 * k + 2] > 0)]))
                       for m in (a, b)]) for k in range(4)]
    assert np.allclose(prior.log_depth.numpy(), expect, atol=1e-6)
    # at the bands' own resolution the prediction is exp(profile) on every row, the same across columns
    out = prior(torch.zeros(2, 3, 4, 8))
    assert torch.allclose(out["depth"][0, 0], torch.exp(prior.log_depth)[:, None].expand(4, 8))
    assert bool(prior.in_range(out).all())
    # at twice the resolution: rows interpolated linearly in latitude between band centres, ends held
    (pred,) = predict_batch(prior, [np.zeros((8, 16, 3), np.uint8)], 8, [(8, 16)], "bilinear_valid", torch.device("cpu"))
    lp = prior.log_depth.numpy()
    assert np.allclose(np.log(pred[:, 0]), [lp[0], 0.75 * lp[0] + 0.25 * lp[1], 0.25 * lp[0] + 0.75 * lp[1],
                                            0.75 * lp[1] + 0.25 * lp[2], 0.25 * lp[1] + 0.75 * lp[2],
                                            0.75 * lp[2] + 0.25 * lp[3], 0.25 * lp[2] + 0.75 * lp[3], lp[3]], atol=1e-5)
    # a band with no valid depth anywhere (an outdoor sky) is out of range: depth 0 under the mask rule
    sky = a.copy()
    sky[:2] = 0.0
    open_top = RowPriorModel.fit([sky], bands=4)
    assert np.isnan(open_top.log_depth[0].item()) and np.isfinite(open_top.log_depth[1:].numpy()).all()
    out = open_top(torch.zeros(1, 3, 8, 16))
    kept = open_top.apply_mask_rule(out)[0, 0]
    assert (kept[:2] == 0).all() and (kept[2:] > 0).all()
    with pytest.raises(ConfigError, match="fewer than 2"):
        RowPriorModel.fit([np.zeros((8, 16))], bands=4)
    with pytest.raises(ConfigError, match="finite bands"):
        RowPriorModel([1.0, float("nan")])


def test_report_baselines_add_a_row_prior_fitted_on_the_labelled_train_split(tmp_path):
    from dap_model.data.shards import Sample, ShardWriter
    from dap_model.evaluation.report import configured_benchmarks, evaluate_baselines
    from dap_model.storage import LocalStore

    project = Path(os.environ["DAP_PROJECT_DIR"])
    _write_pairs(project / "pairs")  # gt 4 m (indoor_a, 2 images) and 1 m (indoor_b)
    rgb = np.full((8, 16, 3), 90, np.uint8)
    with ShardWriter(tmp_path / "store" / "labeled", "train", 8) as w:
        w.write(Sample("in0", rgb, np.full((8, 16), 2.0, np.float32), meta={"domain": "indoor"}))
        w.write(Sample("in1", rgb, np.full((8, 16), 8.0, np.float32), meta={"domain": "indoor"}))
        w.write(Sample("out0", rgb, np.full((8, 16), 40.0, np.float32), meta={"domain": "outdoor"}))
    with ShardWriter(tmp_path / "store" / "labeled", "test", 8) as w:  # not fitted on
        w.write(Sample("t0", rgb, np.full((8, 16), 0.5, np.float32), meta={"domain": "indoor"}))
    store = LocalStore(tmp_path / "store")
    cfg = _cfg("eval.baseline_depths_m=[2.0]", "eval.baseline_row_priors=[indoor, outdoor]", "train.height=8")
    readers, _ = configured_benchmarks(cfg, None)
    lines: list[str] = []
    results = evaluate_baselines(cfg, readers, log=lines.append, store=store)
    assert sorted(results) == ["constant 2 m", "row prior indoor", "row prior outdoor"]
    for name, pred_m in (("row prior indoor", 4.0), ("row prior outdoor", 40.0)):  # indoor: exp(mean(log 2, log 8))
        r = results[name]["real_dev"]
        assert r.metrics["abs_rel"] == pytest.approx(np.mean([abs(pred_m - 4) / 4] * 2 + [abs(pred_m - 1) / 1]), rel=1e-3)
    # without the store, or with no labelled depth of a domain, the row priors are left out
    assert sorted(evaluate_baselines(cfg, readers, log=lambda _: None)) == ["constant 2 m"]
    empty = LocalStore(tmp_path / "empty")
    assert sorted(evaluate_baselines(_cfg("eval.baseline_row_priors=[indoor]"), readers, log=lines.append, store=empty)) == ["constant 2 m"]
    assert "row prior indoor: skipped (no labelled train depth of that domain)" in lines
