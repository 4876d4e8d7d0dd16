"""Measurement against withheld ground truth: the true depth of pool samples that the web-video
and synthesis paths keep aside (`web/gt/`, `synth/gt/`). Only measurement code reads it (the
experiments, the tests); product curation and training never do.

- `pseudo_label_errors`: each pseudo-label's true AbsRel / RMSE / δ1 and scale-aligned AbsRel.
- `rank_correlation`: Spearman rho between the discriminator's realism score and that error
  (a useful score correlates negatively), overall, per GT source and against the aligned error.
- `selection_error`: true error of the curated selection against the whole pool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dap_model import layout
from dap_model.config import DapConfig
from dap_model.evaluation.metrics import depth_metrics

WITHHELD_GT_PREFIXES = layout.WITHHELD_GT
ERROR_COLUMNS = ["key", "gt_prefix", "abs_rel", "rmse", "delta1", "abs_rel_aligned"]


def withheld_ground_truth(store, prefixes: tuple[str, ...] = WITHHELD_GT_PREFIXES) -> dict[str, tuple[str, np.ndarray]]:
    """key -> (gt prefix, depth [H,W] with invalid = 0) for every pool sample whose depth is kept
    aside under `prefixes`."""
    from dap_model.data.samples import clean_depth, decode_raw, split_shard_keys
    from dap_model.data.shards import read_raw

    gt: dict[str, tuple[str, np.ndarray]] = {}
    for prefix in prefixes:
        for k in split_shard_keys(store, prefix):
            for key, parts in read_raw(Path(store.fetch(k))):
                _, depth, _ = decode_raw(key, parts, k)
                if depth is not None:
                    gt[key] = (prefix, clean_depth(depth))
    return gt


def pseudo_label_errors(cfg: DapConfig, store, pseudo_prefix: str,
                        prefixes: tuple[str, ...] = WITHHELD_GT_PREFIXES) -> pd.DataFrame:
    """True error of each pseudo-label under `pseudo_prefix` that has withheld ground truth:
    key, gt_prefix, abs_rel, rmse, delta1, abs_rel_aligned (after scaling by the median ratio: the
    shape error alone). Empty when no ground truth is stored."""
    from dap_model.data.samples import decode_raw, fetch_all, manifest_shard_keys
    from dap_model.data.shards import read_raw

    gt = withheld_ground_truth(store, prefixes)
    rows = []
    if gt:
        paths = fetch_all(store, manifest_shard_keys(store, pseudo_prefix))
        for path in paths:
            for key, parts in read_raw(path):
                if key not in gt:
                    continue
                _, pseudo, _ = decode_raw(key, parts, str(path))
                prefix, g = gt[key]
                if pseudo.shape != g.shape:
                    pseudo = torch.nn.functional.interpolate(
                        torch.from_numpy(pseudo)[None, None], size=g.shape, mode="nearest"
                    )[0, 0].numpy()
                m = depth_metrics(pseudo, g, cap=cfg.eval.cap_m)
                if m["n_valid"] > 0:
                    a = depth_metrics(pseudo, g, cap=cfg.eval.cap_m, align_median=True)
                    rows.append({"key": key, "gt_prefix": prefix, "abs_rel": m["abs_rel"], "rmse": m["rmse"],
                                 "delta1": m["delta1"], "abs_rel_aligned": a["abs_rel"]})
    return pd.DataFrame(rows, columns=ERROR_COLUMNS)


def rank_correlation(scores: pd.DataFrame, errors: pd.DataFrame) -> dict[str, float]:
    """Spearman rho (and p-value) between discriminator score and true AbsRel, over pseudo-labels
    with ground truth; also per GT source, and against the scale-aligned AbsRel (`*_aligned`: does
    the score rank shape?). NaN when fewer than 3 pairs."""
    from scipy.stats import spearmanr

    joined = scores.merge(errors, on="key")
    out: dict[str, float] = {"n": float(len(joined))}

    def rho(df: pd.DataFrame, err: str) -> tuple[float, float]:
        if len(df) < 3 or df["score"].nunique() < 2 or df[err].nunique() < 2:
            return float("nan"), float("nan")
        r = spearmanr(df["score"], df[err])
        return float(r.statistic), float(r.pvalue)

    out["spearman"], out["p_value"] = rho(joined, "abs_rel")
    out["spearman_aligned"], out["p_value_aligned"] = rho(joined, "abs_rel_aligned")
    for prefix, df in joined.groupby("gt_prefix"):
        name = str(prefix).replace("/", "_")
        out[f"spearman_{name}"], _ = rho(df, "abs_rel")
        out[f"spearman_aligned_{name}"], _ = rho(df, "abs_rel_aligned")
        out[f"n_{name}"] = float(len(df))
    return out


def selection_error(errors: pd.DataFrame, selected_keys) -> dict[str, float]:
    """Mean true AbsRel (and aligned AbsRel) of the selected pseudo-labels and of all with ground
    truth: `true_abs_rel_selected`, `true_abs_rel_all`, `true_abs_rel_aligned_*`; {} without GT."""
    if errors.empty:
        return {}
    sel = errors[errors["key"].isin(set(selected_keys))]
    return {
        "true_abs_rel_selected": float(sel["abs_rel"].mean()),
        "true_abs_rel_all": float(errors["abs_rel"].mean()),
        "true_abs_rel_aligned_selected": float(sel["abs_rel_aligned"].mean()),
        "true_abs_rel_aligned_all": float(errors["abs_rel_aligned"].mean()),
    }
