"""Trainer speed on this machine: optimiser steps/s, streaming-loader samples/s (decode +
augment), checkpoint write and resume-load time, for the `test` and `tiny` networks on the
trainer's analytic box-room store; and the optimiser update alone, the fused Adam kernel the
trainer uses against torch's per-tensor loop, on the same network and gradients. Writes
benchmarks/results/training.json.

    python benchmarks/bench_training.py [--steps 20] [--profiles test tiny]"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def optimizer_step_ms(model, cfg, repeats: int = 20) -> dict:
    """Milliseconds per Adam update of `model` (random gradients): fused kernel vs per-tensor loop."""
    import torch

    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    out = {}
    for name, kw in (("per_tensor", {"foreach": False}), ("fused", {"fused": True})):
        opt = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.train.optimizer](
            model.param_groups(cfg.train.lr_backbone, cfg.train.lr_decoder), **kw)
        for _ in range(3):
            opt.step()
        t = time.perf_counter()
        for _ in range(repeats):
            opt.step()
        out[name] = round((time.perf_counter() - t) / repeats * 1000, 2)
    out["fused_speedup"] = round(out["per_tensor"] / out["fused"], 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--profiles", nargs="+", default=["test", "tiny"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "training.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-training-"))
    os.environ["DAP_PROJECT_DIR"] = str(tmp)
    import torch

    from dap_model.config import load_config
    from dap_model.storage import LocalStore
    from dap_model.training import checkpoint as ckpt
    from dap_model.training.data import Augment, BatchLoader, ShardStream
    from dap_model.training.stages import stage_inputs
    from dap_model.training.trainer import train
    from tests.training_data import build_store

    results = {"machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                           "cuda": torch.cuda.is_available(), "python": platform.python_version()},
               "note": "CPU only; GPU figures unmeasured (no GPU lent)", "profiles": {}}
    for profile in args.profiles:
        cfg0 = load_config(profile)
        h = cfg0.train.height
        root = build_store(tmp / f"data-{profile}", h=h, n_train=32, n_val=4, shard_size=8)
        store = LocalStore(root)
        inputs = stage_inputs(cfg0, store, "stage1")
        stream = ShardStream(inputs.sources, h, shuffle_buffer=16, aug=Augment.from_config(cfg0.train))
        loader = BatchLoader(stream, cfg0.train.batch_size)
        loader.next_batch()
        t = time.perf_counter()
        n = 0
        while time.perf_counter() - t < 3.0:
            n += len(loader.next_batch()["keys"])
        loader_sps = n / (time.perf_counter() - t)
        run = {}
        for tag, steps in (("warm", 2), ("base", 2), ("long", 2 + args.steps)):  # difference: no start-up/export
            cfg = load_config(profile, [f"train.steps={steps}", f"train.checkpoint_every={steps}",
                                        "train.val_every=100000", "train.log_every=100000", f"train.seed={len(run)}"])
            t = time.perf_counter()
            train(cfg, "stage1", inputs.sources, [], tmp / f"run-{profile}-{tag}", progress=False, log_model=False)
            run[tag] = time.perf_counter() - t
        d = tmp / f"run-{profile}-long" / "checkpoints"
        last = ckpt.latest_checkpoint(d)
        from dap_model.models import build_model, save_model

        model = build_model(cfg0.model)
        state = ckpt.load_trainer_state(last)
        t = time.perf_counter()
        ckpt.save_checkpoint(tmp / f"ck-{profile}", 1, lambda p: save_model(model, p, cfg0.model), state, cfg0, keep=1)
        save_s = time.perf_counter() - t
        t = time.perf_counter()
        ckpt.load_trainer_state(ckpt.latest_checkpoint(tmp / f"ck-{profile}"))
        load_s = time.perf_counter() - t
        step_s = (run["long"] - run["base"]) / args.steps
        results["profiles"][profile] = {
            "backbone": cfg0.model.backbone, "height": h, "batch_size": cfg0.train.batch_size,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "seconds_per_step": round(step_s, 4), "samples_per_s_train": round(cfg0.train.batch_size / step_s, 2),
            "loader_samples_per_s": round(loader_sps, 1), "checkpoint_write_s": round(save_s, 3),
            "trainer_state_load_s": round(load_s, 3),
            "checkpoint_mb": round(sum(f.stat().st_size for f in last.iterdir()) / 2**20, 2),
            "optimizer_step_ms": optimizer_step_ms(model, cfg0),
        }
        print(profile, results["profiles"][profile], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
