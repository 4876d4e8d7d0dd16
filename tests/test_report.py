"""`benchmark_report` and the champion gate with tiny models registered in a test MLflow store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from dap_model.config import load_config
from dap_model.evaluation.evaluate import EvalResult
from dap_model.evaluation.gate import champion_gate
from tests._eval_support import constant_checkpoint, fresh_mlflow_db

GT_M = 5.0
H, W = 16, 32


def _result(bench: str, abs_rel: float, delta1: float = 0.5) -> EvalResult:
    m = {k: 1.0 for k in ("sq_rel", "rmse", "rmse_log", "mae", "delta2", "delta3")}
    return EvalResult(bench, {**m, "abs_rel": abs_rel, "delta1": delta1, "n_images": 2}, {}, {})


def test_gate_rules():
    cfg = load_config("test", ["eval.regression_tolerance=0.1"])
    champ = {"a": _result("a", 0.20), "b": _result("b", 0.10)}
    better_everywhere = champion_gate(cfg, {"a": _result("a", 0.15), "b": _result("b", 0.09)}, champ, "5", "4")
    assert better_everywhere.passed and better_everywhere.promote
    within_tol = champion_gate(cfg, {"a": _result("a", 0.21), "b": _result("b", 0.105)}, champ, "5", "4")
    assert within_tol.passed and not within_tol.promote  # worse but within 10 %: passes, alias stays
    regress = champion_gate(cfg, {"a": _result("a", 0.05), "b": _result("b", 0.12)}, champ, "5", "4")
    assert not regress.passed and not regress.promote and "b: abs_rel 0.1200" in regress.message
    first = champion_gate(cfg, {"a": _result("a", 0.5)}, None, "1", None)
    assert first.passed and first.promote
    same = champion_gate(cfg, {"a": _result("a", 0.5)}, {"a": _result("a", 0.5)}, "3", "3")
    assert same.passed and not same.promote
    cfg_d1 = load_config("test", ["eval.primary_metric=delta1", "eval.regression_tolerance=0.0"])
    up = champion_gate(cfg_d1, {"a": _result("a", 0.9, delta1=0.8)}, {"a": _result("a", 0.1, delta1=0.7)}, "2", "1")
    assert up.passed and up.promote  # higher delta1 is better, whatever abs_rel does
    down = champion_gate(cfg_d1, {"a": _result("a", 0.1, delta1=0.6)}, {"a": _result("a", 0.1, delta1=0.7)}, "2", "1")
    assert not down.passed


def _write_test_splits(store) -> None:
    from dap_model.data.shards import Sample, ShardWriter

    rng = np.random.default_rng(0)
    for prefix, name in (("labeled", "test"), ("web/test", "web_test")):
        out = store.root / prefix
        with ShardWriter(out, name, shard_size=8) as wr:
            for i in range(2):
                d = np.full((H, W), GT_M, np.float32)
                d[0, :] = 0  # invalid row
                kind = "room" if prefix == "labeled" else "city"
                wr.write(Sample(f"{name.replace('/', '_')}_{i}", rng.integers(0, 256, (H, W, 3), dtype=np.uint8), d,
                                meta={"kind": kind}))
    # a train shard must not be evaluated
    with ShardWriter(store.root / "labeled", "train", shard_size=8) as wr:
        wr.write(Sample("train_0", np.zeros((H, W, 3), np.uint8), np.full((H, W), 99.0, np.float32)))


def _register(ckpt: Path, stage: str, pipeline_run: str) -> tuple[str, str]:
    """A training run with the trainer's artifact layout and a registered version."""
    import mlflow
    from mlflow import MlflowClient

    with mlflow.start_run(run_name=stage, tags={"dap.stage": stage, "dap.pipeline_run": pipeline_run}) as run:
        mlflow.log_artifact(str(ckpt), "model/extra_files")
    client = MlflowClient()
    if not client.search_registered_models(filter_string="name = 'dap-depth'"):
        client.create_registered_model("dap-depth")
    mv = client.create_model_version("dap-depth", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    return run.info.run_id, str(mv.version)


def _report_on(instance, models: dict[str, tuple[float, str]], pipeline_run: str):
    """Record materialisations of the three training assets (as the trainer's assets do), then
    materialise `benchmark_report`."""
    from dagster import AssetMaterialization, materialize

    from dap_assets.assets.report import benchmark_report
    from dap_assets.resources import default_resources

    ids = {}
    for key, (depth_m, stage) in models.items():
        run_id, version = _register(constant_checkpoint(depth_m), stage, pipeline_run)
        ids[key] = (run_id, version)
        instance.report_runless_asset_event(AssetMaterialization(
            asset_key=key, metadata={"run_id": run_id, "model_version": version}))
    result = materialize([benchmark_report], instance=instance, resources=default_resources(profile="test"),
                         raise_on_error=True)
    (check,) = result.get_asset_check_evaluations()
    return result, check, ids


@pytest.mark.slow
def test_report_asset_champion_alias_and_compare(tmp_path, capsys):
    import mlflow
    from dagster import DagsterInstance
    from mlflow import MlflowClient

    from dap_model.cli import main
    from dap_model.storage import open_store
    from dap_model.tracking import setup_mlflow

    cfg = load_config("test")
    fresh_mlflow_db()
    setup_mlflow(cfg.mlflow)
    store = open_store(cfg.storage)
    _write_test_splits(store)
    instance = DagsterInstance.ephemeral()
    client = MlflowClient()

    # first run: no champion -> the final model (6 m everywhere, abs_rel 0.2) becomes champion
    res1, check1, ids1 = _report_on(instance, {
        "scene_invariant_labeler": (9.0, "stage1"),
        "realism_invariant_labeler": (7.0, "stage2"),
        "dap_depth_model": (6.0, "stage3"),
    }, "run-1")
    assert check1.passed
    assert client.get_model_version_by_alias("dap-depth", "champion").version == int(ids1["dap_depth_model"][1])
    for key, (depth_m, _) in {"scene_invariant_labeler": (9.0, 0), "dap_depth_model": (6.0, 0)}.items():
        metrics = client.get_run(ids1[key][0]).data.metrics
        want = abs(depth_m - GT_M) / GT_M
        assert metrics["labeled_test/abs_rel"] == pytest.approx(want, rel=1e-4)
        assert metrics["web_test/abs_rel"] == pytest.approx(want, rel=1e-4)
        assert metrics["labeled_test/n_images"] == 2
        assert metrics["web_test/rmse"] == pytest.approx(abs(depth_m - GT_M), rel=1e-4)
        # a constant depth is exact after median scale alignment; per scene kind: the same error
        assert metrics["web_test/abs_rel_aligned"] == pytest.approx(0.0, abs=1e-6)
        assert metrics["web_test/city/abs_rel"] == pytest.approx(want, abs=1e-4)
        assert metrics["labeled_test/room/median_log_ratio"] == pytest.approx(np.log(depth_m / GT_M), abs=1e-4)
        assert "web_test/room/abs_rel" not in metrics

    project = Path(os.environ["DAP_PROJECT_DIR"])
    run_dir = project / "reports" / res1.run_id
    md = (run_dir / "report.md").read_text()
    assert (project / "reports" / "latest").resolve() == run_dir.resolve()
    assert "0.0921" in md and "0.9370" in md  # DAP's published numbers beside ours
    assert "| labeled_test | dap_depth_model | stage3 |" in md
    assert "0-10" in md and "50-100" in md
    assert "Scale-aligned error and scene kinds" in md and "| web_test | dap_depth_model | city |" in md
    assert "PASSED" in md
    html = (run_dir / "report.html").read_text()
    assert "<table" in html and "figures/labeled_test-0.png" in html
    assert (run_dir / "figures" / "labeled_test-0.png").stat().st_size > 1000
    assert (run_dir / "figures" / "comparison.png").is_file()
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["results"]["dap_depth_model"]["web_test"]["n_images"] == 2

    # a worse final model (10 m: abs_rel 1.0): the check fails, the alias stays
    champion_before = client.get_model_version_by_alias("dap-depth", "champion").version
    _, check2, ids2 = _report_on(instance, {
        "scene_invariant_labeler": (9.0, "stage1"),
        "realism_invariant_labeler": (7.0, "stage2"),
        "dap_depth_model": (10.0, "stage3"),
    }, "run-2")
    assert not check2.passed
    assert "labeled_test: abs_rel 1.0000 vs champion 0.2000" in check2.metadata["message"].value
    assert client.get_model_version_by_alias("dap-depth", "champion").version == champion_before

    # a better final model (5 m: exact): the alias moves to it
    _, check3, ids3 = _report_on(instance, {
        "scene_invariant_labeler": (9.0, "stage1"),
        "realism_invariant_labeler": (7.0, "stage2"),
        "dap_depth_model": (5.0, "stage3"),
    }, "run-3")
    assert check3.passed
    champ = client.get_model_version_by_alias("dap-depth", "champion")
    assert champ.version == int(ids3["dap_depth_model"][1])
    # models:/dap-depth@champion resolves to that model's checkpoint
    from dap_model.inference import load_checkpoint

    model = load_checkpoint("models:/dap-depth@champion", cfg)
    import torch

    pred = model.predict(torch.rand(1, 3, 32, 64))
    assert float(pred.mean()) == pytest.approx(GT_M, rel=1e-3)

    # dap compare: the stage-1 and stage-3 runs side by side, with a plot
    capsys.readouterr()
    plot = tmp_path / "cmp.png"
    assert main(["compare", "--stage", "stage1", "--stage", "stage3", "--plot", str(plot), "--csv",
                 str(tmp_path / "cmp.csv"), "--profile", "test"]) == 0
    out = capsys.readouterr().out
    assert "web_test/abs_rel" in out and "labeled_test/delta1" in out
    assert plot.stat().st_size > 1000
    import pandas as pd

    table = pd.read_csv(tmp_path / "cmp.csv")
    assert len(table) == 6  # 3 stage-1 + 3 stage-3 runs
    assert sorted(table["labeled_test/abs_rel"].round(4)) == [0.0, 0.2, 0.8, 0.8, 0.8, 1.0]
    mlflow.end_run()


def test_compare_errors_are_one_line(capsys):
    from dap_model.cli import main

    fresh_mlflow_db()
    capsys.readouterr()  # the fresh database's own set-up lines
    assert main(["compare", "--experiment", "nope", "--profile", "test"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and "experiment 'nope' not found" in err[0]


def test_model_entry_from_training_metadata(tmp_path):
    from dap_model.evaluation.runs import model_entry_from_metadata
    from dap_model.storage import LocalStore

    store = LocalStore(tmp_path / "data")
    store.put_bytes("models/stage1/model.safetensors", b"weights")
    e = model_entry_from_metadata("scene_invariant_labeler", "stage1",
                                  {"mlflow_run_id": "abc", "model_version": "", "model_key": "models/stage1/model.safetensors"}, store)
    assert (e.run_id, e.version, Path(e.checkpoint).read_bytes()) == ("abc", None, b"weights")
    e = model_entry_from_metadata("dap_depth_model", "stage3", {"mlflow_run_id": "r", "model_version": "7"}, store, "dap-depth")
    assert e.checkpoint == "models:/dap-depth/7" and e.version == "7"
    from dap_model.errors import InputError

    with pytest.raises(InputError, match="dap_depth_model: checkpoint 'models/stage3/model.safetensors' not found"):
        model_entry_from_metadata("dap_depth_model", "stage3", {}, store)

    # metadata without MLflow ids (e.g. lost on the way back from an external process): the run
    # is found by its tags dap.stage + dap.pipeline_run, the checkpoint by its registered version
    from dap_model.tracking import setup_mlflow

    cfg = load_config("test")
    fresh_mlflow_db()
    setup_mlflow(cfg.mlflow)
    run_id, version = _register(constant_checkpoint(6.0), "stage3", "dagster-run-42")
    _register(constant_checkpoint(6.0), "stage3", "dagster-run-41")
    e = model_entry_from_metadata("dap_depth_model", "stage3", {}, store, cfg=cfg, pipeline_run="dagster-run-42")
    assert (e.run_id, e.version, e.checkpoint) == (run_id, version, f"models:/dap-depth/{version}")
