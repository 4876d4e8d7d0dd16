"""How much of a real room does the simulator's mean room already get right? A `RowPriorModel`
(one depth per latitude: the median log depth of each latitude band, averaged over labelled
panoramas; the image is ignored) fitted on a store's labelled *train* split — indoor scenes,
outdoor scenes, all — scored on the real RGB + depth pairs beside the constant-depth baselines
and, with `--model`, beside trained models, all through `dap_model.evaluation`. A network that does
not beat the indoor prior on real rooms has learned nothing from their images that transfers.

    python -m experiments.row_prior --profile tiny --data DIR [--model NAME=PATH ...] [--decompose]
        [--real DIR] [--out experiments/results/row_prior.md]

`--decompose` adds two rows per model that split its prediction (log depth, per image) into its
per-row means and the rest: "NAME, rows flat" (each row its mean) and "NAME, mean-room rows" (its
row means replaced by the indoor prior's rows, what it reads along each row kept).

The priors are the report's (`evaluation.report.row_priors`, `train.height` latitude bands) for the
domains indoor, outdoor and all.

DIR is a store with a labelled set (`labeled/`), e.g. an `experiments.backbones` project's
`data/`; PATH a model checkpoint (`.safetensors` or its folder)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dap_model.evaluation.baseline import ReferenceModel
from experiments.common import DEFAULT_REAL, real_baselines, require_real, score_real, write_real_results


class RowSplit(ReferenceModel):
    """A model's prediction with its per-row mean log depth kept alone (`rows="flat"`) or replaced by
    `prior`'s rows (`rows="prior"`); every pixel in range (as the reference predictors)."""

    def __init__(self, model, prior, rows: str):
        super().__init__()
        self.model, self.prior, self.rows = model, prior, rows
        self.patch_size = model.patch_size

    def forward(self, rgb):
        log = self.model(rgb)["depth"].clamp_min(1e-6).log()  # [B,1,H,W]
        mean = log.mean(-1, keepdim=True)  # [B,1,H,1]
        out = mean.expand_as(log) if self.rows == "flat" else log - mean + self.prior(rgb)["depth"].log()
        return self._outputs(out.exp().contiguous())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH of a trained model to score beside the priors")
    ap.add_argument("--decompose", action="store_true", help="also each model's rows flat / with the mean room's rows")
    ap.add_argument("--real", type=Path, default=DEFAULT_REAL)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", type=Path, default=None, help="markdown table (the figures go to .json beside it)")
    args = ap.parse_args()

    from dap_model.config import load_config
    from dap_model.evaluation.report import row_priors
    from dap_model.models import load_model
    from dap_model.storage import LocalStore

    cfg = load_config(args.profile, [*args.overrides, "eval.baseline_row_priors=[indoor, outdoor, all]"])
    real = require_real(args.real)
    priors = {m.name: m for m in row_priors(cfg, LocalStore(args.data))}
    if "row prior indoor" not in priors:
        raise SystemExit(f"{args.data}: no indoor labelled train panoramas")
    rows = {name: score_real(cfg, m, real) for name, m in priors.items()}
    for spec in args.model:
        name, _, path = spec.partition("=")
        model = load_model(Path(path), map_location="cpu").eval()
        rows[name] = score_real(cfg, model, real)
        if args.decompose:
            rows[f"{name}, rows flat"] = score_real(cfg, RowSplit(model, priors["row prior indoor"], "flat"), real)
            rows[f"{name}, mean-room rows"] = score_real(cfg, RowSplit(model, priors["row prior indoor"], "prior"), real)
    rows |= real_baselines(cfg, real)
    write_real_results(rows, args.out, {
        "data": str(args.data), "bands": cfg.train.height, "profile": args.profile, "overrides": args.overrides,
        "profiles_log_depth": {n: m.log_depth.tolist() for n, m in priors.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
