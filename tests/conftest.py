"""Shared fixtures: an isolated LAKEHOUSE_HOME per test, and a real S3 API on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import socket
import uuid

import pytest

from lakehouse import checked_code, collector
from lakehouse.settings import load_settings

# A test worker runs steps, and Dagster in process, for its whole life: the thresholds a process
# that runs steps sets at its first session (lakehouse/collector.py), from the start.
collector.tune()

_LAKEHOUSE_VARS = [v for v in os.environ if v.startswith("LAKEHOUSE_")] + ["DAGSTER_HOME"]


@pytest.fixture(scope="session", autouse=True)
def plans_of_this_session(tmp_path_factory):
    """One plan cache (lakehouse/plan_cache.py) for the session's test workers and every process they
    start, under the session's temporary folder: a test's home would start empty each time, and the
    user's cache would carry plans of earlier sessions (and of the tests' own keys) into this one."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "plans"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAKEHOUSE_PLAN_CACHE", str(root))
        yield root


@pytest.fixture(autouse=True)
def fallbacks_stay_in_test_homes(monkeypatch, tmp_path_factory):
    """Fallbacks that tests take on purpose in their own process are recorded only in homes under the
    tests' temporary folder, not in the home the Makefile exports (lakehouse/checked_code.py); a
    test's child process that takes one is given a home of the test's (tests/test_run_workers.py)."""
    real, base = checked_code._home, tmp_path_factory.getbasetemp().resolve()
    monkeypatch.setattr(checked_code, "_home", lambda: home if (home := real()) and base in home.parents else None)


@pytest.fixture
def lakehouse_env(tmp_path, monkeypatch, plans_of_this_session):
    """A fresh LAKEHOUSE_HOME under tmp_path with every other setting at its default, but the
    session's plan cache (`plans_of_this_session`)."""
    for name in _LAKEHOUSE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAKEHOUSE_PLAN_CACHE", str(plans_of_this_session))
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster"))
    return load_settings()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3-compatible server on 127.0.0.1, shared by the whole test session."""
    from moto import backends
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    # moto 5 lists its package folder (about 150 stat calls) on every request to tell a service's
    # name from a host; the folder does not change while the tests run. 2.7-3.2 ms of CPU a GET
    # against 3.6-4.0 ms (client and server in one process, 600 GETs, two runs each).
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch):
    """A new bucket on the test server; boto3 reaches it through AWS_ENDPOINT_URL."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    bucket = f"landing-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket


# The test files that take longest, longest first (seconds in a CI run of 1cc025e, where the
# durations add up to about 1,870 s, unless said otherwise). With `--dist loadfile` a worker is handed the next file
# as it nears the end of its last: left to the end (pytest-xdist orders files by their number
# of tests, and these have few), one of them keeps one worker busy while the others have nothing
# left to do.
LONGEST_FIRST = [
    "test_oracle.py",  # 277
    "test_crash_more.py",  # 223
    "test_crash.py",  # 161
    "test_pipeline.py",  # 146
    "test_sensors_e2e.py",  # 129
    "test_pipes_remote.py",  # 105
    "test_spark_driver.py",  # 88 at 0c64785, since it also loads its days on DuckDB to compare
    "test_backfill.py",  # 87
    "test_silver_gold.py",  # 83
    "test_spark_iceberg.py",  # 71
    "test_ui.py",  # 65
    "test_new_source.py",  # 61
    "test_quality.py",  # 55
]


def pytest_collection_modifyitems(items):
    """The files of LONGEST_FIRST first, in its order; the rest after, as collected (the Makefile
    turns off xdist's own reordering, which would undo this)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order
