"""Plans (lakehouse/plans.py) kept on disk, so that a new process replays them instead of planning.

Each Dagster run is a new process (a fork of the code server's forkserver), and `Engine.planned`
keeps plans per process: every run planned a small day's transforms again, about 1.3 s of its
CPU (README, Engines). A plan is text that our code and sqlframe make from its key and its
inputs' columns alone (the contract `Engine.planned` states), so the same code makes the same
plan in any process. Plans are kept in a folder named after a digest of everything else that
text depends on: the lakehouse package's source (.py and .yaml) as this process loaded it, the
declarations in force (LAKEHOUSE_SOURCES_DIR may keep them elsewhere), and the versions of
Python, sqlframe, sqlglot and DuckDB. Other code reads and writes another folder.

What is refused, planned in the process as before, and recorded as a fallback (`lakehouse
status`), never replayed on a guess:
- a process started before a package file last changed (a long-lived forkserver after an edit):
  the files' digest might not describe the code it runs (the libraries' versions are read when
  the engine is imported, next to when the process imports them);
- a folder not owned by this user, or writable by others: a plan is SQL this process runs;
- a key that is not made of plain values (exactly str, int, float, bool, None, tuples and
  lists, frozen dataclasses of them, such as a source's contract);
- a file that does not read back as a plan of this digest and shape (damaged, cut short,
  altered, a slot beyond its inputs): planned again and replaced.
Folders of other digests unused for PRUNE_DAYS are removed (only names of digests).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import sys
import time
from pathlib import Path

from lakehouse import checked_code, records
from lakehouse.plans import Plan

log = logging.getLogger(__name__)
PRUNE_DAYS = 14  # a digest's folder unused this long is removed (an older version of the code or libraries)
LIBRARIES = ("sqlframe", "sqlglot", "duckdb")  # what makes a transform's SQL (and walks it: lakehouse/lineage.py)
KINDS = ("VIEW", "TABLE")  # what a plan's intermediates are made as (Engine._named)
_DIGEST = re.compile(r"[0-9a-f]{24}")  # a folder's name; nothing else in the root is pruned
PACKAGE = Path(__file__).resolve().parent
counts: collections.Counter = collections.Counter()  # this process's plans: "read", "written" (for tests, benches)


def _code_files(package: Path) -> list[Path]:
    """The .py and .yaml files under `package` (not caches, not an editor's hidden lock or backup files)."""
    return sorted(p for p in package.rglob("*") if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts
                  and not p.name.startswith((".", "#")))


def files_digest(package: Path) -> str:
    """sha256 of the code files under `package`, by relative path and content (one that cannot be read
    counts as such, never raises: this runs when the engine is imported)."""
    digest = hashlib.sha256()
    for path in _code_files(package):
        try:
            content = path.read_bytes()
        except OSError as error:
            content = f"unreadable: {error.strerror or error}".encode()
        digest.update(str(path.relative_to(package)).encode() + b"\0" + content + b"\0")
    return digest.hexdigest()


def _started() -> float:
    """When this process started (a fork: its parent's value is inherited with `_LOADED`)."""
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # noqa: BLE001  no process table: the import's time, later but close
        return time.time()


def _versions() -> list[str]:
    from importlib import metadata

    found = [sys.version]
    for name in LIBRARIES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} none")
    return found


# The code as this process loaded it, read when the engine is imported (a fork, such as a run
# worker, inherits its forkserver's): when the process started, the package's files' digest and
# the libraries' versions. A file changed after the start refuses the cache (`_open`).
_LOADED = (_started(), files_digest(PACKAGE), _versions())


class _NotPlain(Exception):
    pass


def _plain(value):
    """`value` as JSON-able data that tells apart every two values that are not equal; _NotPlain if
    it cannot. Exact types only: a str or int subclass (an Enum member) may format differently."""
    kind = type(value)
    if value is None or kind in (bool, str):
        return value
    if kind in (int, float):
        return [kind.__name__, repr(value)]  # 1, 1.0 and True stay apart
    if kind in (tuple, list):
        return [kind.__name__, [_plain(item) for item in value]]
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and kind.__dataclass_params__.frozen:
        return [f"{kind.__module__}.{kind.__qualname__}",
                [[field.name, _plain(getattr(value, field.name))] for field in dataclasses.fields(value)]]
    raise _NotPlain(kind.__name__)


def encode(value) -> str | None:
    """A text that equals another's exactly when the values are equal; None for a value that is not plain."""
    try:
        return json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False)
    except _NotPlain:
        return None


def code_digest(files: str, contracts: dict, versions: list[str]) -> str | None:
    """The digest a plan is kept under: the package's `files` digest, the declarations `contracts`
    and Python's and the libraries' `versions`; None if a declaration is not plain (not kept)."""
    declared = encode(tuple(sorted(contracts.items())))
    if declared is None:
        return None
    return hashlib.sha256("\0".join([files, declared, *versions]).encode()).hexdigest()[:24]


_folders: dict = {}  # root -> (the declarations it was opened with, this code's folder in it or None)


def folder(root: Path | None) -> Path | None:
    """This code's folder under `root`, or None (off, or refused: see the module). Opened once per
    process and declarations: a test or a reload that replaces a source's contract gets another."""
    if root is None:
        return None
    from lakehouse.contracts import CONTRACTS

    opened = _folders.get(root)
    if opened is None or opened[0].keys() != CONTRACTS.keys() or any(
            opened[0][name] is not contract for name, contract in CONTRACTS.items()):
        opened = _folders[root] = (dict(CONTRACTS), _open(root, CONTRACTS))
    return opened[1]


def _refuse(why: str, *args) -> None:
    checked_code.warn_once(log, f"the plan cache is not used: {why}; each process plans its transforms itself "
                                "(slower), results are the same", *args)


def _open(root: Path, contracts: dict) -> Path | None:
    started, files, versions = _LOADED
    try:
        # ctime, which no tool sets back (cp -p and rsync -t keep an older mtime)
        changed = [p.name for p in _code_files(PACKAGE) if p.stat().st_ctime > started]
    except OSError as error:
        changed = [f"its files could not be read: {error.strerror or error}"]
    if changed:
        _refuse("the code changed on disk after this process started (%s); a new process uses it", changed[0])
        return None
    digest = code_digest(files, contracts, versions)
    if digest is None:
        _refuse("a source's declaration is not plain values")
        return None
    here = root / digest
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)  # the user's alone, whatever the umask
        here.mkdir(exist_ok=True, mode=0o700)
        os.utime(here)  # in use: not pruned
        unsafe = [str(p) for p in (root, here) if _unsafe(p.stat())]
    except OSError as error:
        _refuse("%s cannot be written (%s); set LAKEHOUSE_PLAN_CACHE to a writable folder, or off", str(root),
                error.strerror or error)
        return None
    if unsafe:
        _refuse("%s is another user's or writable by others (a plan is SQL this process runs); give "
                "LAKEHOUSE_PLAN_CACHE a folder of your own", unsafe[0])
        return None
    _prune(root, here)
    return here


def _unsafe(st: os.stat_result) -> bool:
    return st.st_uid != os.getuid() or bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _prune(root: Path, here: Path) -> None:
    """Remove the folders of other digests unused for PRUNE_DAYS (nothing else in the root)."""
    old = time.time() - PRUNE_DAYS * 86400
    try:
        for other in root.iterdir():
            if other != here and _DIGEST.fullmatch(other.name) and other.is_dir() and other.stat().st_mtime < old:
                shutil.rmtree(other)
    except OSError as error:
        checked_code.warn_once(log, "old plans in %s could not be removed (%s): they keep their disk space",
                               str(root), error.strerror or error)


def _path(here: Path, text: str) -> Path:
    return here / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.json"


def _body(shape_text: str, plan: Plan) -> str:
    return json.dumps({"shape": shape_text, "made": [[kind, list(parts)] for kind, parts in plan.made],
                       "result": list(plan.result)}, ensure_ascii=False, separators=(",", ":"))


def _inputs(shape) -> int:
    """How many views fill a plan's first slots: one per frame given (`Engine.planned`'s shape)."""
    return sum(1 for _slot, columns, _same in shape[1:] if columns is not None)


def read(root: Path | None, shape) -> Plan | None:
    """The plan kept for `shape` (a transform's key and inputs), or None (none kept, not plain, refused)."""
    here, text = folder(root), encode(shape)
    if here is None or text is None:
        return None
    path = _path(here, text)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        checked_code.warn_once(log, "a kept plan could not be read (%s): planned again (slower); results are the same",
                               error.strerror or error)
        return None
    try:
        document = json.loads(raw.decode("utf-8"))
        body = document["body"]
        if document["digest"] != here.name or document["sha256"] != hashlib.sha256(body.encode()).hexdigest():
            raise ValueError("not this digest's, or altered")
        data = json.loads(body)
        if data["shape"] != text:
            return None  # another shape under the same file name (a hash's collision): planned here
        inputs, made = _inputs(shape), []
        for k, (kind, parts) in enumerate(data["made"]):
            if kind not in KINDS:
                raise ValueError(f"an intermediate of kind {kind!r}")
            made.append((kind, _template(parts, inputs + k)))
        plan = Plan(tuple(made), _template(data["result"], inputs + len(made)))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        checked_code.warn_once(log, "a kept plan in %s was damaged (%s): planned again and replaced; results are "
                                    "the same", str(here), error)
        return None
    counts["read"] += 1
    return plan


def _template(parts, slots: int) -> tuple:
    """`parts` as a template whose slots are all below `slots` (the views there are when it runs)."""
    if not isinstance(parts, list) or not all(
            type(p) is str or (type(p) is int and 0 <= p < slots) for p in parts):
        raise ValueError("not a template of its views")
    return tuple(parts)


def write(root: Path | None, shape, plan: Plan) -> None:
    """Keep `plan` for `shape`, for later processes: written whole or not at all."""
    here, text = folder(root), encode(shape)
    if here is None:
        return
    if text is None:
        checked_code.warn_once(log, "a transform's key (%s) is not plain values: it is planned in each process "
                                    "(slower); results are the same", repr(shape[0])[:60])
        return
    body = _body(text, plan)
    document = json.dumps({"digest": here.name, "sha256": hashlib.sha256(body.encode()).hexdigest(), "body": body})
    try:
        records.write_whole(_path(here, text), document)
    except OSError as error:
        checked_code.warn_once(log, "a plan could not be kept in %s (%s): later processes plan it again (slower); "
                                    "results are the same", str(here), error.strerror or error)
        return
    counts["written"] += 1
