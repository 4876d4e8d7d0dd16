"""`dit360` synthesiser: FLUX.1-dev + the DiT-360 panorama LoRA (diffusers' FluxPipeline).

Paper settings by default (2048x1024 with `synthesis.height=1024`, 28 steps, guidance 2.8).
Seam continuity, two measures: the packed latent is rolled horizontally after every denoising
step (`dit360_roll_latents`: the wrap-around column changes every step, so the content on both
sides of the final seam was denoised as neighbours), then `blend_seam` removes what is left of
the VAE decoder's edge mismatch. GPU in practice; CPU works for tiny test pipelines."""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from dap_model.errors import ConfigError, InputError
from dap_model.synthesis.base import SynthImage, Synthesizer, register_synthesizer
from dap_model.synthesis.seam import blend_seam, roll_packed_latents
from dap_model.video.horizon import seam_ratio

GOLDEN_SHIFT = (3 - math.sqrt(5)) / 2  # ≈0.382 of the width per step: seam positions never repeat soon


def load_dit360_pipeline(cfg, device, dtype):
    from dap_model.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from diffusers import FluxPipeline

    try:
        pipe = FluxPipeline.from_pretrained(cfg.dit360_base, dtype=dtype)
    except (OSError, ValueError) as err:
        raise InputError(f"synthesis.dit360_base {cfg.dit360_base!r}: cannot load ({err})") from None
    if cfg.dit360_lora:
        try:
            pipe.load_lora_weights(cfg.dit360_lora)
        except (OSError, ValueError) as err:
            raise InputError(f"synthesis.dit360_lora {cfg.dit360_lora!r}: cannot load ({err})") from None
    return pipe.to(device)


class LatentRoller:
    """`callback_on_step_end` for FluxPipeline: roll the packed latents by `shift` token columns."""

    def __init__(self, h2: int, w2: int):
        self.h2, self.w2 = h2, w2
        self.shift = max(1, round(w2 * GOLDEN_SHIFT)) if w2 > 1 else 0
        self.total = 0  # token columns rolled so far

    def __call__(self, pipe, step: int, timestep, kwargs: dict) -> dict:
        latents = kwargs["latents"]  # [B, h2*w2, C*4]
        self.total = (self.total + self.shift) % max(self.w2, 1)
        return {"latents": roll_packed_latents(latents, self.h2, self.w2, self.shift)}


@register_synthesizer("dit360")
class DiT360Synthesizer(Synthesizer):
    name = "dit360"

    def __init__(self, cfg, pipe=None):
        import torch

        from dap_model.accel import resolve_device, resolve_dtype

        self.cfg = cfg
        if pipe is None:
            device = resolve_device(cfg.device)
            pipe = load_dit360_pipeline(cfg, device, resolve_dtype(cfg.dtype, device))
        self.pipe = pipe
        self.device = pipe._execution_device
        self.height, self.width = cfg.height, 2 * cfg.height
        mult = pipe.vae_scale_factor * 2
        if self.height % mult:
            raise ConfigError(f"synthesis.height {self.height}: dit360 needs a multiple of {mult}")
        if not cfg.prompts:
            raise ConfigError("synthesis.prompts: empty; dit360 needs at least one indoor prompt")
        self._torch = torch

    def generate_one(self, index: int) -> SynthImage:
        cfg = self.cfg
        prompt = cfg.prompts[index % len(cfg.prompts)]
        seed = cfg.seed * 1_000_003 + index
        gen = self._torch.Generator(device="cpu").manual_seed(seed)
        mult = self.pipe.vae_scale_factor * 2
        roller = LatentRoller(self.height // mult, self.width // mult) if cfg.dit360_roll_latents else None
        out = self.pipe(
            prompt=prompt,
            height=self.height,
            width=self.width,
            num_inference_steps=cfg.dit360_steps,
            guidance_scale=cfg.dit360_guidance,
            max_sequence_length=cfg.dit360_max_sequence_length,
            generator=gen,
            output_type="np",
            callback_on_step_end=roller,
            callback_on_step_end_tensor_inputs=["latents"],
        )
        img = np.asarray(out.images[0], dtype=np.float32)  # [H,W,3] in [0,1]
        rgb = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
        raw_ratio = seam_ratio(rgb)
        rgb = blend_seam(rgb, cfg.seam_band_frac)
        meta = {
            "backend": self.name,
            "prompt": prompt,
            "seed": seed,
            "steps": cfg.dit360_steps,
            "guidance": cfg.dit360_guidance,
            "base": cfg.dit360_base,
            "lora": cfg.dit360_lora,
            "latent_roll_tokens": roller.total if roller else 0,
            "seam_ratio_raw": raw_ratio,
            "seam_ratio": seam_ratio(rgb),
        }
        return SynthImage(key=f"dit360-{cfg.seed:04d}-{index:07d}", rgb=rgb, depth=None, meta=meta)

    def generate(self, n: int) -> Iterator[SynthImage]:
        for i in range(n):
            yield self.generate_one(i)
