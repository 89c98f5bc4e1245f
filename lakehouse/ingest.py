"""Load bronze partitions: list the landing prefixes, read files, write three tables.

The I/O around the pure bronze transform. Each table gets one atomic Iceberg commit
that replaces exactly these (source, ingest dates), so reruns never duplicate rows; a
backfill range is one commit per table, not one per day.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import itertools
import json
import logging
import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.expressions import AlwaysFalse, And, EqualTo, In, NotEqualTo

from lakehouse import collector, scratch
from lakehouse.checks import evaluate as ev
from lakehouse.checks.catalog import specs_for

from lakehouse.contracts import CONTRACTS, SourceContract
from lakehouse.arrowtools import conform, split_by_day
from lakehouse.iceberg import TableStore, WriteResult
from lakehouse.layout import KeyOutsideLayout, parse_key, partition_prefix, shown
from lakehouse.resources.landing import LandingObject, LandingZone
from lakehouse.partitions import Days, day_keys
from lakehouse.readers import ReadResult
from lakehouse.steps import COLUMNS, StepContext, previous_value, audited_write, per_day, within
from lakehouse.tables import INGESTION_LOG, REJECTED_FILES, bronze_table
from lakehouse.transforms.bronze import (
    IGNORED,
    INGEST_DATE,
    INGESTED,
    SLICE_ROWS,
    BronzeBatch,
    combine,
    ingest_partition,
    ingestion_log_rows,
    merge_log,
    rejected_rows,
)

log = logging.getLogger(__name__)


@dataclass
class BronzeLoad:
    batch: BronzeBatch  # its counts, schema and files; its spilled rows are gone with the load
    bronze: WriteResult  # .published False: a blocking check failed, main untouched
    ignored: list[tuple[str, str]]  # (key, why it was not read)

    @property
    def checks(self):
        return self.bronze.audit


def list_partition(zone: LandingZone, source: str, day: dt.date) -> tuple[list[LandingObject], list[tuple[str, str]]]:
    """Objects of one source and ingest date; anything off-layout is set aside with a reason."""
    objects, ignored = [], []
    for obj in zone.list(partition_prefix(source, day)):
        try:
            parse_key(obj.key)
        except KeyOutsideLayout as exc:
            ignored.append((obj.key, str(exc)))
            continue
        objects.append(obj)
    return objects, ignored


NOT_IGNORED = NotEqualTo("status", IGNORED)
SPILL_BYTES = 64 * 2**20  # read rows kept in memory until the write, at most; the rest wait in local Parquet


def _spiller(folder: str):
    """A `keep` for `ingest_partition`: read rows stay in memory up to SPILL_BYTES in all; past
    that, a file's slices go to a Parquet file in `folder` as they are read (a row group per
    slice), so a day of many files, or one of many GB, is in memory a slice at a time. A file
    found unreadable part-way leaves nothing behind: its slices so far are dropped."""
    names, held = itertools.count(), 0

    def keep(result: ReadResult):
        nonlocal held
        kept, size, writer, path = [], 0, None, None
        try:
            for table in result.batches():
                if writer is None and held + size + table.nbytes <= SPILL_BYTES:
                    kept.append(table)
                    size += table.nbytes
                    continue
                if writer is None:
                    path = os.path.join(folder, f"part-{next(names)}.parquet")
                    writer = pq.ParquetWriter(path, result.schema)
                    for earlier in kept:
                        writer.write_table(earlier, row_group_size=SLICE_ROWS)
                    kept, size = [], 0
                writer.write_table(table, row_group_size=SLICE_ROWS)
            if writer is not None:
                writer.close()
        except BaseException:  # unreadable part-way, or the disk is full: nothing of the file stays
            if path is not None:
                with contextlib.suppress(Exception):
                    writer.close()
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
            raise
        if writer is not None:
            return path
        held += size
        return pa.concat_tables([result.schema.empty_table(), *kept])
    return keep


def ensure_tables(store: TableStore, source: str) -> None:
    for table in (bronze_table(source), REJECTED_FILES, INGESTION_LOG):
        store.ensure_table(table.identifier, table.schema, table.partition_by, declared=dict(table.declared))


def load_bronze(
    zone: LandingZone,
    store: TableStore,
    contract: SourceContract,
    days: Days,
    run_id: str,
    now: dt.datetime | None = None,
) -> BronzeLoad:
    """Load one ingest date, or a contiguous range of them, with one commit per table."""
    collector.tune()
    with scratch.folder("bronze") as spill:
        return _load(zone, store, contract, days, run_id, now, _spiller(spill), spill)


def _load(zone, store, contract, days, run_id, now, keep, folder) -> BronzeLoad:
    now = now or dt.datetime.now(dt.timezone.utc)
    source, keys = contract.name, day_keys(days)
    ensure_tables(store, source)
    listed_at = dt.datetime.now(dt.timezone.utc)
    batches, ignored = [], []
    for key in keys:
        objects, skipped = list_partition(zone, source, dt.date.fromisoformat(key))
        ignored += skipped
        fetch = functools.partial(zone.fetch, folder=folder)
        batches.append(ingest_partition(contract, dt.date.fromisoformat(key), objects, fetch, now, keep))
    for key, reason in ignored:
        log.warning("ignored %s: %s", shown(key), reason)
    batch = combine(contract, batches)
    asset, ctx = f"bronze/{source}", StepContext(store, None, run_id)
    props = ctx.props(asset, keys)
    # The ops tables are the evidence of what landed: written first, whatever the audit decides.
    same_partitions = And(EqualTo("source", source), within("ingest_date", keys))
    rejected = pa.concat_tables([conform(rejected_rows(b, run_id, now), REJECTED_FILES.schema) for b in batches])
    store.replace_where(REJECTED_FILES.identifier, rejected, same_partitions, props, evolve=False)
    processed = [row for b in batches for row in ingestion_log_rows(b, run_id, now).to_pylist()]
    record_processed(store, same_partitions, processed, listed_at, props)

    specs = ev.index(specs_for(asset))
    target = bronze_table(source)
    where = within(INGEST_DATE, keys)
    by_day = dict(zip(keys, batches))

    def audit(head: int):
        written = split_by_day(store.read(target.identifier, where, (INGEST_DATE,), snapshot_id=head),
                               INGEST_DATE, keys)
        logged = store.read(INGESTION_LOG.identifier, same_partitions, ("ingest_date", "status", "rows"))
        file_rows = {k: 0 for k in keys}
        for r in logged.to_pylist():
            if r["status"] == INGESTED:
                file_rows[r["ingest_date"].isoformat()] += r["rows"] or 0
        landed = store.read(INGESTION_LOG.identifier, And(EqualTo("source", source), NOT_IGNORED),
                            ("last_modified",))
        newest = pc.max(landed["last_modified"]).as_py() if landed.num_rows else None

        def day_checks(key: str):
            day = by_day[key]
            missing = day.missing_columns()
            return [
                ev.equal(specs["matches_files"], bronze=written[key].num_rows, files=file_rows[key]),
                ev.counted(specs["rejected_files"], len(day.rejected), len(day.files),
                           tuple({"file": f.obj.key, "reason": f.reason} for f in day.rejected[: ev.SAMPLE])),
                ev.counted(specs["missing_columns"], sum(len(v) for v in missing.values()), len(day.files),
                           tuple({"column": c, "files": v} for c, v in list(missing.items())[: ev.SAMPLE])),
                ev.freshness(specs["freshness"], newest, now),
                # No file at all for the source that day is a normal empty partition; files
                # that held no rows (or could not be read) still fail.
                ev.non_empty(specs["non_empty"], written[key].num_rows,
                             None if day.files else f"no files landed for {source} on {key}"),
            ]

        return per_day(keys, day_checks)

    landed_columns = {c: "string" for f in batch.files for c in _landed(f, source)}
    if not batch.files:  # nothing landed: no drift, the columns stay what they were
        previous = previous_value(ctx, target, asset, COLUMNS)
        landed_columns = json.loads(previous) if previous else {c: "string" for c in contract.column_names}
    write = audited_write(ctx, target, asset, keys, lambda: batch.slices(SLICE_ROWS), where, props, landed_columns, audit,
                          evolve=True)
    return BronzeLoad(batch, write, ignored)


def record_processed(store: TableStore, partition, processed: list[dict],
                     listed_at: dt.datetime, props: dict) -> None:
    """Mark the partition's files INGESTED or REJECTED in ops.ingestion_log, one commit.

    Only the keys this run decided are replaced (see `merge_log`), so a file the landing
    sensor records while this run is busy keeps its LANDED row for the next run. IGNORED
    rows are the sensor's alone: neither read nor replaced here.
    """
    partition = And(partition, NOT_IGNORED)  # the sensor's IGNORED rows are not bronze's to rewrite
    store.load(INGESTION_LOG.identifier, fresh=True)  # the keys and the rows from the log as it is now
    keys, _ = merge_log(_log_rows(store, partition), processed, listed_at)

    def rows():  # re-read on a conflicting commit, so a concurrent sighting is merged, not lost
        yield pa.Table.from_pylist(merge_log(_log_rows(store, partition), processed, listed_at)[1],
                                   schema=INGESTION_LOG.schema)

    where = And(partition, In("key", sorted(keys))) if keys else AlwaysFalse()
    store.replace_where(INGESTION_LOG.identifier, rows, where, props, evolve=False, fresh=False)


def _log_rows(store: TableStore, partition) -> list[dict]:
    return store.read(INGESTION_LOG.identifier, partition).to_pylist()


def _landed(outcome, source: str) -> list[str]:
    """The data columns a readable file brought (contract columns it had, plus extras)."""
    if outcome.status != INGESTED:
        return []
    contract = CONTRACTS[source]
    return [c for c in contract.column_names if c not in outcome.missing_columns] + list(outcome.extra_columns)
