"""The pipeline's jobs and the weekly re-training schedule.

One pipeline execution is three jobs, every run tagged with the same `dap.pipeline_run`:

    ingest             labelled panoramas, the web-video manifest, indoor synthesis
    web_video_ingest   one run per ingest bucket (a `web_video_buckets` partition of up to
                       `video.bucket_size` videos): download + frames, the bucket's videos in
                       parallel (the new-video sensor launches it for buckets with new rows)
    weekly_retrain     everything else: tags, pool, the three stages, curation, report, distillation

`make run` (`dap_assets.pipeline`) launches all three; the schedule launches `weekly_retrain`.
A new asset joins `weekly_retrain` unless it is listed in the ingestion selections."""

from __future__ import annotations

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job

from dap_assets.deployment import DEPLOYMENT, executor_def, run_retry_tags

INGEST_KEYS = ("airsim360_scenes", "labeled_panoramas", "web_video_manifest", "dit360_indoor")
WEB_VIDEO_KEYS = ("web_videos", "web_frames")

ingest_selection = AssetSelection.assets(*INGEST_KEYS)
web_video_selection = AssetSelection.assets(*WEB_VIDEO_KEYS)
retrain_selection = AssetSelection.all() - ingest_selection - web_video_selection

JOB_TAG = "dap.job"  # every run carries its job's name: the instance limits weekly_retrain runs to one at a time


def _tags(name: str) -> dict[str, str]:
    return {**run_retry_tags(), JOB_TAG: name}


ingest_job = define_asset_job(
    "ingest", selection=ingest_selection, tags=_tags("ingest"), executor_def=executor_def(),
    description="Labelled panoramas, the web-video manifest and indoor synthesis.",
)
web_video_job = define_asset_job(
    "web_video_ingest", selection=web_video_selection, tags=_tags("web_video_ingest"), executor_def=executor_def(),
    description="One ingest bucket of web videos (a `web_video_buckets` partition), in parallel: "
                "download, layout, horizon check, frames; one outcome row per video.",
)
retrain_job = define_asset_job(
    "weekly_retrain", selection=retrain_selection, tags=_tags("weekly_retrain"), executor_def=executor_def(),
    description="Tags and pool, the three trainings with curation, distillation labels and the benchmark report.",
)

retrain_schedule = ScheduleDefinition(
    name="weekly_retrain_schedule",
    job=retrain_job,
    cron_schedule=DEPLOYMENT.retrain_cron,
    execution_timezone=DEPLOYMENT.timezone,
    default_status=DefaultScheduleStatus.RUNNING if DEPLOYMENT.retrain_schedule_enabled else DefaultScheduleStatus.STOPPED,
)

PIPELINE_JOBS = (ingest_job, web_video_job, retrain_job)  # launch order of one pipeline execution
JOBS = list(PIPELINE_JOBS)
SCHEDULES = [retrain_schedule]
