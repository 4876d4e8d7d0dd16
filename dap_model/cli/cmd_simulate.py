"""`dap simulate`: procedural AirSim360-style panoramas (RGB + Euclidean depth) into a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from dap_model.cli import add_config_arguments

NAME = "simulate"
HELP = "render procedural panoramas with metric depth in the AirSim360 layout"

_FLAGS = {  # CLI flag dest → SimConfig knob
    "scenes": "sim.scenes",
    "frames": "sim.frames_per_scene",
    "height": "sim.height",
    "kind": "sim.kind",
    "scene": "sim.scene",
    "camera_height": "sim.camera_height_m",
    "seed": "sim.seed",
    "style": "sim.style",
    "weather": "sim.weather",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="output folder: <out>/<sequence>/panorama_<i>.png + erp_distance_<i>.npy")
    p.add_argument("--scenes", type=int, default=None, help="number of sequences (knob sim.scenes)")
    p.add_argument("--frames", type=int, default=None, help="frames per sequence (sim.frames_per_scene)")
    p.add_argument("--height", type=int, default=None, help="panorama height in pixels; width = 2 x height (sim.height)")
    p.add_argument("--kind", choices=["indoor", "outdoor", "mixed"], default=None, help="scene kinds (sim.kind)")
    p.add_argument("--scene", choices=["procedural", "calibration"], default=None,
                   help="calibration: infinite ground plane under an empty sky (sim.scene)")
    p.add_argument("--camera-height", type=float, default=None, metavar="M",
                   help="calibration camera height above the ground, metres (sim.camera_height_m)")
    p.add_argument("--seed", type=int, default=None, help="base seed (sim.seed)")
    p.add_argument("--style", choices=["labeled", "web"], default=None, help="appearance (sim.style)")
    p.add_argument("--weather", choices=["clear", "varied"], default=None,
                   help="labelled style: one clear sky, or time of day / overcast / haze per scene (sim.weather)")
    add_config_arguments(p)


def run(args: argparse.Namespace) -> int:
    from dap_model.config import load_config
    from dap_model.errors import InputError
    from dap_model.sim.airsim360 import simulate

    overrides = list(args.overrides)
    for dest, knob in _FLAGS.items():
        value = getattr(args, dest)
        if value is not None:
            overrides.append(f"{knob}={value}")
    cfg = load_config(args.profile, overrides)
    if args.camera_height is not None and cfg.sim.scene != "calibration":
        raise InputError("--camera-height applies only to --scene calibration")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out}: exists and is not a folder")
    res = simulate(args.out, cfg, progress=lambda msg: print(msg, flush=True))
    print(f"wrote {res.frames} panoramas in {len(res.sequences)} sequences to {res.out} (version {res.version})")
    return 0
