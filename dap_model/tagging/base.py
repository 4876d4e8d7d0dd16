"""Tagger interface, result type and backend registry (`get_tagger(cfg.tagging)`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from dap_model.errors import ConfigError
from dap_model.images import try_read_rgb as read_image  # noqa: F401  ((rgb | None, reason) of an image file)

SCENES = ("indoor", "outdoor")
MIN_SIDE = 8


@dataclass(frozen=True)
class TagResult:
    scene: str | None  # "indoor" | "outdoor"; None when not ok
    confidence: float  # probability of `scene` in [0.5, 1]; 0.0 when not ok
    ok: bool = True
    reason: str = ""  # why the frame could not be tagged

    @classmethod
    def from_p_indoor(cls, p_indoor: float) -> "TagResult":
        p = float(p_indoor)
        if not np.isfinite(p):
            return cls.failed("non-finite score")
        return cls("indoor", p, True, "") if p >= 0.5 else cls("outdoor", 1.0 - p, True, "")

    @classmethod
    def failed(cls, reason: str) -> "TagResult":
        return cls(None, 0.0, False, reason)

    def as_dict(self) -> dict:
        return asdict(self)


def check_image(img: object) -> str:
    """'' if `img` is a taggable uint8 [H,W,3] array, else the reason it is not."""
    if img is None:
        return "unreadable image"
    if not isinstance(img, np.ndarray):
        return f"not an array ({type(img).__name__})"
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        return f"expected uint8 [H,W,3], got {img.dtype} {list(img.shape)}"
    if min(img.shape[:2]) < MIN_SIDE:
        return f"image too small ({img.shape[1]}x{img.shape[0]}); need at least {MIN_SIDE}x{MIN_SIDE}"
    if int(img.max()) == int(img.min()):
        return "image is a single flat colour (blank or dropped frame)"
    return ""


class Tagger:
    """`tag(images)` → one `TagResult` per image, in order. Images that cannot be tagged
    (None, wrong dtype/shape, blank) come back failed with a reason; the others are scored by
    the backend's `_score` in batches."""

    name = ""

    def tag(self, images: Sequence[np.ndarray | None]) -> list[TagResult]:
        results: list[TagResult | None] = [None] * len(images)
        good: list[int] = []
        for i, img in enumerate(images):
            why = check_image(img)
            if why:
                results[i] = TagResult.failed(why)
            else:
                good.append(i)
        if good:
            for i, r in zip(good, self._tag_valid([images[i] for i in good])):
                results[i] = r
        return results  # type: ignore[return-value]

    def _tag_valid(self, images: list[np.ndarray]) -> list[TagResult]:  # images: [H,W,3] uint8
        raise NotImplementedError


_REGISTRY: dict[str, Callable[..., Tagger]] = {}


def register_tagger(name: str) -> Callable:
    def deco(factory: Callable[..., Tagger]) -> Callable[..., Tagger]:
        if name in _REGISTRY:
            raise ValueError(f"tagger backend {name!r} registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def available_taggers() -> list[str]:
    return sorted(_REGISTRY)


def get_tagger(cfg, backend: str | None = None, **kwargs) -> Tagger:
    """The tagger chosen by `cfg.backend` (a `TaggingConfig`), or by `backend` when given."""
    name = backend or cfg.backend
    if name not in _REGISTRY:
        raise ConfigError(f"tagging.backend {name!r}: unknown; available: {', '.join(available_taggers())}")
    return _REGISTRY[name](cfg, **kwargs)

