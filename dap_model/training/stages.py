"""The three trainings as data: which shards each stage reads, which model it starts from,
where its model is published in the data store.

Reads the labelled shards and a stage's pseudo-label set; publishes `layout.model_key(stage)`
(+ model card and resolved config). Keys: `dap_model.layout`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from dap_model import layout
from dap_model.config import DapConfig, project_dir
from dap_model.data.samples import fetch_all, manifest_shard_keys, split_shard_keys
from dap_model.errors import InputError
from dap_model.layout import model_key
from dap_model.training.checkpoint import safetensors_digest
from dap_model.training.data import ShardSource


@dataclass(frozen=True)
class StageSpec:
    name: str
    pseudo_prefix: str | None  # pseudo-label store prefix mixed with the labelled data
    previous: str | None  # stage whose model it starts from (train.init_from_previous)


STAGES: dict[str, StageSpec] = {
    s.name: s
    for s in (
        StageSpec("stage1", None, None),
        StageSpec("stage2", layout.PSEUDO_CURATED, "stage1"),
        StageSpec("stage3", layout.PSEUDO_STAGE2, "stage2"),
    )
}


def stage_spec(stage: str) -> StageSpec:
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    return STAGES[stage]


def store_version(store, key: str) -> str:
    """Content hash of one stored object (a manifest): DVC's md5, as Dagster data versions use."""
    from dap_model.versioning import store_hash

    if not store.exists(key):
        raise InputError(f"{store.uri(key)}: missing")
    return store_hash(store, key)


@dataclass
class StageInputs:
    sources: list[ShardSource]
    val_paths: list[Path]
    init_from: Path | None
    data_versions: dict[str, str]


def stage_inputs(cfg: DapConfig, store, stage: str) -> StageInputs:
    spec = stage_spec(stage)
    train_keys = split_shard_keys(store, layout.LABELED, "train")
    if not train_keys:
        raise InputError(f"{store.uri(layout.LABELED)}: no labelled train shards (materialise labeled_panoramas first)")
    versions = {"labeled": store_version(store, layout.LABELED_MANIFEST)}
    sources = [
        ShardSource("labeled", tuple(fetch_all(store, train_keys)), cfg.train.labeled_repeat if spec.pseudo_prefix else 1)
    ]
    if spec.pseudo_prefix:
        keys = manifest_shard_keys(store, spec.pseudo_prefix)
        if not keys:
            raise InputError(f"{store.uri(spec.pseudo_prefix)}: the manifest lists no shards")
        sources.append(ShardSource("pseudo", tuple(fetch_all(store, keys)), 1))
        versions[spec.pseudo_prefix.replace("/", "_")] = store_version(store, layout.manifest(spec.pseudo_prefix))
    init = None
    if spec.previous and cfg.train.init_from_previous:
        key = model_key(spec.previous)
        if not store.exists(key):
            raise InputError(f"{store.uri(key)}: {spec.previous} model missing (materialise it first)")
        init = Path(store.fetch(key))
        versions["init"] = safetensors_digest(init)
    val = fetch_all(store, split_shard_keys(store, layout.LABELED, "val"))
    return StageInputs(sources, val, init, versions)


def default_run_dir(cfg: DapConfig, stage: str, versions: dict[str, str]) -> Path:
    """`<project>/<train.run_root>/<stage>-<hash of config and inputs>`: the same inputs and
    config resume the same training; anything else starts a new one."""
    key = hashlib.sha256(json.dumps([cfg.digest(), versions], sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cfg.train.run_root)
    root = root if root.is_absolute() else project_dir() / root
    return root / f"{stage}-{key}"


def run_stage(
    cfg: DapConfig,
    store,
    stage: str,
    *,
    pipeline_run: str = "",
    run_dir: str | Path | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    register: bool = True,
    log_model: bool = True,
):
    """Train `stage` on its inputs from the store; publish the final model to `models/<stage>/`."""
    from dap_model.training.trainer import train

    from dap_model.distill.train import distill_paths

    inputs = stage_inputs(cfg, store, stage)
    extra = distill_paths(cfg, store, stage)  # None unless cfg.distill is on for this stage
    if extra:
        inputs.data_versions["distill"] = store_version(store, layout.DISTILL_MANIFEST)
    run_dir = Path(run_dir) if run_dir else default_run_dir(cfg, stage, inputs.data_versions)
    result = train(
        cfg, stage, inputs.sources, inputs.val_paths, run_dir,
        pipeline_run=pipeline_run, data_versions=inputs.data_versions, init_from=inputs.init_from,
        register=register, log_model=log_model, progress=progress, stop_after=stop_after,
        distill_paths=extra,
    )
    if result.step == cfg.train.steps and result.checkpoint_hash:
        final = result.checkpoint
        store.put_file(final, model_key(stage))
        store.put_file(final.with_suffix(".json"), layout.model_card(stage))
        store.put_file(final.parent / layout.RESOLVED_CONFIG_NAME, layout.resolved_config(layout.model_prefix(stage)))
    return result
