"""Synthesiser interface and backend registry (`get_synthesizer(cfg.synthesis)`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from dap_model.errors import ConfigError


@dataclass
class SynthImage:
    key: str
    rgb: np.ndarray  # [H,W,3] uint8, ERP (W = 2H), seam-continuous
    depth: np.ndarray | None = None  # [H,W] float32 metres; withheld ground truth (synth/gt/ only)
    meta: dict[str, Any] = field(default_factory=dict)


class Synthesizer:
    """`generate(n)` yields `n` indoor panoramas, deterministic in (`synthesis.seed`, index)."""

    name = ""

    def generate(self, n: int) -> Iterator[SynthImage]:
        raise NotImplementedError


_REGISTRY: dict[str, Callable[..., Synthesizer]] = {}


def register_synthesizer(name: str) -> Callable:
    def deco(factory: Callable[..., Synthesizer]) -> Callable[..., Synthesizer]:
        if name in _REGISTRY:
            raise ValueError(f"synthesis backend {name!r} registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def available_synthesizers() -> list[str]:
    return sorted(_REGISTRY)


def get_synthesizer(cfg, backend: str | None = None, **kwargs) -> Synthesizer:
    name = backend or cfg.backend
    if name not in _REGISTRY:
        raise ConfigError(
            f"synthesis.backend {name!r}: unknown; available: {', '.join(available_synthesizers())}"
        )
    return _REGISTRY[name](cfg, **kwargs)
