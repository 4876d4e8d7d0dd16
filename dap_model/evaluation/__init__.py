"""Evaluation: everything that scores a model or presents its scores.

- `metrics`: AbsRel, SqRel, RMSE, RMSE-log, MAE, δ1–3 (per image, pooled, range bins), which
  metrics are lower-is-better.
- `breakdown`: scale-aligned error and the per-scene-kind breakdown.
- `evaluate`: the one metric loop (`Scorer`) over a benchmark reader (`evaluate`) or over stored
  shards (`evaluate_shards`, training validation); `EvalResult` and its MLflow metric names.
- `figures`: colourised depth, preview panels, the report's sample figure.
- `gate`: the champion gate.
- `runs`: MLflow lookups (training runs, registered versions, the champion).
- `compare`: MLflow runs side by side (`dap compare`).
- `report`: the benchmark report (`benchmark_report`): evaluate, log, gate, write Markdown/HTML.
- `withheld`: pseudo-label error against withheld ground truth (measurement only)."""
