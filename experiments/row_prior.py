"""How much of a real room does the simulator's mean room already get right? A `RowPriorModel`
(one depth per latitude: the median log depth of each latitude band, averaged over labelled
panoramas; the image is ignored) fitted on a store's labelled *train* split — indoor scenes,
outdoor scenes, all — scored on the real RGB + depth pairs beside the constant-depth baselines
and, with `--model`, beside trained models, all through `dap_model.evaluation`. A network that does
not beat the indoor prior on real rooms has learned nothing from their images that transfers.

    python -m experiments.row_prior --profile tiny --data DIR [--bands 64] [--model NAME=PATH ...]
        [--real DIR] [--out experiments/results/row_prior.md]

DIR is a store with a labelled set (`labeled/`), e.g. an `experiments.backbones` project's
`data/`; PATH a model checkpoint (`.safetensors` or its folder)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dap_model.io import atomic_write_text
from experiments.common import DEFAULT_REAL, open_real, real_baselines, real_table, score_real


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--bands", type=int, default=64, help="latitude bands of the prior")
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH of a trained model to score beside the priors")
    ap.add_argument("--real", type=Path, default=DEFAULT_REAL)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", type=Path, default=None, help="markdown table (the figures go to .json beside it)")
    args = ap.parse_args()

    import numpy as np

    from dap_model import layout
    from dap_model.config import load_config
    from dap_model.data.shards import iter_shards
    from dap_model.evaluation.baseline import RowPriorModel
    from dap_model.models import load_model
    from dap_model.storage import LocalStore
    from dap_model.training.stages import fetch_all, split_shard_keys

    cfg = load_config(args.profile, args.overrides)
    real = open_real(args.real)
    if real is None:
        raise SystemExit(f"{args.real}: no real pairs to score on")
    store = LocalStore(args.data)
    by_domain: dict[str, list[np.ndarray]] = {"indoor": [], "outdoor": []}
    for s in iter_shards(fetch_all(store, split_shard_keys(store, layout.LABELED, "train"))):
        if s.depth is not None and s.meta.get("domain") in by_domain:
            by_domain[s.meta["domain"]].append(s.depth)
    if not by_domain["indoor"]:
        raise SystemExit(f"{args.data}: no indoor labelled train panoramas")
    priors = {f"row prior, simulator {d} ({len(v)})": RowPriorModel.fit(v, args.bands, f"row prior {d}", cfg.eval.cap_m)
              for d, v in (*by_domain.items(), ("all", by_domain["indoor"] + by_domain["outdoor"])) if v}
    rows = {name: score_real(cfg, m, real) for name, m in priors.items()}
    for spec in args.model:
        name, _, path = spec.partition("=")
        rows[name] = score_real(cfg, load_model(Path(path), map_location="cpu").eval(), real)
    rows |= real_baselines(cfg, real)
    text = "\n".join(real_table(rows)) + "\n"
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
        atomic_write_text(args.out.with_suffix(".json"), json.dumps(
            {"data": str(args.data), "bands": args.bands, "profile": args.profile, "overrides": args.overrides,
             "profiles_log_depth": {n: m.log_depth.tolist() for n, m in priors.items()}, "real": rows},
            indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
