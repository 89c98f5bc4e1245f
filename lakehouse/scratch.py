"""Local scratch folders (DuckDB's database and spill, Spark's Arrow files, bronze's spilled rows).

Named `lakehouse-<kind>-<pid>-<random>` in the system's temporary folder. A process removes
its own when it is done; one killed first (SIGKILL, out of memory) cannot, and at 50M rows
its folder holds gigabytes, so each process's first scratch folder starts by removing those
of processes that no longer exist, and says so in the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
_PREFIX = "lakehouse-"
_swept = False


def new_folder(kind: str) -> str:
    """A new scratch folder of this process; the caller removes it."""
    global _swept
    if not _swept:
        _swept = True
        remove_left_behind()
    return tempfile.mkdtemp(prefix=f"{_PREFIX}{kind}-{os.getpid()}-")


@contextlib.contextmanager
def folder(kind: str):
    """A scratch folder for the block, removed after it however it ends."""
    path = new_folder(kind)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_left_behind(root: str | None = None) -> list[str]:
    """Remove the scratch folders of processes that no longer exist; returns them."""
    import psutil

    removed = []
    for path in Path(root or tempfile.gettempdir()).glob(f"{_PREFIX}*-*-*"):
        parts = path.name.split("-")
        if len(parts) < 4 or not parts[2].isdigit() or not path.is_dir() or psutil.pid_exists(int(parts[2])):
            continue
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():  # another user's, say: left, and said
            log.warning("could not remove %s, the scratch folder of process %s, which no longer runs", path, parts[2])
            continue
        removed.append(str(path))
        log.warning("removed %s, the scratch folder of process %s, which ended without removing it", path, parts[2])
    return removed
