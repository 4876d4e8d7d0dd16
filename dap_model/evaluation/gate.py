"""The champion gate: does the new model regress against the current champion, and is it better?"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dap_model.config import DapConfig
from dap_model.evaluation.evaluate import EvalResult
from dap_model.evaluation.metrics import LOWER_IS_BETTER, better


@dataclass
class GateResult:
    passed: bool
    promote: bool
    champion_version: str | None
    new_version: str | None
    metric: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # per benchmark: new, champion, change
    message: str = ""


def champion_gate(cfg: DapConfig, new: dict[str, EvalResult], champ: dict[str, EvalResult] | None,
                  new_version: str | None, champion_version: str | None) -> GateResult:
    """Fail when the new model's primary metric is worse than the champion's by more than
    `eval.regression_tolerance` (relative) on any benchmark both were evaluated on. Promote when
    the gate passes and the new model is better on the mean primary metric over those
    benchmarks, or when there is no champion. A champion that is the new model itself passes
    and is not promoted again."""
    metric, tol = cfg.eval.primary_metric, cfg.eval.regression_tolerance
    if new_version is not None and new_version == champion_version:
        return GateResult(True, False, champion_version, new_version, metric,
                          message=f"version {new_version} already is the champion")
    if not champ:
        return GateResult(True, new_version is not None, None, new_version, metric,
                          message="no champion yet" + ("" if new_version else "; the new model is not registered"))
    rows, regressions = [], []
    for bench in sorted(set(new) & set(champ)):
        a, b = new[bench].metrics[metric], champ[bench].metrics[metric]
        diff = (a - b) if metric in LOWER_IS_BETTER else (b - a)  # > 0: the new model is worse
        worse_by = diff / abs(b) if b != 0 else (0.0 if diff <= 0 else float("inf"))
        rows.append({"benchmark": bench, "new": a, "champion": b, "worse_by": worse_by})
        if worse_by > tol:
            regressions.append(f"{bench}: {metric} {a:.4f} vs champion {b:.4f} ({worse_by:+.1%} > {tol:.1%})")
    if not rows:
        return GateResult(True, False, champion_version, new_version, metric,
                          message="no benchmark in common with the champion: alias unchanged")
    mean_new = float(np.mean([r["new"] for r in rows]))
    mean_champ = float(np.mean([r["champion"] for r in rows]))
    passed = not regressions
    promote = passed and new_version is not None and better(metric, mean_new, mean_champ)
    msg = ("; ".join(regressions) if regressions else
           f"mean {metric} {mean_new:.4f} vs champion {mean_champ:.4f}: "
           + ("better, promoted" if promote else "not better, alias unchanged"))
    return GateResult(passed, promote, champion_version, new_version, metric, rows, msg)
