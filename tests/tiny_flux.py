"""A tiny random-config FluxPipeline (+ an optional random LoRA), built offline.

Tokenizers are word-level `tokenizers` models wrapped in PreTrainedTokenizerFast; the FluxPipeline
only calls them (padding to max_length, truncation) and reads `model_max_length`."""

from __future__ import annotations

from pathlib import Path

WORDS = ("a 360 degree equirectangular panorama of cozy living room with sofa wooden floor and warm "
         "lamps modern kitchen bright office bedroom bed").split()


def _word_tokenizer(max_len: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "</s>": 2}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>", model_max_length=max_len
    )


def tiny_flux_pipeline(seed: int = 0):
    import torch

    from dap_model.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
    )
    clip = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-05,
        num_attention_heads=4, num_hidden_layers=2, pad_token_id=0, vocab_size=64, hidden_act="gelu",
        projection_dim=32, max_position_embeddings=77,
    ))
    t5 = T5EncoderModel(T5Config(
        vocab_size=64, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
        pad_token_id=0, eos_token_id=2, decoder_start_token_id=0,
    ))
    vae = AutoencoderKL(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
        latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=0.0609, scaling_factor=1.5035,
    )
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=clip, tokenizer=_word_tokenizer(77),
        text_encoder_2=t5, tokenizer_2=_word_tokenizer(512), transformer=transformer,
    )


def save_tiny_flux(base_dir: Path, lora_dir: Path | None = None, seed: int = 0) -> tuple[Path, Path | None]:
    """Save the tiny pipeline (and a random rank-4 LoRA on its attention projections)."""
    import torch

    from dap_model.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from diffusers import FluxPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = tiny_flux_pipeline(seed)
    pipe.save_pretrained(base_dir)
    if lora_dir is None:
        return base_dir, None
    torch.manual_seed(seed + 1)
    pipe.transformer.add_adapter(
        LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    with torch.no_grad():
        for name, p in pipe.transformer.named_parameters():
            if "lora_B" in name:
                p.mul_(20.0)  # a LoRA strong enough to change a tiny random model's output visibly
    FluxPipeline.save_lora_weights(lora_dir, transformer_lora_layers=get_peft_model_state_dict(pipe.transformer))
    return base_dir, lora_dir
