"""Ingest buckets: web videos grouped into a bounded number of partitions.

A video's bucket is fixed the first time the video is seen. `web/buckets/assignment.parquet`
lists (video_id, bucket, url) and rows are only ever appended: new manifest rows, in manifest order,
top up the newest bucket to `video.bucket_size` videos and then open new ones (`b000000`,
`b000001`, …). Existing videos never move and a full bucket never changes, whatever later
happens to the manifest (rows added, reordered or removed); 250,000 videos at 100 per bucket
are 2,500 partitions. The sensor and `make run` both append, each as one read-modify-write
under the store's `update_bytes` (a file lock, or a conditional S3 PUT), so neither loses the
other's rows.

A bucket's run processes its videos in parallel (`video.bucket_workers` download threads, then
as many frame-extraction processes) and records one
row per video in `web/buckets/<bucket>/outcomes.parquet` (`OUTCOMES_SCHEMA`): a re-run skips
the videos that are done and retries only the failed ones, and a bad video is a `failed` row,
never a failed bucket.

    plan = plan_buckets(cfg, store, known_buckets, cursor)   # the sensor and `make run`
    ingest_bucket_videos(cfg, store, bucket)                 # asset web_videos (one bucket)
    extract_bucket_frames(cfg, store, bucket)                # asset web_frames (one bucket)
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd
import pandera.pandas as pa

from dap_model import layout
from dap_model.errors import DapError, InputError
from dap_model.video.manifest import manifest_fingerprint
from dap_model.schema import validate_table

BUCKET_PREFIX = "b"
BUCKET_DIGITS = 6  # b000000 … b999999
STATUSES = ("ok", "failed", "skipped")  # skipped: no longer in the manifest
STEPS = ("manifest", "download", "frames")  # the last step a video went through
ASSIGNMENT_COLUMNS = ("video_id", "bucket", "url")

OUTCOMES_SCHEMA = pa.DataFrameSchema(
    {
        "video_id": pa.Column(str, unique=True),
        "bucket": pa.Column(str, pa.Check.str_matches(rf"^{BUCKET_PREFIX}\d{{{BUCKET_DIGITS}}}$")),
        "status": pa.Column(str, pa.Check.isin(STATUSES)),
        "step": pa.Column(str, pa.Check.isin(STEPS)),
        "reason": pa.Column(str),  # empty when ok
        "sha256": pa.Column(str, nullable=True),  # of the downloaded file
        "settings": pa.Column(str, nullable=True),  # digest of the knobs the frames were extracted with
        "frames_sampled": pa.Column(int, pa.Check.ge(0)),
        "frames_accepted": pa.Column(int, pa.Check.ge(0)),
        "seconds": pa.Column(float, pa.Check.ge(0)),
    },
    checks=[pa.Check(lambda df: ((df["status"] == "ok") == (df["reason"] == "")).all(), error="a reason iff not ok")],
    strict=True,
    name="bucket outcomes",
)


def bucket_key(index: int) -> str:
    """The partition key of the index-th bucket: `b000042`."""
    return f"{BUCKET_PREFIX}{index:0{BUCKET_DIGITS}d}"


def extend_assignment(assignment: pd.DataFrame, rows: pd.DataFrame, bucket_size: int) -> pd.DataFrame:
    """`assignment` with the videos of `rows` [video_id, url] it does not hold yet appended in
    their order: the newest bucket is topped up to `bucket_size` videos, then new buckets open.
    Rows already there are never changed."""
    rows = rows[~rows["video_id"].isin(set(assignment["video_id"]))].drop_duplicates("video_id")
    new = rows["video_id"].tolist()
    if not new:
        return assignment
    if assignment.empty:
        index, room = 0, bucket_size
    else:
        last = assignment["bucket"].iloc[-1]
        index = int(last[len(BUCKET_PREFIX):])
        room = bucket_size - int((assignment["bucket"] == last).sum())
        if room <= 0:
            index, room = index + 1, bucket_size
    buckets = []
    for _ in new:
        if room == 0:
            index, room = index + 1, bucket_size
        buckets.append(bucket_key(index))
        room -= 1
    added = pd.DataFrame({"video_id": new, "bucket": buckets, "url": rows["url"].tolist()})
    return pd.concat([assignment, added], ignore_index=True)


def _read_parquet(store, key: str, **kw) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(store.get_bytes(key)), **kw)


def _write_parquet(store, key: str, df: pd.DataFrame) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    store.put_bytes(key, buf.getvalue())  # atomic (temp name + rename, or one S3 PUT)


def load_assignment(store) -> pd.DataFrame:
    """[video_id, bucket, url] in assignment order; empty before the first video is seen."""
    if not store.exists(layout.WEB_BUCKET_ASSIGNMENT):
        return _checked_assignment(store, None)
    return _checked_assignment(store, store.get_bytes(layout.WEB_BUCKET_ASSIGNMENT))


def _checked_assignment(store, data: bytes | None) -> pd.DataFrame:
    if data is None:
        return pd.DataFrame({c: pd.Series(dtype=str) for c in ASSIGNMENT_COLUMNS})
    df = pd.read_parquet(io.BytesIO(data))
    if list(df.columns) != list(ASSIGNMENT_COLUMNS) or df["video_id"].duplicated().any():
        raise InputError(f"bucket assignment {store.uri(layout.WEB_BUCKET_ASSIGNMENT)}: expected unique "
                         f"video_id and columns {list(ASSIGNMENT_COLUMNS)}, got {list(df.columns)}")
    return df


def assign_videos(store, rows: pd.DataFrame, bucket_size: int) -> tuple[pd.DataFrame, int]:
    """Append the videos of `rows` [video_id, url] not assigned yet (`extend_assignment`) to the
    stored assignment; returns (the assignment afterwards, its row count before). One
    read-modify-write through `store.update_bytes`, so concurrent writers (the sensor and
    `make run`) never lose each other's rows."""
    seen: dict[str, object] = {}

    def change(data: bytes | None) -> bytes | None:
        old = _checked_assignment(store, data)
        new = extend_assignment(old, rows, bucket_size)
        seen.update(before=len(old), after=new)  # the last call is the one that was stored
        if len(new) == len(old):
            return None
        buf = io.BytesIO()
        new.to_parquet(buf, index=False)
        return buf.getvalue()

    store.update_bytes(layout.WEB_BUCKET_ASSIGNMENT, change)
    return seen["after"], seen["before"]


def bucket_members(store, bucket: str) -> pd.DataFrame:
    """[video_id, bucket, url] of one bucket's videos, in assignment order; InputError for an
    unknown bucket."""
    members = pd.DataFrame(columns=list(ASSIGNMENT_COLUMNS))
    if store.exists(layout.WEB_BUCKET_ASSIGNMENT):  # only this bucket's rows become pandas objects
        members = _read_parquet(store, layout.WEB_BUCKET_ASSIGNMENT, filters=[("bucket", "==", bucket)])
    if members.empty:
        raise InputError(f"bucket {bucket!r}: no videos are assigned to it "
                         f"({store.uri(layout.WEB_BUCKET_ASSIGNMENT)})")
    return members


@dataclass
class BucketPlan:
    """What one look at the manifest found. `mark` is None when there is no readable manifest."""

    mark: str | None
    reason: str = ""  # one line when there is nothing to do
    new_videos: list[str] = field(default_factory=list)  # assigned by this look
    new_buckets: list[str] = field(default_factory=list)  # assigned buckets the orchestrator does not know yet
    touched: list[str] = field(default_factory=list)  # buckets with work: new videos or not known yet
    assigned: int = 0  # rows of the assignment

    @property
    def cursor(self) -> str:
        return json.dumps({"manifest": self.mark, "assigned": self.assigned}, sort_keys=True)


def _parse_cursor(cursor: str | None) -> tuple[str | None, int | None]:
    try:
        d = json.loads(cursor or "")
        return str(d["manifest"]), int(d["assigned"])
    except (ValueError, TypeError, KeyError):
        return None, None  # no cursor yet, or one from an older sensor


def plan_buckets(cfg, store, known_buckets, cursor: str | None = None) -> BucketPlan:
    """Assign new manifest rows to buckets (appending to the assignment) and say which buckets
    have work. `known_buckets`: the partitions the orchestrator already has; `cursor`: the last
    plan's `cursor`, or None. Rows assigned since the cursor's count, and every assigned bucket
    the orchestrator does not know, are `touched`. With an unchanged manifest fingerprint and
    nothing assigned since, the manifest is not read."""
    from dap_model.video.pipeline import load_manifest, manifest_source, s3_endpoint

    source = manifest_source(cfg, store)
    mark = manifest_fingerprint(source, s3_endpoint(cfg))
    if mark is None:
        return BucketPlan(None, f"no manifest at {source} yet (materialise web_video_manifest)")
    last_mark, last_assigned = _parse_cursor(cursor)
    new: list[str] = []
    if mark == last_mark and store.exists(layout.WEB_BUCKET_ASSIGNMENT):  # the bucket column is all it takes
        buckets = _read_parquet(store, layout.WEB_BUCKET_ASSIGNMENT, columns=["bucket"])["bucket"]
        before = len(buckets)
    else:
        try:
            rows = load_manifest(cfg, store)[["video_id", "url"]]
        except DapError as err:
            return BucketPlan(None, f"manifest {source} is invalid: {err}")
        assignment, before = assign_videos(store, rows, cfg.video.bucket_size)
        new = assignment["video_id"].iloc[before:].tolist()
        buckets = assignment["bucket"]
    if last_assigned is None or last_assigned > before:
        last_assigned = before  # no cursor (or a reset store): only new rows and unknown buckets
    unknown = sorted(set(buckets.unique()) - set(known_buckets))
    touched = sorted(set(buckets.iloc[last_assigned:].unique()) | set(unknown))
    reason = "" if touched else f"no new videos in {source}"
    return BucketPlan(mark, reason, new, unknown, touched, len(buckets))


# --- one bucket's run ----------------------------------------------------------------------


def read_outcomes(store, bucket: str) -> pd.DataFrame | None:
    key = layout.web_bucket_outcomes(bucket)
    if not store.exists(key):
        return None
    return validate_outcomes(_read_parquet(store, key), store.uri(key))


def validate_outcomes(df: pd.DataFrame, name: str = "bucket outcomes") -> pd.DataFrame:
    return validate_table(OUTCOMES_SCHEMA, df, name)


def _outcome(vid: str, bucket: str, status: str, step: str, reason: str = "", *, sha256=None, settings=None,
             sampled: int = 0, accepted: int = 0, seconds: float = 0.0) -> dict:
    return {"video_id": vid, "bucket": bucket, "status": status, "step": step, "reason": reason,
            "sha256": sha256, "settings": settings, "frames_sampled": int(sampled),
            "frames_accepted": int(accepted), "seconds": float(seconds)}


def _failure(err: Exception) -> str:
    """One line: the message of a user-facing error, the type as well for anything else."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return text if isinstance(err, DapError) else f"{type(err).__name__}: {text}"


def _run_parallel(work: dict[str, tuple], workers: int, progress, pool=None) -> dict[str, dict]:
    """{video_id: outcome row} of `work` ({video_id: (function, *args)}), `workers` at a time: on
    threads, or on `pool(n)` (an executor factory). A video's exception is its own `failed` row
    (made by the function); the pool never raises for one video."""
    done: dict[str, dict] = {}
    if not work:
        return done
    n = max(1, min(workers, len(work)))
    make = pool or (lambda k: ThreadPoolExecutor(max_workers=k, thread_name_prefix="dap-bucket"))
    with make(n) as executor:
        futures = {executor.submit(*job): vid for vid, job in work.items()}
        for i, fut in enumerate(as_completed(futures), 1):
            row = fut.result()
            done[futures[fut]] = row
            if progress:
                progress(f"{i}/{len(work)} {row['video_id']}: {row['status']}"
                         + (f" ({row['reason']})" if row["reason"] else ""))
    return done


def _processes(n: int) -> ProcessPoolExecutor:
    """Worker processes for frame extraction (CPU-bound: decode, layout, horizon check). Spawned,
    not forked: the parent holds threads (Dagster, torch) that a fork would copy mid-lock."""
    return ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread)


def _one_thread() -> None:
    """A worker process: one OpenCV thread, so `n` workers use about `n` cores."""
    import cv2

    cv2.setNumThreads(1)


def _save_outcomes(store, bucket: str, members: list[str], rows: dict[str, dict]) -> pd.DataFrame:
    df = pd.DataFrame([rows[v] for v in members], columns=list(OUTCOMES_SCHEMA.columns))
    df = df.astype({"frames_sampled": int, "frames_accepted": int, "seconds": float})
    for c in ("sha256", "settings"):
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    df = validate_outcomes(df, f"outcomes of bucket {bucket}")
    _write_parquet(store, layout.web_bucket_outcomes(bucket), df)
    return df


def ingest_bucket_videos(cfg, store, bucket: str, progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Asset `web_videos` for one bucket: download every member not done yet, on
    `video.bucket_workers` threads (the work waits on the network).
    Done = an `ok` row from an earlier run (downloaded, or frames extracted). Members no longer
    in the manifest are `skipped`. Returns (and stores) the bucket's outcomes."""
    from dap_model.video.pipeline import load_manifest

    assigned = bucket_members(store, bucket)
    members = assigned["video_id"].tolist()
    manifest = load_manifest(cfg, store, only_urls=assigned["url"]).set_index("video_id", drop=False)
    old = read_outcomes(store, bucket)
    rows = {} if old is None else {r["video_id"]: r for r in old.to_dict("records")}
    work: dict[str, tuple] = {}
    for vid in members:
        if vid not in manifest.index:
            rows[vid] = _outcome(vid, bucket, "skipped", "manifest", "no longer in the manifest")
        elif rows.get(vid, {}).get("status") != "ok":
            work[vid] = (_download_one, cfg, store, bucket, vid, manifest.loc[vid].to_dict())
    rows.update(_run_parallel(work, cfg.video.bucket_workers, progress))
    return _save_outcomes(store, bucket, members, rows)


def _download_one(cfg, store, bucket: str, vid: str, row: dict) -> dict:
    """One video's download as an outcome row."""
    from dap_model.video.pipeline import fetch_video

    t0 = time.perf_counter()
    try:
        meta = fetch_video(cfg, store, vid, row)
    except Exception as err:  # noqa: BLE001 — one bad video is a failed row, never a failed bucket
        return _outcome(vid, bucket, "failed", "download", _failure(err), seconds=time.perf_counter() - t0)
    return _outcome(vid, bucket, "ok", "download", sha256=meta["sha256"], seconds=time.perf_counter() - t0)


def extract_bucket_frames(cfg, store, bucket: str, progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Asset `web_frames` for one bucket: extract frames of every member that is downloaded
    (`ok` at step download), failed at step frames, or extracted with other knobs, on
    `video.bucket_workers` processes (the work is CPU-bound, and the per-video code keeps OpenCV
    objects that are not thread-safe). Members whose download failed keep their row. Returns
    (and stores) the outcomes."""
    from dap_model.storage import open_store
    from dap_model.video.pipeline import settings_digest

    members = bucket_members(store, bucket)["video_id"].tolist()
    old = read_outcomes(store, bucket)
    if old is None:
        raise InputError(f"bucket {bucket!r}: no outcomes yet (materialise web_videos for this bucket first)")
    rows = {r["video_id"]: r for r in old.to_dict("records")}
    digest = settings_digest(cfg)
    work: dict[str, tuple] = {}
    for vid in members:
        r = rows.get(vid)
        if r is None:
            rows[vid] = _outcome(vid, bucket, "failed", "download", "not downloaded (added after web_videos ran)")
        elif (r["step"] == "download" and r["status"] == "ok") or (
                r["step"] == "frames" and (r["status"] == "failed" or r["settings"] != digest)):
            work[vid] = (_extract_one, cfg, store, bucket, vid, digest)
    if cfg.video.bucket_workers > 1 and len(work) > 1:  # worker processes open the store of storage.*
        theirs, ours = open_store(cfg.storage).uri(layout.WEB_FRAMES), store.uri(layout.WEB_FRAMES)
        if theirs != ours:
            raise InputError(f"bucket {bucket!r}: worker processes would write {theirs} (storage.*), not {ours}")
        work = {vid: (fn, c, None, *rest) for vid, (fn, c, _, *rest) in work.items()}
        rows.update(_run_parallel(work, cfg.video.bucket_workers, progress, _processes))
    else:  # one video: no process to start
        rows.update(_run_parallel(work, 1, progress))
    return _save_outcomes(store, bucket, members, rows)


def _extract_one(cfg, store, bucket: str, vid: str, digest: str) -> dict:
    """One video's frames as an outcome row; `store` None = open it from `cfg.storage` (a worker
    process)."""
    from dap_model.storage import open_store
    from dap_model.video.pipeline import extract_video

    t0 = time.perf_counter()
    try:
        df, summary = extract_video(cfg, store or open_store(cfg.storage), vid)
    except Exception as err:  # noqa: BLE001 — one bad video is a failed row, never a failed bucket
        return _outcome(vid, bucket, "failed", "frames", _failure(err), seconds=time.perf_counter() - t0)
    return _outcome(vid, bucket, "ok", "frames", sha256=summary["sha256"], settings=digest,
                    sampled=len(df), accepted=int(df["accepted"].sum()), seconds=time.perf_counter() - t0)


def outcomes_version(df: pd.DataFrame, columns=("video_id", "status", "sha256", "settings", "frames_accepted")) -> str:
    """A data version for a bucket: md5 of its outcomes' identifying columns (sorted by video)."""
    rows = df.sort_values("video_id")[list(columns)].astype(str).to_csv(index=False)
    return hashlib.md5(rows.encode()).hexdigest()


def outcome_counts(df: pd.DataFrame) -> dict:
    """Figures for a bucket's metadata: videos, ok/failed/skipped, accepted frames."""
    counts = df["status"].value_counts()
    return {"videos": len(df), **{s: int(counts.get(s, 0)) for s in STATUSES},
            "frames_accepted": int(df["frames_accepted"].sum())}


def pending_buckets(store) -> list[str]:
    """Buckets with work left: no outcomes yet, or a member that is not `ok`/`skipped` at step
    frames (failed, or downloaded only)."""
    assignment = load_assignment(store)
    out = []
    for bucket, group in assignment.groupby("bucket", sort=True):
        df = read_outcomes(store, bucket)
        if df is None or set(group["video_id"]) - set(df["video_id"]):
            out.append(bucket)
            continue
        done = (df["status"] == "skipped") | ((df["status"] == "ok") & (df["step"] == "frames"))
        if not done.all():
            out.append(bucket)
    return out
