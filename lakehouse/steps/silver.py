"""The silver step of a source: classify bronze, write silver and the quarantine, audit the accounting."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from functools import partial

import pyarrow as pa
from pyiceberg.expressions import AlwaysTrue, And, EqualTo, GreaterThan, In, LessThan, Not, Or

from lakehouse.accounting import UNCHANGED_PROP, tally
from lakehouse.arrowtools import conform, split_by_day
from lakehouse.checks import evaluate as ev
from lakehouse.checks.catalog import specs_for
from lakehouse.checks.model import CheckOutcome
from lakehouse.contracts import CONTRACTS
from lakehouse.contracts.model import FLAG, SNAPSHOT
from lakehouse.partitions import Days, covered, day_keys
from lakehouse.readers import ROW_NUMBER
from lakehouse.steps.audit import counts_by_day, total_counts, writes_to, audited_write, per_day
from lakehouse.steps.context import StepContext, StepResult
from lakehouse.steps.dates import tracked_dates
from lakehouse.steps.measures import WHOLE, Keys, distinct_dates, keys_by
from lakehouse.steps.reads import output, schema_columns, frame, keyed, within
from lakehouse.tables import QUARANTINE, TableDef, bronze_table, silver_table
from lakehouse.transforms.bronze import INGEST_DATE, SOURCE_FILE
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
    outcome_labels,
    quarantine_records,
    quarantine_rows,
    record_keys,
    stale_enrichment,
    silver_rows,
)


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
        rows = _classified(engine, contract, frame(ctx, bronze_def, within(INGEST_DATE, span)), previous, lookups)
        where = within(INGEST_DATE, span)
        set_aside_where = within("ingest_date", span)
        recomputed = 0
    else:
        key = _single_key(contract)
        batch = within(INGEST_DATE, keys)
        bronze = frame(ctx, bronze_def, batch)
        wanted = _keys_to_recompute(ctx, contract, keys, bronze, lookups)
        recomputed = wanted.count()
        others = engine.materialize(
            record_keys(frame(ctx, bronze_def, Not(batch)), contract).join(wanted, on=RECORD_KEY, how="inner"))
        rows = _classified(engine, contract, _union(bronze, others.drop(RECORD_KEY)), None, lookups)
        # Every row of a recomputed key is classified again, whatever day it landed on, and
        # replaces that key's earlier rows in silver and in the quarantine. The batch's days
        # are replaced whole; other days only for the keys that have rows there.
        elsewhere = _elsewhere(ctx, contract, keys, wanted, others)
        where, set_aside_where = batch, within("ingest_date", keys)
        days_elsewhere = sorted(distinct_dates(engine, elsewhere, INGEST_DATE))
        if days_elsewhere:
            # The days those rows are on, as a separate conjunct: a filter the engine can push
            # down to the files (partitions) alone, where the key test (on Spark a semi-join)
            # cannot be, and inside an Or it would leave the Or unpushed: a scan of the table.
            on_key, on_record = engine.members(elsewhere.select(RECORD_KEY).distinct(), RECORD_KEY,
                                               key, "record_key")
            where = And(Or(where, In(INGEST_DATE, days_elsewhere)), Or(where, keyed(key, on_key)))
            set_aside_where = And(Or(set_aside_where, In("ingest_date", days_elsewhere)),
                                  Or(set_aside_where, keyed("record_key", on_record)))
        span = keys

    F, _ = api(rows)
    in_batch = rows.filter(F.col(INGEST_DATE).between(F.lit(keys[0]).cast("date"), F.lit(keys[-1]).cast("date")))
    by_day_counts = counts_by_day(engine, *_outcomes(engine, in_batch, contract), keys)
    counts = total_counts(by_day_counts)
    set_aside = engine.planned(("quarantine rows",), {"rows": rows}, lambda given: quarantine_rows(given["rows"]), "table")
    silver = silver_rows(rows, contract)

    # The quarantine is evidence, written whatever the audit decides; by the engine (on Spark,
    # the executors turn the rows into records and write them).
    now = dt.datetime.now(dt.timezone.utc)
    records = engine.map_arrow(set_aside, partial(_quarantine_records, source, ctx.run_id, now), QUARANTINE.schema)
    props = ctx.props(asset, keys)
    ctx.store.replace_where(QUARANTINE.identifier, output(ctx, records, QUARANTINE.schema),
                            And(EqualTo("source", source), set_aside_where), props)

    # The dates the batch's rows are stored under (a partition column), for the marts downstream.
    column = contract.partition.column if contract.partition else None
    new: dict[str, list] = {INGEST_DATE: [set(span), (silver, INGEST_DATE), (set_aside, INGEST_DATE)]}
    if column:
        new.setdefault(column, []).append((silver, column))  # added to, where the column is the ingest date
    props, dates = tracked_dates(ctx, target, where, props, new)
    touched, affected = dates[INGEST_DATE], dates.get(column, [])
    unchanged: dict[str, int] = {}  # only a snapshot source's row can be unchanged (`classify`)
    if contract.history == SNAPSHOT:
        unchanged = {day: c[UNCHANGED] for day, c in counts_by_day(engine, *_outcomes(engine, rows, contract), span).items()}
        props[UNCHANGED_PROP] = json.dumps(unchanged, sort_keys=True)

    specs = ev.index(specs_for(asset))
    quarantined_by_day = split_by_day(_quarantine_examples(engine, set_aside), INGEST_DATE, keys)
    loaded = _loaded_days(ctx, target, asset)

    def audit(head: int) -> list[CheckOutcome]:
        # Counted by the engine at the branch head: only counts and example rows come back.
        # Per day, repeated keys matter only for snapshots: a transactional source's keys are
        # held unique over the whole table below.
        written = keys_by(engine, frame(ctx, target, where, (*contract.keys, INGEST_DATE), snapshot_id=head),
                          contract.keys, by=INGEST_DATE, repeats=contract.history == SNAPSHOT)
        # Other days this write touched are held to the law once their own run has loaded them.
        law = _accounting(ctx, source, [d for d in touched if d in span or d in loaded], head, unchanged)
        out = [replace(ev.accounting_law(specs["accounting"], day, counts_of_day), partition=day)
               for day, counts_of_day in law.items()]
        # Transactional sources: one row per key in the whole table (one result per write);
        # snapshots: one row per key and day, on every day the write covered.
        if contract.history != SNAPSHOT:
            whole = keys_by(engine, frame(ctx, target, AlwaysTrue(), contract.keys, snapshot_id=head),
                            contract.keys).get(WHOLE, Keys())
            out.append(ev.repeated_keys_found(specs["keys_unique"], whole.repeated, whole.repeated_sample))

        def key_checks(day: str) -> list[CheckOutcome]:
            found = written.get(day, Keys())
            return [ev.null_keys_found(specs["keys_not_null"], found.null_rows, found.null_sample)] + (
                [ev.repeated_keys_found(specs["keys_unique"], found.repeated, found.repeated_sample)]
                if contract.history == SNAPSHOT else [])
        out += per_day(span, key_checks)
        return out + per_day(keys, lambda day: _silver_checks(specs, contract, by_day_counts[day],
                                                              written.get(day, Keys()).rows, quarantined_by_day[day]))

    write = audited_write(ctx, target, asset, keys, output(ctx, silver, target.schema), where, props,
                          schema_columns(target), audit)
    return StepResult(target, write, {**counts, "recomputed_keys": recomputed,
                                      "touched_ingest_dates": len(touched)}, affected, by_day_counts)


def _accounting(ctx: StepContext, source: str, days: list[str], silver_snapshot: int,
                unchanged: dict[str, int]) -> dict[str, dict[str, int]]:
    """The accounting law's parts for `days` (`lakehouse.accounting`), counted by the engine, with
    silver at the audit branch's head."""
    days = sorted(days)
    if not days:
        return {}
    on_days = In(INGEST_DATE, days)
    frames = {"bronze": frame(ctx, bronze_table(source), on_days, (INGEST_DATE,)),
              "silver": frame(ctx, silver_table(source), on_days, (INGEST_DATE,), silver_snapshot),
              "aside": frame(ctx, QUARANTINE, And(EqualTo("source", source), In("ingest_date", days)),
                             ("ingest_date", "rules"))}
    counted = ctx.engine.planned(("accounting",), frames, _accounting_counts, "arrow").to_pylist()
    bronze_rows = {r["day"]: int(r["rows"]) for r in counted if r["part"] == "bronze"}
    silver_rows = {r["day"]: int(r["rows"]) for r in counted if r["part"] == "silver"}
    set_aside = {(r["day"], r["part"][len("aside:"):]): int(r["rows"]) for r in counted if r["part"].startswith("aside:")}
    return tally(days, bronze_rows, silver_rows, set_aside, unchanged)


def _accounting_counts(frames: dict):
    """One query over the three tables: a row per (where, day) with its count."""
    bronze, silver, aside = frames["bronze"], frames["silver"], frames["aside"]
    F, _ = api(bronze)
    parts = (bronze.select(F.lit("bronze").alias("part"), F.col(INGEST_DATE).cast("string").alias("day"))
             .union(silver.select(F.lit("silver").alias("part"), F.col(INGEST_DATE).cast("string").alias("day")))
             .union(aside.select(F.concat(F.lit("aside:"), F.concat_ws(",", F.col("rules"))).alias("part"),
                                 F.col("ingest_date").cast("string").alias("day"))))
    return parts.groupBy("part", "day").agg(F.count(F.lit(1)).alias("rows"))


def _loaded_days(ctx: StepContext, table: TableDef, asset: str) -> set[str]:
    """Ingest dates a published write of `asset` covered: days whose own silver run has happened."""
    days: set[str] = set()
    for summary in writes_to(ctx, table, asset):
        span = covered(summary)
        if span:
            first, last = dt.date.fromisoformat(span[0]), dt.date.fromisoformat(span[1])
            days |= {(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)}
    return days


def _classified(engine, contract, bronze, previous, lookups: dict):
    """`classify`'s rows, evaluated once (`Engine.materialize`), its SQL built once per process for a source
    and the same input columns (`Engine.planned`): the same every day but for the views it reads, and 13%
    of a small day's CPU when built each time."""
    frames = {"bronze": bronze, "previous": previous, **{f"lookup:{source}": df for source, df in lookups.items()}}
    return engine.planned(("classify", contract), frames, lambda given: classify(
        given["bronze"], contract, given["previous"], {source: given[f"lookup:{source}"] for source in lookups},
        engine.cut), "table")


def _outcomes(engine, rows, contract):
    """`outcome_counts` of `rows` as Arrow, and their labels; its SQL built once per process (`Engine.planned`)."""
    counts = engine.planned(("outcome counts", contract), {"rows": rows},
                            lambda given: outcome_counts(given["rows"], contract)[0], "arrow")
    return counts, outcome_labels(contract)


def _union(a, b):
    """Rows of both bronze frames; a column one of them lacks (the files of its days predate it) is null."""
    F, _ = api(a)
    a_has, b_has = a.columns, b.columns  # once each: sqlframe copies the whole query for each look
    columns = list(dict.fromkeys([*a_has, *b_has]))

    def pad(df, has):
        return df.select(*[F.col(c) if c in has else F.lit(None).cast("string").alias(c) for c in columns])
    return pad(a, set(a_has)).union(pad(b, set(b_has)))  # the same columns in the same order: by position is by name


def _single_key(contract) -> str:
    if len(contract.keys) != 1:
        raise ValueError(f"source {contract.name}: a transactional source needs exactly one key column, "
                         f"has {contract.keys}; declare a single (possibly combined) key column")
    return contract.keys[0]


def _snapshot_span(ctx: StepContext, bronze_def: TableDef, keys: list[str]) -> list[str]:
    """The batch's days through the last landed day: a snapshot day changes how the next days compare."""
    landed = distinct_dates(ctx.engine, frame(ctx, bronze_def, GreaterThan(INGEST_DATE, keys[-1]), (INGEST_DATE,)),
                            INGEST_DATE)
    last = max([keys[-1], *landed])
    return day_keys([dt.date.fromisoformat(keys[0]) + dt.timedelta(days=i)
                     for i in range((dt.date.fromisoformat(last) - dt.date.fromisoformat(keys[0])).days + 1)])


def _keys_to_recompute(ctx: StepContext, contract, keys: list[str], bronze, lookups: dict):
    """Keys the batch holds, keys its earlier load left in silver or the quarantine, and stale
    enrichments: one column of distinct record keys, kept by the engine (a day's keys run to millions)."""
    key = contract.keys[0]
    frames = {"bronze": bronze,
              "silver": frame(ctx, silver_table(contract.name), within(INGEST_DATE, keys), (key,)),
              "aside": frame(ctx, QUARANTINE, And(EqualTo("source", contract.name), within("ingest_date", keys)),
                             ("record_key",)),
              "current": frame(ctx, silver_table(contract.name), AlwaysTrue()) if contract.lookups else None,
              **{f"lookup:{source}": df for source, df in lookups.items()}}
    return ctx.engine.planned(("keys_to_recompute", contract), frames, lambda given: _record_keys_to_recompute(
        given, contract, {source: given[f"lookup:{source}"] for source in lookups}), "table")


def _record_keys_to_recompute(frames: dict, contract, lookups: dict):
    """The distinct record keys of `_keys_to_recompute`, from its frames (a transform of `Engine.planned`)."""
    F, _ = api(frames["bronze"])

    def as_keys(df, column: str):
        return df.select(F.col(column).cast("string").alias(RECORD_KEY))

    # `union`, by position, as every part is the one key column: sqlframe's unionByName copies both plans again.
    found = (record_keys(frames["bronze"], contract).select(RECORD_KEY)
             .union(as_keys(frames["silver"], contract.keys[0]))
             .union(as_keys(frames["aside"], "record_key")))
    if frames["current"] is not None:
        found = found.union(stale_enrichment(frames["current"], contract, lookups).select(RECORD_KEY))
    return found.filter(F.col(RECORD_KEY).isNotNull()).distinct()


def _elsewhere(ctx: StepContext, contract, keys: list[str], wanted, others):
    """The recomputed keys (`wanted`) with rows outside the batch's days, in bronze (`others`), silver or
    the quarantine: their distinct (record key, ingest date) pairs, kept by the engine.

    Only these need a key filter next to the batch's days. Usually a handful (records
    re-sent or corrected on another day), where the batch's own keys run to millions:
    an Iceberg filter on every one of them made a 1M-row day take minutes to plan and delete.
    But a file re-sent whole brings a whole day's keys, so they stay with the engine
    (`Engine.members`: on Spark a semi-join, never a list on the driver).
    """
    key = contract.keys[0]
    frames = {"wanted": wanted, "others": others,
              "silver": frame(ctx, silver_table(contract.name), Not(within(INGEST_DATE, keys)), (key, INGEST_DATE)),
              "aside": frame(ctx, QUARANTINE, And(EqualTo("source", contract.name), Not(within("ingest_date", keys))),
                             ("record_key", "ingest_date"))}
    return ctx.engine.planned(("elsewhere", key), frames, lambda given: _key_days_elsewhere(given, key), "table")


def _key_days_elsewhere(frames: dict, key: str):
    """The distinct (record key, ingest date) pairs of `_elsewhere`, from its frames (a transform of `Engine.planned`)."""
    wanted = frames["wanted"]
    F, _ = api(wanted)

    def having_rows(rows, column: str, day: str):
        rows = rows.select(F.col(column).cast("string").alias(RECORD_KEY), F.col(day).alias(INGEST_DATE))
        return rows.join(wanted, on=RECORD_KEY, how="inner")

    found = (frames["others"].select(RECORD_KEY, INGEST_DATE)
             .union(having_rows(frames["silver"], key, INGEST_DATE))
             .union(having_rows(frames["aside"], "record_key", "ingest_date")))
    return found.filter(F.col(RECORD_KEY).isNotNull()).distinct()


def _quarantine_records(source: str, run_id: str, now: dt.datetime, rows: pa.Table) -> pa.Table:
    """silver.quarantine's rows from a batch of `quarantine_rows` (run where the rows are: Spark's executors)."""
    return conform(quarantine_records(rows, source, run_id, now), QUARANTINE.schema)


def _quarantine_examples(engine, set_aside) -> pa.Table:
    """The first few rows (by file and row) of every ingest date and rule among the set-aside rows that
    broke a rule (not duplicates or superseded versions): the examples the failing checks show."""
    examples = engine.planned(("quarantine examples",), {"set_aside": set_aside},
                              lambda given: _first_per_rule(given["set_aside"]), "arrow")
    if examples.num_rows == 0:
        return examples
    # A row that broke several rules came once per rule: keep it once, in file and row order.
    examples = examples.sort_by([(SOURCE_FILE, "ascending"), (ROW_NUMBER, "ascending")])
    seen, keep = set(), []
    for i, at in enumerate(zip(examples[SOURCE_FILE].to_pylist(), examples[ROW_NUMBER].to_pylist())):
        if at not in seen:
            seen.add(at)
            keep.append(i)
    return examples.take(keep)


def _first_per_rule(set_aside):
    """The first rows (by file and row) of each ingest date and broken rule, once per rule they broke."""
    F, Window = api(set_aside)
    broken = set_aside.filter(~F.col(RULES).isin(DUPLICATE, SUPERSEDED))
    by_rule = broken.withColumn("_rule", F.explode(F.split(F.col(RULES), ",")))
    first = Window.partitionBy(INGEST_DATE, "_rule").orderBy(SOURCE_FILE, ROW_NUMBER)
    return by_rule.withColumn("_n", F.row_number().over(first)).filter(F.col("_n") <= ev.SAMPLE).drop("_rule", "_n")


def _silver_checks(specs, contract, counts: dict[str, int], written: int, quarantined: pa.Table):
    """One day's silver checks, from its outcome counts, its written rows and examples of its quarantined rows."""
    total = counts["rows_in"]
    out = [
        # Rows accepted, wherever they went: a snapshot day with no change, or a file re-sent in
        # full (all duplicates), is normal; a day where nothing landed has nothing to check.
        ev.non_empty(specs["non_empty"], written + counts["unchanged"] + counts[DUPLICATE]
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
