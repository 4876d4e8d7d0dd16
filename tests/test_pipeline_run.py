"""`make run`'s driver on the `test` profile: the pipeline's jobs as Dagster runs in the instance at
$DAGSTER_HOME, one `dap.pipeline_run` across every Dagster and MLflow run, a console a person reads."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    project = tmp_path_factory.mktemp("project")
    env = {**os.environ, "DAP_PROJECT_DIR": str(project), "DAGSTER_HOME": str(project / ".dagster"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DAP_PROFILE", None)
    # started as a background job of a shell starts it (SIGINT ignored, and Dagster maps SIGTERM to
    # SIGINT's handler, so SIGTERM too once a run has executed in-process): Dagster's compute-log
    # `tail -F` children must still stop, or they hold the pipes open and this call never returns
    def background_job() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    out = subprocess.run([sys.executable, "-m", "dap_assets.pipeline", "--profile", "test"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600, preexec_fn=background_job)
    return project, out


@pytest.mark.slow
def test_every_job_succeeds_and_every_asset_is_materialised(pipeline):
    project, out = pipeline
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    os.environ["DAGSTER_HOME"] = str(project / ".dagster")
    import dagster as dg

    from dap_assets.assets.automation import PIPELINE_JOBS
    from dap_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    with dg.DagsterInstance.from_config(str(project / ".dagster")) as instance:
        runs = instance.get_runs()
        assert {r.job_name for r in runs} == {j.name for j in PIPELINE_JOBS}
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        ids = {r.tags.get("dap.pipeline_run") for r in runs}
        assert len(ids) == 1 and None not in ids
        for key in graph.get_all_asset_keys():
            if graph.get(key).is_materializable:
                assert instance.get_latest_materialization_event(key) is not None, key
    (pipeline_run,) = ids
    assert f"pipeline run {pipeline_run}" in out.stdout


@pytest.mark.slow
def test_every_mlflow_run_of_one_execution_shares_its_pipeline_run(pipeline):
    project, out = pipeline
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("dap")
    runs = client.search_runs([exp.experiment_id])
    stages = {r.data.tags.get("dap.stage") for r in runs}
    assert {"stage1", "stage2", "stage3", "discriminator"} <= stages
    ids = {r.data.tags.get("dap.pipeline_run") for r in runs}
    assert len(ids) == 1 and re.search(rf"pipeline run {next(iter(ids))}\b", out.stdout)
    final = [r for r in runs if r.data.tags.get("dap.stage") == "stage3"]
    assert "labeled_test/abs_rel" in final[0].data.metrics  # benchmark_report logged onto the training run


@pytest.mark.slow
def test_console_is_a_line_per_asset_not_dagsters_event_stream(pipeline):
    _, out = pipeline
    lines = (out.stdout + out.stderr).splitlines()
    assert len(lines) < 150, len(lines)
    assert not [ln for ln in lines if " - DEBUG - " in ln or " - INFO - " in ln]
    for asset in ("airsim360_scenes", "scene_invariant_labeler", "dap_depth_model", "benchmark_report"):
        assert re.search(rf"^\[\s*\d+:\d\d\] {asset}\s+\d+\.\d s", out.stdout, re.M), asset
    assert re.search(r"^\[\s*\d+:\d\d\] web_frames \[b000000\]", out.stdout, re.M)  # one bucket of videos


def test_a_console_line_shows_numbers_and_a_tables_abs_rel():
    import dagster as dg

    from dap_assets.pipeline import _figures

    meta = {"images": 3, "source": "x", "cached": True, "ratio": 0.123456,
            "final": dg.MetadataValue.json({"web_test": {"abs_rel": 0.51234, "rmse": 2.0}, "skipped": "no"})}
    assert _figures(meta) == "images=3 ratio=0.1235 web_test/abs_rel=0.5123"
