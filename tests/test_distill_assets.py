"""perspective_pseudo_labels end to end on a tiny store (DAP teacher = a tiny trained-format
model, builtin masks), the Dagster asset, and the trainer with the distillation term."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from dap_model import layout
from dap_model.config import load_config
from dap_model.data.shards import iter_shard
from dap_model.distill.pseudo import build_perspective_pseudo_labels, load_distill_manifest
from dap_model.distill.train import DistillStream, distill_paths, split_batch
from dap_model.geometry import rotation_matrix
from dap_model.models import build_model, save_model
from dap_model.storage import LocalStore
from tests.training_data import build_store


@pytest.fixture
def store(tmp_path):
    root = build_store(tmp_path / "project" / "data", h=32, n_train=4, n_val=2, n_test=2, n_pool=4, n_web_test=2)
    cfg = load_config("test", ["model.mask_threshold=1e-6"])  # an untrained range mask would reject everything
    torch.manual_seed(0)
    save_model(build_model(cfg.model), root / "models" / "stage1" / "model.safetensors", cfg.model)
    return LocalStore(root)


@pytest.mark.slow
def test_pseudo_labels_manifest_shards_rotations_masks(store):
    cfg = load_config("test", ["distill.rotations=2", "distill.min_valid_fraction=0.0"])
    res = build_perspective_pseudo_labels(cfg, store, progress=False)
    m = load_distill_manifest(store)
    assert len(m) == 4 * 2 and m["kept"].all() and res.teacher == "dap" and res.face_w == 16
    assert res.teacher_source.endswith(layout.model_key("stage1"))
    assert m[["yaw_deg", "pitch_deg", "roll_deg"]].abs().max().max() <= 45.0
    assert m.groupby("pool_key")["yaw_deg"].nunique().eq(2).all()  # K different rotations
    assert store.exists(layout.resolved_config(layout.DISTILL)) and store.exists(layout.DISTILL_TEACHER)
    pool = pd.read_parquet(store.path(layout.POOL_MANIFEST)).set_index("key")
    samples = {s.key: s for k in sorted(m["shard"].unique()) for s in iter_shard(store.path(layout.join(layout.DISTILL, k)))}
    assert set(samples) == set(m["key"])
    for row in m.to_dict("records"):
        s = samples[row["key"]]
        assert s.depth.shape == s.mask.shape == (6 * 16, 16) and s.rgb.shape == (32, 64, 3)
        assert s.meta["rotation_deg"] == pytest.approx([row["yaw_deg"], row["pitch_deg"], row["roll_deg"]])
        assert np.isclose(s.mask.mean(), row["valid_fraction"])
        if pool.loc[row["pool_key"], "domain"] == "outdoor":
            assert s.mask.mean() < 0.95  # the sky is masked
    # the same seed gives the same rotations; the rotation follows the key, not the batch
    cfg2 = load_config("test", ["distill.rotations=2", "distill.min_valid_fraction=0.0", "distill.teacher_batch_size=6"])
    m2 = build_perspective_pseudo_labels(cfg2, store, progress=False).manifest
    cols = ["key", "yaw_deg", "pitch_deg", "roll_deg"]
    pd.testing.assert_frame_equal(m[cols].sort_values("key", ignore_index=True), m2[cols].sort_values("key", ignore_index=True))


def test_faces_below_min_valid_fraction_are_dropped(store):
    cfg = load_config("test", ["distill.rotations=1", "distill.min_valid_fraction=0.9"])
    m = build_perspective_pseudo_labels(cfg, store, progress=False).manifest
    pool = pd.read_parquet(store.path(layout.POOL_MANIFEST)).set_index("key")
    outdoor = m[m["pool_key"].map(pool["domain"]) == "outdoor"]
    assert outdoor["dropped_faces"].map(len).gt(0).all()  # the sky face(s) cannot reach 90 %
    for row in m[m["kept"]].to_dict("records"):
        s = next(x for x in iter_shard(store.path(layout.join(layout.DISTILL, row["shard"])), [row["key"]]))
        faces = s.mask.reshape(6, 16, 16)
        for k, name in enumerate("FRBLUD"):
            assert (faces[k].mean() == 0) == (name in row["dropped_faces"])


@pytest.mark.slow
def test_dagster_asset_materialises(store, tmp_path):
    from dagster import materialize

    from dap_assets.assets.distill import perspective_pseudo_labels
    from dap_assets.resources import default_resources

    res = default_resources("test", [f"storage.root={store.root}"])
    result = materialize([perspective_pseudo_labels], resources=res)
    assert result.success
    md = result.asset_materializations_for_node("perspective_pseudo_labels")[0].metadata
    assert md["teacher"].value == "dap" and md["samples"].value >= 1
    assert store.exists(layout.DISTILL_MANIFEST)


@pytest.mark.slow
def test_stream_batches_and_resume_position(store):
    cfg = load_config("test", ["distill.rotations=2", "distill.min_valid_fraction=0.0"])
    build_perspective_pseudo_labels(cfg, store, progress=False)
    cfg = load_config("test", ["distill.enabled=true"])
    paths = distill_paths(cfg, store, "stage1")
    a = DistillStream(paths, 32, seed=1)
    seq = [a.next_batch(3) for _ in range(4)]  # 12 > 8 samples: crosses an epoch
    b = DistillStream(paths, 32, seed=1, start=6)
    assert b.next_batch(3)["keys"] == seq[2]["keys"]
    x = seq[0]
    assert x["rgb"].shape == (3, 3, 32, 64) and x["disp"].shape == (3, 6, 1, 16, 16) and x["valid"].dtype == torch.bool
    k = x["keys"][0]
    row = load_distill_manifest(store).set_index("key").loc[k]
    assert torch.allclose(x["R"][0], rotation_matrix(row.yaw_deg, row.pitch_deg, row.roll_deg, degrees=True))
    assert distill_paths(load_config("test", ["distill.enabled=true", "distill.stages=[stage2]"]), store, "stage1") is None
    assert split_batch(2, 0.5) == (1, 1) and split_batch(8, 0.25) == (6, 2)


@pytest.mark.slow
def test_stage1_trains_with_the_distillation_term(store, tmp_path):
    from dap_model.training.stages import run_stage

    build_perspective_pseudo_labels(load_config("test", ["distill.min_valid_fraction=0.0"]), store, progress=False)
    cfg = load_config("test", ["distill.enabled=true", "train.steps=2", "train.batch_size=2", "train.val_every=100",
                               "train.checkpoint_every=100"])
    res = run_stage(cfg, store, "stage1", run_dir=tmp_path / "run", progress=False, register=False, log_model=False)
    assert res.step == 2
    assert np.isfinite(res.metrics["train/distill"]) and res.metrics["train/distill"] > 0
    assert np.isclose(res.metrics["train/loss"], 0.5 * res.metrics["train/labeled"] + 0.5 * res.metrics["train/distill"],
                      rtol=1e-4)
