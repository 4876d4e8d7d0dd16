"""Discriminator-based curation of stage-1 pseudo-labels (DAP's realism-invariant step).

1. `train_discriminator`: a PatchGAN sees (rgb, depth) pairs: labelled ground truth is "real";
   stage-1 depth is "fake", half of each fake batch the stage-1 model's prediction on the real
   batch's images, half stage-1 pseudo-labels of pool images.
2. `score_pseudo_labels`: a realism score in (0,1) per pool pseudo-label.
3. `select_top_k` + `write_curated`: top-K indoor + top-K outdoor by score (or K random ones: the
   control), copied into `layout.PSEUDO_CURATED` shards with a pandera-validated manifest."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import torch
from tqdm import tqdm

from dap_model import layout
from dap_model.accel import resolve_device
from dap_model.config import DapConfig, RESOLVED_CONFIG_NAME, write_resolved_config
from dap_model.data.shards import Sample, ShardWriter
from dap_model.errors import InputError
from dap_model.storage import replace_prefix
from dap_model.training.data import (
    Augment,
    BatchLoader,
    ShardSource,
    ShardStream,
    clean_depth,
    decode_raw,
    read_raw,
    resize_pair,
)
from dap_model.training.stages import fetch_all, manifest_shard_keys, split_shard_keys

CURATED_SCHEMA = pa.DataFrameSchema(
    {
        "key": pa.Column(str, unique=True),
        "shard": pa.Column(str, pa.Check.str_matches(r"^curated-\d{6}\.tar$")),
        "domain": pa.Column(str, pa.Check.isin(["indoor", "outdoor"])),
        "source": pa.Column(str),
        "score": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "rank": pa.Column(int, pa.Check.ge(1)),
        "selected_by": pa.Column(str, pa.Check.isin(["discriminator", "random"])),
    },
    strict=True,
    coerce=True,
)


def iter_depth_pairs(paths: list[Path], height: int) -> Iterator[tuple[str, np.ndarray, np.ndarray, dict]]:
    """(key, rgb [height,2h,3] uint8, depth [height,2h] metres, meta) of shards in stored order."""
    for path in paths:
        for key, parts in read_raw(path):
            rgb, depth, meta = decode_raw(key, parts, str(path))
            if depth is None:
                raise InputError(f"{path}:{key}: no depth")
            rgb, depth = resize_pair(rgb, clean_depth(depth), height)
            yield key, rgb, depth, meta


def _to_tensors(rgbs, depths, device):
    rgb = torch.from_numpy(np.stack(rgbs).transpose(0, 3, 1, 2).astype(np.float32) / 255.0).to(device)  # [B,3,H,W]
    depth = torch.from_numpy(np.stack(depths)[:, None]).to(device)  # [B,1,H,W]
    return rgb, depth


def train_discriminator(cfg: DapConfig, store, stage1_model: str | Path, pseudo_prefix: str, progress: bool = True):
    """Returns (discriminator in eval mode, per-step losses list)."""
    from dap_model.accel import apply_cpu_threads
    from dap_model.models import build_discriminator, discriminator_loss, load_model

    cc, tc = cfg.curation, cfg.train
    apply_cpu_threads(tc.threads)
    device = resolve_device(tc.device)
    torch.manual_seed(cc.seed)
    disc = build_discriminator(cfg.discriminator).to(device).train()
    opt = torch.optim.Adam(disc.parameters(), lr=cc.disc_lr, betas=(0.5, 0.999))
    geo = Augment(flip_prob=tc.aug_flip_prob, roll_prob=tc.aug_roll_prob)
    labeled = fetch_all(store, split_shard_keys(store, layout.LABELED, "train"))
    if not labeled:
        raise InputError(f"{store.uri(layout.LABELED)}: no labelled train shards")
    real = BatchLoader(
        ShardStream([ShardSource("labeled", tuple(labeled))], tc.height, seed=cc.seed, shuffle_buffer=tc.shuffle_buffer, aug=geo),
        cc.disc_batch_size,
    )
    pool_paths = fetch_all(store, manifest_shard_keys(store, pseudo_prefix))
    pool_loader = BatchLoader(
        ShardStream([ShardSource("pseudo", tuple(pool_paths))], tc.height, seed=cc.seed + 1,
                    shuffle_buffer=tc.shuffle_buffer, aug=geo),
        cc.disc_batch_size,
    )
    labeler = load_model(stage1_model, map_location=device).eval()
    n = max(1, cc.disc_batch_size // 2)  # fakes per source
    losses: list[dict[str, float]] = []
    for step in tqdm(range(cc.disc_steps), desc="discriminator", disable=not progress):
        rb = real.next_batch()
        rgb_r, dep_r = rb["rgb"].to(device), rb["depth"].to(device)  # [B,3,H,W], [B,1,H,W]
        pred = labeler.predict(rgb_r)  # [B,1,H,W]
        pb = pool_loader.next_batch()
        rgb_f = torch.cat([rgb_r[:n], pb["rgb"].to(device)[:n]])  # [2n,3,H,W]
        dep_f = torch.cat([pred[:n], pb["depth"].to(device)[:n]]).detach()  # [2n,1,H,W]
        d_real, d_fake = disc(rgb_r, dep_r), disc(rgb_f, dep_f)
        loss = discriminator_loss(d_real, d_fake, cfg.discriminator.gan_loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append({
            "disc/loss": float(loss.detach()),
            "disc/real_logit": float(d_real.detach().mean()),
            "disc/fake_logit": float(d_fake.detach().mean()),
        })
    return disc.eval(), losses


def save_discriminator(disc, path: Path, cfg: DapConfig) -> Path:
    from safetensors.torch import save_file

    from dap_model.io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in disc.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"dap.discriminator_config": cfg.discriminator.model_dump_json()})
    write_resolved_config(cfg, path.parent)
    return path


@torch.no_grad()
def score_pseudo_labels(cfg: DapConfig, disc, store, pseudo_prefix: str) -> pd.DataFrame:
    """One row per pseudo-label: key, shard, domain, source, score."""
    device = next(disc.parameters()).device
    manifest = pd.read_parquet(store.fetch(layout.manifest(pseudo_prefix))).set_index("key")
    paths = fetch_all(store, manifest_shard_keys(store, pseudo_prefix))
    out: list[dict] = []
    batch: list = []

    def flush():
        rgb, depth = _to_tensors([b[1] for b in batch], [b[2] for b in batch], device)
        for (key, *_), s in zip(batch, disc.score(rgb, depth).cpu().tolist()):
            row = manifest.loc[key]
            out.append({"key": key, "shard": row["shard"], "domain": row["domain"], "source": row["source"], "score": float(s)})
        batch.clear()

    for item in iter_depth_pairs(paths, cfg.train.height):
        batch.append(item)
        if len(batch) == cfg.train.eval_batch_size:
            flush()
    if batch:
        flush()
    return pd.DataFrame(out, columns=["key", "shard", "domain", "source", "score"])


def select_top_k(scores: pd.DataFrame, k: int, selection: str, seed: int) -> pd.DataFrame:
    """Top-`k` per domain by score ('discriminator') or `k` uniformly random ones ('random')."""
    if scores.empty:
        raise InputError("curation: no scored pseudo-labels")
    parts = []
    for domain, df in scores.groupby("domain", sort=True):
        if selection == "discriminator":
            df = df.sort_values(["score", "key"], ascending=[False, True]).head(k)
        elif selection == "random":
            rng = np.random.default_rng([seed, len(str(domain)), sum(map(ord, str(domain)))])
            df = df.iloc[np.sort(rng.permutation(len(df))[:k])]
        else:
            raise InputError(f"curation.selection {selection!r}: expected discriminator | random")
        parts.append(df.assign(rank=np.arange(1, len(df) + 1), selected_by=selection))
    return pd.concat(parts, ignore_index=True)


def write_curated(cfg: DapConfig, store, selected: pd.DataFrame, pseudo_prefix: str,
                  out_prefix: str = layout.PSEUDO_CURATED) -> pd.DataFrame:
    """Copy the selected pseudo-labels into `out_prefix` shards; manifest validated by CURATED_SCHEMA."""
    wanted = selected.set_index("key")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        writer = ShardWriter(tmp_dir, "curated", cfg.ingest.shard_size)
        for shard in sorted(wanted["shard"].unique()):
            key = layout.join(pseudo_prefix, shard)
            for k, parts in read_raw(Path(store.fetch(key))):
                if k not in wanted.index:
                    continue
                rgb, depth, meta = decode_raw(k, parts, key)
                r = wanted.loc[k]
                name = writer.write(Sample(k, rgb, depth, meta={**meta, "score": float(r["score"]), "rank": int(r["rank"])}))
                rows.append({"key": k, "shard": name, "domain": r["domain"], "source": r["source"],
                             "score": float(r["score"]), "rank": int(r["rank"]), "selected_by": r["selected_by"]})
        shards = writer.close()
        manifest = CURATED_SCHEMA.validate(pd.DataFrame(rows))
        if len(manifest) != len(selected):
            raise InputError(f"curation: {len(selected) - len(manifest)} selected keys missing from {pseudo_prefix}")
        manifest.to_parquet(tmp_dir / layout.MANIFEST_NAME, index=False)
        write_resolved_config(cfg, tmp_dir)
        replace_prefix(store, out_prefix, tmp_dir, set(shards) | {layout.MANIFEST_NAME, RESOLVED_CONFIG_NAME})
    return manifest


def run_discriminator(cfg: DapConfig, store, stage1_model: str | Path, pseudo_prefix: str = layout.PSEUDO_STAGE1,
                      pipeline_run: str = "", work_dir: Path | None = None, progress: bool = True) -> dict:
    """Train, save (`layout.DISCRIMINATOR_KEY`), score the pool's pseudo-labels (`layout.CURATION_SCORES`);
    one MLflow run (stage `discriminator`). Returns a summary."""
    import mlflow

    from dap_model.training.checkpoint import safetensors_digest
    from dap_model.training.stages import store_version
    from dap_model.training.tracking import start_run

    t0 = time.perf_counter()
    tags = {"dap.stage": "discriminator", "dap.pipeline_run": pipeline_run, "dap.profile": cfg.profile,
            "dap.data.labeled": store_version(store, layout.LABELED_MANIFEST),
            f"dap.data.{pseudo_prefix.replace('/', '_')}": store_version(store, layout.manifest(pseudo_prefix))}
    with start_run(cfg, "discriminator", None, tags) as run:
        disc, losses = train_discriminator(cfg, store, stage1_model, pseudo_prefix, progress)
        for i in range(0, len(losses), cfg.train.log_every):
            mlflow.log_metrics(losses[i], step=i + 1)
        scores = score_pseudo_labels(cfg, disc, store, pseudo_prefix)
        with tempfile.TemporaryDirectory() as tmp:
            wd = Path(work_dir or tmp)
            path = save_discriminator(disc, wd / layout.MODEL_FILE, cfg)
            store.put_file(path, layout.DISCRIMINATOR_KEY)
            store.put_file(wd / RESOLVED_CONFIG_NAME, layout.resolved_config(layout.model_prefix(layout.DISCRIMINATOR)))
            scores.assign(run_id=run.info.run_id).to_parquet(wd / "scores.parquet", index=False)
            store.put_file(wd / "scores.parquet", layout.CURATION_SCORES)
            digest = safetensors_digest(path)
        mlflow.log_metric("disc/mean_score", float(scores["score"].mean()))
        mlflow.set_tag("dap.checkpoint_sha256", digest)
    return {
        "mlflow_run_id": run.info.run_id,
        "checkpoint_sha256": digest,
        "n_scored": len(scores),
        "final_loss": losses[-1]["disc/loss"],
        "seconds": time.perf_counter() - t0,
    }


def run_curation(cfg: DapConfig, store, pseudo_prefix: str = layout.PSEUDO_STAGE1) -> dict:
    """Select top-K per domain from `layout.CURATION_SCORES` and write `layout.PSEUDO_CURATED`."""
    if not store.exists(layout.CURATION_SCORES):
        raise InputError(f"{store.uri(layout.CURATION_SCORES)}: no scores (materialise depth_discriminator first)")
    scores = pd.read_parquet(store.fetch(layout.CURATION_SCORES))
    cc = cfg.curation
    selected = select_top_k(scores, cc.top_k_per_domain, cc.selection, cc.seed)
    manifest = write_curated(cfg, store, selected, pseudo_prefix)
    sel = scores[scores["key"].isin(manifest["key"])]
    summary = {
        "selection": cc.selection,
        "n_selected": len(manifest),
        **{f"n_{d}": int((manifest["domain"] == d).sum()) for d in ("indoor", "outdoor")},
        "mean_score_selected": float(sel["score"].mean()),
        "mean_score_all": float(scores["score"].mean()),
    }
    return summary
