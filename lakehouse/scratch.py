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
import logging
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from lakehouse import records

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
    temporary folder), each recorded there; returns them. Never raises: sweeping is housekeeping,
    not a reason for a step to fail (a failure is said in the log)."""
    root_path = Path(root or tempfile.gettempdir())
    try:
        return _sweep(root_path)
    except Exception as error:
        log.warning("could not look for the scratch folders of ended processes in %s: %s", root_path, error)
        return []


def _sweep(root: Path) -> list[str]:
    import psutil

    removed, stuck = [], None
    for path in root.glob(f"{_PREFIX}*-*-*"):
        parts = path.name.split("-")
        if len(parts) < 4 or not parts[2].isdigit() or not path.is_dir() or psutil.pid_exists(int(parts[2])):
            continue
        # Claimed by one rename, so that of two processes sweeping at once only one takes it (and
        # records it); named as this process's, it is swept again if this one dies midway.
        claimed = root / f"{_PREFIX}sweep-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            path.rename(claimed)
        except FileNotFoundError:  # another process took it
            continue
        except OSError:  # another user's folder, say: tried where it is
            claimed = path
        size = _size(claimed)
        shutil.rmtree(claimed, ignore_errors=True)
        gone = not claimed.exists()
        if not gone and claimed != path:
            with contextlib.suppress(OSError):
                claimed.rename(path)
        if not gone:
            stuck = {e["folder"] for e in removals(root) if not e["removed"]} if stuck is None else stuck
            if str(path) not in stuck:  # recorded once, not at every process's sweep
                _record(root, _entry(path, parts[2], size, False))
            log.warning("could not remove %s, the scratch folder of process %s, which no longer runs", path, parts[2])
            continue
        _record(root, _entry(path, parts[2], size, True))
        removed.append(str(path))
        log.warning("removed %s (%d bytes), the scratch folder of process %s, which ended without removing it",
                    path, size, parts[2])
    return removed


def _entry(path: Path, pid: str, size: int, removed: bool) -> dict:
    return {"at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "folder": str(path),
            "pid": int(pid), "bytes": size, "removed": removed}


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
        records.append(path, entry)
    except OSError as error:
        log.warning("could not record the removal of %s in %s: %s", entry["folder"], path, error)


_FIELDS = {"at": str, "folder": str, "pid": int, "bytes": int, "removed": bool}


def removals(root: str | Path | None = None) -> list[dict]:
    """The recorded scratch folders found left behind, oldest first (damaged lines skipped; an
    unreadable record is said in the log and reads as none)."""
    path = Path(root or tempfile.gettempdir()) / RECORD
    try:
        return records.read(path, _FIELDS)
    except OSError as error:
        log.warning("could not read %s: %s", path, error)
        return []
