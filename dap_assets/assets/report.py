"""`benchmark_report`: every model of the run × every configured benchmark, the champion gate."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
)

from dap_assets.resources import DapConfigResource, MlflowResource, StorageResource
from dap_model.evaluation.report import run_benchmark_report
from dap_model.evaluation.runs import model_entry_from_metadata

MODEL_ASSETS = {  # upstream asset -> training stage
    "scene_invariant_labeler": "stage1",
    "realism_invariant_labeler": "stage2",
    "dap_depth_model": "stage3",
}
FINAL = "dap_depth_model"
GATE_CHECK = "no_regression_vs_champion"


def _latest_materialization(context: AssetExecutionContext, key: str) -> tuple[dict, str] | None:
    """(metadata, Dagster run id) of the asset's latest materialisation."""
    event = context.instance.get_latest_materialization_event(AssetKey(key))
    if event is None or event.asset_materialization is None:
        return None
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}, event.run_id


@asset(
    group_name="evaluation",
    deps=[*MODEL_ASSETS, "labeled_panoramas", "web_video_manifest"],  # the models and the test sets they are scored on
    check_specs=[AssetCheckSpec(GATE_CHECK, asset="benchmark_report",
                                description="the final model does not regress against the champion beyond eval.regression_tolerance")],
    code_version="report-1",
)
def benchmark_report(context: AssetExecutionContext, dap: DapConfigResource, storage: StorageResource,
                     mlflow: MlflowResource) -> MaterializeResult:
    """Evaluates both labelers and the final model (and the current champion) on every configured
    benchmark, logs `<benchmark>/<metric>` onto each model's training run, writes
    `reports/<run id>/report.{md,html}` (+ `reports/latest`), and moves the `champion` alias to
    the final model when it is better on `eval.primary_metric`."""
    cfg, store = dap.get(), storage.store()
    mlflow.setup()
    models = []
    for key, stage in MODEL_ASSETS.items():
        found = _latest_materialization(context, key)
        if found is None:
            if key == FINAL:
                raise RuntimeError(f"{key} has never been materialised: nothing to report on")
            context.log.warning(f"{key} has no materialisation: left out of the report")
            continue
        meta, dagster_run = found
        models.append(model_entry_from_metadata(key, stage, meta, store, cfg.mlflow.registered_model,
                                                cfg=cfg, pipeline_run=dagster_run))
    res = run_benchmark_report(cfg, store, models, final=FINAL, label=context.run.run_id,
                               pipeline_run=context.run.run_id, log=context.log.info)
    final = res.results[FINAL]
    gate = res.gate
    table = {b: {k: round(r.metrics[k], 4) for k in ("abs_rel", "rmse", "delta1", "n_images")} for b, r in final.items()}
    return MaterializeResult(
        metadata={
            "report": MetadataValue.path(str(res.html)),
            "markdown": MetadataValue.path(str(res.markdown)),
            "final_model_metrics": MetadataValue.json(table),
            "skipped_benchmarks": MetadataValue.json(res.skipped),
            "champion_before": gate.champion_version or "none",
            "champion_now": (gate.new_version if gate.promote else gate.champion_version) or "none",
            "promoted": gate.promote,
            "logged_runs": MetadataValue.json(res.logged_runs),
        },
        check_results=[AssetCheckResult(
            check_name=GATE_CHECK,
            passed=gate.passed,
            severity=AssetCheckSeverity.ERROR,
            metadata={"message": gate.message, "metric": gate.metric,
                      "per_benchmark": MetadataValue.json(gate.rows),
                      "tolerance": cfg.eval.regression_tolerance},
        )],
    )
