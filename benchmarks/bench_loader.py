"""Benchmark the training data loader at 512×1024: samples/s from local shards and from S3.

    python benchmarks/bench_loader.py [--samples 48] [--workers 0,1,2] [--mfu 0.4] [--peak-tflops 989]

Shards: simulator panoramas (`dap_model.sim`, indoor, 512×1024) written as tar shards of PNG
RGB + float32 depth, 8 samples a shard. Each case runs `BatchLoader` (batch 4, the `tiny`
profile's augmentations, training height 512) for `--samples` samples after one warm-up batch
(worker start-up is reported apart): in-process (0 workers) and with 1, 2 DataLoader workers.
"local": `LocalStore` keys. "s3": a moto S3 server on loopback, every shard fetched on first use
into an empty local cache (the cache is cleared before each case, so the rate includes the
downloads). Per-worker rate = the 1-worker rate. GPU need: FLOPs of one forward pass of the `full`
network (ViT-L/16 DINOv3 + DPT heads) at 512×1024, counted with torch.utils.flop_counter on the
meta device, ×3 for a training step, against `--peak-tflops` (H100 dense bf16) × `--mfu`;
workers per GPU = that rate ÷ the per-worker rate. Results: benchmarks/results/loader.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEIGHT = 512
SHARD_SIZE = 8
BATCH = 4


def build_shards(out: Path, n_samples: int) -> list[str]:
    """Tar shards under `out/labeled/`; returns their store keys."""
    from dap_model.config import load_config
    from dap_model.data.shards import Sample, ShardWriter, decode_png
    from dap_model.sim.airsim360 import simulate

    sim_dir = out / "sim"
    cfg = load_config("tiny", ["sim.scenes=2", "sim.frames_per_scene=4", f"sim.height={HEIGHT}", "sim.kind=indoor"])
    simulate(sim_dir, cfg)
    import numpy as np

    frames = sorted(sim_dir.glob("*/panorama_*.png"))
    pairs = [(decode_png(p.read_bytes(), str(p)), np.load(p.with_name(p.name.replace("panorama_", "erp_distance_")
                                                                   .replace(".png", ".npy")))) for p in frames]
    with ShardWriter(out / "labeled", "train", SHARD_SIZE) as w:
        for i in range(n_samples):
            rgb, depth = pairs[i % len(pairs)]
            w.write(Sample(f"s{i:05d}", rgb, depth.astype(np.float32)))
    shutil.rmtree(sim_dir)
    return [f"labeled/{name}" for name in w.shards]


def run_case(store, keys: list[str], workers: int, n: int) -> dict:
    from dap_model.config import load_config
    from dap_model.training.data import Augment, BatchLoader, ShardSource, ShardStream

    tc = load_config("tiny").train
    stream = ShardStream([ShardSource("labeled", tuple(keys))], height=HEIGHT, seed=0,
                         shuffle_buffer=tc.shuffle_buffer, aug=Augment.from_config(tc), store=store)
    t0 = time.perf_counter()
    loader = BatchLoader(stream, BATCH, workers=workers)
    loader.next_batch()  # warm-up: workers started, first shards read
    t1 = time.perf_counter()
    for _ in range(math.ceil(n / BATCH)):
        loader.next_batch()
    t2 = time.perf_counter()
    loader.close()
    got = math.ceil(n / BATCH) * BATCH
    return {"samples": got, "seconds": t2 - t1, "samples_per_s": got / (t2 - t1), "startup_s": t1 - t0}


def forward_tflops(height: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dap_model.config import load_config
    from dap_model.models import build_model

    cfg = load_config("full", ["model.pretrained="])  # random weights: FLOPs do not depend on them
    with torch.device("meta"):
        model = build_model(cfg.model)
        x = torch.empty(1, 3, height, 2 * height)
        with FlopCounterMode(display=False) as fc:
            model(x)
    return fc.get_total_flops() / 1e12


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=48)
    ap.add_argument("--shard-samples", type=int, default=32)
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--mfu", type=float, default=0.4)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="H100 SXM dense bf16")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "loader.json"))
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",")]

    import boto3
    from moto.server import ThreadedMotoServer

    from dap_model.storage import LocalStore, S3Store
    from tests.conftest import free_port

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(k, v)
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    tmp = Path(tempfile.mkdtemp(prefix="bench-loader-"))
    os.environ["DAP_PROJECT_DIR"] = str(tmp / "project")  # S3Store.fetch caches under <project>/.cache/s3
    server = None
    try:
        data = tmp / "data"
        keys = build_shards(data, args.shard_samples)
        shard_mb = sum((data / k).stat().st_size for k in keys) / len(keys) / 2**20

        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        url = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="bench")
        s3 = S3Store("bench", endpoint_url=url)
        for k in keys:
            s3.put_file(data / k, k)
        local = LocalStore(data)

        load_before = os.getloadavg()
        cases = {}
        for w in workers:  # interleaved: local then S3 for each worker count
            cases[f"local/{w}"] = run_case(local, keys, w, args.samples)
            shutil.rmtree(tmp / "project" / ".cache", ignore_errors=True)
            cases[f"s3/{w}"] = run_case(s3, keys, w, args.samples)
            print(f"workers {w}: local {cases[f'local/{w}']['samples_per_s']:.2f} samples/s, "
                  f"s3 {cases[f's3/{w}']['samples_per_s']:.2f} samples/s", flush=True)
        load_after = os.getloadavg()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    fwd = forward_tflops(HEIGHT)
    train_tflops = 3 * fwd
    need = args.peak_tflops * args.mfu / train_tflops  # images/s one GPU consumes
    per_worker = cases["local/1"]["samples_per_s"] if "local/1" in cases else None
    out = {
        "height": HEIGHT,
        "width": 2 * HEIGHT,
        "batch": BATCH,
        "shard_samples": SHARD_SIZE,
        "shard_mb": shard_mb,
        "augment": "tiny profile's train.aug_* knobs",
        "cases": cases,
        "samples_per_s": {k: v["samples_per_s"] for k, v in cases.items()},
        "per_worker_samples_per_s": per_worker,
        "scaling_2_workers_vs_1": (cases["local/2"]["samples_per_s"] / per_worker) if per_worker and "local/2" in cases else None,
        "gpu_need": {
            "network": "full profile: ViT-L/16 DINOv3 + DPT heads",
            "forward_tflop_per_image": fwd,
            "train_tflop_per_image": train_tflops,
            "peak_tflops_bf16": args.peak_tflops,
            "mfu": args.mfu,
            "images_per_s_per_gpu": need,
            "workers_per_gpu": math.ceil(need / per_worker) if per_worker else None,
        },
        "load_average_before": load_before,
        "load_average_after": load_after,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    print(f"per worker {per_worker:.2f} samples/s; one H100 at MFU {args.mfu} needs {need:.1f} images/s "
          f"({train_tflops:.2f} TFLOP per training image) → {out['gpu_need']['workers_per_gpu']} workers per GPU")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp_out = Path(args.out).with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(out, indent=2) + "\n")
    tmp_out.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
