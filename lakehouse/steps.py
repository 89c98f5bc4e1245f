"""One function per silver and gold step: read from Iceberg, run the pure transform, write.

The Dagster assets call these, and so can a Glue/EMR job, so a step's I/O lives in
one place whatever runs it. Reads are always filtered (by ingest date, or by the
dates a partition touched); only the small dimensions are read whole.

Every write is write-audit-publish: the data goes to an audit branch, the asset's
checks run against that branch, and main is fast-forwarded only when no ERROR check
failed (see `audited_write`). Every evaluation is appended to ops.dq_results.

Late data: an order ingested on day D may be for any earlier order_date. Every write
of a date-partitioned table records, in its snapshot properties, the dates it
touched (before and after), so the marts recompute exactly those days.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import AlwaysTrue, And, BooleanExpression, EqualTo, In, LessThan, LessThanOrEqual

from lakehouse.arrowtools import conform
from lakehouse.checks import evaluate as ev
from lakehouse.checks.catalog import specs_for
from lakehouse.checks.model import CheckOutcome
from lakehouse.contracts import CONTRACTS
from lakehouse.contracts.model import FLAG, SNAPSHOT
from lakehouse.iceberg import TableStore, WriteResult
from lakehouse.readers import ROW_NUMBER
from lakehouse.resources.engine import Engine
from lakehouse.tables import (
    DQ_RESULTS,
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
    QUARANTINED,
    ROW_HASH,
    SILVER,
    api,
    classify,
    latest_versions,
    outcome_counts,
    quarantine_records,
    quarantine_rows,
    silver_rows,
)

AFFECTED = "lakehouse.affected."  # snapshot property prefix: the dates a write touched
COLUMNS = "lakehouse.columns"  # snapshot property: the columns of what was written (schema drift)
# A partition that touched no dates still runs, as a no-op write, so every check reports.
NO_DATES = ["1900-01-01"]


@dataclass
class StepResult:
    table: TableDef
    write: WriteResult | None
    counts: dict[str, int] = field(default_factory=dict)
    affected_dates: list[str] = field(default_factory=list)

    @property
    def checks(self) -> list[CheckOutcome]:
        return self.write.audit if self.write else []

    @property
    def snapshot_id(self) -> int | None:
        return self.write.snapshot_id if self.write else None

    @property
    def published(self) -> bool:
        return self.write is None or self.write.published

    @property
    def branch(self) -> str | None:
        return self.write.branch if self.write else None



@dataclass(frozen=True)
class StepContext:
    store: TableStore
    engine: Engine | None  # None for steps that need no engine (bronze)
    run_id: str

    def props(self, asset: str, partition_key: str | None) -> dict[str, str]:
        props = {"dagster.run_id": self.run_id, "dagster.asset_key": asset}
        if partition_key:
            props["dagster.partition_key"] = partition_key
        return props

    def ensure(self, *tables: TableDef) -> None:
        for t in tables:
            self.store.ensure_table(t.identifier, t.schema, t.partition_by)

    def read(self, table: TableDef, where: BooleanExpression = AlwaysTrue(), columns=("*",), snapshot_id=None) -> pa.Table:
        self.ensure(table)
        return self.store.read(table.identifier, where, tuple(columns), snapshot_id)


def _dates(table: pa.Table, column: str) -> set[str]:
    if table.num_rows == 0:
        return set()
    return {d.isoformat() for d in pc.unique(table[column]).to_pylist() if d is not None}


def branch_name(asset: str, partition_key: str | None, run_id: str) -> str:
    """audit-<asset>-<partition>-<run>: findable by asset and partition, unique per run."""
    return re.sub(r"[^a-z0-9_-]", "-", f"audit-{asset}-{partition_key or 'all'}-{run_id[:8]}".lower())


def _previous(ctx: StepContext, table: TableDef, asset: str, prop: str, partition_key: str | None = None):
    """The property `prop` of the newest published snapshot written by `asset` (and partition)."""
    for snapshot in ctx.store.main_history(table.identifier):
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        if summary.get("dagster.asset_key") != asset or prop not in summary:
            continue
        if partition_key is None or summary.get("dagster.partition_key") == partition_key:
            return summary[prop]
    return None


def audited_write(ctx, table: TableDef, asset: str, partition_key, data, where, props, columns: dict, audit,
                  evolve: bool = False) -> WriteResult:
    """Write to an audit branch, run `audit(head_snapshot_id, drift_outcome)`, publish if it passes.

    Adds the schema-drift check (columns now vs the previous materialization), records
    every outcome in ops.dq_results, and after a publish drops the audit branches an
    earlier failed run left for this asset and partition.
    """
    previous = _previous(ctx, table, asset, COLUMNS)
    drift_spec = ev.index(specs_for(asset))["schema_drift"]
    drift = ev.schema_drift(drift_spec, json.loads(previous) if previous else None, columns)
    props = {**props, COLUMNS: json.dumps(columns, sort_keys=True)}
    branch = branch_name(asset, partition_key, ctx.run_id)
    write = ctx.store.audited_replace(
        table.identifier, data, where, props, branch, lambda t, head: [drift, *audit(head)], evolve=evolve
    )
    if write.published:
        ctx.store.remove_branches(table.identifier, branch.rsplit("-", 1)[0] + "-")
    record_results(ctx, asset, partition_key, write)
    return write


def record_results(ctx: StepContext, asset: str, partition_key: str | None, write: WriteResult) -> None:
    """Append one ops.dq_results row per check evaluation of this write."""
    ctx.ensure(DQ_RESULTS)
    now = dt.datetime.now(dt.timezone.utc)
    rows = [
        {
            "asset": asset, "partition": partition_key, "check_name": o.name, "passed": o.passed,
            "severity": o.severity, "observed": None if o.observed is None else float(o.observed),
            "threshold": None if o.spec.threshold is None else float(o.spec.threshold),
            "message": o.message, "published": write.published, "branch": write.branch,
            "snapshot_id": write.snapshot_id, "run_id": ctx.run_id, "evaluated_at": now,
        }
        for o in write.audit
    ]
    if rows:
        ctx.store.load(DQ_RESULTS.identifier).append(pa.Table.from_pylist(rows, schema=DQ_RESULTS.schema))


def affected_dates(ctx: StepContext, table: TableDef, partition_key: str, column: str) -> list[str]:
    """The dates the latest published write of `partition_key` to `table` touched.

    Falls back to the dates the partition holds now when that snapshot has been
    expired (dates a rewrite moved rows away from are then no longer known).
    """
    ctx.ensure(table)
    name = AFFECTED + column
    for snapshot in ctx.store.main_history(table.identifier):
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        if summary.get("dagster.partition_key") == partition_key and name in summary:
            return [d for d in summary[name].split(",") if d]
    return sorted(_dates(ctx.read(table, EqualTo(INGEST_DATE, partition_key), (column,)), column))


def _tracked(ctx: StepContext, table: TableDef, where, props, column: str, new_dates) -> tuple[dict, list[str]]:
    """Snapshot properties recording the dates a write touches (old and new); and those dates."""
    old = _dates(ctx.read(table, where, (column,)), column)
    affected = sorted(old | set(new_dates))
    return {**props, AFFECTED + column: ",".join(affected)}, affected


def scan(ctx: StepContext, table: TableDef, column: str, value: str):
    """Rows of `table` where `column` == `value`, as a DataFrame read straight from the data files.

    The engine reads the Parquet files itself (no copy through Python); the filter is
    applied again because a file may hold other values.
    """
    ctx.ensure(table)
    where = EqualTo(column, value)
    paths = ctx.store.data_files(table.identifier, where)
    if paths is None or not all(p.startswith("file://") for p in paths):
        # Delete files, or object storage: PyIceberg's reader knows the table and the S3
        # endpoint and credentials; the engines here would need extensions from the internet.
        return ctx.engine.from_arrow(ctx.store.read(table.identifier, where))
    df = ctx.engine.read_parquet(paths, table.schema)
    if not paths:
        return df
    F, _ = api(df)
    # Readers may add columns from the file paths (hive-style partition folders): keep the table's.
    current = {f.name for f in ctx.store.load(table.identifier).schema().fields}
    df = df.select(*[c for c in df.columns if c in current])
    return df.filter(F.col(column) == F.lit(value).cast("date"))


def _chunks(engine: Engine, df, schema: pa.Schema):
    def produce():
        for chunk in engine.to_chunks(df):
            yield conform(chunk, schema)
    return produce


def _columns(table: TableDef) -> dict[str, str]:
    return {f.name: str(f.type) for f in table.schema}


SILVER_DATE_COLUMNS = {"orders": "order_date", "events": "event_date"}


def run_silver(ctx: StepContext, source: str, day: dt.date) -> StepResult:
    """Bronze partition -> silver.<source> (audited) + silver.quarantine, with exact accounting."""
    contract = CONTRACTS[source]
    target, key, asset = silver_table(source), day.isoformat(), f"silver/{source}"
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

    # The quarantine is evidence, written whatever the audit decides.
    records = quarantine_records(quarantined, source, ctx.run_id, dt.datetime.now(dt.timezone.utc))
    props = ctx.props(asset, key)
    ctx.store.replace_where(
        QUARANTINE.identifier, conform(records, QUARANTINE.schema),
        And(EqualTo("source", source), EqualTo("ingest_date", key)), props, evolve=False,
    )

    where = EqualTo(INGEST_DATE, key)
    affected: list[str] = []
    if source in SILVER_DATE_COLUMNS:
        column = SILVER_DATE_COLUMNS[source]
        new = [d.isoformat() for d in engine.to_arrow(silver.select(column).distinct())[column].to_pylist() if d]
        props, affected = _tracked(ctx, target, where, props, column, new)

    specs = ev.index(specs_for(asset))
    total = counts["rows_in"]

    def audit(head: int) -> list[CheckOutcome]:
        written = ctx.read(target, where, contract.keys, snapshot_id=head)
        accounted = sum(counts[o] for o in OUTCOMES)
        out = [
            ev.equal(specs["accounting"], bronze=total, accounted=accounted),
            ev.null_keys(specs["keys_not_null"], written, contract.keys),
            ev.unique_keys(specs["keys_unique"], written, contract.keys),
            # A snapshot day with no changed rows is normal: count the rows that matched too.
            ev.non_empty(specs["non_empty"], written.num_rows + counts["unchanged"]),
            ev.counted(specs["quarantine_share"], counts[QUARANTINED], total, ev.sample_quarantined(quarantined)),
            ev.counted(specs["duplicates"], counts["duplicate"], total),
        ]
        for rule in contract.quarantine_rules():
            out.append(ev.counted(specs[f"rule:{rule}"], counts[f"rule:{rule}"], total,
                                  ev.sample_quarantined(quarantined, rule)))
        for name, action in contract.rules():
            if action == FLAG:
                out.append(ev.counted(specs[f"flag:{name}"], counts[f"flag:{name}"], total))
        for lookup in contract.lookups:
            out.append(ev.counted(specs[f"references:{lookup.source}"], counts[f"flag:{lookup.flag}"], counts[SILVER]))
        return out

    write = audited_write(ctx, target, asset, key, _chunks(engine, silver, target.schema), where, props,
                          _columns(target), audit)
    if write.published and write.rows != counts[SILVER]:
        raise RuntimeError(f"silver.{source} {key}: wrote {write.rows} rows, expected {counts[SILVER]}")
    return StepResult(target, write, counts, affected)


def run_dimension(ctx: StepContext, source: str) -> StepResult:
    """gold.dim_<x>: the current version of every key; small, rewritten whole."""
    versions = ctx.read(silver_table(source))
    target = dimension_table(source)
    asset = target.identifier.replace(".", "/")
    ctx.ensure(target, FACT_ORDERS)
    dim = ctx.engine.to_arrow(gold.dimension(ctx.engine.from_arrow(versions), source))
    key = CONTRACTS[source].keys[0]
    known = "customer_known" if source == "customers" else "product_known"
    specs = ev.index(specs_for(asset))

    def audit(head: int) -> list[CheckOutcome]:
        written = ctx.read(target, columns=(key,), snapshot_id=head)
        facts = ctx.read(FACT_ORDERS, EqualTo(known, True), (key,))
        missing = pc.unique(facts[key]).to_pylist() if facts.num_rows else []
        present = set(written[key].to_pylist())
        missing = [k for k in missing if k not in present]
        return [
            ev.unique_keys(specs["keys_unique"], written, (key,)),
            CheckOutcome(specs["covers_facts"], not missing, len(missing),
                            "ok" if not missing else f"{len(missing)} known {key}s of the fact are not in the dimension",
                            tuple({key: k} for k in missing[: ev.SAMPLE])),
            ev.non_empty(specs["non_empty"], written.num_rows),
        ]

    write = audited_write(ctx, target, asset, None, conform(dim, target.schema), AlwaysTrue(),
                          ctx.props(asset, None), _columns(target), audit)
    return StepResult(target, write, {"rows_in": versions.num_rows, "rows_out": dim.num_rows}, [])


def run_fact_orders(ctx: StepContext, day: dt.date) -> StepResult:
    key, asset = day.isoformat(), "gold/fact_orders"
    ctx.ensure(FACT_ORDERS)
    fact = ctx.engine.materialize(gold.fact_orders(scan(ctx, silver_table("orders"), INGEST_DATE, key)))
    F, _ = api(fact)
    summary = ctx.engine.to_arrow(fact.agg(
        F.count(F.lit(1)).cast("bigint").alias("rows"),
        F.sum(F.when(~F.col("customer_known"), 1).otherwise(0)).cast("bigint").alias("unknown_customer"),
        F.sum(F.when(~F.col("product_known"), 1).otherwise(0)).cast("bigint").alias("unknown_product"),
    )).to_pylist()[0]
    dates = [d.isoformat() for d in ctx.engine.to_arrow(fact.select("order_date").distinct())["order_date"].to_pylist() if d]
    where = EqualTo(INGEST_DATE, key)
    props, affected = _tracked(ctx, FACT_ORDERS, where, ctx.props(asset, key), "order_date", dates)
    specs = ev.index(specs_for(asset))
    silver_rows_now = ctx.store.read(silver_table("orders").identifier, where, ("order_id",)).num_rows

    def audit(head: int) -> list[CheckOutcome]:
        written = ctx.read(FACT_ORDERS, where, ("order_id",), snapshot_id=head)
        return [
            ev.equal(specs["matches_silver"], fact=written.num_rows, silver=silver_rows_now),
            ev.unique_keys(specs["keys_unique"], written, ("order_id",)),
            ev.non_empty(specs["non_empty"], written.num_rows),
        ]

    write = audited_write(ctx, FACT_ORDERS, asset, key, _chunks(ctx.engine, fact, FACT_ORDERS.schema), where, props,
                          _columns(FACT_ORDERS), audit)
    counts = {"rows_in": int(summary["rows"] or 0), "rows_out": write.rows,
              "unknown_customer": int(summary["unknown_customer"] or 0),
              "unknown_product": int(summary["unknown_product"] or 0)}
    return StepResult(FACT_ORDERS, write, counts, affected)


def _sum(table: pa.Table, column: str):
    return pc.sum(table[column]).as_py() if table.num_rows else 0


def run_daily_sales(ctx: StepContext, day: dt.date) -> StepResult:
    """Recompute the days whose orders the ingest partition touched; nothing else."""
    key, asset = day.isoformat(), "gold/mart_daily_sales"
    dates = affected_dates(ctx, FACT_ORDERS, key, "order_date")
    ctx.ensure(MART_DAILY_SALES)
    where = In("order_date", dates or NO_DATES)
    fact = ctx.read(FACT_ORDERS, where, ("order_date", "channel", "region", "category", "qty", "sales_amount",
                                         INGEST_DATE))
    mart = ctx.engine.to_arrow(gold.daily_sales(ctx.engine.from_arrow(fact.drop_columns([INGEST_DATE]))))
    specs = ev.index(specs_for(asset))

    def audit(head: int) -> list[CheckOutcome]:
        written = ctx.read(MART_DAILY_SALES, where, ("orders", "sales"), snapshot_id=head)
        # Silver of the ingest dates the fact holds: a run for another ingest date may have
        # published silver and not yet the fact (runs of different days run concurrently).
        loaded = And(where, In(INGEST_DATE, sorted(_dates(fact, INGEST_DATE)) or NO_DATES))
        silver = ctx.read(silver_table("orders"), loaded, ("qty", "unit_price"))
        recomputed = sum((q * p for q, p in zip(silver["qty"].to_pylist(), silver["unit_price"].to_pylist())), start=0)
        return [
            ev.matching(specs["totals_match"],
                        sales={"mart": _sum(written, "sales"), "fact": _sum(fact, "sales_amount"), "silver": recomputed},
                        orders={"mart": _sum(written, "orders"), "fact": fact.num_rows}),
            ev.non_empty(specs["non_empty"], written.num_rows),
        ]

    write = audited_write(ctx, MART_DAILY_SALES, asset, key, conform(mart, MART_DAILY_SALES.schema), where,
                          ctx.props(asset, key), _columns(MART_DAILY_SALES), audit)
    return StepResult(MART_DAILY_SALES, write, {"rows_in": fact.num_rows, "rows_out": mart.num_rows}, dates)


def run_customer_activity(ctx: StepContext, day: dt.date) -> StepResult:
    key, asset = day.isoformat(), "gold/mart_customer_activity"
    days = sorted(
        set(affected_dates(ctx, silver_table("events"), key, "event_date"))
        | set(affected_dates(ctx, FACT_ORDERS, key, "order_date"))
    )
    ctx.ensure(MART_CUSTOMER_ACTIVITY)
    events = ctx.read(silver_table("events"), In("event_date", days or NO_DATES), ("user_id", "event_date", "event_type"))
    fact = ctx.read(FACT_ORDERS, In("order_date", days or NO_DATES), ("customer_id", "order_date", "qty", "sales_amount"))
    activity = ctx.engine.to_arrow(
        gold.customer_activity(ctx.engine.from_arrow(events), ctx.engine.from_arrow(fact))
    )
    where = In("activity_date", days or NO_DATES)
    specs = ev.index(specs_for(asset))

    def audit(head: int) -> list[CheckOutcome]:
        written = ctx.read(MART_CUSTOMER_ACTIVITY, where, ("events", "orders", "sales"), snapshot_id=head)
        return [
            ev.matching(specs["totals_match"],
                        sales={"mart": _sum(written, "sales"), "fact": _sum(fact, "sales_amount")},
                        events={"mart": _sum(written, "events"), "silver": events.num_rows},
                        orders={"mart": _sum(written, "orders"), "fact": fact.num_rows}),
            ev.non_empty(specs["non_empty"], written.num_rows),
        ]

    write = audited_write(ctx, MART_CUSTOMER_ACTIVITY, asset, key, conform(activity, MART_CUSTOMER_ACTIVITY.schema),
                          where, ctx.props(asset, key), _columns(MART_CUSTOMER_ACTIVITY), audit)
    counts = {"rows_in": events.num_rows + fact.num_rows, "rows_out": activity.num_rows}
    return StepResult(MART_CUSTOMER_ACTIVITY, write, counts, days)
