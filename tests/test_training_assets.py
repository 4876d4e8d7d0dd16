"""The training and curation assets materialised with Dagster on the `test` profile, on a data
store built here (labelled shards, pool with withheld GT, web test split); MLflow contents;
curation selection, rank correlation and the random-top-K control."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from dap_model import layout
from dap_model.config import load_config, project_dir
from dap_model.errors import InputError
from dap_model.storage import LocalStore
from dap_model.evaluation.withheld import pseudo_label_errors, rank_correlation
from dap_model.training.curation import CURATED_SCHEMA, select_top_k
from tests.training_data import build_store

MINE = ["scene_invariant_labeler", "stage1_pseudo_labels", "depth_discriminator", "curated_pseudo_labels",
        "realism_invariant_labeler", "stage2_pseudo_labels", "dap_depth_model"]


def _scores(n: int = 10) -> pd.DataFrame:
    return pd.DataFrame({
        "key": [f"k{i}" for i in range(n)], "shard": "pseudo-000000.tar",
        "domain": ["indoor" if i % 2 else "outdoor" for i in range(n)], "source": "web",
        "score": np.linspace(0.1, 0.9, n),
    })


def test_top_k_per_domain_and_random_control():
    s = _scores()
    top = select_top_k(s, 2, "discriminator", seed=0)
    assert list(top["key"]) == ["k9", "k7", "k8", "k6"]  # indoor (odd) then outdoor, best first
    assert list(top["rank"]) == [1, 2, 1, 2] and set(top["selected_by"]) == {"discriminator"}
    rnd = select_top_k(s, 2, "random", seed=0)
    assert len(rnd) == 4 and set(rnd["selected_by"]) == {"random"}
    assert rnd.groupby("domain").size().to_dict() == {"indoor": 2, "outdoor": 2}
    assert select_top_k(s, 2, "random", seed=0).equals(rnd)
    assert any(not select_top_k(s, 2, "random", seed=k).equals(rnd) for k in range(1, 5))
    assert len(select_top_k(s, 50, "discriminator", seed=0)) == 10  # K larger than a domain: all of it
    with pytest.raises(InputError):
        select_top_k(s.iloc[:0], 2, "discriminator", seed=0)


def test_rank_correlation_sign_and_gt_sources():
    s = _scores(8)
    err = pd.DataFrame({"key": s["key"], "gt_prefix": [layout.WEB_GT] * 4 + [layout.SYNTH_GT] * 4,
                        "abs_rel": 1.0 - s["score"], "rmse": 0.0, "delta1": 0.0, "abs_rel_aligned": s["score"]})
    r = rank_correlation(s, err)
    assert r["spearman"] == pytest.approx(-1.0) and r["n"] == 8
    assert r["spearman_aligned"] == pytest.approx(1.0) and r["spearman_aligned_synth_gt"] == pytest.approx(1.0)
    assert r["spearman_web_gt"] == pytest.approx(-1.0) and r["n_synth_gt"] == 4
    assert np.isnan(rank_correlation(s, err.iloc[:2])["spearman"])


def test_curated_schema_rejects_bad_rows():
    ok = select_top_k(_scores(), 1, "discriminator", 0).assign(shard="curated-000000.tar")
    CURATED_SCHEMA.validate(ok)
    with pytest.raises(Exception):
        CURATED_SCHEMA.validate(ok.assign(score=1.5))
    with pytest.raises(Exception):
        CURATED_SCHEMA.validate(ok.assign(domain="space"))


@pytest.mark.slow
def test_training_and_curation_assets_materialise_and_track():
    import mlflow
    from dagster import AssetSelection, DagsterInstance, materialize
    from mlflow import MlflowClient

    from dap_assets.definitions import defs
    from dap_assets.resources import default_resources
    from dap_model.tracking import setup_mlflow
    from dap_model.config import load_config
    from dap_model.inference import load_checkpoint

    store = LocalStore(build_store(project_dir() / "data", h=32, n_train=8, n_pool=8, shard_size=4))
    instance = DagsterInstance.ephemeral()
    assets = [defs.get_assets_def(k) for k in MINE]
    res = materialize(assets, selection=AssetSelection.assets(*MINE), instance=instance,
                      resources=default_resources(profile="test"), raise_on_error=False)
    assert res.success, [e.message for e in res.all_events if e.is_failure]
    mats = {e.asset_key.to_user_string(): e.step_materialization_data.materialization
            for e in res.get_asset_materialization_events()}
    assert set(mats) == set(MINE)
    meta = {k: {m: getattr(v, "value", v) for m, v in mats[k].metadata.items()} for k in MINE}
    for key, stage in (("scene_invariant_labeler", "stage1"), ("realism_invariant_labeler", "stage2"),
                       ("dap_depth_model", "stage3")):
        assert meta[key]["stage"] == stage and meta[key]["step"] == 4
        assert mats[key].tags["dagster/data_version"] == meta[key]["checkpoint_sha256"]
        assert meta[key]["model_key"] == layout.model_key(stage) and store.exists(meta[key]["model_key"])
    assert not any(k.startswith("rank_corr") for k in meta["depth_discriminator"])  # curation never reads GT
    scores = pd.read_parquet(store.fetch(layout.CURATION_SCORES))
    assert "abs_rel" not in scores
    rc = rank_correlation(scores, pseudo_label_errors(load_config("test"), store, layout.PSEUDO_STAGE1))
    assert rc["n"] == 8  # every pool sample has withheld GT here (measurement only)
    assert -1.0 <= rc["spearman"] <= 1.0
    curated = CURATED_SCHEMA.validate(pd.read_parquet(store.fetch(layout.manifest(layout.PSEUDO_CURATED))))
    assert curated.groupby("domain").size().to_dict() == {"indoor": 2, "outdoor": 2}
    assert len(pd.read_parquet(store.fetch(layout.manifest(layout.PSEUDO_STAGE2)))) == 8

    cfg = load_config("test")
    setup_mlflow(cfg.mlflow)
    client = MlflowClient()
    exp = mlflow.get_experiment_by_name("dap")
    runs = {r.data.tags["dap.stage"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"stage1", "stage2", "stage3", "discriminator"}
    for stage in ("stage1", "stage2", "stage3"):
        r = runs[stage]
        assert r.info.run_name == stage and r.info.status == "FINISHED"
        assert r.data.tags["dap.pipeline_run"] == res.run_id
        assert r.data.tags["dap.data.labeled"] and r.data.params["train.steps"] == "4"
        assert {"train/loss", "train/silog", "val/abs_rel", "val/rmse", "val/delta1", "lr/backbone"} <= set(r.data.metrics)
        assert len(client.get_metric_history(r.info.run_id, "train/loss")) == 4
        assert [a.path for a in client.list_artifacts(r.info.run_id, "samples")]
        mv = client.get_model_version("dap-depth", meta[{"stage1": "scene_invariant_labeler", "stage2":
                                      "realism_invariant_labeler", "stage3": "dap_depth_model"}[stage]]["model_version"])
        assert mv.tags["dap.stage"] == stage and mv.run_id == r.info.run_id
    assert "dap.data.pseudo_curated" in runs["stage2"].data.tags
    assert "dap.data.pseudo_stage2" in runs["stage3"].data.tags
    assert "disc/mean_score" in runs["discriminator"].data.metrics

    # the registered stage-3 version is the published checkpoint, loadable without unpickling
    from dap_model.models import load_model

    v3 = meta["dap_depth_model"]["model_version"]
    logged = load_checkpoint(f"models:/dap-depth/{v3}", load_config("test"))
    published = load_model(store.fetch(layout.model_key("stage3")))
    x = torch.rand(2, 3, 32, 64)
    assert torch.equal(logged.predict(x), published.predict(x))
    served = mlflow.pytorch.load_model(f"models:/dap-depth/{v3}")  # the pt2 graph MLflow serves
    torch.testing.assert_close(served(x), published.predict(x))

    # the control: random top-K instead of the discriminator's
    res2 = materialize([defs.get_assets_def("curated_pseudo_labels")], instance=instance,
                       resources=default_resources(profile="test", overrides=["curation.selection=random"]))
    assert res2.success
    ctrl = pd.read_parquet(store.fetch(layout.manifest(layout.PSEUDO_CURATED)))
    assert set(ctrl["selected_by"]) == {"random"} and len(ctrl) == 4


def test_stage3_job_is_a_gpu_pool_torchrun_process():
    from dap_assets.assets.training import launch_command
    from dap_assets.definitions import defs

    a = defs.get_assets_def("dap_depth_model")
    assert a.op.pool == "gpu"
    import json

    limits = json.loads(a.op.tags["dagster-k8s/config"])["container_config"]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    one = launch_command(load_config("test"), ["train.steps=3"], "RUN")
    assert one[1:5] == ["-m", "dap_model.training.launch", "--stage", "stage3"] and one[-2:] == ["--set", "train.steps=3"]
    many = launch_command(load_config("test"), [], "RUN", gpus=4)
    assert "--nproc_per_node=4" in many and many[many.index("--nproc_per_node=4") + 1:][:2] == ["-m", "dap_model.training.launch"]
