"""Fit the `builtin` tagger's logistic model on simulator renders and write its JSON.

    python -m dap_model.tagging.fit_builtin [--scenes 40] [--frames 2] [--height 64] \
        [--out dap_model/tagging/builtin_coefficients.json]

Renders `--scenes` indoor and `--scenes` outdoor sequences in the web style (hand-held shake,
sensor noise, exposure and colour jitter), seeds `FIT_SEED0 + i`; extracts `features.FEATURES`;
fits an L2-regularised logistic regression by Newton's method (IRLS) on standardised features;
then measures accuracy on held-out renders (seeds `HELDOUT_SEED0 + i`, never used for fitting)
and records both in the file, with the settings, so the numbers can be reviewed and reproduced."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from dap_model.io import atomic_write_text
from dap_model.tagging.features import FEATURES, erp_features

FIT_SEED0 = 0
HELDOUT_SEED0 = 900_000
SHAKE_DEG = 2.0


def render_set(n_scenes: int, frames: int, height: int, seed0: int) -> tuple[list[np.ndarray], np.ndarray]:
    """→ (rgb uint8 [height, 2·height, 3] list, labels [N] 1 = indoor), web style."""
    from dap_model.sim import render_sequence

    imgs, labels = [], []
    for domain, label in (("indoor", 1), ("outdoor", 0)):
        for i in range(n_scenes):
            _, fr = render_sequence(domain, seed0 + i, frames, height, style="web", shake_deg=SHAKE_DEG)
            imgs.extend(f.rgb for f in fr)
            labels.extend([label] * len(fr))
    return imgs, np.asarray(labels, np.int64)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> tuple[np.ndarray, float]:
    """x [N,F] standardised, y [N] in {0,1} → (weights [F], bias). Newton / IRLS."""
    n, f = x.shape
    xa = np.hstack([x, np.ones((n, 1))])  # [N,F+1]
    w = np.zeros(f + 1)
    reg = np.full(f + 1, l2 * n)
    reg[-1] = 0.0  # bias unregularised
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(xa @ w)))
        grad = xa.T @ (p - y) + reg * w
        hess = (xa * (p * (1 - p))[:, None]).T @ xa + np.diag(reg) + 1e-9 * np.eye(f + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w[:-1], float(w[-1])


def fit(n_scenes: int, frames: int, height: int, l2: float, heldout_scenes: int) -> dict:
    from dap_model.tagging.builtin import LogisticModel

    t0 = time.perf_counter()
    imgs, y = render_set(n_scenes, frames, height, FIT_SEED0)
    x = np.stack([erp_features(im, height) for im in imgs])  # [N,F]
    mean, scale = x.mean(0), x.std(0) + 1e-6
    w, b = fit_logistic((x - mean) / scale, y, l2)
    spec = {
        "features": list(FEATURES),
        "height": height,
        "mean": [round(float(v), 6) for v in mean],
        "scale": [round(float(v), 6) for v in scale],
        "weights": [round(float(v), 6) for v in w],
        "bias": round(b, 6),
    }
    model = LogisticModel(spec)
    train_acc = float(((model.p_indoor(x) >= 0.5) == (y == 1)).mean())
    h_imgs, h_y = render_set(heldout_scenes, frames, height, HELDOUT_SEED0)
    hx = np.stack([erp_features(im, height) for im in h_imgs])
    h_acc = float(((model.p_indoor(hx) >= 0.5) == (h_y == 1)).mean())
    spec["fitted_on"] = {
        "renders": "dap_model.sim.render_sequence(domain, seed, frames, height, style='web', shake_deg=2.0)",
        "domains": ["indoor", "outdoor"],
        "scenes_per_domain": n_scenes,
        "frames_per_scene": frames,
        "seeds": [FIT_SEED0, FIT_SEED0 + n_scenes - 1],
        "l2": l2,
        "train_accuracy": round(train_acc, 4),
        "heldout_seeds": [HELDOUT_SEED0, HELDOUT_SEED0 + heldout_scenes - 1],
        "heldout_images": int(len(h_y)),
        "heldout_accuracy": round(h_acc, 4),
        "fit_seconds": round(time.perf_counter() - t0, 1),
        "command": "python -m dap_model.tagging.fit_builtin " + " ".join(sys.argv[1:]),
    }
    return spec


def main(argv: list[str] | None = None) -> int:
    from dap_model.tagging.builtin import DEFAULT_COEFFICIENTS

    ap = argparse.ArgumentParser(prog="python -m dap_model.tagging.fit_builtin", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=30, help="sequences per domain for fitting")
    ap.add_argument("--frames", type=int, default=2, help="frames per sequence")
    ap.add_argument("--height", type=int, default=64, help="render and feature height (width = 2 x height)")
    ap.add_argument("--l2", type=float, default=0.1)
    ap.add_argument("--heldout-scenes", type=int, default=15, help="held-out sequences per domain")
    ap.add_argument("--out", type=Path, default=DEFAULT_COEFFICIENTS)
    args = ap.parse_args(argv)
    spec = fit(args.scenes, args.frames, args.height, args.l2, args.heldout_scenes)
    atomic_write_text(args.out, json.dumps(spec, indent=2) + "\n")
    print(json.dumps(spec["fitted_on"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
