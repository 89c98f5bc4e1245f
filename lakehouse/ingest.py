"""Load one bronze partition: list the landing prefix, read files, write three tables.

The I/O around the pure bronze transform. Each table gets one atomic Iceberg commit
that replaces exactly this (source, ingest date), so reruns never duplicate rows.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from pyiceberg.expressions import And, EqualTo

from lakehouse.contracts import SourceContract
from lakehouse.iceberg import TableStore, WriteResult
from lakehouse.layout import KeyOutsideLayout, parse_key, partition_prefix
from lakehouse.resources.landing import LandingObject, LandingZone
from lakehouse.tables import INGESTION_LOG, REJECTED_FILES, bronze_table
from lakehouse.transforms.bronze import (
    INGEST_DATE,
    BronzeBatch,
    ingest_partition,
    ingestion_log_rows,
    rejected_rows,
)

log = logging.getLogger(__name__)


@dataclass
class BronzeLoad:
    batch: BronzeBatch
    bronze: WriteResult
    ignored: list[tuple[str, str]]  # (key, why it was not read)


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
    objects, ignored = list_partition(zone, source, day)
    for key, reason in ignored:
        log.warning("ignored %s: %s", key, reason)
    batch = ingest_partition(contract, day, objects, zone.read, now)
    props = {
        "dagster.run_id": run_id,
        "dagster.partition_key": day.isoformat(),
        "dagster.asset_key": f"bronze/{source}",
    }
    bronze = store.replace_where(
        bronze_table(source).identifier, lambda: _slices(batch), EqualTo(INGEST_DATE, day.isoformat()), props
    )
    same_partition = And(EqualTo("source", source), EqualTo("ingest_date", day.isoformat()))
    store.replace_where(
        REJECTED_FILES.identifier, rejected_rows(batch, run_id, now), same_partition, props, evolve=False
    )
    earlier = store.read(INGESTION_LOG.identifier, same_partition, ("key", "etag", "first_seen"))
    first_seen = {
        (row["key"], row["etag"]): row["first_seen"] for row in earlier.to_pylist() if row["first_seen"]
    }
    store.replace_where(
        INGESTION_LOG.identifier,
        ingestion_log_rows(batch, run_id, now, first_seen),
        same_partition,
        props,
        evolve=False,
    )
    return BronzeLoad(batch, bronze, ignored)
