"""Scene tagging: the Qwen2-VL path on tiny random models (prompt, batching, answer-token
scoring), the builtin tagger's measured accuracy, failures, and `dap tag`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dap_model.config import load_config
from dap_model.errors import ConfigError
from dap_model.tagging import TagResult, get_tagger
from dap_model.tagging.qwen2vl import answer_token_ids, score_next_token

FIXTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "gvr_testRoom1_1920Mono.mp4"


# ---------------------------------------------------------------- qwen2-vl on tiny random models


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def tiny_qwen_dir(request, tmp_path_factory):
    from tests.tiny_qwen import save_tiny

    return save_tiny(tmp_path_factory.mktemp(request.param), request.param)


def _qwen_cfg(model_dir, **kw):
    over = {
        "tagging.backend": "qwen2-vl",
        "tagging.model": str(model_dir),
        "tagging.batch_size": 3,
        "tagging.max_pixels": 56 * 112,
    }
    over.update(kw)
    return load_config("test", over).tagging


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = [(32, 64), (56, 56), (28, 140), (40, 80)]  # different token counts → padding
    return [rng.integers(0, 256, (*shapes[i % 4], 3), dtype=np.uint8) for i in range(n)]


def test_answer_tokens_are_unambiguous_first_tokens():
    from tests.tiny_qwen import tiny_tokenizer

    tok = tiny_tokenizer()
    cfg = load_config("test").tagging
    ind = answer_token_ids(tok, cfg.indoor_answers, cfg.outdoor_answers)
    out = answer_token_ids(tok, cfg.outdoor_answers, cfg.indoor_answers)
    assert ind and out and not set(ind) & set(out)
    for tid in ind:
        assert "indoor".startswith(tok.decode([tid]).strip().lower())
    for tid in out:
        assert "outdoor".startswith(tok.decode([tid]).strip().lower())
    # a bare space token (" indoor" → "Ġ" + ...) or a prefix shared with the other class is dropped
    assert answer_token_ids(tok, [" x"], ["x"]) == []
    assert answer_token_ids(tok, ["in"], ["inside"]) == []


def test_score_next_token_math():
    import torch

    logits = torch.full((2, 10), -1e4)
    logits[0, 3], logits[0, 5] = 0.0, 0.0  # indoor ids {3,4}, outdoor {5}
    logits[0, 4] = float(np.log(3.0))  # p(3)+p(4) = 4 × p(5)
    logits[1, 5], logits[1, 7] = 2.0, 2.0  # half the mass on a non-answer token
    p, mass = score_next_token(logits, [3, 4], [5])
    assert p[0] == pytest.approx(0.8) and mass[0] == pytest.approx(1.0)
    assert p[1] == pytest.approx(0.0, abs=1e-6) and mass[1] == pytest.approx(0.5)


def test_qwen_tagger_end_to_end_batched_equals_single(tiny_qwen_dir):
    tagger = get_tagger(_qwen_cfg(tiny_qwen_dir))
    assert tagger.processor.tokenizer.padding_side == "left"
    assert "<|image_pad|>" in tagger.prompt_text and tagger.prompt_text.endswith("<|im_start|>assistant\n")
    assert "indoors or outdoors" in tagger.prompt_text
    imgs = _images(7)
    inputs = tagger._batch_inputs(imgs[:3])
    assert inputs["input_ids"].shape[0] == 3
    assert (inputs["attention_mask"][:, -1] == 1).all()  # left padding: last column is real
    assert (inputs["attention_mask"] == 0).any()  # different image sizes → some padding
    batched = tagger.tag(imgs)
    single = get_tagger(_qwen_cfg(tiny_qwen_dir, **{"tagging.batch_size": 1})).tag(imgs)
    for a, b in zip(batched, single):
        assert a.ok and b.ok and a.scene in ("indoor", "outdoor")
        assert 0.5 <= a.confidence <= 1.0
        assert a.scene == b.scene and a.confidence == pytest.approx(b.confidence, abs=1e-4)


def test_qwen_tagger_reads_answer_token_probabilities(tiny_qwen_dir):
    """Point the LM head at the last hidden state of one image: the answer must follow."""
    import torch

    tagger = get_tagger(_qwen_cfg(tiny_qwen_dir, **{"tagging.batch_size": 2}))
    imgs = _images(2, seed=1)
    head = tagger.model.get_output_embeddings()
    with torch.no_grad():
        head.weight.zero_()
    even = tagger.tag(imgs)  # all logits equal → p_indoor = n_indoor / (n_indoor + n_outdoor)
    n_in, n_out = len(tagger.indoor_ids), len(tagger.outdoor_ids)
    expect = TagResult.from_p_indoor(n_in / (n_in + n_out))
    assert all(r.scene == expect.scene and r.confidence == pytest.approx(expect.confidence, abs=1e-5) for r in even)

    with torch.no_grad():
        out = tagger.model(**tagger._batch_inputs(imgs[:1]), output_hidden_states=True)
        h = out.hidden_states[-1][0, -1]  # [D] final hidden state at the answer position
        for tid in tagger.outdoor_ids:
            head.weight[tid] = 8.0 * h / h.norm() ** 2  # logit = 8 for image 0
    r0 = tagger.tag(imgs[:1])[0]
    assert r0.scene == "outdoor" and r0.confidence > 0.99

    strict = get_tagger(_qwen_cfg(tiny_qwen_dir, **{"tagging.min_answer_mass": 0.9}))
    with torch.no_grad():
        strict.model.get_output_embeddings().weight.zero_()
    failed = strict.tag(imgs)
    assert all(not r.ok and "answer mass" in r.reason for r in failed)


def test_qwen_tagger_failures_and_config_errors(tiny_qwen_dir, tmp_path):
    tagger = get_tagger(_qwen_cfg(tiny_qwen_dir))
    good = _images(1)[0]
    res = tagger.tag([None, good, np.zeros((32, 64, 3), np.uint8), np.zeros((32, 64), np.float32)])
    assert [r.ok for r in res] == [False, True, False, False]
    assert res[0].reason == "unreadable image" and "flat colour" in res[2].reason and "uint8" in res[3].reason
    assert res[0].scene is None and res[0].confidence == 0.0
    with pytest.raises(ConfigError, match="tagging.model is empty"):
        get_tagger(_qwen_cfg(""))
    with pytest.raises(ConfigError, match="no unambiguous first token"):
        get_tagger(_qwen_cfg(tiny_qwen_dir, **{"tagging.indoor_answers": [" "]}))
    with pytest.raises(ConfigError, match="tagging.backend"):
        get_tagger(load_config("test", {"tagging.backend": "nope"}).tagging)
