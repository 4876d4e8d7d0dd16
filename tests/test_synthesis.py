"""Indoor synthesis: seam tools, the DiT-360 path on a tiny random FluxPipeline (+ random LoRA),
the builtin simulator path and the store layout."""

from __future__ import annotations

import numpy as np
import pytest

from dap_model.config import VideoConfig, load_config
from dap_model.errors import ConfigError
from dap_model.synthesis import get_synthesizer
from dap_model.synthesis.seam import blend_seam, pack_latents, roll_packed_latents, unpack_latents
from dap_model.video.horizon import seam_ratio


def _seamed_image(h: int = 32, w: int = 64) -> np.ndarray:
    """Smooth horizontally, with a large jump at the wrap (a visible seam)."""
    u = np.arange(w)[None, :, None]
    v = np.arange(h)[:, None, None]
    img = 20 + 3 * u + v + np.array([0, 10, 20])[None, None, :]
    return np.clip(img, 0, 255).astype(np.uint8)


def test_seam_ratio_and_blend():
    img = _seamed_image()
    assert seam_ratio(img) > 1.0  # past unrelated columns (1)
    out = blend_seam(img, band_frac=0.1)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert seam_ratio(out) < 0.1  # like any pair of neighbouring columns (0)
    band = round(0.1 * img.shape[1])
    assert np.array_equal(out[:, band:-band], img[:, band:-band])  # only the bands change
    rolled = np.roll(out, out.shape[1] // 2, axis=1)  # the old seam, now in the middle, is smooth
    mid = out.shape[1] // 2
    assert np.abs(rolled[:, mid].astype(int) - rolled[:, mid - 1]).mean() < 3 * np.abs(np.diff(img.astype(int), axis=1)).mean()
    assert np.array_equal(blend_seam(img, 0.0), img)


def test_latent_pack_roll_roundtrip():
    import torch

    packed = torch.randn(2, 4 * 8, 12)  # [B, h2*w2, C*4]
    lat = unpack_latents(packed, 4, 8)  # [B,3,8,16]
    assert lat.shape == (2, 3, 8, 16)
    assert torch.equal(pack_latents(lat), packed)
    rolled = roll_packed_latents(packed, 4, 8, 3)
    assert torch.equal(unpack_latents(rolled, 4, 8), torch.roll(lat, 6, dims=3))


@pytest.fixture(scope="module")
def tiny_flux_dirs(tmp_path_factory):
    from tests.tiny_flux import save_tiny_flux

    root = tmp_path_factory.mktemp("flux")
    return save_tiny_flux(root / "base", root / "lora")


def _dit_cfg(base, lora, **kw):
    over = {
        "synthesis.backend": "dit360",
        "synthesis.dit360_base": str(base),
        "synthesis.dit360_lora": str(lora) if lora else "",
        "synthesis.dit360_steps": 3,
        "synthesis.height": 32,
        "synthesis.seam_band_frac": 0.1,
    }
    over.update(kw)
    return load_config("test", over)


@pytest.mark.slow
def test_dit360_tiny_pipeline_end_to_end(tiny_flux_dirs):
    base, lora = tiny_flux_dirs
    cfg = _dit_cfg(base, lora)
    synth = get_synthesizer(cfg.synthesis)
    imgs = list(synth.generate(2))
    assert [im.key for im in imgs] == ["dit360-0000-0000000", "dit360-0000-0000001"]
    for i, im in enumerate(imgs):
        assert im.rgb.shape == (32, 64, 3) and im.rgb.dtype == np.uint8
        assert im.depth is None  # generated images have no depth
        assert im.meta["prompt"] == cfg.synthesis.prompts[i]
        assert im.meta["latent_roll_tokens"] > 0
        assert im.meta["seam_ratio"] == pytest.approx(seam_ratio(im.rgb))
        assert im.meta["seam_ratio"] <= VideoConfig().seam_tolerance  # the web-frame check takes it for a 360° seam
        assert im.meta["seam_ratio"] <= im.meta["seam_ratio_raw"]
        assert im.rgb.std() > 0
    assert not np.array_equal(imgs[0].rgb, imgs[1].rgb)  # different seed and prompt

    again = get_synthesizer(cfg.synthesis).generate_one(0)  # deterministic in (seed, index)
    assert np.array_equal(again.rgb, imgs[0].rgb)

    no_lora = get_synthesizer(_dit_cfg(base, None).synthesis).generate_one(0)
    assert not np.array_equal(no_lora.rgb, imgs[0].rgb)  # the LoRA was really loaded and applied

    unrolled = get_synthesizer(_dit_cfg(base, lora, **{"synthesis.dit360_roll_latents": False}).synthesis).generate_one(0)
    assert unrolled.meta["latent_roll_tokens"] == 0
    assert not np.array_equal(unrolled.rgb, imgs[0].rgb)


@pytest.mark.slow
def test_dit360_bad_settings(tiny_flux_dirs, tmp_path):
    base, lora = tiny_flux_dirs
    with pytest.raises(ConfigError, match="synthesis.height"):
        get_synthesizer(_dit_cfg(base, lora, **{"synthesis.height": 33}).synthesis)
    from dap_model.errors import InputError

    with pytest.raises(InputError, match="dit360_base"):
        get_synthesizer(_dit_cfg(tmp_path / "missing", None).synthesis)
    with pytest.raises(ConfigError, match="synthesis.backend"):
        get_synthesizer(load_config("test", {"synthesis.backend": "nope"}).synthesis)
