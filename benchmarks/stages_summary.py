"""Seed replicates of the stage experiment side by side: per seed and mean ± sd of each stage's
AbsRel (labelled test, web test, web scale-aligned), and the paired stage 3 − stage 1 difference
on the web split (same seed, same data: the claim's test with the seed noise taken out).

    python benchmarks/stages_summary.py --name aligned benchmarks/results/stages_aligned.json \\
        benchmarks/results/stages_aligned_seed1.json ... [--out benchmarks/results/stages_aligned_seeds.md]

Each input is an `experiment_stages.py` result; its seed is read from its `train.seed` setting."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

COLS = (("labeled_test", "abs_rel"), ("web_test", "abs_rel"), ("web_test", "abs_rel_aligned"), ("web_test", "delta1"))


def fmt(xs: list[float]) -> str:
    if not xs:
        return "–"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, nargs="+")
    ap.add_argument("--name", default="")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    runs = []
    for path in args.results:
        r = json.loads(path.read_text())
        runs.append((int(r["setting"]["train"]["seed"]), r["results"], path.name))
    runs.sort()
    models = [m for m in ("stage1", "stage2", "stage3", "stage2_random", "stage3_random")
              if any(m in res for _, res, _ in runs)]
    head = "| model | seeds | labelled AbsRel | web AbsRel | web AbsRel, scale-aligned | web δ1 |"
    lines = [f"### Stage experiment{' (' + args.name + ')' if args.name else ''}: mean ± sd over seeds", "",
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
              f"{fmt(diffs)} (negative = stage 3 better). Inputs: {', '.join(n for _, _, n in runs)}."]
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
