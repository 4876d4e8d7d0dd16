"""Real unlabelled folders in the pool (`pool.real_sources`, dap_model/real_pool.py) and the pool's
web frames found through the bucket outcomes instead of a listing of `web/frames/`."""

from __future__ import annotations

import io
import json
from pathlib import PurePosixPath

import cv2
import numpy as np
import pandas as pd
import pytest

from dap_model import layout
from dap_model.config import load_config
from dap_model.data.shards import iter_shard
from dap_model.errors import ConfigError
from dap_model.pool import build_pool, pool_counts, tag_sources, web_frame_items
from dap_model.real_pool import ingest_real_sources, load_real_manifest, real_items, safe_name, source_ids
from dap_model.storage import LocalStore, open_store
from dap_model.tagging import get_tagger
from tests.pool_store import record_extracted
from tests.test_pool_assets import _outdoor_frames, _put_web_video


def _render(kind: str, seed: int, n: int, height: int) -> list[np.ndarray]:
    from dap_model.sim import render_sequence

    _, frames = render_sequence(kind, seed, n, height, style="web")
    return [f.rgb for f in frames]


def _write(path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture
def folders(tmp_path):
    """`images/`: two ERP panoramas (one in a sub-folder, one with an unsafe name), one 3:1 image,
    one unreadable .png and a text file; `videos/`: a rendered outdoor clip and a broken .mp4."""
    from dap_model.video.webstyle import render_video, write_mp4

    room, street = _render("indoor", 7, 1, 48)[0], _render("outdoor", 8, 1, 48)[0]  # [48,96,3]
    images = tmp_path / "images"
    _write(images / "rooms" / "room 1.png", room)
    _write(images / "street.jpg", street)
    _write(images / "wide.png", cv2.resize(street, (144, 48)))  # 3:1
    (images / "broken.png").write_bytes(b"\x89PNG not really")
    (images / "notes.txt").write_text("where these came from")
    (images / ".hidden.png").write_bytes(b"")
    videos = tmp_path / "videos"
    videos.mkdir()
    write_mp4(videos / "walk.mp4", (rgb for _, rgb, _, _ in render_video("outdoor", 3, 4, 64, False)), 2.0, (128, 64))
    (videos / "cut.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    return tmp_path


def _cfg(*sources: tuple[str, str], extra: list[str] | None = None):
    spec = ", ".join(f"{{path: '{p}', kind: {k}}}" for p, k in sources)
    return load_config("test", [f"pool.real_sources=[{spec}]", *(extra or [])])


def test_real_images_and_videos_enter_the_pool_and_rejects_keep_their_reason(folders):
    cfg = _cfg((str(folders / "images"), "images"), (str(folders / "videos"), "videos"),
               (str(folders / "absent"), "images"))
    store = open_store(cfg.storage)
    logs: list[str] = []
    res = ingest_real_sources(cfg, store, logs.append)

    m = load_real_manifest(store)
    images = m[m["kind"] == "images"].set_index("file")
    assert set(images.index) == {"rooms/room 1.png", "street.jpg", "wide.png", "broken.png", "notes.txt"}
    assert images.loc["street.jpg", "accepted"] and images.loc["rooms/room 1.png", "accepted"]
    assert (images.loc["wide.png", "reason"], images.loc["wide.png", "detail"]) == ("not_2to1", "image is 144x48, an ERP is 2:1")
    assert images.loc["broken.png", "reason"] == "unreadable" and images.loc["notes.txt", "reason"] == "unsupported"
    assert images.loc["street.jpg", "key"] == "real-images-street"
    odd = images.loc["rooms/room 1.png", "key"]  # the space is no key character: replaced, hash appended
    assert odd == "real-images-" + safe_name("rooms-room 1") and odd.startswith("real-images-rooms-room_1-")

    vids = m[m["kind"] == "videos"]
    walk, cut = vids[vids["file"] == "walk.mp4"], vids[vids["file"] == "cut.mp4"]
    assert len(walk) >= 2 and walk["accepted"].any()  # sampled every video.sample_every_s, horizon-checked
    assert walk.loc[walk["accepted"], "key"].str.startswith("real-videos-walk_").all()
    assert len(cut) == 1 and cut.iloc[0]["reason"] == "unreadable"

    # every accepted key is in its shard, at the pool height, W = 2H
    h = cfg.video.height
    for shard, group in m[m["accepted"]].groupby("shard"):
        assert PurePosixPath(shard).parent.as_posix() == layout.REAL_SHARDS
        got = {s.key: s.rgb.shape for s in iter_shard(store.fetch(shard))}
        assert {k: got[k] for k in group["key"]} == {k: (h, 2 * h, 3) for k in group["key"]}

    skipped = res.skipped()
    assert [s["id"] for s in skipped] == ["absent"] and "no such folder" in skipped[0]["reason"]
    assert any("absent skipped" in line for line in logs)
    summary = json.loads(store.get_bytes(layout.REAL_SUMMARY))["sources"]
    assert summary[0]["rejected"] == {"not_2to1": 1, "unreadable": 1, "unsupported": 1} and summary[0]["accepted"] == 2
    assert store.exists(layout.resolved_config(layout.REAL))

    tags = tag_sources(store, get_tagger(cfg.tagging))
    real = tags[tags["source"] == "real"]
    assert sorted(real["key"]) == sorted(m.loc[m["accepted"], "key"])  # good ones only
    assert real["ok"].all()
    pool = build_pool(tags)
    assert set(pool.loc[pool["source"] == "real", "key"]) == set(real["key"])
    assert real.set_index("key").loc["real-images-street", "origin"] == "images:street.jpg"
    assert pool_counts(pool)["indoor/real"] + pool_counts(pool)["outdoor/real"] == len(real)


def test_unchanged_folders_are_kept_changed_ones_reread_and_dropped_ones_cleared(folders):
    cfg = _cfg((str(folders / "images"), "images"))
    store = open_store(cfg.storage)
    first = ingest_real_sources(cfg, store)
    shard = first.manifest["shard"].dropna().iloc[0]
    before = store.get_bytes(shard)
    again = ingest_real_sources(cfg, store)
    assert [s["status"] for s in again.sources] == ["unchanged"]
    pd.testing.assert_frame_equal(again.manifest, first.manifest)

    _write(folders / "images" / "more.png", _render("indoor", 9, 1, 48)[0])
    third = ingest_real_sources(cfg, store)
    assert [s["status"] for s in third.sources] == ["ingested"] and third.sources[0]["accepted"] == 3
    assert store.get_bytes(shard) != before  # re-read: the shard now holds three panoramas

    gone = ingest_real_sources(load_config("test"), store)  # no sources configured any more
    assert gone.written and gone.manifest.empty and store.list(layout.REAL_SHARDS) == []
    assert real_items(store).empty


def test_nothing_configured_writes_nothing_and_a_relative_folder_is_under_the_project(folders, monkeypatch):
    store = open_store(load_config("test").storage)
    res = ingest_real_sources(load_config("test"), store)
    assert not res.written and not store.exists(layout.REAL_MANIFEST)

    monkeypatch.setenv("DAP_PROJECT_DIR", str(folders / "project"))
    cfg = _cfg(("../images", "images"), ("../missing", "videos"))
    res = ingest_real_sources(cfg, open_store(cfg.storage))
    assert [s["status"] for s in res.sources] == ["ingested", "skipped"]
    assert res.sources[0]["folder"] == str(folders / "project" / ".." / "images")


def test_source_ids_and_bad_config_values():
    assert source_ids(["../shared/real/unlabeled", "/x/unlabeled/", "a b"]) == [
        "unlabeled", "unlabeled-2", safe_name("a b", 40)]
    with pytest.raises(ConfigError, match="kind"):
        load_config("test", ["pool.real_sources=[{path: x, kind: photos}]"])
    with pytest.raises(ConfigError, match="path"):
        load_config("test", ["pool.real_sources=[{path: '', kind: images}]"])


# --- web frames through the bucket outcomes --------------------------------------------------


def _listed_web_items(store) -> pd.DataFrame:
    """What the pool found by listing every object under web/frames/ (the former way)."""
    from dap_model.video.frames import validate_frames_manifest

    parts = []
    for mkey in store.list(layout.WEB_FRAMES):
        if mkey.endswith("/" + layout.FRAMES_MANIFEST_NAME):
            df = validate_frames_manifest(pd.read_parquet(io.BytesIO(store.get_bytes(mkey))))
            df = df[df["accepted"]]
            folder = str(PurePosixPath(mkey).parent)
            parts.append(pd.DataFrame({"key": df["key"].values, "shard": [f"{folder}/{s}" for s in df["shard"]],
                                       "source": "web", "origin": df["video_id"].values}))
    return pd.concat(parts, ignore_index=True)


class _CountingStore(LocalStore):
    listed: list[str]

    def list(self, prefix: str = "") -> list[str]:
        self.listed.append(prefix)
        return super().list(prefix)


def test_web_frames_come_from_the_bucket_outcomes_without_listing_the_frames(tmp_path):
    store = _CountingStore(tmp_path / "data")
    store.listed = []
    frames = _outdoor_frames(2, 32)
    for vid in ("vidA", "vidB", "vidC", "vidD"):
        _put_web_video(store, tmp_path, vid, frames)
    record_extracted(store, ["vidA", "vidB", "vidC", "vidD"], bucket_size=2)  # buckets b000000, b000001

    got = web_frame_items(store)
    want = _listed_web_items(store)
    store.listed.clear()
    got = web_frame_items(store)
    assert not [p for p in store.listed if p.startswith(layout.WEB_FRAMES)]
    cols = ["key", "shard", "source", "origin"]
    pd.testing.assert_frame_equal(got.sort_values("key", ignore_index=True)[cols],
                                  want.sort_values("key", ignore_index=True)[cols])
    assert len(got) == 8

    # a video the bucket no longer holds as extracted (removed from the manifest, or failed)
    # leaves the pool even though old frames are still stored; a lost manifest is left out, logged
    record_extracted(store, ["vidB"], status="skipped", step="manifest")
    store.delete(layout.web_frames_manifest("vidC"))
    logs: list[str] = []
    got = web_frame_items(store, logs.append)
    assert sorted(set(got["origin"])) == ["vidA", "vidD"]
    assert len(logs) == 1 and "vidC" in logs[0]


def test_real_max_files_reads_the_first_files_of_the_kind(folders):
    cfg = _cfg((str(folders / "images"), "images"), extra=["pool.real_max_files=2"])
    m = ingest_real_sources(cfg, open_store(cfg.storage)).manifest
    assert list(m["file"]) == ["broken.png", "notes.txt", "rooms/room 1.png"]  # 2 images by path + the rest as unsupported


@pytest.mark.slow
def test_scene_tags_reads_the_real_folders_through_dagster(folders):
    """The asset: real folders read before tagging, the missing one skipped with a warning, the
    summary in the metadata, the real panoramas in the pool manifest."""
    from dagster import DagsterInstance, materialize

    from dap_assets.assets.pool import scene_tags, unlabeled_pool
    from dap_assets.resources import default_resources
    from dap_model.pool import load_pool_manifest

    spec = f"pool.real_sources=[{{path: '{folders / 'images'}', kind: images}}, {{path: nowhere, kind: videos}}]"
    with DagsterInstance.ephemeral() as instance:
        res = materialize([scene_tags, unlabeled_pool], resources=default_resources(profile="test", overrides=[spec]),
                          instance=instance, raise_on_error=True)
        logs = [e.user_message for e in instance.all_logs(res.run_id)]
    sources = res.asset_materializations_for_node("scene_tags")[0].metadata["real_sources"].data
    assert [(s["id"], s["status"]) for s in sources] == [("images", "ingested"), ("nowhere", "skipped")]
    assert any("real source nowhere skipped" in m and "no such folder" in m for m in logs)
    pool = load_pool_manifest(open_store(load_config("test").storage))
    assert sorted(pool.loc[pool["source"] == "real", "origin"]) == ["images:rooms/room 1.png", "images:street.jpg"]
