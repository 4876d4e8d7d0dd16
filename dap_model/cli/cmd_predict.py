"""`dap predict`: metric depth for ERP images, from a project checkpoint or DAP's release `model.pth`."""

from __future__ import annotations

import argparse
from pathlib import Path

from dap_model.cli import add_config_arguments, config_from_args

NAME = "predict"
HELP = "predict metric depth for equirectangular images: <stem>_depth.npy, <stem>_depth.png, [<stem>.ply]"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="model.safetensors, a folder holding one, an MLflow URI (models:/dap-depth@champion), "
                   "or DAP's release model.pth")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    add_height_argument(p)
    p.add_argument("--raw", action="store_true",
                   help="also write the raw outputs <stem>_pred_depth.npy (depth head, units of model.max_depth_m) "
                   "and <stem>_pred_mask.npy (probability of beyond range)")
    p.add_argument("--ply", action="store_true", help="also write a coloured point cloud <stem>.ply")
    p.add_argument("--normals", action="store_true", help="--ply: add per-point normals (nx, ny, nz)")
    p.add_argument("--max-depth", type=float, default=0.0, metavar="M",
                   help="--ply: leave out points farther than M metres (0 = no cap; the mask rule always applies)")
    p.add_argument("--subsample", type=int, default=1, metavar="K", help="--ply: every K-th row and column")
    add_config_arguments(p)


def add_height_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--height", type=int, default=None, metavar="H",
                   help="inference height (width 2H), rounded to the patch size; default eval.height, which is "
                   "train.height for project checkpoints and each image's own size for DAP's release")


def config_with_height(args: argparse.Namespace):
    """The config of `--profile/--set`, with `--height` as `eval.height`."""
    if args.height is not None:
        args.overrides = [*args.overrides, f"eval.height={args.height}"]
    return config_from_args(args)


def run(args: argparse.Namespace) -> int:
    from dap_model.accel import resolve_device
    from dap_model.inference import load_checkpoint, predict_files, read_panoramas

    cfg = config_with_height(args)
    panoramas = read_panoramas(args.images)  # a bad image fails before the model loads, nothing written
    device = resolve_device(cfg.eval.device)
    model = load_checkpoint(args.checkpoint, cfg, device)
    recs = predict_files(model, panoramas, args.out, cfg, ply=args.ply, device=device, raw=args.raw,
                         normals=args.normals, max_depth_m=args.max_depth, subsample=args.subsample)
    for rec in recs:
        print(" ".join(f"{k}={v}" for k, v in rec.items()))
    return 0
