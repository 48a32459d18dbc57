# mlpoc — one entry point for every routine task. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PIP_VERSION := 26.3

.PHONY: help install lint typecheck test test-fast bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==$(PIP_VERSION)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(INSTALLED) ## create .venv and install the project with its dev tools

lint: $(INSTALLED) ## ruff lint + format check
	$(VENV)/bin/ruff check containers tests benchmarks
	$(VENV)/bin/ruff format --check containers tests benchmarks

typecheck: $(INSTALLED) ## mypy --strict on the runtime package
	$(VENV)/bin/mypy

test: lint typecheck ## everything CI runs: lint, types, all tests with branch coverage
	mkdir -p test-artifacts
	$(PY) -m pytest --cov --cov-report=term --cov-report=xml:test-artifacts/coverage.xml

test-fast: $(INSTALLED) ## the unit tests only (no subprocesses, no large backlogs)
	$(PY) -m pytest -m "not integration and not perf"

bench: $(INSTALLED) ## worker throughput and inference latency, ratios against baselines
	$(PY) benchmarks/worker_throughput.py

clean: ## remove the virtualenv and generated files
	rm -rf $(VENV) test-artifacts .pytest_cache .mypy_cache .ruff_cache *.egg-info containers/*.egg-info
