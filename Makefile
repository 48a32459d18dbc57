# mlpoc — one entry point for every routine task. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
PIP_VERSION := 26.3
PY_SOURCES := app.py stacks lambdas containers tests benchmarks
# jsii (aws-cdk-lib's runtime) warns on every run that Node 20 is past end-of-life; this machine has 20.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: help demo local install checkov browser lint typecheck synth images container-stage test test-fast mutate bench deploy destroy deploy-share destroy-share clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The team's model plugins (containers/plugins/*/, `mlpoc plugin new`): installed with the kit,
# in one resolve, so local mode and the tests have them and a pin that clashes fails here.
PLUGINS := $(wildcard containers/plugins/*/pyproject.toml)

$(INSTALLED): pyproject.toml $(PLUGINS)
	@.ci/stages start install
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==$(PIP_VERSION)
	$(PY) -m pip install --quiet -e ".[dev]" $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $@
	@.ci/stages end install

NODE_INSTALLED := node_modules/.installed
$(NODE_INSTALLED): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

demo: $(INSTALLED) ## the whole PoC on this machine (no AWS, no Docker): digits, train, predict, annotate, retrain
	$(VENV)/bin/mlpoc demo

local: $(INSTALLED) ## the local stack until Ctrl-C (API, review page, moto endpoint); `mlpoc local down` stops it
	$(VENV)/bin/mlpoc local up

install: $(INSTALLED) $(NODE_INSTALLED) ## create .venv (Python deps) and node_modules (the pinned CDK CLI)

lint: $(INSTALLED) ## ruff lint + format check
	@.ci/stages start lint
	$(VENV)/bin/ruff check $(PY_SOURCES)
	$(VENV)/bin/ruff format --check $(PY_SOURCES)
	@.ci/stages end lint

typecheck: $(INSTALLED) ## mypy --strict on the runtime package and the stacks
	@.ci/stages start typecheck
	$(VENV)/bin/mypy
	@.ci/stages end typecheck

# checkov scans the synthesized templates (tests/test_checkov.py), from a virtualenv of its own:
# its pins (boto3 1.35, packaging 23) clash with the kit's. .ci/checkov.txt pins all it installs.
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
$(CHECKOV): .ci/checkov.txt
	@.ci/stages start checkov
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip==$(PIP_VERSION)
	$(CHECKOV_VENV)/bin/pip install --quiet -r .ci/checkov.txt
	touch $@
	@.ci/stages end checkov

checkov: $(CHECKOV) ## install checkov in its own virtualenv (make test does; the test runs it)

# The browser test drives Debian's Chromium (no browser download at test time).
BROWSER := /usr/bin/chromedriver
$(BROWSER):
	apt-get update -q && apt-get install -y -q --no-install-recommends chromium chromium-driver

browser: $(BROWSER) ## install Debian's chromium and chromium-driver (needs root, as in CI)

# The proxy test runs the Beanstalk bundle's nginx configuration with Debian's nginx.
NGINX := /usr/sbin/nginx
$(NGINX):
	apt-get update -q && apt-get install -y -q --no-install-recommends nginx

synth: $(INSTALLED) $(NODE_INSTALLED) ## synthesize every stack to cdk.out with the pinned CLI, cfn-lint, the idle cost
	@.ci/stages start synth
	npx cdk synth --quiet
	$(VENV)/bin/cfn-lint
	$(VENV)/bin/mlpoc cost --assembly cdk.out --summary
	@.ci/stages end synth

images: ## build the worker and API images with Docker (stand-in bases from Debian where no registry answers)
	containers/images.sh

# make test's container stage: the images, when a Docker engine answers (.ci/run starts one; CI
# never skips the stage). Without one, say so: tests/test_containers.py then skips, saying why.
# MLPOC_CONTAINER_STAGE=<where> hands the stage to another job (the GitHub workflow's).
container-stage:
	@.ci/stages start images
	@if [ -n "$$MLPOC_CONTAINER_STAGE" ]; then echo "container stage: run by $$MLPOC_CONTAINER_STAGE"; \
	elif containers/engine.sh check; then containers/images.sh; \
	elif [ -n "$$CI" ]; then echo "container stage: no Docker engine answers (CI must run it)"; exit 1; \
	else echo "container stage SKIPPED: no Docker engine answers (start one, then make images)"; fi
	@.ci/stages end images

# Three runners on two cores, whole files each (a file's module fixtures, e.g. one `local up`,
# stay in one runner): the suite waits on subprocesses, a moto server and Docker as much as it
# computes, and a third runner fills those waits (9 min 19 s against 10 min 41 s with two, the
# same machine, 2026-12-08). The unit tests only compute: two runners, any test anywhere.
PYTEST_PARALLEL ?= --numprocesses 3 --dist loadfile
FAST_PARALLEL ?= --numprocesses 2

test: lint typecheck synth $(CHECKOV) $(BROWSER) $(NGINX) container-stage ## everything CI runs: lint, types, synth + cfn-lint, images, all tests with coverage
	@.ci/stages start pytest
	mkdir -p test-artifacts
	$(PY) -m pytest $(PYTEST_PARALLEL) --cov --cov-report=term --cov-report=xml:test-artifacts/coverage.xml --durations=15
	@.ci/stages end pytest

test-fast: $(INSTALLED) ## the unit tests only, for the inner loop: no moto server, stack, synthesis, subprocess or backlog
	$(PY) -m pytest $(FAST_PARALLEL) -m "not integration and not perf and not containers and not stack"

mutate: $(INSTALLED) ## mutation testing of the core modules against their unit tests (slow; MODULES="mlpoc/schema.py ..." for some)
	.ci/mutate $(MODULES)

bench: $(INSTALLED) ## worker throughput, inference and API latency (direct, through the bundle's nginx), demo time, sharding
	$(PY) benchmarks/worker_throughput.py
	$(PY) benchmarks/api_latency.py
	$(PY) benchmarks/demo_time.py
	$(PY) benchmarks/sharded_predictions.py
	$(PY) benchmarks/first_job.py
	@if containers/engine.sh check; then containers/images.sh && $(PY) benchmarks/bundle_latency.py; \
	else echo "bundle benchmark skipped: no Docker engine answers"; fi

deploy: $(INSTALLED) $(NODE_INSTALLED) ## deploy both stacks to the current AWS account (needs Docker to build the image)
	npx cdk deploy --all --require-approval broadening

destroy: $(INSTALLED) $(NODE_INSTALLED) ## remove the PoC (stage poc: everything; retain: the data stack stays)
	@# the GPU pool to zero first: a protected instance would hold the stack in DELETE_IN_PROGRESS
	$(VENV)/bin/mlpoc release-gpu --target aws || echo "release-gpu did not run (stacks not deployed?): destroying anyway"
	npx cdk destroy --all --force

SHARE = -c 'mlpoc:share={"ml_account":"$(ML_ACCOUNT)","prefix":"$(or $(PREFIX),cleansed/)"}'
deploy-share: $(INSTALLED) $(NODE_INSTALLED) ## in the business account: the share stack (ML_ACCOUNT=<id> [PREFIX=cleansed/])
	@test -n "$(ML_ACCOUNT)" || { echo "set ML_ACCOUNT=<the ML account's 12-digit id>"; exit 2; }
	npx cdk deploy $(SHARE) --require-approval broadening

destroy-share: $(INSTALLED) $(NODE_INSTALLED) ## in the business account: remove the share stack (ML_ACCOUNT=<id>)
	@test -n "$(ML_ACCOUNT)" || { echo "set ML_ACCOUNT=<the ML account's 12-digit id>"; exit 2; }
	npx cdk destroy $(SHARE) --force

clean: ## remove the virtualenv and generated files
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules cdk.out test-artifacts .mlpoc .pytest_cache .mypy_cache .ruff_cache *.egg-info containers/*.egg-info
