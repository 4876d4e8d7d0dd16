"""Web-video extraction speed vs a bare OpenCV decode of the same video (same run), and the
horizon check's accuracy on the fixture rotated by random roll/pitch in [8°, 30°].

Writes benchmarks/results/video.json."""

from __future__ import annotations

import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURE = ROOT.parent / "shared" / "fixtures" / "gvr_testRoom1_1920Mono.mp4"


def bare_decode(path: Path) -> tuple[int, float]:
    cap = cv2.VideoCapture(str(path))
    t0 = time.perf_counter()
    n = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    return n, time.perf_counter() - t0


def extraction(path: Path, every_s: float) -> tuple[int, int, float]:
    from dap_model.config import VideoConfig
    from dap_model.data.shards import Sample, ShardWriter
    from dap_model.video.frames import extract_frames

    s = VideoConfig(height=128, sample_every_s=every_s)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        w = ShardWriter(tmp, "bench", 64)
        frames, info = extract_frames(path, s)
        sampled = 0
        for rec, rgb in frames:
            sampled += 1
            if rgb is not None:
                w.write(Sample(f"k{rec.frame_index:06d}", rgb, meta={"t": rec.time_s}))
        w.close()
    return info[0].frames_decoded, sampled, time.perf_counter() - t0


def horizon_accuracy(n_frames: int = 12, per_frame: int = 3) -> dict:
    from dap_model.geometry import rotate_erp, rotation_matrix
    from dap_model.video import check_horizon

    cap = cv2.VideoCapture(str(FIXTURE))
    frames, i = [], 0
    while cap.grab():
        if i % (360 // n_frames) == 0:
            _, f = cap.retrieve()
            frames.append(cv2.cvtColor(cv2.resize(f, (1024, 512), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
        i += 1
    rng = np.random.default_rng(0)
    up = [check_horizon(f) for f in frames]
    errs, rejected, n, times = [], 0, 0, []
    for f in frames:
        for _ in range(per_frame):
            roll, pitch = (rng.uniform(8, 30) * rng.choice([-1, 1]) for _ in range(2))
            r = rotation_matrix(rng.uniform(-math.pi, math.pi), math.radians(pitch), math.radians(roll), dtype=torch.float64)
            true = math.degrees(math.acos(float(r[1, 1])))
            x = torch.from_numpy(f).permute(2, 0, 1)[None].float()
            g = rotate_erp(x, r.float())[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
            t0 = time.perf_counter()
            res = check_horizon(g)
            times.append(time.perf_counter() - t0)
            n += 1
            rejected += not res.ok
            errs.append(abs(res.tilt_deg - true))
    errs = np.array(errs + [abs(r.tilt_deg) for r in up])
    return {
        "upright_frames": len(up), "upright_accepted": float(np.mean([r.ok for r in up])),
        "tilted_frames": n, "tilted_rejected": rejected / n,
        "tilt_abs_error_deg": {"mean": float(np.nanmean(errs)), "median": float(np.nanmedian(errs)),
                               "p90": float(np.nanpercentile(errs, 90))},
        "check_ms_1024x512_median": 1000 * float(np.median(times)),
    }


def main() -> int:
    if not FIXTURE.is_file():
        print(f"skipped: fixture missing ({FIXTURE})")
        return 0
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    bare_n, bare_t = bare_decode(FIXTURE)
    out = {"video": FIXTURE.name, "machine": platform.processor() or platform.machine(), "opencv_threads": 1,
           "bare_decode_fps": bare_n / bare_t, "extraction": {}}
    for every in (1.0, 0.25, 1 / 30):
        n, sampled, t = extraction(FIXTURE, every)
        out["extraction"][f"every_{every:.3f}s"] = {
            "video_frames": n, "sampled": sampled, "video_fps": n / t, "ratio_vs_bare_decode": (n / t) / (bare_n / bare_t),
        }
    out["horizon"] = horizon_accuracy()
    dst = ROOT / "benchmarks" / "results" / "video.json"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
