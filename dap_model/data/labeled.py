"""Labelled panoramas: AirSim360-layout sequences → validated, resized, split by sequence, stored as
tar shards under `labeled/` in the data store with a pandera-validated manifest.

    labeled/{train,val,test}-NNNNNN.tar     samples `<sequence>_<frame>` (rgb, depth, json)
    labeled/manifest.parquet                one row per sample (MANIFEST_SCHEMA)
    labeled/dataset.json                    version (content hash), counts, skipped items
    labeled/preview.png                     RGB | depth of a few samples
    labeled/config.resolved.yaml

Readers: `load_labeled_manifest(store)`, `iter_labeled(store, split)`."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import pandas as pd
import pandera.pandas as pa

from dap_model import layout
from dap_model.config import DapConfig, project_dir, write_resolved_config
from dap_model.data.airsim360 import list_keys, open_source, read_meta, read_pair, resize_depth, resize_rgb, scan
from dap_model.data.shards import Sample, ShardWriter, iter_shard
from dap_model.errors import DapError, InputError, StorageError
from dap_model.io import atomic_write_bytes, atomic_write_text
from dap_model.storage import DataStore, LocalStore
from dap_model.schema import validate_table

SPLITS = ("train", "val", "test")
DOMAINS = ("indoor", "outdoor")
_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-]+")


def _one_split_per_sequence(df: pd.DataFrame) -> bool:
    return bool((df.groupby("sequence")["split"].nunique() <= 1).all()) if len(df) else True


MANIFEST_SCHEMA = pa.DataFrameSchema(
    {
        "key": pa.Column(str, pa.Check.str_matches(r"^[A-Za-z0-9_\-]+$"), unique=True),
        "sequence": pa.Column(str),
        "frame": pa.Column(int, pa.Check.ge(0)),
        "split": pa.Column(str, pa.Check.isin(SPLITS)),
        "domain": pa.Column(str, pa.Check.isin(DOMAINS)),
        "shard": pa.Column(str, pa.Check.str_matches(r"^(train|val|test)-\d{6}\.tar$")),
        "height": pa.Column(int, pa.Check.gt(0)),
        "width": pa.Column(int, pa.Check.gt(0)),
        "valid_fraction": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "depth_min": pa.Column(float, pa.Check.ge(0), nullable=True),
        "depth_median": pa.Column(float, pa.Check.ge(0), nullable=True),
        "depth_max": pa.Column(float, pa.Check.ge(0), nullable=True),
        "source": pa.Column(str),
    },
    checks=[
        pa.Check(lambda df: (df["width"] == 2 * df["height"]).all(), error="panoramas must be 2:1"),
        pa.Check(lambda df: ((df["depth_min"] <= df["depth_median"]) & (df["depth_median"] <= df["depth_max"])
                             | df["depth_median"].isna()).all(), error="depth_min <= depth_median <= depth_max"),
        pa.Check(_one_split_per_sequence, error="a sequence appears in more than one split (leakage)"),
    ],
    strict=False,
    coerce=True,
    name="labeled_manifest",
)


@dataclass
class IngestResult:
    source: str
    manifest: pd.DataFrame
    skipped: list[dict]  # [{"item", "reason"}]
    shards: list[str]
    version: str  # content hash of the samples (keys, splits, domains, pixels, depth)
    preview_png: bytes
    out: str  # URI of labeled/

    def counts(self) -> dict:
        m = self.manifest
        return {
            "samples": int(len(m)),
            "sequences": int(m["sequence"].nunique()) if len(m) else 0,
            "per_split": {s: int((m["split"] == s).sum()) for s in SPLITS},
            "per_domain": {d: int((m["domain"] == d).sum()) for d in DOMAINS},
            "sequences_per_split": {s: int(m.loc[m["split"] == s, "sequence"].nunique()) for s in SPLITS},
            "skipped": len(self.skipped),
        }

    def depth_stats(self) -> dict:
        m = self.manifest
        if not len(m):
            return {}
        return {
            "depth_min_m": float(m["depth_min"].min()),
            "depth_median_m": float(m["depth_median"].median()),
            "depth_max_m": float(m["depth_max"].max()),
            "valid_fraction_mean": float(m["valid_fraction"].mean()),
        }


def split_sequences(sequences: list[str], val_fraction: float, test_fraction: float, seed: int = 0) -> dict[str, str]:
    """Deterministic train/val/test assignment by sequence (never by frame: no leakage).

    Sequences are ordered by a seeded hash; val and test take round(n·fraction) each, and at
    least one each when there are ≥ 3 sequences and the fraction is > 0; train keeps ≥ 1."""
    seqs = sorted(set(sequences), key=lambda s: hashlib.sha256(f"{seed}\x1f{s}".encode()).hexdigest())
    n = len(seqs)
    n_val = round(n * val_fraction)
    n_test = round(n * test_fraction)
    if n >= 3:
        n_val = max(n_val, 1 if val_fraction > 0 else 0)
        n_test = max(n_test, 1 if test_fraction > 0 else 0)
    elif n == 2:
        n_val, n_test = 0, 1 if test_fraction > 0 else 0
    else:
        n_val = n_test = 0
    while n_val + n_test > n - 1 and n_val + n_test > 0:
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    out = {}
    for i, s in enumerate(seqs):
        out[s] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return out


def sanitize(name: str) -> str:
    return _KEY_BAD.sub("-", name.replace("/", "-")).strip("-") or "seq"


def resolve_source(cfg: DapConfig, store: DataStore, source: str | None = None) -> tuple[DataStore, str, str]:
    """(store, root prefix, description) of the configured source (`simulator` = the data store's
    `airsim360/`, written by the simulator asset)."""
    source = source if source is not None else cfg.ingest.source
    if source == "simulator":
        return store, layout.AIRSIM360, store.uri(layout.AIRSIM360)
    src_store, root = open_source(source, cfg.ingest.endpoint_url or cfg.storage.endpoint_url, cfg.storage.region)
    return src_store, root, source


def _stats(depth: np.ndarray) -> dict:
    v = depth[depth > 0]
    if not len(v):
        return {"valid_fraction": 0.0, "depth_min": np.nan, "depth_median": np.nan, "depth_max": np.nan}
    return {
        "valid_fraction": float(len(v) / depth.size),
        "depth_min": float(v.min()), "depth_median": float(np.median(v)), "depth_max": float(v.max()),
    }


def depth_colour(depth: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """float32 [H,W] metres → uint8 RGB [H,W,3] (turbo on inverse depth; invalid = black)."""
    valid = depth > 0
    inv = np.zeros_like(depth)
    inv[valid] = 1.0 / depth[valid]
    hi = float(inv[valid].max()) if valid.any() else 1.0
    lo = 1.0 / vmax if vmax else (float(inv[valid].min()) if valid.any() else 0.0)
    x = np.clip((inv - lo) / max(hi - lo, 1e-9), 0, 1)
    rgb = cv2.applyColorMap((x * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[:, :, ::-1]
    return np.where(valid[..., None], rgb, 0).astype(np.uint8)


def preview(samples: list[tuple[np.ndarray, np.ndarray]], height: int = 64) -> bytes:
    """PNG bytes: one row per sample, RGB | depth, each `height` tall."""
    rows = []
    for rgb, depth in samples:
        r = resize_rgb(rgb, height)
        d = depth_colour(resize_depth(depth, height, "nearest"))
        rows.append(np.concatenate([r, d], 1))
    if not rows:
        rows = [np.zeros((height, 4 * height, 3), np.uint8)]
    ok, buf = cv2.imencode(".png", np.concatenate(rows, 0)[:, :, ::-1])
    return buf.tobytes()


def _prefetch(fn, items: list, threads: int) -> Iterator:
    """`map(fn, items)` in order, at most 2·threads items ahead (I/O-bound reads of a store)."""
    if threads <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(threads) as pool:
        window: deque = deque()
        it = iter(items)
        for item in it:
            window.append(pool.submit(fn, item))
            if len(window) >= 2 * threads:
                break
        for item in it:
            yield window.popleft().result()
            window.append(pool.submit(fn, item))
        while window:
            yield window.popleft().result()


def ingest_labeled(cfg: DapConfig, store: DataStore, source: str | None = None,
                   progress: Callable[[str], None] | None = None) -> IngestResult:
    """Read every pair of the source, skip bad ones (with a reason), write shards + manifest."""
    ing = cfg.ingest
    src_store, root, src_desc = resolve_source(cfg, store, source)
    pairs, metas, problems = scan(list_keys(src_store, root), root)
    skipped = [{"item": src_store.uri(k), "reason": r} for k, r in problems]
    if not pairs:
        hint = " (materialise airsim360_scenes first)" if (source or ing.source) == "simulator" else ""
        raise InputError(f"labelled source {src_desc}: no panorama_<i>.png / erp_distance_<i>.npy pairs found{hint}")
    domains: dict[str, str] = {}
    for seq in sorted({p.sequence for p in pairs}):
        dom = ing.default_domain
        if seq in metas:
            try:
                dom = read_meta(src_store, metas[seq]).get("domain", dom)
            except InputError as err:
                skipped.append({"item": src_store.uri(metas[seq]), "reason": str(err)})
            if dom not in DOMAINS:
                skipped.append({"item": src_store.uri(metas[seq]), "reason": f"unknown domain {dom!r}; using {ing.default_domain}"})
                dom = ing.default_domain
        domains[seq] = dom
    names = {seq: sanitize(seq) for seq in domains}
    split_of = split_sequences(list(names.values()), ing.val_fraction, ing.test_fraction, ing.split_seed)
    rows: list[dict] = []
    seen: dict[str, str] = {}
    shots: list[tuple[np.ndarray, np.ndarray]] = []
    shot_seqs: set[str] = set()
    digest = hashlib.sha256()  # content of every sample, independent of where the source lives
    cache = project_dir() / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="labeled-", dir=cache) as tmp:
        stage = Path(tmp)
        writers = {s: ShardWriter(stage, s, ing.shard_size) for s in SPLITS}
        ordered = [ref for split in SPLITS for ref in pairs if split_of[names[ref.sequence]] == split]

        def load(ref):
            try:
                rgb, depth = read_pair(src_store, ref, ing.max_depth_m, ing.blank_std, ing.min_valid_fraction)
                return resize_rgb(rgb, ing.height), resize_depth(depth, ing.height, ing.depth_resize)
            except (InputError, StorageError) as err:
                return err

        for ref, loaded in zip(ordered, _prefetch(load, ordered, ing.read_threads)):
            seq = names[ref.sequence]
            split = split_of[seq]
            item = src_store.uri(ref.rgb_key or ref.depth_key)
            key = f"{seq}_{ref.frame}"
            if key in seen:
                skipped.append({"item": item, "reason": f"sample key {key} already used by {seen[key]}"})
                continue
            if isinstance(loaded, Exception):
                skipped.append({"item": item, "reason": str(loaded)})
                continue
            seen[key] = item
            rgb, depth = loaded
            meta = {"sequence": seq, "frame": ref.frame, "domain": domains[ref.sequence], "split": split,
                    "source": src_store.uri(ref.rgb_key)}
            shard = writers[split].write(Sample(key=key, rgb=rgb, depth=depth, meta=meta))
            digest.update(f"{key}\0{split}\0{meta['domain']}\0{shard}\0".encode())
            digest.update(hashlib.sha256(rgb.tobytes()).digest() + hashlib.sha256(depth.tobytes()).digest())
            rows.append({"key": key, "sequence": seq, "frame": ref.frame, "split": split,
                         "domain": meta["domain"], "shard": shard, "height": rgb.shape[0],
                         "width": rgb.shape[1], **_stats(depth), "source": meta["source"]})
            if len(shots) < 4 and seq not in shot_seqs:
                shot_seqs.add(seq)
                shots.append((rgb, depth))
            if progress:
                progress(key)
        shards = [n for s in SPLITS for n in writers[s].close()]
        if not rows:
            reasons = "; ".join(f"{s['item']}: {s['reason']}" for s in skipped[:3])
            raise InputError(f"labelled source {src_desc}: no valid pair ({len(skipped)} skipped: {reasons})")
        manifest = validate_manifest(pd.DataFrame(rows))
        version = digest.hexdigest()[:16]
        png = preview(shots)
        buf = io.BytesIO()
        manifest.to_parquet(buf, index=False)
        atomic_write_bytes(stage / layout.MANIFEST_NAME, buf.getvalue())
        atomic_write_bytes(stage / "preview.png", png)
        result = IngestResult(src_desc, manifest, skipped, shards, version, png, store.uri(layout.LABELED))
        info = {"version": version, "source": src_desc, **result.counts(), "depth": result.depth_stats(),
                "skipped_items": skipped, "shards": shards}
        atomic_write_text(stage / "dataset.json", json.dumps(info, indent=1, sort_keys=True))
        write_resolved_config(cfg, stage)
        written = shards + ["preview.png", layout.RESOLVED_CONFIG_NAME, "dataset.json", layout.MANIFEST_NAME]
        for name in written:  # the manifest last: readers see the new set only once it is whole
            store.put_file(stage / name, layout.join(layout.LABELED, name))
        keep = {layout.join(layout.LABELED, n) for n in written}
        for key in store.list(layout.LABELED):
            if key not in keep:
                store.delete(key)
    return result


def validate_manifest(df: pd.DataFrame) -> pd.DataFrame:
    return validate_table(MANIFEST_SCHEMA, df, "labelled manifest")


def load_labeled_manifest(store: DataStore) -> pd.DataFrame:
    """The manifest of the labelled set (validated); StorageError if it was never ingested."""
    if not store.exists(layout.LABELED_MANIFEST):
        raise StorageError(f"{store.uri(layout.LABELED_MANIFEST)}: no labelled set; materialise labeled_panoramas first")
    try:
        df = pd.read_parquet(io.BytesIO(store.get_bytes(layout.LABELED_MANIFEST)))
    except DapError:
        raise
    except Exception as err:
        raise InputError(f"{store.uri(layout.LABELED_MANIFEST)}: unreadable parquet ({err})") from None
    return validate_manifest(df)


def labeled_version(store: DataStore) -> str:
    try:
        return str(json.loads(store.get_bytes(layout.LABELED_DATASET))["version"])
    except (ValueError, KeyError) as err:
        raise InputError(f"{store.uri(layout.LABELED_DATASET)}: malformed ({err})") from None


def iter_labeled(store: DataStore, split: str) -> Iterator[Sample]:
    """Samples of one split in manifest order: rgb uint8 [H,W,3], depth float32 [H,W] metres
    (0 = invalid), meta {sequence, frame, domain, split, source}."""
    if split not in SPLITS:
        raise InputError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    manifest = load_labeled_manifest(store)
    part = manifest[manifest["split"] == split]
    cache = None if isinstance(store, LocalStore) else project_dir() / ".cache" / "labeled" / labeled_version(store)
    for shard, rows in part.groupby("shard", sort=True):
        path = store.fetch(layout.join(layout.LABELED, shard), cache_dir=cache)
        yield from iter_shard(path, keys=list(rows["key"]))
