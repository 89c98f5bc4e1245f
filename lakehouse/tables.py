"""Every Iceberg table the lakehouse writes: name, schema and partition spec, in one place.

Partition grain is chosen on purpose. Bronze is `day(_ingest_date)`: it matches the
Dagster partition, so a rerun replaces whole files of exactly one day, and at
terabyte scale a day is gigabytes, not a tiny file. The small ops tables are
`month(...)`: daily partitions there would make thousands of kilobyte files.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from lakehouse.contracts import CONTRACTS
from lakehouse.transforms.bronze import INGEST_DATE, bronze_schema

UTC_TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class TableDef:
    identifier: str
    schema: pa.Schema
    partition_by: tuple[tuple[str, str], ...]
    description: str


def bronze_table(source: str) -> TableDef:
    return TableDef(
        f"bronze.{source}",
        bronze_schema(CONTRACTS[source]),
        ((INGEST_DATE, "day"),),
        f"Landed {source} files as strings, with lineage columns.",
    )


REJECTED_FILES = TableDef(
    "bronze.rejected_files",
    pa.schema(
        [
            ("source", pa.string()),
            ("key", pa.string()),
            ("ingest_date", pa.date32()),
            ("etag", pa.string()),
            ("size", pa.int64()),
            ("last_modified", UTC_TS),
            ("reason", pa.string()),
            ("run_id", pa.string()),
            ("rejected_at", UTC_TS),
        ]
    ),
    (("ingest_date", "month"),),
    "Landed files that could not be read at all, with the reason.",
)

INGESTION_LOG = TableDef(
    "ops.ingestion_log",
    pa.schema(
        [
            ("source", pa.string()),
            ("key", pa.string()),
            ("etag", pa.string()),
            ("size", pa.int64()),
            ("last_modified", UTC_TS),
            ("ingest_date", pa.date32()),
            ("first_seen", UTC_TS),
            ("status", pa.string()),
            ("run_id", pa.string()),
            ("rows", pa.int64()),
            ("malformed_rows", pa.int64()),
            ("format", pa.string()),
            ("reason", pa.string()),
            ("processed_at", UTC_TS),
        ]
    ),
    (("ingest_date", "month"),),
    "One row per landed file and what became of it.",
)
