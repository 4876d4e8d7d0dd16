"""Web panoramic video: manifest → one dynamic partition per video (sensor) → download → frames."""


from dagster import (
    AssetCheckResult, AssetExecutionContext, DataVersion, DynamicPartitionsDefinition,
    Failure, MaterializeResult, MetadataValue, SensorEvaluationContext, SensorResult, SkipReason,
    AssetCheckSeverity, RunRequest, asset, asset_check, sensor,
)

from dap_assets.assets.automation import web_video_job
from dap_assets.resources import DapConfigResource, StorageResource
from dap_model.errors import DapError, InputError

WEB_VIDEOS = DynamicPartitionsDefinition(name="web_videos")


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


def new_video_partitions(instance, cfg, store) -> tuple[list[str], str | None, str]:
    """Manifest rows without a `web_videos` partition: (new video ids, manifest fingerprint or
    None when there is no manifest yet, a one-line reason when there is nothing to add). The
    sensor and `make run` both register partitions through this function."""
    from dap_model.video.manifest import manifest_fingerprint
    from dap_model.video.pipeline import load_manifest, manifest_source, s3_endpoint

    source = manifest_source(cfg, store)
    mark = manifest_fingerprint(source, s3_endpoint(cfg))
    if mark is None:
        return [], None, f"no manifest at {source} yet (materialise web_video_manifest)"
    try:
        df = load_manifest(cfg, store)
    except DapError as err:
        return [], None, f"manifest {source} is invalid: {err}"
    known = set(instance.get_dynamic_partitions(WEB_VIDEOS.name))
    new = [v for v in df["video_id"] if v not in known]
    return new, mark, "" if new else f"no new videos in {source}"


@sensor(name="web_video_manifest_sensor", minimum_interval_seconds=60, job=web_video_job,
        description="Adds one `web_videos` partition per new manifest row and launches its ingestion run.")
def web_video_manifest_sensor(context: SensorEvaluationContext, dap: DapConfigResource, storage: StorageResource):
    new, mark, reason = new_video_partitions(context.instance, dap.get(), storage.store())
    if mark is None:
        return SkipReason(reason)
    if not new:
        return SensorResult(skip_reason=SkipReason(reason), cursor=mark)
    return SensorResult(
        dynamic_partitions_requests=[WEB_VIDEOS.build_add_request(new)],
        run_requests=[RunRequest(partition_key=v) for v in new],
        cursor=mark,
    )


def _fail(err: Exception, what: str) -> Failure:
    return Failure(description=f"{what}: {err}", metadata={"reason": str(err), "error": type(err).__name__})


@asset(group_name="web", partitions_def=WEB_VIDEOS, deps=[web_video_manifest],
       description="Raw video of one manifest row, stored as web/videos/<video_id>.<ext> with its sha256.")
def web_videos(context: AssetExecutionContext, dap: DapConfigResource, storage: StorageResource) -> MaterializeResult:
    from dap_model.video.pipeline import fetch_video

    vid = context.partition_key
    try:
        meta = fetch_video(dap.get(), storage.store(), vid)
    except DapError as err:
        raise _fail(err, f"web video {vid}") from None
    from dap_model.versioning import store_hash

    return MaterializeResult(data_version=DataVersion(store_hash(storage.store(), meta["key"])), metadata={
        "source": meta["source"], "uri": meta["uri"], "sha256": meta["sha256"], "size_bytes": meta["size_bytes"],
        "resolution": f"{meta['width']}x{meta['height']}", "fps": meta["fps"], "frames": meta["frames"],
        "method": meta["method"], "cached": meta["cached"], "licence": str(meta.get("licence")),
    })


@asset(group_name="web", partitions_def=WEB_VIDEOS, deps=[web_videos],
       description="Validated ERP frames of one video: shards web/frames/<video_id>/ + frames.parquet.")
def web_frames(context: AssetExecutionContext, dap: DapConfigResource, storage: StorageResource) -> MaterializeResult:
    from dap_model.video.pipeline import extract_video

    vid = context.partition_key
    try:
        df, summary = extract_video(dap.get(), storage.store(), vid)
    except DapError as err:
        raise _fail(err, f"web frames {vid}") from None
    from dap_model import layout
    from dap_model.versioning import store_hash

    return MaterializeResult(data_version=DataVersion(store_hash(storage.store(), layout.web_frames(vid))), metadata={
        "sampled": summary["sampled"], "accepted": summary["accepted"], "rejected": summary["rejected"],
        "by_reason": MetadataValue.json(summary["by_reason"]), "layouts": MetadataValue.json(summary["layouts"]),
        "layout_sources": MetadataValue.json(summary.get("layout_sources", {})),
        "shards": len(summary["shards"]), "cached": summary["cached"],
        "median_tilt_deg": float(df.loc[df["accepted"], "tilt_deg"].median()) if summary["accepted"] else float("nan"),
    })


@asset_check(asset=web_frames, description="frames.parquet of the partition passes the pandera schema")
def web_frames_manifest_valid(context, storage: StorageResource) -> AssetCheckResult:
    from dap_model.video.frames import validate_frames_manifest
    from dap_model.video.pipeline import read_frames_manifest

    vid = context.partition_key if context.has_partition_key else None
    if vid is None:
        return AssetCheckResult(passed=False, description="run per partition (one video)")
    try:
        df = validate_frames_manifest(read_frames_manifest(storage.store(), vid), f"frames manifest of {vid}")
    except (DapError, InputError) as err:
        return AssetCheckResult(passed=False, metadata={"error": str(err)})
    return AssetCheckResult(passed=True, metadata={"rows": len(df), "accepted": int(df["accepted"].sum())})


@asset_check(asset=web_frames, description="the video yielded at least one accepted frame (WARN otherwise)")
def web_frames_yield(context, storage: StorageResource) -> AssetCheckResult:
    from dap_model.video.pipeline import read_frames_manifest

    vid = context.partition_key if context.has_partition_key else None
    if vid is None:
        return AssetCheckResult(passed=False, description="run per partition (one video)")
    df = read_frames_manifest(storage.store(), vid)
    accepted = int(df["accepted"].sum())
    return AssetCheckResult(
        passed=accepted > 0,
        severity=AssetCheckSeverity.WARN,
        metadata={"accepted": accepted, "sampled": len(df),
                  "by_reason": MetadataValue.json({str(k): int(v) for k, v in df["reason"].value_counts().items()})},
    )


SENSORS = [web_video_manifest_sensor]
