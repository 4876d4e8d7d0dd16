"""Web videos end to end through Dagster against real servers on loopback (http.server, moto
S3, file://): one bucket of videos, failures isolated as per-video outcomes, re-materialising
the bucket retries only them."""

import functools
import http.server
import threading
from pathlib import Path

import boto3
import cv2
import numpy as np
import pandas as pd
import pytest
from dagster import AssetSelection, DagsterInstance, build_sensor_context, materialize

from tests.conftest import free_port


def _make_video(path: Path, n: int = 8) -> None:
    """A small upright ERP-like clip: sky/ground gradient, irregular vertical posts, moving."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 4, (256, 128))
    rng = np.random.default_rng(0)
    lat = np.linspace(1, -1, 128)[:, None, None]
    base = np.concatenate([np.broadcast_to(120 + 60 * lat, (128, 256, 1))] * 3, axis=2).copy()
    base[64:] *= np.array([0.4, 0.6, 0.3])
    posts = [(int(x), tuple(int(c) for c in rng.integers(30, 250, 3)), int(wd)) for x, wd in
             zip(rng.choice(256, 9, replace=False), rng.integers(2, 14, 9))]
    for i in range(n):
        img = base.copy()
        for x, col, wd in posts:
            x = (x + 6 * i) % 256
            img[24 + x % 20 : 110, x : x + wd] = col
        img = np.clip(img + rng.normal(0, 1.5, img.shape), 0, 255).astype(np.uint8)
        w.write(img)
    w.release()


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        self.server.requests.append(self.path)


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    srv.requests = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}", srv.requests
    srv.shutdown()


def _run_all(instance, resources, defs_assets, buckets):
    """Materialise each bucket; {video_id: (ok, reason)} from the buckets' outcome tables."""
    from dap_model.video.buckets import outcomes_version, read_outcomes

    store = resources["storage"].store()
    out = {}
    for pk in buckets:
        res = materialize(defs_assets, selection=AssetSelection.assets("web_videos", "web_frames"), instance=instance,
                          resources=resources, partition_key=pk, raise_on_error=False)
        assert res.success, pk  # a bad video never fails its bucket
        df = read_outcomes(store, pk)
        frames = next(m for m in res.get_asset_materialization_events() if m.asset_key.to_user_string() == "web_frames")
        assert frames.materialization.tags.get("dagster/data_version") == outcomes_version(df), pk
        out.update({r.video_id: (r.status == "ok" and r.step == "frames", r.reason) for r in df.itertuples()})
    return out


@pytest.mark.slow
def test_partitions_fail_alone_and_retry_only_failures(tmp_path, http_root, s3_env, monkeypatch):
    from dap_assets.assets import web
    from dap_assets.definitions import defs
    from dap_assets.resources import default_resources
    from dap_model.video.buckets import load_assignment
    from dap_model.video.manifest import video_id

    root, base, requests = http_root
    good = tmp_path / "good.mp4"
    _make_video(good)
    data = good.read_bytes()
    (root / "room.mp4").write_bytes(data)
    (root / "text.mp4").write_text("this is not a video\n")
    local = tmp_path / "local"
    local.mkdir()
    (local / "ok.mp4").write_bytes(data)
    (local / "titled.mp4").write_bytes(data)
    (local / "empty.mp4").write_bytes(b"")
    (local / "cut.mp4").write_bytes(data[: len(data) // 2])
    s3 = boto3.client("s3", endpoint_url=s3_env["endpoint_url"], region_name="us-east-1")
    s3.put_object(Bucket=s3_env["bucket"], Key="v/pano.mp4", Body=data)
    other = boto3.client("s3", endpoint_url=s3_env["endpoint_url"], region_name="us-east-1")
    other.meta.events.register("before-sign.s3.*", lambda request, **kw: request.headers.__setitem__("x-moto-account-id", "111122223333"))
    denied_bucket = s3_env["bucket"] + "-x"
    other.create_bucket(Bucket=denied_bucket)
    other.put_object(Bucket=denied_bucket, Key="secret.mp4", Body=data)
    monkeypatch.setenv("MOTO_S3_ALLOW_CROSSACCOUNT_ACCESS", "false")

    urls = {
        "http_ok": f"{base}/room.mp4", "s3_ok": f"s3://{s3_env['bucket']}/v/pano.mp4", "file_ok": (local / "ok.mp4").as_uri(),
        "text": f"{base}/text.mp4", "missing": f"{base}/missing.mp4", "closed": f"http://127.0.0.1:{free_port()}/v.mp4",
        "denied": f"s3://{denied_bucket}/secret.mp4", "empty": (local / "empty.mp4").as_uri(),
        "cut": (local / "cut.mp4").as_uri(), "title": (local / "titled.mp4").as_uri(), "ftp": "ftp://example.org/v.mp4",
    }
    rows = [{"url": u, "licence": "CC-BY-4.0", "title": "../../etc/passwd" if k == "title" else k} for k, u in urls.items()]
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    resources = default_resources("test", [f"video.manifest={manifest}", f"video.s3_endpoint_url={s3_env['endpoint_url']}",
                                           "video.download_retries=1", "video.dedup_threshold=0"])
    instance = DagsterInstance.get()
    assets = list(defs.assets) + list(defs.asset_checks)

    with build_sensor_context(instance=instance, resources=resources) as ctx:
        result = web.web_video_manifest_sensor(ctx)
    (req,) = result.dynamic_partitions_requests
    assert list(req.partition_keys) == ["b000000"]  # every video in one bucket
    assert sorted(load_assignment(resources["storage"].store())["video_id"]) == sorted(video_id(u) for u in urls.values())
    instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    with build_sensor_context(instance=instance, resources=resources, cursor=result.cursor) as ctx:
        assert not web.web_video_manifest_sensor(ctx).dynamic_partitions_requests  # nothing new

    ids = {k: video_id(u) for k, u in urls.items()}
    first = _run_all(instance, resources, assets, ["b000000"])
    ok = {k for k, v in ids.items() if first[v][0]}
    assert ok == {"http_ok", "s3_ok", "file_ok"}, first
    expect = {"text": "not a decodable video", "missing": "HTTP 404", "closed": "Connection refused",
              "denied": "access denied", "empty": "empty file", "cut": "not a decodable video",
              "title": "title '../../etc/passwd'", "ftp": "scheme 'ftp' is not allowed"}
    for k, needle in expect.items():
        assert needle in first[ids[k]][1], (k, first[ids[k]][1])
    fm = pd.read_parquet(tmp_path / "project" / "data" / "web" / "frames" / ids["http_ok"] / "frames.parquet")
    assert fm["accepted"].sum() >= 1 and set(fm["layout"]) == {"mono"}

    (root / "missing.mp4").write_bytes(data)  # the 404 is fixed upstream
    n_before = len(requests)
    second = _run_all(instance, resources, assets, ["b000000"])
    assert second[ids["missing"]][0]
    assert all(second[ids[k]][0] for k in ("http_ok", "s3_ok", "file_ok"))
    assert not any(r.startswith("/room.mp4") for r in requests[n_before:])  # done ones are not refetched
    assert not second[ids["denied"]][0] and not second[ids["title"]][0]

    pd.DataFrame(rows + [{"url": f"{base}/new.mp4", "licence": None, "title": None}]).to_csv(manifest, index=False)
    with build_sensor_context(instance=instance, resources=resources, cursor=result.cursor) as ctx:
        added = web.web_video_manifest_sensor(ctx)
    assert not added.dynamic_partitions_requests and [r.partition_key for r in added.run_requests] == ["b000000"]
    assert load_assignment(resources["storage"].store())["video_id"].iloc[-1] == video_id(f"{base}/new.mp4")
