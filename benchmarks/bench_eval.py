"""Benchmark evaluation throughput: panoramas per second at 512×1024 on the CPU.

    python benchmarks/bench_eval.py [--images 8] [--height 512] [--threads 2] [--profile tiny] [--batch 2]

A random model of the profile's architecture (`tiny`: vit_tiny_patch16_dinov3 + DPT heads) is
saved with `save_model` and loaded back as `dap evaluate` does; N panoramas in the `npy` layout
(PNG + float32 .npy, 512×1024) are written to a temporary folder. Timed: the whole evaluation
(read + decode + inference at 512×1024 + resize back + metrics), and separately the reader alone
and the model alone, each after one warm-up image. Results also go to benchmarks/results/eval.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "eval.json"))
    args = ap.parse_args()

    import cv2

    from dap_model.benchmarks import open_benchmark
    from dap_model.config import load_config
    from dap_model.evaluation.evaluate import evaluate
    from dap_model.inference import load_checkpoint, to_input
    from dap_model.models import build_model, save_model

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    h, w = args.height, 2 * args.height
    cfg = load_config(args.profile, [f"eval.height={h}", f"eval.batch_size={args.batch}", "eval.device=cpu"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("DAP_PROJECT_DIR", str(tmp))
        torch.manual_seed(0)
        ckpt = save_model(build_model(cfg.model), tmp / "model")
        model = load_checkpoint(str(ckpt), cfg)
        rng = np.random.default_rng(0)
        bench = tmp / "bench"
        bench.mkdir()
        for i in range(args.images + 1):
            cv2.imwrite(str(bench / f"p{i:03d}_rgb.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            np.save(bench / f"p{i:03d}_depth.npy", rng.uniform(0.5, 90, (h, w)).astype(np.float32))
        warm = next(iter(open_benchmark("npy", str(bench))))
        model.predict(to_input([warm.rgb], (h, w)))  # warm-up

        load_before = os.getloadavg()
        reader = open_benchmark("npy", str(bench))
        t0 = time.perf_counter()
        n_read = sum(1 for _ in reader)
        t_read = time.perf_counter() - t0

        x = to_input([warm.rgb] * args.batch, (h, w))
        t0 = time.perf_counter()
        n_pred = 0
        while n_pred < args.images:
            model.predict(x)
            n_pred += args.batch
        t_model = time.perf_counter() - t0

        res = evaluate(model, open_benchmark("npy", str(bench)), cfg)
        n_eval = int(res.metrics["n_images"])
        load_after = os.getloadavg()

    out = {
        "what": "dap evaluate throughput (npy reader, random model, CPU)",
        "profile": args.profile,
        "backbone": cfg.model.backbone,
        "resolution": [h, w],
        "batch_size": args.batch,
        "threads": args.threads,
        "images": n_eval,
        "evaluate_panoramas_per_s": n_eval / res.seconds,
        "evaluate_s_per_panorama": res.seconds / n_eval,
        "model_only_panoramas_per_s": n_pred / t_model,
        "reader_only_panoramas_per_s": n_read / t_read,
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "loadavg_before": load_before, "loadavg_after": load_after},
    }
    print(f"{args.profile} ({cfg.model.backbone}, {out['parameters_m']:.1f} M params) at {h}x{w}, batch {args.batch}, "
          f"{args.threads} threads:")
    print(f"  evaluate     {out['evaluate_panoramas_per_s']:.3f} panoramas/s ({out['evaluate_s_per_panorama']:.2f} s each)")
    print(f"  model only   {out['model_only_panoramas_per_s']:.3f} panoramas/s")
    print(f"  reader only  {out['reader_only_panoramas_per_s']:.1f} panoramas/s")
    print(f"  load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
