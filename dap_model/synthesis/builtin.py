"""`builtin` synthesiser: the simulator's indoor scenes rendered in the web look, RGB only.

Like a generated image, the RGB carries no depth into training; the renderer's depth is kept
aside as withheld ground truth (`synth/gt/` shards) for measuring pseudo-label error later."""

from __future__ import annotations

from typing import Iterator

from dap_model.synthesis.base import SynthImage, Synthesizer, register_synthesizer
from dap_model.video.horizon import seam_ratio


@register_synthesizer("builtin")
class SimIndoorSynthesizer(Synthesizer):
    name = "builtin"

    def __init__(self, cfg):
        self.cfg = cfg

    def scene_seed(self, index: int) -> int:
        from dap_model.sim.scenes import derive_seed

        return derive_seed("synthesis-builtin", self.cfg.seed, index) % (2**31)

    def generate_one(self, index: int) -> SynthImage:
        from dap_model.sim import render_sequence

        seed = self.scene_seed(index)
        scene, frames = render_sequence("indoor", seed, 1, self.cfg.height, style="web")
        f = frames[0]
        meta = {
            "backend": self.name,
            "scene_kind": scene.kind,
            "scene_seed": seed,
            "position": [round(float(v), 4) for v in f.position],
            "seam_ratio": seam_ratio(f.rgb),
        }
        return SynthImage(key=f"simsynth-{self.cfg.seed:04d}-{index:07d}", rgb=f.rgb, depth=f.depth, meta=meta)

    def generate(self, n: int) -> Iterator[SynthImage]:
        for i in range(n):
            yield self.generate_one(i)
