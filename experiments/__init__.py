"""Research experiments on the DAP engine: each module is a script (`python -m experiments.<name>
--help`) that trains and evaluates through `dap_model` (evaluation: `dap_model.evaluation`).
`experiments/README.md` is the index; `experiments/results/` holds one summary per experiment."""
