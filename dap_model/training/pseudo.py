"""Pseudo-labelling: a trained model's metric depth for every sample of the unlabelled pool,
written as shards (rgb + pseudo depth) under `pseudo/<name>/` with a manifest.

Pool (issue 5): `pool/manifest.parquet` with columns `key, shard, domain, source`; `shard` is a
store key, or a shard name under `pool/`."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from dap_model.accel import resolve_device
from dap_model.config import DapConfig, RESOLVED_CONFIG_NAME, write_resolved_config
from dap_model.data.shards import Sample, ShardWriter
from dap_model.errors import InputError
from dap_model.training.data import decode_raw, read_raw, resize_pair
from dap_model.training.evaluate import predict_at

POOL_MANIFEST = "pool/manifest.parquet"
POOL_COLUMNS = ("key", "shard", "domain", "source")
PSEUDO_COLUMNS = ["key", "shard", "domain", "source", "pool_shard", "valid_fraction", "median_depth_m"]


def read_pool_manifest(store) -> pd.DataFrame:
    if not store.exists(POOL_MANIFEST):
        raise InputError(f"{store.uri(POOL_MANIFEST)}: no pool manifest (materialise unlabeled_pool first)")
    df = pd.read_parquet(store.fetch(POOL_MANIFEST))
    missing = [c for c in POOL_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{store.uri(POOL_MANIFEST)}: missing columns {missing}")
    if df.empty:
        raise InputError(f"{store.uri(POOL_MANIFEST)}: the pool is empty")
    return df


def _pool_shard_key(store, shard: str) -> str:
    for key in (shard, f"pool/{shard}"):
        if store.exists(key):
            return key
    raise InputError(f"pool shard {shard!r}: not found in {store.uri('')}")


def iter_pool_samples(store, manifest: pd.DataFrame) -> Iterator[tuple[dict, np.ndarray]]:
    """(manifest row, rgb [H,W,3] uint8) for every pool sample, in manifest shard order."""
    for shard, rows in manifest.groupby("shard", sort=True):
        key = _pool_shard_key(store, str(shard))
        wanted = {r["key"]: r for r in rows.to_dict("records")}
        found = 0
        for k, parts in read_raw(Path(store.fetch(key))):
            if k in wanted:
                rgb, _, _ = decode_raw(k, parts, key)
                found += 1
                yield wanted[k], rgb
        if found != len(wanted):
            raise InputError(f"{store.uri(key)}: {len(wanted) - found} manifest keys are missing from the shard")


def replace_prefix(store, prefix: str, local_dir: Path, keep: set[str]) -> None:
    """Upload every file of `local_dir` to `prefix/`, then delete objects under `prefix/` that
    are not in `keep` (stale shards of an earlier, larger run). The manifest goes last."""
    files = sorted(p for p in local_dir.iterdir() if p.is_file())
    for f in sorted(files, key=lambda p: p.name == "manifest.parquet"):
        store.put_file(f, f"{prefix}/{f.name}")
    for k in store.list(prefix):
        if k.rsplit("/", 1)[-1] not in keep:
            store.delete(k)


def pseudo_label_pool(
    cfg: DapConfig, store, model_path: str | Path, out_prefix: str, stage: str, progress: bool = True
) -> pd.DataFrame:
    """Label the whole pool with the model at `model_path`; returns the manifest (PSEUDO_COLUMNS)."""
    from dap_model.accel import apply_cpu_threads
    from dap_model.models import load_model

    apply_cpu_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    model = load_model(model_path, map_location=device).eval()
    pool = read_pool_manifest(store)
    rows: list[dict] = []
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
                meta = {"domain": row["domain"], "source": row["source"], "pool_shard": row["shard"], "stage": stage}
                shard = writer.write(Sample(row["key"], rgb, depth.astype(np.float32), meta=meta))
                rows.append({
                    "key": row["key"], "shard": shard, "domain": row["domain"], "source": row["source"],
                    "pool_shard": row["shard"], "valid_fraction": float(valid.mean()),
                    "median_depth_m": float(np.median(depth[valid])) if valid.any() else 0.0,
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
        manifest.to_parquet(tmp_dir / "manifest.parquet", index=False)
        write_resolved_config(cfg, tmp_dir)
        replace_prefix(store, out_prefix, tmp_dir, set(shards) | {"manifest.parquet", RESOLVED_CONFIG_NAME})
    return manifest
