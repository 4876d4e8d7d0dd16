"""Indoor/outdoor scene tagging of panoramas: `get_tagger(cfg.tagging).tag(images)`.

Backends (registry): `builtin` (ERP enclosure and per-latitude-band appearance features + a
logistic model fitted on real panoramas and simulator renders; CPU, no downloads) and `qwen2-vl` (a Qwen2-VL / Qwen2.5-VL chat model)."""

from dap_model.tagging import builtin, qwen2vl  # noqa: F401  (register the backends)
from dap_model.tagging.base import (
    SCENES,
    TagResult,
    Tagger,
    available_taggers,
    check_image,
    get_tagger,
    read_image,
    register_tagger,
)

__all__ = [
    "SCENES",
    "TagResult",
    "Tagger",
    "available_taggers",
    "check_image",
    "get_tagger",
    "read_image",
    "register_tagger",
]
