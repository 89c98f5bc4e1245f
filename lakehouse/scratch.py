"""Local scratch folders (DuckDB's database and spill, Spark's Arrow files, bronze's spilled rows).

Named `lakehouse-<kind>-<pid>-<random>` in the system's temporary folder. A process removes
its own when it is done; one killed first (SIGKILL, out of memory) cannot, and at 50M rows
its folder holds gigabytes, so each process's first scratch folder starts by removing those
of processes that no longer exist. Each removal (or failure to remove) is said in the log and
recorded beside the folders (`lakehouse-scratch-removed.jsonl`, as the folders are the machine's,
not one lakehouse's), which `lakehouse status` shows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
_PREFIX = "lakehouse-"
RECORD = f"{_PREFIX}scratch-removed.jsonl"  # beside the folders: a JSON line per folder found left behind
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
    """Remove the scratch folders of processes that no longer exist (in `root`, default the system's
    temporary folder), each recorded there; returns them."""
    import psutil

    removed = []
    root = Path(root or tempfile.gettempdir())
    stuck = {e["folder"] for e in removals(root) if not e["removed"]}  # recorded once, not at every sweep
    for path in root.glob(f"{_PREFIX}*-*-*"):
        parts = path.name.split("-")
        if len(parts) < 4 or not parts[2].isdigit() or not path.is_dir() or psutil.pid_exists(int(parts[2])):
            continue
        size = _size(path)
        shutil.rmtree(path, ignore_errors=True)
        gone = not path.exists()  # else another user's, say: left, and said
        if gone or str(path) not in stuck:
            _record(root, {"at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "folder": str(path),
                           "pid": int(parts[2]), "bytes": size, "removed": gone})
        if not gone:
            log.warning("could not remove %s, the scratch folder of process %s, which no longer runs", path, parts[2])
            continue
        removed.append(str(path))
        log.warning("removed %s (%d bytes), the scratch folder of process %s, which ended without removing it",
                    path, size, parts[2])
    return removed


def _size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _record(root: Path, entry: dict) -> None:
    path = root / RECORD
    try:
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")
    except OSError as error:
        log.warning("could not record the removal of %s in %s: %s", entry["folder"], path, error)


def removals(root: str | None = None) -> list[dict]:
    """The recorded scratch folders found left behind, oldest first (damaged lines skipped)."""
    path = Path(root or tempfile.gettempdir()) / RECORD
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and {"at", "folder", "pid", "bytes", "removed"} <= entry.keys():
                found.append(entry)
    return found
