"""`qwen2-vl` tagger: a Qwen2-VL / Qwen2.5-VL chat model asked "indoor or outdoor?".

The answer is read from the next-token distribution after the assistant turn opens, not from
generated text: p(indoor) is the probability mass on the first tokens of the indoor spellings
(`tagging.indoor_answers`), likewise outdoor, and the confidence is their normalised ratio.
Batches are left-padded so the next-token position is the last column for every row."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dap_model.errors import ConfigError, InputError
from dap_model.tagging.base import TagResult, Tagger, register_tagger

SUPPORTED_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl")


def answer_token_ids(tokenizer, mine: Sequence[str], other: Sequence[str]) -> list[int]:
    """First-token ids of the spellings in `mine` that cannot be the start of a word in `other`.

    A first token is kept only if its text (stripped) is a non-empty prefix of its own word and
    a prefix of no word of the other class: `' indoor'` split as `'Ġ' + 'indoor'` contributes
    nothing, and `'in'` is dropped if the other class lists `'inside'`."""
    other_words = [w.strip().lower() for w in other]
    ids: list[int] = []
    for word in mine:
        enc = tokenizer(word, add_special_tokens=False)["input_ids"]
        if not enc:
            continue
        tid = int(enc[0])
        text = tokenizer.decode([tid]).strip().lower()
        if not text or not word.strip().lower().startswith(text):
            continue
        if any(o.startswith(text) for o in other_words):
            continue
        if tid not in ids:
            ids.append(tid)
    return ids


def build_messages(prompt: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


def score_next_token(logits, indoor_ids: list[int], outdoor_ids: list[int]):
    """logits [B,V] → (p_indoor_normalised [B], answer_mass [B]) as float64 numpy."""
    import torch

    probs = torch.softmax(logits.float(), dim=-1)  # [B,V]
    p_in = probs[:, indoor_ids].sum(-1)  # [B]
    p_out = probs[:, outdoor_ids].sum(-1)  # [B]
    mass = p_in + p_out
    p = p_in / mass.clamp_min(torch.finfo(torch.float32).tiny)
    return p.double().cpu().numpy(), mass.double().cpu().numpy()


def _load(model_id: str, dtype, device):
    from dap_model.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    if not model_id:
        raise ConfigError(
            "tagging.model is empty: set a hub id or local path for the qwen2-vl backend, "
            "e.g. --set tagging.model=Qwen/Qwen2-VL-2B-Instruct"
        )
    try:
        config = AutoConfig.from_pretrained(model_id)
    except (OSError, ValueError) as err:
        raise InputError(f"tagging.model {model_id!r}: cannot load its config ({err})") from None
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            f"tagging.model {model_id!r}: model type {config.model_type!r} is not a Qwen2-VL chat model "
            f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    try:
        processor = AutoProcessor.from_pretrained(model_id)
        model = AutoModelForImageTextToText.from_pretrained(model_id, dtype=dtype)
    except (OSError, ValueError) as err:
        raise InputError(f"tagging.model {model_id!r}: cannot load ({err})") from None
    return model.to(device).eval(), processor


@register_tagger("qwen2-vl")
class Qwen2VLTagger(Tagger):
    name = "qwen2-vl"

    def __init__(self, cfg, model=None, processor=None):
        import torch

        from dap_model.accel import resolve_device, resolve_dtype

        self.cfg = cfg
        if model is None or processor is None:
            self.device = resolve_device(cfg.device)
            self.dtype = resolve_dtype(cfg.dtype, self.device)
            model, processor = _load(cfg.model, self.dtype, self.device)
        else:
            self.device = next(model.parameters()).device
            self.dtype = next(model.parameters()).dtype
        self.model = model.eval()
        self.processor = processor
        self.processor.tokenizer.padding_side = "left"
        if self.processor.tokenizer.pad_token is None:
            self.processor.tokenizer.pad_token = self.processor.tokenizer.eos_token
        tok = self.processor.tokenizer
        self.indoor_ids = answer_token_ids(tok, cfg.indoor_answers, cfg.outdoor_answers)
        self.outdoor_ids = answer_token_ids(tok, cfg.outdoor_answers, cfg.indoor_answers)
        if not self.indoor_ids or not self.outdoor_ids:
            raise ConfigError(
                "tagging.indoor_answers / tagging.outdoor_answers: no unambiguous first token for "
                f"{'indoor' if not self.indoor_ids else 'outdoor'} with this tokenizer"
            )
        self.prompt_text = self.processor.apply_chat_template(
            build_messages(cfg.prompt), add_generation_prompt=True, tokenize=False
        )
        self._torch = torch

    def _batch_inputs(self, images: list[np.ndarray]):
        size = {"shortest_edge": 56 * 56, "longest_edge": int(self.cfg.max_pixels)}
        inputs = self.processor(
            text=[self.prompt_text] * len(images),
            images=list(images),
            padding=True,
            return_tensors="pt",
            images_kwargs={"size": size},
        )
        out = {}
        for k, v in inputs.items():
            if hasattr(v, "to"):
                v = v.to(self.device)
                if k == "pixel_values":
                    v = v.to(self.dtype)
            out[k] = v
        return out  # input_ids [B,L] left-padded, pixel_values [sum(patches), C*T*P*P], image_grid_thw [B,3]

    def _score_batch(self, images: list[np.ndarray]) -> list[TagResult]:
        inputs = self._batch_inputs(images)
        with self._torch.inference_mode():
            logits = self.model(**inputs, logits_to_keep=1).logits[:, -1, :]  # [B,V]
        p_in, mass = score_next_token(logits, self.indoor_ids, self.outdoor_ids)
        out = []
        for p, m in zip(p_in, mass):
            if m < self.cfg.min_answer_mass:
                out.append(TagResult.failed(f"model did not answer indoor/outdoor (answer mass {m:.3f})"))
            else:
                out.append(TagResult.from_p_indoor(p))
        return out

    def _tag_valid(self, images: list[np.ndarray]) -> list[TagResult]:
        results: list[TagResult] = []
        bs = self.cfg.batch_size
        for i in range(0, len(images), bs):
            chunk = images[i : i + bs]
            try:
                results.extend(self._score_batch(chunk))
            except (ValueError, RuntimeError) as err:
                if len(chunk) == 1:
                    results.append(TagResult.failed(f"qwen2-vl could not process the image: {err}"))
                    continue
                for img in chunk:  # isolate the image that broke the batch
                    try:
                        results.extend(self._score_batch([img]))
                    except (ValueError, RuntimeError) as err1:
                        results.append(TagResult.failed(f"qwen2-vl could not process the image: {err1}"))
        return results
