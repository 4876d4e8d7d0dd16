"""Automation: the weekly re-training schedule, the new-video sensor, asset checks on every
manifest, the GPU asset's pool and Kubernetes request, retry policies."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
from dagster._utils.schedules import cron_string_iterator

from dap_assets.assets.automation import (
    INGEST_KEYS, WEB_VIDEO_KEYS, ingest_job, retrain_job, retrain_schedule, web_video_job,
)
from dap_assets.definitions import defs
from dap_assets.deployment import (
    DEPLOYMENT, DEPLOYMENT_ENV, K8S_CONFIG_TAG, MAX_RETRIES_TAG, Deployment, gpu_k8s_config, load_deployment,
    transient_retry_policy,
)

ROOT = Path(__file__).resolve().parents[1]

GRAPH = defs.resolve_asset_graph()
KEYS = {k.to_user_string() for k in GRAPH.get_all_asset_keys() if GRAPH.get(k).is_materializable}
MANIFEST_ASSETS = {
    "labeled_panoramas", "web_video_manifest", "web_frames", "dit360_indoor", "scene_tags",
    "unlabeled_pool", "stage1_pseudo_labels", "curated_pseudo_labels", "stage2_pseudo_labels",
    "perspective_pseudo_labels",
}
STORE_ASSETS = {"airsim360_scenes", "labeled_panoramas", "dit360_indoor", "scene_tags"}

# DAP's asset graph (docs/architecture.md) as stand-in assets, plus one training asset added later:
# the re-training job must pick it up without being edited.
PAPER_GRAPH = {
    "airsim360_scenes": ("labeled", []),
    "labeled_panoramas": ("labeled", ["airsim360_scenes"]),
    "web_video_manifest": ("web", []),
    "web_videos": ("web", ["web_video_manifest"]),
    "web_frames": ("web", ["web_videos"]),
    "dit360_indoor": ("pool", []),
    "scene_tags": ("pool", ["web_frames", "dit360_indoor"]),
    "unlabeled_pool": ("pool", ["scene_tags"]),
    "scene_invariant_labeler": ("training", ["labeled_panoramas"]),
    "stage1_pseudo_labels": ("curation", ["unlabeled_pool", "scene_invariant_labeler"]),
    "depth_discriminator": ("curation", ["labeled_panoramas", "stage1_pseudo_labels"]),
    "curated_pseudo_labels": ("curation", ["depth_discriminator", "stage1_pseudo_labels"]),
    "realism_invariant_labeler": ("training", ["labeled_panoramas", "curated_pseudo_labels"]),
    "stage2_pseudo_labels": ("curation", ["unlabeled_pool", "realism_invariant_labeler"]),
    "dap_depth_model": ("training", ["labeled_panoramas", "stage2_pseudo_labels"]),
    "benchmark_report": ("evaluation", ["dap_depth_model"]),
    "a_new_training_asset": ("training", ["labeled_panoramas"]),
}


def _paper_assets() -> list[dg.AssetsDefinition]:
    out = []
    for key, (group, deps) in PAPER_GRAPH.items():
        @dg.asset(name=key, group_name=group, deps=deps)
        def _a() -> None:
            return None

        out.append(_a)
    return out


def _tick(schedule, instance=None, when=dt.datetime(2026, 1, 5, 3, 0, tzinfo=dt.timezone.utc)):
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as ctx:
        return schedule.evaluate_tick(ctx)


def test_schedule_requests_the_training_curation_and_report_assets_of_the_paper_graph():
    d = dg.Definitions(assets=_paper_assets(), jobs=[retrain_job], schedules=[retrain_schedule])
    result = _tick(d.resolve_schedule_def(retrain_schedule.name))
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    job = d.resolve_job_def(request.job_name or retrain_schedule.job_name)
    selected = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    expected = set(PAPER_GRAPH) - set(INGEST_KEYS) - set(WEB_VIDEO_KEYS)
    assert selected == expected
    assert "a_new_training_asset" in selected
    assert not selected & {"airsim360_scenes", "labeled_panoramas", "web_videos", "web_frames"}


def test_schedule_cron_timezone_and_run_retries_come_from_the_deployment_settings():
    ops = DEPLOYMENT
    assert retrain_schedule.cron_schedule == ops.retrain_cron
    assert retrain_schedule.execution_timezone == ops.timezone
    assert retrain_job.tags[MAX_RETRIES_TAG] == str(ops.run_retries)
    monday = dt.datetime(2026, 1, 5, 3, 0, tzinfo=dt.timezone.utc)
    ticks = cron_string_iterator(monday.timestamp(), ops.retrain_cron, ops.timezone)
    first, second = next(ticks), next(ticks)
    assert (second - first) == dt.timedelta(days=7)


def test_real_code_location_schedule_targets_existing_retrain_assets(tmp_path):
    job = defs.resolve_job_def(retrain_job.name)
    selected = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert selected == KEYS - set(INGEST_KEYS) - set(WEB_VIDEO_KEYS)
    with dg.DagsterInstance.ephemeral() as instance:
        result = _tick(defs.resolve_schedule_def(retrain_schedule.name), instance)
    assert [r.job_name or retrain_schedule.job_name for r in result.run_requests] == [retrain_job.name]


def _checks() -> dict[str, list[str]]:
    checks: dict[str, list[str]] = {}
    for ck in GRAPH.asset_check_keys:
        checks.setdefault(ck.asset_key.to_user_string(), []).append(ck.name)
    return checks


def test_every_manifest_has_an_asset_check():
    checks = _checks()
    manifests = sorted(MANIFEST_ASSETS & KEYS)
    uncovered = [k for k in manifests if not checks.get(k)]
    assert uncovered == [], f"manifests without an asset check: {uncovered}; checks: {checks}"


def test_benchmark_report_has_a_regression_gate_check():
    assert _checks().get("benchmark_report"), "benchmark_report has no regression-gate check"


def test_gpu_asset_is_in_the_gpu_pool_and_requests_gpus_on_kubernetes():
    ops = DEPLOYMENT
    node = GRAPH.get(dg.AssetKey("dap_depth_model"))
    assets_def = node.assets_def
    assert assets_def.op.pool == ops.gpu_pool
    k8s = assets_def.op.tags.get(K8S_CONFIG_TAG)
    if isinstance(k8s, str):
        import json

        k8s = json.loads(k8s)
    assert k8s, f"dap_depth_model has no {K8S_CONFIG_TAG} op tag"
    limits = k8s["container_config"]["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) >= 1
    assert k8s["pod_spec_config"]["node_selector"]
    assert k8s == gpu_k8s_config(ops)


def test_gpu_k8s_config_follows_the_deployment_settings():
    ops = Deployment(gpus_per_run=4, gpu_node_selector={"pool": "a100"})
    cfg = gpu_k8s_config(ops)
    res = cfg["container_config"]["resources"]
    assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] == "4"
    assert cfg["pod_spec_config"]["node_selector"] == {"pool": "a100"}
    assert cfg["pod_spec_config"]["tolerations"][0]["key"] == "nvidia.com/gpu"


@pytest.mark.parametrize("key", sorted(STORE_ASSETS))
def test_object_store_assets_retry_transient_failures_with_backoff(key):
    """(web_videos retries inside dap_model.video: video.download_retries, retry_backoff_s.)"""
    policy = GRAPH.get(dg.AssetKey(key)).assets_def.op.retry_policy
    assert policy is not None and policy.max_retries >= 1
    assert policy.backoff == dg.Backoff.EXPONENTIAL


def test_retry_policy_retries_a_transient_failure_then_succeeds():
    attempts = []

    @dg.asset(retry_policy=transient_retry_policy(Deployment(step_retry_delay_s=0)))
    def flaky(context) -> int:
        attempts.append(context.retry_number)
        if len(attempts) < 3:
            raise ConnectionError("transient")
        return len(attempts)

    result = dg.materialize([flaky])
    assert result.success and attempts == [0, 1, 2]


@pytest.mark.slow
def test_new_video_sensor_adds_buckets_and_runs_for_new_manifest_rows_only():
    sensor = defs.resolve_sensor_def("web_video_manifest_sensor")
    import pandas as pd

    from dap_assets.assets.web import WEB_VIDEO_BUCKETS
    from dap_assets.resources import default_resources
    from dap_model.video.buckets import load_assignment
    from dap_model.video.pipeline import load_manifest, manifest_source

    resources = default_resources(profile="test")
    store = resources["storage"].store()
    manifest_asset = next(a for a in defs.assets if isinstance(a, dg.AssetsDefinition)
                          and dg.AssetKey("web_video_manifest") in a.keys)
    with dg.instance_for_test() as instance:
        def evaluate(cursor=None, res=resources):
            with dg.build_sensor_context(instance=instance, resources=res, definitions=defs, cursor=cursor) as ctx:
                return sensor(ctx)

        first = evaluate()
        assert not getattr(first, "dynamic_partitions_requests", None), "partitions before any manifest"
        assert dg.materialize([manifest_asset], instance=instance, resources=resources).success

        second = evaluate()
        assert isinstance(second, dg.SensorResult), second
        (request,) = second.dynamic_partitions_requests
        assert request.partitions_def_name == WEB_VIDEO_BUCKETS.name == "web_video_buckets"
        cfg = resources["dap"].get()
        source = manifest_source(cfg, store)
        rows = pd.read_csv(source) if source.endswith(".csv") else pd.read_parquet(source)
        assert 1 <= len(rows) <= cfg.video.bucket_size and list(request.partition_keys) == ["b000000"]
        assert load_assignment(store)["bucket"].tolist() == ["b000000"] * len(rows)
        assert [r.partition_key for r in second.run_requests] == ["b000000"]
        assert {r.job_name or sensor.job_name for r in second.run_requests} == {web_video_job.name}
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))

        for cursor in (second.cursor, None):  # with its cursor, and after a cursor reset: nothing to do
            idle = evaluate(cursor)
            assert not getattr(idle, "dynamic_partitions_requests", None) and not getattr(idle, "run_requests", None)

        new_row = {c: None for c in rows.columns}
        new_row["url"] = str(ROOT.parent / "shared" / "fixtures" / "gvr_testRoom1_1920Mono.mp4")
        pd.concat([rows, pd.DataFrame([new_row])]).to_csv(source, index=False)
        ids = list(load_manifest(cfg, store)["video_id"])
        assert len(ids) == len(rows) + 1
        # a bucket size of one: the new row opens a new bucket; the old bucket keeps its videos
        fourth = evaluate(second.cursor, default_resources(profile="test", overrides=["video.bucket_size=1"]))
        assert isinstance(fourth, dg.SensorResult), fourth.skip_message
        (added,) = fourth.dynamic_partitions_requests
        assert list(added.partition_keys) == ["b000001"]
        assert [r.partition_key for r in fourth.run_requests] == ["b000001"]
        assignment = load_assignment(store)
        assert assignment["bucket"].tolist() == ["b000000"] * len(rows) + ["b000001"]
        assert assignment["video_id"].iloc[-1] == ids[-1]


def test_manifest_checks_fail_on_a_bad_manifest_and_pass_on_a_good_one():
    import pandas as pd

    from dap_assets.assets import manifest_checks
    from dap_assets.resources import default_resources
    from dap_model.training.pseudo import PSEUDO_COLUMNS

    storage = default_resources(profile="test")["storage"]
    store = storage.store()
    row = {"key": "a", "shard": "pseudo-000000.tar", "domain": "indoor", "source": "synth",
           "pool_shard": "synth/shards/synth-000000.tar", "valid_fraction": 0.5, "median_depth_m": 3.0}
    assert list(row) == PSEUDO_COLUMNS
    store.put_bytes("pseudo/stage1/manifest.parquet", pd.DataFrame([row]).to_parquet(index=False))
    missing = manifest_checks.stage1_pseudo_labels_schema(storage=storage)
    assert not missing.passed and missing.metadata["missing_shards"].data == ["pseudo-000000.tar"]
    store.put_bytes("pseudo/stage1/pseudo-000000.tar", b"tar")
    assert manifest_checks.stage1_pseudo_labels_schema(storage=storage).passed
    bad = pd.DataFrame([{**row, "domain": "space", "valid_fraction": 1.5}])
    store.put_bytes("pseudo/stage1/manifest.parquet", bad.to_parquet(index=False))
    failed = manifest_checks.stage1_pseudo_labels_schema(storage=storage)
    assert not failed.passed and "failure_cases" in failed.metadata
    absent = manifest_checks.stage2_pseudo_labels_schema(storage=storage)
    assert not absent.passed and "missing" in absent.metadata["error"].text


def test_deployment_settings_load_from_the_file_named_by_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "deploy.yaml"
    path.write_text("executor: k8s\ngpus_per_run: 8\n")
    monkeypatch.setenv(DEPLOYMENT_ENV, str(path))
    dep = load_deployment()
    assert dep.executor == "k8s" and dep.gpus_per_run == 8 and dep.retrain_cron == Deployment().retrain_cron
    path.write_text("gpus_per_run: 0\n")
    with pytest.raises(ValueError, match="gpus_per_run"):
        load_deployment()
    path.write_text("gpu_per_run: 2\n")
    with pytest.raises(ValueError, match="gpu_per_run"):
        load_deployment()
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_deployment(tmp_path / "missing.yaml")


def test_the_three_pipeline_jobs_partition_the_asset_graph():
    """Every materialisable asset belongs to exactly one of the jobs one pipeline execution runs."""
    selected = [
        {k.to_user_string() for k in defs.resolve_job_def(j.name).asset_layer.executable_asset_keys}
        for j in (ingest_job, web_video_job, retrain_job)
    ]
    assert set().union(*selected) == KEYS
    assert sum(len(s) for s in selected) == len(KEYS)
    assert selected[0] == set(INGEST_KEYS) and selected[1] == set(WEB_VIDEO_KEYS)


def test_the_instance_limits_retraining_runs_by_a_tag_the_job_sets():
    import yaml

    instance = yaml.safe_load((ROOT / "infra" / "dagster.yaml").read_text())
    (limit,) = instance["concurrency"]["runs"]["tag_concurrency_limits"]
    assert retrain_job.tags.get(limit["key"]) == limit["value"] and limit["limit"] == 1
    assert ingest_job.tags.get(limit["key"]) != limit["value"]
