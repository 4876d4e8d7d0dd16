"""Training speed and peak memory of the DAP network per backbone at one resolution: the `tiny`
profile's ViT-tiny beside convolutional encoders, each feeding the same DPT decoder and trained
with the project's loss (`DapLoss`) and optimiser (`build_optimizer`) on random panoramas.
Each backbone runs in its own process (peak RSS = its own), one thread.
Writes benchmarks/results/backbones.json: one table per resolution (64×128, the `tiny` and `small`
training size, and 128×256), the networks of one resolution measured back to back.

    python benchmarks/bench_backbones.py [--heights 64 128] [--batch 4] [--seconds 20]"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name -> model overrides on the tiny profile (decoder widths stay the profile's)
NETWORKS = {
    "vit_tiny_patch16_dinov3": ["model.backbone=vit_tiny_patch16_dinov3", "model.taps=[1,2,4,5]"],
    "resnet18": ["model.backbone=resnet18", "model.taps=[1,2,3,4]"],
    "convnext_atto": ["model.backbone=convnext_atto", "model.taps=[0,1,2,3]"],
    "efficientnet_b0": ["model.backbone=efficientnet_b0", "model.taps=[1,2,3,4]"],
}


def measure(name: str, height: int, batch: int, seconds: float) -> dict:
    """One backbone in this process: optimiser steps for `seconds` after 2 warm-up steps."""
    import torch

    from dap_model.accel import apply_cpu_threads
    from dap_model.config import load_config
    from dap_model.losses import DapLoss
    from dap_model.models import build_model
    from dap_model.training.trainer import build_optimizer

    cfg = load_config("tiny", [*NETWORKS[name], f"train.height={height}", f"train.batch_size={batch}", "train.threads=1"])
    apply_cpu_threads(cfg.train.threads)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    opt = build_optimizer(model, cfg)
    loss_fn = DapLoss.from_config(cfg)
    x = torch.rand(batch, 3, height, 2 * height)  # [B,3,H,2H]
    gt = 1.0 + 4.0 * torch.rand(batch, 1, height, 2 * height)  # [B,1,H,2H] metres

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        total, _ = loss_fn(model(x), gt)
        total.backward()
        opt.step()
        return float(total)

    for _ in range(2):
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        step()
        n += 1
    dt = (time.perf_counter() - t0) / n
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "backbone": name,
        "taps": list(cfg.model.taps),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "backbone_params_m": round(sum(p.numel() for p in model.backbone.parameters()) / 1e6, 3),
        "seconds_per_step": round(dt, 4),
        "samples_per_s_train": round(batch / dt, 2),
        "peak_rss_mb": round(peak / 1024, 1),
        "peak_rss_over_imports_mb": round((peak - rss0) / 1024, 1),
        "steps_timed": n,
        "threads": cfg.train.threads,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--heights", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS))
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child process: measure this backbone, print JSON
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "backbones.json")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.heights[0], args.batch, args.seconds)))
        return 0
    os.environ.setdefault("DAP_PROJECT_DIR", tempfile.mkdtemp(prefix="bench-backbones-"))
    import torch

    resolutions = []
    for height in args.heights:
        rows = []
        for name in args.networks:
            out = subprocess.run([sys.executable, __file__, "--one", name, "--heights", str(height),
                                  "--batch", str(args.batch), "--seconds", str(args.seconds)],
                                 capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(row))
            rows.append(row)
        resolutions.append({"height": height, "width": 2 * height, "networks": rows,
                            "load_average_after": [round(x, 2) for x in os.getloadavg()]})
    result = {
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "cuda": torch.cuda.is_available(),
                    "python": platform.python_version()},
        "note": "CPU only, one run; random init; the tiny profile's decoder and loss; train step = "
                "forward + DapLoss + backward + optimiser step on random data",
        "batch_size": args.batch, "resolutions": resolutions,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
