"""Load one bronze partition: list the landing prefix, read files, write three tables.

The I/O around the pure bronze transform. Each table gets one atomic Iceberg commit
that replaces exactly this (source, ingest date), so reruns never duplicate rows.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import AlwaysFalse, And, EqualTo, In

from lakehouse.checks import evaluate as ev
from lakehouse.checks.catalog import specs_for

from lakehouse.contracts import CONTRACTS, SourceContract
from lakehouse.iceberg import TableStore, WriteResult
from lakehouse.layout import KeyOutsideLayout, parse_key, partition_prefix
from lakehouse.readers import ROW_NUMBER
from lakehouse.resources.landing import LandingObject, LandingZone
from lakehouse.steps import StepContext, audited_write
from lakehouse.tables import INGESTION_LOG, REJECTED_FILES, bronze_table
from lakehouse.transforms.bronze import (
    INGEST_DATE,
    INGESTED,
    BronzeBatch,
    ingest_partition,
    ingestion_log_rows,
    merge_log,
    rejected_rows,
)

log = logging.getLogger(__name__)


@dataclass
class BronzeLoad:
    batch: BronzeBatch
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


SLICE_ROWS = 1_000_000


def _slices(batch: BronzeBatch):
    """The batch in zero-copy slices of at most SLICE_ROWS rows, written in one commit.

    PyIceberg copies what it is given while splitting it by partition; slices keep
    that copy small even for a 10M-row file.
    """
    if not batch.chunks:
        yield batch.schema.empty_table()
    for chunk in batch.chunks:
        for start in range(0, chunk.num_rows, SLICE_ROWS):
            yield chunk.slice(start, SLICE_ROWS)


def ensure_tables(store: TableStore, source: str) -> None:
    for table in (bronze_table(source), REJECTED_FILES, INGESTION_LOG):
        store.ensure_table(table.identifier, table.schema, table.partition_by)


def load_bronze_partition(
    zone: LandingZone,
    store: TableStore,
    contract: SourceContract,
    day: dt.date,
    run_id: str,
    now: dt.datetime | None = None,
) -> BronzeLoad:
    now = now or dt.datetime.now(dt.timezone.utc)
    source = contract.name
    ensure_tables(store, source)
    listed_at = dt.datetime.now(dt.timezone.utc)
    objects, ignored = list_partition(zone, source, day)
    for key, reason in ignored:
        log.warning("ignored %s: %s", key, reason)
    batch = ingest_partition(contract, day, objects, zone.read, now)
    asset, key = f"bronze/{source}", day.isoformat()
    props = {"dagster.run_id": run_id, "dagster.partition_key": key, "dagster.asset_key": asset}
    # The ops tables are the evidence of what landed: written first, whatever the audit decides.
    same_partition = And(EqualTo("source", source), EqualTo("ingest_date", key))
    store.replace_where(
        REJECTED_FILES.identifier, rejected_rows(batch, run_id, now), same_partition, props, evolve=False
    )
    record_processed(store, same_partition, ingestion_log_rows(batch, run_id, now).to_pylist(), listed_at, props)

    specs = ev.index(specs_for(asset))
    target = bronze_table(source)
    where = EqualTo(INGEST_DATE, key)

    def audit(head: int):
        written = store.read(target.identifier, where, (ROW_NUMBER,), snapshot_id=head).num_rows
        logged = store.read(INGESTION_LOG.identifier, same_partition, ("status", "rows"))
        file_rows = sum(r["rows"] or 0 for r in logged.to_pylist() if r["status"] == INGESTED)
        landed = store.read(INGESTION_LOG.identifier, EqualTo("source", source), ("last_modified",))
        newest = pc.max(landed["last_modified"]).as_py() if landed.num_rows else None
        missing = batch.missing_columns()
        return [
            ev.equal(specs["matches_files"], bronze=written, files=file_rows),
            ev.counted(specs["rejected_files"], len(batch.rejected), len(batch.files),
                       tuple({"file": f.obj.key, "reason": f.reason} for f in batch.rejected[: ev.SAMPLE])),
            ev.counted(specs["missing_columns"], sum(len(v) for v in missing.values()), len(batch.files),
                       tuple({"column": c, "files": v} for c, v in list(missing.items())[: ev.SAMPLE])),
            ev.freshness(specs["freshness"], newest, now),
            ev.non_empty(specs["non_empty"], written),
        ]

    landed_columns = {c: "string" for f in batch.files for c in _landed(f, source)}
    ctx = StepContext(store, None, run_id)
    write = audited_write(ctx, target, asset, key, lambda: _slices(batch), where, props, landed_columns, audit,
                          evolve=True)
    return BronzeLoad(batch, write, ignored)


def record_processed(store: TableStore, partition, processed: list[dict],
                     listed_at: dt.datetime, props: dict) -> None:
    """Mark the partition's files INGESTED or REJECTED in ops.ingestion_log, one commit.

    Only the keys this run decided are replaced (see `merge_log`), so a file the landing
    sensor records while this run is busy keeps its LANDED row for the next run.
    """
    keys, _ = merge_log(_log_rows(store, partition), processed, listed_at)

    def rows():  # re-read on a conflicting commit, so a concurrent sighting is merged, not lost
        yield pa.Table.from_pylist(merge_log(_log_rows(store, partition), processed, listed_at)[1],
                                   schema=INGESTION_LOG.schema)

    where = And(partition, In("key", sorted(keys))) if keys else AlwaysFalse()
    store.replace_where(INGESTION_LOG.identifier, rows, where, props, evolve=False)


def _log_rows(store: TableStore, partition) -> list[dict]:
    return store.read(INGESTION_LOG.identifier, partition).to_pylist()


def _landed(outcome, source: str) -> list[str]:
    """The data columns a readable file brought (contract columns it had, plus extras)."""
    if outcome.status != INGESTED:
        return []
    contract = CONTRACTS[source]
    return [c for c in contract.column_names if c not in outcome.missing_columns] + list(outcome.extra_columns)
