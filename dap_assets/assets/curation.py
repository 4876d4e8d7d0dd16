"""Pseudo-labels and their curation: `stage1_pseudo_labels`, `depth_discriminator`,
`curated_pseudo_labels`, `stage2_pseudo_labels`."""


import math

from dagster import (
    AssetExecutionContext,
    AssetKey,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)

from dap_assets.resources import DapConfigResource, MlflowResource, StorageResource, pipeline_run_id, show_progress
from dap_model.training.checkpoint import safetensors_digest
from dap_model import layout
from dap_model.training.curation import run_curation, run_discriminator
from dap_model.training.pseudo import pseudo_label_pool
from dap_model.layout import model_key
from dap_model.training.stages import store_version


def _pseudo(context, dap, storage, stage: str, prefix: str) -> MaterializeResult:
    cfg, store = dap.get(), storage.store()
    manifest = pseudo_label_pool(cfg, store, store.fetch(model_key(stage)), prefix, stage, progress=show_progress())
    counts = manifest.groupby(["domain", "source"]).size().reset_index(name="n")
    return MaterializeResult(
        metadata={
            "prefix": store.uri(prefix),
            "samples": len(manifest),
            "shards": int(manifest["shard"].nunique()),
            "labeler_sha256": safetensors_digest(store.fetch(model_key(stage))),
            "mean_valid_fraction": float(manifest["valid_fraction"].mean()),
            "excluded_by_domain_prior": int(manifest.attrs.get("excluded", 0)),
            "counts": MetadataValue.md("```\n" + counts.to_string(index=False) + "\n```"),
        },
        data_version=DataVersion(store_version(store, layout.manifest(prefix))),
    )


@asset(group_name="curation", deps=[AssetKey("unlabeled_pool"), AssetKey("scene_invariant_labeler")],
       code_version="pseudo-4")
def stage1_pseudo_labels(context: AssetExecutionContext, dap: DapConfigResource, storage: StorageResource) -> MaterializeResult:
    """Stage-1 metric depth for every pool sample: shards under `pseudo/stage1/` + manifest."""
    return _pseudo(context, dap, storage, "stage1", layout.PSEUDO_STAGE1)


@asset(group_name="curation", deps=[stage1_pseudo_labels, AssetKey("labeled_panoramas")], code_version="disc-2",
       kinds={"pytorch", "mlflow"})
def depth_discriminator(context: AssetExecutionContext, dap: DapConfigResource, storage: StorageResource,
                        mlflow: MlflowResource) -> MaterializeResult:
    """PatchGAN (labelled GT real, stage-1 predictions fake) and its realism score per pool
    pseudo-label (`curation/scores.parquet`)."""
    cfg, store = dap.get(), storage.store()
    mlflow.setup()
    res = run_discriminator(cfg, store, store.fetch(model_key("stage1")), pipeline_run=pipeline_run_id(context),
                            progress=show_progress())
    meta = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in res.items()}
    return MaterializeResult(
        metadata={**{k: v for k, v in meta.items() if v is not None}, "model_key": layout.DISCRIMINATOR_KEY},
        data_version=DataVersion(res["checkpoint_sha256"]),
    )


@asset(group_name="curation", deps=[depth_discriminator, stage1_pseudo_labels], code_version="curate-1")
def curated_pseudo_labels(context: AssetExecutionContext, dap: DapConfigResource, storage: StorageResource) -> MaterializeResult:
    """Top-K indoor + top-K outdoor stage-1 pseudo-labels by discriminator score (or K random
    ones: `curation.selection=random`), under `pseudo/curated/` with a pandera-validated manifest."""
    cfg, store = dap.get(), storage.store()
    summary = run_curation(cfg, store)
    return MaterializeResult(
        metadata=summary,
        data_version=DataVersion(store_version(store, layout.manifest(layout.PSEUDO_CURATED))),
    )


@asset(group_name="curation", deps=[AssetKey("unlabeled_pool"), AssetKey("realism_invariant_labeler")],
       code_version="pseudo-4")
def stage2_pseudo_labels(context: AssetExecutionContext, dap: DapConfigResource, storage: StorageResource) -> MaterializeResult:
    """Stage-2 metric depth for the whole pool: shards under `pseudo/stage2/` + manifest."""
    return _pseudo(context, dap, storage, "stage2", layout.PSEUDO_STAGE2)
