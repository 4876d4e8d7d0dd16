# DAP engine. Two commands on a fresh machine: `make run` (set up + run the pipeline on the
# embedded `tiny` profile) and `make test`. See README.md.
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VENV_DVC := .venv-dvc
# CPU default: the torch wheel on disk, pinned so no other package can pull a CUDA build.
# GPU machines: make setup CONSTRAINTS=constraints/gpu.txt TORCH_SPEC="torch==2.13.0" (README, "GPU").
CONSTRAINTS ?= constraints/cpu.txt
TORCH_SPEC ?= torch==2.13.0
PIP_FLAGS ?= -q
PROFILE ?= tiny
export DAGSTER_HOME ?= $(CURDIR)/.dagster
export DAP_PROJECT_DIR := $(CURDIR)

.PHONY: setup run test test-fast ui bench clean-state help
help:
	@echo "make run    set up and materialise every asset on the '$(PROFILE)' profile"
	@echo "make test   set up and run the whole test suite"
	@echo "make test-fast  the suite without the tests marked slow (servers, trainings, pipeline and DVC runs)"
	@echo "make ui     Dagster webserver (127.0.0.1:3000) + MLflow UI (127.0.0.1:5000)"
	@echo "make bench  run the benchmarks (benchmarks/results/*.json)"

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip setuptools wheel
	$(VENV)/bin/pip install $(PIP_FLAGS) -c $(CONSTRAINTS) "$(TORCH_SPEC)" -e ".[test]"
	touch $@

$(VENV_DVC)/.installed: constraints/dvc.txt
	test -x $(VENV_DVC)/bin/python || $(PY) -m venv $(VENV_DVC)
	$(VENV_DVC)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(VENV_DVC)/bin/pip install $(PIP_FLAGS) -r constraints/dvc.txt
	touch $@

setup: $(VENV)/.installed $(VENV_DVC)/.installed

run: setup
	$(VENV)/bin/python -m dap_assets.pipeline --profile $(PROFILE)

test: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/python -m pytest -m "not slow" $(PYTEST_ARGS)

ui: setup
	$(VENV)/bin/python -m dap_assets.ui

bench: setup
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; HF_HUB_OFFLINE=1 $(VENV)/bin/python $$b; done

clean-state:
	rm -rf .dagster mlflow.db mlflow.db.lock mlartifacts data reports runs .cache
