"""Pseudo-labelling: a trained model's metric depth for every sample of the unlabelled pool,
written as shards (rgb + pseudo depth) under `pseudo/<name>/` with a manifest.

Pool: `pool/manifest.parquet` with columns `key, shard, domain, source` (and the tag's
`confidence`, optional); `shard` is a store key, or a shard name under `pool/`.

`curation.domain_scale=drop` checks each pseudo-label's median depth against the labelled set's
per-domain depth prior and leaves out the ones that fit another domain better than their tagged
one (`excluded.parquet` beside the manifest: key, domain, source, confidence, median_depth_m, reason)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from dap_model import layout
from dap_model.accel import resolve_device
from dap_model.config import DapConfig, RESOLVED_CONFIG_NAME, write_resolved_config
from dap_model.data.shards import Sample, ShardWriter
from dap_model.data.samples import decode_raw, resize_pair
from dap_model.data.shards import read_raw
from dap_model.errors import InputError
from dap_model.inference import predict_at
from dap_model.pool import iter_pool_samples, read_pool_manifest
from dap_model.storage import replace_prefix

PSEUDO_COLUMNS = ["key", "shard", "domain", "source", "pool_shard", "valid_fraction", "median_depth_m"]
EXCLUDED_NAME = "excluded.parquet"
EXCLUDED_COLUMNS = ["key", "domain", "source", "confidence", "median_depth_m", "reason"]


def domain_depth_prior(store) -> dict[str, tuple[float, float]]:
    """Per domain of the labelled train split: (mean, std) of log per-image median depth (m)."""
    if not store.exists(layout.LABELED_MANIFEST):
        raise InputError(f"{store.uri(layout.LABELED_MANIFEST)}: no labelled manifest (materialise labeled_panoramas first)")
    m = pd.read_parquet(store.fetch(layout.LABELED_MANIFEST))
    missing = [c for c in ("split", "domain", "depth_median") if c not in m.columns]
    if missing:
        raise InputError(f"{store.uri(layout.LABELED_MANIFEST)}: missing columns {missing} (needed by curation.domain_scale)")
    m = m[(m["split"] == "train") & (m["depth_median"] > 0)]
    prior = {}
    for domain, g in m.groupby("domain", sort=True):
        logs = np.log(g["depth_median"].to_numpy(np.float64))
        if len(logs) >= 2:
            prior[str(domain)] = (float(logs.mean()), float(max(logs.std(ddof=1), 1e-3)))
    return prior


def fits_other_domain(median_m: float, domain: str, prior: dict[str, tuple[float, float]]) -> bool:
    """True when the median depth is less likely under `domain`'s log-normal than under another
    domain's. The tag (a vision-language model's indoor/outdoor answer) knows the domain; the
    labeler's scale may not (a scene read as the other domain is off by an order of magnitude)."""
    if domain not in prior or not median_m > 0:
        return False
    x = np.log(median_m)

    def loglik(d: str) -> float:
        mu, sd = prior[d]
        return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd)

    return not all(loglik(domain) >= loglik(d) for d in prior if d != domain)


def pseudo_label_pool(
    cfg: DapConfig, store, model_path: str | Path, out_prefix: str, stage: str, progress: bool = True
) -> pd.DataFrame:
    """Label the whole pool with the model at `model_path`; returns the manifest (PSEUDO_COLUMNS) of
    the samples written, with `attrs["excluded"]` = how many `curation.domain_scale=drop` left out."""
    from dap_model.accel import apply_cpu_threads
    from dap_model.models import load_model

    apply_cpu_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    model = load_model(model_path, map_location=device).eval()
    pool = read_pool_manifest(store)
    cc = cfg.curation
    prior = domain_depth_prior(store) if cc.domain_scale == "drop" else {}
    rows: list[dict] = []
    excluded: list[dict] = []
    bs = cfg.train.eval_batch_size
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        writer = ShardWriter(tmp_dir, "pseudo", cfg.ingest.shard_size)
        pending: list[tuple[dict, np.ndarray]] = []

        def flush() -> None:
            x = torch.stack([
                torch.from_numpy(resize_pair(rgb, None, cfg.train.height)[0].transpose(2, 0, 1).astype(np.float32) / 255.0)
                for _, rgb in pending
            ])  # [B,3,H,2H]
            preds = predict_at(model, x, [rgb.shape[:2] for _, rgb in pending], device, cfg.train.amp_dtype,
                               cfg.curation.pseudo_views)
            for (row, rgb), depth in zip(pending, preds):
                valid = depth > 0
                median = float(np.median(depth[valid])) if valid.any() else 0.0
                if (prior and float(row.get("confidence", 1.0)) >= cc.domain_scale_min_confidence
                        and fits_other_domain(median, str(row["domain"]), prior)):
                    excluded.append({
                        "key": row["key"], "domain": row["domain"], "source": row["source"],
                        "confidence": float(row.get("confidence", 1.0)), "median_depth_m": median,
                        "reason": f"median depth {median:.3g} m fits another domain's depth prior better than "
                                  f"the tagged {row['domain']}"})
                    continue
                meta = {"domain": row["domain"], "source": row["source"], "pool_shard": row["shard"], "stage": stage}
                shard = writer.write(Sample(row["key"], rgb, depth.astype(np.float32), meta=meta))
                rows.append({
                    "key": row["key"], "shard": shard, "domain": row["domain"], "source": row["source"],
                    "pool_shard": row["shard"], "valid_fraction": float(valid.mean()),
                    "median_depth_m": median,
                })
            pending.clear()

        for item in tqdm(iter_pool_samples(store, pool), total=len(pool), desc=f"pseudo-labels {stage}",
                         disable=not progress):
            pending.append(item)
            if len(pending) == bs:
                flush()
        if pending:
            flush()
        shards = writer.close()
        manifest = pd.DataFrame(rows, columns=PSEUDO_COLUMNS)
        if manifest.empty and excluded:
            raise InputError(f"{store.uri(layout.POOL_MANIFEST)}: curation.domain_scale=drop left none of the "
                             f"{len(excluded)} pseudo-labels (labeler and tags disagree on every one)")
        manifest.to_parquet(tmp_dir / layout.MANIFEST_NAME, index=False)
        keep = set(shards) | {layout.MANIFEST_NAME, RESOLVED_CONFIG_NAME}
        if cc.domain_scale == "drop":
            pd.DataFrame(excluded, columns=EXCLUDED_COLUMNS).to_parquet(tmp_dir / EXCLUDED_NAME, index=False)
            keep.add(EXCLUDED_NAME)
        write_resolved_config(cfg, tmp_dir)
        replace_prefix(store, out_prefix, tmp_dir, keep)
    manifest.attrs["excluded"] = len(excluded)
    return manifest
