"""The web-video steps of one video as plain functions over (config, data store): what the
Dagster asset `web_video_manifest` calls, and what a bucket's run (`dap_model.video.buckets`,
assets `web_videos` and `web_frames`) calls per video. Each step is idempotent: a video already
fetched from the same source, or frames already extracted from the same bytes with the same
knobs, are not redone."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pandas as pd

from dap_model import layout
from dap_model.config import project_dir
from dap_model.data.shards import Sample, ShardWriter
from dap_model.errors import InputError
from dap_model.storage import LocalStore, safe_key
from dap_model.video.download import download_video, probe_video
from dap_model.video.frames import collect_frames
from dap_model.video.manifest import check_title, read_manifest
from dap_model.video.webstyle import generate_default


BATCHING_KNOBS = ("bucket_size", "bucket_workers")  # `video` knobs that only group and schedule videos


def s3_endpoint(cfg) -> str:
    return cfg.video.s3_endpoint_url or cfg.storage.endpoint_url


def manifest_source(cfg, store) -> str:
    """The manifest the sensor watches: `video.manifest`, else the generated default's."""
    if cfg.video.manifest:
        return cfg.video.manifest
    if isinstance(store, LocalStore):
        return str(store.path(layout.WEB_DEFAULT_MANIFEST))
    return store.uri(layout.WEB_DEFAULT_MANIFEST)


def load_manifest(cfg, store, only_urls=None) -> pd.DataFrame:
    """The validated manifest the sensor watches; `only_urls`: just these rows."""
    return read_manifest(manifest_source(cfg, store), s3_endpoint(cfg), only_urls)


def build_manifest(cfg, store, progress=None) -> tuple[pd.DataFrame, bool]:
    """`web_video_manifest`: generate the default videos when no manifest is configured (and
    none was generated yet), validate, and store the normalised table. (manifest, generated)."""
    generated = False
    if not cfg.video.manifest and not store.exists(layout.WEB_DEFAULT_MANIFEST):
        generate_default(cfg, store, progress)
        generated = True
    df = load_manifest(cfg, store)
    with tempfile.TemporaryDirectory(prefix="dap-manifest-") as tmp:
        p = Path(tmp) / "manifest.parquet"
        df.to_parquet(p, index=False)
        store.put_file(p, layout.WEB_MANIFEST)
    store.put_bytes(layout.resolved_config(layout.WEB), cfg.to_yaml().encode())
    return df, generated


def _row(cfg, store, vid: str) -> dict:
    df = load_manifest(cfg, store)
    hit = df[df["video_id"] == vid]
    if hit.empty:
        raise InputError(f"video {vid!r}: not in the manifest {manifest_source(cfg, store)} (removed?)")
    return hit.iloc[0].to_dict()


def _sidecar(store, vid: str) -> dict | None:
    key = layout.web_video_sidecar(safe_key(vid))
    if not store.exists(key):
        return None
    return json.loads(store.get_bytes(key))


def fetch_video(cfg, store, vid: str, row: dict | None = None) -> dict:
    """One video of a `web_videos` bucket: download, check, store as `web/videos/<id>.<ext>`.
    `row` is its manifest row (read from the manifest when None)."""
    row = _row(cfg, store, vid) if row is None else row
    check_title(row.get("title"))
    old = _sidecar(store, vid)
    if old and old.get("source") == row["url"] and store.exists(old["key"]):
        return {**old, "cached": True}
    v = cfg.video
    work = project_dir() / ".cache" / "web_downloads" / vid
    res = download_video(
        row["url"], vid, work, max_bytes=int(v.max_download_mb * 2**20), timeout_s=v.download_timeout_s,
        retries=v.download_retries, backoff_s=v.retry_backoff_s, s3_endpoint_url=s3_endpoint(cfg),
    )
    try:
        info = probe_video(res.path, row["url"])
        key = layout.web_video(vid, res.ext)
        store.put_file(res.path, key)
    finally:
        res.path.unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    meta = {
        "video_id": vid, "source": row["url"], "key": key, "uri": store.uri(key), "sha256": res.sha256,
        "size_bytes": res.size_bytes, "ext": res.ext, "method": res.method, "attempts": res.attempts,
        "licence": row.get("licence"), "attribution": row.get("attribution"), "title": row.get("title"), **info,
    }
    store.put_bytes(layout.web_video_sidecar(vid), json.dumps(meta, indent=1, sort_keys=True).encode())
    return {**meta, "cached": False}


def settings_digest(cfg) -> str:
    """Digest of the `video` knobs: frames extracted under another digest are redone. How
    videos are grouped and run (`BATCHING_KNOBS`) does not change a video's frames."""
    knobs = cfg.video.model_dump(mode="json", exclude=set(BATCHING_KNOBS))
    return hashlib.sha256(json.dumps(knobs, sort_keys=True).encode()).hexdigest()[:16]


def extract_video(cfg, store, vid: str) -> tuple[pd.DataFrame, dict]:
    """One video of a `web_frames` bucket: frames manifest (validated) and a summary."""
    src = _sidecar(store, vid)
    if src is None:
        raise InputError(f"video {vid!r}: not downloaded yet (materialise web_videos for its bucket)")
    prefix = layout.web_frames(vid)
    digest = settings_digest(cfg)
    if store.exists(f"{prefix}/summary.json") and store.exists(f"{prefix}/frames.parquet"):
        old = json.loads(store.get_bytes(f"{prefix}/summary.json"))
        if old.get("sha256") == src["sha256"] and old.get("settings") == digest:
            with tempfile.TemporaryDirectory() as tmp:
                p = Path(tmp) / "f.parquet"
                p.write_bytes(store.get_bytes(f"{prefix}/frames.parquet"))
                return pd.read_parquet(p), {**old, "cached": True}
    local = store.fetch(src["key"], project_dir() / ".cache" / "store")
    with tempfile.TemporaryDirectory(prefix="dap-frames-") as tmp:
        tmp = Path(tmp)
        writer = ShardWriter(tmp, vid, cfg.video.shard_size)

        def sink(key, rgb, rec) -> str:
            return writer.write(Sample(key, rgb, meta={
                "video_id": vid, "source": src["source"], "frame_index": rec.frame_index, "time_s": rec.time_s,
                "layout": rec.layout, "tilt_deg": rec.tilt_deg, "licence": src.get("licence"),
                "attribution": src.get("attribution"),
            }))

        df, vinfo = collect_frames(local, cfg.video, vid, src["source"], sink)
        shards = writer.close()
        # A readable video whose frames all fail validation is an outcome, not an error: its
        # rows record why, and the `web_frames_yield` check warns about it.
        for name in shards:
            store.put_file(tmp / name, f"{prefix}/{name}")
        for stale in store.list(prefix):
            name = stale.rsplit("/", 1)[-1]
            if name.endswith(".tar") and name not in shards:
                store.delete(stale)
        df.to_parquet(tmp / "frames.parquet", index=False)
        store.put_file(tmp / "frames.parquet", f"{prefix}/frames.parquet")
    summary = {
        "video_id": vid, "sha256": src["sha256"], "settings": digest, "sampled": int(len(df)),
        "accepted": int(df["accepted"].sum()), "rejected": int((~df["accepted"]).sum()),
        "by_reason": {k or "accepted": int(c) for k, c in Counter(df["reason"]).items()},
        "layouts": {k: int(c) for k, c in Counter(df["layout"]).items()}, "shards": shards,
        "frames_decoded": vinfo.frames_decoded,
        "layout_sources": {k: int(c) for k, c in Counter(df["layout_source"]).items()},
    }
    store.put_bytes(f"{prefix}/config.resolved.yaml", cfg.to_yaml().encode())
    store.put_bytes(f"{prefix}/summary.json", json.dumps(summary, indent=1, sort_keys=True).encode())
    return df, {**summary, "cached": False}


def read_frames_manifest(store, vid: str) -> pd.DataFrame:
    key = layout.web_frames_manifest(safe_key(vid))
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "f.parquet"
        p.write_bytes(store.get_bytes(key))
        return pd.read_parquet(p)
