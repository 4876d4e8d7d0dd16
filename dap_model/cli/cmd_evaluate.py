"""`dap evaluate`: metrics of a checkpoint on one benchmark."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dap_model.cli import add_config_arguments

NAME = "evaluate"
HELP = "evaluate a checkpoint on a benchmark (per-image metrics averaged over images) -> JSON"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dap_model.benchmarks import available_formats
    from dap_model.cli.cmd_predict import add_height_argument

    p.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="model.safetensors, a folder holding one, an MLflow URI (models:/dap-depth@champion), "
                   "or DAP's release model.pth")
    add_height_argument(p)
    p.add_argument("--format", required=True, choices=available_formats(), help="benchmark encoding")
    p.add_argument("--root", required=True, help="benchmark folder or s3://bucket/prefix")
    p.add_argument("--pattern", default="", help="shards format: fnmatch pattern of shard keys")
    p.add_argument("--out", required=True, type=Path, metavar="METRICS.json")
    p.add_argument("--save-predictions", type=Path, default=None, metavar="DIR",
                   help="write <stem>_pred.npy (metres, at the ground truth's resolution)")
    add_config_arguments(p)


def run(args: argparse.Namespace) -> int:
    from dap_model.benchmarks import open_benchmark
    from dap_model.cli.cmd_predict import config_with_height
    from dap_model.errors import InputError
    from dap_model.accel import resolve_device
    from dap_model.evaluation.evaluate import evaluate, json_safe
    from dap_model.inference import load_checkpoint
    from dap_model.io import atomic_write_text

    cfg = config_with_height(args)
    if args.out.exists() and args.out.is_dir():
        raise InputError(f"{args.out}: is a folder; --out takes a JSON file name")
    reader = open_benchmark(args.format, args.root, endpoint_url=cfg.storage.endpoint_url, pattern=args.pattern)
    reader.items()  # a missing/empty root fails before the model is loaded
    device = resolve_device(cfg.eval.device)
    model = load_checkpoint(args.checkpoint, cfg, device)
    res = evaluate(model, reader, cfg, benchmark=args.format, save_predictions=args.save_predictions, device=device)
    out = {
        **res.summary(),
        "format": args.format,
        "root": str(args.root),
        "checkpoint": str(args.checkpoint),
        "cap_m": cfg.eval.cap_m,
        "seconds": round(res.seconds, 3),
    }
    atomic_write_text(args.out, json.dumps(json_safe(out), indent=2, allow_nan=False) + "\n")
    m = res.metrics
    print(f"{args.format}: n_images={int(m['n_images'])} abs_rel={m['abs_rel']:.4f} rmse={m['rmse']:.3f} "
          f"delta1={m['delta1']:.4f} -> {args.out}")
    return 0
