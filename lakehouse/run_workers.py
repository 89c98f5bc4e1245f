"""Run workers forked from a warm process of the code server, instead of started cold.

A Dagster code server starts each run in a new Python process (multiprocessing's "spawn"),
which imports Dagster, this project and its engines and builds the definitions again before
the run's first step: about 2 s of CPU and of a landed file's wait for gold, for every run
(`python -X importtime -c "import lakehouse.definitions, duckdb, sqlframe.duckdb,
pyiceberg.catalog.sql"`). Here the code server's runs start from multiprocessing's
"forkserver" instead: one process, started as soon as the code location loads, imports
them once (PRELOAD), and each run is a fork of it, with those modules already imported.

The forkserver only imports; it starts no thread, engine or connection, so its forks are
as clean as a spawned process (Dagster's own multiprocess executor offers the same start
method for its steps). A run worker is then a child of the forkserver, which is a child of
the code server, in the same process group: stopping the group stops them all, as before.

Dagster has no setting for the run worker's start method (the code server sets "spawn" in
its constructor), so `install()` replaces that attribute of its server class. It is applied
only in a code server process, and only to the code it was checked against (a digest of
the lines that set and use it); anything else keeps Dagster's spawn, with a warning.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import multiprocessing
import sys
import threading

log = logging.getLogger(__name__)
# What a run imports: Dagster's run entry point, the code location, the steps and their engines.
PRELOAD = ["dagster._grpc.impl", "lakehouse.definitions", "lakehouse.steps", "lakehouse.ingest", "lakehouse.iceberg",
           "duckdb", "sqlframe.duckdb", "pyiceberg.catalog.sql", "pyiceberg.table", "pyarrow.dataset", "pandas"]
# sha256 (first 16 hex digits) of the source of the server's methods that set and use its
# start method, in Dagster 1.13.
CHECKED_SOURCES = {"DagsterApiServer.__init__": "820bb029ed1f1260", "DagsterApiServer.StartRun": "ec53adf5e40c9c7c"}
_installed = False


def in_code_server() -> bool:
    """True in a Dagster code server process (`dagster api grpc`, started by the daemon or the UI)."""
    return sys.argv[1:3] == ["api", "grpc"] and "dagster._grpc.server" in sys.modules


def install() -> bool:
    """In a code server: its runs start from a preloaded forkserver. True when applied."""
    global _installed
    if _installed or not in_code_server():
        return _installed
    from dagster._grpc import server

    found = {name: digest(server.DagsterApiServer, name) for name in CHECKED_SOURCES}
    changed = [name for name, value in found.items() if value != CHECKED_SOURCES[name]]
    if changed:
        log.warning("Dagster's %s differ from the code lakehouse/run_workers.py was checked against: runs "
                    "start as Dagster starts them (spawned, about 2 s slower each)", ", ".join(changed))
        return False
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    # A data descriptor on the class wins over the attribute the constructor already set.
    server.DagsterApiServer._mp_ctx = property(lambda self: context, lambda self, value: None)
    # Warm now, while the daemon gets going, not in the first run's launch.
    threading.Thread(target=_start, name="lakehouse-forkserver", daemon=True).start()
    _installed = True
    return True


def _start() -> None:
    from multiprocessing import forkserver

    try:
        forkserver.ensure_running()
    except Exception as exc:  # the first run starts it again, and says why if it cannot
        log.warning("the run workers' forkserver did not start now (%s); the first run starts it", exc)


def digest(owner, name: str) -> str | None:
    """The digest of the source of `owner`'s `name` (qualified by its class), None where there is none."""
    try:
        source = inspect.getsource(getattr(owner, name.rsplit(".", 1)[-1]))
    except (AttributeError, OSError, TypeError):
        return None
    return hashlib.sha256(source.encode()).hexdigest()[:16]
