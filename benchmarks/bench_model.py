"""Benchmark the DAP network and its losses: forward and training-step time, peak memory, and
the share of a training step spent in the six losses.

    python benchmarks/bench_model.py [--threads 2] [--reps 2] [--sizes tiny:256,tiny:512,small:256,small:512]

CPU: each (model, height) runs in its own subprocess (so the peak RSS, `ru_maxrss`, belongs to
that configuration alone): a random model of the profile's architecture (`tiny`:
vit_tiny_patch16_dinov3 + DPT heads; the committed `small` rows of results/model.json were
measured when `small` used vit_small_patch16_dinov3 — it now uses the tiny network), batch 1, H×2H input.
Timed after one warm-up: forward (no grad), training step (forward + DapLoss + backward + AdamW
step), and the losses alone (DapLoss forward + backward on detached model outputs, the losses'
whole share of a step). Memory: peak RSS of the process and its growth over the timed steps.

GPU (only when CUDA is present): the `full` model (ViT-L/16 DINOv3, taps 4/11/17/23) at 512×1024,
bf16 autocast: images/s for inference and training, and MFU = model FLOPs per step (counted with
torch.utils.flop_counter) × steps/s ÷ the device's peak dense bf16 FLOP/s (`--peak-tflops`, or a
table of known devices). Without CUDA the GPU figures are recorded as unmeasured.

Results: benchmarks/results/model.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_one(profile: str, height: int, reps: int, threads: int) -> dict:
    import torch

    from dap_model.config import load_config
    from dap_model.losses import DapLoss
    from dap_model.models import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = load_config(profile)
    model = build_model(cfg.model)
    loss_fn = DapLoss.from_config(cfg)
    opt = torch.optim.AdamW(model.param_groups(cfg.train.lr_backbone, cfg.train.lr_decoder))
    h, w = height, 2 * height
    rgb = torch.rand(1, 3, h, w)
    gt = 1.0 + 30.0 * torch.rand(1, 1, h // 8, w // 8)
    gt = torch.nn.functional.interpolate(gt, size=(h, w), mode="nearest")  # piecewise: has edges
    gt[..., : h // 10, :] = 0.0  # sky band

    def forward() -> None:
        with torch.no_grad():
            model(rgb)

    def step() -> None:
        out = model(rgb)
        total, _ = loss_fn(out, gt)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    with torch.no_grad():
        fixed = {k: v.detach() for k, v in model(rgb).items()}

    def losses_only() -> None:
        out = {k: v.clone().requires_grad_(True) for k, v in fixed.items()}
        total, _ = loss_fn(out, gt)
        total.backward()

    def timed(fn) -> float:
        fn()  # warm-up (grids, caches, allocator)
        t = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
        return min(t)

    rss_before = _rss_mb()
    t_fwd = timed(forward)
    t_loss = timed(losses_only)
    t_step = timed(step)
    return {
        "profile": profile,
        "backbone": cfg.model.backbone,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "height": h,
        "width": w,
        "batch": 1,
        "threads": threads,
        "reps": reps,
        "forward_s": t_fwd,
        "train_step_s": t_step,
        "losses_s": t_loss,
        "loss_share_of_step": t_loss / t_step,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_growth_mb": _peak_rss_mb() - rss_before,
    }


def run_gpu(peak_tflops: float | None, reps: int) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dap_model.config import load_config
    from dap_model.losses import DapLoss
    from dap_model.models import build_model

    name = torch.cuda.get_device_name()
    if peak_tflops is None:
        peak_tflops = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    cfg = load_config("full", ["model.pretrained="])  # random init: speed does not need weights
    dev = torch.device("cuda")
    model = build_model(cfg.model).to(dev)
    loss_fn = DapLoss.from_config(cfg)
    opt = torch.optim.AdamW(model.param_groups(cfg.train.lr_backbone, cfg.train.lr_decoder), fused=True)
    b, h, w = cfg.train.batch_size, 512, 1024
    rgb = torch.rand(b, 3, h, w, device=dev)
    gt = 1.0 + 30.0 * torch.rand(b, 1, h, w, device=dev)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(rgb)
            total, _ = loss_fn(out, gt)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    def infer() -> None:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            model(rgb)

    def timed(fn, n: int) -> float:
        fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) / n

    with FlopCounterMode(display=False) as fc:
        step()
    flops = fc.get_total_flops()
    torch.cuda.reset_peak_memory_stats()
    t_step = timed(step, max(reps, 5))
    t_inf = timed(infer, max(reps, 5))
    return {
        "device": name,
        "batch": b,
        "height": h,
        "width": w,
        "dtype": "bf16 autocast",
        "train_images_per_s": b / t_step,
        "infer_images_per_s": b / t_inf,
        "train_step_s": t_step,
        "flops_per_step": flops,
        "peak_bf16_tflops": peak_tflops,
        "mfu": (flops / t_step) / (peak_tflops * 1e12) if peak_tflops else None,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--sizes", default="tiny:256,tiny:512,small:256,small:512",
                    help="profile:height pairs (width = 2 x height)")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "model.json"))
    args = ap.parse_args()

    if args.one:  # child process: one configuration, JSON on stdout
        profile, height = args.one.split(":")
        print(json.dumps(run_one(profile, int(height), args.reps, args.threads)))
        return

    import torch

    from dap_model.io import atomic_write_text

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    cpu = []
    for spec in args.sizes.split(","):
        proc = subprocess.run(
            [sys.executable, __file__, "--one", spec, "--reps", str(args.reps), "--threads", str(args.threads)],
            capture_output=True, text=True, env=env, cwd=ROOT,
        )
        if proc.returncode != 0:
            raise SystemExit(f"bench_model {spec}: failed\n{proc.stderr[-2000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        cpu.append(r)
        print(
            f"cpu {r['profile']:<6} {r['height']}x{r['width']}  params {r['params_m']:.1f}M  "
            f"forward {r['forward_s']:.2f}s  train step {r['train_step_s']:.2f}s  "
            f"losses {r['losses_s']:.2f}s ({100 * r['loss_share_of_step']:.1f}% of the step)  "
            f"peak RSS {r['peak_rss_mb']:.0f} MB (+{r['rss_growth_mb']:.0f} MB over the timed steps)",
            flush=True,
        )
    if torch.cuda.is_available():
        gpu = run_gpu(args.peak_tflops, args.reps)
        mfu = f"{100 * gpu['mfu']:.1f}%" if gpu["mfu"] is not None else "n/a (unknown peak; --peak-tflops)"
        print(f"gpu full 512x1024 bf16 on {gpu['device']}: train {gpu['train_images_per_s']:.2f} img/s, "
              f"inference {gpu['infer_images_per_s']:.2f} img/s, MFU {mfu}")
    else:
        gpu = {"measured": False, "reason": "no CUDA device on this machine"}
        print("gpu full model: unmeasured (no CUDA device on this machine)")
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "load_avg_1m": os.getloadavg()[0]},
        "note": "min over reps after one warm-up; batch 1; random weights; loss share = DapLoss "
                "forward+backward on detached outputs / full training step, same run",
        "cpu": cpu,
        "gpu": gpu,
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
