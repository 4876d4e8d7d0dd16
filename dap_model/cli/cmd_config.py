"""`dap config`: print the fully resolved config of a profile with overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

from dap_model.cli import add_config_arguments, config_from_args

NAME = "config"
HELP = "print (or write) the fully resolved config for a profile and overrides"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--out", type=Path, default=None, help="write config.resolved.yaml into this folder")


def run(args: argparse.Namespace) -> int:
    from dap_model.config import write_resolved_config

    cfg = config_from_args(args)
    if args.out:
        print(write_resolved_config(cfg, args.out))
    else:
        print(cfg.to_yaml(), end="")
    return 0
