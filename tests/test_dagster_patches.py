"""A code server's instances (one per sensor tick) read alembic's migration scripts once per process."""

from __future__ import annotations

import importlib
import logging

import dagster as dg
from alembic.script import ScriptDirectory
from dagster._core.storage import sql
from dagster._core.storage.runs.sqlite import sqlite_run_storage

from lakehouse import checked_code, dagster_patches


def _instance(home):
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return instance.get_runs_count()


def test_instances_find_the_head_revision_once_and_it_is_alembics(tmp_path, monkeypatch):
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert dagster_patches.install()
    assert sqlite_run_storage.check_alembic_revision is dagster_patches.check_alembic_revision
    _instance(home)  # the first instance of the process may find it
    parsed = []
    real = ScriptDirectory.from_config
    monkeypatch.setattr(ScriptDirectory, "from_config", lambda *a, **k: parsed.append(1) or real(*a, **k))
    for _ in range(3):
        assert _instance(home) == 0
    assert parsed == []
    # What it kept is alembic's own answer, and the database is at that revision.
    config = sql.get_alembic_config(sqlite_run_storage.__file__)
    head = real(config).as_revision_number("head")
    assert list(dagster_patches._heads.values()) == [head]
    storage = sqlite_run_storage.SqliteRunStorage.from_local(str(home / "history"))
    with storage.connect() as conn:
        assert dagster_patches.check_alembic_revision(config, conn) == (head, head)


def test_another_dagster_is_left_as_it_is_with_a_warning(monkeypatch, caplog):
    ours = dagster_patches.check_alembic_revision
    assert dagster_patches.install()
    for name in dagster_patches.MODULES:  # as before install
        module = importlib.import_module(name)
        if getattr(module, "check_alembic_revision", None) is ours:
            monkeypatch.setattr(module, "check_alembic_revision", dagster_patches._replaced)
    monkeypatch.setattr(dagster_patches, "CHECKED_SOURCES", {"check_alembic_revision": "0" * 16})
    monkeypatch.setattr(checked_code, "_warned", set())
    with caplog.at_level(logging.WARNING, logger=dagster_patches.__name__):
        assert not dagster_patches.install()
    assert sqlite_run_storage.check_alembic_revision is dagster_patches._replaced is sql.check_alembic_revision
    assert "reads alembic's migration scripts again" in caplog.text
