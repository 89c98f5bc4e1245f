"""What the landing sensor lists on one tick, and the cursor that carries it across ticks.

Listing every object under the landing root each tick (what `dagster_aws`'s
`get_objects` does) costs more with every day of history, and its one-second
`LastModified` cursor misses files written in the cursor's second. Here a tick lists
the date folders (one cheap delimiter listing per source), then the files of:

- the recent folders, `lookback_days` back from today, every tick;
- the next `sweep` older folders in a round-robin walk, so a late file for an old
  ingest date is found within one sweep cycle while a tick's cost stays bounded.

Folders whose files are not loaded (unknown source, bad or out-of-range date,
outside the declared sources' prefixes) are walked with the older folders, so each file in them is found
and recorded as IGNORED within one sweep too; so are files at the wrong level and,
in the loaded folders, keys that are unsafe or not data (see `lakehouse.layout`).

Whether a file is new is decided against `ops.ingestion_log` by (key, ETag), never
by timestamps, so same-second uploads are all seen, and an ignored version is
recorded once. The cursor holds only the walk position and a cycle count; it
survives restarts because Dagster stores it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from lakehouse import layout
from lakehouse.layout import (
    KeyOutsideLayout,
    check_key,
    parse_date_folder,
    outside_reason,
    parse_key,
    partition_prefix,
    storable,
    whereabouts,
)
from lakehouse.resources.landing import LandingObject, LandingZone


@dataclass
class Cursor:
    sweep_after: str | None = None  # name of the last older folder listed
    cycles: int = 0  # completed walks over all older folders
    whole: bool = False  # the last tick listed every older folder (its walk began and ended in it)

    def dumps(self) -> str:
        return json.dumps({"v": 1, "sweep_after": self.sweep_after, "cycles": self.cycles, "whole": self.whole})

    @classmethod
    def loads(cls, text: str | None) -> "Cursor":
        """A cursor from Dagster's stored string; anything unreadable starts afresh (costs one full walk)."""
        try:
            data = json.loads(text or "{}")
            return cls(data.get("sweep_after"), int(data.get("cycles", 0)), bool(data.get("whole", False)))
        except (ValueError, TypeError, AttributeError):
            return cls()


@dataclass(frozen=True)
class Folder:
    """An ingest-date folder of a source, within the partitions: its files are loaded."""

    source: str
    day: dt.date

    @property
    def name(self) -> str:  # sorts by date first, so the walk goes through history in order
        return f"{self.day.isoformat()}/{self.source}"

    @property
    def prefix(self) -> str:
        return partition_prefix(self.source, self.day)


@dataclass(frozen=True)
class OddFolder:
    """A folder whose files are not loaded (unknown source, bad or out-of-range date, outside
    the declared sources' prefixes). It is walked with the older folders so each of its files is recorded as
    IGNORED, with `reason`, within one sweep."""

    prefix: str
    reason: str

    @property
    def name(self) -> str:  # after every date ("2..." < "r..."), in a stable order
        return self.prefix


@dataclass(frozen=True)
class Ignored:
    """A listed object that is not loaded, and why."""

    obj: LandingObject
    reason: str

    @property
    def key(self) -> str:  # as recorded: valid UTF-8 even for an odd local file name
        return storable(self.obj.key)

    @property
    def whereabouts(self) -> tuple[str | None, dt.date | None]:
        return whereabouts(self.obj.key)


@dataclass
class Scan:
    objects: list[tuple[Folder, LandingObject]]
    ignored: list[Ignored]
    folders: list[Folder]  # every loadable folder listed this tick
    cursor: Cursor


def choose_folders(
    available: list[Folder | OddFolder], today: dt.date, lookback_days: int, sweep: int, cursor: Cursor
) -> tuple[list[Folder | OddFolder], Cursor]:
    """The recent folders plus the next `sweep` older (or odd) ones after the cursor, wrapping around."""
    hot_from = today - dt.timedelta(days=lookback_days - 1)
    hot = [f for f in available if isinstance(f, Folder) and f.day >= hot_from]
    older = sorted((f for f in available if not (isinstance(f, Folder) and f.day >= hot_from)), key=lambda f: f.name)
    after = cursor.sweep_after
    first = next((i for i, f in enumerate(older) if after is None or f.name > after), 0)  # 0: start over
    take = min(sweep, len(older))
    batch = [older[(first + i) % len(older)] for i in range(take)]
    wrapped = take == 0 or first + take >= len(older)  # the walk passed the end of history this tick
    after = batch[-1].name if batch else None
    moved = Cursor(after, cursor.cycles + (1 if wrapped else 0), whole=take == len(older))
    return hot + batch, moved


def date_folders(zone: LandingZone, start: dt.date, today: dt.date) -> tuple[list[Folder | OddFolder], list[Ignored]]:
    """Every folder to walk: sources' ingest-date folders within the partitions, and odd ones
    with the reason their files are not loaded; files at the wrong level, ignored with a reason.

    One delimiter listing per folder from the landing root down to each declared prefix
    (`retail/` and `retail/<source>/` for the default prefixes), and one per prefix.
    """
    folders: list[Folder | OddFolder] = []
    ignored: list[Ignored] = []

    def walk(folder: str) -> None:  # the root or a folder above source prefixes
        names, files = zone.list_level(folder)
        ignored.extend(Ignored(obj, outside_reason(folder, obj.key, is_folder=False)) for obj in files)
        for name in names:
            child = f"{folder}{name}/"
            if child in layout.PREFIXES:
                source_folders(layout.PREFIXES[child], child)
            elif name in layout.PARENTS.get(folder, ()):
                walk(child)
            else:
                folders.append(OddFolder(child, outside_reason(folder, name, is_folder=True)))

    def source_folders(source: str, prefix: str) -> None:
        names, files = zone.list_level(prefix)
        ignored.extend(Ignored(obj, "not in an ingest_date=YYYY-MM-DD folder") for obj in files)
        for name in names:
            where = f"{prefix}{name}/"
            try:
                day = parse_date_folder(name)
            except KeyOutsideLayout as exc:
                folders.append(OddFolder(where, str(exc)))
                continue
            if day < start:
                folders.append(OddFolder(where, f"before the first partition {start} (LAKEHOUSE_START_DATE)"))
            elif day > today:
                folders.append(OddFolder(where, f"after today ({today}, UTC); loaded once that day starts"))
            else:
                folders.append(Folder(source, day))

    walk("")
    return folders, ignored


def _unsafe(key: str) -> str | None:
    try:
        check_key(key)
    except KeyOutsideLayout as exc:
        return str(exc)
    return None


def scan(
    zone: LandingZone, start: dt.date, today: dt.date, lookback_days: int, sweep: int, cursor: Cursor
) -> Scan:
    available, ignored = date_folders(zone, start, today)
    ignored = [Ignored(i.obj, _unsafe(i.obj.key) or i.reason) for i in ignored]
    chosen, moved = choose_folders(available, today, lookback_days, sweep, cursor)
    objects = []
    for folder in chosen:
        for obj in zone.list(folder.prefix):
            if isinstance(folder, OddFolder):
                ignored.append(Ignored(obj, _unsafe(obj.key) or folder.reason))
                continue
            try:
                parse_key(obj.key)
            except KeyOutsideLayout as exc:
                ignored.append(Ignored(obj, str(exc)))
                continue
            objects.append((folder, obj))
    return Scan(objects, ignored, [f for f in chosen if isinstance(f, Folder)], moved)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
