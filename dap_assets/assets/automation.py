"""Automation: the weekly re-training job and its schedule.

The job selects by group (`training`, `curation`, `evaluation`) and by the DESIGN's asset keys
(a key that does not exist yet selects nothing), so it keeps up with the graph as it grows. The
new-video sensor lives with the web assets (`web.py`)."""

from __future__ import annotations

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job

from dap_assets.policies import executor_def, ops_config, run_retry_tags

RETRAIN_GROUPS = ("training", "curation", "evaluation")
RETRAIN_KEYS = (
    "unlabeled_pool",
    "scene_invariant_labeler",
    "stage1_pseudo_labels",
    "depth_discriminator",
    "curated_pseudo_labels",
    "realism_invariant_labeler",
    "stage2_pseudo_labels",
    "perspective_pseudo_labels",
    "dap_depth_model",
    "benchmark_report",
)

retrain_selection = (
    AssetSelection.groups(*RETRAIN_GROUPS)
    | AssetSelection.from_string(" or ".join(f'key:"{k}"' for k in RETRAIN_KEYS))
) & AssetSelection.all()

_ops = ops_config()

retrain_job = define_asset_job(
    "weekly_retrain",
    selection=retrain_selection,
    description="Re-build the pool, the three trainings, curation and the benchmark report.",
    tags={**run_retry_tags(_ops), "dap.launched_by": "weekly_retrain"},
    executor_def=executor_def(_ops),
)

retrain_schedule = ScheduleDefinition(
    name="weekly_retrain_schedule",
    job=retrain_job,
    cron_schedule=_ops.retrain_cron,
    execution_timezone=_ops.timezone,
    default_status=DefaultScheduleStatus.RUNNING if _ops.retrain_schedule_enabled else DefaultScheduleStatus.STOPPED,
)

JOBS = [retrain_job]
SCHEDULES = [retrain_schedule]
