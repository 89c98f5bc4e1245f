"""A pytest plugin that bench/suite_cpu.py loads (this folder on PYTHONPATH, alone, so nothing else
of bench/ can shadow a module the tests import): each test's CPU in the test worker that ran it.

bench/suite_cpu.py counts the processes a test starts (a `lakehouse run` and all it starts, a
Spark JVM) under the test file that started them; this adds what the worker itself spent in
the test's setup, call and teardown (steps in process, in-process Dagster runs, reads). One
JSON line per test, to a file per worker named after LAKEHOUSE_CPU_PER_TEST.
"""

from __future__ import annotations

import json
import os
import resource

import pytest


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    before = _cpu()
    yield
    spent = _cpu() - before
    path = f"{os.environ['LAKEHOUSE_CPU_PER_TEST']}.{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    with open(path, "a") as out:
        out.write(json.dumps({"file": item.nodeid.split("::")[0], "cpu_s": spent}) + "\n")
