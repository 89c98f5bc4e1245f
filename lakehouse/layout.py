"""The landing layout: `retail/<source>/ingest_date=YYYY-MM-DD/<file>`.

Keys come from outside (anyone with write access to the bucket), so they are
parsed strictly and never turned into paths unless they fit the layout.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

DOMAIN = "retail"
SOURCES = ("orders", "customers", "products", "events")

_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,254}$")
_DATE_DIR = re.compile(r"^ingest_date=(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class LandingKey:
    source: str
    ingest_date: dt.date
    file_name: str

    @property
    def key(self) -> str:
        return f"{partition_prefix(self.source, self.ingest_date)}{self.file_name}"


def partition_prefix(source: str, ingest_date: dt.date | str) -> str:
    """Relative prefix of one source's files for one ingest date (ends with '/')."""
    day = ingest_date if isinstance(ingest_date, str) else ingest_date.isoformat()
    return f"{DOMAIN}/{source}/ingest_date={day}/"


def source_prefix(source: str) -> str:
    return f"{DOMAIN}/{source}/"


class KeyOutsideLayout(ValueError):
    """The key does not fit the landing layout; the message says why."""


def parse_key(key: str) -> LandingKey:
    """Parse a relative landing key or raise `KeyOutsideLayout` with the reason."""
    parts = key.split("/")
    if len(parts) != 4:
        raise KeyOutsideLayout(
            f"expected {DOMAIN}/<source>/ingest_date=YYYY-MM-DD/<file>, got {len(parts)} path parts"
        )
    domain, source, date_dir, name = parts
    if domain != DOMAIN:
        raise KeyOutsideLayout(f"top-level folder {domain!r} is not {DOMAIN!r}")
    if source not in SOURCES:
        raise KeyOutsideLayout(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
    match = _DATE_DIR.match(date_dir)
    if not match:
        raise KeyOutsideLayout(f"folder {date_dir!r} is not ingest_date=YYYY-MM-DD")
    try:
        day = dt.date.fromisoformat(match.group(1))
    except ValueError:
        raise KeyOutsideLayout(f"{match.group(1)!r} is not a calendar date") from None
    if name in (".", "..") or not _FILE_NAME.match(name):
        raise KeyOutsideLayout(
            f"file name {name!r} is hidden, a marker or has characters outside [A-Za-z0-9._-]"
        )
    return LandingKey(source, day, name)
