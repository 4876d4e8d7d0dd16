"""The unlabeled pool: indoor synthesis, scene tags of web frames + synthesised images, the pool.

`scene_tags` is unpartitioned and depends on every partition of the dynamically partitioned
`web_frames` (Dagster's default all-partitions mapping): the pool is one table, and one run tags
every accepted frame of the extracted videos plus every synthesised image, so a new video shows
`scene_tags` as stale and one run brings the pool up to date. The same run first reads the real
folders of `pool.real_sources` into `real/` (unchanged folders are kept as they are)."""


from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from dap_assets.deployment import DEPLOYMENT, transient_retry_policy
from dap_assets.resources import DapConfigResource, StorageResource
from dap_model import layout
from dap_model.pool import (
    build_pool,
    load_pool_manifest,
    pool_counts,
    tag_sources,
    write_pool,
    write_tags,
)
from dap_model.real_pool import ingest_real_sources
from dap_model.synthesis.store import synthesize_to_store
from dap_model.tagging import get_tagger
from dap_model.versioning import store_hash


def _md_table(df) -> MetadataValue:
    return MetadataValue.md("```\n" + df.to_string(index=False) + "\n```")


@asset(group_name="pool", code_version="synth-1", pool=DEPLOYMENT.gpu_pool, retry_policy=transient_retry_policy())
def dit360_indoor(context: AssetExecutionContext, dap: DapConfigResource, storage: StorageResource) -> MaterializeResult:
    """Synthesised indoor panoramas (backend `synthesis.backend`) as shards under `synth/`."""
    cfg, store = dap.get(), storage.store()
    res = synthesize_to_store(cfg, store, progress=context.log.info)
    seam = res.manifest["seam_ratio"]
    return MaterializeResult(
        metadata={
            "manifest": store.uri(layout.SYNTH_MANIFEST),
            "backend": cfg.synthesis.backend,
            "images": len(res.manifest),
            "shards": len(res.shards),
            "gt_shards": len(res.gt_shards),
            "seam_ratio_max": float(seam.max()) if len(seam) else 0.0,
            "version": res.version,
        },
        data_version=DataVersion(store_hash(store, layout.SYNTH)),
    )


@asset(
    group_name="pool",
    deps=[AssetKey("web_frames"), dit360_indoor],
    code_version="tags-1",
    retry_policy=transient_retry_policy(),
)
def scene_tags(context: AssetExecutionContext, dap: DapConfigResource, storage: StorageResource) -> MaterializeResult:
    """Indoor/outdoor tag of every accepted web frame, synthesised image and real image or frame
    (`pool.real_sources`, read into `real/` first) → `pool/scene_tags.parquet`."""
    cfg, store = dap.get(), storage.store()
    real = ingest_real_sources(cfg, store, progress=context.log.info)
    for src in real.skipped():
        context.log.warning(f"real source {src['id']} skipped: {src['reason']}")
    tagger = get_tagger(cfg.tagging)
    tags = tag_sources(store, tagger, progress=context.log.info)
    write_tags(store, tags)
    failed = tags[~tags["ok"]]
    for r in failed.head(20).to_dict("records"):
        context.log.warning(f"not tagged: {r['shard']}:{r['key']}: {r['reason']}")
    counts = tags.groupby(["source", "scene"], dropna=False).size().reset_index(name="n")
    return MaterializeResult(
        metadata={
            "tags": store.uri(layout.POOL_TAGS),
            "tagger": tagger.name,
            "images": len(tags),
            "failed": len(failed),
            "counts": _md_table(counts),
            "mean_confidence": float(tags.loc[tags["ok"], "confidence"].mean()) if tags["ok"].any() else 0.0,
            "real_sources": MetadataValue.json(real.sources),
        },
        data_version=DataVersion(store_hash(store, layout.POOL_TAGS)),
    )


@asset(group_name="pool", deps=[scene_tags], code_version="pool-1")
def unlabeled_pool(context: AssetExecutionContext, dap: DapConfigResource, storage: StorageResource) -> MaterializeResult:
    """The unlabeled pool manifest (`pool/manifest.parquet`): key, shard, source, origin, domain, confidence."""
    from dap_model.pool import load_tags

    store = storage.store()
    pool = build_pool(load_tags(store))
    uri = write_pool(store, pool)
    return MaterializeResult(
        metadata={
            "manifest": uri,
            "images": len(pool),
            "counts": MetadataValue.json(pool_counts(pool)),
            "head": _md_table(pool.head(8)),
        },
        data_version=DataVersion(store_hash(store, layout.POOL_MANIFEST)),
    )


@asset_check(asset=unlabeled_pool, description="pool manifest passes its schema and holds both domains")
def pool_has_both_domains(storage: StorageResource) -> AssetCheckResult:
    store = storage.store()
    try:
        pool = load_pool_manifest(store)
    except Exception as err:  # a check reports, it does not crash
        return AssetCheckResult(passed=False, metadata={"error": str(err)})
    counts = pool_counts(pool)
    domains = {d: sum(v for k, v in counts.items() if k.startswith(d + "/")) for d in ("indoor", "outdoor")}
    return AssetCheckResult(
        passed=all(n > 0 for n in domains.values()),
        metadata={"per_domain": MetadataValue.json(domains), "counts": MetadataValue.json(counts), "pool": layout.POOL_MANIFEST},
    )
