"""Plans (lakehouse/plans.py) kept on disk, so that a new process replays them instead of planning.

Each Dagster run is a new process (a fork of the code server's forkserver), and `Engine.planned`
keeps plans per process: every run planned a small day's transforms again, about 1.3 s of its
CPU (a fresh process's first day 0.72x with the plans of another process, README, Engines).
A plan is text that our code and sqlframe make from its key and its inputs' columns alone (the
contract `Engine.planned` states), so the same code makes the same plan in any process. Plans
are kept in a folder named after a digest of everything that code reads: the lakehouse
package's source (.py and .yaml), the declarations in force (LAKEHOUSE_SOURCES_DIR may keep
them elsewhere), and the versions of Python, sqlframe, sqlglot and DuckDB. A change to any of
them reads and writes another folder; folders unused for PRUNE_DAYS are removed.

Only a key made of plain values (str, int, float, bool, None, tuples and lists, frozen
dataclasses of them, such as a source's contract) is kept on disk; any other is planned once
per process, as before. A file that cannot be read back (damaged, another format) is planned
anew and replaced, and a folder that cannot be written leaves the process planning as before:
both are said once per process and recorded as fallbacks (`lakehouse status`).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from lakehouse import checked_code
from lakehouse.plans import Plan

log = logging.getLogger(__name__)
PRUNE_DAYS = 14  # a digest's folder unused this long is removed (an older version of the code or libraries)
LIBRARIES = ("sqlframe", "sqlglot", "duckdb")
KINDS = ("VIEW", "TABLE")  # what a plan's intermediates are made as (Engine._named)
counts: collections.Counter = collections.Counter()  # this process's plans: "read", "written" (for tests, benches)
_folder: dict = {}  # settings' folder -> this code's folder in it, or None where it cannot be used


class _NotPlain(Exception):
    pass


def _plain(value):
    """`value` as JSON-able data that tells apart every two values that are not equal; _NotPlain if it cannot."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return [type(value).__name__, repr(value)]  # 1, 1.0 and True stay apart
    if isinstance(value, (tuple, list)):
        return [type(value).__name__, [_plain(item) for item in value]]
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and type(value).__dataclass_params__.frozen:
        return [f"{type(value).__module__}.{type(value).__qualname__}",
                [[field.name, _plain(getattr(value, field.name))] for field in dataclasses.fields(value)]]
    raise _NotPlain(type(value).__name__)


def encode(value) -> str | None:
    """A text that equals another's exactly when the values are equal; None for a value that is not plain."""
    try:
        return json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False)
    except _NotPlain:
        return None


def code_digest() -> str:
    """A digest of what a plan depends on besides its key and inputs (see the module)."""
    from importlib import metadata

    from lakehouse.contracts import CONTRACTS

    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(p for p in package.rglob("*") if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    versions = [sys.version] + [f"{name} {metadata.version(name)}" for name in LIBRARIES]
    digest.update(json.dumps(versions).encode())
    digest.update((encode(tuple(sorted(CONTRACTS.items()))) or "").encode())
    return digest.hexdigest()[:24]


def folder(root: Path | None) -> Path | None:
    """This code's folder under `root` (made, and older digests' folders pruned, once per process); None if off."""
    if root is None:
        return None
    if root not in _folder:
        _folder[root] = _open(root)
    return _folder[root]


def _open(root: Path) -> Path | None:
    here = root / code_digest()
    try:
        here.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.utime(here)  # in use: not pruned
    except OSError as error:
        checked_code.warn_once(log, "the plan cache %s cannot be used (%s): each process plans its transforms "
                                    "itself (slower); set LAKEHOUSE_PLAN_CACHE to a writable folder, or off",
                               str(root), error.strerror or error)
        return None
    _prune(root, here)
    return here


def _prune(root: Path, here: Path) -> None:
    """Remove the folders of other digests unused for PRUNE_DAYS; a failure is only logged (housekeeping)."""
    old = time.time() - PRUNE_DAYS * 86400
    try:
        for other in root.iterdir():
            if other != here and other.is_dir() and other.stat().st_mtime < old:
                shutil.rmtree(other, ignore_errors=True)
    except OSError as error:
        log.warning("could not prune old plans in %s: %s", root, error)


def _path(here: Path, text: str) -> Path:
    return here / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.json"


def read(root: Path | None, shape) -> Plan | None:
    """The plan kept for `shape` (a transform's key and inputs), or None (none kept, not plain, or damaged)."""
    here, text = folder(root), encode(shape)
    if here is None or text is None:
        return None
    path = _path(here, text)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        checked_code.warn_once(log, "a kept plan could not be read (%s): planned again (slower); results are the same",
                               error.strerror or error)
        return None
    try:
        data = json.loads(raw)
        if data["shape"] != text:
            return None  # another shape with the same file name (a digest's collision): planned here
        plan = Plan(tuple((kind, _template(parts)) for kind, parts in data["made"] if kind in KINDS),
                    _template(data["result"]))
        if len(plan.made) != len(data["made"]):
            raise ValueError("an intermediate of an unknown kind")
    except (ValueError, KeyError, TypeError) as error:
        checked_code.warn_once(log, "a kept plan in %s was damaged (%s): planned again and replaced; results are "
                                    "the same", str(here), type(error).__name__)
        return None
    counts["read"] += 1
    return plan


def _template(parts) -> tuple:
    if not isinstance(parts, list) or not all(isinstance(p, str) or (isinstance(p, int) and not isinstance(p, bool) and p >= 0)
                                              for p in parts):
        raise ValueError("not a template")
    return tuple(parts)


def write(root: Path | None, shape, plan: Plan) -> None:
    """Keep `plan` for `shape`, for later processes (written whole or not at all)."""
    here, text = folder(root), encode(shape)
    if here is None or text is None:
        return
    path = _path(here, text)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        partial.write_text(json.dumps({"shape": text, "made": [[kind, list(parts)] for kind, parts in plan.made],
                                       "result": list(plan.result)}, ensure_ascii=False), encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        checked_code.warn_once(log, "a plan could not be kept in %s (%s): later processes plan it again (slower); "
                                    "results are the same", str(here), error.strerror or error)
        return
    counts["written"] += 1
