"""dit360_indoor (builtin backend) → scene_tags → unlabeled_pool, through Dagster, on a local
store holding web frames in the `web/frames/<video_id>/` layout (one of them corrupt), recorded as
extracted in the ingest buckets' outcomes."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pandas as pd
import pytest

from dap_model.config import load_config
from dap_model import layout
from dap_model.pool import iter_pool, load_pool_manifest, load_tags
from dap_model.data.shards import Sample, ShardWriter, iter_shard
from dap_model.storage import open_store
from tests.pool_store import record_extracted


def _put_web_video(store, tmp_path, video_id: str, frames: list[np.ndarray], corrupt_key: str | None = None) -> None:
    from dap_model.video.frames import FrameRecord, record_row, records_frame

    out = tmp_path / video_id
    rows = []
    with ShardWriter(out, "frames", shard_size=8) as w:
        for i, rgb in enumerate(frames):
            key = f"{video_id}-{i:06d}"
            name = w.write(Sample(key, rgb, meta={"video_id": video_id}))
            rec = FrameRecord(i, float(i), "mono", True, "", "", 0.0)
            rows.append(record_row(video_id, f"https://example.org/{video_id}.mp4", rec, name, key))
    shard = out / "frames-000000.tar"
    if corrupt_key:
        with tarfile.open(shard, "a") as tar:
            data = b"not a png"
            info = tarfile.TarInfo(f"{corrupt_key}.rgb.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        rec = FrameRecord(len(frames), float(len(frames)), "mono", True, "", "", 0.0)
        rows.append(record_row(video_id, "x", rec, "frames-000000.tar", corrupt_key))
    for p in out.glob("*.tar"):
        store.put_file(p, layout.join(layout.web_frames(video_id), p.name))
    buf = io.BytesIO()
    records_frame(rows).to_parquet(buf, index=False)
    store.put_bytes(layout.web_frames_manifest(video_id), buf.getvalue())


def _outdoor_frames(n: int, height: int) -> list[np.ndarray]:
    from dap_model.sim import render_sequence

    _, frames = render_sequence("outdoor", 900_100, n, height, style="web", shake_deg=2.0)
    return [f.rgb for f in frames]


@pytest.mark.slow
def test_pool_assets_end_to_end(tmp_path):
    from dagster import AssetKey, materialize

    from dap_assets.assets.pool import dit360_indoor, pool_has_both_domains, scene_tags, unlabeled_pool
    from dap_assets.resources import default_resources

    cfg = load_config("test")
    store = open_store(cfg.storage)
    _put_web_video(store, tmp_path, "vidA", _outdoor_frames(3, 32), corrupt_key="vidA-broken")
    record_extracted(store, ["vidA"])  # its bucket's outcome: frames extracted

    res = materialize(
        [dit360_indoor, scene_tags, unlabeled_pool, pool_has_both_domains],
        resources=default_resources(profile="test"),
        raise_on_error=True,
    )
    assert res.success

    synth = pd.read_parquet(io.BytesIO(store.get_bytes(layout.SYNTH_MANIFEST)))
    assert len(synth) == cfg.synthesis.images and (synth["backend"] == "builtin").all()
    assert store.exists(layout.resolved_config(layout.SYNTH))
    for shard in synth["shard"].unique():  # training shards carry no depth ...
        assert all(s.depth is None for s in iter_shard(store.fetch(shard)))
    for shard in synth["gt_shard"].unique():  # ... the withheld ground truth does
        assert all(s.depth is not None and s.depth.shape == (32, 64) for s in iter_shard(store.fetch(shard)))

    tags = load_tags(store)
    assert len(tags) == 3 + 1 + cfg.synthesis.images
    broken = tags[tags["key"] == "vidA-broken"].iloc[0]
    assert not broken["ok"] and broken["scene"] is None and "unreadable sample" in broken["reason"]
    assert store.exists(layout.POOL_TAGS)

    pool = load_pool_manifest(store)
    assert set(pool["source"]) == {"web", "synth"}
    assert len(pool) == int(tags["ok"].sum())
    assert store.exists(layout.POOL_MANIFEST)
    mat = res.asset_materializations_for_node("unlabeled_pool")[0]
    counts = mat.metadata["counts"].data
    assert sum(counts.values()) == len(pool)
    assert counts["indoor/synth"] + counts["outdoor/synth"] == cfg.synthesis.images

    check = res.get_asset_check_evaluations()[0]
    both = {"indoor", "outdoor"} <= set(pool["domain"])
    assert both and check.passed  # outdoor web frames + indoor synthesis, tagged correctly
    assert check.asset_key == AssetKey("unlabeled_pool")

    got = list(iter_pool(store))
    assert [r["key"] for r, _ in got] == list(pool.sort_values("shard", kind="stable")["key"])
    for row, sample in got:
        assert sample.key == row["key"] and sample.rgb.dtype == np.uint8 and sample.rgb.shape == (32, 64, 3)
