"""Asset checks on the manifests that carry no check of their own: each validates the stored
manifest with its pandera schema and that every shard it lists exists in the data store."""

import io

import pandas as pd
import pandera.pandas as pa
from dagster import AssetCheckResult, AssetKey, MetadataValue, asset_check

from dap_assets.resources import StorageResource
from dap_model import layout
from dap_model.errors import DapError

PSEUDO_PREFIXES = {"stage1_pseudo_labels": layout.PSEUDO_STAGE1, "stage2_pseudo_labels": layout.PSEUDO_STAGE2}


def _read(store, key: str) -> pd.DataFrame:
    if not store.exists(key):
        raise DapError(f"{store.uri(key)}: missing")
    return pd.read_parquet(io.BytesIO(store.get_bytes(key)))


def _result(fn) -> AssetCheckResult:
    """Run `fn() -> (rows, missing_shards)`; a schema or store error fails the check, naming it."""
    try:
        rows, missing = fn()
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases.head(10).astype(str).to_dict("records")
        return AssetCheckResult(passed=False, metadata={"failure_cases": MetadataValue.json(cases)})
    except (DapError, pa.errors.SchemaError, ValueError) as err:
        return AssetCheckResult(passed=False, metadata={"error": str(err)})
    return AssetCheckResult(
        passed=rows > 0 and not missing,
        metadata={"rows": rows, "missing_shards": MetadataValue.json(sorted(missing)[:20])},
    )


def _missing_shards(store, prefix: str, df: pd.DataFrame) -> list[str]:
    """Shards named in `df` (relative to `prefix`; `""` = full store keys) that are not stored."""
    shards = sorted(df["shard"].dropna().unique()) if "shard" in df.columns else []
    return [s for s in shards if not store.exists(layout.join(prefix, s) if prefix else s)]


@asset_check(asset=AssetKey("web_video_manifest"), description="normalised manifest passes the video manifest schema")
def web_video_manifest_schema(storage: StorageResource) -> AssetCheckResult:
    from dap_model.video.manifest import MANIFEST_SCHEMA

    def run():
        df = MANIFEST_SCHEMA.validate(_read(storage.store(), layout.WEB_MANIFEST), lazy=True)
        return len(df), []

    return _result(run)


@asset_check(asset=AssetKey("dit360_indoor"), description="synth manifest passes its schema; its shards exist")
def dit360_indoor_manifest_schema(storage: StorageResource) -> AssetCheckResult:
    from dap_model.synthesis.store import load_synth_manifest

    def run():
        store = storage.store()
        df = load_synth_manifest(store)
        return len(df), _missing_shards(store, "", df)

    return _result(run)


@asset_check(asset=AssetKey("scene_tags"), description="scene tags pass their schema")
def scene_tags_schema(storage: StorageResource) -> AssetCheckResult:
    from dap_model.pool import load_tags

    return _result(lambda: (len(load_tags(storage.store())), []))


@asset_check(asset=AssetKey("curated_pseudo_labels"), description="curated manifest passes its schema; shards exist")
def curated_pseudo_labels_schema(storage: StorageResource) -> AssetCheckResult:
    from dap_model.training.curation import CURATED_SCHEMA

    def run():
        store = storage.store()
        df = CURATED_SCHEMA.validate(_read(store, layout.manifest(layout.PSEUDO_CURATED)), lazy=True)
        return len(df), _missing_shards(store, layout.PSEUDO_CURATED, df)

    return _result(run)


def _pseudo_schema():
    from dap_model.training.pseudo import PSEUDO_COLUMNS

    checks = {
        "domain": pa.Column(str, pa.Check.isin(["indoor", "outdoor"])),
        "valid_fraction": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "median_depth_m": pa.Column(float, pa.Check.ge(0.0), nullable=True),
        "key": pa.Column(str, unique=True),
        "shard": pa.Column(str),
    }
    return pa.DataFrameSchema({c: checks.get(c, pa.Column(nullable=True)) for c in PSEUDO_COLUMNS},
                              strict=True, coerce=True)


def _pseudo_check(asset: str):
    prefix = PSEUDO_PREFIXES[asset]

    @asset_check(asset=AssetKey(asset), name=f"{asset}_schema",
                 description=f"{prefix}/manifest.parquet passes the pseudo-label schema; shards exist")
    def _check(storage: StorageResource) -> AssetCheckResult:
        def run():
            store = storage.store()
            df = _pseudo_schema().validate(_read(store, layout.manifest(prefix)), lazy=True)
            return len(df), _missing_shards(store, prefix, df)

        return _result(run)

    return _check


stage1_pseudo_labels_schema = _pseudo_check("stage1_pseudo_labels")
stage2_pseudo_labels_schema = _pseudo_check("stage2_pseudo_labels")


@asset_check(asset=AssetKey("perspective_pseudo_labels"), description="distill manifest is non-empty; its shards exist")
def perspective_pseudo_labels_schema(storage: StorageResource) -> AssetCheckResult:
    from dap_model.distill.pseudo import load_distill_manifest

    def run():
        store = storage.store()
        df = load_distill_manifest(store)
        kept = df[df["kept"]] if "kept" in df.columns else df
        return len(df), _missing_shards(store, layout.DISTILL, kept)

    return _result(run)
