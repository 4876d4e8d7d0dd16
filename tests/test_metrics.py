"""Depth metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dap_model.evaluation.metrics import MetricAccumulator, depth_metrics, range_binned_errors

# valid pixels (pred, gt): (1,1) (2,1) (4,5) (8,10); the rest are excluded:
# gt 0, gt NaN, gt 150 > cap, pred NaN on a valid gt
PRED = np.array([[1.0, 2.0, 4.0, 8.0], [3.0, 3.0, 3.0, np.nan]])
GT = np.array([[1.0, 1.0, 5.0, 10.0], [0.0, np.nan, 150.0, 2.0]])
HAND = {
    "abs_rel": (0 + 1 + 0.2 + 0.2) / 4,
    "sq_rel": (0 + 1 / 1 + 1 / 5 + 4 / 10) / 4,
    "rmse": math.sqrt((0 + 1 + 1 + 4) / 4),
    "mae": (0 + 1 + 1 + 2) / 4,
    "rmse_log": math.sqrt((0 + math.log(2) ** 2 + 2 * math.log(0.8) ** 2) / 4),
    "delta1": 1 / 4,  # ratios 1, 2, 1.25, 1.25: δ uses a strict "<"
    "delta2": 3 / 4,
    "delta3": 3 / 4,  # 2 > 1.25³ = 1.953
}


def test_depth_metrics_match_hand_computation():
    m = depth_metrics(PRED, GT)
    assert m["n_valid"] == 4
    for k, v in HAND.items():
        assert m[k] == pytest.approx(v, rel=1e-12), k
    assert m["rmse"] != pytest.approx(m["mae"])  # true RMSE, not DAP's script's MAE


def test_torch_and_batched_inputs_agree_with_numpy():
    m_np = depth_metrics(PRED, GT)
    m_t = depth_metrics(torch.tensor(PRED, dtype=torch.float32)[None, None], torch.tensor(GT)[None, None])
    for k in HAND:
        assert m_t[k] == pytest.approx(m_np[k], rel=1e-6)


def test_cap_and_no_valid_pixels():
    m = depth_metrics(PRED, GT, cap=4.0)  # only (1,1), (2,1) remain
    assert m["n_valid"] == 2 and m["abs_rel"] == pytest.approx(0.5)
    empty = depth_metrics(np.ones((2, 4)), np.zeros((2, 4)))
    assert empty["n_valid"] == 0 and math.isnan(empty["abs_rel"])


def test_median_alignment_removes_global_scale_only_when_asked():
    gt = np.array([[1.0, 2.0], [4.0, 8.0]])
    assert depth_metrics(3 * gt, gt)["abs_rel"] == pytest.approx(2.0)
    aligned = depth_metrics(3 * gt, gt, align_median=True)
    assert aligned["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert aligned["delta1"] == 1.0


def test_median_alignment_scales_by_the_predicted_pixels_and_keeps_masked_zeros_wrong():
    # 6 of 10 valid pixels masked to 0 (the inference rule's "no depth"), the rest 3x too deep:
    # the scale comes from the 4 predicted pixels, the zeros stay zeros (AbsRel 1 each)
    gt = np.array([[1.0, 2.0, 4.0, 8.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    pred = np.where(np.arange(10) < 4, 3 * gt, 0.0)
    for m in (depth_metrics(pred, gt, align_median=True),
              MetricAccumulator(align_median=True).update(pred, gt)[0]):
        assert m["abs_rel"] == pytest.approx(0.6, abs=1e-5)
        assert m["delta1"] == pytest.approx(0.4)
    nothing = depth_metrics(np.zeros_like(gt), gt, align_median=True)  # no pixel to align on
    assert nothing["abs_rel"] == pytest.approx(1.0, abs=1e-5)


def test_accumulator_per_image_vs_pooled():
    acc = MetricAccumulator()
    acc.update(PRED, GT)
    acc.update(np.full((2, 4), 2.0)[None, None], np.ones((1, 1, 2, 4)))  # 8 pixels, all abs_rel 1
    acc.update(np.ones((2, 4)), np.zeros((2, 4)))  # no valid pixel: skipped
    res = acc.compute()
    assert res["per_image"]["n_images"] == 2 and acc.n_skipped == 1
    assert res["per_image"]["abs_rel"] == pytest.approx((0.35 + 1.0) / 2)
    assert res["pooled"]["abs_rel"] == pytest.approx((1.4 + 8 * 1.0) / 12)
    assert res["pooled"]["n_pixels"] == 12
    assert res["per_image"]["rmse"] == pytest.approx((math.sqrt(1.5) + 1.0) / 2)
    assert res["pooled"]["rmse"] == pytest.approx(math.sqrt((6 + 8 * 1.0) / 12))


def test_range_binned_errors():
    gt = np.array([[5.0, 15.0, 30.0, 80.0, 120.0, 0.0]])
    pred = np.array([[6.0, 15.0, 15.0, 80.0, 1.0, 1.0]])
    bins = range_binned_errors(pred, gt)
    assert list(bins) == ["0-10", "10-20", "20-50", "50-100"]
    assert bins["0-10"]["abs_rel"] == pytest.approx(0.2) and bins["0-10"]["n_pixels"] == 1
    assert bins["10-20"]["abs_rel"] == 0.0
    assert bins["20-50"]["mae"] == pytest.approx(15.0)
    assert bins["50-100"]["n_pixels"] == 1
    none = range_binned_errors(pred, np.full_like(gt, 5.0))
    assert none["50-100"]["n_pixels"] == 0 and math.isnan(none["50-100"]["abs_rel"])


def test_scorer_scale_aligned_and_scene_kinds():
    from dap_model.evaluation.evaluate import Scorer

    gt = np.linspace(1.0, 30.0, 64, dtype=np.float32).reshape(4, 16)
    gt[0, :3] = 0  # invalid
    s = Scorer(cap=100.0, figure_samples=1)
    s.add("a", 2 * gt, gt, {"kind": "city", "domain": "outdoor"}, np.zeros((4, 16, 3), np.uint8))
    s.add("b", gt.copy(), gt, {"domain": "indoor"})  # no kind: the domain names the group
    s.add("c", gt, np.zeros_like(gt), {"kind": "city"})  # no valid gt: skipped, in no group
    s.add("d", 0.5 * gt, gt)  # no metadata: scored, in no group
    r = s.result("web_test")
    assert r.metrics["n_images"] == 3 and r.n_skipped == 1
    assert r.metrics["abs_rel"] == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert r.aligned["abs_rel"] == pytest.approx(0.0, abs=1e-9)  # global scale errors only
    assert r.by_kind == {"city": {"abs_rel": 1.0, "abs_rel_aligned": 0.0, "median_log_ratio": round(math.log(2), 4), "n": 1},
                         "indoor": {"abs_rel": 0.0, "abs_rel_aligned": 0.0, "median_log_ratio": 0.0, "n": 1}}
    flat = r.flat()
    assert flat["web_test/abs_rel"] == r.metrics["abs_rel"] and flat["web_test/n_images"] == 3
    assert flat["web_test/abs_rel_aligned"] == pytest.approx(0.0, abs=1e-9)
    assert flat["web_test/city/abs_rel"] == 1.0 and "web_test/city/n" not in flat
    assert flat["web_test/abs_rel_20-50m"] == pytest.approx(r.range_bins["20-50"]["abs_rel"])
    assert "web_test/abs_rel_50-100m" not in flat  # no pixel in that range
    assert [f.key for f in r.figures] == ["a"]


def test_colourise_and_panel():
    from dap_model.evaluation.figures import colourise, panel

    d = np.array([[0.0, 1.0, 2.0, np.nan]], np.float32)
    img = colourise(d, "gray", vmax=2.0)
    assert img.shape == (1, 4, 3) and img.dtype == np.uint8
    assert (img[0, 0] == 0).all() and (img[0, 3] == 0).all()  # invalid is black
    assert img[0, 1, 0] == 128 and img[0, 2, 0] == 255  # linear in depth up to vmax
    gt = np.full((4, 8), 5.0, np.float32)
    p = panel(np.zeros((8, 16, 3), np.uint8), gt, gt, cap_m=100.0, cmap="gray")
    assert p.shape == (12, 8, 3)
    assert (p[4:8] == p[8:12]).all()  # one colour scale for ground truth and prediction


def test_withheld_ground_truth_measures_pseudo_labels(tmp_path):
    import pandas as pd

    from dap_model.config import load_config
    from dap_model.data.shards import Sample, ShardWriter
    from dap_model.evaluation.withheld import pseudo_label_errors, rank_correlation, selection_error
    from dap_model.storage import LocalStore

    store = LocalStore(tmp_path)
    rgb = np.zeros((4, 8, 3), np.uint8)
    gt = np.full((4, 8), 2.0, np.float32)
    with ShardWriter(tmp_path / "web" / "gt", "gt", shard_size=8) as wr:
        for i in range(4):
            wr.write(Sample(f"k{i}", rgb, gt))
    with ShardWriter(tmp_path / "pseudo" / "stage1", "pseudo", shard_size=8) as wr:
        for i in range(5):  # k4 has no withheld ground truth
            wr.write(Sample(f"k{i}", rgb, np.full((2, 4), 2.0 * (1 + i / 4), np.float32)))
    pd.DataFrame({"key": [f"k{i}" for i in range(5)], "shard": wr.written[0][0]}).to_parquet(
        tmp_path / "pseudo" / "stage1" / "manifest.parquet")
    err = pseudo_label_errors(load_config("test"), store, "pseudo/stage1")
    assert list(err["key"]) == ["k0", "k1", "k2", "k3"] and set(err["gt_prefix"]) == {"web/gt"}
    assert err["abs_rel"].tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert err["abs_rel_aligned"].tolist() == pytest.approx([0.0] * 4)
    scores = pd.DataFrame({"key": [f"k{i}" for i in range(5)], "score": [0.9, 0.7, 0.5, 0.3, 0.1]})
    rc = rank_correlation(scores, err)
    assert rc["n"] == 4 and rc["spearman"] == pytest.approx(-1.0) and rc["n_web_gt"] == 4
    sel = selection_error(err, ["k0", "k1"])
    assert sel["true_abs_rel_selected"] == pytest.approx(0.125) and sel["true_abs_rel_all"] == pytest.approx(0.375)
    assert selection_error(err.iloc[:0], ["k0"]) == {}
