"""Labelled data: the AirSim360-style simulator output and the ingested, sharded labelled set."""

import base64

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from dap_assets.deployment import transient_retry_policy
from dap_assets.resources import DapConfigResource, StorageResource
from dap_model import layout
from dap_model.data.labeled import ingest_labeled, load_labeled_manifest
from dap_model.errors import DapError
from dap_model.sim.airsim360 import simulate_to_store
from dap_model.versioning import store_hash


def _path_or_uri(store, key: str) -> str:
    return str(store.path(key)) if hasattr(store, "path") else store.uri(key)


@asset(group_name="labeled", retry_policy=transient_retry_policy(), code_version="sim-2")
def airsim360_scenes(context: AssetExecutionContext, dap: DapConfigResource, storage: StorageResource) -> MaterializeResult:
    """Procedural AirSim360-style sequences (RGB + Euclidean depth) in the data store under `airsim360/`."""
    cfg, store = dap.get(), storage.store()
    res = simulate_to_store(cfg, store, layout.AIRSIM360, progress=context.log.info)
    return MaterializeResult(
        metadata={
            "location": MetadataValue.path(_path_or_uri(store, layout.AIRSIM360)),
            "sequences": len(res.sequences), "frames": res.frames, "per_domain": MetadataValue.json(res.domains),
            "height": cfg.sim.height, "style": cfg.sim.style, "version": res.version,
        },
        data_version=DataVersion(store_hash(store, layout.AIRSIM360)),
    )


@asset(group_name="labeled", deps=[airsim360_scenes], retry_policy=transient_retry_policy(), code_version="ingest-1")
def labeled_panoramas(context: AssetExecutionContext, dap: DapConfigResource, storage: StorageResource) -> MaterializeResult:
    """Validated labelled panoramas, split by sequence, as tar shards + manifest under `labeled/`."""
    cfg, store = dap.get(), storage.store()
    res = ingest_labeled(cfg, store)
    for item in res.skipped:
        context.log.warning(f"skipped {item['item']}: {item['reason']}")
    img = base64.b64encode(res.preview_png).decode()
    return MaterializeResult(
        metadata={
            "manifest": MetadataValue.path(_path_or_uri(store, layout.LABELED_MANIFEST)),
            "source": res.source,
            "counts": MetadataValue.json(res.counts()),
            "depth": MetadataValue.json(res.depth_stats()),
            "skipped": MetadataValue.json(res.skipped),
            "n_skipped": len(res.skipped),
            "version": res.version,
            "preview": MetadataValue.path(_path_or_uri(store, layout.LABELED_PREVIEW)),
            "preview_image": MetadataValue.md(f"![RGB | depth](data:image/png;base64,{img})"),
            "manifest_head": MetadataValue.md("```\n" + res.manifest.head(8).to_string(index=False) + "\n```"),
        },
        data_version=DataVersion(store_hash(store, layout.LABELED)),
    )


@asset_check(asset=labeled_panoramas, description="manifest passes its pandera schema and every split is non-empty")
def labeled_manifest_check(dap: DapConfigResource, storage: StorageResource) -> AssetCheckResult:
    store = storage.store()
    try:
        m = load_labeled_manifest(store)
    except DapError as err:
        return AssetCheckResult(passed=False, metadata={"error": str(err)})
    per_split = {s: int((m["split"] == s).sum()) for s in ("train", "val", "test")}
    seqs = m["sequence"].nunique()
    empty = [s for s, n in per_split.items() if n == 0]
    passed = not (seqs >= 3 and empty)
    return AssetCheckResult(
        passed=passed,
        metadata={"rows": len(m), "sequences": int(seqs), "per_split": MetadataValue.json(per_split),
                  "empty_splits": MetadataValue.json(empty)},
    )
