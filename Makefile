# Two commands do all set-up: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
REQS := requirements.txt requirements-dev.txt $(wildcard pipelines/requirements.txt)

.PHONY: help setup envs browser java run run-walmart test lint typecheck unit integration e2e dashboard clean \
	package bench-startup bench-conditioning bench-forecast bench-polling bench-dashboard bench-loop \
	bench-blob bench-executor bench-many \
	bench-hostile

help:
	@echo "make run            set up, start the local runtime and run the demo (Ctrl-C stops everything)"
	@echo "make run-walmart    the same loop on the real Walmart files in ../shared/data/walmart"
	@echo "make test           set up, then lint, type-check and run the whole test suite"
	@echo "make dashboard      build the model-health dashboard into .local/dashboard"
	@echo "make package        build the deployment package: dist/api.zip and dist/api/ (unpacked)"
	@echo "make bench-startup  median import time of function_app against the SDK floor"
	@echo "make bench-conditioning / bench-forecast / bench-polling / bench-dashboard / bench-loop / bench-blob / bench-executor / bench-many / bench-hostile   the other benchmarks"

$(VENV)/.installed: $(REQS)
	@test -n "$(PYTHON)" || { echo "Python 3.11 is required (python3.11 or python3 on PATH)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required, found " + sys.version.split()[0])'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -r pipelines/requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "Node.js and npm are required for Azurite (the storage emulator)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed node_modules/.installed

# Every pipeline step runs in the environment its component declares: build those virtualenvs
# once (cached by content under .local/envs), so neither the demo nor a test waits for one.
envs: setup
	$(PY) -m local.aml prepare $(wildcard pipelines/*.yml)

# The dashboard's browser test needs Chromium (Debian's package). Installed when missing and we
# may (root, e.g. CI); otherwise that test says how to install it and skips outside CI.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: Chromium is missing; the dashboard browser test will skip (apt-get install chromium)"; fi; }

# Spark steps (type: spark nodes) need Java: Debian's headless JRE, installed the same way.
java:
	@command -v java >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; \
	  else echo "note: Java is missing; the Spark step test will skip (apt-get install openjdk-17-jre-headless)"; fi; }

run: setup envs
	$(PY) -m local run

# The whole loop on the Walmart data (../shared/data, see its SOURCES.md); ARGS="--many-models"
# trains one model per store x department, ARGS="--exit" stops after the summary.
run-walmart: setup envs
	$(PY) -m local run --dataset walmart --data ../shared/data/walmart $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Parallel entry scripts import the pipeline package as Azure ML does (forecasting), which
# the first run checks as pipelines.src.forecasting: the second checks them against it.
typecheck: setup
	$(VENV)/bin/mypy
	MYPYPATH=pipelines/src $(VENV)/bin/mypy pipelines/src/*.py

test: setup browser java envs lint typecheck
	$(PY) -m pytest

unit: setup
	$(PY) -m pytest tests/unit

integration: setup
	$(PY) -m pytest tests/integration

e2e: setup
	$(PY) -m pytest tests/e2e

dashboard: setup
	$(PY) -m dashboard build --azurite --out .local/dashboard

# The deployment package, as azd and Azure Functions see it (.funcignore applied). Standard
# library only, so it needs no set-up; azure.yaml runs it before azd packages the app.
package:
	$(PYTHON) infra/scripts/package_app.py

bench-startup: setup
	$(PY) -m benchmarks.startup

bench-conditioning: setup
	$(PY) -m benchmarks.conditioning --mb 250 --mb 1024 --repeat 2

bench-forecast: setup
	$(PY) -m benchmarks.forecast

bench-polling: setup
	$(PY) -m benchmarks.polling

bench-dashboard: setup
	$(PY) -m benchmarks.dashboard

bench-loop: setup
	$(PY) -m benchmarks.loop

bench-blob: setup
	$(PY) -m benchmarks.blob_binding --mb 250 --mb 1024

bench-executor: setup
	$(PY) -m benchmarks.executor

bench-many: setup envs
	$(PY) -m benchmarks.many_models

bench-hostile: setup
	$(PY) -m benchmarks.hostile

clean:
	rm -rf .local .pytest_cache .mypy_cache .ruff_cache dist
