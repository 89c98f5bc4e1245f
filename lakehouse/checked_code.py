"""Other projects' code that ours replaces or relies on, applied only where it is the code checked.

sqlframe's copy savings (`sqlframe_patches.py`), the forked run workers (`run_workers.py`) and
the code server's alembic check (`dagster_patches.py`) replace functions of sqlframe, Dagster
and Python, or rely on how they work inside. Each
keeps the digests of those functions' source as it read them; on any other version the
replacement is skipped, with a warning, and the project works as it would without it. One
is refused instead: sqlframe's CTE naming, whose replacement is a correctness fix.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Callable


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
    """`log.warning(message, *args)`, once per process for each message and arguments: a fallback is
    said when first taken, not at every session or catalog."""
    said = message % args if args else message
    if said not in _warned:
        _warned.add(said)
        log.warning(message, *args)
