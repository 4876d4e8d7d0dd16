"""Web panoramic video: manifest → ingest buckets of videos, one dynamic partition per bucket (sensor) →
download → frames, each bucket's videos in parallel with one outcome row per video."""


from dagster import (
    AssetCheckResult, AssetExecutionContext, DataVersion, DynamicPartitionsDefinition,
    MaterializeResult, MetadataValue, SensorEvaluationContext, SensorResult, SkipReason,
    AssetCheckSeverity, RunRequest, asset, asset_check, sensor,
)

from dap_assets.assets.automation import web_video_job
from dap_assets.resources import DapConfigResource, StorageResource
from dap_model.errors import DapError, InputError

WEB_VIDEO_BUCKETS = DynamicPartitionsDefinition(name="web_video_buckets")  # b000000, b000001, … (dap_model.video.buckets)


@asset(group_name="web", description="Validated table of web video sources (generated default when video.manifest is empty).")
def web_video_manifest(context: AssetExecutionContext, dap: DapConfigResource, storage: StorageResource) -> MaterializeResult:
    from dap_model.video.pipeline import build_manifest, manifest_source

    import hashlib

    from dap_model.versioning import store_hash
    from dap_model import layout

    cfg, store = dap.get(), storage.store()
    df, generated = build_manifest(cfg, store, context.log.info)
    version = (store_hash(store, layout.WEB_DEFAULT_MANIFEST) if generated  # DVC's md5 of the stored manifest
               else hashlib.md5(df.to_csv(index=False).encode()).hexdigest())  # an external table's content
    return MaterializeResult(data_version=DataVersion(version), metadata={
        "videos": len(df), "generated_default": generated, "source": manifest_source(cfg, store),
        "schemes": MetadataValue.json(df["url"].str.split(":").str[0].value_counts().to_dict()),
        "preview": MetadataValue.md(df[["video_id", "url", "licence"]].head(20).to_markdown(index=False)),
    })


def new_video_buckets(instance, cfg, store, cursor: str | None = None):
    """Assign new manifest rows to ingest buckets (`dap_model.video.buckets.plan_buckets`)
    against the `web_video_buckets` partitions the instance knows: a `BucketPlan` (new buckets
    to add as partitions, buckets with work, the next cursor). The sensor and `make run` both
    go through this function."""
    from dap_model.video.buckets import plan_buckets

    return plan_buckets(cfg, store, instance.get_dynamic_partitions(WEB_VIDEO_BUCKETS.name), cursor)


@sensor(name="web_video_manifest_sensor", minimum_interval_seconds=60, job=web_video_job,
        description="Assigns new manifest rows to ingest buckets, adds new buckets as `web_video_buckets` "
                    "partitions and launches an ingestion run per bucket with new videos.")
def web_video_manifest_sensor(context: SensorEvaluationContext, dap: DapConfigResource, storage: StorageResource):
    plan = new_video_buckets(context.instance, dap.get(), storage.store(), context.cursor)
    if plan.mark is None:
        return SkipReason(plan.reason)
    if not plan.touched:
        return SensorResult(skip_reason=SkipReason(plan.reason), cursor=plan.cursor)
    return SensorResult(
        dynamic_partitions_requests=[WEB_VIDEO_BUCKETS.build_add_request(plan.new_buckets)] if plan.new_buckets else [],
        # run_key: a tick retried after a crash does not launch a bucket twice for the same rows
        run_requests=[RunRequest(partition_key=b, run_key=f"{b}@{plan.assigned}") for b in plan.touched],
        cursor=plan.cursor,
    )


def _log(context):
    return lambda msg: context.log.info(f"[{context.partition_key}] {msg}")


@asset(group_name="web", partitions_def=WEB_VIDEO_BUCKETS, deps=[web_video_manifest],
       description="Raw videos of one ingest bucket, downloaded in parallel: web/videos/<video_id>.<ext> with "
                   "their sha256; per-video outcomes in web/buckets/<bucket>/outcomes.parquet.")
def web_videos(context: AssetExecutionContext, dap: DapConfigResource, storage: StorageResource) -> MaterializeResult:
    from dap_model.video.buckets import ingest_bucket_videos, outcome_counts, outcomes_version

    df = ingest_bucket_videos(dap.get(), storage.store(), context.partition_key, _log(context))
    return MaterializeResult(data_version=DataVersion(outcomes_version(df, ("video_id", "sha256"))), metadata={
        **outcome_counts(df), "failures": MetadataValue.md(_failures(df)),
    })


@asset(group_name="web", partitions_def=WEB_VIDEO_BUCKETS, deps=[web_videos],
       description="Validated ERP frames of one ingest bucket's videos, extracted in parallel: "
                   "web/frames/<video_id>/ (shards + frames.parquet) per video; outcomes per video.")
def web_frames(context: AssetExecutionContext, dap: DapConfigResource, storage: StorageResource) -> MaterializeResult:
    from dap_model.video.buckets import extract_bucket_frames, outcome_counts, outcomes_version

    df = extract_bucket_frames(dap.get(), storage.store(), context.partition_key, _log(context))
    ok = df[df["status"] == "ok"]
    return MaterializeResult(data_version=DataVersion(outcomes_version(df)), metadata={
        **outcome_counts(df), "frames_sampled": int(ok["frames_sampled"].sum()),
        "failures": MetadataValue.md(_failures(df)),
    })


def _failures(df, limit: int = 20) -> str:
    bad = df[df["status"] != "ok"]
    if bad.empty:
        return "none"
    return bad[["video_id", "status", "step", "reason"]].head(limit).to_markdown(index=False) + (
        f"\n\n… and {len(bad) - limit} more" if len(bad) > limit else "")


def _bucket(context) -> str | None:
    return context.partition_key if context.has_partition_key else None


@asset_check(asset=web_frames, description="the bucket's outcomes table and every ok video's frames.parquet "
                                           "pass their pandera schemas")
def web_frames_manifest_valid(context, storage: StorageResource) -> AssetCheckResult:
    from dap_model.video.buckets import read_outcomes
    from dap_model.video.frames import validate_frames_manifest
    from dap_model.video.pipeline import read_frames_manifest

    bucket = _bucket(context)
    if bucket is None:
        return AssetCheckResult(passed=False, description="run per partition (one bucket)")
    store = storage.store()
    try:
        df = read_outcomes(store, bucket)
        if df is None:
            return AssetCheckResult(passed=False, description=f"bucket {bucket} has no outcomes table")
        rows = 0
        for vid in df.loc[(df["status"] == "ok") & (df["step"] == "frames"), "video_id"]:
            rows += len(validate_frames_manifest(read_frames_manifest(store, vid), f"frames manifest of {vid}"))
    except (DapError, InputError) as err:
        return AssetCheckResult(passed=False, metadata={"error": str(err)})
    return AssetCheckResult(passed=True, metadata={"videos": len(df), "frame_rows": rows})


@asset_check(asset=web_frames, description="every video of the bucket was processed and yielded at least one "
                                           "accepted frame (WARN otherwise: failed videos never fail the bucket)")
def web_frames_yield(context, storage: StorageResource) -> AssetCheckResult:
    from dap_model.video.buckets import outcome_counts, read_outcomes

    bucket = _bucket(context)
    if bucket is None:
        return AssetCheckResult(passed=False, description="run per partition (one bucket)")
    df = read_outcomes(storage.store(), bucket)
    if df is None:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN, description=f"bucket {bucket}: no outcomes")
    failed = df[df["status"] == "failed"]
    empty = df[(df["status"] == "ok") & (df["frames_accepted"] == 0)]
    return AssetCheckResult(
        passed=failed.empty and empty.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={**outcome_counts(df), "no_accepted_frame": len(empty), "failures": MetadataValue.md(_failures(df))},
    )


SENSORS = [web_video_manifest_sensor]
