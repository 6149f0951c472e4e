# CRM insight report. A fresh machine needs two commands: `make report` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PARAMS ?= params/default.yml

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/crm-report: pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (see README)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

setup: $(BIN)/crm-report ## create the virtual environment and install the package
	@bash scripts/system-deps.sh

report: setup ## build the demo report into reports/demo/<version>/ (and reports/demo/latest)
	$(BIN)/crm-report run --params $(PARAMS)

test: setup ## run the whole test suite (unit, chapter, end-to-end)
	$(BIN)/python -m pytest -q

lint: setup ## ruff and the stripped-notebook check
	$(BIN)/ruff check crm_helpers tests benchmarks
	$(BIN)/nbstripout --verify notebooks/*.ipynb

bench: setup ## run the benchmarks (writes benchmarks/results/*.json)
	$(BIN)/python benchmarks/bench_run.py
	$(BIN)/python benchmarks/bench_run.py --client params/online_retail.yml
	$(BIN)/python benchmarks/bench_rfm.py
	$(BIN)/python benchmarks/bench_clv.py
	$(BIN)/python benchmarks/bench_basket.py
	$(BIN)/python benchmarks/bench_rerun.py
	$(BIN)/python benchmarks/make_lines.py
	$(BIN)/python benchmarks/bench_prepare.py
	$(BIN)/python benchmarks/plot_prepare.py

clean: ## remove the virtual environment and generated reports
	rm -rf $(VENV) reports/*/ .pytest_cache

.PHONY: help setup report test lint bench clean
