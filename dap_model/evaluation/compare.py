"""MLflow runs side by side: benchmark metrics (`<benchmark>/<metric>`) per training run, as a
table (`dap compare`, the report) and a grouped bar plot."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from dap_model.config import DapConfig
from dap_model.errors import InputError
from dap_model.evaluation.metrics import LOWER_IS_BETTER
from dap_model.evaluation.figures import save_png


def fetch_runs(
    cfg: DapConfig,
    *,
    experiment: str | None = None,
    stages: Sequence[str] = (),
    run_ids: Sequence[str] = (),
    pipeline_run: str | None = None,
) -> pd.DataFrame:
    """One row per run: `run_id, run_name, stage, pipeline_run, start_time` and every metric
    (`web_test/abs_rel`, ...). Explicit `run_ids` win over the experiment/stage filters."""
    import mlflow
    from mlflow import MlflowClient

    from dap_model.tracking import PIPELINE_TAG, STAGE_TAG, resolve_tracking_uri

    uri = resolve_tracking_uri(cfg.mlflow)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise InputError(f"no MLflow tracking store at {uri} (set MLFLOW_TRACKING_URI or mlflow.tracking_uri)")
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    if run_ids:
        runs = []
        for rid in run_ids:
            try:
                runs.append(client.get_run(rid))
            except Exception:
                raise InputError(f"run {rid!r} not found in the MLflow store {uri}") from None
    else:
        name = experiment or cfg.mlflow.experiment
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise InputError(f"experiment {name!r} not found in the MLflow store {uri}")
        clauses = []
        if pipeline_run:
            clauses.append(f"tags.`{PIPELINE_TAG}` = '{pipeline_run}'")
        runs = []
        for st in stages or [None]:
            flt = " and ".join(clauses + ([f"tags.`{STAGE_TAG}` = '{st}'"] if st else []))
            runs.extend(client.search_runs([exp.experiment_id], filter_string=flt, order_by=["attributes.start_time ASC"]))
    rows = []
    for r in runs:
        rows.append({
            "run_id": r.info.run_id,
            "run_name": r.info.run_name or "",
            "stage": r.data.tags.get(STAGE_TAG, ""),
            "pipeline_run": r.data.tags.get(PIPELINE_TAG, ""),
            "start_time": pd.to_datetime(r.info.start_time, unit="ms"),
            **{k: float(v) for k, v in r.data.metrics.items()},
        })
    if not rows:
        raise InputError("no MLflow runs match the selection")
    return pd.DataFrame(rows)


def benchmark_columns(df: pd.DataFrame, metrics: Iterable[str]) -> list[str]:
    """`<benchmark>/<metric>` columns of `df` for the given metrics, benchmark-major order."""
    metrics = list(metrics)
    cols = [c for c in df.columns if "/" in c and c.split("/", 1)[1] in metrics]
    return sorted(cols, key=lambda c: (c.split("/", 1)[0], metrics.index(c.split("/", 1)[1])))


def comparison_table(df: pd.DataFrame, metrics: Sequence[str] = ("abs_rel", "delta1")) -> pd.DataFrame:
    """Runs as rows (label `stage · run name · run id[:8]`), `<benchmark>/<metric>` as columns."""
    cols = benchmark_columns(df, metrics)
    if not cols:
        raise InputError(f"the selected runs have no benchmark metrics {', '.join(metrics)} (run benchmark_report first)")
    label = df["stage"].where(df["stage"] != "", "-") + " · " + df["run_name"] + " · " + df["run_id"].str[:8]
    return df.set_index(label.rename("run"))[cols]


def print_table(table: pd.DataFrame) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="benchmark metrics per run")
    t.add_column("run", no_wrap=True)
    for c in table.columns:
        t.add_column(c, justify="right", no_wrap=True)
    for idx, row in table.iterrows():
        t.add_row(str(idx), *("—" if pd.isna(v) else f"{v:.4f}" for v in row))
    Console(width=max(100, 48 + 24 * len(table.columns))).print(t)


def plot_comparison(table: pd.DataFrame, path: str | Path) -> Path:
    """Grouped bars: one panel per metric, benchmarks on the x axis, one bar per run (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = list(dict.fromkeys(c.split("/", 1)[1] for c in table.columns))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        cols = [c for c in table.columns if c.split("/", 1)[1] == metric]
        benches = [c.split("/", 1)[0] for c in cols]
        x = np.arange(len(cols))
        width = 0.8 / max(1, len(table))
        for i, (run, row) in enumerate(table[cols].iterrows()):
            ax.bar(x + i * width - 0.4 + width / 2, row.to_numpy(dtype=float), width, label=str(run))
        ax.set_xticks(x, benches, rotation=20)
        ax.set_title(f"{metric} ({'lower' if metric in LOWER_IS_BETTER else 'higher'} is better)")
    axes[0][0].legend(fontsize=7, loc="best")
    return save_png(fig, path, dpi=110)
