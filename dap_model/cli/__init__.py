"""`dap` console script. Each subcommand lives in its own module `dap_model/cli/cmd_<name>.py`
exposing `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`; modules are discovered,
so a subcommand exists exactly when its implementation does."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import logging
import os
import sys
from types import ModuleType

from dap_model.config import add_config_arguments, config_from_args  # noqa: F401 - the subcommands' --profile/--set
from dap_model.errors import DapError


def _commands() -> list[ModuleType]:
    mods = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("cmd_"):
            mods.append(importlib.import_module(f"{__name__}.{info.name}"))
    return sorted(mods, key=lambda m: m.NAME)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dap", description="DAP engine: panoramic metric depth, from data to benchmark."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in _commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow's INFO lines are not the command's output
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        return int(args._run(args) or 0)
    except DapError as err:
        print(f"dap {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dap {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
