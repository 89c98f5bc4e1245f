"""One function per silver and gold step: read from Iceberg, run the pure transform, write.

The Dagster assets call these, and so can a Glue/EMR job, so a step's I/O lives in
one place whatever runs it. Reads are always filtered (by ingest date, or by the
dates a partition touched); only the small dimensions are read whole.

Late data: an order ingested on day D may be for any earlier order_date. Every write
of a date-partitioned table records, in its snapshot properties, the dates it
touched (before and after), so the marts recompute exactly those days.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import AlwaysTrue, And, BooleanExpression, EqualTo, In, LessThan, LessThanOrEqual

from lakehouse.arrowtools import conform
from lakehouse.contracts import CONTRACTS
from lakehouse.contracts.model import SNAPSHOT
from lakehouse.iceberg import TableStore, WriteResult
from lakehouse.readers import ROW_NUMBER
from lakehouse.resources.engine import Engine
from lakehouse.tables import (
    FACT_ORDERS,
    MART_CUSTOMER_ACTIVITY,
    MART_DAILY_SALES,
    QUARANTINE,
    TableDef,
    bronze_table,
    dimension_table,
    silver_table,
)
from lakehouse.transforms import gold
from lakehouse.transforms.bronze import INGEST_DATE
from lakehouse.transforms.silver import (
    OUTCOMES,
    api,
    QUARANTINED,
    ROW_HASH,
    SILVER,
    classify,
    latest_versions,
    outcome_counts,
    quarantine_records,
    quarantine_rows,
    silver_rows,
)

AFFECTED = "lakehouse.affected."  # snapshot property prefix: the dates a write touched


@dataclass
class StepResult:
    table: TableDef
    write: WriteResult | None
    counts: dict[str, int] = field(default_factory=dict)
    affected_dates: list[str] = field(default_factory=list)

    @property
    def snapshot_id(self) -> int | None:
        return self.write.snapshot_id if self.write else None


@dataclass(frozen=True)
class StepContext:
    store: TableStore
    engine: Engine
    run_id: str

    def props(self, asset: str, partition_key: str | None) -> dict[str, str]:
        props = {"dagster.run_id": self.run_id, "dagster.asset_key": asset}
        if partition_key:
            props["dagster.partition_key"] = partition_key
        return props

    def ensure(self, *tables: TableDef) -> None:
        for t in tables:
            self.store.ensure_table(t.identifier, t.schema, t.partition_by)

    def read(self, table: TableDef, where: BooleanExpression = AlwaysTrue(), columns=("*",)) -> pa.Table:
        self.ensure(table)
        return self.store.read(table.identifier, where, tuple(columns))


def _dates(table: pa.Table, column: str) -> set[str]:
    if table.num_rows == 0:
        return set()
    return {d.isoformat() for d in pc.unique(table[column]).to_pylist() if d is not None}


def write_tracked(ctx: StepContext, table: TableDef, data, where, props, date_column: str, new_dates=None):
    """Replace `where` with `data`, recording the dates touched (old and new) in the snapshot.

    `data` is an Arrow table, or a callable giving chunks (then pass `new_dates`).
    """
    old = _dates(ctx.read(table, where, (date_column,)), date_column)
    new = _dates(data, date_column) if new_dates is None else set(new_dates)
    affected = sorted(old | new)
    props = {**props, AFFECTED + date_column: ",".join(affected)}
    return ctx.store.replace_where(table.identifier, data, where, props, evolve=False), affected


def scan(ctx: StepContext, table: TableDef, column: str, value: str):
    """Rows of `table` where `column` == `value`, as a DataFrame read straight from the data files.

    The engine reads the Parquet files itself (no copy through Python); the filter is
    applied again because a file may hold other values.
    """
    ctx.ensure(table)
    where = EqualTo(column, value)
    paths = ctx.store.data_files(table.identifier, where)
    if paths is None:
        return ctx.engine.from_arrow(ctx.store.read(table.identifier, where))
    df = ctx.engine.read_parquet(paths, table.schema)
    if not paths:
        return df
    F, _ = api(df)
    # Readers may add columns from the file paths (hive-style partition folders): keep the table's.
    current = {f.name for f in ctx.store.load(table.identifier).schema().fields}
    df = df.select(*[c for c in df.columns if c in current])
    return df.filter(F.col(column) == F.lit(value).cast("date"))


def affected_dates(ctx: StepContext, table: TableDef, partition_key: str, column: str) -> list[str]:
    """The dates the latest write of `partition_key` to `table` touched.

    Falls back to the dates the partition holds now when that snapshot has been
    expired (dates a rewrite moved rows away from are then no longer known).
    """
    ctx.ensure(table)
    name = AFFECTED + column
    for snapshot in reversed(ctx.store.load(table.identifier).snapshots()):
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        if summary.get("dagster.partition_key") == partition_key and name in summary:
            return [d for d in summary[name].split(",") if d]
    return sorted(_dates(ctx.read(table, EqualTo(INGEST_DATE, partition_key), (column,)), column))


SILVER_DATE_COLUMNS = {"orders": "order_date", "events": "event_date"}


def run_silver(ctx: StepContext, source: str, day: dt.date) -> StepResult:
    """Bronze partition -> silver.<source> + silver.quarantine, with exact accounting."""
    contract = CONTRACTS[source]
    target, key = silver_table(source), day.isoformat()
    ctx.ensure(bronze_table(source), target, QUARANTINE)
    engine = ctx.engine
    bronze = scan(ctx, bronze_table(source), INGEST_DATE, key)
    previous = None
    if contract.history == SNAPSHOT:
        prior = ctx.read(target, LessThan(INGEST_DATE, key), (*contract.keys, ROW_HASH, INGEST_DATE, ROW_NUMBER))
        previous = latest_versions(engine.from_arrow(prior), contract.keys)
    lookups = {}
    for lookup in contract.lookups:
        versions = ctx.read(
            silver_table(lookup.source), LessThanOrEqual(INGEST_DATE, key),
            (lookup.key, *lookup.bring, INGEST_DATE, ROW_NUMBER),
        )
        lookups[lookup.source] = latest_versions(engine.from_arrow(versions), (lookup.key,))

    rows = engine.materialize(classify(bronze, contract, previous, lookups))
    counts_df, labels = outcome_counts(rows, contract)
    counts = {labels[k]: int(v or 0) for k, v in engine.to_arrow(counts_df).to_pylist()[0].items()}
    quarantined = engine.to_arrow(quarantine_rows(rows))
    silver = silver_rows(rows, contract)

    def chunks():
        for chunk in engine.to_chunks(silver):
            yield conform(chunk, target.schema)

    props = ctx.props(f"silver/{source}", key)
    where = EqualTo(INGEST_DATE, key)
    affected: list[str] = []
    if source in SILVER_DATE_COLUMNS:
        column = SILVER_DATE_COLUMNS[source]
        new_dates = [d.isoformat() for d in engine.to_arrow(silver.select(column).distinct())[column].to_pylist() if d]
        write, affected = write_tracked(ctx, target, chunks, where, props, column, new_dates)
    else:
        write = ctx.store.replace_where(target.identifier, chunks, where, props, evolve=False)

    # Every bronze row ends in exactly one place; a mismatch is a bug, never data to publish.
    accounted = sum(counts[o] for o in OUTCOMES)
    if not (counts["rows_in"] == accounted and write.rows == counts[SILVER]
            and quarantined.num_rows == counts[QUARANTINED]):
        raise RuntimeError(f"silver.{source} {key}: row accounting does not add up: {counts}")
    now = dt.datetime.now(dt.timezone.utc)
    records = quarantine_records(quarantined, source, ctx.run_id, now)
    ctx.store.replace_where(
        QUARANTINE.identifier, conform(records, QUARANTINE.schema),
        And(EqualTo("source", source), EqualTo("ingest_date", key)), props, evolve=False,
    )
    return StepResult(target, write, counts, affected)


def run_dimension(ctx: StepContext, source: str) -> StepResult:
    """gold.dim_<x>: the current version of every key; small, rewritten whole."""
    versions = ctx.read(silver_table(source))
    target = dimension_table(source)
    ctx.ensure(target)
    dim = ctx.engine.to_arrow(gold.dimension(ctx.engine.from_arrow(versions), source))
    write = ctx.store.replace_where(
        target.identifier, conform(dim, target.schema), AlwaysTrue(),
        ctx.props(target.identifier.replace(".", "/"), None), evolve=False,
    )
    return StepResult(target, write, {"rows_in": versions.num_rows, "rows_out": dim.num_rows})


def run_fact_orders(ctx: StepContext, day: dt.date) -> StepResult:
    key = day.isoformat()
    ctx.ensure(FACT_ORDERS)
    fact = ctx.engine.materialize(gold.fact_orders(scan(ctx, silver_table("orders"), INGEST_DATE, key)))
    F, _ = api(fact)
    summary = ctx.engine.to_arrow(fact.agg(
        F.count(F.lit(1)).cast("bigint").alias("rows"),
        F.sum(F.when(~F.col("customer_known"), 1).otherwise(0)).cast("bigint").alias("unknown_customer"),
        F.sum(F.when(~F.col("product_known"), 1).otherwise(0)).cast("bigint").alias("unknown_product"),
    )).to_pylist()[0]
    dates = ctx.engine.to_arrow(fact.select("order_date").distinct())["order_date"].to_pylist()

    def chunks():
        for chunk in ctx.engine.to_chunks(fact):
            yield conform(chunk, FACT_ORDERS.schema)

    write, affected = write_tracked(
        ctx, FACT_ORDERS, chunks, EqualTo(INGEST_DATE, key), ctx.props("gold/fact_orders", key), "order_date",
        [d.isoformat() for d in dates if d],
    )
    counts = {"rows_in": int(summary["rows"] or 0), "rows_out": write.rows,
              "unknown_customer": int(summary["unknown_customer"] or 0),
              "unknown_product": int(summary["unknown_product"] or 0)}
    return StepResult(FACT_ORDERS, write, counts, affected)


def run_daily_sales(ctx: StepContext, day: dt.date) -> StepResult:
    """Recompute the days whose orders the ingest partition touched; nothing else."""
    key = day.isoformat()
    dates = affected_dates(ctx, FACT_ORDERS, key, "order_date")
    ctx.ensure(MART_DAILY_SALES)
    if not dates:
        return StepResult(MART_DAILY_SALES, None, {"rows_in": 0, "rows_out": 0}, [])
    fact = ctx.read(FACT_ORDERS, In("order_date", dates), ("order_date", "channel", "region", "category", "qty", "sales_amount"))
    mart = ctx.engine.to_arrow(gold.daily_sales(ctx.engine.from_arrow(fact)))
    write = ctx.store.replace_where(
        MART_DAILY_SALES.identifier, conform(mart, MART_DAILY_SALES.schema), In("order_date", dates),
        ctx.props("gold/mart_daily_sales", key), evolve=False,
    )
    return StepResult(MART_DAILY_SALES, write, {"rows_in": fact.num_rows, "rows_out": mart.num_rows}, dates)


def run_customer_activity(ctx: StepContext, day: dt.date) -> StepResult:
    key = day.isoformat()
    days = sorted(
        set(affected_dates(ctx, silver_table("events"), key, "event_date"))
        | set(affected_dates(ctx, FACT_ORDERS, key, "order_date"))
    )
    ctx.ensure(MART_CUSTOMER_ACTIVITY)
    if not days:
        return StepResult(MART_CUSTOMER_ACTIVITY, None, {"rows_in": 0, "rows_out": 0}, [])
    events = ctx.read(silver_table("events"), In("event_date", days), ("user_id", "event_date", "event_type"))
    fact = ctx.read(FACT_ORDERS, In("order_date", days), ("customer_id", "order_date", "qty", "sales_amount"))
    activity = ctx.engine.to_arrow(
        gold.customer_activity(ctx.engine.from_arrow(events), ctx.engine.from_arrow(fact))
    )
    write = ctx.store.replace_where(
        MART_CUSTOMER_ACTIVITY.identifier, conform(activity, MART_CUSTOMER_ACTIVITY.schema),
        In("activity_date", days), ctx.props("gold/mart_customer_activity", key), evolve=False,
    )
    counts = {"rows_in": events.num_rows + fact.num_rows, "rows_out": activity.num_rows}
    return StepResult(MART_CUSTOMER_ACTIVITY, write, counts, days)

