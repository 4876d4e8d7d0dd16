"""Write synthesised panoramas to the data store: `synth/shards/*.tar` (RGB only),
`synth/gt/*.tar` (withheld depth, builtin backend only), `synth/manifest.parquet`,
`synth/config.resolved.yaml`."""

from __future__ import annotations

import hashlib
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pandera.pandas as pa

from dap_model import layout
from dap_model.data.shards import Sample, ShardWriter
from dap_model.errors import InputError
from dap_model.synthesis.base import get_synthesizer
from dap_model.schema import validate_table


SYNTH_SCHEMA = pa.DataFrameSchema(
    {
        "key": pa.Column(str, pa.Check.str_matches(r"^[A-Za-z0-9_\-]+$"), unique=True),
        "shard": pa.Column(str, pa.Check.str_startswith(layout.SYNTH_SHARDS + "/")),
        "gt_shard": pa.Column(str, nullable=True),
        "backend": pa.Column(str),
        "prompt": pa.Column(str, nullable=True),
        "height": pa.Column(int, pa.Check.gt(0)),
        "width": pa.Column(int, pa.Check.gt(0)),
        "seam_ratio": pa.Column(float, pa.Check(np.isfinite, element_wise=True)),
    },
    checks=[pa.Check(lambda df: (df["width"] == 2 * df["height"]).all(), error="ERP: width = 2 x height")],
    strict=True,
    name="synth manifest",
)


@dataclass
class SynthResult:
    manifest: pd.DataFrame
    version: str
    shards: list[str]
    gt_shards: list[str]


def synthesize_to_store(cfg, store, synthesizer=None, progress: Callable[[str], None] | None = None) -> SynthResult:
    """Generate `cfg.synthesis.images` panoramas with the configured backend into the store."""
    scfg = cfg.synthesis
    synth = synthesizer or get_synthesizer(scfg)
    rows = []
    with tempfile.TemporaryDirectory(prefix="dap-synth-") as tmp:
        tmp = Path(tmp)
        rgb_w = ShardWriter(tmp / "shards", "synth", scfg.shard_size)
        gt_w = ShardWriter(tmp / "gt", "gt", scfg.shard_size)
        for i, im in enumerate(synth.generate(scfg.images)):
            meta = {k: v for k, v in im.meta.items()}
            shard = rgb_w.write(Sample(im.key, im.rgb, None, None, meta))
            gt_shard = gt_w.write(Sample(im.key, im.rgb, im.depth, None, meta)) if im.depth is not None else None
            h, w = im.rgb.shape[:2]
            rows.append({
                "key": im.key,
                "shard": layout.join(layout.SYNTH_SHARDS, shard),
                "gt_shard": layout.join(layout.SYNTH_GT, gt_shard) if gt_shard else None,
                "backend": meta.get("backend", synth.name),
                "prompt": meta.get("prompt"),
                "height": int(h),
                "width": int(w),
                "seam_ratio": float(meta.get("seam_ratio", 0.0)),
            })
            if progress and (i + 1) % 10 == 0:
                progress(f"synthesised {i + 1}/{scfg.images}")
        shards, gt_shards = rgb_w.close(), gt_w.close()
        manifest = pd.DataFrame(rows, columns=list(SYNTH_SCHEMA.columns))
        manifest = manifest.astype({"height": int, "width": int, "seam_ratio": float})
        manifest = validate_table(SYNTH_SCHEMA, manifest, "synth manifest")
        digest = hashlib.sha256()
        for sub, names in (("shards", shards), ("gt", gt_shards)):
            for name in names:
                digest.update((tmp / sub / name).read_bytes())
                store.put_file(tmp / sub / name, layout.join(layout.SYNTH, sub, name))
    buf = io.BytesIO()
    manifest.to_parquet(buf, index=False)
    store.put_bytes(layout.SYNTH_MANIFEST, buf.getvalue())
    store.put_bytes(layout.resolved_config(layout.SYNTH), cfg.to_yaml().encode())
    keep = {layout.join(layout.SYNTH_SHARDS, n) for n in shards} | {layout.join(layout.SYNTH_GT, n) for n in gt_shards}
    for key in store.list(layout.SYNTH_SHARDS) + store.list(layout.SYNTH_GT):
        if key not in keep:  # shards of an earlier, larger run (after the manifest moved on)
            store.delete(key)
    return SynthResult(manifest, digest.hexdigest()[:16], shards, gt_shards)


def load_synth_manifest(store) -> pd.DataFrame:
    if not store.exists(layout.SYNTH_MANIFEST):
        raise InputError(f"{store.uri(layout.SYNTH_MANIFEST)}: no synth manifest; materialise dit360_indoor first")
    df = pd.read_parquet(io.BytesIO(store.get_bytes(layout.SYNTH_MANIFEST)))
    return validate_table(SYNTH_SCHEMA, df, store.uri(layout.SYNTH_MANIFEST))
