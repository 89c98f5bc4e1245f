"""The gold steps: the current-version dimensions, the order fact and the two marts."""

from __future__ import annotations

from pyiceberg.expressions import AlwaysTrue, And, EqualTo, In, Not

from lakehouse.checks import evaluate as ev
from lakehouse.checks.catalog import specs_for
from lakehouse.checks.model import CheckOutcome
from lakehouse.contracts import CONTRACTS
from lakehouse.partitions import Days, day_keys
from lakehouse.steps.audit import counts_by_day, total_counts, writes_to, audited_write, per_day
from lakehouse.steps.context import BUILT_FROM_SILVER, NO_DATES, StepContext, StepResult
from lakehouse.steps.dates import tracked_dates, affected_dates
from lakehouse.steps.measures import WHOLE, Keys, keys_by, missing_from, rows_by, totals
from lakehouse.steps.reads import output, schema_columns, frame, within
from lakehouse.tables import FACT_ORDERS, MART_CUSTOMER_ACTIVITY, MART_DAILY_SALES, dimension_table, silver_table
from lakehouse.transforms import gold
from lakehouse.transforms.bronze import INGEST_DATE
from lakehouse.transforms.silver import api


def run_dimension(ctx: StepContext, source: str) -> StepResult:
    """gold.dim_<x>: the current version of every key; small, rewritten whole."""
    versions = frame(ctx, silver_table(source))
    target = dimension_table(source)
    asset = target.identifier.replace(".", "/")
    ctx.ensure(target, FACT_ORDERS)
    dim = gold.dimension(versions, source)  # one row per key: the dimension itself, written by the engine
    key = CONTRACTS[source].keys[0]
    known = "customer_known" if source == "customers" else "product_known"
    specs = ev.index(specs_for(asset))

    def audit(head: int) -> list[CheckOutcome]:
        written = frame(ctx, target, columns=(key,), snapshot_id=head)
        found = keys_by(ctx.engine, written, (key,)).get(WHOLE, Keys())
        missing, sample = missing_from(ctx.engine, frame(ctx, FACT_ORDERS, EqualTo(known, True), (key,)), written, key)
        return [
            ev.repeated_keys_found(specs["keys_unique"], found.repeated, found.repeated_sample),
            CheckOutcome(specs["covers_facts"], not missing, missing,
                         "ok" if not missing else f"{missing} known {key}s of the fact are not in the dimension",
                         sample),
            ev.non_empty(specs["non_empty"], found.rows),
        ]

    write = audited_write(ctx, target, asset, None, output(ctx, dim, target.schema), AlwaysTrue(),
                          ctx.props(asset, None), schema_columns(target), audit)
    return StepResult(target, write, {"rows_in": versions.count(), "rows_out": write.rows}, [])


def run_fact_orders(ctx: StepContext, days: Days) -> StepResult:
    """The fact partitions that the silver orders writes of these days changed, rebuilt from silver.

    A silver write of day D can move a key's row to or from another ingest date, or
    re-enrich rows of other days (a re-sent or corrected order, a late customer). So
    besides D, every partition where the fact no longer matches silver is rewritten:
    found by comparing the fact's other ingest dates with silver's (one engine join), which
    also heals a fact left behind by a run that failed between the silver and the fact write.
    """
    keys, asset = day_keys(days), "gold/fact_orders"
    ctx.ensure(FACT_ORDERS, silver_table("orders"))
    # One silver snapshot for every read of this step, recorded with the write.
    silver_snapshot = ctx.store.current_snapshot_id(silver_table("orders").identifier)
    partitions = sorted(set(keys) | _fact_drift(ctx, silver_snapshot, keys))
    where = In(INGEST_DATE, partitions)
    # Each query's SQL built once per process (`Engine.planned`): the same every day but for the views it reads.
    fact = ctx.engine.planned(("fact_orders",), {"silver": frame(ctx, silver_table("orders"), where,
                                                               snapshot_id=silver_snapshot)},
                              lambda given: gold.fact_orders(given["silver"]), "table")
    counts = ctx.engine.planned(("fact counts",), {"fact": fact}, lambda given: _fact_counts(given["fact"]), "arrow")
    by_day = counts_by_day(ctx.engine, counts, {n: n for n in ("rows_in", "unknown_customer", "unknown_product")},
                           partitions)
    props, dates = tracked_dates(ctx, FACT_ORDERS, where, ctx.props(asset, keys),
                                 {"order_date": [(fact, "order_date")]})
    affected = dates["order_date"]
    if silver_snapshot is not None:
        props[BUILT_FROM_SILVER] = str(silver_snapshot)
    specs = ev.index(specs_for(asset))
    silver_now = rows_by(ctx.engine, frame(ctx, silver_table("orders"), where, (INGEST_DATE,), silver_snapshot),
                         INGEST_DATE)

    def audit(head: int) -> list[CheckOutcome]:
        written = rows_by(ctx.engine, frame(ctx, FACT_ORDERS, where, (INGEST_DATE,), snapshot_id=head), INGEST_DATE)
        whole = keys_by(ctx.engine, frame(ctx, FACT_ORDERS, columns=("order_id",), snapshot_id=head),
                        ("order_id",)).get(WHOLE, Keys())
        return [ev.repeated_keys_found(specs["keys_unique"], whole.repeated, whole.repeated_sample)] + per_day(
            partitions, lambda key: [ev.equal(specs["matches_silver"], fact=written.get(key, 0),
                                              silver=silver_now.get(key, 0))],
        ) + per_day(keys, lambda key: [ev.non_empty(specs["non_empty"], written.get(key, 0))])

    write = audited_write(ctx, FACT_ORDERS, asset, keys, output(ctx, fact, FACT_ORDERS.schema), where, props,
                          schema_columns(FACT_ORDERS), audit)
    counts = {**total_counts({k: v for k, v in by_day.items() if k in keys}), "rows_out": write.rows,
              "rewritten_partitions": len(partitions)}
    return StepResult(FACT_ORDERS, write, counts, affected, {k: v for k, v in by_day.items() if k in keys})


def _fact_drift(ctx: StepContext, silver_snapshot: int | None, keys: list[str]) -> set[str]:
    """Ingest dates other than `keys` (rewritten anyway) whose fact rows differ from what silver
    orders gives (either side's date).

    The join matches rows on their ingest date too, so leaving out the days of `keys` on
    both sides leaves out exactly the joined rows of those days: a day's load then compares
    only the history, and the first load of a lake nothing.
    """
    others = Not(within(INGEST_DATE, keys))
    frames = {"silver": frame(ctx, silver_table("orders"), others, snapshot_id=silver_snapshot),
              "fact": frame(ctx, FACT_ORDERS, others)}
    days = ctx.engine.planned(("fact drift",), frames, _drifted_days, "arrow")  # built once per process
    return {d.isoformat() for d in days["day"].to_pylist() if d is not None}


def _drifted_days(frames: dict):
    """`_fact_drift`'s query: the distinct ingest dates of rows that differ between the fact silver gives and the fact."""
    wanted = gold.fact_orders(frames["silver"])
    F, _ = api(wanted)
    columns = list(gold.FACT_COLUMNS)
    fingerprint = F.md5(F.concat_ws("\u241f", *[F.coalesce(F.col(c).cast("string"), F.lit("\u2400")) for c in columns]))
    now = wanted.select(F.col("order_id").alias("_id_now"), F.col(INGEST_DATE).alias("_day_now"),
                        fingerprint.alias("_print_now"))
    have = frames["fact"].select(F.col("order_id").alias("_id_have"), F.col(INGEST_DATE).alias("_day_have"),
                                 fingerprint.alias("_print_have"))
    joined = now.join(have, on=(F.col("_id_now") == F.col("_id_have")) & (F.col("_day_now") == F.col("_day_have")),
                      how="full_outer")
    differ = joined.filter(F.col("_print_now").isNull() | F.col("_print_have").isNull()
                           | (F.col("_print_now") != F.col("_print_have")))
    return differ.select(F.coalesce(F.col("_day_now"), F.col("_day_have")).alias("day")).distinct()


def _fact_counts(fact):
    """Rows per ingest date of the fact, and those with an unknown customer or product."""
    F, _ = api(fact)
    return fact.groupBy(INGEST_DATE).agg(
        F.count(F.lit(1)).cast("bigint").alias("rows_in"),
        F.sum(F.when(~F.col("customer_known"), 1).otherwise(0)).cast("bigint").alias("unknown_customer"),
        F.sum(F.when(~F.col("product_known"), 1).otherwise(0)).cast("bigint").alias("unknown_product"),
    )


def _fact_source(ctx: StepContext, fact_snapshot: int | None) -> int | None:
    """The silver orders snapshot the fact at `fact_snapshot` was built from (its newest write
    by the fact step); None, meaning silver now, if that write did not record it or it expired."""
    recorded = next(writes_to(ctx, FACT_ORDERS, "gold/fact_orders", fact_snapshot), {}).get(BUILT_FROM_SILVER)
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
    mart = ctx.engine.planned(("daily_sales",), {"fact": fact}, lambda given: gold.daily_sales(  # built once per process
        given["fact"].drop(INGEST_DATE)), "table")  # written by the engine (`output`)
    fact_totals = totals(ctx.engine, fact, "sales_amount", dates=INGEST_DATE)
    specs = ev.index(specs_for(asset))

    def audit(head: int) -> list[CheckOutcome]:
        written = totals(ctx.engine, frame(ctx, MART_DAILY_SALES, where, ("orders", "sales"), snapshot_id=head),
                         "orders", "sales")
        # The silver the fact was built from: runs of different days interleave their steps, so
        # silver may have moved on since (a later day's write moved or added orders) and the
        # fact not yet; the fact's own run brings that change to the mart.
        loaded = And(where, In(INGEST_DATE, fact_totals["dates"] or NO_DATES))
        silver = frame(ctx, silver_table("orders"), loaded, ("qty", "unit_price"), _fact_source(ctx, fact_snapshot))
        F, _ = api(silver)
        recomputed = totals(ctx.engine, silver.select((F.col("qty") * F.col("unit_price")).alias("amount")),
                            "amount")["amount"]
        return [
            ev.matching(specs["totals_match"],
                        sales={"mart": written["sales"], "fact": fact_totals["sales_amount"], "silver": recomputed},
                        orders={"mart": written["orders"], "fact": fact_totals["rows"]}),
            ev.non_empty(specs["non_empty"], written["rows"]),
        ]

    write = audited_write(ctx, MART_DAILY_SALES, asset, keys, output(ctx, mart, MART_DAILY_SALES.schema), where,
                          ctx.props(asset, keys), schema_columns(MART_DAILY_SALES), audit)
    return StepResult(MART_DAILY_SALES, write, {"rows_in": fact_totals["rows"], "rows_out": mart.count()}, dates)


def run_customer_activity(ctx: StepContext, days: Days) -> StepResult:
    keys, asset = day_keys(days), "gold/mart_customer_activity"
    dates = sorted(
        set(affected_dates(ctx, silver_table("events"), keys, "event_date"))
        | set(affected_dates(ctx, FACT_ORDERS, keys, "order_date"))
    )
    ctx.ensure(MART_CUSTOMER_ACTIVITY)
    events = frame(ctx, silver_table("events"), In("event_date", dates or NO_DATES), ("user_id", "event_date", "event_type"))
    fact = frame(ctx, FACT_ORDERS, In("order_date", dates or NO_DATES), ("customer_id", "order_date", "qty", "sales_amount"))
    activity = ctx.engine.planned(("customer_activity",), {"events": events, "fact": fact}, lambda given: (  # built once
        gold.customer_activity(given["events"], given["fact"])), "table")  # per process; a row per customer and day
    fact_totals, events_in = totals(ctx.engine, fact, "sales_amount"), events.count()
    where = In("activity_date", dates or NO_DATES)
    specs = ev.index(specs_for(asset))

    def audit(head: int) -> list[CheckOutcome]:
        written = totals(ctx.engine, frame(ctx, MART_CUSTOMER_ACTIVITY, where, ("events", "orders", "sales"),
                                           snapshot_id=head), "events", "orders", "sales")
        return [
            ev.matching(specs["totals_match"],
                        sales={"mart": written["sales"], "fact": fact_totals["sales_amount"]},
                        events={"mart": written["events"], "silver": events_in},
                        orders={"mart": written["orders"], "fact": fact_totals["rows"]}),
            ev.non_empty(specs["non_empty"], written["rows"]),
        ]

    write = audited_write(ctx, MART_CUSTOMER_ACTIVITY, asset, keys, output(ctx, activity, MART_CUSTOMER_ACTIVITY.schema),
                          where, ctx.props(asset, keys), schema_columns(MART_CUSTOMER_ACTIVITY), audit)
    counts = {"rows_in": events_in + fact_totals["rows"], "rows_out": activity.count()}
    return StepResult(MART_CUSTOMER_ACTIVITY, write, counts, dates)
