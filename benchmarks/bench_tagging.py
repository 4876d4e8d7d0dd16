"""The builtin tagger: accuracy on real panoramas and simulator renders, and CPU throughput.

    .venv/bin/python benchmarks/bench_tagging.py   (or `make bench`) → benchmarks/results/tagging.json

Accuracy (balanced; a seeded coin-flip tagger beside each figure, expected 0.5):
- `real_loso`: the 46 real labelled panoramas (../shared/real/unlabeled, skipped when absent),
  leave-one-source-out, refitting with the committed C and sim_weight on the other sources plus
  the committed simulator fit set. C and sim_weight were chosen with every source present, so this
  is slightly optimistic; the nested figure (chosen without the held-out source) is recorded in
  `builtin_coefficients.json` and copied here as `real_loso_nested`;
- `sim_heldout`: the committed model on web-style renders of seeds 700000+ (used by nothing else
  but the tests' own held-out check).
Throughput: web-style renders resized to 512x1024 and 256x512; the timing covers
`tagger.tag(batch)` only (feature extraction from uint8 RGB + the logistic model)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dap_model.config import load_config  # noqa: E402
from dap_model.io import atomic_write_text  # noqa: E402
from dap_model.sim import render_sequence  # noqa: E402
from dap_model.tagging import get_tagger  # noqa: E402

SIZES = ((512, 1024), (256, 512))
N_IMAGES = 32
REPEATS = 3


REAL = ROOT.parent / "shared" / "real" / "unlabeled"
SIM_TEST_SEED0 = 700_000


def accuracy() -> dict:
    from dap_model.tagging import fit_builtin as fb
    from dap_model.tagging.builtin import DEFAULT_COEFFICIENTS

    spec = json.loads(DEFAULT_COEFFICIENTS.read_text())
    fo = spec["fitted_on"]
    tagger = get_tagger(load_config("tiny").tagging, backend="builtin")
    coin = np.random.default_rng(fb.RANDOM_SEED)
    out: dict = {"real_loso_nested": fo["real_loso"], "c": fo["c"], "sim_weight": fo["sim"]["weight_vs_real"]}
    imgs, y, _ = fb.render_set(4, 2, 128, SIM_TEST_SEED0)  # 4 scenes x 5 kinds x 2 frames
    pred = np.array([r.scene == "indoor" for r in tagger.tag(imgs)], np.int64)
    out["sim_heldout"] = {**fb.report(y, pred), "seeds": [SIM_TEST_SEED0, SIM_TEST_SEED0 + 3],
                          "random": round(fb.balanced_accuracy(y, coin.integers(0, 2, len(y))), 4)}
    if REAL.is_dir():
        paths, yr, gr = fb.real_set(REAL)
        xr = fb.real_features(paths, spec["height"])
        rng = np.random.default_rng(fb.AUGMENT_SEED)
        s_imgs, ys, _ = fb.render_set(fo["sim"]["scenes_per_kind"], 2, 128, fb.FIT_SEED0)
        aug = [fb.augment(im, rng) for _ in range(fo["sim"]["augmented_copies"]) for im in s_imgs]
        xs = fb.features_of(s_imgs + aug, spec["height"])
        ys = np.tile(ys, 1 + fo["sim"]["augmented_copies"])
        pred = fb.loso_predictions(xr, yr, gr, xs, ys, fo["sim"]["weight_vs_real"], fo["c"])
        out["real_loso"] = {**fb.report(yr, pred), "sources": int(len(set(gr))),
                            "random": round(fb.balanced_accuracy(yr, coin.integers(0, 2, len(yr))), 4)}
    return out


def main() -> int:
    base = []
    for domain in ("indoor", "outdoor"):
        for seed in range(4):
            _, fr = render_sequence(domain, 800_000 + seed, 1, 128, style="web")
            base.append(fr[0].rgb)
    tagger = get_tagger(load_config("tiny").tagging, backend="builtin")
    results = []
    for h, w in SIZES:
        imgs = [cv2.resize(base[i % len(base)], (w, h), interpolation=cv2.INTER_LINEAR) for i in range(N_IMAGES)]
        tagger.tag(imgs[:2])  # warm-up
        times = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            tagger.tag(imgs)
            times.append(time.perf_counter() - t0)
        best = min(times)
        results.append({"height": h, "width": w, "images": N_IMAGES, "repeats": REPEATS,
                        "best_s": round(best, 4), "images_per_s": round(N_IMAGES / best, 1),
                        "median_images_per_s": round(N_IMAGES / float(np.median(times)), 1)})
        print(f"builtin tagger {h}x{w}: {N_IMAGES / best:.1f} images/s (best of {REPEATS})")
    acc = accuracy()
    print(json.dumps({k: v for k, v in acc.items() if k != "real_loso_nested"}, indent=1))
    out = {
        "benchmark": "tagging",
        "accuracy": acc,
        "backend": "builtin",
        "device": "cpu",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "")},
        "results": results,
    }
    path = ROOT / "benchmarks" / "results" / "tagging.json"
    atomic_write_text(path, json.dumps(out, indent=2) + "\n")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
