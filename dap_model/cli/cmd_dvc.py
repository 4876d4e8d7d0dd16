"""`dap dvc params|hash|remote`: DVC's view of the pipeline (DVC itself runs from `.venv-dvc`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dap_model.cli import add_config_arguments, config_from_args

NAME = "dvc"
HELP = "params.yaml from a profile, DVC hashes of outputs, the DVC S3 remote from the dvc.* knobs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="dvc_command", metavar="ACTION", required=True)
    params = sub.add_parser("params", help="write the resolved config as DVC's params.yaml")
    add_config_arguments(params)
    params.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")
    params.add_argument("--check", action="store_true", help="exit 1 if --out differs instead of writing it")
    h = sub.add_parser("hash", help="print the md5 DVC records for files or folders")
    h.add_argument("paths", nargs="+", type=Path)
    remote = sub.add_parser("remote", help="set the default DVC remote from dvc.remote_url / endpoint_url")
    add_config_arguments(remote)


def run(args: argparse.Namespace) -> int:
    from dap_model.versioning import configure_remote, dvc_hash, params_yaml

    if args.dvc_command == "hash":
        for path in args.paths:
            print(f"{dvc_hash(path)}  {path}")
        return 0
    cfg = config_from_args(args)
    if args.dvc_command == "remote":
        print(configure_remote(cfg.dvc, cfg.storage))
        return 0
    text = params_yaml(cfg)
    if args.out is None:
        print(text, end="")
        return 0
    if args.check:
        current = args.out.read_text() if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is out of date: run `dap dvc params --profile {cfg.profile} --out {args.out}`")
            return 1
        return 0
    from dap_model.io import atomic_write_text

    atomic_write_text(args.out, text)
    print(args.out)
    return 0
