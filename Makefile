# Two commands do all setup on a fresh machine (Python 3.11 and Java 17 present):
#   make run   - create .venv if missing, install the locked versions (requirements.lock), run `lakehouse demo`
#   make test  - the same install, then the whole suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
LAKEHOUSE_HOME ?= $(CURDIR)/.lakehouse
DAGSTER_HOME ?= $(LAKEHOUSE_HOME)/dagster
export LAKEHOUSE_HOME DAGSTER_HOME

.PHONY: run test test-tmpdir soak ui bench install lock clean

# uv (from PyPI, pinned) installs the exact versions of requirements.lock, the set the tests
# passed with, in seconds; `make lock` refreshes the lock from pyproject.toml.
UV_VERSION := 0.13.9
UV := $(BIN)/uv
$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 required, found {sys.version.split()[0]}; set PYTHON=/path/to/python3.11"'
	$(PYTHON) -m venv $(VENV)

$(UV): | $(BIN)/python
	$(BIN)/pip install -qq --disable-pip-version-check uv==$(UV_VERSION)

# The stamp re-runs the install only when the lock or pyproject.toml changes. One lock for
# the demo and the tests: the test extras add seconds, not minutes.
# Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set (this machine, many CI
# images) Python would otherwise compile Dagster and the project from source in every process,
# and `lakehouse run` starts a dozen (daemon, code server, one per run): importing the code
# location took 2.0 s instead of 0.8 s. The project's own files are compiled too; an edited
# one is recompiled in memory, so a stale .pyc is never used.
$(VENV)/.installed: requirements.lock pyproject.toml | $(UV)
	$(UV) pip install --quiet --python $(BIN)/python --compile-bytecode --no-deps -r requirements.lock -e .
	$(BIN)/python -m compileall -q lakehouse tests bench
	touch $@

lock: | $(UV)
	$(UV) pip compile --quiet pyproject.toml --extra local --extra test --universal --python-version 3.11 \
		--output-file requirements.lock

# The UI test drives Debian's Chromium (Playwright's own browser download needs the internet).
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

# The spark engine's Iceberg catalog is the same SQLite file PyIceberg uses, opened through
# Debian's SQLite JDBC driver (DESIGN.md §9); `make test` runs that engine.
SQLITE_JDBC := /usr/share/java/sqlite-jdbc.jar
$(SQLITE_JDBC):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libxerial-sqlite-jdbc-java >/dev/null

install: $(VENV)/.installed

run: install
	$(BIN)/lakehouse demo

# Three workers on this 2-core machine, each test file on one worker (module fixtures are built
# once), the longest files first (tests/conftest.py, LONGEST_FIRST); -n 0 for one process. The
# tests' processes wait part of the time (daemon ticks, a run's queue, subprocesses starting):
# with two workers the cores were idle 12-14% of a suite, with three 3-4%, for the same work (README,
# Tests); measured only here: PYTEST_WORKERS=N elsewhere.
PYTEST_WORKERS ?= 3
# The tests' temporary folders (their homes: Dagster's SQLite storages, catalogs, warehouses; about
# 0.5 GB a session, pytest keeping the last three, in memory until removed) go to a RAM-backed
# folder where the machine has one with 4 GB free: each `lakehouse run` of the suite commits to
# SQLite hundreds of times, and on disk the kernel's CPU time was about twice as large (README,
# Tests). TESTS_TMPDIR=/some/folder for another (yours), TESTS_TMPDIR= for the system's; the run
# prints which. Decided once per make.
ifeq ($(origin TESTS_TMPDIR),undefined)
TESTS_TMPDIR := $(shell [ "$$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] && [ -w /dev/shm ] \
	&& [ "$$(df -Pk /dev/shm | awk 'NR==2 {print $$4}')" -gt 4194304 ] 2>/dev/null && echo /dev/shm/lakehouse-tests-$$(id -u))
endif
TESTS_ENV = $(if $(TESTS_TMPDIR),TMPDIR='$(abspath $(TESTS_TMPDIR))' )
test-tmpdir:
	@d='$(abspath $(TESTS_TMPDIR))'; [ -z "$$d" ] || { mkdir -p -m 700 "$$d" && [ ! -L "$$d" ] && [ -d "$$d" ] && [ -O "$$d" ] && chmod 700 "$$d"; } \
		|| { echo "$$d is not a folder of yours: set TESTS_TMPDIR to one, or to nothing for the system's" >&2; exit 1; }
	@echo "the tests' temporary folders: $(or $(abspath $(TESTS_TMPDIR)),the system's (TMPDIR or /tmp))"

test: install $(CHROMIUM) $(SQLITE_JDBC) test-tmpdir
	$(TESTS_ENV)$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# The crash trials at more kill moments than `make test` (two per file there), at a new seed
# each time; the seed is printed with every trial, and LAKEHOUSE_CRASH_SEED=<seed> replays one.
CRASH_TRIALS ?= 6
soak: install test-tmpdir
	@seed=$${LAKEHOUSE_CRASH_SEED:-$$(date +%s)}; echo "crash trials: $(CRASH_TRIALS) per file, LAKEHOUSE_CRASH_SEED=$$seed"; \
	LAKEHOUSE_CRASH_TRIALS=$(CRASH_TRIALS) LAKEHOUSE_CRASH_SEED=$$seed \
		$(TESTS_ENV)$(BIN)/python -m pytest -n 2 --dist loadfile tests/test_crash.py tests/test_crash_more.py

# small_days compares this tree with BENCH_BASELINE (default: before issue 17's per-step fixes).
BENCH_BASELINE ?= 5f68561
bench: install
	$(BIN)/python bench/small_days.py --baseline $(BENCH_BASELINE)
	$(BIN)/python bench/table_loads.py --baseline $(BENCH_BASELINE)
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/landing_latency.py
	$(BIN)/python bench/backfill.py
	$(BIN)/python bench/spark_scale.py
	$(BIN)/python bench/bookkeeping.py

# The UI and daemon on 127.0.0.1:3000 (LAKEHOUSE_UI_URL); an instance with no runs gets the demo first.
ui: install
	$(BIN)/lakehouse ui

clean:
	rm -rf $(LAKEHOUSE_HOME)
