"""`dap compare`: MLflow runs side by side on the benchmark metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from dap_model.cli import add_config_arguments, config_from_args

NAME = "compare"
HELP = "compare MLflow runs (by experiment, --stage or --run) on <benchmark>/<metric>: table + plot PNG"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", default=None, help="MLflow experiment (default: mlflow.experiment, 'dap')")
    p.add_argument("--stage", action="append", default=[], help="only runs tagged dap.stage=STAGE (repeatable)")
    p.add_argument("--run", action="append", default=[], metavar="ID", help="these run ids (repeatable)")
    p.add_argument("--pipeline-run", default=None, help="only runs of this Dagster run (tag dap.pipeline_run)")
    p.add_argument("--metric", action="append", default=[], help="metrics to show (default: abs_rel, delta1)")
    p.add_argument("--plot", type=Path, default=Path("dap-compare.png"), help="plot PNG (default: ./dap-compare.png)")
    p.add_argument("--csv", type=Path, default=None, help="also write the table as CSV")
    add_config_arguments(p)


def run(args: argparse.Namespace) -> int:
    from dap_model.evaluation.compare import comparison_table, fetch_runs, plot_comparison, print_table
    from dap_model.io import atomic_write_text

    cfg = config_from_args(args)
    df = fetch_runs(cfg, experiment=args.experiment, stages=args.stage, run_ids=args.run, pipeline_run=args.pipeline_run)
    table = comparison_table(df, args.metric or ["abs_rel", "delta1"])
    print_table(table)
    print(f"plot: {plot_comparison(table, args.plot)}")
    if args.csv:
        atomic_write_text(args.csv, table.to_csv())
        print(f"csv: {args.csv}")
    return 0
