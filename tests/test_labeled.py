"""Labelled ingestion: validation with reasons, by-sequence splits, local = S3, Dagster assets."""

import re
from pathlib import Path

import numpy as np
import pytest

from dap_model.config import load_config
from dap_model.data.airsim360 import resize_depth, resize_rgb
from dap_model.data.labeled import (
    MANIFEST_SCHEMA,
    SPLITS,
    ingest_labeled,
    iter_labeled,
    load_labeled_manifest,
    split_sequences,
)
from dap_model.errors import InputError, StorageError
from dap_model.sim.airsim360 import simulate
from dap_model.storage import LocalStore, S3Store, open_store


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """Three simulated sequences × 3 frames at 32×64, then four broken pairs."""
    root = tmp_path_factory.mktemp("airsim")
    cfg = load_config("test", ["sim.scenes=3", "sim.frames_per_scene=3", "sim.height=32"])
    simulate(root, cfg)
    seqs = sorted(p for p in root.iterdir() if p.is_dir())
    (seqs[0] / "panorama_1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    np.save(seqs[1] / "erp_distance_1.npy", np.ones((10, 10), np.float32))
    d = np.load(seqs[2] / "erp_distance_0.npy")
    d[3, 5] = np.nan
    np.save(seqs[2] / "erp_distance_0.npy", d)
    (seqs[2] / "panorama_2.png").unlink()
    return root


def _check_skips(skipped):
    reasons = [s["reason"] for s in skipped]
    assert len(skipped) == 4, skipped
    assert sum("not a decodable image" in r for r in reasons) == 1
    assert sum(re.search(r"depth shape \[10, 10\] does not match", r) is not None for r in reasons) == 1
    assert sum("1 non-finite depth values" in r for r in reasons) == 1
    assert sum("partner panorama_2.png is missing" in r for r in reasons) == 1


def _cfg(**over):
    return load_config("test", [f"{k}={v}" for k, v in over.items()])


def test_local_and_s3_sources_give_the_same_manifest(layout, tmp_path, s3_env):
    import boto3

    cfg = _cfg()
    local_store = LocalStore(tmp_path / "store_a")
    res = ingest_labeled(cfg, local_store, str(layout))
    _check_skips(res.skipped)
    m = res.manifest
    assert len(m) == 9 - 4
    MANIFEST_SCHEMA.validate(m)
    assert set(m["split"]) == set(SPLITS)
    assert m.groupby("sequence")["split"].nunique().max() == 1
    assert (m["height"] == 32).all() and (m["width"] == 64).all()
    assert set(m["domain"]) == {"indoor", "outdoor"}
    assert sorted(local_store.list("labeled")) == sorted(
        ["labeled/" + n for n in res.shards] + [f"labeled/{n}" for n in
                                                ("manifest.parquet", "dataset.json", "preview.png", "config.resolved.yaml")])

    s3 = boto3.client("s3", endpoint_url=s3_env["endpoint_url"], region_name="us-east-1")
    for p in layout.rglob("*"):
        if p.is_file():
            s3.upload_file(str(p), s3_env["bucket"], f"raw/airsim/{p.relative_to(layout).as_posix()}")
    cfg_s3 = _cfg(**{"ingest.endpoint_url": s3_env["endpoint_url"]})
    res_s3 = ingest_labeled(cfg_s3, LocalStore(tmp_path / "store_b"), f"s3://{s3_env['bucket']}/raw/airsim")
    _check_skips(res_s3.skipped)
    a, b = m.drop(columns="source"), res_s3.manifest.drop(columns="source")
    assert a.equals(b)
    assert [s.split("raw/airsim/", 1)[1] for s in res_s3.manifest["source"]] == [
        s.split(str(layout) + "/", 1)[1] for s in m["source"]]
    assert res.version == res_s3.version
    assert all(s.startswith(f"s3://{s3_env['bucket']}/raw/airsim/") for s in res_s3.manifest["source"])

    s3_store = S3Store(bucket=s3_env["bucket"], prefix="store", endpoint_url=s3_env["endpoint_url"])
    ingest_labeled(cfg, s3_store, str(layout))  # an S3 data store as the destination
    assert load_labeled_manifest(s3_store).equals(m)
    got = {s.key: s for split in SPLITS for s in iter_labeled(s3_store, split)}
    assert sorted(got) == sorted(m["key"])
    for split in SPLITS:
        for s in iter_labeled(local_store, split):
            np.testing.assert_array_equal(s.depth, got[s.key].depth)


def test_readers_round_trip_and_reingest_replaces_the_set(layout, tmp_path):
    store = LocalStore(tmp_path / "store")
    res = ingest_labeled(_cfg(**{"ingest.shard_size": 1}), store, str(layout))
    manifest = load_labeled_manifest(store)
    assert manifest.equals(res.manifest)
    for split in SPLITS:
        samples = list(iter_labeled(store, split))
        rows = manifest[manifest["split"] == split]
        assert [s.key for s in samples] == sorted(rows["key"], key=lambda k: rows.set_index("key").loc[k, "shard"])
        for s in samples:
            assert s.rgb.shape == (32, 64, 3) and s.depth.shape == (32, 64) and s.depth.dtype == np.float32
            assert s.meta["split"] == split and s.meta["domain"] in ("indoor", "outdoor")
            row = rows.set_index("key").loc[s.key]
            assert row["depth_max"] == pytest.approx(float(s.depth.max()))
    assert len(res.shards) == 5
    ingest_labeled(_cfg(**{"ingest.shard_size": 64}), store, str(layout))
    assert len([k for k in store.list("labeled") if k.endswith(".tar")]) == 3  # stale shards removed
    with pytest.raises(InputError, match="split"):
        next(iter_labeled(store, "holdout"))


def test_bad_sources_fail_clearly(tmp_path):
    store = LocalStore(tmp_path / "s")
    with pytest.raises(InputError, match="no such folder"):
        ingest_labeled(_cfg(), store, str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no panorama"):
        ingest_labeled(_cfg(), store, str(tmp_path / "empty"))
    with pytest.raises(StorageError, match="materialise labeled_panoramas"):
        load_labeled_manifest(store)
    bad = tmp_path / "bad" / "seq"
    bad.mkdir(parents=True)
    np.save(bad / "erp_distance_0.npy", np.full((4, 8), 2000.0, np.float32))
    import cv2

    cv2.imwrite(str(bad / "panorama_0.png"), np.random.default_rng(0).integers(0, 255, (4, 8, 3), np.uint8))
    cv2.imwrite(str(bad / "panorama_1.png"), np.full((4, 8, 3), 7, np.uint8))
    np.save(bad / "erp_distance_1.npy", np.ones((4, 8), np.float32))
    with pytest.raises(InputError, match=r"no valid pair .*outside \[0, 1000\] m"):
        ingest_labeled(_cfg(), store, str(tmp_path / "bad"))
    assert not store.exists("labeled/manifest.parquet")


def test_split_by_sequence_is_deterministic_and_fills_every_split():
    for n in range(3, 25):
        seqs = [f"s{i}" for i in range(n)]
        a = split_sequences(seqs, 0.15, 0.15, seed=0)
        assert a == split_sequences(list(reversed(seqs)), 0.15, 0.15, seed=0)
        counts = {s: list(a.values()).count(s) for s in SPLITS}
        assert all(c >= 1 for c in counts.values()), (n, counts)
        assert counts["val"] == max(1, round(0.15 * n)) and counts["test"] == max(1, round(0.15 * n))
    assert set(split_sequences(["a"], 0.2, 0.2).values()) == {"train"}
    assert sorted(split_sequences(["a", "b"], 0.2, 0.2).values()) == ["test", "train"]
    assert split_sequences([f"s{i}" for i in range(10)], 0.2, 0.2, 0) != split_sequences(
        [f"s{i}" for i in range(10)], 0.2, 0.2, 1)


def test_depth_resize_never_blends_across_edges():
    depth = np.ones((16, 32), np.float32)
    depth[:, 13:] = 10.0  # edge inside the 4x4 blocks of columns 12..15
    depth[:8, :8] = 0.0  # invalid corner
    depth[0, 8] = 0.0
    for method in ("edge_aware", "nearest"):
        small = resize_depth(depth, 4, method)
        assert small.shape == (4, 8)
        assert set(np.unique(small)) <= {0.0, 1.0, 10.0}
    small = resize_depth(depth, 4, "edge_aware")
    assert small[0, 0] == 0.0 and small[0, 2] == 1.0 and small[0, 3] == 10.0 and small[3, 3] == 10.0
    odd = resize_depth(np.linspace(1, 2, 30 * 60, dtype=np.float32).reshape(30, 60), 8)
    assert odd.shape == (8, 16) and np.all((odd >= 1) & (odd <= 2))
    assert resize_rgb(np.zeros((16, 32, 3), np.uint8), 4).shape == (4, 8, 3)


def test_dagster_materialises_simulator_and_labeled_set():
    from dagster import materialize

    from dap_assets.assets.labeled import airsim360_scenes, labeled_manifest_check, labeled_panoramas
    from dap_assets.resources import default_resources

    result = materialize([airsim360_scenes, labeled_panoramas, labeled_manifest_check],
                         resources=default_resources(profile="test"))
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 1 and checks[0].passed
    mats = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    meta = mats["labeled_panoramas"].materialization.metadata
    assert meta["counts"].value["per_split"] == {"train": 2, "val": 2, "test": 2}
    assert meta["n_skipped"].value == 0
    assert "data:image/png;base64," in meta["preview_image"].value
    assert Path(meta["preview"].value).is_file()
    assert Path(meta["manifest"].value).parent.joinpath("config.resolved.yaml").is_file()
    tags = mats["labeled_panoramas"].materialization.tags
    store = open_store(load_config("test").storage)
    from dap_model.versioning import store_hash

    assert tags.get("dagster/data_version") == store_hash(store, "labeled")  # DVC's md5 of the folder
    assert len(store.list("airsim360")) == 3 * (2 * 2 + 1) + 1  # pairs + meta.json, config
    assert len(list(iter_labeled(store, "train"))) == 2


def test_prefetch_keeps_order_and_a_bounded_window():
    import threading
    import time

    from dap_model.data.labeled import _prefetch

    started, lock = [], threading.Lock()

    def fn(i):
        with lock:
            started.append(i)
        time.sleep(0.001 * (i % 3))
        return i * i

    out = []
    for i, v in enumerate(_prefetch(fn, list(range(60)), 4)):
        with lock:
            assert len(started) <= i + 1 + 2 * 4  # never more than 2·threads ahead of the consumer
        out.append(v)
    assert out == [i * i for i in range(60)]
    assert list(_prefetch(fn, [3, 1, 2], 1)) == [9, 1, 4]
