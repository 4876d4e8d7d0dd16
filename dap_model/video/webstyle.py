"""The embedded default's "web" videos, rendered by the simulator in its `web` look (other
palettes and lighting, sensor noise) with a hand-held camera, and MPEG-4 compressed.

Pool videos (`pool_videos`) go into the default manifest as store URLs; their per-frame depth
is kept aside in `web/gt/<video_id>-NNNNNN.tar` (sample key `<video_id>_<frame:06d>`, the web
frame's frame index) for measuring pseudo-label error only, never for training. Each pool video
has a deliberately bad segment (tilted camera, then a dark lens-cap moment) so validation has
something to reject. Held-out videos (`test_videos`) never enter the manifest: their upright
frames and depth are the web-domain test split, `web/test/web_test-NNNNNN.tar` + `manifest.parquet`."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from dap_model import layout
from dap_model.data.shards import Sample, ShardWriter
from dap_model.errors import InputError
from dap_model.video.manifest import video_id

KINDS = ("rooms", "city", "corridor", "rural")


def _rotations(n: int, seed: int, bad: bool) -> list[np.ndarray]:
    """Camera-to-world rotations: yaw drift + ~0.7° wobble; frames in the middle third tilted
    by 12-25° when `bad`."""
    import torch

    from dap_model.geometry import rotation_matrix

    rng = np.random.default_rng(seed)
    yaw = rng.uniform(-math.pi, math.pi) + np.cumsum(rng.normal(0, 0.08, n))
    pitch = np.radians(rng.normal(0, 0.7, n))
    roll = np.radians(rng.normal(0, 0.7, n))
    if bad:
        a, b = n // 3, max(n // 3 + 1, 2 * n // 3)
        tilt = np.radians(rng.uniform(12, 25))
        if rng.random() < 0.5:
            roll[a:b] += tilt
        else:
            pitch[a:b] += tilt
    r = rotation_matrix(torch.from_numpy(yaw), torch.from_numpy(pitch), torch.from_numpy(roll), dtype=torch.float64)
    return list(r.numpy())


def render_video(kind: str, seed: int, n_frames: int, height: int, bad: bool):
    """Yields (frame_index, rgb uint8 [h,2h,3], depth float32 [h,2h], rotation [3,3])."""
    from dap_model.sim import make_scene, render, trajectory

    scene = make_scene(kind, seed)
    positions = trajectory(scene, n_frames, seed)
    rots = _rotations(n_frames, seed, bad)
    dark = (2 * n_frames // 3, 2 * n_frames // 3 + 1) if bad and n_frames >= 6 else (-1, -1)
    for i, (pos, rot) in enumerate(zip(positions, rots)):
        rgb, depth = render(scene, pos, rot, height, "web", seed=i)
        if dark[0] <= i < dark[1]:
            rgb = (rgb // 16).astype(np.uint8)  # lens cap / exposure failure
        yield i, rgb, depth, rot


def write_mp4(path: Path, frames_rgb, fps: float, size: tuple[int, int]) -> int:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise InputError(f"{path}: OpenCV cannot write mp4v video here")
    n = 0
    try:
        for rgb in frames_rgb:
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            n += 1
    finally:
        writer.release()
    return n


def generate_default(cfg, store, progress=None) -> pd.DataFrame:
    """Render the pool + held-out videos into `store`; return the manifest (also written to
    `web/default/manifest.csv`)."""
    v = cfg.video
    n = max(2, int(round(v.video_duration_s * v.video_fps)))
    h = max(v.height, v.horizon_height)  # rendered at the height the horizon check works at; frames are stored at v.height
    rows, test_rows = [], []
    with tempfile.TemporaryDirectory(prefix="dap-web-") as tmp:
        tmp = Path(tmp)
        test_writer = ShardWriter(tmp / "test", "web_test", v.shard_size)
        for i in range(v.pool_videos + v.test_videos):
            held_out = i >= v.pool_videos
            kind = KINDS[i % len(KINDS)]
            seed = v.seed * 1000 + i
            name = f"{'webtest' if held_out else 'web'}-{kind}-{i:03d}"
            key = layout.web_default_video(name)
            url = store.uri(key)
            vid = video_id(url)
            local = tmp / f"{name}.mp4"
            gt = None if held_out else ShardWriter(tmp / "gt", vid, v.shard_size)
            frames = []
            for idx, rgb, depth, rot in render_video(kind, seed, n, h, bad=not held_out):
                frames.append(rgb)
                meta = {"video_id": vid, "frame_index": idx, "time_s": idx / v.video_fps, "kind": kind,
                        "rotation": np.asarray(rot).round(6).tolist()}
                if held_out:
                    test_key = f"{vid}_{idx:06d}"
                    shard = test_writer.write(Sample(test_key, rgb, depth, meta=meta))
                    test_rows.append({"key": test_key, "shard": shard, "video_id": vid, "frame_index": idx, "kind": kind})
                else:
                    gt.write(Sample(f"{vid}_{idx:06d}", rgb, depth, meta=meta))
            if progress:
                progress(f"rendered {name} ({len(frames)} frames)")
            if held_out:
                continue
            write_mp4(local, frames, v.video_fps, (2 * h, h))
            store.put_file(local, key)
            for shard in gt.close():
                store.put_file(tmp / "gt" / shard, layout.join(layout.WEB_GT, shard))
            rows.append({"url": url, "licence": "CC0-1.0 (generated)", "attribution": "DAP engine simulator",
                         "title": f"{kind} walk {i}"})
        for shard in test_writer.close():
            store.put_file(tmp / "test" / shard, layout.join(layout.WEB_TEST, shard))
        tdf = pd.DataFrame(test_rows, columns=["key", "shard", "video_id", "frame_index", "kind"])
        tdf.to_parquet(tmp / "test_manifest.parquet", index=False)
        store.put_file(tmp / "test_manifest.parquet", layout.WEB_TEST_MANIFEST)
        store.put_bytes(layout.resolved_config(layout.WEB_TEST), cfg.to_yaml().encode())
    df = pd.DataFrame(rows, columns=["url", "licence", "attribution", "title"])
    store.put_bytes(layout.WEB_DEFAULT_MANIFEST, df.to_csv(index=False).encode())
    store.put_bytes(layout.resolved_config(layout.WEB_DEFAULT), cfg.to_yaml().encode())
    return df
