"""The landing sensor: new or changed files become runs to gold, once per file version.

Each tick scans the landing zone (see `scan`), compares what it found with
`ops.ingestion_log` by (key, ETag), records new sightings as LANDED, observes them on
the raw assets, and asks for a run per span of consecutive ingest dates that takes them
from bronze (of all four sources: a source with no file that day gets an empty
partition, so everything downstream of the day exists) to gold. The run key is made
from the files' keys, ETags and first sightings,
so an unchanged re-upload asks for nothing, a changed one runs again, and asking again
for work already asked for (a tick after a daemon restart) is a no-op.

What the scan does not load (keys outside the layout, unsafe keys, hidden and marker
files) is recorded in the log as IGNORED with the reason, once per (key, ETag) like
any sighting, observed on the raw asset of its source when there is one, and logged.
"""

# No `from __future__ import annotations`: Dagster reads the resource annotations at runtime.
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

import dagster as dg
import pyarrow as pa
from pyiceberg.expressions import AlwaysFalse, BooleanExpression, In, IsNull, Or

from lakehouse import run_workers
from lakehouse.assets.raw import raw_key
from lakehouse.iceberg import TableStore
from lakehouse.resources import IcebergResource, LandingZoneResource
from lakehouse.resources.landing import LandingObject, LandingZone
from lakehouse.layout import SOURCES, shown
from lakehouse.sensors.scan import Cursor, Folder, Ignored, Scan, digest, scan
from lakehouse.settings import Settings
from lakehouse.tables import INGESTION_LOG
from lakehouse.tags import LANDED_TAG, TRIGGER_TAG
from lakehouse.transforms.bronze import IGNORED, LANDED, LIVE

SENSOR_NAME = "landing_sensor"


def backfilled_days(instance: dg.DagsterInstance, asset_keys) -> set[dt.date]:
    """Days that a backfill still in progress will materialize for any of `asset_keys`."""
    from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

    wanted, days = set(asset_keys), set()
    for backfill in instance.get_backfills(filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED])):
        data = backfill.asset_backfill_data
        if data is None:
            continue
        for target in data.target_subset.iterate_asset_partitions():
            if target.asset_key in wanted and target.partition_key:
                days.add(dt.date.fromisoformat(target.partition_key))
    return days


@dataclass(frozen=True)
class Sighting:
    """A file version as first seen by a tick; one tick's sightings of a day are loaded by one run."""

    source: str
    day: dt.date
    key: str
    etag: str
    first_seen: dt.datetime


@dataclass
class TickPlan:
    new: list[tuple[Folder, LandingObject]]  # versions to record as LANDED
    runs: dict[tuple[dt.date, dt.datetime], list[Sighting]]  # (day, first seen) -> that tick's sightings


def plan(found: list[tuple[Folder, LandingObject]], log_rows: list[dict], now: dt.datetime) -> TickPlan:
    """Compare the listing with the log: what is new, and which runs the waiting files need.

    A (key, ETag) with a live log row was seen before; anything else is new, including a
    key re-uploaded with other content or reverted to an older version. A file is
    waiting while its row is LANDED. Its run covers everything its tick first saw for
    that day, a set that never changes, so asking again (after a daemon restart, or
    while the run is half done) gives the same key for the day, asked for once
    (`asked_before`).
    """
    live = {(r["key"], r["etag"]): r for r in log_rows if r["status"] in LIVE}
    new = [(folder, obj) for folder, obj in found if (obj.key, obj.etag) not in live]
    waiting = set()
    for folder, obj in found:
        row = live.get((obj.key, obj.etag))
        if row is None or row["status"] == LANDED:
            waiting.add((folder.day, row["first_seen"] if row else now))
    sightings: dict[tuple[dt.date, dt.datetime], list[Sighting]] = defaultdict(list)
    for r in log_rows:
        if r["status"] == IGNORED:  # never part of a run
            continue
        sightings[(r["ingest_date"], r["first_seen"])].append(
            Sighting(r["source"], r["ingest_date"], r["key"], r["etag"], r["first_seen"]))
    for f, o in new:
        sightings[(f.day, now)].append(Sighting(f.source, f.day, o.key, o.etag, now))
    return TickPlan(new, {group: sightings[group] for group in sorted(waiting)})


def run_key(day: dt.date, files: list[Sighting]) -> str:
    versions = "\n".join(sorted(f"{f.key}@{f.etag}@{f.first_seen.isoformat()}" for f in files))
    return f"landing:{day.isoformat()}:{digest(versions)}"


BRONZE_KEYS = [dg.AssetKey(["bronze", s]) for s in SOURCES]


def run_request(day: dt.date, files: list[Sighting]) -> dg.RunRequest:
    """Bronze of every source for the day, whichever landed: a source without files gets an
    empty partition, so the day exists downstream (a late customer file re-enriches orders)."""
    key = run_key(day, files)  # a digest: keys may hold any character, tags and keys stay short
    return dg.RunRequest(
        run_key=key,
        partition_key=day.isoformat(),
        asset_selection=BRONZE_KEYS,
        tags={TRIGGER_TAG: SENSOR_NAME, "lakehouse/files": str(len(files)), LANDED_TAG + day.isoformat(): key},
    )


def asked_before(instance: dg.DagsterInstance, request: dg.RunRequest) -> bool:
    """Whether a run (of one day or of a span) was already made for this day's files.

    A span's run key depends on which days are waiting together, which changes while its
    run works (a day finishes, a neighbouring day lands), so Dagster's run-key check alone
    would load a day twice or retry a failed span under a new key. Each landing run carries,
    per day, the key of that day's files; a day asked for once is not asked for again.
    """
    tag = LANDED_TAG + request.partition_key
    return bool(instance.get_run_ids(dg.RunsFilter(tags={tag: request.tags[tag]}), limit=1))


def landed_rows(new: list[tuple[Folder, LandingObject]], now: dt.datetime) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"source": f.source, "key": o.key, "etag": o.etag, "size": o.size, "last_modified": o.last_modified,
             "ingest_date": f.day, "first_seen": now, "status": LANDED}
            for f, o in new
        ],
        schema=INGESTION_LOG.schema,
    )


def ignored_rows(ignored: list[Ignored], now: dt.datetime) -> pa.Table:
    rows = []
    for i in ignored:
        source, day = i.whereabouts
        rows.append({"source": source, "key": i.key, "etag": i.obj.etag, "size": i.obj.size,
                     "last_modified": i.obj.last_modified, "ingest_date": day, "first_seen": now,
                     "status": IGNORED, "reason": i.reason})
    return pa.Table.from_pylist(rows, schema=INGESTION_LOG.schema)


def newly_ignored(ignored: list[Ignored], log_rows: list[dict]) -> list[Ignored]:
    """The ignored versions not yet recorded: once per (key, ETag), like any sighting."""
    recorded = {(r["key"], r["etag"]) for r in log_rows if r["status"] == IGNORED}
    fresh: dict[tuple[str, str], Ignored] = {}
    for i in ignored:
        if (i.key, i.obj.etag) not in recorded:
            fresh.setdefault((i.key, i.obj.etag), i)
    return list(fresh.values())


def ignored_observation(i: Ignored, settings: Settings, now: dt.datetime) -> dg.AssetObservation | None:
    """On the raw asset of the key's source, if it names one; partitioned when its date is a partition."""
    source, day = i.whereabouts
    if source not in SOURCES:
        return None
    in_range = day is not None and settings.start_date <= day <= now.date()
    return dg.AssetObservation(
        asset_key=raw_key(source),
        partition=day.isoformat() if in_range else None,
        metadata={
            "key": i.key,
            "status": IGNORED,
            "reason": i.reason,
            "etag": i.obj.etag,
            "size": dg.MetadataValue.int(i.obj.size),
            "last_modified": dg.MetadataValue.timestamp(i.obj.last_modified),
            "first_seen": dg.MetadataValue.timestamp(now),
        },
    )


def observation(zone: LandingZone, folder: Folder, obj: LandingObject, now: dt.datetime) -> dg.AssetObservation:
    return dg.AssetObservation(
        asset_key=raw_key(folder.source),
        partition=folder.day.isoformat(),
        metadata={
            "key": obj.key,
            "status": LANDED,
            "dagster/uri": zone.describe(obj.key),
            "etag": obj.etag,
            "size": dg.MetadataValue.int(obj.size),
            "last_modified": dg.MetadataValue.timestamp(obj.last_modified),
            "first_seen": dg.MetadataValue.timestamp(now),
        },
    )


@dataclass
class Tick:
    requests: list[dg.RunRequest]
    observations: list[dg.AssetObservation]
    ignored: list[Ignored]  # recorded as IGNORED for the first time this tick
    deferred: list[dt.date]  # days with waiting files that a backfill in progress covers
    cursor: Cursor
    folders: int
    files: int
    landed: int  # versions recorded as LANDED this tick


def evaluate(zone: LandingZone, store: TableStore, settings: Settings, cursor: Cursor, now: dt.datetime,
             backfilled: frozenset[dt.date] = frozenset()) -> Tick:
    """One tick: list, compare with the log, record new sightings, plan the runs.

    Days in `backfilled` are left to the backfill in progress that covers them: their
    files are still recorded, and if the backfill does not ingest them (it fails, or
    skips bronze) a tick after it asks for them as usual.
    """
    found = scan(zone, settings.start_date, now.date(), settings.landing_lookback_days,
                 settings.landing_sweep_prefixes, cursor)
    store.ensure_table(INGESTION_LOG.identifier, INGESTION_LOG.schema, INGESTION_LOG.partition_by)
    where = _log_filter(found)
    log_rows = [] if where == AlwaysFalse() else store.read(
        INGESTION_LOG.identifier, where, ("source", "ingest_date", "key", "etag", "status", "first_seen")).to_pylist()
    tick = plan(found.objects, log_rows, now)
    ignored = newly_ignored(found.ignored, log_rows)
    if tick.new or ignored:
        table = store.load(INGESTION_LOG.identifier, fresh=True)  # an append, as every write, from fresh metadata
        rows = pa.concat_tables([landed_rows(tick.new, now), ignored_rows(ignored, now)])
        table.append(rows, snapshot_properties={"lakehouse.writer": SENSOR_NAME})
    observed = [ignored_observation(i, settings, now) for i in ignored]
    return Tick(
        requests=[run_request(day, files) for (day, _), files in tick.runs.items() if day not in backfilled],
        deferred=sorted({day for day, _ in tick.runs if day in backfilled}),
        observations=[observation(zone, folder, obj, now) for folder, obj in tick.new] + [o for o in observed if o],
        ignored=ignored,
        cursor=found.cursor,
        folders=len(found.folders),
        files=len(found.objects),
        landed=len(tick.new),
    )


def _log_filter(found: Scan) -> BooleanExpression:
    """The log rows a tick compares with: those of the days it listed, and of the dates (or
    no date) of what it ignored. The log is partitioned by month(ingest_date), so this prunes."""
    days = {f.day.isoformat() for f in found.folders}
    days |= {day.isoformat() for i in found.ignored if (day := i.whereabouts[1])}
    undated = any(i.whereabouts[1] is None for i in found.ignored)
    if days and undated:
        return Or(In("ingest_date", sorted(days)), IsNull("ingest_date"))
    return In("ingest_date", sorted(days)) if days else IsNull("ingest_date") if undated else AlwaysFalse()


def through_gold(requests: list[dg.RunRequest], day_keys: list[dg.AssetKey]) -> list[dg.RunRequest]:
    """One run per span of consecutive landed days, bronze to gold and the dimensions.

    A second run for silver and gold, or for the dimensions, would pay a run's start (a
    process, the imports, the engine session) again and wait for an automation tick; a run
    per day would pay every step's fixed cost once per day. The dimensions, unpartitioned,
    come last in the run (`assets/gold.py`, AFTER_THE_FACT), and automation does not ask for
    them again: their inputs were written by a run that also targeted them. A span of
    several days (a backlog, a first load) is one run over the range, as a backfill runs it
    (the assets' single-run backfill policy).
    The sensor leaves out the days whose files a run was already made for (`asked_before`).
    Inside a run a failed blocking check of a step skips the steps after it, as between
    runs. Days not next to each other are separate runs: a range run writes every day it
    covers, and a day nothing landed for must stay absent.
    """
    by_day = sorted(requests, key=lambda r: r.partition_key)
    spans: list[list[dg.RunRequest]] = []
    for request in by_day:
        day = dt.date.fromisoformat(request.partition_key)
        if spans and dt.date.fromisoformat(spans[-1][-1].partition_key) + dt.timedelta(days=1) == day:
            spans[-1].append(request)
        else:
            spans.append([request])
    out = []
    for span in spans:
        if len(span) == 1:
            out.append(span[0].with_replaced_attrs(asset_selection=day_keys))
            continue
        first, last = span[0].partition_key, span[-1].partition_key
        files = sum(int(r.tags.get("lakehouse/files", 0)) for r in span)
        out.append(dg.RunRequest(
            run_key=f"landing:{first}..{last}:{digest(chr(10).join(r.run_key for r in span))}",
            asset_selection=day_keys,
            tags={TRIGGER_TAG: SENSOR_NAME, "lakehouse/files": str(files),
                  "dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last,
                  **{k: v for r in span for k, v in r.tags.items() if k.startswith(LANDED_TAG)}},
        ))
    return out


def build_landing_sensor(settings: Settings, bronze_keys: list[dg.AssetKey],
                         day_keys: list[dg.AssetKey] | None = None) -> dg.SensorDefinition:
    """`day_keys`: what a landed day's run materializes: bronze, everything partitioned after it, and
    the dimensions built from silver.

    See `through_gold` for the runs a tick asks for.
    """
    day_keys = day_keys or bronze_keys

    @dg.sensor(
        name=SENSOR_NAME,
        target=dg.AssetSelection.assets(*day_keys),
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Lists the landing zone's recent ingest-date folders (and a rolling sweep of older ones), "
            "records new or changed files in ops.ingestion_log and asks for one run per span of consecutive "
            "ingest dates, from bronze of all four sources to gold and the dimensions, keyed by "
            "the files' keys and ETags. Keys it does not load (off the "
            "layout, unsafe, hidden or markers) are recorded there as IGNORED with the reason."
        ),
    )
    def landing_sensor(
        context: dg.SensorEvaluationContext, landing: LandingZoneResource, iceberg: IcebergResource
    ) -> dg.SensorResult:
        # A backfill in progress over any of the assets a landing run writes has the day.
        tick = evaluate(landing.zone(), iceberg.store(), settings, Cursor.loads(context.cursor),
                        dt.datetime.now(dt.timezone.utc), frozenset(backfilled_days(context.instance, day_keys)))
        if tick.deferred:
            context.log.info(f"left to the backfill in progress: {', '.join(map(str, tick.deferred))}")
        for ignored in tick.ignored:
            context.log.warning(f"ignored '{shown(ignored.key)}': {ignored.reason} (recorded in ops.ingestion_log)")
        fresh = [r for r in tick.requests if not asked_before(context.instance, r)]
        requests = through_gold(fresh, day_keys)
        context.log.info(
            f"listed {tick.folders} folder(s), {tick.files} file(s); {tick.landed} new, "
            f"{len(tick.ignored)} newly ignored; {len(fresh)} day(s) to load "
            f"({len(tick.requests) - len(fresh)} waiting in a run already) in {len(requests)} run request(s); "
            f"sweep cycle {tick.cursor.cycles}"
        )
        if requests:
            run_workers.warm()  # their launch follows in a second or two: the runs' forkserver starts now
        return dg.SensorResult(run_requests=requests, asset_events=tick.observations, cursor=tick.cursor.dumps())

    return landing_sensor
