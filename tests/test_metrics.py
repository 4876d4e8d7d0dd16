"""Depth metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dap_model.metrics import MetricAccumulator, depth_metrics, range_binned_errors

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
