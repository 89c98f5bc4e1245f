"""A code server's instances (one per sensor tick) read alembic's migration scripts once per process."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from dagster._core.storage import sql
from dagster._core.storage.runs.sqlite import sqlite_run_storage

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
