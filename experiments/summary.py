"""Seed replicates of the stage experiment side by side: per seed and mean ± sd of each stage's
AbsRel (labelled test, web test, web scale-aligned), and the paired stage 3 − stage 1 difference
on the web split (same seed, same data: the claim's test with the seed noise taken out).

    python -m experiments.summary --name aligned .cache/experiments/small/stages.json \\
        .cache/experiments/small_seed1/stages.json ... [--out experiments/results/stages_aligned.md]

Each input is an `experiments.stages` result; its seed is read from its `train.seed` setting."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from experiments.common import RESULTS

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
    models = [m for m in ("stage1", "stage2", "stage3", "stage2_random", "stage3_random")
              if any(m in res for _, res, _ in runs)]
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, nargs="+")
    ap.add_argument("--name", default="")
    ap.add_argument("--out", type=Path, default=None, help=f"markdown file (e.g. {RESULTS}/stages_<name>.md)")
    args = ap.parse_args()
    text = stage_table(load(args.results), args.name)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
