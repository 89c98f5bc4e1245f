"""Dagster's SQLite storages, made without parsing alembic's migration scripts each time.

Each DagsterInstance on SQLite storage checks its databases' schema revision against the
head revision of Dagster's migration scripts (`check_alembic_revision`, in
dagster/_core/storage/sql.py): for its run and schedule storages, and for each event-log
shard it opens first. Alembic finds that head by importing every script, each time. A code
server makes an instance for every sensor tick that reads it, and under `lakehouse run`
three sensors tick every 2 s. Finding the head was most of an instance's cost, and 1.5 s of
the code server's CPU in a two-day run (py-spy; figures in README, Benchmarks). The scripts
are files of the installed Dagster and do not change while a process runs, so here the head
revision of a script location is found once per process; the database's own revision is
still read each time.

Installed in a code server, when it loads the code location (`lakehouse.definitions`); not
in other processes that load it (`install` decides), which make an instance or two and
would only pay the import of Dagster's storage modules with the definitions (half a
second). Only on the Dagster whose function was checked; on another one it is left as it
is, with a warning.
"""

from __future__ import annotations

import importlib
import logging

from lakehouse import checked_code

log = logging.getLogger(__name__)

# The function replaced, and the modules that hold it under its name (imported from sql.py).
MODULES = (
    "dagster._core.storage.sql",
    "dagster._core.storage.runs.sqlite.sqlite_run_storage",
    "dagster._core.storage.schedules.sqlite.sqlite_schedule_storage",
    "dagster._core.storage.event_log.sqlite.sqlite_event_log",
    "dagster._core.storage.event_log.sqlite.consolidated_sqlite_event_log",
)
CHECKED_SOURCES = {"check_alembic_revision": "0cda7bdd1df027ec"}

_heads: dict[str, str | None] = {}


def check_alembic_revision(alembic_config, conn):
    """Dagster's `check_alembic_revision`, with the scripts' head revision read once per script location."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from dagster._core.storage import sql

    with sql._alembic_lock:
        db_revision = MigrationContext.configure(conn).get_current_revision()
        where = alembic_config.get_main_option("script_location")
        if where not in _heads:
            _heads[where] = ScriptDirectory.from_config(alembic_config).as_revision_number("head")
        return db_revision, _heads[where]


def install() -> bool:
    """In a code server: `check_alembic_revision` in place in every module of MODULES. False elsewhere,
    and where Dagster's function or its modules are not the ones checked."""
    from lakehouse import run_workers

    if not run_workers.in_code_server():
        return False
    try:
        modules = [importlib.import_module(name) for name in MODULES]
    except ImportError as error:
        checked_code.warn_once(log, "Dagster's storage modules are not the ones checked (lakehouse/dagster_patches.py: "
                               "%s): each new Dagster instance reads alembic's migration scripts again, as Dagster "
                               "does", error)
        return False
    sql = modules[0]
    if getattr(sql, "check_alembic_revision", None) is check_alembic_revision:
        return True
    if changed := checked_code.changed(CHECKED_SOURCES, lambda name: sql):  # a missing function counts too
        checked_code.warn_once(log, "Dagster's %s is not the one checked (lakehouse/dagster_patches.py): each new "
                               "Dagster instance reads alembic's migration scripts again, as Dagster does",
                               ", ".join(changed))
        return False
    original = sql.check_alembic_revision
    for module in modules:
        if getattr(module, "check_alembic_revision", None) is original:
            module.check_alembic_revision = check_alembic_revision
    return True
