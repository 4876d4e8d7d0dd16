"""`dap predict`: metric depth for ERP images."""

from __future__ import annotations

import argparse
from pathlib import Path

from dap_model.cli import add_config_arguments, config_from_args

NAME = "predict"
HELP = "predict metric depth for equirectangular images: <stem>_depth.npy, <stem>_depth.png, [<stem>.ply]"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="model.safetensors, a folder holding one, or an MLflow URI (models:/dap-depth@champion)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument("--ply", action="store_true", help="also write a coloured point cloud <stem>.ply")
    add_config_arguments(p)


def run(args: argparse.Namespace) -> int:
    from dap_model.accel import resolve_device
    from dap_model.inference import load_checkpoint, predict_files, read_image

    cfg = config_from_args(args)
    for p in args.images:  # fail on a missing image before loading the model
        read_image(p)
    device = resolve_device(cfg.eval.device)
    model = load_checkpoint(args.checkpoint, cfg, device)
    for rec in predict_files(model, args.images, args.out, cfg, ply=args.ply, device=device):
        print(" ".join(f"{k}={v}" for k, v in rec.items()))
    return 0
