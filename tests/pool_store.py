"""Test helper: record videos as extracted in the ingest buckets, as a bucket's `web_frames` run
does, so the pool finds their frames (`dap_model.pool.extracted_videos`)."""

from __future__ import annotations

import io

import pandas as pd

from dap_model import layout


def record_extracted(store, video_ids: list[str], status: str = "ok", step: str = "frames", bucket_size: int = 100) -> list[str]:
    """Assign `video_ids` to buckets (appending to the assignment) and give each an outcome row
    `status` at `step`; returns the buckets touched."""
    from dap_model.video.buckets import _outcome, _save_outcomes, extend_assignment, load_assignment, read_outcomes

    assignment = extend_assignment(load_assignment(store), pd.DataFrame(
        {"video_id": video_ids, "url": [f"https://example.org/{v}.mp4" for v in video_ids]}), bucket_size)
    buf = io.BytesIO()
    assignment.to_parquet(buf, index=False)
    store.put_bytes(layout.WEB_BUCKET_ASSIGNMENT, buf.getvalue())
    touched = sorted(set(assignment.loc[assignment["video_id"].isin(video_ids), "bucket"]))
    for bucket in touched:
        members = assignment.loc[assignment["bucket"] == bucket, "video_id"].tolist()
        old = read_outcomes(store, bucket)
        rows = {} if old is None else {r["video_id"]: r for r in old.to_dict("records")}
        for vid in set(members) & set(video_ids):
            reason = "" if status == "ok" else f"{status} in the test"
            rows[vid] = _outcome(vid, bucket, status, step, reason, sha256="0" * 64 if status == "ok" else None,
                                 settings="s" if step == "frames" else None, sampled=1, accepted=1 if status == "ok" else 0)
        for vid in members:
            rows.setdefault(vid, _outcome(vid, bucket, "failed", "download", "not downloaded in the test"))
        _save_outcomes(store, bucket, members, rows)
    return touched
