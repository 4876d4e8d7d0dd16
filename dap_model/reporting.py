"""The benchmark report: every model × every configured benchmark, metrics onto each model's
MLflow run (`<benchmark>/<metric>`), the champion gate, Markdown + HTML with figures.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dap_model.config import DapConfig, project_dir
from dap_model.errors import InputError
from dap_model.evaluation import LOWER_IS_BETTER, EvalResult, FigureSample, better, evaluate, json_safe
from dap_model.metrics import METRIC_NAMES

# DESIGN §6: DAP's published zero-shot numbers (AbsRel, δ1) by reader format, for reference.
PUBLISHED: dict[str, tuple[str, float, float]] = {
    "stanford2d3d": ("Stanford2D3D", 0.0921, 0.9135),
    "matterport3d": ("Matterport3D", 0.1186, 0.8518),
    "matterport3d_png": ("Matterport3D", 0.1186, 0.8518),
    "deep360": ("Deep360", 0.0659, 0.9525),
    "airsim360": ("DAP-Test", 0.0781, 0.9370),
}


@dataclass
class ModelEntry:
    name: str  # "scene_invariant_labeler", ..., "champion"
    stage: str  # "stage1" | "stage2" | "stage3" | "champion"
    checkpoint: str  # local file/folder or MLflow model URI
    run_id: str | None = None  # the model's training run (metrics are logged onto it)
    version: str | None = None  # registered version of `mlflow.registered_model`


@dataclass
class GateResult:
    passed: bool
    promote: bool
    champion_version: str | None
    new_version: str | None
    metric: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # per benchmark: new, champion, change
    message: str = ""


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
    whose files are missing (e.g. `web_test` before the web split exists) is skipped with the
    reader's message. Misconfigured formats are errors."""
    from dap_model.benchmarks import open_benchmark, reader_class
    from dap_model.errors import DapError

    readers: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name, spec in cfg.eval.benchmarks.items():
        reader_class(spec.format)  # unknown format: a config error, not a skip
        if not spec.root and spec.format != "shards":
            skipped[name] = "no root configured"
            continue
        try:
            reader = open_benchmark(spec.format, spec.root, store=None if spec.root else store,
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
    from dap_model.inference import load_checkpoint, pick_device

    device = pick_device(cfg.eval.device)
    readers = dict(readers)
    skipped = skipped if skipped is not None else {}
    out: dict[str, dict[str, EvalResult]] = {}
    for m in models:
        model = load_checkpoint(m.checkpoint, cfg, device)
        out[m.name] = {}
        for bench, reader in list(readers.items()):
            try:
                res = evaluate(model, reader, cfg, benchmark=bench, device=device,
                               figure_samples=cfg.eval.figure_samples if m.name in figure_for else 0)
            except InputError as err:
                skipped[bench] = str(err)
                del readers[bench]
                for done in out.values():
                    done.pop(bench, None)
                log(f"{bench}: skipped ({err})")
                continue
            out[m.name][bench] = res
            log(f"{m.name} on {bench}: n={int(res.metrics['n_images'])} abs_rel={res.metrics['abs_rel']:.4f} "
                f"delta1={res.metrics['delta1']:.4f} ({res.seconds:.1f}s)")
        del model
    return out


def run_metrics(results: dict[str, EvalResult]) -> dict[str, float]:
    """`{"<benchmark>/<metric>": value}` including `<benchmark>/n_images` and range bins
    (`<benchmark>/abs_rel_0-10`)."""
    out: dict[str, float] = {}
    for bench, r in results.items():
        for k in METRIC_NAMES:
            out[f"{bench}/{k}"] = r.metrics[k]
        out[f"{bench}/n_images"] = r.metrics["n_images"]
        for rng, m in r.range_bins.items():
            if m["n_pixels"]:
                out[f"{bench}/abs_rel_{rng}m"] = m["abs_rel"]
                out[f"{bench}/rmse_{rng}m"] = m["rmse"]
    return out


def champion_entry(cfg: DapConfig) -> ModelEntry | None:
    """The model behind `models:/<registered_model>@<champion_alias>`, or None when unset."""
    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(cfg.mlflow.registered_model, cfg.mlflow.champion_alias)
    except Exception:
        return None
    return ModelEntry("champion", "champion", f"models:/{cfg.mlflow.registered_model}/{mv.version}",
                      run_id=mv.run_id, version=str(mv.version))


def champion_gate(cfg: DapConfig, new: dict[str, EvalResult], champ: dict[str, EvalResult] | None,
                  new_version: str | None, champion_version: str | None) -> GateResult:
    """Fail when the new model's primary metric is worse than the champion's by more than
    `eval.regression_tolerance` (relative) on any benchmark both were evaluated on. Promote when
    the gate passes and the new model is better on the mean primary metric over those
    benchmarks, or when there is no champion. A champion that is the new model itself passes
    and is not promoted again."""
    metric, tol = cfg.eval.primary_metric, cfg.eval.regression_tolerance
    if new_version is not None and new_version == champion_version:
        return GateResult(True, False, champion_version, new_version, metric,
                          message=f"version {new_version} already is the champion")
    if not champ:
        return GateResult(True, new_version is not None, None, new_version, metric,
                          message="no champion yet" + ("" if new_version else "; the new model is not registered"))
    rows, regressions = [], []
    for bench in sorted(set(new) & set(champ)):
        a, b = new[bench].metrics[metric], champ[bench].metrics[metric]
        diff = (a - b) if metric in LOWER_IS_BETTER else (b - a)  # > 0: the new model is worse
        worse_by = diff / abs(b) if b != 0 else (0.0 if diff <= 0 else float("inf"))
        rows.append({"benchmark": bench, "new": a, "champion": b, "worse_by": worse_by})
        if worse_by > tol:
            regressions.append(f"{bench}: {metric} {a:.4f} vs champion {b:.4f} ({worse_by:+.1%} > {tol:.1%})")
    if not rows:
        return GateResult(True, False, champion_version, new_version, metric,
                          message="no benchmark in common with the champion: alias unchanged")
    mean_new = float(np.mean([r["new"] for r in rows]))
    mean_champ = float(np.mean([r["champion"] for r in rows]))
    passed = not regressions
    promote = passed and new_version is not None and better(metric, mean_new, mean_champ)
    msg = ("; ".join(regressions) if regressions else
           f"mean {metric} {mean_new:.4f} vs champion {mean_champ:.4f}: "
           + ("better, promoted" if promote else "not better, alias unchanged"))
    return GateResult(passed, promote, champion_version, new_version, metric, rows, msg)


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
    """One row per (benchmark, model) plus DAP's published reference where the format has one."""
    rows = []
    by_name = {m.name: m for m in models}
    benches = sorted({b for r in results.values() for b in r})
    for bench in benches:
        for name, per in results.items():
            if bench not in per:
                continue
            m = per[bench].metrics
            e = by_name.get(name)
            rows.append({"benchmark": bench, "model": name, "stage": e.stage if e else "",
                         "version": (e.version or "") if e else "", "n_images": int(m["n_images"]),
                         **{k: m[k] for k in METRIC_NAMES}})
        fmt = cfg.eval.benchmarks[bench].format if bench in cfg.eval.benchmarks else ""
        if fmt in PUBLISHED:
            label, absrel, d1 = PUBLISHED[fmt]
            rows.append({"benchmark": bench, "model": f"DAP (published, {label})", "stage": "reference",
                         "version": "", "n_images": "", **{k: float("nan") for k in METRIC_NAMES},
                         "abs_rel": absrel, "delta1": d1})
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
    """RGB | ground truth | prediction | absolute relative error, one row (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dap_model.inference import colourise

    gt, pred = sample.gt, sample.pred
    valid = np.isfinite(gt) & (gt > 0) & (gt <= cfg.eval.cap_m)
    vmax = cfg.eval.colour_max_m or (float(np.percentile(gt[valid], 99)) if valid.any() else 1.0)
    err = np.zeros_like(gt, dtype=np.float32)
    err[valid] = np.abs(pred[valid] - gt[valid]) / gt[valid]
    fig, axes = plt.subplots(1, 4, figsize=(16, 2.6))
    panels = [
        (sample.rgb, "RGB"),
        (colourise(np.where(valid, gt, 0), cfg.eval.colormap, vmax), f"ground truth (0–{vmax:.1f} m)"),
        (colourise(pred, cfg.eval.colormap, vmax), "prediction"),
    ]
    for ax, (img, t) in zip(axes[:3], panels):
        ax.imshow(img)
        ax.set_title(t, fontsize=9)
    im = axes[3].imshow(np.ma.masked_where(~valid, err), cmap=cfg.eval.error_colormap, vmin=0, vmax=0.5)
    axes[3].set_title("|pred − gt| / gt (masked: invalid gt)", fontsize=9)
    fig.colorbar(im, ax=axes[3], fraction=0.025)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)
    plt.close(fig)
    return path


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
    from dap_model.compare import plot_comparison

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
              "## Metrics (with DAP's published numbers for reference)", "", _md_table(mt), "",
              "## Champion gate", "", gate_text, ""]
        if not gate_rows.empty:
            md += [_md_table(gate_rows), ""]
        md += ["## Range-binned errors (pixels pooled per ground-truth range)", "", _md_table(rt), ""]
        if comparison is not None and not comparison.empty:
            md += ["## MLflow runs side by side", "", _md_table(comparison.reset_index()), "",
                   "![comparison](figures/comparison.png)", ""]
        if not skipped_df.empty:
            md += ["## Benchmarks not evaluated", "", _md_table(skipped_df), ""]
        md += ["## DAP's published zero-shot numbers (DESIGN §6)", "", _md_table(pt), ""]
        if fig_paths:
            md += [f"## Samples ({final}): RGB | ground truth | prediction | error", ""]
            md += [f"![{b}]({p})" for b, p in fig_paths] + [""]
        (tmp / "report.md").write_text("\n".join(md))
        sections = [
            ("Models", _html_table(model_df)),
            ("Metrics (with DAP's published numbers for reference)", _html_table(mt)),
            ("Champion gate", f"<p class='{'ok' if gate.passed else 'fail'}'>{html.escape(gate_text.replace('**', ''))}</p>"
             + (_html_table(gate_rows) if not gate_rows.empty else "")),
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

    from dap_model.compare import comparison_table, fetch_runs
    from dap_model.errors import DapError
    from dap_model.tracking import setup_mlflow
    from dap_model.training.tracking import log_metrics_to_run, set_alias

    setup_mlflow(cfg.mlflow)
    if final not in {m.name for m in models}:
        raise InputError(f"final model {final!r} is not among {[m.name for m in models]}")
    readers, skipped = configured_benchmarks(cfg, store)
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
    logged = []
    for m in models:
        if m.run_id:
            log_metrics_to_run(cfg, m.run_id, run_metrics(results[m.name]))
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


def find_training_run(cfg: DapConfig, stage: str, pipeline_run: str) -> tuple[str | None, str | None]:
    """(run id, registered version) of the `stage` training run tagged with `pipeline_run` (the
    Dagster run that materialised it), newest first; (None, None) when there is none."""
    from mlflow import MlflowClient

    from dap_model.compare import PIPELINE_TAG, STAGE_TAG

    client = MlflowClient()
    exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    if exp is None or not pipeline_run:
        return None, None
    runs = client.search_runs([exp.experiment_id], filter_string=(
        f"tags.`{STAGE_TAG}` = '{stage}' and tags.`{PIPELINE_TAG}` = '{pipeline_run}'"),
        order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return None, None
    run_id = runs[0].info.run_id
    return run_id, registered_version(cfg, run_id)


def registered_version(cfg: DapConfig, run_id: str) -> str | None:
    from mlflow import MlflowClient

    found = MlflowClient().search_model_versions(
        f"name = '{cfg.mlflow.registered_model}' and run_id = '{run_id}'")
    return str(max(int(v.version) for v in found)) if found else None


def model_entry_from_metadata(name: str, stage: str, meta: dict[str, Any], store,
                              registered_model: str = "dap-depth", *, cfg: DapConfig | None = None,
                              pipeline_run: str = "") -> ModelEntry:
    """A `ModelEntry` from a training asset's materialisation metadata: the MLflow run id
    (`run_id` / `mlflow_run_id`), the registered version (`model_version` / `version`) and the
    checkpoint, in this order: an explicit `checkpoint` (local path, MLflow model URI), the
    registered version `models:/<name>/<version>`, the data-store key `model_key` /
    `checkpoint_key`, else the stage's published `models/<stage>/model.safetensors`. With `cfg`,
    missing MLflow ids are looked up: the run tagged `dap.stage` = stage and `dap.pipeline_run`
    = `pipeline_run` (the Dagster run that materialised the asset), and its registered version."""
    from dap_model.inference import is_mlflow_uri

    def pick(*keys: str) -> str | None:
        for k in keys:
            v = meta.get(k)
            if v not in (None, "", "none", "None"):
                return str(v)
        return None

    run_id = pick("run_id", "mlflow_run_id")
    version = pick("model_version", "version", "registered_version")
    if cfg is not None and run_id is None:  # metadata without MLflow ids: find the run by its tags
        run_id, found = find_training_run(cfg, stage, pipeline_run)
        version = version or found
    elif cfg is not None and version is None and run_id:
        version = registered_version(cfg, run_id)
    ckpt = pick("checkpoint", "checkpoint_uri", "model_uri")
    if ckpt is None and version is not None:  # immutable, unlike a store key that the next run overwrites
        ckpt = f"models:/{registered_model}/{version}"
    if ckpt is None:
        ckpt = pick("checkpoint_key", "model_key") or f"models/{stage}/model.safetensors"
    if is_mlflow_uri(ckpt):
        return ModelEntry(name, stage, ckpt, run_id, version)
    if ckpt.startswith("file://"):
        ckpt = ckpt[len("file://"):]
    if Path(ckpt).is_absolute():
        if not Path(ckpt).exists():
            raise InputError(f"{name}: checkpoint {ckpt} not found")
        return ModelEntry(name, stage, ckpt, run_id, version)
    key = ckpt  # a data-store key or URI (s3://bucket/prefix/key)
    base = store.uri("x")[:-1]
    if key.startswith(base):
        key = key[len(base):]
    try:
        ckpt = str(store.fetch(key))
    except Exception as err:
        raise InputError(f"{name}: checkpoint {ckpt!r} not found in the data store ({err})") from None
    return ModelEntry(name, stage, ckpt, run_id, version)
