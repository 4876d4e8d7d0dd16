"""Real unlabelled material for the pool: the local folders of `pool.real_sources`.

    res = ingest_real_sources(cfg, store, progress)   # asset scene_tags, before tagging
    items = real_items(store)                         # accepted rows → [key, shard, source, origin]

A source of kind `images` contributes every jpg/png under its folder (recursively) that is an
ERP (W/H = 2 within `video.aspect_tolerance`), resized to `video.height` × 2·`video.height`. A
source of kind `videos` contributes the accepted frames of each video file through the web-video
frame path (`collect_frames`: layout, eye, duplicates, horizon check, resize to `video.height`).
Every file or sampled frame is a row of `real/manifest.parquet`: accepted with its key and shard,
or rejected with a named reason (`not_2to1`, `unreadable`, `unsupported`, or a frame reason of
the web path); nothing in a folder stops the run. Shards: `real/shards/<source>-NNNNNN.tar`.

A missing folder is skipped with its reason in `real/summary.json` (and the progress log); its
earlier samples leave the store, which always mirrors the configured folders. A source whose
files (relative paths, sizes, mtimes) and `video` knobs are unchanged keeps its shards and rows.
`pool.real_max_files` caps the images or videos read per source (the first by relative path).

File names are validated before they become sample keys: a key is `real-<source>-<relative
path>` with `/` as `-`; a name with characters outside `[A-Za-z0-9_-]` has them replaced and a
hash of the original name appended, so keys stay unique and safe."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

import cv2
import numpy as np
import pandas as pd
import pandera.pandas as pa

from dap_model import layout
from dap_model.config import project_dir
from dap_model.data.shards import Sample, ShardWriter
from dap_model.errors import DapError
from dap_model.images import try_read_rgb
from dap_model.schema import validate_table
from dap_model.video.frames import REASONS as FRAME_REASONS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
KINDS = {"images": IMAGE_SUFFIXES, "videos": VIDEO_SUFFIXES}
REASONS = tuple(dict.fromkeys((*FRAME_REASONS, "unreadable", "not_2to1", "unsupported")))
KEY_PREFIX = "real"
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")
MAX_NAME = 80  # characters of a file's name kept in its key

REAL_SCHEMA = pa.DataFrameSchema(
    {
        "source": pa.Column(str, pa.Check.str_matches(r"^[A-Za-z0-9_\-]+$")),  # source id (its folder's name)
        "kind": pa.Column(str, pa.Check.isin(list(KINDS))),
        "file": pa.Column(str),  # path relative to the source folder (POSIX)
        "frame_index": pa.Column(int, pa.Check.ge(0)),  # 0 for an image
        "accepted": pa.Column(bool),
        "reason": pa.Column(str, pa.Check.isin(REASONS)),
        "detail": pa.Column(str),
        "key": pa.Column(str, pa.Check.str_matches(r"^[A-Za-z0-9_\-]+$"), nullable=True),
        "shard": pa.Column(str, pa.Check.str_startswith(layout.REAL_SHARDS + "/"), nullable=True),
    },
    checks=[
        pa.Check(lambda df: (df["accepted"] == (df["reason"] == "")).all(), error="accepted iff reason is empty"),
        pa.Check(lambda df: (df["accepted"] == df["key"].notna()).all(), error="accepted rows have a key"),
        pa.Check(lambda df: (df["accepted"] == df["shard"].notna()).all(), error="accepted rows have a shard"),
    ],
    strict=True,
    unique=["source", "file", "frame_index"],
    name="real material manifest",
)
COLUMNS = list(REAL_SCHEMA.columns)


@dataclass
class RealResult:
    manifest: pd.DataFrame  # REAL_SCHEMA rows of every configured source that was read
    sources: list[dict] = field(default_factory=list)  # per source: id, folder, kind, status, reason, counts
    written: bool = False  # False: no source configured and nothing under real/ to clear

    def skipped(self) -> list[dict]:
        return [s for s in self.sources if s["status"] == "skipped"]


def safe_name(name: str, limit: int = MAX_NAME) -> str:
    """`name` as key characters: unchanged when it is already `[A-Za-z0-9_-]{1,limit}`, else the
    unsafe characters as `_`, cut to `limit`, plus `-<8 hex>` of the original name."""
    clean = _UNSAFE.sub("_", name)
    if clean == name and 0 < len(name) <= limit:
        return name
    return f"{clean[:limit]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def source_ids(paths: list[str]) -> list[str]:
    """One id per configured folder: its name made key-safe, `-2`, `-3`, … for repeats."""
    out: list[str] = []
    for p in paths:
        base = safe_name(PurePosixPath(p.replace("\\", "/").rstrip("/")).name or "source", 40)
        sid, n = base, 1
        while sid in out:
            n += 1
            sid = f"{base}-{n}"
        out.append(sid)
    return out


def resolve_folder(path: str) -> Path:
    """A source folder: absolute as given, relative to the project folder otherwise."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_dir() / p


def _files(folder: Path, kind: str, max_files: int) -> list[Path]:
    """Every visible file under `folder` by relative path (hidden files and folders left out):
    the first `max_files` of the source's kind (0 = all), and every other file (recorded as
    `unsupported`)."""
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    ours = [p for p in files if p.suffix.lower() in KINDS[kind]]
    if max_files:
        ours = ours[:max_files]
    return sorted(set(ours) | {p for p in files if p.suffix.lower() not in KINDS[kind]})


def _fingerprint(sid: str, kind: str, folder: Path, files: list[Path], settings: str) -> str:
    h = hashlib.sha256(json.dumps([sid, kind, settings]).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _row(sid: str, kind: str, rel: str, frame_index: int = 0, reason: str = "", detail: str = "",
         key: str | None = None, shard: str | None = None) -> dict:
    return {"source": sid, "kind": kind, "file": rel, "frame_index": int(frame_index), "accepted": not reason,
            "reason": reason, "detail": detail, "key": key, "shard": shard}


class _Keys:
    """Unique sample-key stems for one source: `real-<source>-<safe relative path>`."""

    def __init__(self, sid: str):
        self.sid, self.used = sid, set()

    def __call__(self, rel: str) -> str:
        stem = str(PurePosixPath(rel).with_suffix("")).replace("/", "-")
        key = f"{KEY_PREFIX}-{self.sid}-{safe_name(stem)}"
        if key in self.used:  # `a.jpg` beside `a.png`, or `a/b.jpg` beside `a-b.jpg`
            key = f"{key}-{hashlib.sha1(rel.encode()).hexdigest()[:8]}"
        self.used.add(key)
        return key


def read_erp(path: Path, height: int, aspect_tolerance: float) -> tuple[np.ndarray | None, str, str]:
    """(rgb [height,2·height,3] uint8 or None, reason, detail) of one image file."""
    rgb, why = try_read_rgb(path)
    if rgb is None:
        return None, "unreadable", why
    h, w = rgb.shape[:2]
    if abs(w / h / 2.0 - 1.0) > aspect_tolerance:
        return None, "not_2to1", f"image is {w}x{h}, an ERP is 2:1"
    interp = cv2.INTER_AREA if h > height else cv2.INTER_LINEAR
    rgb = cv2.resize(rgb, (2 * height, height), interpolation=interp)
    return rgb, "", ""  # [height,2·height,3]


def _ingest_images(sid: str, folder: Path, files: list[Path], video, writer: ShardWriter, progress) -> list[dict]:
    rows, keys = [], _Keys(sid)
    for i, f in enumerate(files):
        rel = f.relative_to(folder).as_posix()
        if f.suffix.lower() not in IMAGE_SUFFIXES:
            rows.append(_row(sid, "images", rel, reason="unsupported", detail=f"not one of {', '.join(IMAGE_SUFFIXES)}"))
            continue
        rgb, reason, detail = read_erp(f, video.height, video.aspect_tolerance)
        if rgb is None:
            rows.append(_row(sid, "images", rel, reason=reason, detail=detail))
            continue
        key = keys(rel)
        shard = writer.write(Sample(key, rgb, meta={"source": sid, "file": rel}))
        rows.append(_row(sid, "images", rel, key=key, shard=layout.join(layout.REAL_SHARDS, shard)))
        if progress and (i + 1) % 50 == 0:
            progress(f"real source {sid}: {i + 1}/{len(files)} files")
    return rows


def _ingest_videos(sid: str, folder: Path, files: list[Path], video, writer: ShardWriter, progress) -> list[dict]:
    from dap_model.video.frames import collect_frames

    rows, keys = [], _Keys(sid)
    for f in files:
        rel = f.relative_to(folder).as_posix()
        if f.suffix.lower() not in VIDEO_SUFFIXES:
            rows.append(_row(sid, "videos", rel, reason="unsupported", detail=f"not one of {', '.join(VIDEO_SUFFIXES)}"))
            continue
        vid = keys(rel)
        kept: list[Sample] = []  # written only once the whole video was read

        def sink(key, rgb, rec, vid=vid, rel=rel, kept=kept) -> str:
            kept.append(Sample(key, rgb, meta={"source": sid, "file": rel, "video_id": vid,
                                               "frame_index": rec.frame_index, "time_s": rec.time_s,
                                               "layout": rec.layout, "tilt_deg": rec.tilt_deg}))
            return ""

        try:
            df, _ = collect_frames(f, video, vid, rel, sink)
        except Exception as err:  # noqa: BLE001 — one bad file (truncated, malformed boxes) is a row, never a failed run
            text = str(err).strip().splitlines()[0] if str(err).strip() else ""
            text = text if isinstance(err, DapError) else f"{type(err).__name__}: {text}"
            rows.append(_row(sid, "videos", rel, reason="unreadable", detail=text))
            if progress:
                progress(f"real source {sid}: {rel} unreadable: {text}")
            continue
        shard_of = {s.key: layout.join(layout.REAL_SHARDS, writer.write(s)) for s in kept}
        for r in df.to_dict("records"):
            key = r["key"] if r["accepted"] else None
            rows.append(_row(sid, "videos", rel, r["frame_index"], r["reason"], r["detail"], key,
                             shard_of.get(key) if key else None))
        if progress:
            progress(f"real source {sid}: {rel}: {len(kept)} of {len(df)} sampled frames accepted")
    return rows


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS).astype({"frame_index": int, "accepted": bool})
    for c in ("key", "shard"):
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


def load_real_manifest(store) -> pd.DataFrame | None:
    """The validated `real/manifest.parquet`, or None when there is none."""
    if not store.exists(layout.REAL_MANIFEST):
        return None
    df = pd.read_parquet(io.BytesIO(store.get_bytes(layout.REAL_MANIFEST)))
    return validate_table(REAL_SCHEMA, _frame(df.to_dict("records")), store.uri(layout.REAL_MANIFEST))


def _previous(store) -> tuple[pd.DataFrame | None, dict[str, dict]]:
    """The manifest and {source id: summary entry} of the last ingestion (unreadable = none)."""
    try:
        manifest = load_real_manifest(store)
        summary = json.loads(store.get_bytes(layout.REAL_SUMMARY)) if store.exists(layout.REAL_SUMMARY) else {}
    except (DapError, ValueError):
        return None, {}
    return manifest, {s["id"]: s for s in summary.get("sources", []) if isinstance(s, dict) and "id" in s}


def ingest_real_sources(cfg, store, progress: Callable[[str], None] | None = None) -> RealResult:
    """Bring `real/` in line with `pool.real_sources`: read new or changed folders, keep unchanged
    ones, drop the samples of folders no longer configured or missing. The manifest goes last."""
    from dap_model.video.pipeline import settings_digest

    sources = cfg.pool.real_sources
    if not sources and not store.exists(layout.REAL_MANIFEST):
        return RealResult(_frame([]))
    video = cfg.video
    settings = settings_digest(cfg)
    old_manifest, old = _previous(store)
    parts: list[pd.DataFrame] = []
    summaries: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dap-real-") as tmp:
        for sid, src in zip(source_ids([s.path for s in sources]), sources):
            folder = resolve_folder(src.path)
            entry = {"id": sid, "path": src.path, "folder": str(folder), "kind": src.kind}
            if not folder.is_dir():
                reason = f"{folder}: no such folder" if not folder.exists() else f"{folder}: not a folder"
                summaries.append({**entry, "status": "skipped", "reason": reason})
                if progress:
                    progress(f"real source {sid} skipped: {reason}")
                continue
            files = _files(folder, src.kind, cfg.pool.real_max_files)
            fp = _fingerprint(sid, src.kind, folder, files, settings)
            prev = old.get(sid, {})
            cached = None
            if old_manifest is not None and prev.get("fingerprint") == fp and prev.get("status") != "skipped":
                cached = old_manifest[old_manifest["source"] == sid]
                if not all(store.exists(s) for s in cached["shard"].dropna().unique()):
                    cached = None
            if cached is not None:
                df, status = cached, "unchanged"
            else:
                writer = ShardWriter(Path(tmp) / sid, sid, video.shard_size)
                ingest = _ingest_images if src.kind == "images" else _ingest_videos
                df = _frame(ingest(sid, folder, files, video, writer, progress))
                for name in writer.close():
                    store.put_file(Path(tmp) / sid / name, layout.join(layout.REAL_SHARDS, name))
                status = "ingested"
            by_reason = df.loc[~df["accepted"], "reason"].value_counts()
            summaries.append({**entry, "status": status, "reason": "", "fingerprint": fp, "files": len(files),
                              "rows": len(df), "accepted": int(df["accepted"].sum()),
                              "rejected": {str(k): int(v) for k, v in by_reason.items()}})
            if progress:
                progress(f"real source {sid} ({src.kind}, {status}): {int(df['accepted'].sum())} accepted, "
                         f"{int((~df['accepted']).sum())} rejected {dict(summaries[-1]['rejected'])}")
            parts.append(df)
    manifest = validate_table(REAL_SCHEMA, _frame(pd.concat(parts, ignore_index=True).to_dict("records"))
                              if parts else _frame([]), "real material manifest")
    buf = io.BytesIO()
    manifest.to_parquet(buf, index=False)
    store.put_bytes(layout.REAL_MANIFEST, buf.getvalue())
    store.put_bytes(layout.REAL_SUMMARY, json.dumps({"sources": summaries}, indent=1, sort_keys=True).encode())
    store.put_bytes(layout.resolved_config(layout.REAL), cfg.to_yaml().encode())
    keep = set(manifest["shard"].dropna())
    for key in store.list(layout.REAL_SHARDS):
        if key not in keep:  # shards of folders no longer configured, or of a larger earlier read
            store.delete(key)
    return RealResult(manifest, summaries, True)


def real_items(store) -> pd.DataFrame:
    """Accepted real images and frames → [key, shard, source, origin] (origin `<source id>:<file>`)."""
    m = load_real_manifest(store)
    if m is None:
        return pd.DataFrame(columns=["key", "shard", "source", "origin"])
    m = m[m["accepted"]]
    return pd.DataFrame({"key": m["key"].astype(str).values, "shard": m["shard"].astype(str).values, "source": "real",
                         "origin": (m["source"] + ":" + m["file"]).astype(str).values})
