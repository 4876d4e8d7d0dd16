"""Which part of the simulator's web look moves a model's outdoor metric scale? Renders frames of
outdoor web scenes (the held-out web-test videos' scenes and trajectories, plus extra seeds) in
the web look, in the labelled look, and in the web look with one factor swapped for the labelled
one (fog, sky, sun, palette, exposure, lamps, camera artefacts), and reports for each the
model's median log(pred / gt) and AbsRel at the training height.

    python -m experiments.web_look_factors --model .cache/experiments/small_v2/data/models/stage1 \\
        [--model ANOTHER ...] [--profile small] [--extra 21 23] [--name sky] [--out DIR]

Writes `web_look_factors[_<name>].{json,md}` into --out (default .cache/experiments/web_look_factors).
A factor whose swap takes the log ratio to the labelled look's value is the cue the model reads
scale from."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dap_model.config import load_config
from dap_model.evaluation.breakdown import median_log_ratio
from dap_model.evaluation.metrics import depth_metrics
from dap_model.inference import load_checkpoint, to_input
from dap_model.sim import make_scene, shading, trajectory
from dap_model.sim.render import render
from dap_model.video.webstyle import KINDS, _rotations
from experiments.common import CACHE

FACTORS = {  # Look fields swapped for the labelled look's
    "fog": ["fog_m", "fog_rgb"],
    "sky": ["zenith", "horizon", "clouds"],
    "sun": ["sun_dir", "sun_rgb", "amb_sky", "amb_ground"],
    "palette": ["c1", "c2"],
    "exposure": ["exposure"],
    "lamps": ["lamp_rgb"],
}


def variants(web: shading.Look, lab: shading.Look) -> dict[str, shading.Look]:
    out = {"web": web, "labelled": lab}
    for name, fields in FACTORS.items():
        out[f"web, labelled {name}"] = dataclasses.replace(web, **{k: getattr(lab, k) for k in fields})
    out["web, no camera artefacts"] = dataclasses.replace(web, style="labeled")
    out["labelled, web fog"] = dataclasses.replace(lab, fog_m=web.fog_m, fog_rgb=web.fog_rgb)
    out["labelled, web sky"] = dataclasses.replace(lab, **{k: getattr(web, k) for k in FACTORS["sky"]})
    return out


@torch.no_grad()
def scale_errors(model, rgbs: list[np.ndarray], depths: list[np.ndarray], height: int, cap_m: float) -> dict[str, float]:
    """Mean over frames of the median log(pred/gt) and of AbsRel, at the model's input size, over
    pixels where both the ground truth and the prediction are valid (frames with < 10 skipped)."""
    pred = model.predict(to_input(rgbs, (height, 2 * height)))[:, 0].numpy()  # [N,h,2h]
    logs, rels = [], []
    for p, gt in zip(pred, depths):
        g = F.interpolate(torch.from_numpy(gt)[None, None], size=p.shape, mode="nearest")[0, 0].numpy()  # [h,2h]
        g = np.where(p > 0, g, 0.0)  # the model's "invalid" pixels are left out, not scored
        m = depth_metrics(p, g, cap=cap_m)
        if m["n_valid"] < 10:
            continue
        logs.append(median_log_ratio(p, g, cap_m))
        rels.append(m["abs_rel"])
    return {"median_log_ratio": float(np.mean(logs)), "abs_rel": float(np.mean(rels)), "frames": len(logs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, help="checkpoint file or folder (repeatable)")
    ap.add_argument("--profile", default="small")
    ap.add_argument("--extra", type=int, nargs="*", default=[21, 23], help="further scene indices (kind = KINDS[i %% 4])")
    ap.add_argument("--every", type=int, default=3, help="every n-th frame of each trajectory")
    ap.add_argument("--name", default="")
    ap.add_argument("--out", type=Path, default=CACHE / "web_look_factors", help="folder of the result files")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.profile)
    v = cfg.video
    n = max(2, int(round(v.video_duration_s * v.video_fps)))
    render_h = max(v.height, v.horizon_height)
    test = [i for i in range(v.pool_videos, v.pool_videos + v.test_videos) if KINDS[i % len(KINDS)] in ("city", "rural")]
    scenes = test + [i for i in args.extra if KINDS[i % len(KINDS)] in ("city", "rural")]
    models = {m: load_checkpoint(m, cfg) for m in args.model}
    result: dict = {"profile": args.profile, "models": args.model, "scenes": {}}
    for i in scenes:
        kind, seed = KINDS[i % len(KINDS)], v.seed * 1000 + i
        scene = make_scene(kind, seed)
        pos = trajectory(scene, n, seed)[:: args.every]
        rots = _rotations(n, seed, False)[:: args.every]
        looks = variants(shading.make_look(scene, "web"), shading.make_look(scene, "labeled"))
        entry = {"kind": kind, "held_out_web_test": i in test, "altitudes_m": [round(float(p[1]), 1) for p in pos], "looks": {}}
        for name, look in looks.items():
            frames = [render(scene, p, r, render_h, look.style, seed=j, look=look) for j, (p, r) in enumerate(zip(pos, rots))]
            rgbs, depths = [f[0] for f in frames], [f[1] for f in frames]
            entry["looks"][name] = {m: scale_errors(model, rgbs, depths, cfg.train.height, cfg.eval.cap_m) for m, model in models.items()}
            print(kind, i, name, {Path(m).parts[-3] if len(Path(m).parts) > 2 else m: round(r["median_log_ratio"], 2)
                                  for m, r in entry["looks"][name].items()}, flush=True)
        result["scenes"][f"{kind}-{i}"] = entry
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"web_look_factors{'_' + args.name if args.name else ''}"
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    lines = ["Median log(pred/gt) (AbsRel) per look variant; columns: scene (kind-index, * = web-test video), "
             "rows: look. Models: " + ", ".join(f"m{k}={m}" for k, m in enumerate(args.model)), ""]
    cols = list(result["scenes"])
    lines.append("| look | model | " + " | ".join(c + ("*" if result["scenes"][c]["held_out_web_test"] else "") for c in cols) + " |")
    lines.append("|---|---|" + "---|" * len(cols))
    for name in next(iter(result["scenes"].values()))["looks"]:
        for k, m in enumerate(args.model):
            cells = [result["scenes"][c]["looks"][name][m] for c in cols]
            lines.append(f"| {name} | m{k} | " + " | ".join(f"{r['median_log_ratio']:+.2f} ({r['abs_rel']:.2f})" for r in cells) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
