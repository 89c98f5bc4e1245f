"""Other projects' code that ours replaces or relies on, applied only where it is the code checked.

sqlframe's copy savings (`sqlframe_patches.py`), the forked run workers (`run_workers.py`),
the code server's alembic check and the event log's kept engines (`dagster_patches.py`), the
daemon's forked code servers (`code_servers.py`) replace functions of sqlframe, Dagster and
Python, or rely on how they work inside. Each
keeps the digests of those functions' source as it read them; on any other version the
replacement is skipped, with a warning, and the project works as it would without it. One
is refused instead: sqlframe's CTE naming, whose replacement is a correctness fix.

A fallback (a replacement skipped, the run workers or code servers spawned instead of forked; also deploy's
wheel built by pip where uv is missing, YAML parsed without libyaml, and a step's temporary
views or Spark settings its engine could not clean up or put back) is slower, or holds disk
space until the process ends, never wrong, but not silent either: besides the log, it is
recorded in the lakehouse home (`fallbacks.jsonl`), which `lakehouse status` (the last
RECENT_DAYS) and the end of `lakehouse run` (those since it began) show. A step on Glue or EMR
has no lakehouse home that outlives its job: it sends those it took to the Dagster run's log
through Pipes (`cluster/run_step.py`).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable

from lakehouse import records
from lakehouse.settings import home_dir

FALLBACKS = "fallbacks.jsonl"  # in LAKEHOUSE_HOME: a JSON line per fallback a process took
RECENT_DAYS = 7  # `lakehouse status` lists the fallbacks taken this recently (a fixed install stops adding them)
_FIELDS = {"at": float, "pid": int, "process": str, "message": str}
_log = logging.getLogger(__name__)


def source_digest(owner, name: str) -> str | None:
    """sha256 (first 16 hex digits) of the source of `owner`'s `name` (qualified by its class, as
    "Class.method"), None where there is none."""
    try:
        return hashlib.sha256(inspect.getsource(getattr(owner, name.rsplit(".", 1)[-1])).encode()).hexdigest()[:16]
    except (AttributeError, OSError, TypeError, ValueError):  # ValueError: a loop of __wrapped__
        return None


def changed(checked: dict[str, str], owner_of: Callable[[str], object]) -> list[str]:
    """The names of `checked` (name -> digest) whose source is not the one checked; `owner_of(name)`
    is the class or module that holds it."""
    return [name for name, digest in checked.items() if source_digest(owner_of(name), name) != digest]


_warned: set[str] = set()


def warn_once(log, message: str, *args) -> None:
    """`log.warning(message, *args)` and `record_fallback`, once per process for each message and
    arguments: a fallback is said when first taken, not at every session or catalog."""
    said = message % args if args else message
    if said not in _warned:
        _warned.add(said)
        log.warning(message, *args)
        record_fallback(said)


def _home() -> Path | None:
    home = home_dir()
    return home if home.is_dir() else None  # not made here: a process with no lakehouse home records nothing


def _process() -> str:
    """What this process is, in a few words: `lakehouse run`, `dagster api grpc` (a code server)..."""
    first = sys.argv[0] if sys.argv else ""
    name = os.path.basename(first) if first not in ("", "-c") else f"{os.path.basename(sys.executable)} {first}".strip()
    return " ".join([name, *sys.argv[1:3]])[:60]


def record_fallback(message: str) -> None:
    """Append `message` to the home's fallback record, for `lakehouse status`; a failure to write it is logged."""
    if (home := _home()) is None:
        return
    try:
        records.append(home / FALLBACKS, {"at": time.time(), "pid": os.getpid(), "process": _process(),
                                          "message": message})
    except OSError as error:
        _log.warning("could not record a fallback in %s: %s", home / FALLBACKS, error)


def said() -> list[str]:
    """The fallbacks this process has taken (each said once), for a process whose home does not last."""
    return sorted(_warned)


def fallbacks(home: Path, since: float | None = None) -> list[dict]:
    """The recorded fallbacks of `home` (since `since`, a time.time()), one per message: the last
    time it was taken, by which process, and how many times (processes) in all. Raises OSError."""
    entries = records.read(home / FALLBACKS, _FIELDS)
    by_message: dict[str, dict] = {}
    for entry in entries:
        if since is None or entry["at"] >= since:
            seen = by_message.get(entry["message"])
            by_message[entry["message"]] = {**entry, "times": (seen["times"] if seen else 0) + 1}
    return sorted(by_message.values(), key=lambda e: e["at"])
