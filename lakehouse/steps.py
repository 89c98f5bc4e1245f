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

Ranges: every partitioned step takes one day or a contiguous range of days (a
backfill run). A range is read, transformed and written as one batch, in one engine
session and one Iceberg commit per table; the checks are still evaluated per day.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    LessThan,
    LessThanOrEqual,
    Not,
    NotNull,
    Or,
)

from lakehouse.accounting import UNCHANGED_PROP, accounting
from lakehouse.arrowtools import conform, split_by_day
from lakehouse.checks import evaluate as ev
from lakehouse.checks.catalog import specs_for
from lakehouse.checks.model import CheckOutcome
from lakehouse.contracts import CONTRACTS
from lakehouse.contracts.model import FLAG, SNAPSHOT
from lakehouse.iceberg import TableStore, WriteResult
from lakehouse.partitions import Days, covered, day_keys, label, partition_props
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
    DUPLICATE,
    QUARANTINED,
    RECORD_KEY,
    ROW_HASH,
    RULES,
    SILVER,
    SUPERSEDED,
    UNCHANGED,
    api,
    classify,
    latest_versions,
    outcome_counts,
    quarantine_records,
    quarantine_rows,
    record_keys,
    stale_enrichment,
    silver_rows,
)

AFFECTED = "lakehouse.affected."  # snapshot property prefix: the dates a write touched
# Snapshot property of a fact write: the silver orders snapshot it was built from, so a mart
# audits against that silver and not one a later silver write has moved on since.
BUILT_FROM_SILVER = "lakehouse.built-from.silver-orders"
COLUMNS = "lakehouse.columns"  # snapshot property: the columns of what was written (schema drift)
# A partition that touched no dates still runs, as a no-op write, so every check reports.
NO_DATES = ["1900-01-01"]


@dataclass
class StepResult:
    table: TableDef
    write: WriteResult | None
    counts: dict[str, int] = field(default_factory=dict)
    affected_dates: list[str] = field(default_factory=list)
    by_day: dict[str, dict[str, int]] = field(default_factory=dict)  # per-partition counts of a range run

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

    def props(self, asset: str, keys: list[str] | None) -> dict[str, str]:
        return {"dagster.run_id": self.run_id, "dagster.asset_key": asset, **partition_props(keys)}

    def ensure(self, *tables: TableDef) -> None:
        for t in tables:
            self.store.ensure_table(t.identifier, t.schema, t.partition_by)

    def read(self, table: TableDef, where: BooleanExpression = AlwaysTrue(), columns=("*",), snapshot_id=None) -> pa.Table:
        self.ensure(table)
        return self.store.read(table.identifier, where, tuple(columns), snapshot_id)


def within(column: str, keys: list[str]) -> BooleanExpression:
    """Rows whose date `column` is one of the contiguous days `keys`."""
    return EqualTo(column, keys[0]) if len(keys) == 1 else And(
        GreaterThanOrEqual(column, keys[0]), LessThanOrEqual(column, keys[-1]))


def keyed(column: str, values: list[str]) -> BooleanExpression:
    """Rows whose `column` is one of `values`, for a delete that may also match on other columns.

    PyIceberg's delete keeps every row with a null in a column its filter names without an
    IsNull/NotNull test on it (so `Or(day, In(key))` would keep a keyless row of that day):
    the NotNull makes such rows fall to the other branch.
    """
    return And(NotNull(column), In(column, values))


def _dates(table: pa.Table, column: str) -> set[str]:
    if table.num_rows == 0:
        return set()
    return {d.isoformat() for d in pc.unique(table[column]).to_pylist() if d is not None}


def branch_name(asset: str, keys: list[str] | None, run_id: str) -> str:
    """audit-<asset>-<partition or range>-<run>: findable by asset and partitions, unique per run."""
    part = label(keys) if keys else "all"
    return re.sub(r"[^a-z0-9_-]", "-", f"audit-{asset}-{part}-{run_id[:8]}".lower())


def _writes(ctx: StepContext, table: TableDef, asset: str, start: int | None = None):
    """Snapshot properties of the published writes of `asset` to `table`, newest first (from `start` back)."""
    for snapshot in ctx.store.main_history(table.identifier, start):
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        if summary.get("dagster.asset_key") == asset:
            yield summary


def _previous(ctx: StepContext, table: TableDef, asset: str, prop: str):
    """The property `prop` of the newest published snapshot written by `asset`."""
    return next((summary[prop] for summary in _writes(ctx, table, asset) if prop in summary), None)


def audited_write(ctx, table: TableDef, asset: str, keys: list[str] | None, data, where, props, columns: dict,
                  audit, evolve: bool = False) -> WriteResult:
    """Write to an audit branch, run `audit(head_snapshot_id, drift_outcome)`, publish if it passes.

    Adds the schema-drift check (columns now vs the previous materialization), records
    every outcome in ops.dq_results, and after a publish drops the audit branches an
    earlier failed run left for this asset and partition.
    """
    previous = _previous(ctx, table, asset, COLUMNS)
    drift_spec = ev.index(specs_for(asset))["schema_drift"]
    drift = ev.schema_drift(drift_spec, json.loads(previous) if previous else None, columns)
    props = {**props, COLUMNS: json.dumps(columns, sort_keys=True)}
    branch = branch_name(asset, keys, ctx.run_id)
    write = ctx.store.audited_replace(
        table.identifier, data, where, props, branch, lambda t, head: [drift, *audit(head)], evolve=evolve
    )
    if write.published:
        ctx.store.remove_branches(table.identifier, branch.rsplit("-", 1)[0] + "-")
    record_results(ctx, asset, keys, write)
    return write


def record_results(ctx: StepContext, asset: str, keys: list[str] | None, write: WriteResult) -> None:
    """Append one ops.dq_results row per check evaluation of this write.

    A check evaluated per day in a range run has a row per day; a check of the whole
    write (schema drift, the marts) is recorded against the range, as `first..last`.
    """
    ctx.ensure(DQ_RESULTS)
    now = dt.datetime.now(dt.timezone.utc)
    rows = [
        {
            "asset": asset, "partition": o.partition or (label(keys) if keys else None), "check_name": o.name, "passed": o.passed,
            "severity": o.severity, "observed": None if o.observed is None else float(o.observed),
            "threshold": None if o.spec.threshold is None else float(o.spec.threshold),
            "message": o.message, "published": write.published, "branch": write.branch,
            "snapshot_id": write.snapshot_id, "run_id": ctx.run_id, "evaluated_at": now,
        }
        for o in write.audit
    ]
    if rows:
        ctx.store.load(DQ_RESULTS.identifier).append(pa.Table.from_pylist(rows, schema=DQ_RESULTS.schema))


def affected_dates(ctx: StepContext, table: TableDef, keys: list[str], column: str) -> list[str]:
    """The dates the latest published writes of the partitions `keys` to `table` touched.

    Walks the history newest first until every partition is accounted for; a range
    write accounts for all the days it covered at once. Falls back to the dates a
    partition holds now when its snapshot has been expired (dates a rewrite moved rows
    away from are then no longer known).
    """
    ctx.ensure(table)
    name, waiting, dates = AFFECTED + column, set(keys), set()
    for snapshot in ctx.store.main_history(table.identifier):
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        span = covered(summary)
        if span is None or name not in summary:
            continue
        hit = {k for k in waiting if span[0] <= k <= span[1]}
        if hit:
            dates |= {d for d in summary[name].split(",") if d}
            waiting -= hit
        if not waiting:
            break
    if waiting:
        dates |= _dates(ctx.read(table, In(INGEST_DATE, sorted(waiting)), (column,)), column)  # not contiguous
    return sorted(dates)


def _tracked(ctx: StepContext, table: TableDef, where, props, column: str, new_dates) -> tuple[dict, list[str]]:
    """Snapshot properties recording the dates a write touches (old and new); and those dates."""
    old = _dates(ctx.read(table, where, (column,)), column)
    affected = sorted(old | set(new_dates))
    return {**props, AFFECTED + column: ",".join(affected)}, affected


_COMPARISONS = {EqualTo: "__eq__", LessThan: "__lt__", LessThanOrEqual: "__le__", GreaterThan: "__gt__",
                GreaterThanOrEqual: "__ge__"}


def _condition(F, where: BooleanExpression, types: dict[str, pa.DataType]):
    """`where` (the few PyIceberg predicates the steps use) as an engine column; None if unknown."""
    if isinstance(where, AlwaysTrue):
        return F.lit(True)
    if isinstance(where, (And, Or)):
        left, right = _condition(F, where.left, types), _condition(F, where.right, types)
        if left is None or right is None:
            return None
        return left & right if isinstance(where, And) else left | right
    if isinstance(where, Not):
        inner = _condition(F, where.child, types)
        return None if inner is None else ~inner

    def literal(value):
        return F.lit(value).cast("date") if pa.types.is_date(types.get(where.term.name, pa.null())) else F.lit(value)

    if type(where) in _COMPARISONS:
        return getattr(F.col(where.term.name), _COMPARISONS[type(where)])(literal(where.literal.value))
    if isinstance(where, NotNull):
        return F.col(where.term.name).isNotNull()
    if isinstance(where, In):
        return F.col(where.term.name).isin(*[literal(v.value) for v in sorted(where.literals, key=lambda v: v.value)])
    return None


def frame(ctx: StepContext, table: TableDef, where: BooleanExpression = AlwaysTrue(), columns=("*",),
          snapshot_id: int | None = None):
    """Rows of `table` matching `where` (main, or `snapshot_id`), as a DataFrame the engine reads itself.

    No copy through Python, and on a cluster no pass through the driver: Spark reads the
    files from S3 in its executors. The filter is applied again because a file may hold
    other rows. Files the engine cannot read (S3 from DuckDB, or a laptop's Spark), delete
    files, or a filter we cannot translate: PyIceberg reads them, with the table's S3
    endpoint and credentials.
    """
    ctx.ensure(table)
    paths = ctx.store.data_files(table.identifier, where, snapshot_id)
    if paths == []:
        return _select(ctx.engine.read_parquet([], table.schema), columns)
    if paths and ctx.engine.can_read(paths):
        df = ctx.engine.read_parquet(paths, table.schema)
        condition = _condition(api(df)[0], where, {f.name: f.type for f in table.schema})
        if condition is not None:
            # Readers may add columns from the file paths (hive-style partition folders): keep the table's.
            current = {f.name for f in ctx.store.load(table.identifier).schema().fields}
            return _select(df.select(*[c for c in df.columns if c in current]).filter(condition), columns)
    return ctx.engine.from_arrow(ctx.store.read(table.identifier, where, tuple(columns), snapshot_id))


def _select(df, columns):
    return df if tuple(columns) == ("*",) else df.select(*columns)


def _chunks(engine: Engine, df, schema: pa.Schema):
    def produce():
        for chunk in engine.to_chunks(df):
            yield conform(chunk, schema)
    return produce


def _columns(table: TableDef) -> dict[str, str]:
    return {f.name: str(f.type) for f in table.schema}


def per_day(keys: list[str], outcomes_of) -> list[CheckOutcome]:
    """`outcomes_of(key)` for every day of the write, each outcome tagged with its day."""
    return [replace(o, partition=key) for key in keys for o in outcomes_of(key)]


def _by_day(engine: Engine, counts_df, names: dict[str, str], keys: list[str]) -> dict[str, dict[str, int]]:
    """Counts with one row per ingest date -> {day: {name: count}}; zeros for a day with no rows."""
    by_day = {k: dict.fromkeys(names.values(), 0) for k in keys}
    for row in engine.to_arrow(counts_df).to_pylist():
        day = row.pop(INGEST_DATE).isoformat()
        by_day[day] = {names[k]: int(v or 0) for k, v in row.items()}
    return by_day


def _total(by_day: dict[str, dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in by_day.values():
        for name, n in counts.items():
            total[name] = total.get(name, 0) + n
    return total


def run_silver(ctx: StepContext, source: str, days: Days) -> StepResult:
    """Bronze partitions -> silver.<source> (audited) + silver.quarantine, with exact accounting per day.

    Transactional sources (orders, events) are unique on their key across the table: the
    step recomputes every key the batch holds (or held, or whose enrichment went stale)
    from all of bronze, so the rows of other days with those keys are rewritten too.
    Snapshot sources recompute from the batch's first day to the last landed day, so a day
    landing out of order re-derives the changes of the days after it.
    """
    contract = CONTRACTS[source]
    keys = day_keys(days)
    target, asset, bronze_def = silver_table(source), f"silver/{source}", bronze_table(source)
    ctx.ensure(bronze_def, target, QUARANTINE)
    engine = ctx.engine
    lookups = {
        lookup.source: frame(ctx, silver_table(lookup.source), AlwaysTrue(),
                             (lookup.key, *lookup.bring, INGEST_DATE, ROW_NUMBER))
        for lookup in contract.lookups
    }
    if contract.history == SNAPSHOT:
        span = _snapshot_span(ctx, bronze_def, keys)
        previous = latest_versions(
            frame(ctx, target, LessThan(INGEST_DATE, span[0]), (*contract.keys, ROW_HASH, INGEST_DATE, ROW_NUMBER)),
            contract.keys)
        rows = engine.materialize(classify(frame(ctx, bronze_def, within(INGEST_DATE, span)), contract, previous,
                                           lookups, engine.cut))
        where = within(INGEST_DATE, span)
        set_aside_where = within("ingest_date", span)
        recomputed: list[str] = []
    else:
        key = _single_key(contract)
        batch = within(INGEST_DATE, keys)
        bronze = frame(ctx, bronze_def, batch)
        recomputed = sorted(_keys_to_recompute(ctx, contract, keys, bronze, lookups))
        wanted = engine.from_arrow(pa.table({RECORD_KEY: pa.array(recomputed, pa.string())}))
        others = engine.materialize(
            record_keys(frame(ctx, bronze_def, Not(batch)), contract).join(wanted, on=RECORD_KEY, how="inner"))
        rows = engine.materialize(classify(_union(bronze, others.drop(RECORD_KEY)), contract, None, lookups,
                                           engine.cut))
        # Every row of a recomputed key is classified again, whatever day it landed on, and
        # replaces that key's earlier rows in silver and in the quarantine. The batch's days
        # are replaced whole; other days only for the keys that have rows there.
        elsewhere = _elsewhere(ctx, contract, keys, wanted, others)
        where = Or(batch, keyed(key, elsewhere)) if elsewhere else batch
        set_aside_where = Or(within("ingest_date", keys), keyed("record_key", elsewhere)) if elsewhere else within(
            "ingest_date", keys)
        span = keys

    F, _ = api(rows)
    in_batch = rows.filter(_condition(F, within(INGEST_DATE, keys), {INGEST_DATE: pa.date32()}))
    by_day = _by_day(engine, *outcome_counts(in_batch, contract), keys)
    counts = _total(by_day)
    set_aside = engine.to_arrow(quarantine_rows(rows))
    silver = silver_rows(rows, contract)

    # The quarantine is evidence, written whatever the audit decides.
    records = quarantine_records(set_aside, source, ctx.run_id, dt.datetime.now(dt.timezone.utc))
    props = ctx.props(asset, keys)
    ctx.store.replace_where(
        QUARANTINE.identifier, conform(records, QUARANTINE.schema),
        And(EqualTo("source", source), set_aside_where), props,
    )

    written_days = [d.isoformat() for d in engine.to_arrow(silver.select(INGEST_DATE).distinct())[INGEST_DATE].to_pylist()]
    props, touched = _tracked(ctx, target, where, props, INGEST_DATE,
                              set(written_days) | set(span) | _dates(set_aside, INGEST_DATE))
    affected: list[str] = []
    if contract.partition:  # the dates the batch's rows are stored under, for the marts downstream
        column = contract.partition.column
        new = [d.isoformat() for d in engine.to_arrow(silver.select(column).distinct())[column].to_pylist() if d]
        props, affected = _tracked(ctx, target, where, props, column, new)
    unchanged = {day: c[UNCHANGED] for day, c in _by_day(engine, *outcome_counts(rows, contract), span).items()}
    if contract.history == SNAPSHOT:
        props[UNCHANGED_PROP] = json.dumps(unchanged, sort_keys=True)

    specs = ev.index(specs_for(asset))
    quarantined_by_day = split_by_day(_rule_broken(set_aside), INGEST_DATE, keys)
    loaded = _loaded_days(ctx, target, asset)

    def audit(head: int) -> list[CheckOutcome]:
        written = ctx.read(target, where, (*contract.keys, INGEST_DATE), snapshot_id=head)
        whole = ctx.read(target, columns=contract.keys, snapshot_id=head) if contract.history != SNAPSHOT else None
        # Other days this write touched are held to the law once their own run has loaded them.
        law = accounting(ctx.store, source, [d for d in touched if d in span or d in loaded], head, unchanged)
        out = [replace(ev.accounting_law(specs["accounting"], day, counts_of_day), partition=day)
               for day, counts_of_day in law.items()]
        written_by_day = split_by_day(written, INGEST_DATE, span)
        # Transactional sources: one row per key in the whole table (one result per write);
        # snapshots: one row per key and day, on every day the write covered.
        if whole is not None:
            out.append(ev.unique_keys(specs["keys_unique"], whole, contract.keys))
        out += per_day(span, lambda day: [ev.null_keys(specs["keys_not_null"], written_by_day[day], contract.keys)] + (
            [ev.unique_keys(specs["keys_unique"], written_by_day[day], contract.keys)] if whole is None else []))
        return out + per_day(keys, lambda day: _silver_checks(specs, contract, by_day[day], written_by_day[day],
                                                              quarantined_by_day[day]))

    write = audited_write(ctx, target, asset, keys, _chunks(engine, silver, target.schema), where, props,
                          _columns(target), audit)
    return StepResult(target, write, {**counts, "recomputed_keys": len(recomputed),
                                      "touched_ingest_dates": len(touched)}, affected, by_day)


def _loaded_days(ctx: StepContext, table: TableDef, asset: str) -> set[str]:
    """Ingest dates a published write of `asset` covered: days whose own silver run has happened."""
    days: set[str] = set()
    for summary in _writes(ctx, table, asset):
        span = covered(summary)
        if span:
            first, last = dt.date.fromisoformat(span[0]), dt.date.fromisoformat(span[1])
            days |= {(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)}
    return days


def _union(a, b):
    """Rows of both bronze frames; a column one of them lacks (the files of its days predate it) is null."""
    F, _ = api(a)
    columns = list(dict.fromkeys([*a.columns, *b.columns]))

    def pad(df):
        return df.select(*[F.col(c) if c in df.columns else F.lit(None).cast("string").alias(c) for c in columns])
    return pad(a).unionByName(pad(b))



def _single_key(contract) -> str:
    if len(contract.keys) != 1:
        raise ValueError(f"source {contract.name}: a transactional source needs exactly one key column, "
                         f"has {contract.keys}; declare a single (possibly combined) key column")
    return contract.keys[0]


def _snapshot_span(ctx: StepContext, bronze_def: TableDef, keys: list[str]) -> list[str]:
    """The batch's days through the last landed day: a snapshot day changes how the next days compare."""
    landed = _dates(ctx.read(bronze_def, GreaterThan(INGEST_DATE, keys[-1]), (INGEST_DATE,)), INGEST_DATE)
    last = max([keys[-1], *landed])
    return day_keys([dt.date.fromisoformat(keys[0]) + dt.timedelta(days=i)
                     for i in range((dt.date.fromisoformat(last) - dt.date.fromisoformat(keys[0])).days + 1)])


def _keys_to_recompute(ctx: StepContext, contract, keys: list[str], bronze, lookups: dict) -> set[str]:
    """Keys the batch holds, keys its earlier load left in silver or the quarantine, and stale enrichments."""
    engine, key = ctx.engine, contract.keys[0]
    found = set(engine.to_arrow(record_keys(bronze, contract).select(RECORD_KEY).distinct())[RECORD_KEY].to_pylist())
    found |= set(ctx.read(silver_table(contract.name), within(INGEST_DATE, keys), (key,))[key].to_pylist())
    earlier = ctx.read(QUARANTINE, And(EqualTo("source", contract.name), within("ingest_date", keys)), ("record_key",))
    found |= set(earlier["record_key"].to_pylist())
    if contract.lookups:
        current = frame(ctx, silver_table(contract.name), AlwaysTrue())
        found |= set(engine.to_arrow(stale_enrichment(current, contract, lookups))[RECORD_KEY].to_pylist())
    found.discard(None)
    return found


def _elsewhere(ctx: StepContext, contract, keys: list[str], wanted, others) -> list[str]:
    """The recomputed keys (`wanted`) with rows outside the batch's days: in bronze (`others`), silver or the quarantine.

    Only these need a key filter next to the batch's days. Usually a handful (records
    re-sent or corrected on another day), where the batch's own keys run to millions:
    an Iceberg filter on every one of them made a 1M-row day take minutes to plan and delete.
    """
    engine, key = ctx.engine, contract.keys[0]
    F, _ = api(wanted)

    def having_rows(table: TableDef, where: BooleanExpression, column: str):
        rows = frame(ctx, table, where, (column,)).select(F.col(column).cast("string").alias(RECORD_KEY))
        return rows.join(wanted, on=RECORD_KEY, how="inner")

    found = (others.select(RECORD_KEY)
             .unionByName(having_rows(silver_table(contract.name), Not(within(INGEST_DATE, keys)), key))
             .unionByName(having_rows(QUARANTINE, And(EqualTo("source", contract.name),
                                                      Not(within("ingest_date", keys))), "record_key")))
    return sorted(k for k in engine.to_arrow(found.distinct())[RECORD_KEY].to_pylist() if k is not None)


def _rule_broken(set_aside: pa.Table) -> pa.Table:
    """Set-aside rows that broke a rule (not duplicates or superseded versions)."""
    if set_aside.num_rows == 0:
        return set_aside
    aside = pc.is_in(set_aside[RULES], pa.array([DUPLICATE, SUPERSEDED]))
    return set_aside.filter(pc.invert(aside))


def _silver_checks(specs, contract, counts: dict[str, int], written: pa.Table, quarantined: pa.Table):
    """One day's silver checks, from its outcome counts, its written keys and its quarantined rows."""
    total = counts["rows_in"]
    out = [
        # Rows accepted, wherever they went: a snapshot day with no change, or a file re-sent in
        # full (all duplicates), is normal; a day where nothing landed has nothing to check.
        ev.non_empty(specs["non_empty"], written.num_rows + counts["unchanged"] + counts[DUPLICATE]
                     + counts[SUPERSEDED]) if total else
        CheckOutcome(specs["non_empty"], True, 0, f"no {contract.name} landed on this day"),
        ev.counted(specs["quarantine_share"], counts[QUARANTINED], total, ev.sample_quarantined(quarantined)),
        ev.counted(specs["duplicates"], counts[DUPLICATE], total),
        ev.counted(specs["superseded"], counts[SUPERSEDED], total),
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


def run_dimension(ctx: StepContext, source: str) -> StepResult:
    """gold.dim_<x>: the current version of every key; small, rewritten whole."""
    versions = frame(ctx, silver_table(source))
    target = dimension_table(source)
    asset = target.identifier.replace(".", "/")
    ctx.ensure(target, FACT_ORDERS)
    dim = ctx.engine.to_arrow(gold.dimension(versions, source))  # one row per key: the dimension itself
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
    return StepResult(target, write, {"rows_in": versions.count(), "rows_out": dim.num_rows}, [])


def run_fact_orders(ctx: StepContext, days: Days) -> StepResult:
    """The fact partitions that the silver orders writes of these days changed, rebuilt from silver.

    A silver write of day D can move a key's row to or from another ingest date, or
    re-enrich rows of other days (a re-sent or corrected order, a late customer). So
    besides D, every partition where the fact no longer matches silver is rewritten:
    found by comparing the two whole tables (one engine join), which also heals a fact
    left behind by a run that failed between the silver and the fact write.
    """
    keys, asset = day_keys(days), "gold/fact_orders"
    ctx.ensure(FACT_ORDERS, silver_table("orders"))
    # One silver snapshot for every read of this step, recorded with the write.
    silver_snapshot = ctx.store.current_snapshot_id(silver_table("orders").identifier)
    partitions = sorted(set(keys) | _fact_drift(ctx, silver_snapshot))
    where = In(INGEST_DATE, partitions)
    fact = ctx.engine.materialize(gold.fact_orders(frame(ctx, silver_table("orders"), where,
                                                         snapshot_id=silver_snapshot)))
    F, _ = api(fact)
    counts_df = fact.groupBy(INGEST_DATE).agg(
        F.count(F.lit(1)).cast("bigint").alias("rows_in"),
        F.sum(F.when(~F.col("customer_known"), 1).otherwise(0)).cast("bigint").alias("unknown_customer"),
        F.sum(F.when(~F.col("product_known"), 1).otherwise(0)).cast("bigint").alias("unknown_product"),
    )
    by_day = _by_day(ctx.engine, counts_df, {n: n for n in ("rows_in", "unknown_customer", "unknown_product")},
                     partitions)
    dates = [d.isoformat() for d in ctx.engine.to_arrow(fact.select("order_date").distinct())["order_date"].to_pylist() if d]
    props, affected = _tracked(ctx, FACT_ORDERS, where, ctx.props(asset, keys), "order_date", dates)
    if silver_snapshot is not None:
        props[BUILT_FROM_SILVER] = str(silver_snapshot)
    specs = ev.index(specs_for(asset))
    silver_now = split_by_day(ctx.store.read(silver_table("orders").identifier, where, ("order_id", INGEST_DATE),
                                             silver_snapshot), INGEST_DATE, partitions)

    def audit(head: int) -> list[CheckOutcome]:
        written = split_by_day(ctx.read(FACT_ORDERS, where, ("order_id", INGEST_DATE), snapshot_id=head),
                               INGEST_DATE, partitions)
        whole = ctx.read(FACT_ORDERS, columns=("order_id",), snapshot_id=head)
        return [ev.unique_keys(specs["keys_unique"], whole, ("order_id",))] + per_day(partitions, lambda key: [
            ev.equal(specs["matches_silver"], fact=written[key].num_rows, silver=silver_now[key].num_rows),
        ]) + per_day(keys, lambda key: [ev.non_empty(specs["non_empty"], written[key].num_rows)])

    write = audited_write(ctx, FACT_ORDERS, asset, keys, _chunks(ctx.engine, fact, FACT_ORDERS.schema), where, props,
                          _columns(FACT_ORDERS), audit)
    counts = {**_total({k: v for k, v in by_day.items() if k in keys}), "rows_out": write.rows,
              "rewritten_partitions": len(partitions)}
    return StepResult(FACT_ORDERS, write, counts, affected, {k: v for k, v in by_day.items() if k in keys})


def _fact_drift(ctx: StepContext, silver_snapshot: int | None) -> set[str]:
    """Ingest dates whose fact rows differ from what silver orders gives (either side's date)."""
    engine = ctx.engine
    wanted = gold.fact_orders(frame(ctx, silver_table("orders"), snapshot_id=silver_snapshot))
    F, _ = api(wanted)
    columns = list(gold.FACT_COLUMNS)
    fingerprint = F.md5(F.concat_ws("\u241f", *[F.coalesce(F.col(c).cast("string"), F.lit("\u2400")) for c in columns]))
    now = wanted.select(F.col("order_id").alias("_id_now"), F.col(INGEST_DATE).alias("_day_now"),
                        fingerprint.alias("_print_now"))
    have = frame(ctx, FACT_ORDERS).select(F.col("order_id").alias("_id_have"), F.col(INGEST_DATE).alias("_day_have"),
                                          fingerprint.alias("_print_have"))
    joined = now.join(have, on=(F.col("_id_now") == F.col("_id_have")) & (F.col("_day_now") == F.col("_day_have")),
                      how="full_outer")
    differ = joined.filter(F.col("_print_now").isNull() | F.col("_print_have").isNull()
                           | (F.col("_print_now") != F.col("_print_have")))
    days = engine.to_arrow(differ.select(F.coalesce(F.col("_day_now"), F.col("_day_have")).alias("day")).distinct())
    return {d.isoformat() for d in days["day"].to_pylist() if d is not None}


def _sum(table: pa.Table, column: str):
    return pc.sum(table[column]).as_py() if table.num_rows else 0


def _totals(engine: Engine, df, column: str) -> dict:
    """Row count and sum of `column` of `df` (and its ingest dates, if it has them), computed by the engine."""
    F, _ = api(df)
    aggregates = [F.count(F.lit(1)).alias("rows"), F.sum(column).alias("sum")]
    if INGEST_DATE in df.columns:
        aggregates.append(F.collect_set(F.col(INGEST_DATE).cast("string")).alias("ingest_dates"))
    (row,) = engine.to_arrow(df.agg(*aggregates)).to_pylist()
    return {"rows": int(row["rows"] or 0), "sum": row["sum"] if row["sum"] is not None else 0,
            "ingest_dates": sorted(row.get("ingest_dates") or [])}


def _fact_source(ctx: StepContext, fact_snapshot: int | None) -> int | None:
    """The silver orders snapshot the fact at `fact_snapshot` was built from (its newest write
    by the fact step); None, meaning silver now, if that write did not record it or it expired."""
    recorded = next(_writes(ctx, FACT_ORDERS, "gold/fact_orders", fact_snapshot), {}).get(BUILT_FROM_SILVER)
    if recorded is None or not ctx.store.has_snapshot(silver_table("orders").identifier, int(recorded)):
        return None
    return int(recorded)


def run_daily_sales(ctx: StepContext, days: Days) -> StepResult:
    """Recompute the days whose orders the ingest partitions touched; nothing else."""
    keys, asset = day_keys(days), "gold/mart_daily_sales"
    dates = affected_dates(ctx, FACT_ORDERS, keys, "order_date")
    ctx.ensure(MART_DAILY_SALES)
    where = In("order_date", dates or NO_DATES)
    fact_snapshot = ctx.store.current_snapshot_id(FACT_ORDERS.identifier)
    fact = frame(ctx, FACT_ORDERS, where, ("order_date", "channel", "region", "category", "qty", "sales_amount",
                                          INGEST_DATE), fact_snapshot)
    mart = ctx.engine.to_arrow(gold.daily_sales(fact.drop(INGEST_DATE)))  # aggregates: small
    fact_totals = _totals(ctx.engine, fact, "sales_amount")
    specs = ev.index(specs_for(asset))

    def audit(head: int) -> list[CheckOutcome]:
        written = ctx.read(MART_DAILY_SALES, where, ("orders", "sales"), snapshot_id=head)
        # The silver the fact was built from: runs of different days interleave their steps, so
        # silver may have moved on since (a later day's write moved or added orders) and the
        # fact not yet; the fact's own run brings that change to the mart.
        loaded = And(where, In(INGEST_DATE, fact_totals["ingest_dates"] or NO_DATES))
        silver = frame(ctx, silver_table("orders"), loaded, ("qty", "unit_price"), _fact_source(ctx, fact_snapshot))
        F, _ = api(silver)
        recomputed = _totals(ctx.engine, silver.select((F.col("qty") * F.col("unit_price")).alias("amount")),
                             "amount")["sum"]
        return [
            ev.matching(specs["totals_match"],
                        sales={"mart": _sum(written, "sales"), "fact": fact_totals["sum"], "silver": recomputed},
                        orders={"mart": _sum(written, "orders"), "fact": fact_totals["rows"]}),
            ev.non_empty(specs["non_empty"], written.num_rows),
        ]

    write = audited_write(ctx, MART_DAILY_SALES, asset, keys, conform(mart, MART_DAILY_SALES.schema), where,
                          ctx.props(asset, keys), _columns(MART_DAILY_SALES), audit)
    return StepResult(MART_DAILY_SALES, write, {"rows_in": fact_totals["rows"], "rows_out": mart.num_rows}, dates)


def run_customer_activity(ctx: StepContext, days: Days) -> StepResult:
    keys, asset = day_keys(days), "gold/mart_customer_activity"
    dates = sorted(
        set(affected_dates(ctx, silver_table("events"), keys, "event_date"))
        | set(affected_dates(ctx, FACT_ORDERS, keys, "order_date"))
    )
    ctx.ensure(MART_CUSTOMER_ACTIVITY)
    events = frame(ctx, silver_table("events"), In("event_date", dates or NO_DATES), ("user_id", "event_date", "event_type"))
    fact = frame(ctx, FACT_ORDERS, In("order_date", dates or NO_DATES), ("customer_id", "order_date", "qty", "sales_amount"))
    activity = ctx.engine.to_arrow(gold.customer_activity(events, fact))  # one row per customer and day
    fact_totals, events_in = _totals(ctx.engine, fact, "sales_amount"), events.count()
    where = In("activity_date", dates or NO_DATES)
    specs = ev.index(specs_for(asset))

    def audit(head: int) -> list[CheckOutcome]:
        written = ctx.read(MART_CUSTOMER_ACTIVITY, where, ("events", "orders", "sales"), snapshot_id=head)
        return [
            ev.matching(specs["totals_match"],
                        sales={"mart": _sum(written, "sales"), "fact": fact_totals["sum"]},
                        events={"mart": _sum(written, "events"), "silver": events_in},
                        orders={"mart": _sum(written, "orders"), "fact": fact_totals["rows"]}),
            ev.non_empty(specs["non_empty"], written.num_rows),
        ]

    write = audited_write(ctx, MART_CUSTOMER_ACTIVITY, asset, keys, conform(activity, MART_CUSTOMER_ACTIVITY.schema),
                          where, ctx.props(asset, keys), _columns(MART_CUSTOMER_ACTIVITY), audit)
    counts = {"rows_in": events_in + fact_totals["rows"], "rows_out": activity.num_rows}
    return StepResult(MART_CUSTOMER_ACTIVITY, write, counts, dates)


# Every silver and gold step by the name the cluster entry point (lakehouse/jobs/run_step.py) takes.
STEPS = {"silver": run_silver, "dimension": run_dimension, "fact_orders": run_fact_orders,
         "mart_daily_sales": run_daily_sales, "mart_customer_activity": run_customer_activity}
