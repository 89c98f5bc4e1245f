"""Append-only JSON-line records that `lakehouse status` shows (scratch folders removed, fallbacks
taken): written by any process, each line one small append, kept to their last lines. Also
`write_whole`, for files that processes share and replace whole (kept lineage, kept plans)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path

RECORD_BYTES, RECORD_KEEP = 256_000, 500  # a record's size at which it keeps only its last lines


def append(path: Path, entry: dict) -> None:
    """Append `entry` as one line; past RECORD_BYTES the record keeps its last RECORD_KEEP lines (one
    atomic replace). Under a lock beside the record (a file that is never replaced), so a line
    appended while another process trims is not lost with the file it went to. Raises OSError."""
    with path.with_name(f"{path.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")
        if path.stat().st_size > RECORD_BYTES:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
            fresh = path.with_name(f"{path.name}.{os.getpid()}")
            try:
                fresh.write_text("".join(lines[-RECORD_KEEP:]), encoding="utf-8")
                os.replace(fresh, path)
            finally:
                fresh.unlink(missing_ok=True)


def read(path: Path, fields: dict[str, type]) -> list[dict]:
    """The entries of the record at `path`, oldest first: those with every field of `fields` (name ->
    type); damaged lines are skipped. None there: []. Raises OSError."""
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    found = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and all(type(entry.get(k)) is t for k, t in fields.items()):
                found.append(entry)
    return found


def write_whole(path: Path, text: str) -> None:
    """`path` replaced by `text` in one rename: a reader sees the old file or the new one, never half
    of one. Written first to a new file of this process beside it (never a link someone put there).
    Raises OSError."""
    handle, partial = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
