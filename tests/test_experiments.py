"""The experiments import the project normally, answer --help, and score through the evaluation package."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

MODULES = ["stages", "seeds", "distill", "summary", "web_look_factors"]


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
