"""Learning-rate schedules: linear warm-up, then cosine / linear decay or constant."""

from __future__ import annotations

import math

import torch

from dap_model.config import TrainConfig


def lr_factor(step: int, total: int, warmup: int, decay: str, min_ratio: float) -> float:
    """Multiplier of the base lr for optimiser step `step` (0-based) of `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if decay == "constant":
        return 1.0
    span = max(1, total - warmup)
    t = min(1.0, max(0.0, (step - warmup) / span))
    if decay == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * t))
    elif decay == "linear":
        shape = 1.0 - t
    else:
        raise ValueError(f"unknown lr decay {decay!r}")
    return min_ratio + (1.0 - min_ratio) * shape


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda step: lr_factor(step, cfg.steps, cfg.warmup_steps, cfg.decay, cfg.min_lr_ratio),
    )
