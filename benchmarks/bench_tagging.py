"""Tagging throughput of the builtin backend on CPU (images/s) at 512x1024 and 256x512.

    .venv/bin/python benchmarks/bench_tagging.py   (or `make bench`) → benchmarks/results/tagging.json

Inputs are web-style simulator renders (indoor and outdoor) resized to each size; the timing
covers `tagger.tag(batch)` only (feature extraction from uint8 RGB + the logistic model)."""

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
    out = {
        "benchmark": "tagging",
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
