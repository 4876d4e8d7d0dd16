"""Ingest buckets: new manifest rows never move existing videos between buckets, a bucket's run
records one outcome per video, a corrupt video fails alone and a re-run retries only it."""

from __future__ import annotations

import pandas as pd
import pytest

from dap_model import layout
from dap_model.config import load_config
from dap_model.storage import LocalStore
from dap_model.video import buckets
from dap_model.video.buckets import bucket_key, extend_assignment, load_assignment, plan_buckets
from dap_model.video.manifest import video_id


def _urls(lo: int, hi: int) -> list[str]:
    return [f"https://videos.example.org/v/clip-{i:06d}.mp4" for i in range(lo, hi)]


def _write_manifest(path, urls) -> None:
    pd.DataFrame({"url": urls, "licence": "CC-BY-4.0"}).to_csv(path, index=False)


def _rows(ids) -> pd.DataFrame:
    ids = list(ids)
    return pd.DataFrame({"video_id": ids, "url": [f"https://x.org/{v}.mp4" for v in ids]})


def test_extend_assignment_tops_up_the_newest_bucket_then_opens_new_ones():
    empty = pd.DataFrame({c: pd.Series(dtype=str) for c in ("video_id", "bucket", "url")})
    a = extend_assignment(empty, _rows(f"v{i}" for i in range(7)), 3)
    assert a["bucket"].tolist() == ["b000000"] * 3 + ["b000001"] * 3 + ["b000002"]
    assert a["url"].iloc[6] == "https://x.org/v6.mp4"
    b = extend_assignment(a, _rows(["v3", "x1", "x2", "x3", "x1"]), 3)  # a known id and a repeat are not re-added
    assert b.iloc[:7].equals(a)
    assert b["video_id"].iloc[7:].tolist() == ["x1", "x2", "x3"]
    assert b["bucket"].iloc[7:].tolist() == ["b000002", "b000002", "b000003"]
    assert extend_assignment(b, _rows(["v0"]), 3) is b
    assert bucket_key(42) == "b000042"


def test_adding_rows_keeps_old_buckets_membership(tmp_path, monkeypatch):
    monkeypatch.setenv("DAP_PROJECT_DIR", str(tmp_path))
    manifest = tmp_path / "manifest.csv"
    first = _urls(0, 250)
    _write_manifest(manifest, first)
    cfg = load_config("test", [f"video.manifest={manifest}", "video.bucket_size=100"])
    store = LocalStore(tmp_path / "data")

    plan = plan_buckets(cfg, store, known_buckets=[], cursor=None)
    assert plan.assigned == 250 and plan.new_buckets == plan.touched == ["b000000", "b000001", "b000002"]
    before = load_assignment(store)
    assert before["bucket"].value_counts().to_dict() == {"b000000": 100, "b000001": 100, "b000002": 50}

    # unchanged manifest and nothing assigned since the cursor: no work, the manifest is not read
    def unread(*a, **k):
        raise AssertionError("the manifest was read")

    monkeypatch.setattr("dap_model.video.pipeline.load_manifest", unread)
    idle = plan_buckets(cfg, store, plan.new_buckets, plan.cursor)
    assert idle.touched == [] and idle.new_videos == [] and "no new videos" in idle.reason
    monkeypatch.undo()
    monkeypatch.setenv("DAP_PROJECT_DIR", str(tmp_path))

    # rows appended, the old rows shuffled and some removed, a smaller bucket size for new buckets
    old_kept = [u for i, u in enumerate(first) if i % 7]
    shuffled = pd.Series(old_kept).sample(frac=1.0, random_state=0).tolist()
    _write_manifest(manifest, shuffled + _urls(250, 330))
    cfg = load_config("test", [f"video.manifest={manifest}", "video.bucket_size=100"])
    plan2 = plan_buckets(cfg, store, plan.new_buckets, plan.cursor)
    after = load_assignment(store)
    assert after.iloc[:250].equals(before)  # every existing video keeps its bucket
    assert plan2.new_videos == [video_id(u) for u in _urls(250, 330)]
    assert after["bucket"].value_counts().to_dict() == {"b000000": 100, "b000001": 100, "b000002": 100, "b000003": 30}
    assert plan2.touched == ["b000002", "b000003"] and plan2.new_buckets == ["b000003"]

    # no cursor (a reset sensor): only buckets the orchestrator does not know
    assert plan_buckets(cfg, store, ["b000000", "b000001", "b000002"], None).touched == ["b000003"]


def test_no_manifest_and_an_invalid_manifest_are_reasons_not_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("DAP_PROJECT_DIR", str(tmp_path))
    manifest = tmp_path / "manifest.csv"
    cfg = load_config("test", [f"video.manifest={manifest}"])
    store = LocalStore(tmp_path / "data")
    plan = plan_buckets(cfg, store, [], None)
    assert plan.mark is None and "no manifest" in plan.reason
    manifest.write_text("name\nx\n")
    plan = plan_buckets(cfg, store, [], None)
    assert plan.mark is None and "no 'url' column" in plan.reason
    assert not store.exists(layout.WEB_BUCKET_ASSIGNMENT)


@pytest.mark.slow
def test_a_corrupt_video_fails_alone_and_a_rerun_retries_only_it(tmp_path, monkeypatch):
    """Through Dagster: one bucket of three good clips and a truncated one; the bucket's run
    succeeds, the outcomes say which video failed and why, the yield check warns, and after the
    file is repaired a re-run downloads and extracts only that video (extraction on two worker
    processes)."""
    import dagster as dg

    from dap_assets.assets.web import WEB_VIDEO_BUCKETS, new_video_buckets
    from dap_assets.definitions import defs
    from dap_assets.resources import default_resources
    from dap_model.video import pipeline
    from tests.test_video_sources import _make_video

    monkeypatch.setenv("DAP_PROJECT_DIR", str(tmp_path / "project"))
    clips = tmp_path / "clips"
    clips.mkdir()
    _make_video(clips / "a.mp4")
    data = (clips / "a.mp4").read_bytes()
    for name in ("b", "c"):
        (clips / f"{name}.mp4").write_bytes(data)
    (clips / "bad.mp4").write_bytes(data[: len(data) // 2])
    urls = [(clips / f"{n}.mp4").as_uri() for n in ("a", "bad", "b", "c")]
    manifest = tmp_path / "manifest.csv"
    _write_manifest(manifest, urls)
    overrides = [f"video.manifest={manifest}", "video.bucket_workers=2", "video.dedup_threshold=0"]
    resources = default_resources("test", overrides)
    cfg, store = resources["dap"].get(), resources["storage"].store()

    fetched: list[str] = []  # downloads run on threads of this process; extraction in worker processes
    fetch = pipeline.fetch_video
    monkeypatch.setattr(pipeline, "fetch_video", lambda c, s, vid, row=None: (fetched.append(vid), fetch(c, s, vid, row))[1])

    def run_bucket(instance, bucket):
        return dg.materialize([*defs.assets, *defs.asset_checks], selection=dg.AssetSelection.assets("web_videos", "web_frames"),
                              instance=instance, resources=resources, partition_key=bucket, raise_on_error=False)

    bad = video_id(urls[1])
    good = [video_id(u) for u in urls if u != urls[1]]
    with dg.instance_for_test() as instance:
        plan = new_video_buckets(instance, cfg, store)
        assert plan.new_buckets == ["b000000"]
        instance.add_dynamic_partitions(WEB_VIDEO_BUCKETS.name, plan.new_buckets)
        res = run_bucket(instance, "b000000")
        assert res.success  # a bad video never fails its bucket
        out = buckets.read_outcomes(store, "b000000").set_index("video_id")
        assert out.loc[bad, "status"] == "failed" and out.loc[bad, "step"] == "download"
        assert "not a decodable video" in out.loc[bad, "reason"] and "bad.mp4" in out.loc[bad, "reason"], out.loc[bad, "reason"]
        assert (out.loc[good, "status"] == "ok").all() and (out.loc[good, "frames_accepted"] >= 1).all()
        assert sorted(fetched) == sorted(video_id(u) for u in urls)
        checks = {e.check_name: e for e in res.get_asset_check_evaluations()}
        assert checks["web_frames_manifest_valid"].passed
        assert not checks["web_frames_yield"].passed
        assert checks["web_frames_yield"].severity == dg.AssetCheckSeverity.WARN
        assert buckets.pending_buckets(store) == ["b000000"]

        assert not store.exists(layout.web_video_sidecar(bad))
        (clips / "bad.mp4").write_bytes(data)
        fetched.clear()
        assert run_bucket(instance, "b000000").success
        assert fetched == [bad]
        again = buckets.read_outcomes(store, "b000000").set_index("video_id")
        assert (again["status"] == "ok").all() and again.loc[bad, "frames_accepted"] >= 1
        assert again.loc[good].equals(out.loc[good])  # the done videos' rows (their timings too) are untouched
        assert buckets.pending_buckets(store) == []


# --- concurrent writers of the assignment (the sensor and `make run`) ------------------------


def _register(root: str, ids: list[str], bucket_size: int, go) -> None:
    """One writer process: wait for the others, then register `ids` a few at a time."""
    store = LocalStore(root)
    go.wait()
    for i in range(0, len(ids), 2):
        buckets.assign_videos(store, _rows(ids[i:i + 2]), bucket_size)


def _assert_each_once(df: pd.DataFrame, ids: set[str], bucket_size: int) -> None:
    assert sorted(df["video_id"]) == sorted(ids)  # nothing lost, nothing twice
    sizes = df.groupby("bucket", sort=True).size()
    assert sizes.index.tolist() == [bucket_key(i) for i in range(len(sizes))]  # no gap
    assert (sizes.iloc[:-1] == bucket_size).all() and sizes.iloc[-1] <= bucket_size
    assert df["bucket"].is_monotonic_increasing


def test_concurrent_writers_in_processes_assign_every_video_once(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    work = {w: [f"w{w}-{i:02d}" for i in range(30)] for w in range(3)}  # disjoint videos per writer
    procs = [ctx.Process(target=_register, args=(str(tmp_path / "data"), ids, 4, go)) for ids in work.values()]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = LocalStore(tmp_path / "data")
    _assert_each_once(load_assignment(store), {v for ids in work.values() for v in ids}, 4)
    assert store.list("web/buckets") == [layout.WEB_BUCKET_ASSIGNMENT]  # the lock file is hidden


@pytest.mark.integration
def test_a_writer_that_loses_the_s3_race_retries_on_the_winners_rows(s3_env, monkeypatch):
    """Writer B registers its videos between writer A's read and A's conditional PUT: A's PUT is
    refused (the ETag moved on), A reads again and appends after B's rows."""
    from dap_model.storage import S3Store

    def writer():
        return S3Store(bucket=s3_env["bucket"], prefix="p", endpoint_url=s3_env["endpoint_url"])

    a_ids, b_ids = [f"a{i}" for i in range(5)], [f"b{i}" for i in range(6)]
    buckets.assign_videos(writer(), _rows(["first"]), 4)  # A's first PUT is If-Match, not a create
    real = buckets.extend_assignment
    calls = []

    def b_writes_in_between(assignment, rows, bucket_size):
        calls.append(rows["video_id"].iloc[0])
        if len(calls) == 1:  # inside A's first attempt: B's whole read-modify-write
            buckets.assign_videos(writer(), _rows(b_ids), bucket_size)
        return real(assignment, rows, bucket_size)

    monkeypatch.setattr(buckets, "extend_assignment", b_writes_in_between)
    after, before = buckets.assign_videos(writer(), _rows(a_ids), 4)
    assert calls == ["a0", "b0", "a0"]  # A's second attempt saw B's rows
    assert before == 7 and after["video_id"].tolist() == ["first", *b_ids, *a_ids]
    _assert_each_once(load_assignment(writer()), {"first", *a_ids, *b_ids}, 4)
