"""The unlabeled pool: every accepted web frame, every synthesised panorama and every accepted
real image or frame (`pool.real_sources`, `dap_model.real_pool`), with its scene tag
(indoor/outdoor), source (web/synth/real) and where it lives (shard store key + sample key).

Web frames are found through the ingest buckets (`dap_model.video.buckets`): the assignment,
then one outcomes table per bucket, then the frames manifest of each video that is `ok` at step
`frames` — never a listing of `web/frames/` (hundreds of thousands of objects at DAP's scale).

    tags = tag_sources(store, get_tagger(cfg.tagging))     # one row per image, failures included
    pool = build_pool(tags)                               # the ok rows → domain
    write_pool(store, pool); load_pool_manifest(store); iter_pool(store) → (row, Sample)

Downstream (pseudo-labelling) reads images by (shard, key) through `iter_pool`."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pandera.pandas as pa

from dap_model import layout
from dap_model.data.samples import decode_raw
from dap_model.data.shards import Sample, iter_shard, read_raw
from dap_model.errors import InputError
from dap_model.schema import validate_table

SOURCES = ("web", "synth", "real")
DOMAINS = ("indoor", "outdoor")

_COMMON = {
    "key": pa.Column(str, pa.Check.str_matches(r"^[A-Za-z0-9_\-]+$")),
    "shard": pa.Column(str, pa.Check.str_length(min_value=1)),
    "source": pa.Column(str, pa.Check.isin(SOURCES)),
    "origin": pa.Column(str),  # video id (web) or synthesis backend (synth)
    "confidence": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
    "tagger": pa.Column(str),
}
TAGS_SCHEMA = pa.DataFrameSchema(
    {
        **_COMMON,
        "scene": pa.Column(str, pa.Check.isin(DOMAINS), nullable=True),
        "ok": pa.Column(bool),
        "reason": pa.Column(str),
    },
    checks=[pa.Check(lambda df: (df["ok"] == df["scene"].notna()).all(), error="ok iff a scene is set")],
    strict=True,
    unique=["shard", "key"],
    name="scene tags",
)
POOL_SCHEMA = pa.DataFrameSchema(
    {**_COMMON, "domain": pa.Column(str, pa.Check.isin(DOMAINS))},
    checks=[pa.Check(lambda df: (df["confidence"] >= 0.5).all(), error="a tag's confidence is >= 0.5")],
    strict=True,
    unique=["shard", "key"],
    name="unlabeled pool",
)


def extracted_videos(store) -> list[str]:
    """Videos whose frames are extracted (`ok` at step `frames` in their bucket's outcomes),
    sorted: one read of the assignment and one outcomes table per bucket."""
    from dap_model.video.buckets import load_assignment, read_outcomes

    done: list[str] = []
    for bucket in load_assignment(store)["bucket"].unique():
        out = read_outcomes(store, str(bucket))
        if out is not None:
            done += out.loc[(out["status"] == "ok") & (out["step"] == "frames"), "video_id"].astype(str).tolist()
    return sorted(done)


def web_frame_items(store, progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Accepted frames of every extracted video (`extracted_videos`), from its manifest
    `web/frames/<video_id>/frames.parquet` → [key, shard, source, origin]. A manifest's `shard`
    is a store key when it contains '/', else a file name beside the manifest. An extracted video
    whose manifest is gone is left out with a progress line."""
    from dap_model.errors import StorageError
    from dap_model.storage import safe_key
    from dap_model.video.frames import validate_frames_manifest

    parts = []
    for vid in extracted_videos(store):
        mkey = layout.web_frames_manifest(safe_key(vid))
        try:
            data = store.get_bytes(mkey)
        except (InputError, StorageError) as err:
            if progress:
                progress(f"web video {vid}: frames manifest unreadable, left out: {err}")
            continue
        df = validate_frames_manifest(pd.read_parquet(io.BytesIO(data)), store.uri(mkey))
        df = df[df["accepted"]]
        folder = str(PurePosixPath(mkey).parent)
        shard = [s if "/" in s else f"{folder}/{s}" for s in df["shard"]]
        parts.append(pd.DataFrame({"key": df["key"].astype(str).values, "shard": shard, "source": "web",
                                   "origin": df["video_id"].astype(str).values}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["key", "shard", "source", "origin"])


def synth_items(store) -> pd.DataFrame:
    from dap_model.synthesis.store import load_synth_manifest

    if not store.exists(layout.SYNTH_MANIFEST):
        return pd.DataFrame(columns=["key", "shard", "source", "origin"])
    m = load_synth_manifest(store)
    return pd.DataFrame({"key": m["key"].values, "shard": m["shard"].values, "source": "synth",
                         "origin": m["backend"].values})


def _load_shard(store, shard: str, keys: list[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """({key: rgb}, {key: reason}) — a corrupt sample fails alone, a missing shard fails all."""
    from dap_model.errors import StorageError

    try:
        path = store.fetch(shard)
    except (InputError, StorageError) as err:
        return {}, {k: f"unreadable shard: {err}" for k in keys}
    try:
        return {s.key: s.rgb for s in iter_shard(path, keys)}, {}
    except InputError:
        pass
    imgs, why = {}, {}
    for k in keys:  # isolate the bad sample(s)
        try:
            imgs.update({s.key: s.rgb for s in iter_shard(path, [k])})
        except InputError as err:
            why[k] = f"unreadable sample: {err}"
    return imgs, why


def tag_items(store, items: pd.DataFrame, tagger, progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Tag the images listed in `items` [key, shard, source, origin], shard by shard. An image
    that cannot be read (missing shard, corrupt PNG, key not in its shard) is a failed row."""
    rows = []
    for n, (shard, group) in enumerate(items.groupby("shard", sort=True)):
        keys = list(group["key"])
        imgs, why = _load_shard(store, shard, keys)
        results = tagger.tag([imgs.get(k) for k in keys])
        for rec, res in zip(group.to_dict("records"), results):
            reason = res.reason
            if not res.ok and rec["key"] not in imgs:
                reason = why.get(rec["key"]) or f"sample {rec['key']!r} missing from {shard}"
            rows.append({**rec, "scene": res.scene, "confidence": float(res.confidence), "ok": bool(res.ok),
                         "reason": reason, "tagger": tagger.name})
        if progress:
            progress(f"tagged shard {n + 1}: {shard} ({len(keys)} images)")
    cols = list(TAGS_SCHEMA.columns)
    df = pd.DataFrame(rows, columns=cols).astype({"confidence": float, "ok": bool})
    df["scene"] = df["scene"].astype(object).where(df["scene"].notna(), None)
    return validate_table(TAGS_SCHEMA, df, "scene tags")


def tag_sources(store, tagger, progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Tag every pool candidate in the store: web frames, synthesised images, real images/frames."""
    from dap_model.real_pool import real_items

    items = pd.concat([web_frame_items(store, progress), synth_items(store), real_items(store)], ignore_index=True)
    return tag_items(store, items, tagger, progress)


def build_pool(tags: pd.DataFrame) -> pd.DataFrame:
    ok = tags[tags["ok"]]
    pool = pd.DataFrame({
        "key": ok["key"].values, "shard": ok["shard"].values, "source": ok["source"].values,
        "origin": ok["origin"].values, "domain": ok["scene"].astype(str).values,
        "confidence": ok["confidence"].astype(float).values, "tagger": ok["tagger"].values,
    })
    return validate_table(POOL_SCHEMA, pool, "unlabeled pool")


def pool_counts(pool: pd.DataFrame) -> dict[str, int]:
    """{"indoor/web": n, "outdoor/synth": n, ...} (every combination, zeros included)."""
    c = Counter(zip(pool["domain"], pool["source"]))
    return {f"{d}/{s}": int(c.get((d, s), 0)) for d in DOMAINS for s in SOURCES}


def _put_parquet(store, key: str, df: pd.DataFrame) -> str:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return store.put_bytes(key, buf.getvalue())


def write_tags(store, tags: pd.DataFrame) -> str:
    return _put_parquet(store, layout.POOL_TAGS, validate_table(TAGS_SCHEMA, tags, "scene tags"))


def load_tags(store) -> pd.DataFrame:
    if not store.exists(layout.POOL_TAGS):
        raise InputError(f"{store.uri(layout.POOL_TAGS)}: no scene tags; materialise scene_tags first")
    return validate_table(TAGS_SCHEMA, pd.read_parquet(io.BytesIO(store.get_bytes(layout.POOL_TAGS))), store.uri(layout.POOL_TAGS))


def write_pool(store, pool: pd.DataFrame) -> str:
    return _put_parquet(store, layout.POOL_MANIFEST, validate_table(POOL_SCHEMA, pool, "unlabeled pool"))


def load_pool_manifest(store) -> pd.DataFrame:
    if not store.exists(layout.POOL_MANIFEST):
        raise InputError(f"{store.uri(layout.POOL_MANIFEST)}: no pool manifest; materialise unlabeled_pool first")
    df = pd.read_parquet(io.BytesIO(store.get_bytes(layout.POOL_MANIFEST)))
    return validate_table(POOL_SCHEMA, df, store.uri(layout.POOL_MANIFEST))


def iter_pool(store, manifest: pd.DataFrame | None = None) -> Iterator[tuple[dict, Sample]]:
    """(row, Sample) for every pool row, shard by shard (each shard fetched once)."""
    m = load_pool_manifest(store) if manifest is None else manifest
    for shard, group in m.groupby("shard", sort=True):
        rows = {r["key"]: r for r in group.to_dict("records")}
        path = store.fetch(shard)
        seen = set()
        for sample in iter_shard(path, rows):
            seen.add(sample.key)
            yield rows[sample.key], sample
        missing = set(rows) - seen
        if missing:
            raise InputError(f"{store.uri(shard)}: pool keys missing from the shard: {sorted(missing)[:5]}")


POOL_COLUMNS = ("key", "shard", "domain", "source")  # what pseudo-labelling needs of the pool manifest


def read_pool_manifest(store) -> pd.DataFrame:
    """The pool manifest as pseudo-labelling reads it: the POOL_COLUMNS present, at least one row."""
    if not store.exists(layout.POOL_MANIFEST):
        raise InputError(f"{store.uri(layout.POOL_MANIFEST)}: no pool manifest (materialise unlabeled_pool first)")
    df = pd.read_parquet(store.fetch(layout.POOL_MANIFEST))
    missing = [c for c in POOL_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{store.uri(layout.POOL_MANIFEST)}: missing columns {missing}")
    if df.empty:
        raise InputError(f"{store.uri(layout.POOL_MANIFEST)}: the pool is empty")
    return df


def _pool_shard_key(store, shard: str) -> str:
    for key in (shard, layout.join(layout.POOL, shard)):
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
