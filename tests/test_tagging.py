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


# ---------------------------------------------------------------- builtin: measured accuracy

HELDOUT_TEST_SEED0 = 700_000  # disjoint from the fit (0..) and the fit script's held-out (900 000..) seeds


@pytest.fixture(scope="module")
def heldout_web_frames():
    """8 indoor + 8 outdoor web-style renders of scenes never used for fitting."""
    from dap_model.sim import render_sequence

    imgs, labels = [], []
    for domain in ("indoor", "outdoor"):
        for i in range(8):
            _, fr = render_sequence(domain, HELDOUT_TEST_SEED0 + i, 1, 64, style="web", shake_deg=2.0)
            imgs.append(fr[0].rgb)
            labels.append(domain)
    return imgs, labels


def test_builtin_accuracy_on_heldout_web_frames(heldout_web_frames):
    imgs, labels = heldout_web_frames
    res = get_tagger(load_config("test").tagging).tag(imgs)
    assert all(r.ok for r in res)
    acc = float(np.mean([r.scene == y for r, y in zip(res, labels)]))
    print(f"builtin held-out web-style accuracy: {acc:.3f} on {len(labels)} frames")
    assert acc >= 0.8
    for domain in ("indoor", "outdoor"):  # neither class is given up for the other
        assert np.mean([r.scene == y for r, y in zip(res, labels) if y == domain]) >= 0.6


def test_builtin_coefficients_record_their_fit():
    from dap_model.tagging.builtin import DEFAULT_COEFFICIENTS
    from dap_model.tagging.features import FEATURES

    spec = json.loads(DEFAULT_COEFFICIENTS.read_text())
    fit = spec["fitted_on"]
    assert spec["features"] == list(FEATURES)
    assert fit["real"]["images"] == 46 and fit["real"]["sources"] >= 10
    assert fit["real_loso"]["balanced_accuracy"] >= 0.9  # nested leave-one-source-out
    assert fit["real_loso"]["indoor"] >= 0.85 and fit["real_loso"]["outdoor"] >= 0.85
    assert fit["sim_heldout"]["balanced_accuracy"] >= 0.9
    assert fit["sim_heldout"]["seeds"][0] > fit["sim"]["seeds"][1]
    assert abs(fit["random"]["real"] - 0.5) < 0.2 and fit["random"]["expected"] == 0.5
    assert fit["c"] in fit["c_grid"] and fit["sim"]["weight_vs_real"] in fit["sim_weight_grid"]


REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "real" / "unlabeled"


@pytest.mark.skipif(not (REAL / "indoor").is_dir(), reason="../shared/real absent")
def test_fit_functions_on_real_panoramas_leave_one_source_out():
    """The fit's own pieces on the real labelled panoramas: sources from the manifest, features,
    a leave-one-source-out run at the committed C (simulator renders omitted here for speed), and
    the committed model on every real image (its training set: reported, not a test of transfer)."""
    from dap_model.tagging import fit_builtin as fb
    from dap_model.tagging.builtin import DEFAULT_COEFFICIENTS

    paths, y, groups = fb.real_set(REAL)
    assert len(paths) == 46 and int(y.sum()) == 22 and "googlearchive/vrview" in set(groups)
    x = fb.real_features(paths, 64)
    spec = json.loads(DEFAULT_COEFFICIENTS.read_text())
    empty = np.zeros((0, x.shape[1]))
    pred = fb.loso_predictions(x, y, groups, empty, np.zeros(0, np.int64), 0.0, spec["fitted_on"]["c"])
    bacc = fb.balanced_accuracy(y, pred)
    print(f"real-only leave-one-source-out balanced accuracy: {bacc:.3f}")
    assert bacc >= 0.8
    res = get_tagger(load_config("test").tagging).tag([fb.read_image_rgb(p) for p in paths])
    assert fb.balanced_accuracy(y, np.array([r.scene == "indoor" for r in res], np.int64)) >= 0.95


def test_best_curve_follows_a_smooth_closed_junction_not_a_jagged_one():
    from dap_model.tagging.features import best_curve_totals

    r, c = 20, 64
    smooth = np.zeros((r, c), np.float32)
    rows = np.round(8 + 5 * np.sin(np.linspace(0, 2 * np.pi, c, endpoint=False))).astype(int)  # |Δrow| ≤ 1
    smooth[rows, np.arange(c)] = 1.0
    jagged = np.zeros((r, c), np.float32)
    jagged[np.where(np.arange(c) // 8 % 2 == 0, 3, 15), np.arange(c)] = 1.0  # skyline: 12-row jumps every 8 columns
    noise = np.random.default_rng(0).random((r, c)).astype(np.float32) * 0.1
    tot = best_curve_totals(np.stack([smooth, jagged, noise]))
    assert tot[0] == pytest.approx(1.0)
    assert tot[1] < 0.75  # each jump costs the path ≥ 11 columns off the edge
    assert noise.mean() < tot[2] < 0.1  # the best wander through noise is still far from an edge


def test_builtin_enclosure_features_ignore_palette():
    """Channel permutation and brightness inversion keep every colour step: same enclosure
    features (the appearance features are about colour and do change)."""
    from dap_model.sim import render_sequence
    from dap_model.tagging.features import appearance_features, enclosure_features

    _, fr = render_sequence("room", 700_100, 1, 64, style="web", shake_deg=2.0)
    img = fr[0].rgb
    f0 = enclosure_features(img)
    np.testing.assert_allclose(enclosure_features(np.ascontiguousarray(img[..., [2, 0, 1]])), f0, atol=1e-5)
    np.testing.assert_allclose(enclosure_features(255 - img), f0, atol=0.03)  # float ties at the threshold flip a column or two
    assert not np.allclose(enclosure_features(np.ascontiguousarray(img[::-1])), f0)  # upside down is not the same room
    a0 = appearance_features(img)
    np.testing.assert_allclose(appearance_features(np.roll(img, 37, axis=1)), a0, atol=0.01)  # yaw: only resampling at the seam
    assert not np.allclose(appearance_features(np.ascontiguousarray(img[..., ::-1])), a0)  # blue ↔ red does


@pytest.fixture(scope="module")
def fixture_frames():
    import cv2

    if not FIXTURE.is_file():
        pytest.skip(f"fixture video not found: {FIXTURE}")
    cap = cv2.VideoCapture(str(FIXTURE))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(cv2.resize(bgr, (256, 128), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


@pytest.mark.slow
def test_builtin_tags_every_fixture_frame(fixture_frames):
    frames = fixture_frames
    assert len(frames) == 360
    res = get_tagger(load_config("test").tagging).tag(frames)
    assert all(r.ok and r.scene in ("indoor", "outdoor") for r in res)
    indoor = float(np.mean([r.scene == "indoor" for r in res]))
    print(f"builtin fixture (indoor room) accuracy: {indoor:.3f} on {len(res)} frames")


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="known failure: the CG test room (saturated green ceiling and floor, "
                   "flat grid walls) reads as outdoor to the colour features fitted on real panoramas")
def test_builtin_fixture_video_is_indoor(fixture_frames):
    """Held-out CG room (never used in fitting): ≥ 90 % of every 15th frame indoor. Strict xfail:
    if the tagger starts getting it right, this fails and the marker must go."""
    sampled = fixture_frames[::15]  # 24 frames
    res = get_tagger(load_config("test").tagging).tag(sampled)
    indoor = float(np.mean([r.ok and r.scene == "indoor" for r in res]))
    print(f"builtin fixture sampled-frame indoor rate: {indoor:.3f} on {len(res)} frames")
    assert indoor >= 0.9


def test_builtin_failures_are_not_guessed(tmp_path):
    tagger = get_tagger(load_config("test").tagging)
    res = tagger.tag([None, np.full((32, 64, 3), 7, np.uint8), np.zeros((4, 4, 3), np.uint8)])
    assert [r.ok for r in res] == [False, False, False]
    assert all(r.scene is None and r.confidence == 0.0 and r.reason for r in res)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"features": ["x"], "mean": [0], "scale": [1], "weights": [1], "bias": 0, "height": 64}))
    with pytest.raises(ConfigError, match="do not match"):
        get_tagger(load_config("test", {"tagging.builtin_coefficients": str(bad)}).tagging)


# ---------------------------------------------------------------- dap tag


def test_cli_tag_json_lines_and_failures(tmp_path, heldout_web_frames, capsys):
    import cv2

    from dap_model.cli import main

    imgs, labels = heldout_web_frames
    good = tmp_path / "indoor.png"
    cv2.imwrite(str(good), cv2.cvtColor(imgs[0], cv2.COLOR_RGB2BGR))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    missing = tmp_path / "missing.jpg"
    assert main(["tag", str(good), str(corrupt), str(missing), "--profile", "test"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [x["path"] for x in lines] == [str(good), str(corrupt), str(missing)]
    assert lines[0]["scene"] in ("indoor", "outdoor") and 0.5 <= lines[0]["confidence"] <= 1 and "ok" not in lines[0]
    assert lines[1]["ok"] is False and "not a decodable image" in lines[1]["reason"] and lines[1]["scene"] is None
    assert lines[2]["ok"] is False and lines[2]["reason"] == "no such file"

    assert main(["tag", str(corrupt), "--profile", "test"]) == 2  # nothing readable
    assert "none of the 1 image(s) could be read" in capsys.readouterr().err
    assert main(["tag", str(good), "--backend", "nope", "--profile", "test"]) == 2
    assert "tagging.backend 'nope'" in capsys.readouterr().err
