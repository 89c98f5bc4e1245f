"""Dagster's SQLite storages, made without parsing alembic's migration scripts each time, and
its SQLite event log, written without a new database engine for every event.

1. Each DagsterInstance on SQLite storage checks its databases' schema revision against the
head revision of Dagster's migration scripts (`check_alembic_revision`, in
dagster/_core/storage/sql.py): for its run and schedule storages, and for each event-log
shard it opens first. Alembic finds that head by importing every script, each time. A code
server makes an instance for every sensor tick that reads it, and under `lakehouse run`
three sensors tick every 2 s. Finding the head was most of an instance's cost, and 1.5 s of
the code server's CPU in a two-day run (py-spy; figures in README, Benchmarks). The scripts
are files of the installed Dagster and do not change while a process runs, so here the head
revision of a script location is found once per process; the database's own revision is
still read each time. Installed in a code server, when it loads the code location
(`lakehouse.definitions`); not in other processes that load it (`install` decides), which
make an instance or two and would only pay the import of Dagster's storage modules with the
definitions (half a second).

2. Dagster's SQLite event log (`SqliteEventLogStorage._connect`) makes a SQLAlchemy engine
for every write or read and drops it after: every event (a run writes hundreds, the daemon one
per asset and partition of each run it creates) pays the engine's making and the compiling of
its statement, which SQLAlchemy caches per engine. Here each shard's engine is kept (the
last ENGINES_KEPT shards per process). It still opens and closes a connection per write, as
Dagster does (NullPool): nothing is held open between writes, and a fork starts with no
connection of its parent's. Installed in the daemon (`lakehouse.daemon_watch`) and wherever
the code location loads with Dagster's SQLite event log already imported (a code server,
the run workers' forkserver, whose forks write the runs' events), at no import cost.

Each only on the Dagster whose function was checked; on another one it is left as it is,
with a warning.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import logging
import os
import sys
import threading

from lakehouse import checked_code

log = logging.getLogger(__name__)

EVENT_LOG_MODULE = "dagster._core.storage.event_log.sqlite.sqlite_event_log"  # 2.: its storage class
# 1.: the function replaced, and the modules that hold it under its name (imported from sql.py).
MODULES = (
    "dagster._core.storage.sql",
    "dagster._core.storage.runs.sqlite.sqlite_run_storage",
    "dagster._core.storage.schedules.sqlite.sqlite_schedule_storage",
    EVENT_LOG_MODULE,
    "dagster._core.storage.event_log.sqlite.consolidated_sqlite_event_log",
)
CHECKED_SOURCES = {"check_alembic_revision": "0cda7bdd1df027ec"}
# _initdb too: it now gets an engine that lives as long as the process (it must not attach to it).
CHECKED_EVENT_LOG = {"SqliteEventLogStorage._connect": "b8435f2665689760",
                     "SqliteEventLogStorage._initdb": "7a302d98eb61a34d"}
ENGINES_KEPT = 64  # event-log shards (a run's database each, and the index) whose engine a process keeps

_heads: dict[str, str | None] = {}
_engines: collections.OrderedDict[str, object] = collections.OrderedDict()  # shard's URL -> engine, newest last
_engines_lock = threading.Lock()  # storages lock their own writes; the engines are shared between them
_replaced: dict[str, object] = {}  # Dagster's own functions this process replaced, by name


def _forget_engines_in_child() -> None:
    """A fork starts with no engine and a free lock, whatever its parent's threads were doing."""
    global _engines_lock
    _engines_lock = threading.Lock()
    _engines.clear()


os.register_at_fork(after_in_child=_forget_engines_in_child)


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


def _kept_engine(url: str):
    """The SQLAlchemy engine of an event-log shard, made once per process (Dagster's settings for it)."""
    event_log = sys.modules[EVENT_LOG_MODULE]
    with _engines_lock:
        engine = _engines.pop(url, None)
        if engine is None:
            engine = event_log.create_engine(url, poolclass=event_log.NullPool,
                                             connect_args={"timeout": event_log.SQLITE_BUSY_TIMEOUT_SECONDS})
        _engines[url] = engine
        while len(_engines) > ENGINES_KEPT:
            _engines.popitem(last=False)  # its NullPool holds no connection: dropping it closes nothing
        return engine


@contextlib.contextmanager
def _connect(self, shard: str):
    """Dagster's `SqliteEventLogStorage._connect`, on the shard's kept engine instead of a new one."""
    with self._db_lock:
        engine = _kept_engine(self.conn_string_for_shard(shard))
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        with engine.connect() as conn:
            with conn.begin():
                yield conn


def keep_event_log_engines(imported_only: bool = True) -> bool:
    """Dagster's SQLite event log writing through kept engines (2. above). With `imported_only`,
    only where Dagster's event log is already imported (nothing imported for it); False there,
    and where Dagster's function is not the one checked."""
    if imported_only and EVENT_LOG_MODULE not in sys.modules:
        return False
    try:
        storage = importlib.import_module(EVENT_LOG_MODULE).SqliteEventLogStorage
    except (ImportError, AttributeError) as error:
        checked_code.warn_once(log, "Dagster's SQLite event log is not the one checked (lakehouse/dagster_patches.py: "
                               "%s): it makes a database engine for every event it writes, as Dagster does", error)
        return False
    if storage.__dict__.get("_connect") is _connect:
        return True
    if changed := checked_code.changed(CHECKED_EVENT_LOG, lambda name: storage):
        checked_code.warn_once(log, "Dagster's %s is not the one checked (lakehouse/dagster_patches.py): its SQLite "
                               "event log makes a database engine for every event it writes, as Dagster does",
                               ", ".join(changed))
        return False
    _replaced["SqliteEventLogStorage._connect"] = storage.__dict__["_connect"]
    storage._connect = _connect
    return True
