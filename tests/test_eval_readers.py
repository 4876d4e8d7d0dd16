"""Benchmark readers on files written here, in each encoding (docs/evaluation.md#benchmark-formats)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from dap_model.benchmarks import available_formats, cassini_to_erp, erp_to_cassini, open_benchmark
from dap_model.errors import DapError, InputError


def _png(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _u16(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr.astype(np.uint16))


def test_registry_is_explicit():
    assert {"stanford2d3d", "matterport3d", "matterport3d_png", "deep360", "airsim360", "npy", "shards"} <= set(
        available_formats()
    )
    with pytest.raises(InputError, match="unknown benchmark format 'stanford'"):
        open_benchmark("stanford", "/nonexistent")


def test_stanford2d3d_uint16_over_512_with_invalid_codes(tmp_path):
    h, w = 8, 16
    raw = np.random.default_rng(1).integers(1, 60000, (h, w)).astype(np.uint16)
    raw[0, 0] = 65535  # no return
    raw[1, 1] = 0  # hole
    area = tmp_path / "area_1" / "pano"
    _png(area / "rgb" / "camera_a_rgb.png", _rgb(h, w))
    _u16(area / "depth" / "camera_a_depth.png", raw)
    reader = open_benchmark("stanford2d3d", str(tmp_path))
    (s,) = list(reader)
    assert s.key == "area_1/pano/camera_a"
    assert s.depth.dtype == np.float32 and s.depth.shape == (h, w)
    assert s.depth[0, 0] == 0 and s.depth[1, 1] == 0
    expect = raw.astype(np.float64) / 512.0
    m = (raw != 65535) & (raw != 0)
    np.testing.assert_allclose(s.depth[m], expect[m], rtol=1e-6)
    assert np.array_equal(s.rgb, _rgb(h, w))


def test_matterport3d_exr_metres_and_png_over_4000(tmp_path):
    import OpenEXR

    h, w = 6, 12
    depth = np.random.default_rng(2).uniform(0.5, 30, (h, w)).astype(np.float32)
    depth[2, 3] = np.nan
    depth[4, 5] = 0
    (tmp_path / "exr").mkdir()
    _png(tmp_path / "exr" / "scene_x_rgb.png", _rgb(h, w))
    OpenEXR.File({"type": OpenEXR.scanlineimage}, {"Y": depth}).write(str(tmp_path / "exr" / "scene_x_depth.exr"))
    (s,) = list(open_benchmark("matterport3d", str(tmp_path / "exr")))
    ok = np.isfinite(depth) & (depth > 0)
    np.testing.assert_array_equal(s.depth[ok], depth[ok])
    assert s.depth[2, 3] == 0 and s.depth[4, 5] == 0

    raw = np.random.default_rng(3).integers(0, 65535, (h, w)).astype(np.uint16)
    raw[0, :3] = 0
    _png(tmp_path / "png" / "scene_y_rgb.png", _rgb(h, w))
    _u16(tmp_path / "png" / "scene_y_depth.png", raw)
    (s,) = list(open_benchmark("matterport3d_png", str(tmp_path / "png")))
    np.testing.assert_allclose(s.depth, raw / 4000.0, rtol=1e-6)
    assert (s.depth[0, :3] == 0).all()


def test_unreadable_exr_names_the_file(tmp_path):
    _png(tmp_path / "a_rgb.png", _rgb(4, 8))
    (tmp_path / "a_depth.exr").write_bytes(b"not an exr file at all" * 4)
    with pytest.raises(InputError, match=r"a_depth\.exr: unreadable EXR"):
        list(open_benchmark("matterport3d", str(tmp_path)))


def _lonlat_rays(h, w):
    """Independent ERP rays (numpy, docs/architecture.md#conventions)."""
    lon = (np.arange(w) + 0.5) / w * 2 * np.pi - np.pi
    lat = np.pi / 2 - (np.arange(h) + 0.5) / h * np.pi
    lon, lat = np.meshgrid(lon, lat)
    return np.stack([np.cos(lat) * np.sin(lon), np.sin(lat), np.cos(lat) * np.cos(lon)], -1)


def test_deep360_cassini_to_erp_matches_an_independent_mapping(tmp_path):
    hc, wc = 64, 32
    rng = np.random.default_rng(4)
    depth_c = rng.uniform(1, 80, (hc, wc)).astype(np.float32)  # every pixel distinct
    depth_c[5, 7] = 0  # invalid stays invalid
    rgb_c = _rgb(hc, wc, 5)
    _png(tmp_path / "ep1" / "rgb" / "000001_rgb.png", rgb_c)
    (tmp_path / "ep1" / "depth").mkdir(parents=True)
    np.savez(tmp_path / "ep1" / "depth" / "000001_depth.npz", depth_c)
    (s,) = list(open_benchmark("deep360", str(tmp_path)))
    assert s.key == "ep1/000001"
    assert s.depth.shape == (wc, 2 * wc) and s.rgb.shape == (wc, 2 * wc, 3)
    # MODE/Deep360 mapping written out here: theta_c = atan2(tan lat, cos lon'), phi_c = asin(cos lat sin lon')
    # with lon' = -lon; Cassini column from phi_c (right = +x), row from theta_c (centre = forward).
    ray = _lonlat_rays(wc, 2 * wc)
    lon = np.arctan2(ray[..., 0], ray[..., 2])
    lat = np.arcsin(ray[..., 1])
    theta_c = np.arctan2(np.tan(lat), np.cos(-lon))
    phi_c = np.arcsin(np.cos(lat) * np.sin(-lon))
    u = np.clip(np.round((-phi_c + np.pi / 2) / np.pi * wc - 0.5), 0, wc - 1).astype(int)
    v = np.round((-theta_c + np.pi) / (2 * np.pi) * hc - 0.5).astype(int) % hc
    expect = depth_c[v, u]
    assert np.mean(s.depth == expect) > 0.99  # nearest: exact but for ties on pixel borders
    assert np.count_nonzero(s.depth == 0) == np.count_nonzero(expect == 0)


def test_cassini_known_points_and_round_trip():
    import torch

    from dap_model.geometry import erp_rays

    hc, wc = 64, 32
    # known points (v, u) → the ray written out from the convention: α down, β right,
    # ray = (sin β, −cos β sin α, cos β cos α); forward, up-ish, down-right and backward-left
    points = [(32, 16), (14, 16), (45, 25), (3, 9)]
    c = torch.zeros(1, 1, hc, wc)
    for i, (v, u) in enumerate(points, start=1):
        c[0, 0, v - 1 : v + 2, u - 1 : u + 2] = float(i)  # a 3x3 block: nearest may skip single pixels
    e = cassini_to_erp(c, "nearest")[0, 0]  # [32,64]
    rays = erp_rays(wc, 2 * wc)  # [H,W,3]
    for i, (v, u) in enumerate(points, start=1):
        a = (v + 0.5) / hc * 2 * math.pi - math.pi
        b = (u + 0.5) / wc * math.pi - math.pi / 2
        want = torch.tensor([math.sin(b), -math.cos(b) * math.sin(a), math.cos(b) * math.cos(a)])
        got = rays[e == float(i)]  # the ERP pixels that took this Cassini pixel
        assert len(got) >= 1
        angle = torch.acos((got @ want).clamp(-1, 1))
        assert float(angle.max()) < 2.5 * math.pi / wc, (i, float(angle.max()))
    fwd = rays[e == 1.0]
    assert bool((fwd[:, 2] > 0.97).all())  # the Cassini centre looks forward (+z)
    # round trip on a smooth field (the rays themselves): error shrinks with resolution
    from dap_model.benchmarks import cassini_rays

    errs = []
    for n in (32, 128):
        erp = erp_rays(n, 2 * n).permute(2, 0, 1)[None]  # [1,3,n,2n]
        back = cassini_to_erp(erp_to_cassini(erp, "bilinear"), "bilinear")
        errs.append(float((back - erp).norm(dim=1).max()))
        cas = erp_to_cassini(erp, "bilinear")[0].permute(1, 2, 0)  # [2n,n,3]: must equal the Cassini rays
        assert float((cas - cassini_rays(2 * n, n).float()).norm(dim=-1).median()) < 2.0 / n
    assert errs[1] < errs[0] / 8 and errs[1] < 0.01


def test_airsim360_sequences_metres_up_to_1000(tmp_path):
    h, w = 8, 16
    for seq in ("seq_a", "seq_b"):
        for i in range(2):
            d = np.full((h, w), 1000.0, np.float32)
            d[0, 0] = np.inf
            d[1, 0] = np.nan
            d[2, :] = 3.5 + i
            _png(tmp_path / seq / f"panorama_{i}.png", _rgb(h, w, i))
            np.save(tmp_path / seq / f"erp_distance_{i}.npy", d)
    reader = open_benchmark("airsim360", str(tmp_path))
    samples = list(reader)
    assert [s.key for s in samples] == ["seq_a/panorama_0", "seq_a/panorama_1", "seq_b/panorama_0", "seq_b/panorama_1"]
    s = samples[1]
    assert s.depth[0, 0] == 0 and s.depth[1, 0] == 0 and s.depth[3, 3] == 1000.0 and s.depth[2, 5] == 4.5


def test_npy_pairs_any_2to1_size_and_bad_sizes(tmp_path):
    for stem, (h, w) in {"small": (4, 8), "big": (10, 20)}.items():
        _png(tmp_path / f"{stem}_rgb.png", _rgb(h, w))
        np.save(tmp_path / f"{stem}_depth.npy", np.full((h, w), 2.0, np.float32))
    samples = {s.key: s for s in open_benchmark("npy", str(tmp_path))}
    assert samples["small"].depth.shape == (4, 8) and samples["big"].depth.shape == (10, 20)

    bad = tmp_path / "bad"
    _png(bad / "x_rgb.png", _rgb(4, 8))
    np.save(bad / "x_depth.npy", np.ones((5, 8), np.float32))
    with pytest.raises(InputError, match=r"x_depth\.npy: depth is 5x8 but its image .*x_rgb\.png is 4x8"):
        list(open_benchmark("npy", str(bad)))
    square = tmp_path / "square"
    _png(square / "y_rgb.png", _rgb(6, 6))
    np.save(square / "y_depth.npy", np.ones((6, 6), np.float32))
    with pytest.raises(InputError, match=r"y_depth\.npy: 6x6 is not an equirectangular panorama"):
        list(open_benchmark("npy", str(square)))
    orphan = tmp_path / "orphan"
    _png(orphan / "z_rgb.png", _rgb(4, 8))
    with pytest.raises(InputError, match=r"z_rgb\.png: no depth file"):
        open_benchmark("npy", str(orphan)).items()


def test_missing_and_empty_roots(tmp_path):
    with pytest.raises(InputError, match=r"nope: benchmark root does not exist"):
        open_benchmark("npy", str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: no npy samples found"):
        open_benchmark("npy", str(tmp_path / "empty")).items()


def test_npy_from_s3_prefix(s3_env):
    import io

    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_env["endpoint_url"], region_name="us-east-1")
    h, w = 4, 8
    d = np.arange(h * w, dtype=np.float32).reshape(h, w) / 4
    buf = io.BytesIO()
    np.save(buf, d)
    s3.put_object(Bucket=s3_env["bucket"], Key="bench/v1/p_depth.npy", Body=buf.getvalue())
    s3.put_object(Bucket=s3_env["bucket"], Key="bench/v1/p_rgb.png", Body=cv2.imencode(".png", _rgb(h, w))[1].tobytes())
    reader = open_benchmark("npy", f"s3://{s3_env['bucket']}/bench/v1", endpoint_url=s3_env["endpoint_url"])
    (s,) = list(reader)
    assert s.key == "p" and s.source == f"s3://{s3_env['bucket']}/bench/v1/p_depth.npy"
    assert s.depth[0, 0] == 0 and np.array_equal(s.depth[1:], d[1:])
    with pytest.raises(DapError, match=r"s3://.*/missing"):
        open_benchmark("npy", f"s3://{s3_env['bucket']}/missing", endpoint_url=s3_env["endpoint_url"]).items()


def test_shards_reader_skips_samples_without_depth(tmp_path):
    from dap_model.data.shards import Sample, ShardWriter

    h, w = 4, 8
    with ShardWriter(tmp_path / "labeled", "test", shard_size=2) as wr:
        for i in range(3):
            wr.write(Sample(f"k{i}", _rgb(h, w, i), np.full((h, w), 1.0 + i, np.float32)))
        wr.write(Sample("nogt", _rgb(h, w)))
    with ShardWriter(tmp_path / "labeled", "train", shard_size=8) as wr:
        wr.write(Sample("train0", _rgb(h, w), np.ones((h, w), np.float32)))
    reader = open_benchmark("shards", str(tmp_path), pattern="labeled/test-*.tar")
    assert len(reader) == 2  # shards
    samples = list(reader)
    assert [s.key for s in samples] == ["k0", "k1", "k2"]
    assert samples[2].depth[0, 0] == 3.0
