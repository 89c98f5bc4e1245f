"""The landing layout: `retail/<source>/ingest_date=YYYY-MM-DD/<file>`.

`<file>` is any valid S3 key segment: spaces, punctuation, accents and emoji are
ordinary file names. Names are never normalised: `órdenes.csv` spelled in NFC and
in NFD are two keys, two files.

Keys come from outside (anyone with write access to the bucket) and the local
landing zone turns them into paths, so a key is refused, with the reason, when it
could not safely be one: not UTF-8, absolute, empty or `.`/`..` segments,
backslashes, control characters, a segment over 255 bytes or a key over 1024 bytes.
Hidden files (`.DS_Store`, an upload's `.part`) and markers (`_SUCCESS`,
`_committed_*`: names starting with `_`, as Hadoop and Spark write them) are not
data and are ignored, as is anything outside the layout. The landing sensor records
each such key in `ops.ingestion_log` as IGNORED with the reason.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from lakehouse.contracts import CONTRACTS


@dataclass(frozen=True)
class LandingObject:
    """A file as a landing zone lists it (here, not in resources/, so transforms need no Dagster)."""

    key: str  # relative to the landing root, '/'-separated
    size: int
    etag: str  # S3 ETag without quotes; MD5 of the content for local files
    last_modified: dt.datetime  # UTC


DOMAIN = "retail"
SOURCES = tuple(CONTRACTS)  # the declared sources (lakehouse/defs/sources/<source>/defs.yaml)

MAX_KEY_BYTES = 1024  # S3's limit for a whole key
MAX_SEGMENT_BYTES = 255  # the usual file-system limit for one name
_DATE_DIR = re.compile(r"^ingest_date=(\d{4}-\d{2}-\d{2})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
LAYOUT = f"{DOMAIN}/<source>/ingest_date=YYYY-MM-DD/<file>"


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
    """The key is unsafe, not data, or does not fit the landing layout; the message says why."""


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def check_key(key: str) -> list[str]:
    """The key's '/'-separated segments, if it is safe to map under a root directory.

    Raises `KeyOutsideLayout` with the reason otherwise. Only safety is checked here,
    not the layout: the local landing zone uses this for every key it turns into a path.
    """
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise KeyOutsideLayout("the key is not valid UTF-8") from None
    if _utf8_size(key) > MAX_KEY_BYTES:
        raise KeyOutsideLayout(f"the key is {_utf8_size(key)} bytes in UTF-8; at most {MAX_KEY_BYTES}")
    if key.startswith("/"):
        raise KeyOutsideLayout("absolute key (starts with '/')")
    control = _CONTROL.search(key)
    if control:
        raise KeyOutsideLayout(f"control character U+{ord(control.group()):04X} in the key")
    if "\\" in key:
        raise KeyOutsideLayout("backslash in the key")
    parts = key.split("/")
    for part in parts:
        if part == "":
            raise KeyOutsideLayout("empty path segment ('//' or a trailing '/')")
        if part in (".", ".."):
            raise KeyOutsideLayout(f"{part!r} path segment")
        if _utf8_size(part) > MAX_SEGMENT_BYTES:
            raise KeyOutsideLayout(f"a segment is {_utf8_size(part)} bytes in UTF-8; at most {MAX_SEGMENT_BYTES}")
    return parts


def parse_date_folder(name: str) -> dt.date:
    """`ingest_date=YYYY-MM-DD` -> the date, or `KeyOutsideLayout` with the reason."""
    match = _DATE_DIR.match(name)
    if not match:
        raise KeyOutsideLayout(f"folder {name!r} is not ingest_date=YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        raise KeyOutsideLayout(f"{match.group(1)!r} is not a calendar date") from None


def parse_key(key: str) -> LandingKey:
    """Parse a relative landing key or raise `KeyOutsideLayout` with the reason."""
    parts = check_key(key)
    if len(parts) != 4:
        raise KeyOutsideLayout(f"wrong depth: expected {LAYOUT}, got {len(parts)} path segments")
    domain, source, date_dir, name = parts
    if domain != DOMAIN:
        raise KeyOutsideLayout(f"top-level folder {domain!r} is not {DOMAIN!r}")
    if source not in SOURCES:
        raise KeyOutsideLayout(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
    day = parse_date_folder(date_dir)
    if name.startswith("."):
        raise KeyOutsideLayout(f"hidden file {name!r} (name starts with '.'): not data")
    if name.startswith("_"):
        raise KeyOutsideLayout(f"marker file {name!r} (name starts with '_', like _SUCCESS): not data")
    return LandingKey(source, day, name)


def whereabouts(key: str) -> tuple[str | None, dt.date | None]:
    """Best-effort (source folder, ingest date) of any key, for recording one that is ignored.

    The source is the folder under `retail/` whatever its name (known or not); the date
    is that of a well-formed `ingest_date=` folder below it. None where there is none.
    """
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != DOMAIN or parts[1] in ("", ".", ".."):
        return None, None
    try:
        day = parse_date_folder(parts[2]) if len(parts) > 3 else None
    except KeyOutsideLayout:
        day = None
    return storable(parts[1]), day


def storable(text: str) -> str:
    """`text` as valid UTF-8: a local file name that is not UTF-8 keeps its bytes as `\\xNN`."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def shown(text: str) -> str:
    """`text` for a log line or a printed table: control characters escaped, never raw."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", storable(text))
