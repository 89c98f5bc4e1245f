"""A code server's instances (one per sensor tick) read alembic's migration scripts once per process, and
Dagster's SQLite event log writes through one kept engine per shard."""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from dagster._core.storage import sql
from dagster._core.storage.event_log.sqlite import sqlite_event_log
from dagster._core.storage.runs.sqlite import sqlite_run_storage
from sqlalchemy.pool import NullPool

from lakehouse import checked_code, dagster_patches, run_workers


@pytest.fixture
def code_server(monkeypatch):
    """This process taken for a code server, with Dagster's own function back in place afterwards."""
    modules = [importlib.import_module(name) for name in dagster_patches.MODULES]
    for module in modules:  # monkeypatch restores each as it was
        if hasattr(module, "check_alembic_revision"):
            monkeypatch.setattr(module, "check_alembic_revision", module.check_alembic_revision)
    monkeypatch.setattr(dagster_patches, "_heads", {})
    monkeypatch.setattr(checked_code, "_warned", set())
    monkeypatch.setattr(run_workers, "in_code_server", lambda: True)


def _count_runs(home) -> int:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return instance.get_runs_count()


def test_only_a_code_server_installs_it(monkeypatch, code_server):
    monkeypatch.setattr(run_workers, "in_code_server", lambda: False)
    assert not dagster_patches.install()
    assert sql.check_alembic_revision is not dagster_patches.check_alembic_revision


def test_instances_find_the_head_revision_once_and_it_is_alembics(tmp_path, monkeypatch, code_server):
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert dagster_patches.install()
    assert sqlite_run_storage.check_alembic_revision is dagster_patches.check_alembic_revision
    _count_runs(home)  # the first instance of the process finds it
    parsed, checked = [], []
    real, configure = ScriptDirectory.from_config, MigrationContext.configure
    monkeypatch.setattr(ScriptDirectory, "from_config", lambda *a, **k: parsed.append(1) or real(*a, **k))
    monkeypatch.setattr(MigrationContext, "configure", lambda *a, **k: checked.append(1) or configure(*a, **k))
    for _ in range(3):
        assert _count_runs(home) == 0
    # Each instance still checked its databases (runs and schedules at least), without alembic's scripts.
    assert len(checked) >= 6 and parsed == []
    # What it kept is alembic's own answer, and the database is at that revision.
    config = sql.get_alembic_config(sqlite_run_storage.__file__)
    head = real(config).as_revision_number("head")
    assert list(dagster_patches._heads.values()) == [head]
    storage = sqlite_run_storage.SqliteRunStorage.from_local(str(home / "history"))
    with storage.connect() as conn:
        assert dagster_patches.check_alembic_revision(config, conn) == (head, head)


def test_another_dagster_is_left_as_it_is_with_a_warning_that_status_shows(monkeypatch, caplog, code_server,
                                                                          lakehouse_env):
    monkeypatch.setattr(dagster_patches, "CHECKED_SOURCES", {"check_alembic_revision": "0" * 16})
    with caplog.at_level(logging.WARNING, logger=dagster_patches.__name__):
        assert not dagster_patches.install()
        assert not dagster_patches.install()  # said and recorded once per process
    assert sqlite_run_storage.check_alembic_revision is sql.check_alembic_revision
    assert sql.check_alembic_revision is not dagster_patches.check_alembic_revision
    assert caplog.text.count("reads alembic's migration scripts again") == 1
    # Not only in a log: recorded in the home, and shown by `lakehouse status` (a process of its own).
    recorded, = checked_code.fallbacks(lakehouse_env.home)
    assert "check_alembic_revision is not the one checked" in recorded["message"] and recorded["times"] == 1
    status = subprocess.run([str(Path(sys.executable).parent / "lakehouse"), "status"], capture_output=True,
                            text=True, timeout=300)
    assert status.returncode == 0, status.stderr
    shown = status.stdout[status.stdout.index("Fallbacks to slower paths"):]
    assert "1 kind(s)" in shown and "reads alembic's migration scripts again" in shown, shown


def test_a_dagster_without_those_modules_loads_the_code_location_with_a_warning(monkeypatch, caplog, code_server):
    monkeypatch.setattr(dagster_patches, "MODULES", (*dagster_patches.MODULES, "dagster._core.storage.moved_away"))
    with caplog.at_level(logging.WARNING, logger=dagster_patches.__name__):
        assert not dagster_patches.install()
    assert sqlite_run_storage.check_alembic_revision is sql.check_alembic_revision
    assert sql.check_alembic_revision is not dagster_patches.check_alembic_revision
    assert "moved_away" in caplog.text and "not the ones checked" in caplog.text


@pytest.fixture
def event_log(monkeypatch):
    """Dagster's own `_connect` while the test runs (even where this worker installed ours, as
    loading the code location may), the worker's own again afterwards; no engine kept from before."""
    storage = sqlite_event_log.SqliteEventLogStorage  # Dagster's own, even where this worker installed ours
    monkeypatch.setattr(storage, "_connect", dagster_patches._replaced.get("SqliteEventLogStorage._connect",
                                                                          storage.__dict__["_connect"]))
    monkeypatch.setattr(dagster_patches, "_engines", type(dagster_patches._engines)())
    monkeypatch.setattr(checked_code, "_warned", set())
    made = []
    real = sqlite_event_log.create_engine
    monkeypatch.setattr(sqlite_event_log, "create_engine", lambda *a, **k: made.append(a[0]) or real(*a, **k))
    return made


def _write_and_read(home, runs: dict[str, int]) -> dict:
    """Engine events written for each run and asset materializations (the index shard too), read
    back; then the storage wiped (its files deleted) and written again."""
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    def read(instance) -> dict:
        got = {run_id: [e.message for e in instance.all_logs(run_id) if e.message.startswith("event ")]
               for run_id in runs}
        for asset in ("a", "b"):
            records = instance.fetch_materializations(dg.AssetKey(asset), limit=100).records
            got[asset] = sorted(r.asset_materialization.partition for r in records)
        return got

    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run_id, events in runs.items():
            run = dg.DagsterRun(job_name="g", run_id=run_id)
            for i in range(events):
                instance.report_engine_event(f"event {i} of {run_id[:6]}", run)
        for day in range(1, 6):
            for asset in ("a", "b"):
                instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=f"2026-03-0{day}"))
        before = read(instance)
        instance.event_log_storage.wipe()
        assert not any(read(instance).values())
        run_id = next(iter(runs))
        instance.report_engine_event("event after the wipe", dg.DagsterRun(job_name="g", run_id=run_id))
        instance.report_runless_asset_event(dg.AssetMaterialization("a", partition="2026-03-09"))
        return {"before": before, "after": read(instance)}


def test_the_event_log_keeps_an_engine_per_shard_and_stores_what_dagster_does(tmp_path, monkeypatch, event_log):
    runs = {f"{n}" * 8 + "-0000-0000-0000-000000000000": 40 for n in (1, 2, 3)}
    expected = _write_and_read(tmp_path / "dagster", runs)  # Dagster's own way: an engine per write
    assert len(event_log) > 120 and all(len(expected["before"][run_id]) == 40 for run_id in runs)
    assert len(expected["before"]["a"]) == 5 and expected["after"]["a"] == ["2026-03-09"], expected
    event_log.clear()
    assert dagster_patches.keep_event_log_engines()
    assert dagster_patches.keep_event_log_engines()  # once is enough; again changes nothing
    assert _write_and_read(tmp_path / "kept", runs) == expected
    # One engine kept per shard touched (each run's database, the runless events', the index), not one
    # per write; the few others are Dagster's own, made outside `_connect` (the storage's start, its
    # `has_table`). None holds a connection between writes (NullPool).
    assert set(dagster_patches._engines) == set(event_log) and len(set(event_log)) == len(runs) + 2, event_log
    assert len(event_log) <= 20, event_log
    assert all(isinstance(e.pool, NullPool) for e in dagster_patches._engines.values())
    # Only the last ENGINES_KEPT shards' engines stay; one used again moves to the newest.
    monkeypatch.setattr(dagster_patches, "ENGINES_KEPT", 2)
    first, second, third = (f"sqlite:///{tmp_path}/{n}.db" for n in "abc")
    kept = dagster_patches._kept_engine(first)
    dagster_patches._kept_engine(second)
    assert dagster_patches._kept_engine(first) is kept
    dagster_patches._kept_engine(third)
    assert list(dagster_patches._engines) == [first, third]


def test_where_the_event_log_keeps_its_engines(tmp_path):
    """The daemon, and the run workers' forkserver (its preload imports Dagster's storage before the
    code location); a process that only loads the code location imports nothing for it."""
    check = ("import sys; from lakehouse import dagster_patches as p; s = sys.modules.get(p.EVENT_LOG_MODULE); "
             "print('not imported' if s is None else s.SqliteEventLogStorage._connect is p._connect)")
    preload = "; ".join(f"import {name}" for name in run_workers.PRELOAD)
    daemon = ("import os; from lakehouse import daemon_watch; r, w = os.pipe()\n"
              "try:\n    daemon_watch.main(['daemon_watch', str(r), 'dagster-daemon', '--help'])\n"
              "except SystemExit:\n    pass\n")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "LAKEHOUSE_HOME": str(tmp_path / "home")}
    seen = {}
    for name, code in (("forkserver", preload), ("daemon", daemon), ("definitions", "import lakehouse.definitions")):
        out = subprocess.run([sys.executable, "-c", f"{code}\n{check}"], capture_output=True, text=True, env=env,
                             timeout=120, start_new_session=True)  # the daemon's watchdog signals its own group
        assert out.returncode == 0, out.stderr[-3000:]
        seen[name] = out.stdout.strip().splitlines()[-1]
    assert seen == {"forkserver": "True", "daemon": "True", "definitions": "not imported"}, seen


def test_another_dagsters_event_log_is_left_as_it_is_with_a_warning(monkeypatch, caplog, event_log, lakehouse_env):
    monkeypatch.setattr(dagster_patches, "CHECKED_EVENT_LOG", {"SqliteEventLogStorage._connect": "0" * 16})
    with caplog.at_level(logging.WARNING, logger=dagster_patches.__name__):
        assert not dagster_patches.keep_event_log_engines()
        assert not dagster_patches.keep_event_log_engines()
    assert sqlite_event_log.SqliteEventLogStorage._connect is not dagster_patches._connect
    assert caplog.text.count("makes a database engine for every event it writes") == 1
    recorded, = checked_code.fallbacks(lakehouse_env.home)
    assert "SqliteEventLogStorage._connect is not the one checked" in recorded["message"]
