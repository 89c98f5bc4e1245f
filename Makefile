# Two commands do all setup on a fresh machine (Python 3.11 and Java 17 present):
#   make run   - create .venv if missing, install the project, run `lakehouse demo`
#   make test  - create .venv if missing, install with test extras, run the whole suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
LAKEHOUSE_HOME ?= $(CURDIR)/.lakehouse
DAGSTER_HOME ?= $(LAKEHOUSE_HOME)/dagster
export LAKEHOUSE_HOME DAGSTER_HOME

.PHONY: run test ui bench install install-test clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 required, found {sys.version.split()[0]}; set PYTHON=/path/to/python3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Stamps re-run pip only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[local]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[local,test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(BIN)/lakehouse demo

# Two workers, each test file on one worker (module fixtures are built once); -n 0 for one process.
PYTEST_WORKERS ?= 2
test: install-test
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: install-test
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/landing_latency.py
	$(BIN)/python bench/backfill.py
	$(BIN)/python bench/spark_output.py

ui: install
	@$(BIN)/python -c 'from lakehouse.runner import prepare_instance; from lakehouse.settings import load_settings; prepare_instance(load_settings())'
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

clean:
	rm -rf $(LAKEHOUSE_HOME)
