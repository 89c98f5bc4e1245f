"""The landing layout: `<prefix>ingest_date=YYYY-MM-DD/<file>`, where each source declares its
prefix (`landing.prefix` in its defs.yaml; `retail/<source>/` when it does not).

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
from lakehouse.contracts.model import DEFAULT_DOMAIN


@dataclass(frozen=True)
class LandingObject:
    """A file as a landing zone lists it (here, not in resources/, so transforms need no Dagster)."""

    key: str  # relative to the landing root, '/'-separated
    size: int
    etag: str  # S3 ETag without quotes; MD5 of the content for local files
    last_modified: dt.datetime  # UTC


SOURCES = tuple(CONTRACTS)  # the declared sources (lakehouse/defs/sources/<source>/defs.yaml)


def _prefixes() -> dict[str, str]:
    """Declared prefix -> source (the declarations refuse a prefix inside another)."""
    return {c.prefix: c.name for c in CONTRACTS.values()}


PREFIXES = _prefixes()


def _parents() -> dict[str, set[str]]:
    """Each folder above a source prefix ('' is the landing root) -> the names of its folders that lead to one."""
    parents: dict[str, set[str]] = {}
    for prefix in PREFIXES:
        parts = prefix.rstrip("/").split("/")
        for depth in range(len(parts)):
            parents.setdefault("".join(p + "/" for p in parts[:depth]), set()).add(parts[depth])
    return parents


PARENTS = _parents()

MAX_KEY_BYTES = 1024  # S3's limit for a whole key
MAX_SEGMENT_BYTES = 255  # the usual file-system limit for one name
_DATE_DIR = re.compile(r"^ingest_date=(\d{4}-\d{2}-\d{2})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
LAYOUT = "<source prefix>ingest_date=YYYY-MM-DD/<file>"


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
    return f"{source_prefix(source)}ingest_date={day}/"


def source_prefix(source: str) -> str:
    """The declared prefix; for a name no source declares, where it would be by default (retail/<name>/)."""
    contract = CONTRACTS.get(source)
    return contract.prefix if contract else f"{DEFAULT_DOMAIN}/{source}/"


def _known() -> str:
    return ", ".join(f"{source} ({prefix})" for prefix, source in PREFIXES.items())


def outside_reason(folder: str, name: str, is_folder: bool) -> str:
    """Why `folder + name` (a folder, or a file) holds nothing to load, `folder` being the landing
    root ('') or a folder above the source prefixes."""
    if folder == "":
        tops = " and ".join(f"{top}/" for top in sorted(PARENTS[""]))
        return f"outside {tops}; only a declared source's <prefix>ingest_date=YYYY-MM-DD/ is loaded"
    if is_folder and name in CONTRACTS:  # say where it went: files still sent to an old place are common
        return (f"{folder}{name}/ is not where {name} lands: its files go under {source_prefix(name)} "
                f"(landing.prefix in its defs.yaml)")
    if is_folder and name.startswith("ingest_date="):
        return f"a date folder directly under {folder}, which is no source's prefix; known: {_known()}"
    if is_folder:
        return f"unknown source {name!r}: {folder}{name}/ is no declared source's prefix; known: {_known()}"
    return f"not in a source folder; known: {_known()}"


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


def _source_of(key: str) -> str | None:
    return next((source for prefix, source in PREFIXES.items() if key.startswith(prefix)), None)


def _off_the_tree(parts: list[str]) -> tuple[int, str] | None:
    """Where a key under no source prefix leaves the folders that lead to one: (index of the
    first segment that does not, the folder above it); None if it never leaves them."""
    folder = ""
    for i, part in enumerate(parts):
        if part not in PARENTS.get(folder, ()):
            return i, folder
        folder += part + "/"
    return None


def parse_key(key: str) -> LandingKey:
    """Parse a relative landing key or raise `KeyOutsideLayout` with the reason."""
    parts = check_key(key)
    source = _source_of(key)
    if source is None:
        if off := _off_the_tree(parts):
            i, folder = off
            raise KeyOutsideLayout(outside_reason(folder, parts[i], is_folder=i < len(parts) - 1))
        raise KeyOutsideLayout(f"wrong depth: expected {LAYOUT}, got {len(parts)} path segments")
    rest = key[len(source_prefix(source)):].split("/")
    if len(rest) != 2:
        raise KeyOutsideLayout(f"wrong depth: expected {source_prefix(source)}ingest_date=YYYY-MM-DD/<file>, "
                               f"got {len(rest)} path segment(s) after the prefix")
    date_dir, name = rest
    day = parse_date_folder(date_dir)
    if name.startswith("."):
        raise KeyOutsideLayout(f"hidden file {name!r} (name starts with '.'): not data")
    if name.startswith("_"):
        raise KeyOutsideLayout(f"marker file {name!r} (name starts with '_', like _SUCCESS): not data")
    return LandingKey(source, day, name)


def whereabouts(key: str) -> tuple[str | None, dt.date | None]:
    """Best-effort (source folder, ingest date) of any key, for recording one that is ignored.

    The source is the declared source whose prefix the key is under, or else the folder
    found where sources' folders are (`retail/<name>/`: an unknown source, or a declared
    one whose files now land elsewhere); the date is that of a well-formed `ingest_date=`
    folder right below it. None where there is none.
    """
    def day_of(rest: list[str]) -> dt.date | None:
        try:
            return parse_date_folder(rest[0]) if len(rest) > 1 else None
        except KeyOutsideLayout:
            return None

    source = _source_of(key)
    if source is not None:
        return source, day_of(key[len(source_prefix(source)):].split("/"))
    parts = key.split("/")
    off = _off_the_tree(parts)
    if off is None:
        return None, None
    i, folder = off
    part = parts[i]
    if folder == "" or i == len(parts) - 1 or part in ("", ".", "..") or part.startswith("ingest_date="):
        return None, None
    return storable(part), day_of(parts[i + 1:])


def storable(text: str) -> str:
    """`text` as valid UTF-8: a local file name that is not UTF-8 keeps its bytes as `\\xNN`."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def shown(text: str) -> str:
    """`text` for a log line or a printed table: control characters escaped, never raw."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", storable(text))
