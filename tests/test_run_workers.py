"""The code server's runs fork from a preloaded forkserver (lakehouse/run_workers.py), only on
the Dagster code it was checked against; through the daemon, see tests/test_crash_more.py."""

from __future__ import annotations

import logging
import multiprocessing
import sys

import pytest
from dagster._grpc import server

from lakehouse import run_workers


@pytest.fixture
def code_server(monkeypatch):
    """This process taken for a code server, without starting a forkserver; the server class restored after."""
    monkeypatch.setattr(sys, "argv", [sys.argv[0], "api", "grpc", "--port", "0"])
    monkeypatch.setattr(run_workers, "_installed", False)
    started = []
    monkeypatch.setattr(run_workers, "_start", lambda: started.append(True))
    yield started
    if isinstance(server.DagsterApiServer.__dict__.get("_mp_ctx"), property):
        del server.DagsterApiServer._mp_ctx


def test_outside_a_code_server_nothing_changes(monkeypatch):
    monkeypatch.setattr(run_workers, "_installed", False)
    assert not run_workers.in_code_server()
    assert run_workers.install() is False
    assert "_mp_ctx" not in server.DagsterApiServer.__dict__


def test_a_code_servers_runs_start_from_the_preloaded_forkserver(code_server):
    assert run_workers.install() is True
    instance = object.__new__(server.DagsterApiServer)
    instance._mp_ctx = multiprocessing.get_context("spawn")  # what the constructor sets
    assert instance._mp_ctx.get_start_method() == "forkserver"
    assert code_server == [True]  # started at once, not at the first run
    from multiprocessing import forkserver
    assert forkserver._forkserver._preload_modules == run_workers.PRELOAD
    assert run_workers.install() is True  # once per process


def test_on_other_dagster_code_runs_are_spawned_as_dagster_does_with_a_warning(code_server, monkeypatch, caplog):
    monkeypatch.setitem(run_workers.CHECKED_SOURCES, "DagsterApiServer.StartRun", "0" * 16)
    with caplog.at_level(logging.WARNING, logger=run_workers.__name__):
        assert run_workers.install() is False
    assert "DagsterApiServer.StartRun differ" in caplog.text and "spawned" in caplog.text
    assert "_mp_ctx" not in server.DagsterApiServer.__dict__ and code_server == []
