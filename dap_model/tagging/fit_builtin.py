"""Fit the `builtin` tagger's logistic model on simulator renders and write its JSON.

    python -m dap_model.tagging.fit_builtin [--scenes 16] [--frames 2] [--render-height 128] \
        [--height 64] [--augment 3] [--out dap_model/tagging/builtin_coefficients.json]

Renders `--scenes` sequences of every simulator kind in the web style (hand-held shake, sensor
noise, exposure and colour jitter), seeds `FIT_SEED0 + i`: indoor = rooms, corridor, room (a single
empty box room), outdoor = city, rural. Each render is used as is and in `--augment` appearance-
augmented copies (`augment`: channel permutation, hue rotation, brightness inversion, white
balance, gamma/contrast, noise, blur, yaw roll, mirror), so that the model cannot lean on the
simulator's palette. Extracts `features.FEATURES` at `--height`; fits a class-balanced
L2-regularised logistic regression by Newton's method (IRLS) on standardised features; then
measures accuracy on held-out renders (seeds `HELDOUT_SEED0 + i`, never used for fitting), plain
and augmented, per class and per kind, and records all of it in the file with the settings, so the
numbers can be reviewed and reproduced. No real footage is used."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from dap_model.io import atomic_write_text
from dap_model.tagging.features import FEATURES, erp_features

FIT_SEED0 = 0
HELDOUT_SEED0 = 900_000
AUGMENT_SEED = 12_345
SHAKE_DEG = 2.0
KINDS = {"rooms": 1, "corridor": 1, "room": 1, "city": 0, "rural": 0}  # kind → label (1 = indoor)


def render_set(n_scenes: int, frames: int, height: int, seed0: int) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """→ (rgb uint8 [height, 2·height, 3] list, labels [N] 1 = indoor, kinds [N]), web style."""
    from dap_model.sim import render_sequence

    imgs, labels, kinds = [], [], []
    for kind, label in KINDS.items():
        for i in range(n_scenes):
            _, fr = render_sequence(kind, seed0 + i, frames, height, style="web", shake_deg=SHAKE_DEG)
            imgs.extend(f.rgb for f in fr)
            labels.extend([label] * len(fr))
            kinds.extend([kind] * len(fr))
    return imgs, np.asarray(labels, np.int64), kinds


def augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 [H,W,3] → uint8 [H,W,3] with a random palette and camera: the geometry is kept."""
    x = img[..., rng.permutation(3)]
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + int(rng.integers(0, 180))) % 180  # hue rotation
    sat = hsv[..., 1].astype(np.float32) * rng.uniform(0.3, 2.0)
    hsv[..., 1] = np.clip(sat, 0, 255).astype(np.uint8)
    f = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32) / 255.0  # [H,W,3]
    if rng.random() < 0.3:
        f = 1.0 - f  # brightness inversion
    f = f * rng.uniform(0.7, 1.3, 3)  # white balance
    f = np.clip(f, 0, 1) ** np.exp(rng.uniform(-0.7, 0.7))  # gamma
    m = f.mean()
    f = m + (f - m) * rng.uniform(0.5, 1.4) + rng.uniform(-0.15, 0.15)  # contrast, brightness
    if rng.random() < 0.5:
        f = cv2.GaussianBlur(f, (0, 0), rng.uniform(0.3, 1.5))
    f = f + rng.normal(0.0, rng.uniform(0.0, 0.04), f.shape)
    f = np.roll(f, int(rng.integers(0, f.shape[1])), axis=1)  # yaw
    if rng.random() < 0.5:
        f = f[:, ::-1]  # mirror
    return np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)


def features_of(imgs: list[np.ndarray], height: int) -> np.ndarray:
    return np.stack([erp_features(im, height) for im in imgs])  # [N,F]


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50,
                 sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """x [N,F] standardised, y [N] in {0,1}, weights [N] (mean 1) → (weights [F], bias). Newton / IRLS."""
    n, f = x.shape
    sw = np.ones(n) if sample_weight is None else sample_weight
    xa = np.hstack([x, np.ones((n, 1))])  # [N,F+1]
    w = np.zeros(f + 1)
    reg = np.full(f + 1, l2 * n)
    reg[-1] = 0.0  # bias unregularised
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(xa @ w)))
        grad = xa.T @ (sw * (p - y)) + reg * w
        hess = (xa * (sw * p * (1 - p))[:, None]).T @ xa + np.diag(reg) + 1e-9 * np.eye(f + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w[:-1], float(w[-1])


def accuracy_report(model, x: np.ndarray, y: np.ndarray, kinds: list[str]) -> dict:
    ok = (model.p_indoor(x) >= 0.5) == (y == 1)  # [N]
    kinds_a = np.asarray(kinds)
    return {
        "accuracy": round(float(ok.mean()), 4),
        "indoor": round(float(ok[y == 1].mean()), 4),
        "outdoor": round(float(ok[y == 0].mean()), 4),
        "per_kind": {k: round(float(ok[kinds_a == k].mean()), 4) for k in KINDS},
        "images": int(len(y)),
    }


def fit(n_scenes: int, frames: int, render_height: int, height: int, n_aug: int, l2: float,
        heldout_scenes: int) -> dict:
    from dap_model.tagging.builtin import LogisticModel

    t0 = time.perf_counter()
    rng = np.random.default_rng(AUGMENT_SEED)
    imgs, y, kinds = render_set(n_scenes, frames, render_height, FIT_SEED0)
    aug = [augment(im, rng) for _ in range(n_aug) for im in imgs]
    x = features_of(imgs + aug, height)  # [N·(1+A),F]
    y_all = np.tile(y, 1 + n_aug)
    kinds_all = kinds * (1 + n_aug)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    n1 = max(int(y_all.sum()), 1)
    sw = np.where(y_all == 1, len(y_all) / (2.0 * n1), len(y_all) / (2.0 * max(len(y_all) - n1, 1)))  # class balance
    w, b = fit_logistic((x - mean) / scale, y_all, l2, sample_weight=sw)
    spec = {
        "features": list(FEATURES),
        "height": height,
        "mean": [round(float(v), 6) for v in mean],
        "scale": [round(float(v), 6) for v in scale],
        "weights": [round(float(v), 6) for v in w],
        "bias": round(b, 6),
    }
    model = LogisticModel(spec)
    train = accuracy_report(model, x, y_all, kinds_all)
    h_imgs, h_y, h_kinds = render_set(heldout_scenes, frames, render_height, HELDOUT_SEED0)
    h_rng = np.random.default_rng(AUGMENT_SEED + 1)
    heldout = accuracy_report(model, features_of(h_imgs, height), h_y, h_kinds)
    heldout_aug = accuracy_report(model, features_of([augment(im, h_rng) for im in h_imgs], height), h_y, h_kinds)
    spec["fitted_on"] = {
        "renders": f"dap_model.sim.render_sequence(kind, seed, {frames}, {render_height}, style='web', shake_deg={SHAKE_DEG})",
        "kinds": dict(KINDS),
        "scenes_per_kind": n_scenes,
        "frames_per_scene": frames,
        "augmented_copies": n_aug,
        "augment_seed": AUGMENT_SEED,
        "seeds": [FIT_SEED0, FIT_SEED0 + n_scenes - 1],
        "l2": l2,
        "class_balanced": True,
        "train": train,
        "heldout_seeds": [HELDOUT_SEED0, HELDOUT_SEED0 + heldout_scenes - 1],
        "heldout_images": heldout["images"],
        "heldout_accuracy": heldout["accuracy"],
        "heldout": heldout,
        "heldout_augmented": heldout_aug,
        "real_footage_used": False,
        "fit_seconds": round(time.perf_counter() - t0, 1),
        "command": "python -m dap_model.tagging.fit_builtin " + " ".join(sys.argv[1:]),
    }
    return spec


def main(argv: list[str] | None = None) -> int:
    from dap_model.tagging.builtin import DEFAULT_COEFFICIENTS

    ap = argparse.ArgumentParser(prog="python -m dap_model.tagging.fit_builtin", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=16, help="sequences per scene kind for fitting")
    ap.add_argument("--frames", type=int, default=2, help="frames per sequence")
    ap.add_argument("--render-height", type=int, default=128, help="render height (width = 2 x height)")
    ap.add_argument("--height", type=int, default=64, help="feature height (renders are resized to it)")
    ap.add_argument("--augment", type=int, default=3, help="appearance-augmented copies per render")
    ap.add_argument("--l2", type=float, default=0.01)
    ap.add_argument("--heldout-scenes", type=int, default=8, help="held-out sequences per scene kind")
    ap.add_argument("--out", type=Path, default=DEFAULT_COEFFICIENTS)
    args = ap.parse_args(argv)
    spec = fit(args.scenes, args.frames, args.render_height, args.height, args.augment, args.l2, args.heldout_scenes)
    atomic_write_text(args.out, json.dumps(spec, indent=2) + "\n")
    print(json.dumps(spec["fitted_on"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
