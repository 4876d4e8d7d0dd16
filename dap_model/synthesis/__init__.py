"""Indoor panorama synthesis: `get_synthesizer(cfg.synthesis).generate(n)`.

Backends (registry): `builtin` (the simulator's indoor scenes in the web look; depth kept aside
as withheld ground truth) and `dit360` (FLUX.1-dev + the DiT-360 LoRA)."""

from dap_model.synthesis import builtin, dit360  # noqa: F401  (register the backends)
from dap_model.synthesis.base import (
    SynthImage,
    Synthesizer,
    available_synthesizers,
    get_synthesizer,
    register_synthesizer,
)

__all__ = ["SynthImage", "Synthesizer", "available_synthesizers", "get_synthesizer", "register_synthesizer"]
