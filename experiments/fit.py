"""Can the profile's network fit a handful of labelled panoramas at the profile's budget? The
profile's model and `DapLoss`, trained on N fixed labelled train panoramas (the first frame of the
first N sequences, unaugmented, at the training height) for `--steps` steps of batch
`train.batch_size` with AdamW at one learning rate and the trainer's gradient clip; every fifth of
the run, the per-image AbsRel on those same N images (eval mode, and with batch-statistics BN)
and the mean training loss of the last 20 steps. A network that cannot memorise 16 panoramas in
the steps a stage gets is limited by optimisation, not by what the labelled set teaches.

A minimal loop of its own, not `dap_model.training`: the product trainer streams shards with
augmentation, which is what this experiment leaves out. `--network unet-bn|unet-gn` trains a
reference instead: a plain 4-level UNet (widths 32-256, BatchNorm or GroupNorm, 2.0M parameters)
whose output is log depth, with an L1 loss on log depth — how fast an ordinary network fits the
same images at the same batch.

    python -m experiments.fit --profile tiny --data DIR [--n 16] [--steps 300] [--lr 1e-3]
        [--network profile|unet-bn|unet-gn] [--set KEY=VALUE ...] [--name NAME]

DIR is a store with a labelled set (`labeled/`), e.g. an `experiments.backbones` project's
`data/`. Appends a row to .cache/experiments/fit/<NAME>.json (`--out`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from experiments.common import CACHE


def reference_unet(norm):
    """A plain UNet on [B,3,H,W] in [0,1] (H, W multiples of 8): 4 levels of two 3x3 conv-norm-ReLU,
    max-pool down, bilinear up with skip concatenation; returns {"depth": exp(1x1 conv + 1)} [B,1,H,W]."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), norm(cout), nn.ReLU(),
                             nn.Conv2d(cout, cout, 3, padding=1), norm(cout), nn.ReLU())

    class UNet(nn.Module):
        def __init__(self, widths=(32, 64, 128, 256)):
            super().__init__()
            self.enc = nn.ModuleList([block(3, widths[0])] + [block(widths[i], widths[i + 1]) for i in range(3)])
            self.dec = nn.ModuleList([block(widths[i + 1] + widths[i], widths[i]) for i in range(3)])
            self.out = nn.Conv2d(widths[0], 1, 1)

        def forward(self, x):
            x = (x - 0.45) / 0.25
            skips = []
            for i, enc in enumerate(self.enc):
                x = enc(x if i == 0 else F.max_pool2d(x, 2))  # [B,w_i,H/2^i,W/2^i]
                skips.append(x)
            for i in reversed(range(3)):
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
                x = self.dec[i](torch.cat([x, skips[i]], 1))  # [B,w_i,H/2^i,W/2^i]
            return {"depth": torch.exp(self.out(x) + 1.0)}  # [B,1,H,W] metres

    return UNet()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--network", default="profile", choices=("profile", "unet-bn", "unet-gn"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--name", default="fit")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default .cache/experiments/fit/<NAME>.json)")
    args = ap.parse_args()

    import numpy as np
    import torch

    from dap_model.accel import apply_cpu_threads
    from dap_model.config import load_config
    from dap_model.data.samples import iter_eval_batches
    from dap_model.evaluation.metrics import depth_metrics
    from dap_model.losses import DapLoss
    from dap_model.models import build_model
    from dap_model.storage import LocalStore
    from dap_model.training.stages import fetch_all, split_shard_keys

    cfg = load_config(args.profile, args.overrides)
    apply_cpu_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    store = LocalStore(args.data)
    xs, gts, keys, seen = [], [], [], set()
    for batch in iter_eval_batches(fetch_all(store, split_shard_keys(store, "labeled", "train")), cfg.train.height, 4):
        for key, x, gt, meta in zip(batch["keys"], batch["rgb"], batch["gts"], batch["metas"]):
            seq = (meta or {}).get("sequence", key)
            if seq not in seen and len(keys) < args.n:  # one frame per sequence
                seen.add(seq)
                xs.append(x)
                gts.append(torch.from_numpy(gt)[None])
                keys.append(key)
        if len(keys) == args.n:
            break
    if not keys:
        raise SystemExit(f"{args.data}: no labelled train panoramas")
    x_all = torch.stack(xs)  # [N,3,h,2h]
    gt_all = torch.nn.functional.interpolate(torch.stack(gts), size=x_all.shape[-2:], mode="nearest")  # [N,1,h,2h]
    if args.network == "profile":
        model = build_model(cfg.model)
        dap_loss = DapLoss.from_config(cfg)
        loss_fn = lambda out, gt: dap_loss(out, gt)[0]  # noqa: E731
    else:
        model = reference_unet(torch.nn.BatchNorm2d if args.network == "unet-bn" else lambda c: torch.nn.GroupNorm(8, c))

        def loss_fn(out, gt):
            valid = (gt > 0) & (gt <= cfg.model.max_depth_m)
            return (out["depth"].clamp_min(1e-3).log() - gt.clamp_min(1e-3).log())[valid].abs().mean()
    opt = torch.optim.AdamW(model.parameters(), args.lr)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

    def fit_abs_rel(batch_stats: bool) -> float:
        model.train(batch_stats)
        saved = [b.momentum for b in bns]
        for b in bns:
            b.momentum = 0.0  # batch statistics without moving the running ones
        with torch.no_grad():
            pred = torch.cat([model(x_all[i:i + 4])["depth"] for i in range(0, len(keys), 4)])  # [N,1,h,2h]
        for b, m in zip(bns, saved):
            b.momentum = m
        model.train()
        return float(np.mean([depth_metrics(pred[i, 0], gt_all[i, 0])["abs_rel"] for i in range(len(keys))]))

    curve, losses, skipped, t0 = [], [], 0, time.perf_counter()
    gen = torch.Generator().manual_seed(cfg.train.seed)
    for step in range(1, args.steps + 1):
        idx = torch.randperm(len(keys), generator=gen)[: cfg.train.batch_size]
        loss = loss_fn(model(x_all[idx]), gt_all[idx])
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip or float("inf"))
        if torch.isfinite(norm):  # as the trainer: a non-finite gradient skips the update
            opt.step()
        else:
            skipped += 1
        losses.append(float(loss.detach()))
        if step % max(1, args.steps // 5) == 0:
            row = {"step": step, "fit_abs_rel": fit_abs_rel(False), "fit_abs_rel_batch_bn": fit_abs_rel(True),
                   "loss_last20": float(np.mean(losses[-20:])), "skipped_steps": skipped, "seconds": time.perf_counter() - t0}
            curve.append(row)
            print(json.dumps(row), flush=True)
    out_file = args.out or CACHE / "fit" / f"{args.name}.json"
    out_file.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(out_file.read_text()) if out_file.exists() else []
    rows.append({"profile": args.profile, "network": args.network, "overrides": args.overrides, "n": args.n, "steps": args.steps,
                 "lr": args.lr, "keys": keys, "curve": curve})
    tmp = out_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    tmp.replace(out_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
