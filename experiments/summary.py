"""Seed replicates of the stage experiment side by side: per seed and mean ± sd of each stage's
AbsRel (labelled test, web test, web scale-aligned), and the paired stage 3 − stage 1 difference
on the web split (same seed, same data: the claim's test with the seed noise taken out). Where the
results hold real-pair scores (`real_dev`), also each stage's real AbsRel, scale-aligned AbsRel and
δ1 (mean ± sd over seeds; per source folder the mean; beside the constant-depth baselines) and the paired
differences stage 2 − stage 1, stage 3 − stage 1 (and stage 3 − the equal-compute stage 1 when
present) per seed, with mean ± sd and the number of seeds in which the later model is better.

    python -m experiments.summary --name aligned .cache/experiments/small/stages.json \\
        .cache/experiments/small_seed1/stages.json ... [--out experiments/results/stages_aligned.md]

Each input is an `experiments.stages` result; its seed is read from its `train.seed` setting."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from dap_model.io import atomic_write_text
from experiments.common import REAL, REAL_METRICS, RESULTS, real_table

MODELS = ("stage1", "stage2", "stage3", "stage1_3x_steps", "stage2_random", "stage3_random")
REAL_PAIRS = (("stage2", "stage1"), ("stage3", "stage1"), ("stage3", "stage1_3x_steps"))
COLS = (("labeled_test", "abs_rel"), ("web_test", "abs_rel"), ("web_test", "abs_rel_aligned"), ("web_test", "delta1"))


def fmt(xs: list[float]) -> str:
    if not xs:
        return "–"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def load(paths: list[Path]) -> list[tuple[int, dict, str]]:
    """(seed, results, file name) of each `experiments.stages` result, by seed."""
    runs = []
    for path in paths:
        r = json.loads(Path(path).read_text())
        runs.append((int(r["setting"]["train"]["seed"]), r["results"], Path(path).name))
    return sorted(runs)


def stage_table(runs: list[tuple[int, dict, str]], name: str = "") -> str:
    """Markdown: mean ± sd per model over seeds, web AbsRel per seed and the paired stage 3 − stage 1."""
    models = [m for m in MODELS if any(m in res for _, res, _ in runs)]
    head = "| model | seeds | labelled AbsRel | web AbsRel | web AbsRel, scale-aligned | web δ1 |"
    lines = [f"### Stage experiment{' (' + name + ')' if name else ''}: mean ± sd over seeds", "",
             head, "|---|---|---|---|---|---|"]
    for m in models:
        have = [res[m] for _, res, _ in runs if m in res]
        seeds = ",".join(str(s) for s, res, _ in runs if m in res)
        lines.append(f"| {m} | {seeds} | " + " | ".join(fmt([h[b][k] for h in have if k in h[b]]) for b, k in COLS) + " |")
    lines += ["", "| seed | " + " | ".join(f"{m} web AbsRel" for m in models) + " | stage 3 − stage 1 (web) |",
              "|---|" + "---|" * (len(models) + 1)]
    diffs = []
    for seed, res, _ in runs:
        cells = [f"{res[m]['web_test']['abs_rel']:.3f}" if m in res else "–" for m in models]
        d = res["stage3"]["web_test"]["abs_rel"] - res["stage1"]["web_test"]["abs_rel"]
        diffs.append(d)
        lines.append(f"| {seed} | " + " | ".join(cells) + f" | {d:+.3f} |")
    wins = sum(d < 0 for d in diffs)
    lines += ["", f"Stage 3 beats stage 1 on the web split in {wins} of {len(diffs)} seeds; paired difference "
              f"{fmt(diffs)} (negative = stage 3 better)."]
    return "\n".join(lines) + "\n"


def mean_sd_rows(runs: list[tuple[int, dict, str]]) -> dict[str, dict]:
    """Per model with real-pair scores: `score_real`-shaped dict of 'mean ± sd' strings over seeds."""
    out = {}
    for m in MODELS:
        have = [res[m][REAL] for _, res, _ in runs if REAL in res.get(m, {})]
        if not have:
            continue
        folders = sorted({f for h in have for f in h.get("by_folder", {})})
        out[m] = {**{k: [h[k] for h in have] for k in REAL_METRICS}, "n_images": have[0]["n_images"], "by_folder": {
            f: {k: [h["by_folder"][f][k] for h in have if f in h.get("by_folder", {})] for k in REAL_METRICS}
            for f in folders}}
    return out


def real_stage_table(runs: list[tuple[int, dict, str]], baselines: dict[str, dict]) -> str:
    """Markdown: each model's real-pair AbsRel, scale-aligned AbsRel and δ1 (mean ± sd over seeds;
    per source folder AbsRel / aligned / δ1 as means), the constant baselines beside them; then the
    paired differences by seed. Empty when no result has real-pair scores."""
    stats = mean_sd_rows(runs)
    if not stats:
        return ""
    mean = lambda xs: statistics.mean(xs) if xs else float("nan")  # noqa: E731
    rows = {f"{m} (mean of {len(v['abs_rel'])})": {**{k: mean(v[k]) for k in REAL_METRICS}, "n_images": v["n_images"],
                                                  "by_folder": {f: {k: mean(x) for k, x in fv.items()}
                                                                for f, fv in v["by_folder"].items()}}
            for m, v in stats.items()}
    lines = ["### Real pairs: mean over seeds", "", *real_table({**rows, **baselines}), "",
             "| model | seeds | real AbsRel | scale-aligned | δ1 |", "|---|---|---|---|---|"]
    for m, v in stats.items():
        seeds = ",".join(str(s) for s, res, _ in runs if REAL in res.get(m, {}))
        lines.append(f"| {m} | {seeds} | " + " | ".join(fmt(v[k]) for k in REAL_METRICS) + " |")
    return "\n".join(lines) + "\n\n" + paired_table(runs)


def paired_differences(runs: list[tuple[int, dict, str]]) -> list[dict]:
    """Per comparison (later − earlier model, same seed) in REAL_PAIRS and metric (real AbsRel,
    aligned AbsRel, δ1, AbsRel per source folder): {later, earlier, metric, folder, by_seed {seed:
    difference}, mean, sd, later_better (lower AbsRel, higher δ1), n}."""
    out = []
    for a, b in REAL_PAIRS:
        both = [res for _, res, _ in runs if REAL in res.get(a, {}) and REAL in res.get(b, {})]
        folders = sorted({f for res in both for f in res[a][REAL].get("by_folder", {})})
        for k, f in [(k, None) for k in REAL_METRICS] + [("abs_rel", f) for f in folders]:
            diffs = {}
            for seed, res, _ in runs:
                ra, rb = (res.get(x, {}).get(REAL, {}) for x in (a, b))
                if f is not None:
                    ra, rb = ra.get("by_folder", {}).get(f, {}), rb.get("by_folder", {}).get(f, {})
                if k in ra and k in rb:
                    diffs[seed] = ra[k] - rb[k]
            if not diffs:
                continue
            d = list(diffs.values())
            out.append({"later": a, "earlier": b, "metric": k, "folder": f, "by_seed": diffs,
                        "mean": statistics.mean(d), "sd": statistics.stdev(d) if len(d) > 1 else float("nan"),
                        "later_better": sum((x > 0) if k == "delta1" else (x < 0) for x in d), "n": len(d)})
    return out


def paired_table(runs: list[tuple[int, dict, str]]) -> str:
    """Markdown of `paired_differences`: one row per comparison and metric, a column per seed."""
    seeds = [s for s, _, _ in runs]
    lines = ["### Real pairs: paired differences by seed (same seed, same data)", "",
             "| difference | metric | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± sd | later better in |",
             "|---|---|" + "---|" * len(seeds) + "---|---|"]
    for r in paired_differences(runs):
        label = r["metric"] + (f" {r['folder']}" if r["folder"] else "")
        cells = [f"{r['by_seed'][s]:+.3f}" if s in r["by_seed"] else "–" for s in seeds]
        sd = f"{r['mean']:+.3f} ± {r['sd']:.3f}" if r["n"] > 1 else f"{r['mean']:+.3f}"
        lines.append(f"| {r['later']} − {r['earlier']} | {label} | " + " | ".join(cells)
                     + f" | {sd} | {r['later_better']} of {r['n']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, nargs="+")
    ap.add_argument("--name", default="")
    ap.add_argument("--out", type=Path, default=None, help=f"markdown file (e.g. {RESULTS}/stages_<name>.md)")
    args = ap.parse_args()
    runs = load(args.results)
    baselines = json.loads(Path(args.results[0]).read_text()).get("real_baselines", {})
    real = real_stage_table(runs, baselines)
    text = stage_table(runs, args.name) + ("\n" + real if real else "")
    if args.out:  # the table and, beside it, its figures: per-seed results, baselines, paired differences
        atomic_write_text(args.out, text)
        atomic_write_text(args.out.with_suffix(".json"), json.dumps({
            "inputs": [str(p) for p in args.results], "results_by_seed": {s: res for s, res, _ in runs},
            "real_baselines": baselines, "real_paired_differences": paired_differences(runs)}, indent=2, default=float))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
