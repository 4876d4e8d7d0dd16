"""Benchmark the procedural renderer (dap_model.sim) on the CPU.

    python benchmarks/bench_sim.py [--threads 1] [--frames 3] [--skip-tiny]

1. Panoramas per second at 256×512 and 512×1024 for an outdoor city and an indoor apartment
   (the same camera path for each size), with wall-clock and process CPU time (CPU time is less
   sensitive to other processes sharing the machine) and the peak resident memory of a fresh
   process rendering that case (ru_maxrss after − before the renders); the 256×512 city once
   more with the other thread count (1 vs 2 torch threads).
2. The `tiny` profile's labelled set: simulator + ingestion, end to end, wall and CPU time.
Results go to benchmarks/results/sim.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).resolve().parent / "results" / "sim.json"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _render_case(kind: str, seed: int, height: int, frames: int, threads: int, q) -> None:
    import torch

    from dap_model.sim import make_scene, render, trajectory

    torch.set_num_threads(threads)
    scene = make_scene(kind, seed)
    poses = trajectory(scene, frames, 0)
    render(scene, poses[0], height=16)  # warm-up: imports, caches
    before = _rss_mb()
    w0, c0 = time.perf_counter(), time.process_time()
    valid = 0.0
    for p in poses:
        _, depth = render(scene, p, height=height)
        valid += float((depth > 0).mean())
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    q.put({
        "scene": scene.kind, "seed": seed, "height": height, "width": 2 * height, "frames": frames,
        "primitives": scene.n_primitives, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
        "panoramas_per_s_wall": round(frames / wall, 3), "panoramas_per_s_cpu": round(frames / cpu, 3),
        "peak_rss_mb": round(_rss_mb(), 1), "render_rss_increase_mb": round(_rss_mb() - before, 1),
        "valid_depth_fraction": round(valid / frames, 3),
    })


def render_case(*args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_render_case, args=(*args, q))
    p.start()
    res = q.get()
    p.join()
    return res


def tiny_profile(threads: int) -> dict:
    import torch

    from dap_model.config import load_config
    from dap_model.data.labeled import ingest_labeled
    from dap_model.sim.airsim360 import simulate_to_store
    from dap_model.storage import LocalStore

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DAP_PROJECT_DIR"] = tmp
        cfg = load_config("tiny")
        store = LocalStore(Path(tmp) / "data")
        w0, c0 = time.perf_counter(), time.process_time()
        sim = simulate_to_store(cfg, store)
        w1, c1 = time.perf_counter(), time.process_time()
        res = ingest_labeled(cfg, store)
        w2, c2 = time.perf_counter(), time.process_time()
    return {
        "profile": "tiny", "sim": cfg.sim.model_dump(), "ingest_height": cfg.ingest.height,
        "panoramas": sim.frames, "sequences": len(sim.sequences), "samples": len(res.manifest),
        "per_split": res.counts()["per_split"], "per_domain": res.counts()["per_domain"],
        "simulate_wall_s": round(w1 - w0, 2), "simulate_cpu_s": round(c1 - c0, 2),
        "ingest_wall_s": round(w2 - w1, 2), "ingest_cpu_s": round(c2 - c1, 2),
        "total_wall_s": round(w2 - w0, 2), "total_cpu_s": round(c2 - c0, 2), "goal_s": 120,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads per render (default 1)")
    ap.add_argument("--frames", type=int, default=3, help="frames per case")
    ap.add_argument("--skip-tiny", action="store_true")
    args = ap.parse_args()
    cases = []
    for kind, seed in (("city", 1), ("rooms", 1)):
        for height in (256, 512):
            r = render_case(kind, seed, height, args.frames if height == 256 else max(1, args.frames - 1), args.threads)
            cases.append(r)
            print(f"{r['scene']:8s} {r['width']}x{r['height']}: {r['panoramas_per_s_wall']:.2f} pano/s wall, "
                  f"{r['panoramas_per_s_cpu']:.2f} pano/s CPU, peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(+{r['render_rss_increase_mb']:.0f} MB while rendering)", flush=True)
    alt = 2 if args.threads == 1 else 1
    r = render_case("city", 1, 256, args.frames, alt)
    r["threads"] = alt
    cases.append(r)
    print(f"city     512x256 with {alt} torch threads: {r['panoramas_per_s_wall']:.2f} pano/s wall, "
          f"{r['panoramas_per_s_cpu']:.2f} pano/s CPU", flush=True)
    out = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
        "threads": args.threads, "render": cases,
    }
    if not args.skip_tiny:
        t = tiny_profile(args.threads)
        out["tiny_profile"] = t
        print(f"tiny profile: {t['panoramas']} panoramas at {t['sim']['height']}x{2 * t['sim']['height']} "
              f"+ ingestion to {t['ingest_height']}: {t['total_wall_s']:.1f} s wall, {t['total_cpu_s']:.1f} s CPU "
              f"(goal < {t['goal_s']} s)", flush=True)
    out["machine"]["loadavg_end"] = os.getloadavg()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
