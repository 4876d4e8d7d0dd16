"""Fit the `builtin` tagger's logistic model on real labelled panoramas and simulator renders.

    python -m dap_model.tagging.fit_builtin --real ../shared/real/unlabeled \
        [--scenes 16] [--frames 2] [--render-height 128] [--heldout-scenes 8] [--val-scenes 4] \
        [--out dap_model/tagging/builtin_coefficients.json]

Data. Real: every image under `<real>/indoor` (label 1) and `<real>/outdoor` (label 0); its
*source* is the repository it came from (`repo` in `manifest.json` beside or above `<real>`,
else the file-name prefix before `__`). Simulator: web-style sequences of every kind (indoor:
rooms, corridor, room; outdoor: city, rural), seeds `FIT_SEED0 + i`, each render used as is and in
`--augment` camera-augmented copies (white balance, gamma, contrast, noise, blur, yaw roll,
mirror: the palette itself is kept, since sky colour is evidence). Each domain is class-balanced;
the simulator's total weight is a multiple `sim_weight` of the real total.

Model. `features.FEATURES` → standardisation → L2 logistic regression (scikit-learn
`LogisticRegression`, lbfgs). The regularisation C (`C_GRID`) and `sim_weight` (`SIM_WEIGHTS`) are
chosen on validation data only: the mean of the leave-one-source-out balanced accuracy on the real
images of the training set (simulator renders in every training fold) and the balanced accuracy on
simulator validation renders (seeds `VAL_SEED0 + i`).

Measures, all written into the JSON with the settings:
- `real_loso`: balanced accuracy on the real images by leave-one-source-out with C and
  sim_weight chosen inside each outer fold (nested), so no held-out source influences its own
  prediction;
- `sim_heldout`: balanced accuracy on renders of seeds `HELDOUT_SEED0 + i` (never fitted);
- `random`: a seeded coin-flip tagger on the same sets (expected 0.5)."""

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
VAL_SEED0 = 500_000
AUGMENT_SEED = 12_345
RANDOM_SEED = 7
SHAKE_DEG = 2.0
KINDS = {"rooms": 1, "corridor": 1, "room": 1, "city": 0, "rural": 0}  # kind → label (1 = indoor)
C_GRID = (0.03, 0.1, 0.3, 1.0)
SIM_WEIGHTS = (0.25, 0.5, 1.0, 2.0)
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


# ---------------------------------------------------------------- data


def _manifest_sources(root: Path) -> dict[str, str]:
    """file name → source repository, from the first manifest.json in `root` or its parents."""
    for d in (root, *root.parents[:2]):
        m = d / "manifest.json"
        if m.is_file():
            try:
                entries = json.loads(m.read_text())
            except ValueError as err:
                raise SystemExit(f"{m}: not JSON ({err})") from None
            return {Path(e["dest"]).name: e["repo"] for e in entries if "dest" in e and "repo" in e}
    return {}


def real_set(root: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """`root`/{indoor,outdoor}/* → (paths, labels [N] 1 = indoor, sources [N])."""
    sources = _manifest_sources(root)
    paths, labels, groups = [], [], []
    for sub, label in (("indoor", 1), ("outdoor", 0)):
        d = root / sub
        if not d.is_dir():
            raise SystemExit(f"--real {root}: no {sub}/ folder")
        for p in sorted(d.iterdir()):
            if p.suffix.lower() in IMAGE_EXTS:
                paths.append(p)
                labels.append(label)
                groups.append(sources.get(p.name, p.name.split("__")[0]))
    if not paths:
        raise SystemExit(f"--real {root}: no images in indoor/ or outdoor/")
    return paths, np.asarray(labels, np.int64), np.asarray(groups)


def read_image_rgb(path: Path) -> np.ndarray:
    from dap_model.tagging.base import read_image

    img, why = read_image(path)
    if img is None:
        raise SystemExit(f"{path}: {why}")
    return img  # [H,W,3] uint8


def real_features(paths: list[Path], height: int) -> np.ndarray:
    return np.stack([erp_features(read_image_rgb(p), height) for p in paths])  # [N,F]


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
    """uint8 [H,W,3] → uint8 [H,W,3] as another camera would see it: geometry and palette kept."""
    f = img.astype(np.float32) / 255.0  # [H,W,3]
    f = f * rng.uniform(0.85, 1.15, 3)  # white balance
    f = np.clip(f, 0, 1) ** np.exp(rng.uniform(-0.4, 0.4))  # gamma
    m = f.mean()
    f = m + (f - m) * rng.uniform(0.7, 1.3) + rng.uniform(-0.1, 0.1)  # contrast, brightness
    if rng.random() < 0.5:
        f = cv2.GaussianBlur(f, (0, 0), rng.uniform(0.3, 1.5))
    f = f + rng.normal(0.0, rng.uniform(0.0, 0.03), f.shape)
    f = np.roll(f, int(rng.integers(0, f.shape[1])), axis=1)  # yaw
    if rng.random() < 0.5:
        f = f[:, ::-1]  # mirror
    return np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)


def features_of(imgs: list[np.ndarray], height: int) -> np.ndarray:
    return np.stack([erp_features(im, height) for im in imgs])  # [N,F]


# ---------------------------------------------------------------- model


def domain_weights(y: np.ndarray, total: float) -> np.ndarray:
    """[N] sample weights: both classes of one domain weigh total/2 each."""
    w = np.zeros(len(y))
    for c in (0, 1):
        n = int((y == c).sum())
        if n:
            w[y == c] = total / (2.0 * n)
    return w


def fit_model(xr, yr, xs, ys, sim_weight: float, c: float):
    """(real [Nr,F], [Nr]; sim [Ns,F], [Ns]) → a fitted sklearn pipeline (scaler + logistic)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.vstack([xr, xs])
    y = np.concatenate([yr, ys])
    w = np.concatenate([domain_weights(yr, len(yr)), domain_weights(ys, sim_weight * len(yr))])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
    model.fit(x, y, logisticregression__sample_weight=w)
    return model


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[y == c] == c) for c in (0, 1) if np.any(y == c)]))


def loso_predictions(xr, yr, gr, xs, ys, sim_weight: float, c: float) -> np.ndarray:
    """[Nr] predictions of each real image by a model fitted without its source."""
    pred = np.zeros(len(yr), np.int64)
    for g in np.unique(gr):
        te = gr == g
        model = fit_model(xr[~te], yr[~te], xs, ys, sim_weight, c)
        pred[te] = model.predict(xr[te])
    return pred


def choose(xr, yr, gr, xs, ys, xv, yv) -> tuple[tuple[float, float], dict]:
    """(C, sim_weight) with the best validation score: mean of the leave-one-source-out balanced
    accuracy on the real images and the balanced accuracy on the simulator validation renders
    (xv [Nv,F], yv [Nv]); ties → the smaller C, then the smaller sim_weight."""
    scores = {}
    for c in C_GRID:
        for sw in SIM_WEIGHTS:
            real = balanced_accuracy(yr, loso_predictions(xr, yr, gr, xs, ys, sw, c))
            sim = balanced_accuracy(yv, fit_model(xr, yr, xs, ys, sw, c).predict(xv))
            scores[(c, sw)] = (real + sim) / 2.0
    best = max(scores, key=lambda k: (round(scores[k], 9), -k[0], -k[1]))
    return best, scores


def nested_loso(xr, yr, gr, xs, ys, xv, yv) -> tuple[np.ndarray, dict]:
    """Outer leave-one-source-out; (C, sim_weight) chosen by `choose` on the outer training set."""
    pred = np.zeros(len(yr), np.int64)
    chosen = {}
    for g in np.unique(gr):
        te = gr == g
        (c, sw), _ = choose(xr[~te], yr[~te], gr[~te], xs, ys, xv, yv)
        pred[te] = fit_model(xr[~te], yr[~te], xs, ys, sw, c).predict(xr[te])
        chosen[str(g)] = [c, sw]
    return pred, chosen


def export(model, height: int) -> dict:
    scaler, lr = model[0], model[-1]
    return {
        "features": list(FEATURES),
        "height": height,
        "mean": [round(float(v), 8) for v in scaler.mean_],
        "scale": [round(float(v), 8) for v in scaler.scale_],
        "weights": [round(float(v), 8) for v in lr.coef_[0]],
        "bias": round(float(lr.intercept_[0]), 8),
    }


def report(y: np.ndarray, pred: np.ndarray) -> dict:
    return {
        "balanced_accuracy": round(balanced_accuracy(y, pred), 4),
        "indoor": round(float(np.mean(pred[y == 1] == 1)), 4),
        "outdoor": round(float(np.mean(pred[y == 0] == 0)), 4),
        "images": int(len(y)),
    }


def fit(real: Path, n_scenes: int, frames: int, render_height: int, height: int, n_aug: int,
        heldout_scenes: int, val_scenes: int) -> dict:
    from dap_model.tagging.builtin import LogisticModel

    t0 = time.perf_counter()
    paths, yr, gr = real_set(real)
    xr = real_features(paths, height)
    rng = np.random.default_rng(AUGMENT_SEED)
    imgs, ys, kinds = render_set(n_scenes, frames, render_height, FIT_SEED0)
    aug = [augment(im, rng) for _ in range(n_aug) for im in imgs]
    xs = features_of(imgs + aug, height)
    ys = np.tile(ys, 1 + n_aug)
    h_imgs, h_y, h_kinds = render_set(heldout_scenes, frames, render_height, HELDOUT_SEED0)
    xh = features_of(h_imgs, height)
    v_imgs, yv, _ = render_set(val_scenes, frames, render_height, VAL_SEED0)
    xv = features_of(v_imgs, height)

    loso_pred, chosen = nested_loso(xr, yr, gr, xs, ys, xv, yv)
    (c, sim_weight), scores = choose(xr, yr, gr, xs, ys, xv, yv)
    model = fit_model(xr, yr, xs, ys, sim_weight, c)
    spec = export(model, height)
    lm = LogisticModel(spec)  # the exported numbers, as the tagger uses them
    heldout_pred = (lm.p_indoor(xh) >= 0.5).astype(np.int64)
    coin = np.random.default_rng(RANDOM_SEED)
    per_source = {}
    for g in np.unique(gr):
        m = gr == g
        per_source[str(g)] = {"images": int(m.sum()), "correct": int((loso_pred[m] == yr[m]).sum())}
    h_kinds_a = np.asarray(h_kinds)
    spec["fitted_on"] = {
        "real": {
            "folder": str(real),
            "images": int(len(yr)),
            "indoor": int(yr.sum()),
            "outdoor": int(len(yr) - yr.sum()),
            "sources": int(len(np.unique(gr))),
        },
        "sim": {
            "renders": f"dap_model.sim.render_sequence(kind, seed, {frames}, {render_height}, style='web', shake_deg={SHAKE_DEG})",
            "kinds": dict(KINDS),
            "scenes_per_kind": n_scenes,
            "seeds": [FIT_SEED0, FIT_SEED0 + n_scenes - 1],
            "augmented_copies": n_aug,
            "augment_seed": AUGMENT_SEED,
            "images": int(len(ys)),
            "weight_vs_real": sim_weight,
            "validation_seeds": [VAL_SEED0, VAL_SEED0 + val_scenes - 1],
        },
        "model": "StandardScaler + sklearn LogisticRegression (L2, lbfgs), each domain class-balanced",
        "c_grid": list(C_GRID),
        "sim_weight_grid": list(SIM_WEIGHTS),
        "c": c,
        "validation_scores": {f"C={k[0]} sim_weight={k[1]}": round(v, 4) for k, v in scores.items()},
        "real_loso": {**report(yr, loso_pred), "c_per_outer_fold": chosen, "per_source": per_source,
                      "note": "nested leave-one-source-out: C and sim_weight chosen without the held-out source"},
        "real_train": report(yr, (lm.p_indoor(xr) >= 0.5).astype(np.int64)),
        "sim_heldout": {
            **report(h_y, heldout_pred),
            "seeds": [HELDOUT_SEED0, HELDOUT_SEED0 + heldout_scenes - 1],
            "per_kind": {k: round(float(np.mean(heldout_pred[h_kinds_a == k] == h_y[h_kinds_a == k])), 4) for k in KINDS},
        },
        "random": {
            "real": round(balanced_accuracy(yr, coin.integers(0, 2, len(yr))), 4),
            "sim_heldout": round(balanced_accuracy(h_y, coin.integers(0, 2, len(h_y))), 4),
            "expected": 0.5,
            "seed": RANDOM_SEED,
        },
        "fit_seconds": round(time.perf_counter() - t0, 1),
        "command": "python -m dap_model.tagging.fit_builtin " + " ".join(sys.argv[1:]),
    }
    return spec


def main(argv: list[str] | None = None) -> int:
    from dap_model.tagging.builtin import DEFAULT_COEFFICIENTS

    ap = argparse.ArgumentParser(prog="python -m dap_model.tagging.fit_builtin", description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", type=Path, required=True, help="folder with indoor/ and outdoor/ real panoramas")
    ap.add_argument("--scenes", type=int, default=16, help="simulator sequences per scene kind for fitting")
    ap.add_argument("--frames", type=int, default=2, help="frames per sequence")
    ap.add_argument("--render-height", type=int, default=128, help="render height (width = 2 x height)")
    ap.add_argument("--height", type=int, default=64, help="enclosure-feature height (images are resized to it)")
    ap.add_argument("--augment", type=int, default=1, help="camera-augmented copies per render")
    ap.add_argument("--heldout-scenes", type=int, default=8, help="held-out sequences per scene kind")
    ap.add_argument("--val-scenes", type=int, default=4, help="simulator validation sequences per scene kind")
    ap.add_argument("--out", type=Path, default=DEFAULT_COEFFICIENTS)
    args = ap.parse_args(argv)
    spec = fit(args.real, args.scenes, args.frames, args.render_height, args.height, args.augment,
               args.heldout_scenes, args.val_scenes)
    atomic_write_text(args.out, json.dumps(spec, indent=2) + "\n")
    print(json.dumps(spec["fitted_on"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
