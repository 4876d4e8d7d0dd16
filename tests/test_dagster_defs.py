import re
import subprocess
import sys
from pathlib import Path

import pytest

from dap_assets.definitions import defs

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_load_and_resolve():
    graph = defs.resolve_asset_graph()
    assert graph is not None
    assert {"dap", "storage", "mlflow"} <= set(defs.resources)


@pytest.mark.slow
def test_dagster_cli_validates_the_workspace():
    exe = Path(sys.executable).with_name("dagster")
    out = subprocess.run(
        [str(exe), "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_dap_model_never_imports_dagster():
    """`dagster_pipes` (the dependency-free external-process protocol) is allowed; the
    Dagster framework is not."""
    framework = re.compile(r"^\s*(from|import)\s+dagster(\.|\s|$)")
    offenders = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in (ROOT / "dap_model").rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if framework.match(line)
    ]
    assert offenders == []


ASSETS = {
    "airsim360_scenes", "labeled_panoramas", "web_video_manifest", "web_videos", "web_frames", "dit360_indoor",
    "scene_tags", "unlabeled_pool", "scene_invariant_labeler", "stage1_pseudo_labels", "depth_discriminator",
    "curated_pseudo_labels", "realism_invariant_labeler", "stage2_pseudo_labels", "dap_depth_model",
    "benchmark_report", "perspective_pseudo_labels",
}
CHECKS = {
    ("benchmark_report", "no_regression_vs_champion"), ("curated_pseudo_labels", "curated_pseudo_labels_schema"),
    ("dit360_indoor", "dit360_indoor_manifest_schema"), ("labeled_panoramas", "labeled_manifest_check"),
    ("perspective_pseudo_labels", "perspective_pseudo_labels_schema"), ("scene_tags", "scene_tags_schema"),
    ("stage1_pseudo_labels", "stage1_pseudo_labels_schema"), ("stage2_pseudo_labels", "stage2_pseudo_labels_schema"),
    ("unlabeled_pool", "pool_has_both_domains"), ("web_frames", "web_frames_manifest_valid"),
    ("web_frames", "web_frames_yield"), ("web_video_manifest", "web_video_manifest_schema"),
}


def test_the_code_location_defines_exactly_these_assets_checks_jobs_schedules_and_sensors():
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).is_materializable} == ASSETS
    assert {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys} == CHECKS
    assert {j.name for j in defs.jobs} == {"ingest", "web_video_ingest", "weekly_retrain"}
    assert {s.name: s.job_name for s in defs.schedules} == {"weekly_retrain_schedule": "weekly_retrain"}
    assert {s.name: s.job_name for s in defs.sensors} == {"web_video_manifest_sensor": "web_video_ingest"}
    partitioned = {k.to_user_string(): graph.get(k).partitions_def for k in graph.get_all_asset_keys()
                   if graph.get(k).is_materializable and graph.get(k).partitions_def is not None}
    assert {k: p.name for k, p in partitioned.items()} == {"web_videos": "web_video_buckets", "web_frames": "web_video_buckets"}
