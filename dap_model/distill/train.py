"""The distillation term of a training: an endless, seeded stream of perspective pseudo-labels
and the loss on the student's prediction for them.

With the term on, each micro-batch is `n_labeled` labelled + `n_unlabeled` pool samples
(unlabeled_fraction of batch_size, at least one each), run through the model together:
    total = labeled_weight · DapLoss(labelled) + weight · distill_loss(unlabelled).
The stream's position is a function of the step (samples = step · grad_accum · n_unlabeled), so
a resumed training continues the same sequence without extra checkpoint state."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dap_model import layout
from dap_model.config import DapConfig
from dap_model.data.samples import resize_pair
from dap_model.data.shards import decode_png, read_raw
from dap_model.distill.loss import distill_loss
from dap_model.errors import InputError
from dap_model.geometry import rotation_matrix


def distill_active(cfg: DapConfig, stage: str) -> bool:
    return cfg.distill.enabled and stage in cfg.distill.stages


def split_batch(batch_size: int, fraction: float) -> tuple[int, int]:
    """(n_labeled, n_unlabeled) with both ≥ 1."""
    if batch_size < 2:
        raise InputError(f"distillation needs train.batch_size >= 2 (half labelled, half unlabelled), got {batch_size}")
    n_u = min(batch_size - 1, max(1, round(batch_size * fraction)))
    return batch_size - n_u, n_u


def decode_distill_sample(key: str, parts: dict[str, bytes], where: str, height: int) -> dict:
    """→ dict(rgb [3,H,W] in [0,1], R [3,3], disp [6,1,w,w], valid [6,1,w,w] bool, key)."""
    try:
        rgb = decode_png(parts["rgb.png"], f"{where}:{key}.rgb.png")
        disp = np.load(io.BytesIO(parts["depth.npy"]), allow_pickle=False)
        valid = np.load(io.BytesIO(parts["mask.npy"]), allow_pickle=False).astype(bool)
        meta = json.loads(parts["json"])
    except KeyError as err:
        raise InputError(f"{where}:{key}: not a perspective pseudo-label ({err} missing)") from None
    rgb, _ = resize_pair(rgb, None, height)
    w = int(meta["face_w"])
    yaw, pitch, roll = meta["rotation_deg"]
    return {
        "rgb": torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) / 255.0),
        "R": rotation_matrix(yaw, pitch, roll, degrees=True, dtype=torch.float32),
        "disp": torch.from_numpy(disp.reshape(6, 1, w, w).astype(np.float32)),
        "valid": torch.from_numpy(valid.reshape(6, 1, w, w)),
        "key": key,
    }


class DistillStream:
    """Endless batches of perspective pseudo-labels; epoch e visits the samples in an order fixed
    by (seed, e); rank r of `world` takes every world-th sample."""

    def __init__(self, paths: list[Path], height: int, seed: int = 0, rank: int = 0, world: int = 1, start: int = 0):
        self.items: list[tuple[Path, str]] = [(Path(p), k) for p in paths for k, _ in read_raw(Path(p))]
        if len(self.items) < world:
            raise InputError(f"perspective pseudo-labels: {len(self.items)} samples for {world} processes")
        self.paths, self.height, self.seed, self.rank, self.world = paths, height, seed, rank, world
        self._it = self._samples(start)

    def _order(self, epoch: int) -> list[int]:
        perm = np.random.default_rng([self.seed, epoch, 7]).permutation(len(self.items))
        return [int(i) for i in perm[self.rank :: self.world]]

    def _samples(self, start: int) -> Iterator[dict]:
        per_epoch = len(self._order(0))
        epoch, skip = divmod(start, per_epoch)
        cache: dict[Path, dict] = {}
        while True:
            for i in self._order(epoch)[skip:]:
                path, key = self.items[i]
                if path not in cache:
                    cache.clear()  # hold one shard's raw bytes at a time
                    cache[path] = dict(read_raw(path))
                yield decode_distill_sample(key, cache[path][key], str(path), self.height)
            epoch, skip = epoch + 1, 0

    def next_batch(self, n: int) -> dict:
        s = [next(self._it) for _ in range(n)]
        return {k: torch.stack([x[k] for x in s]) for k in ("rgb", "R", "disp", "valid")} | {"keys": [x["key"] for x in s]}


class DistillTerm:
    """Adds the distillation term to a stage's objective (see module doc)."""

    def __init__(self, cfg: DapConfig, paths: list[Path], rank: int = 0, world: int = 1, step: int = 0):
        self.cfg = cfg.distill
        self.n_labeled, self.n_unlabeled = split_batch(cfg.train.batch_size, cfg.distill.unlabeled_fraction)
        start = step * cfg.train.grad_accum * self.n_unlabeled
        self.stream = DistillStream(paths, cfg.train.height, cfg.distill.seed + cfg.train.seed, rank, world, start)

    def objective(self, net, rgb: Tensor, gt: Tensor, loss_fn) -> tuple[Tensor, dict[str, Tensor]]:
        """rgb [n_l,3,H,W], gt [n_l,1,H,W] (the trainer's batch) → (total, terms incl. `distill`)."""
        u = self.stream.next_batch(self.n_unlabeled)
        dev = rgb.device
        n = rgb.shape[0]
        out = net(torch.cat([rgb, u["rgb"].to(dev, rgb.dtype)]))  # [n_l+n_u,…]
        lab = {k: v[:n] for k, v in out.items()}
        total, terms = loss_fn(lab, gt)
        d = distill_loss(out["depth"][n:].float(), u["R"].to(dev), u["disp"].to(dev), u["valid"].to(dev))
        terms = dict(terms) | {"distill": d.detach(), "labeled": total.detach()}
        return self.cfg.labeled_weight * total + self.cfg.weight * d, terms


def distill_paths(cfg: DapConfig, store, stage: str) -> list[Path] | None:
    """Local shards of `perspective_pseudo_labels` when the term is on for `stage`, else None."""
    if not distill_active(cfg, stage):
        return None
    from dap_model.distill.pseudo import distill_shard_keys

    keys = distill_shard_keys(store)
    if not keys:
        raise InputError(f"{store.uri(layout.DISTILL)}: the manifest lists no kept perspective pseudo-labels")
    return [Path(store.fetch(k)) for k in keys]
