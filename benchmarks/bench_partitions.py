"""Web videos at DAP's scale (250,000 videos) within Dagster's partition limits (issue #21):

- a generated manifest of 250,000 rows (`file://` URLs under a folder that does not exist, so
  nothing reaches a network): how long reading + validating it takes, the partition count;
- the real new-video sensor (`web_video_manifest_sensor`) evaluated against an on-disk sqlite
  Dagster instance (the embedded default's): the cold tick (no bucket known: assigns every row,
  asks for every bucket), adding the partitions it asks for, a tick with an unchanged manifest
  (cursor), a tick after 1,000 rows are appended (all old buckets known), a tick after a cursor
  reset;
- one bucket's run of job `web_video_ingest`, launched as `make run` launches it (`execute_job`,
  in-process executor): time to its first step, and the whole run (its 100 videos all fail at
  download: the run's own overhead and its outcome bookkeeping);
- one bucket of the real clips (`../shared/real/videos/*.mp4` and the fixture, when present)
  plus a truncated copy of one of them, end to end through the same job: outcome per clip,
  accepted frames, wall time with `video.bucket_workers` 1 and 2.

Writes benchmarks/results/partitions.json."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
REAL_CLIPS = sorted((SHARED / "real" / "videos").glob("*.mp4")) + [SHARED / "fixtures" / "gvr_testRoom1_1920Mono.mp4"]
N_VIDEOS = 250_000
N_APPENDED = 1_000
PROFILE = "tiny"
CLIP_KNOBS = ["video.height=128", "video.sample_every_s=1.0"]  # the VideoConfig defaults, not tiny's 64 px


def _project(tmp: Path, name: str) -> Path:
    """A fresh project folder (data store + Dagster instance) in the environment."""
    project = tmp / name
    (project / ".dagster").mkdir(parents=True)
    (project / ".dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ["DAP_PROJECT_DIR"] = str(project)
    os.environ["DAGSTER_HOME"] = str(project / ".dagster")
    return project


def _run_bucket(instance, overrides: list[str], bucket: str) -> dict:
    """Launch one `web_video_ingest` run for `bucket` as make run does; timings from the event log."""
    from dagster import DagsterEventType, execute_job
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    recon = ReconstructableRepository.for_module("dap_assets.definitions", "defs", working_directory=str(ROOT))
    job_def = recon.get_definition().get_job("web_video_ingest")
    run_config = {"resources": {"dap": {"config": {"profile": PROFILE, "overrides": overrides}}},
                  "execution": {"config": {"in_process": {}}}}
    tags = job_def.get_tags_for_partition_key(bucket, selected_asset_keys=None)
    t0 = time.time()
    with execute_job(recon.get_reconstructable_job("web_video_ingest"), instance=instance,
                     run_config=run_config, tags=tags) as res:
        success, run_id = res.success, res.run_id
    wall = time.time() - t0
    events = instance.all_logs(run_id)
    steps = [e.timestamp for e in events if e.dagster_event and e.dagster_event.event_type == DagsterEventType.STEP_START]
    durations = {e.dagster_event.step_key: e.dagster_event.event_specific_data.duration_ms / 1000
                 for e in events if e.dagster_event and e.dagster_event.event_type == DagsterEventType.STEP_SUCCESS}
    return {"success": success, "to_first_step_s": round(min(steps) - t0, 3), "run_s": round(wall, 3),
            "step_s": {k: round(v, 3) for k, v in durations.items()}}


def scale(tmp: Path) -> dict:
    import dagster as dg

    from dap_assets.assets.web import WEB_VIDEO_BUCKETS, web_video_manifest_sensor
    from dap_assets.definitions import defs
    from dap_assets.resources import default_resources
    from dap_model.config import load_config
    from dap_model.video.buckets import read_outcomes
    from dap_model.video.pipeline import load_manifest

    project = _project(tmp, "scale")
    manifest = project / "manifest.csv"
    urls = [f"file:///nonexistent/dap-bench/clip-{i:06d}.mp4" for i in range(N_VIDEOS + N_APPENDED)]
    pd.DataFrame({"url": urls[:N_VIDEOS], "licence": "CC-BY-4.0"}).to_csv(manifest, index=False)
    overrides = [f"video.manifest={manifest}"]
    cfg = load_config(PROFILE, overrides)
    resources = default_resources(PROFILE, overrides)
    store = resources["storage"].store()
    t0 = time.perf_counter()
    assert len(load_manifest(cfg, store)) == N_VIDEOS
    read_s = time.perf_counter() - t0

    out: dict = {"videos": N_VIDEOS, "bucket_size": cfg.video.bucket_size, "manifest_read_validate_s": round(read_s, 2)}
    with dg.DagsterInstance.get() as instance:
        def tick(cursor):
            t = time.perf_counter()
            with dg.build_sensor_context(instance=instance, resources=resources, definitions=defs, cursor=cursor) as ctx:
                result = web_video_manifest_sensor(ctx)
            return result, time.perf_counter() - t

        cold, cold_s = tick(None)
        (request,) = cold.dynamic_partitions_requests
        t = time.perf_counter()
        instance.add_dynamic_partitions(WEB_VIDEO_BUCKETS.name, list(request.partition_keys))
        add_s = time.perf_counter() - t
        partitions = instance.get_dynamic_partitions(WEB_VIDEO_BUCKETS.name)
        out["partitions"] = len(partitions)
        out["largest_bucket"] = cfg.video.bucket_size
        out["cold_tick"] = {"s": round(cold_s, 2), "new_buckets": len(request.partition_keys),
                            "run_requests": len(cold.run_requests)}
        out["add_partitions_s"] = round(add_s, 2)

        idle, idle_s = tick(cold.cursor)
        assert not getattr(idle, "run_requests", None)
        out["tick_unchanged_manifest_s"] = round(idle_s, 3)

        pd.DataFrame({"url": urls, "licence": "CC-BY-4.0"}).to_csv(manifest, index=False)
        grown, grown_s = tick(cold.cursor)
        new = list(grown.dynamic_partitions_requests[0].partition_keys) if grown.dynamic_partitions_requests else []
        out["tick_after_append"] = {"s": round(grown_s, 2), "rows_appended": N_APPENDED, "buckets_known": len(partitions),
                                    "new_buckets": len(new), "run_requests": len(grown.run_requests)}
        instance.add_dynamic_partitions(WEB_VIDEO_BUCKETS.name, new)
        reset, reset_s = tick(None)
        assert not getattr(reset, "run_requests", None)
        out["tick_cursor_reset_all_known_s"] = round(reset_s, 2)
        out["partitions_after_append"] = len(instance.get_dynamic_partitions(WEB_VIDEO_BUCKETS.name))

        bucket = sorted(partitions)[0]
        out["one_bucket_run"] = {"bucket": bucket, **_run_bucket(instance, overrides, bucket)}
        df = read_outcomes(store, bucket)
        out["one_bucket_run"]["outcomes"] = df["status"].value_counts().to_dict()
        out["one_bucket_run"]["example_reason"] = df["reason"].iloc[0]
        out["one_bucket_rerun"] = _run_bucket(instance, overrides, bucket)  # retries the failed ones
    return out


def real_bucket(tmp: Path, workers: int) -> dict:
    import dagster as dg

    from dap_assets.assets.web import WEB_VIDEO_BUCKETS, new_video_buckets
    from dap_assets.resources import default_resources
    from dap_model.video.buckets import read_outcomes
    from dap_model.video.manifest import video_id

    clips = [p for p in REAL_CLIPS if p.is_file()]
    if not clips:
        return {"skipped": f"no real clips under {SHARED / 'real' / 'videos'} or the fixture"}
    project = _project(tmp, f"real-{workers}")
    cut = project / f"truncated-{clips[0].name}"
    data = clips[0].read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    sources = {p.name: p for p in clips} | {f"{cut.name} (truncated copy)": cut}
    manifest = project / "manifest.csv"
    pd.DataFrame({"url": [p.as_uri() for p in sources.values()], "licence": "see ../shared"}).to_csv(manifest, index=False)
    overrides = [f"video.manifest={manifest}", f"video.bucket_workers={workers}", *CLIP_KNOBS]
    resources = default_resources(PROFILE, overrides)
    cfg, store = resources["dap"].get(), resources["storage"].store()
    with dg.DagsterInstance.get() as instance:
        plan = new_video_buckets(instance, cfg, store)
        instance.add_dynamic_partitions(WEB_VIDEO_BUCKETS.name, plan.new_buckets)
        (bucket,) = plan.touched
        run = _run_bucket(instance, overrides, bucket)
        df = read_outcomes(store, bucket).set_index("video_id")
    clips_out = {}
    for name, path in sources.items():
        r = df.loc[video_id(path.as_uri())]
        clips_out[name] = {"status": r["status"], "step": r["step"], "frames_sampled": int(r["frames_sampled"]),
                           "frames_accepted": int(r["frames_accepted"]), "seconds": round(float(r["seconds"]), 2),
                           **({"reason": r["reason"]} if r["reason"] else {})}
    return {"bucket": bucket, "workers": workers, "knobs": CLIP_KNOBS, **run, "clips": clips_out}


def main() -> int:
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cores (shared VM)", "profile": PROFILE}
    keep = {k: os.environ.get(k) for k in ("DAP_PROJECT_DIR", "DAGSTER_HOME")}
    tmp = Path(tempfile.mkdtemp(prefix="dap-bench-partitions-"))
    try:
        out["scale"] = scale(tmp)
        print(json.dumps(out["scale"], indent=1), flush=True)
        out["real_bucket"] = [real_bucket(tmp, w) for w in (1, 2)]
        ok = [r for r in out["real_bucket"] if "run_s" in r]
        if len(ok) == 2:
            out["real_bucket_speedup_2_workers"] = round(ok[0]["step_s"]["web_frames"] / ok[1]["step_s"]["web_frames"], 2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for k, v in keep.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    dst = ROOT / "benchmarks" / "results" / "partitions.json"
    tmp_dst = dst.with_suffix(".json.tmp")
    tmp_dst.write_text(json.dumps(out, indent=2))
    tmp_dst.replace(dst)  # atomic
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
