"""`dap train --stage stage1 ...`: one training, resumable (also under torchrun)."""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "train one stage (stage1 | stage2 | stage3) from the data store; resumes from its last checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dap_model.training.launch import add_arguments as add

    add(p)


def run(args: argparse.Namespace) -> int:
    from dap_model.training.launch import run_args

    return run_args(args)
