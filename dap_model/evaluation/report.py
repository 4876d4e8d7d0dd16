"""The benchmark report: every model × every configured benchmark, metrics onto each model's
MLflow run (`EvalResult.flat`: `<benchmark>/<metric>`, `<benchmark>/abs_rel_aligned`,
`<benchmark>/<kind>/abs_rel`, range bins, `<benchmark>/<folder>/<metric>` for `by_folder`
benchmarks), the champion gate, Markdown + HTML with figures. The baselines — constant depths
(`eval.baseline_depths_m`, `baseline.ConstantDepthModel`) and per-latitude priors fitted on the
labelled train split (`eval.baseline_row_priors`, `baseline.RowPriorModel`) — go through the same
evaluation and appear as rows beside the models; they are neither logged nor gated.

    reports/<label>/report.md, report.html, metrics.json, figures/*.png      (label = run id or time)
    reports/latest -> <label>
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dap_model.config import DapConfig, project_dir
from dap_model.errors import InputError
from dap_model.evaluation.evaluate import EvalResult, FigureSample, evaluate, json_safe
from dap_model.evaluation.gate import GateResult, champion_gate
from dap_model.evaluation.metrics import METRIC_NAMES
from dap_model.evaluation.runs import ModelEntry, champion_entry

# DAP's published zero-shot numbers (AbsRel, δ1) by reader format, for reference (docs/evaluation.md).
PUBLISHED: dict[str, tuple[str, float, float]] = {
    "stanford2d3d": ("Stanford2D3D", 0.0921, 0.9135),
    "matterport3d": ("Matterport3D", 0.1186, 0.8518),
    "matterport3d_png": ("Matterport3D", 0.1186, 0.8518),
    "deep360": ("Deep360", 0.0659, 0.9525),
    "airsim360": ("DAP-Test", 0.0781, 0.9370),
}


@dataclass
class ReportResult:
    folder: Path
    markdown: Path
    html: Path
    results: dict[str, dict[str, EvalResult]]  # model name -> benchmark -> result
    skipped: dict[str, str]  # benchmark -> reason
    gate: GateResult
    logged_runs: list[str]


def configured_benchmarks(cfg: DapConfig, store) -> tuple[dict[str, Any], dict[str, str]]:
    """Readers of `eval.benchmarks` that can be read, and the reasons for the others.

    A benchmark whose root is empty and whose format is not `shards` is not configured; one
    whose files are missing (e.g. `web_test` before the web split exists, a local root that does
    not exist) is skipped with the reader's message. A relative local root is taken relative to
    the project folder. Misconfigured formats are errors."""
    from dap_model.benchmarks import open_benchmark, reader_class
    from dap_model.errors import DapError

    readers: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name, spec in cfg.eval.benchmarks.items():
        reader_class(spec.format)  # unknown format: a config error, not a skip
        if not spec.root and spec.format != "shards":
            skipped[name] = "no root configured"
            continue
        root = spec.root
        if root and not root.startswith("s3://") and not Path(root).expanduser().is_absolute():
            root = str(project_dir() / root)
        try:
            reader = open_benchmark(spec.format, root, store=None if root else store,
                                    endpoint_url=cfg.storage.endpoint_url, pattern=spec.pattern)
            reader.items()
        except DapError as err:
            skipped[name] = str(err)
            continue
        readers[name] = reader
    return readers, skipped


def evaluate_models(cfg: DapConfig, models: list[ModelEntry], readers: dict[str, Any],
                    figure_for: set[str] = frozenset(), log=print,
                    skipped: dict[str, str] | None = None) -> dict[str, dict[str, EvalResult]]:
    """model name -> benchmark -> result. A benchmark that has no sample with ground truth is
    dropped (reason in `skipped`); a model that cannot be loaded raises."""
    from dap_model.accel import resolve_device
    from dap_model.inference import load_checkpoint

    device = resolve_device(cfg.eval.device)
    readers = dict(readers)
    skipped = skipped if skipped is not None else {}
    out: dict[str, dict[str, EvalResult]] = {}
    for m in models:
        model = load_checkpoint(m.checkpoint, cfg, device)
        _evaluate_one(cfg, m.name, model, readers, out, skipped, device,
                      cfg.eval.figure_samples if m.name in figure_for else 0, log)
        del model
    return out


def evaluate_baselines(cfg: DapConfig, readers: dict[str, Any], log=print,
                       skipped: dict[str, str] | None = None, store=None) -> dict[str, dict[str, EvalResult]]:
    """`constant <d> m` -> benchmark -> result for each of `eval.baseline_depths_m`; with `store`,
    also `row prior <domain>` for each of `eval.baseline_row_priors` (fitted on its labelled train
    split; a domain without labelled depth there is left out with a logged reason)."""
    from dap_model.accel import resolve_device
    from dap_model.evaluation.baseline import ConstantDepthModel

    device = resolve_device(cfg.eval.device)
    readers = dict(readers)
    skipped = skipped if skipped is not None else {}
    out: dict[str, dict[str, EvalResult]] = {}
    models = [ConstantDepthModel(d) for d in cfg.eval.baseline_depths_m]
    if store is not None and cfg.eval.baseline_row_priors:
        models += row_priors(cfg, store, log)
    for model in models:
        _evaluate_one(cfg, model.name, model, readers, out, skipped, device, 0, log)
    return out


def row_priors(cfg: DapConfig, store, log=print) -> list:
    """`RowPriorModel` per domain of `eval.baseline_row_priors`, fitted with `train.height` bands on
    the depth of the store's labelled train shards whose `domain` is that one (`all`: every one)."""
    from dap_model import layout
    from dap_model.data.samples import split_shard_keys
    from dap_model.data.shards import iter_shards
    from dap_model.evaluation.baseline import RowPriorModel

    wanted = set(cfg.eval.baseline_row_priors)
    depths: dict[str, list] = {d: [] for d in wanted}
    for s in iter_shards(store.fetch(k) for k in split_shard_keys(store, layout.LABELED, "train")):
        if s.depth is None:
            continue
        for d in wanted & {"all", s.meta.get("domain")}:
            depths[d].append(s.depth)
    out = []
    for d in cfg.eval.baseline_row_priors:
        if not depths[d]:
            log(f"row prior {d}: skipped (no labelled train depth of that domain)")
            continue
        out.append(RowPriorModel.fit(depths[d], cfg.train.height, f"row prior {d}", cfg.eval.cap_m))
    return out


def _evaluate_one(cfg: DapConfig, name: str, model, readers: dict[str, Any], out: dict[str, dict[str, EvalResult]],
                  skipped: dict[str, str], device, figure_samples: int, log) -> None:
    """`out[name][bench]` for every reader; a benchmark without ground truth leaves `readers`
    (and every result already in `out`) with its reason in `skipped`."""
    out[name] = {}
    for bench, reader in list(readers.items()):
        spec = cfg.eval.benchmarks.get(bench)
        try:
            res = evaluate(model, reader, cfg, benchmark=bench, device=device, figure_samples=figure_samples,
                           by_folder=bool(spec and spec.by_folder))
        except InputError as err:
            skipped[bench] = str(err)
            del readers[bench]
            for done in out.values():
                done.pop(bench, None)
            log(f"{bench}: skipped ({err})")
            continue
        out[name][bench] = res
        log(f"{name} on {bench}: n={int(res.metrics['n_images'])} abs_rel={res.metrics['abs_rel']:.4f} "
            f"abs_rel_aligned={res.aligned.get('abs_rel', float('nan')):.4f} "
            f"delta1={res.metrics['delta1']:.4f} ({res.seconds:.1f}s)")


# ---------------------------------------------------------------------------------------------
# Markdown / HTML


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def _md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_fmt(v) for v in row.tolist()) + " |")
    return "\n".join(lines)


def metric_table(results: dict[str, dict[str, EvalResult]], models: list[ModelEntry], cfg: DapConfig) -> pd.DataFrame:
    """One row per (benchmark, model) — and per (benchmark/folder, model) for `by_folder`
    benchmarks — with the scale-aligned AbsRel beside the metric AbsRel, plus DAP's published
    reference where the format has one. Rows of predictors that are not in `models` (the
    constant-depth baselines) have stage `baseline`."""
    rows = []
    by_name = {m.name: m for m in models}
    benches = sorted({b for r in results.values() for b in r})

    def row(bench: str, name: str, r: EvalResult) -> dict[str, Any]:
        m, e = r.metrics, by_name.get(name)
        return {"benchmark": bench, "model": name, "stage": e.stage if e else "baseline",
                "version": (e.version or "") if e else "", "n_images": int(m["n_images"]),
                "abs_rel": m["abs_rel"], "abs_rel_aligned": r.aligned.get("abs_rel", float("nan")),
                **{k: m[k] for k in METRIC_NAMES if k != "abs_rel"}}

    for bench in benches:
        for name, per in results.items():
            if bench in per:
                rows.append(row(bench, name, per[bench]))
        groups = sorted({g for per in results.values() if bench in per for g in per[bench].groups})
        for g in groups:
            for name, per in results.items():
                if bench in per and g in per[bench].groups:
                    rows.append(row(f"{bench}/{g}", name, per[bench].groups[g]))
        fmt = cfg.eval.benchmarks[bench].format if bench in cfg.eval.benchmarks else ""
        if fmt in PUBLISHED:
            label, absrel, d1 = PUBLISHED[fmt]
            rows.append({"benchmark": bench, "model": f"DAP (published, {label})", "stage": "reference",
                         "version": "", "n_images": "", "abs_rel": absrel, "abs_rel_aligned": float("nan"),
                         **{k: float("nan") for k in METRIC_NAMES if k != "abs_rel"}, "delta1": d1})
    return pd.DataFrame(rows)


def range_table(results: dict[str, dict[str, EvalResult]]) -> pd.DataFrame:
    rows = []
    for name, per in results.items():
        for bench, r in sorted(per.items()):
            for rng, m in r.range_bins.items():
                rows.append({"benchmark": bench, "model": name, "range_m": rng, "n_pixels": int(m["n_pixels"]),
                             "abs_rel": m["abs_rel"], "rmse": m["rmse"], "mae": m["mae"], "delta1": m["delta1"]})
    return pd.DataFrame(rows)


def published_table() -> pd.DataFrame:
    seen, rows = set(), []
    for fmt, (label, a, d) in PUBLISHED.items():
        if label not in seen:
            seen.add(label)
            rows.append({"benchmark (DAP paper)": label, "reader format": fmt, "abs_rel": a, "delta1": d})
    return pd.DataFrame(rows)


def figure(sample: FigureSample, cfg: DapConfig, title: str, path: Path) -> Path:
    """RGB | ground truth | prediction | absolute relative error of one sample (PNG)."""
    from dap_model.evaluation.figures import sample_figure

    return sample_figure(sample.rgb, sample.gt, sample.pred, path, title, cap_m=cfg.eval.cap_m,
                         cmap=cfg.eval.colormap, error_cmap=cfg.eval.error_colormap, vmax=cfg.eval.colour_max_m)


def breakdown_table(results: dict[str, dict[str, EvalResult]]) -> pd.DataFrame:
    """Per (benchmark, model): scale-aligned AbsRel and δ1, and AbsRel per scene kind."""
    rows = []
    for name, per in results.items():
        for bench, r in sorted(per.items()):
            rows.append({"benchmark": bench, "model": name, "scene kind": "all", "n_images": int(r.metrics["n_images"]),
                         "abs_rel": r.metrics["abs_rel"], "abs_rel_aligned": r.aligned.get("abs_rel", float("nan")),
                         "median_log_ratio": float("nan")})
            for kind, d in r.by_kind.items():
                rows.append({"benchmark": bench, "model": name, "scene kind": kind, "n_images": int(d["n"]),
                             "abs_rel": d["abs_rel"], "abs_rel_aligned": d["abs_rel_aligned"],
                             "median_log_ratio": d["median_log_ratio"]})
    return pd.DataFrame(rows)


def _html_page(title: str, sections: list[tuple[str, str]]) -> str:
    body = "\n".join(f"<h2>{html.escape(h)}</h2>\n{content}" for h, content in sections)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;"
        "text-align:right}img{max-width:100%}.fail{color:#b00}.ok{color:#070}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def _html_table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, na_rep="—", float_format=lambda v: f"{v:.4f}", border=0)


def write_report(
    cfg: DapConfig,
    label: str,
    models: list[ModelEntry],
    results: dict[str, dict[str, EvalResult]],
    skipped: dict[str, str],
    gate: GateResult,
    comparison: pd.DataFrame | None,
    final: str,
    reports_dir: Path | None = None,
) -> tuple[Path, Path, Path]:
    """Write `reports/<label>/` atomically (a temporary folder renamed into place) and point
    `reports/latest` at it. Returns (folder, report.md, report.html)."""
    from dap_model.evaluation.compare import plot_comparison

    root = Path(reports_dir) if reports_dir else project_dir() / "reports"
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{label}.", suffix=".tmp", dir=root))
    try:
        figs = tmp / "figures"
        figs.mkdir()
        fig_paths: list[tuple[str, str]] = []
        for bench, r in sorted(results.get(final, {}).items()):
            for i, s in enumerate(r.figures):
                name = f"{bench}-{i}.png"
                figure(s, cfg, f"{final} · {bench} · {s.key}", figs / name)
                fig_paths.append((bench, f"figures/{name}"))
        cmp_png = None
        if comparison is not None and not comparison.empty:
            cmp_png = plot_comparison(comparison, figs / "comparison.png")
        mt, rt, pt = metric_table(results, models, cfg), range_table(results), published_table()
        bt = breakdown_table(results)
        model_df = pd.DataFrame([{"model": m.name, "stage": m.stage, "version": m.version or "",
                                  "mlflow run": m.run_id or "", "checkpoint": m.checkpoint} for m in models])
        gate_rows = pd.DataFrame(gate.rows) if gate.rows else pd.DataFrame()
        status = "PASSED" if gate.passed else "FAILED"
        gate_text = (f"Champion gate ({gate.metric}, tolerance {cfg.eval.regression_tolerance:.1%}): **{status}** — "
                     f"{gate.message}. Champion before: {gate.champion_version or 'none'}; new model version: "
                     f"{gate.new_version or 'not registered'}; alias moved: {'yes' if gate.promote else 'no'}.")
        skipped_df = pd.DataFrame([{"benchmark": k, "reason": v} for k, v in sorted(skipped.items())])
        title = f"DAP benchmark report {label}"
        md = [f"# {title}", "",
              f"Profile `{cfg.profile}`, config digest `{cfg.digest()}`, cap {cfg.eval.cap_m:g} m, metrics "
              "per image averaged over images (DAP's protocol; RMSE is the true root-mean-square error, MAE separate).",
              "", "## Models", "", _md_table(model_df), "",
              "## Metrics (abs_rel_aligned: after median scale alignment; constant-depth and row-prior baselines and DAP's published numbers for reference)", "", _md_table(mt), "",
              "## Champion gate", "", gate_text, ""]
        if not gate_rows.empty:
            md += [_md_table(gate_rows), ""]
        md += ["## Scale-aligned error and scene kinds (prediction scaled by median(gt) / median(pred); "
               "median log(pred / gt) > 0: too far)", "", _md_table(bt), ""]
        md += ["## Range-binned errors (pixels pooled per ground-truth range)", "", _md_table(rt), ""]
        if comparison is not None and not comparison.empty:
            md += ["## MLflow runs side by side", "", _md_table(comparison.reset_index()), "",
                   "![comparison](figures/comparison.png)", ""]
        if not skipped_df.empty:
            md += ["## Benchmarks not evaluated", "", _md_table(skipped_df), ""]
        md += ["## DAP's published zero-shot numbers", "", _md_table(pt), ""]
        if fig_paths:
            md += [f"## Samples ({final}): RGB | ground truth | prediction | error", ""]
            md += [f"![{b}]({p})" for b, p in fig_paths] + [""]
        (tmp / "report.md").write_text("\n".join(md))
        sections = [
            ("Models", _html_table(model_df)),
            ("Metrics (abs_rel_aligned: after median scale alignment; constant-depth and row-prior baselines and DAP's published numbers for reference)", _html_table(mt)),
            ("Champion gate", f"<p class='{'ok' if gate.passed else 'fail'}'>{html.escape(gate_text.replace('**', ''))}</p>"
             + (_html_table(gate_rows) if not gate_rows.empty else "")),
            ("Scale-aligned error and scene kinds", _html_table(bt)),
            ("Range-binned errors", _html_table(rt)),
        ]
        if cmp_png is not None:
            sections.append(("MLflow runs side by side", comparison.reset_index().to_html(index=False, na_rep="—",
                             float_format=lambda v: f"{v:.4f}", border=0) + "<img src='figures/comparison.png'>"))
        if not skipped_df.empty:
            sections.append(("Benchmarks not evaluated", _html_table(skipped_df)))
        sections.append(("DAP's published zero-shot numbers", _html_table(pt)))
        if fig_paths:
            sections.append((f"Samples ({final})", "".join(
                f"<p>{html.escape(b)}</p><img src='{html.escape(p)}'>" for b, p in fig_paths)))
        (tmp / "report.html").write_text(_html_page(title, sections))
        summary = {
            "label": label,
            "results": {n: {b: r.summary() for b, r in per.items()} for n, per in results.items()},
            "skipped": skipped,
            "gate": {k: v for k, v in gate.__dict__.items()},
            "models": [m.__dict__ for m in models],
        }
        (tmp / "metrics.json").write_text(json.dumps(json_safe(summary), indent=2, default=str, allow_nan=False))
        for f in [tmp, figs, *tmp.rglob("*")]:  # mkdtemp/mkstemp create owner-only modes
            os.chmod(f, 0o755 if f.is_dir() else 0o644)
        final_dir = root / label
        if final_dir.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{label}.old.", suffix=".tmp", dir=root))
            os.replace(final_dir, trash / label)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, final_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    latest = root / "latest"
    link_tmp = root / f".latest.{os.getpid()}.tmp"
    link_tmp.unlink(missing_ok=True)
    os.symlink(label, link_tmp)
    if latest.is_dir() and not latest.is_symlink():
        shutil.rmtree(latest)
    os.replace(link_tmp, latest)
    return final_dir, final_dir / "report.md", final_dir / "report.html"


def run_benchmark_report(
    cfg: DapConfig,
    store,
    models: list[ModelEntry],
    *,
    final: str,
    label: str = "",
    pipeline_run: str | None = None,
    log=print,
) -> ReportResult:
    """Evaluate `models` (and the current champion) on every configured benchmark, log each
    model's metrics onto its training run, decide the champion gate, move the alias when the
    final model is better, write the report."""
    import mlflow

    from dap_model.evaluation.compare import comparison_table, fetch_runs
    from dap_model.errors import DapError
    from dap_model.tracking import log_metrics_to_run, set_alias, setup_mlflow

    setup_mlflow(cfg.mlflow)
    if final not in {m.name for m in models}:
        raise InputError(f"final model {final!r} is not among {[m.name for m in models]}")
    readers, skipped = configured_benchmarks(cfg, store)
    for bench, why in sorted(skipped.items()):
        log(f"{bench}: skipped ({why})")
    if not readers:
        raise InputError("no benchmark could be read: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    final_entry = next(m for m in models if m.name == final)
    champ = champion_entry(cfg)
    all_models = list(models)
    if champ is not None and champ.version != final_entry.version:
        all_models.append(champ)
    results = evaluate_models(cfg, models, readers, figure_for={final}, log=log, skipped=skipped)
    readers = {b: r for b, r in readers.items() if b in results[final]}
    if not readers:
        raise InputError("no benchmark has ground truth: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    champ_error = None
    if champ is not None and champ in all_models:
        try:
            results.update(evaluate_models(cfg, [champ], readers, log=log, skipped=skipped))
        except DapError as err:
            champ_error = f"the champion (version {champ.version}) could not be evaluated: {err}"
            all_models.remove(champ)
            log(champ_error)
    results.update(evaluate_baselines(cfg, readers, log=log, skipped=skipped, store=store))
    logged = []
    for m in models:
        if m.run_id:
            log_metrics_to_run(cfg, m.run_id, {k: v for r in results[m.name].values() for k, v in r.flat().items()})
            logged.append(m.run_id)
    gate = champion_gate(cfg, results[final], results.get("champion") if champ else None,
                         final_entry.version, champ.version if champ else None)
    if champ_error:
        gate = GateResult(False, False, champ.version, final_entry.version, cfg.eval.primary_metric,
                          message=champ_error + "; alias unchanged (move it by hand if intended)")
    if gate.promote and final_entry.version:
        set_alias(cfg, final_entry.version)
    comparison = None
    try:
        ids = [m.run_id for m in all_models if m.run_id]
        if ids:
            comparison = comparison_table(fetch_runs(cfg, run_ids=list(dict.fromkeys(ids))), (cfg.eval.primary_metric, "delta1"))
    except InputError as err:
        log(f"comparison skipped: {err}")
    label = label or time.strftime("%Y%m%d-%H%M%S")
    folder, md, page = write_report(cfg, label, all_models, results, skipped, gate, comparison, final)
    if final_entry.run_id:
        mlflow.MlflowClient().log_artifacts(final_entry.run_id, str(folder), "benchmark_report")
    return ReportResult(folder, md, page, results, skipped, gate, logged)


