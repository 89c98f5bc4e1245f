"""What the landing sensor lists on one tick, and the cursor that carries it across ticks.

Listing every object under the landing root each tick (what `dagster_aws`'s
`get_objects` does) costs more with every day of history, and its one-second
`LastModified` cursor misses files written in the cursor's second. Here a tick lists
the date folders (one cheap delimiter listing per source), then the files of:

- the recent folders, `lookback_days` back from today, every tick;
- the next `sweep` older folders in a round-robin walk, so a late file for an old
  ingest date is found within one sweep cycle while a tick's cost stays bounded.

Whether a file is new is decided against `ops.ingestion_log` by (key, ETag), never
by timestamps, so same-second uploads are all seen. The cursor holds only the walk
position and a cycle count; it survives restarts because Dagster stores it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field

from lakehouse.layout import DOMAIN, SOURCES, KeyOutsideLayout, parse_key, partition_prefix, source_prefix
from lakehouse.resources.landing import LandingObject, LandingZone

REPORTED_LIMIT = 500  # ignored keys remembered so each is logged once, not every tick


@dataclass
class Cursor:
    sweep_after: str | None = None  # "<date>/<source>" of the last older folder listed
    cycles: int = 0  # completed walks over all older folders
    reported: list[str] = field(default_factory=list)  # digests of ignored keys already logged

    def dumps(self) -> str:
        return json.dumps({"v": 1, "sweep_after": self.sweep_after, "cycles": self.cycles,
                           "reported": self.reported[-REPORTED_LIMIT:]})

    @classmethod
    def loads(cls, text: str | None) -> "Cursor":
        """A cursor from Dagster's stored string; anything unreadable starts afresh (costs one full walk)."""
        try:
            data = json.loads(text or "{}")
            return cls(data.get("sweep_after"), int(data.get("cycles", 0)), list(data.get("reported", [])))
        except (ValueError, TypeError, AttributeError):
            return cls()


@dataclass(frozen=True)
class Folder:
    source: str
    day: dt.date

    @property
    def name(self) -> str:  # sorts by date first, so the walk goes through history in order
        return f"{self.day.isoformat()}/{self.source}"


@dataclass
class Scan:
    objects: list[tuple[Folder, LandingObject]]
    ignored: list[tuple[str, str]]  # (key or folder, why)
    folders: list[Folder]  # every folder listed this tick
    cursor: Cursor


def choose_folders(
    available: list[Folder], today: dt.date, lookback_days: int, sweep: int, cursor: Cursor
) -> tuple[list[Folder], Cursor]:
    """The recent folders plus the next `sweep` older ones after the cursor, wrapping around."""
    hot_from = today - dt.timedelta(days=lookback_days - 1)
    hot = [f for f in available if f.day >= hot_from]
    older = sorted((f for f in available if f.day < hot_from), key=lambda f: f.name)
    after = cursor.sweep_after
    first = next((i for i, f in enumerate(older) if after is None or f.name > after), 0)  # 0: start over
    take = min(sweep, len(older))
    batch = [older[(first + i) % len(older)] for i in range(take)]
    wrapped = take == 0 or first + take >= len(older)  # the walk passed the end of history this tick
    after = batch[-1].name if batch else None
    moved = Cursor(after, cursor.cycles + (1 if wrapped else 0), list(cursor.reported))
    return hot + batch, moved


def date_folders(zone: LandingZone, start: dt.date, today: dt.date) -> tuple[list[Folder], list[tuple[str, str]]]:
    """Every source's ingest-date folders within the partitions; anything else with a reason."""
    ignored: list[tuple[str, str]] = []
    top_folders, top_files = zone.list_level("")
    ignored += [(f"{name}/", f"outside {DOMAIN}/; only {DOMAIN}/<source>/ is watched") for name in top_folders if name != DOMAIN]
    ignored += [(key, f"outside {DOMAIN}/; only {DOMAIN}/<source>/ is watched") for key in top_files]
    domain_folders, domain_files = zone.list_level(f"{DOMAIN}/")
    ignored += [(f"{DOMAIN}/{name}/", f"unknown source {name!r}; known: {', '.join(SOURCES)}")
                for name in domain_folders if name not in SOURCES]
    ignored += [(key, f"not in a source folder ({', '.join(SOURCES)})") for key in domain_files]
    folders = []
    for source in SOURCES:
        names, files = zone.list_level(source_prefix(source))
        ignored += [(key, "not in an ingest_date=YYYY-MM-DD folder") for key in files]
        for name in names:
            where = f"{source_prefix(source)}{name}/"
            try:
                day = parse_key(f"{where}probe").ingest_date
            except KeyOutsideLayout as exc:
                ignored.append((where, f"{exc}; its files are not loaded"))
                continue
            if day < start:
                ignored.append((where, f"before the first partition {start} (LAKEHOUSE_START_DATE)"))
            elif day > today:
                ignored.append((where, f"after today ({today}, UTC); picked up once that day starts"))
            else:
                folders.append(Folder(source, day))
    return folders, ignored


def scan(
    zone: LandingZone, start: dt.date, today: dt.date, lookback_days: int, sweep: int, cursor: Cursor
) -> Scan:
    available, ignored = date_folders(zone, start, today)
    chosen, moved = choose_folders(available, today, lookback_days, sweep, cursor)
    objects = []
    for folder in chosen:
        for obj in zone.list(partition_prefix(folder.source, folder.day)):
            try:
                parse_key(obj.key)
            except KeyOutsideLayout as exc:
                ignored.append((obj.key, str(exc)))
                continue
            objects.append((folder, obj))
    return Scan(objects, ignored, chosen, moved)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def newly_ignored(ignored: list[tuple[str, str]], cursor: Cursor) -> list[tuple[str, str]]:
    """The ignored entries not logged before; remembers them in the cursor."""
    seen = set(cursor.reported)
    fresh = [(key, why) for key, why in ignored if digest(key) not in seen]
    cursor.reported = (cursor.reported + [digest(k) for k, _ in fresh])[-REPORTED_LIMIT:]
    return fresh
