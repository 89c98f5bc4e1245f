"""Every Iceberg table the lakehouse writes: name, schema and partition spec, in one place.

Partition grain is chosen on purpose:
- bronze: `day(_ingest_date)`. It is the Dagster partition, so a rerun replaces
  whole files of one day; at terabyte scale a day is gigabytes, not a tiny file.
- silver.orders, gold.fact_orders, gold.mart_daily_sales: `month(order_date)`;
  silver.events: `month(event_date)`; the activity mart: `month(activity_date)`.
  Queries filter on these dates: the month prunes partitions, and because every
  write holds one ingest date, the per-file min/max of the date prunes further to
  about the day. A day partition would mean a file per day per table at demo scale
  (hundreds of kilobyte files a year) for no extra pruning.
- silver.customers/products (version histories) and the gold dimensions are small
  and read whole: unpartitioned.
- silver.quarantine: `identity(source)`, `month(ingest_date)`; the ops tables `month`.
Writes replace rows by `_ingest_date` (or by date for the marts). Every write holds
one ingest date, so a replace deletes whole files and never rewrites others.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pyarrow as pa

from lakehouse.arrowtools import UTC_TS, arrow_type

from lakehouse.contracts import CONTRACTS
from lakehouse.readers import RAW_RECORD, ROW_NUMBER
from lakehouse.transforms.bronze import INGEST_DATE, LINEAGE_DESCRIPTIONS, SOURCE_FILE, bronze_schema
from lakehouse.transforms.gold import EVENT_COUNTS
from lakehouse.transforms.silver import silver_columns

@dataclass(frozen=True)
class TableDef:
    identifier: str
    schema: pa.Schema
    partition_by: tuple[tuple[str, str], ...]
    description: str
    column_descriptions: tuple[tuple[str, str], ...] = ()
    # Declaration facts the rows depend on (a silver table's keys and history): recorded on
    # the table, and a change to them refused (iceberg.refusal).
    declared: tuple[tuple[str, str], ...] = ()

    def describe(self, column: str) -> str:
        return dict(self.column_descriptions).get(column, "")


def _columns(spec: list[tuple[str, str, str]]) -> tuple[pa.Schema, tuple[tuple[str, str], ...]]:
    return pa.schema([(n, arrow_type(t)) for n, t, _ in spec]), tuple((n, d) for n, _, d in spec)


def _table(identifier: str, spec: list[tuple[str, str, str]], partition_by, description: str) -> TableDef:
    """A table from (column, contract type, description) triples."""
    schema, descriptions = _columns(spec)
    return TableDef(identifier, schema, tuple(partition_by), description, descriptions)


def bronze_table(source: str) -> TableDef:
    contract = CONTRACTS[source]
    return TableDef(
        f"bronze.{source}",
        bronze_schema(contract),
        ((INGEST_DATE, "day"),),
        f"Landed {source} files as strings, with lineage columns.",
        tuple((c.name, f"{c.description} (as landed, a string)") for c in contract.columns)
        + tuple(LINEAGE_DESCRIPTIONS.items()),
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
    (
        ("source", "Source the file landed for."),
        ("key", "Landing key of the file."),
        ("ingest_date", "Ingest date (Dagster partition) of the file."),
        ("etag", "The object's ETag when it was read."),
        ("size", "Size in bytes."),
        ("last_modified", "When the object was last written."),
        ("reason", "Why it could not be read, e.g. not gzip, or not CSV, JSON or Parquet."),
        ("run_id", "Dagster run that read it."),
        ("rejected_at", "When it was rejected."),
    ),
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
    (
        ("source", "Source the file landed for."),
        ("key", "Landing key of the file."),
        ("etag", "The object's ETag: a new version of the same key is a new row."),
        ("size", "Size in bytes."),
        ("last_modified", "When the object was last written."),
        ("ingest_date", "Ingest date (Dagster partition) of the file."),
        ("first_seen", "When the landing sensor first saw this version."),
        ("status", "LANDED (seen, not loaded yet), INGESTED, REJECTED, SUPERSEDED (re-uploaded), REMOVED, or "
                   "IGNORED (not loaded: outside the layout, a refused or hidden name; see reason)."),
        ("run_id", "Dagster run that loaded it."),
        ("rows", "Rows read into bronze."),
        ("malformed_rows", "Records that did not parse (kept in bronze, quarantined in silver)."),
        ("format", "The format it was read as."),
        ("reason", "Why it was rejected or ignored."),
        ("processed_at", "When bronze processed it."),
    ),
)


def silver_table(source: str) -> TableDef:
    contract = CONTRACTS[source]
    what = (
        "one row per version (a row is written when a key's attributes change)"
        if contract.history == "snapshot" else "one row per valid record"
    )
    table = _table(
        f"silver.{source}", silver_columns(contract),
        ((contract.partition.column, contract.partition.grain),) if contract.partition else (),
        f"{contract.description} Typed, cleaned, de-duplicated: {what}.",
    )
    # keys in sorted order: declaring the same keys in another order changes nothing
    return replace(table, declared=(("keys", ", ".join(sorted(contract.keys))), ("history", contract.history)))


QUARANTINE = TableDef(
    "silver.quarantine",
    pa.schema(
        [
            ("source", pa.string()),
            ("ingest_date", pa.date32()),
            ("source_file", pa.string()),
            ("row_number", pa.int64()),
            ("rules", pa.list_(pa.string())),
            ("parse_error", pa.string()),
            ("raw_record", pa.string()),
            ("original", pa.string()),
            ("record_key", pa.string()),
            ("run_id", pa.string()),
            ("quarantined_at", UTC_TS),
        ]
    ),
    (("source", "identity"), ("ingest_date", "month")),
    "Bronze rows that are not in silver: rows that broke a quarantine rule (every rule broken), and "
    "duplicates and superseded versions of a key; where they came from and the values as landed.",
    (
        ("source", "Source the row came from."),
        ("ingest_date", "Ingest date (Dagster partition) of the row."),
        ("source_file", LINEAGE_DESCRIPTIONS[SOURCE_FILE]),
        ("row_number", LINEAGE_DESCRIPTIONS[ROW_NUMBER]),
        ("rules", "Every quarantine rule the row broke, e.g. qty.out_of_range; or duplicate (the same key and "
                  "content as the row kept in silver) or superseded (an older version a later record corrected)."),
        ("parse_error", "Why the record could not be parsed, when it could not."),
        ("raw_record", LINEAGE_DESCRIPTIONS[RAW_RECORD]),
        ("original", "The row's values as landed in bronze, as a JSON object."),
        ("record_key", "Business key of a duplicate or superseded row (its current version is in silver)."),
        ("run_id", "Dagster run that quarantined it."),
        ("quarantined_at", "When it was quarantined."),
    ),
)


DIMENSION_SOURCES = tuple(c.name for c in CONTRACTS.values() if c.dimension)  # declared `dimension:`


def dimension_table(source: str) -> TableDef:
    contract = CONTRACTS[source]
    spec = [(c.name, c.type, c.description) for c in contract.columns] + [
        ("valid_from", "date", "Ingest date of the current version."),
        ("first_seen", "date", "Ingest date the key first appeared."),
    ]
    return _table(f"gold.{contract.dimension}", spec, (),
                  f"Current version of every {source.removesuffix('s')} (latest ingest wins).")


def _fact_spec() -> list[tuple[str, str, str]]:
    silver = {n: (t, d) for n, t, d in silver_columns(CONTRACTS["orders"])}
    spec = [(n, *silver[n]) for n in ("order_id", "order_date", "customer_id", "product_id", "channel",
                                      "region", "category", "qty", "unit_price", "sales_amount")]
    return spec + [
        ("customer_known", "boolean", "False when the customer id was not in the customer data."),
        ("product_known", "boolean", "False when the product id was not in the product data."),
        (INGEST_DATE, "date", "Ingest date (Dagster partition) of the order."),
    ]


FACT_ORDERS = _table(
    "gold.fact_orders", _fact_spec(), (("order_date", "month"),),
    "One row per valid order line, conformed to the customer and product dimensions.",
)

MART_DAILY_SALES = _table(
    "gold.mart_daily_sales",
    [
        ("order_date", "date", "Day the orders were placed (late arrivals included)."),
        ("channel", "string", "web, store or mobile."),
        ("region", "string", "Customer region; Unknown for unknown customers."),
        ("category", "string", "Product category; Unknown for unknown products."),
        ("orders", "long", "Order lines."),
        ("units", "long", "Units sold."),
        ("sales", "decimal(18,2)", "Sum of qty * unit_price."),
    ],
    (("order_date", "month"),),
    "Sales by day, channel, region and category.",
)

MART_CUSTOMER_ACTIVITY = _table(
    "gold.mart_customer_activity",
    [("customer_id", "string", "Customer (or signed-in user) id."), ("activity_date", "date", "UTC day.")]
    + [(n, "long", f"{k} events.") for k, n in EVENT_COUNTS.items()]
    + [("events", "long", "All events."), ("orders", "long", "Order lines placed that day."),
       ("units", "long", "Units ordered that day."), ("sales", "decimal(18,2)", "Sales that day.")],
    (("activity_date", "month"),),
    "Per customer and day: events by type, orders, units and sales.",
)


DQ_RESULTS = TableDef(
    "ops.dq_results",
    pa.schema(
        [
            ("asset", pa.string()),
            ("partition", pa.string()),
            ("check_name", pa.string()),
            ("passed", pa.bool_()),
            ("severity", pa.string()),
            ("observed", pa.float64()),
            ("threshold", pa.float64()),
            ("message", pa.string()),
            ("published", pa.bool_()),
            ("branch", pa.string()),
            ("snapshot_id", pa.int64()),
            ("run_id", pa.string()),
            ("evaluated_at", UTC_TS),
        ]
    ),
    (("evaluated_at", "month"),),
    "One row per check evaluation: asset, partition, check, result, observed value and threshold.",
    (
        ("asset", "Asset the check is on, e.g. silver/orders."),
        ("partition", "Ingest date it was evaluated for (empty for the dimensions)."),
        ("check_name", "The check, as the UI names it."),
        ("passed", "Whether it passed."),
        ("severity", "ERROR (blocks publishing) or WARN."),
        ("observed", "The value measured."),
        ("threshold", "The limit it was held to, where there is one."),
        ("message", "What was found, in words."),
        ("published", "Whether the write it audited was published to main."),
        ("branch", "The audit branch the write was staged on."),
        ("snapshot_id", "The staged snapshot the check read."),
        ("run_id", "Dagster run that evaluated it."),
        ("evaluated_at", "When it was evaluated."),
    ),
)
