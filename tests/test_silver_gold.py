"""Silver and gold over the dirty sample: exact accounting, exact totals, late data, reruns."""

import datetime as dt
from collections import Counter
from decimal import Decimal

import pytest
from pyiceberg.expressions import EqualTo

from lakehouse.generate import generate
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.resources.landing import LocalLandingZone
from lakehouse.settings import load_settings
from lakehouse.accounting import accounting, unchanged_by_day
from lakehouse.contracts import CONTRACTS
from lakehouse.ingest import load_bronze
from lakehouse.resources.engine import Engine
from lakehouse.steps import StepContext, run_daily_sales, run_fact_orders, run_silver
from lakehouse.layout import SOURCES
from pipeline_helpers import FIXED_NOW, TABLES, process_day, process_dimensions, table_rows


def accounting_by_day(store, source):
    days = [d.isoformat() for d in DAYS]
    unchanged = unchanged_by_day(store, source)
    return {(source, d): c for d, c in accounting(store, source, days, unchanged=unchanged).items()}

START = dt.date(2026, 3, 1)
DAYS = [START + dt.timedelta(days=i) for i in range(7)]


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    home = tmp_path_factory.mktemp("lake")
    settings = load_settings({"LAKEHOUSE_HOME": str(home)})
    report = generate(LocalLandingZone(settings.landing_uri), days=7, start=START, seed=33, dirty=True, scale=0.5)
    results = {day: process_day(settings, "duckdb", day) for day in DAYS}
    process_dimensions(settings, "duckdb")
    return settings, TableStore(catalog_from_settings(settings)), report, results


def test_every_bronze_row_ends_in_exactly_one_place(lake):
    settings, store, _, results = lake
    for source in SOURCES:
        for (_, day), counts in accounting_by_day(store, source).items():
            bronze = store.read(f"bronze.{source}", EqualTo("_ingest_date", day)).num_rows
            silver = store.read(f"silver.{source}", EqualTo("_ingest_date", day)).num_rows
            aside = [r for r in table_rows(store, "silver.quarantine")
                     if r["source"] == source and r["ingest_date"].isoformat() == day]
            kinds = Counter(r["rules"][0] if r["rules"] in (["duplicate"], ["superseded"]) else "quarantine"
                            for r in aside)
            assert (counts["bronze"], counts["silver"]) == (bronze, silver)
            assert {k: counts[k] for k in kinds} == dict(kinds)
            # Landed = silver + quarantined + duplicates + superseded (+ unchanged, counted by the step).
            unchanged = counts["unchanged"] if CONTRACTS[source].history == "snapshot" else 0
            assert bronze == silver + len(aside) + unchanged, (source, day)
    for day in DAYS:
        for source in SOURCES:
            assert results[day][f"silver.{source}"].counts["rows_in"] == store.read(
                f"bronze.{source}", EqualTo("_ingest_date", day.isoformat())).num_rows


def test_counts_match_the_defects_the_generator_injected(lake):
    _, _, report, results = lake
    injected = Counter()
    for d in report.defects:
        injected[d.defect] += d.count
    total = Counter()
    for day in DAYS:
        for source in SOURCES:
            for name, value in results[day][f"silver.{source}"].counts.items():
                total[f"{source}:{name}"] += value
    final = {}
    for source in SOURCES:
        for (src, _), counts in accounting_by_day(lake[1], source).items():
            for k, v in counts.items():
                final[f"{src}:{k}"] = final.get(f"{src}:{k}", 0) + v
    # Re-sent and corrected records (upstream retries on later days), counted where they ended up.
    assert final["orders:duplicate"] == injected["duplicate_order_id"] + injected["resent_order"]
    assert final["orders:superseded"] == injected["corrected_order"]
    assert final["events:duplicate"] == injected["resent_event"] and final["events:superseded"] == 0
    silver_orders = table_rows(lake[1], "silver.orders")
    late = [o for o in silver_orders if o["customer_id"] == "C8000001"]
    assert len(late) == injected["late_customer_order"] and all(o["region"] == "West" for o in late)
    flagged = sum("unknown_customer" in (o["_flags"] or "") for o in silver_orders)
    assert flagged == injected["unknown_customer_id"]  # the late customer's orders were re-enriched
    assert total["orders:rule:order_id.required"] == injected["null_order_id"]
    assert total["orders:rule:order_date.invalid"] == injected["unparseable_order_date"]
    assert total["orders:rule:qty.out_of_range"] == injected["negative_qty"]
    assert total["orders:flag:unknown_product"] == injected["unknown_product_id"]
    assert total["customers:rule:customer_id.required"] == injected["null_customer_id"]
    assert total["customers:duplicate"] == injected["duplicate_customer_id"]
    assert total["customers:flag:email.pattern"] == injected["bad_email"]
    assert total["orders:quarantine"] == injected["null_order_id"] + injected["unparseable_order_date"] + injected["negative_qty"]
    assert total["events:quarantine"] == 0 and total["products:quarantine"] == 0


def test_gold_totals_equal_silver_to_the_cent_with_late_orders_on_their_order_date(lake):
    _, store, _, _ = lake
    silver = table_rows(store, "silver.orders")
    fact = table_rows(store, "gold.fact_orders")
    mart = table_rows(store, "gold.mart_daily_sales")
    expected: dict = {}
    for o in silver:
        expected[o["order_date"]] = expected.get(o["order_date"], Decimal("0")) + o["qty"] * o["unit_price"]
    by_day: dict = {}
    for m in mart:
        by_day[m["order_date"]] = by_day.get(m["order_date"], Decimal("0")) + m["sales"]
    assert len(fact) == len(silver)
    assert by_day == expected  # every order_date, to the cent
    assert sum(by_day.values()) == sum(o["sales_amount"] for o in fact)
    assert min(by_day) < START  # late orders (placed before the first ingest date) are in their own days
    assert sum(m["orders"] for m in mart) == len(silver)
    late = [o for o in silver if o["order_date"] < o["_ingest_date"]]
    assert late


def test_dimensions_hold_the_latest_version_of_every_key(lake):
    _, store, _, _ = lake
    dim = table_rows(store, "gold.dim_customer")
    versions = table_rows(store, "silver.customers")
    latest = {}
    for v in sorted(versions, key=lambda v: (v["_ingest_date"], v["_row_number"])):
        latest[v["customer_id"]] = v
    assert {d["customer_id"] for d in dim} == set(latest)
    for d in dim:
        assert d["phone"] == latest[d["customer_id"]]["phone"] and d["valid_from"] == latest[d["customer_id"]]["_ingest_date"]
    assert len(versions) > len(dim)  # history kept in silver, one row per key in gold


def test_customer_activity_counts_events_and_orders(lake):
    _, store, _, _ = lake
    activity = table_rows(store, "gold.mart_customer_activity")
    events = table_rows(store, "silver.events")
    assert sum(a["events"] for a in activity) == len(events)
    assert sum(a["purchases"] for a in activity) == sum(e["event_type"] == "purchase" for e in events)
    assert sum(a["sales"] for a in activity) == sum(o["sales_amount"] for o in table_rows(store, "gold.fact_orders"))


def test_rerunning_a_partition_changes_nothing(lake):
    settings, store, _, _ = lake
    before = {t: table_rows(store, t) for t in TABLES}
    process_day(settings, "duckdb", DAYS[3], run_id="rerun")
    process_dimensions(settings, "duckdb", run_id="rerun")
    after = {t: table_rows(store, t) for t in TABLES}
    for t in TABLES:
        gone = [r for r in before[t] if r not in after[t]]
        new = [r for r in after[t] if r not in before[t]]
        assert (gone, new) == ([], []), t


def test_a_new_day_with_a_late_order_touches_only_the_affected_days(lake):
    settings, store, _, _ = lake
    new_day = DAYS[-1] + dt.timedelta(days=1)
    late_date = DAYS[0] - dt.timedelta(days=10)
    header = "order_id,order_date,customer_id,product_id,qty,unit_price,channel\n"
    body = (f"LATE-1,{late_date:%d/%m/%Y},C000001,P00001,3,\"10,50\",web\n"
            f"NEW-1,{new_day:%d/%m/%Y},C000002,P00002,1,2.25,store\n")
    LocalLandingZone(settings.landing_uri).put(f"retail/orders/ingest_date={new_day}/orders.csv", (header + body).encode())
    mart_before = {(m["order_date"], m["channel"], m["region"], m["category"]): m for m in table_rows(store, "gold.mart_daily_sales")}
    fact_rows = len(table_rows(store, "gold.fact_orders"))

    results = process_day(settings, "duckdb", new_day)

    mart = results["gold.mart_daily_sales"]
    assert mart.affected_dates == [late_date.isoformat(), new_day.isoformat()]
    assert mart.counts["rows_in"] == 2 < fact_rows  # read only the affected days of the fact
    after = {(m["order_date"], m["channel"], m["region"], m["category"]): m for m in table_rows(store, "gold.mart_daily_sales")}
    untouched = {k: v for k, v in after.items() if k[0] not in (late_date, new_day)}
    assert untouched == mart_before
    assert [v["sales"] for k, v in after.items() if k[0] == late_date] == [Decimal("31.50")]
    snapshot = store.load("gold.mart_daily_sales").current_snapshot()
    assert snapshot.summary["dagster.partition_key"] == new_day.isoformat()


def test_mart_refresh_after_a_fix_replaces_the_old_dates(lake):
    """Rewriting an ingest date whose orders moved to other dates clears the dates they left."""
    settings, store, _, _ = lake
    day = DAYS[-1] + dt.timedelta(days=2)
    zone = LocalLandingZone(settings.landing_uri)
    key = f"retail/orders/ingest_date={day}/orders.csv"
    header = "order_id,order_date,customer_id,product_id,qty,unit_price,channel\n"
    zone.put(key, (header + f"MOVE-1,{day - dt.timedelta(days=20):%d/%m/%Y},C000001,P00001,1,5.00,web\n").encode())
    process_day(settings, "duckdb", day)
    old_date = day - dt.timedelta(days=20)
    assert any(m["order_date"] == old_date for m in table_rows(store, "gold.mart_daily_sales"))
    zone.put(key, (header + f"MOVE-1,{day:%d/%m/%Y},C000001,P00001,1,5.00,web\n").encode())  # the shop fixed the date
    results = process_day(settings, "duckdb", day)
    assert old_date.isoformat() in results["gold.mart_daily_sales"].affected_dates
    assert not any(m["order_date"] == old_date for m in table_rows(store, "gold.mart_daily_sales"))


def test_a_mart_step_between_a_silver_write_and_its_fact_write_audits_against_the_facts_silver(lake):
    """Runs of different days interleave their steps: the mart of day A may run after day B's
    silver moved an order out of day A and before B's fact caught up. The mart is audited
    against the silver the fact was built from (not silver now), so it publishes the fact's
    numbers; B's own fact and mart then bring the correction (crash trial, CI of stop 20)."""
    settings, store, _, _ = lake
    zone = LocalLandingZone(settings.landing_uri)
    day_a, day_b = DAYS[-1] + dt.timedelta(days=5), DAYS[-1] + dt.timedelta(days=6)
    header = "order_id,order_date,customer_id,product_id,qty,unit_price,channel\n"
    zone.put(f"retail/orders/ingest_date={day_a}/orders.csv",
             (header + f"INTER-1,{day_a:%d/%m/%Y},C000001,P00001,1,5.00,web\n").encode())
    zone.put(f"retail/orders/ingest_date={day_b}/orders.csv",  # upstream corrects the quantity a day later
             (header + f"INTER-1,{day_a:%d/%m/%Y},C000001,P00001,2,5.00,web\n").encode())
    process_day(settings, "duckdb", day_a)

    load_bronze(LocalLandingZone(settings.landing_uri), store, CONTRACTS["orders"], [day_b], "b", now=FIXED_NOW)
    with Engine("duckdb") as eng:
        run_silver(StepContext(store, eng, "b"), "orders", [day_b])
    with Engine("duckdb") as eng:  # day A's mart, before day B's fact
        mart = run_daily_sales(StepContext(store, eng, "a-again"), [day_a])
    assert mart.published, [c for c in mart.checks if not c.passed]

    def sales_on_day_a():
        return [m["sales"] for m in table_rows(store, "gold.mart_daily_sales") if m["order_date"] == day_a]

    assert sales_on_day_a() == [Decimal("5.00")]  # what the fact holds until B's fact runs
    with Engine("duckdb") as eng:
        assert run_fact_orders(StepContext(store, eng, "b"), [day_b]).published
    with Engine("duckdb") as eng:
        assert run_daily_sales(StepContext(store, eng, "b"), [day_b]).published
    assert sales_on_day_a() == [Decimal("10.00")]


def test_a_fact_that_disagrees_with_the_silver_it_was_built_from_blocks_the_mart(lake):
    """The pinned audit still catches a wrong fact: its write says which silver it came from."""
    import pyarrow.compute as pc
    from pyiceberg.expressions import EqualTo as Eq

    from lakehouse.steps import BUILT_FROM_SILVER

    settings, store, _, _ = lake
    day = DAYS[2]
    fact = store.read("gold.fact_orders", Eq("_ingest_date", day.isoformat()))
    wrong = fact.set_column(fact.schema.get_field_index("sales_amount"), "sales_amount",
                            pc.multiply(fact["sales_amount"], 2).cast(fact.schema.field("sales_amount").type))
    silver_now = store.load("silver.orders").current_snapshot().snapshot_id
    store.replace_where("gold.fact_orders", wrong, Eq("_ingest_date", day.isoformat()),
                        {"dagster.asset_key": "gold/fact_orders", BUILT_FROM_SILVER: str(silver_now)})
    with Engine("duckdb") as eng:
        mart = run_daily_sales(StepContext(store, eng, "tampered"), [day])
    failed = [c.name for c in mart.checks if not c.passed]
    assert not mart.published and failed == ["totals_match"], failed
    with Engine("duckdb") as eng:  # the fact step finds the drift and rebuilds the day from silver
        assert run_fact_orders(StepContext(store, eng, "heal"), [day]).published
    with Engine("duckdb") as eng:
        assert run_daily_sales(StepContext(store, eng, "heal"), [day]).published


def test_the_fact_step_of_one_day_rebuilds_another_days_partition_that_drifted_from_silver(lake):
    """The drift comparison covers the days outside the step's own: a fact row changed behind
    the pipeline's back, a row removed, a row added (a run that failed between its silver and
    fact writes leaves such a fact): each is found, and that day is rebuilt from silver."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyiceberg.expressions import EqualTo as Eq

    settings, store, _, _ = lake
    tampered, own = DAYS[1].isoformat(), DAYS[4]
    want = table_rows(store, "gold.fact_orders")
    fact = store.read("gold.fact_orders", Eq("_ingest_date", tampered))
    assert fact.num_rows >= 2
    qty = fact.schema.get_field_index("qty")
    stranger = fact.slice(0, 1).set_column(fact.schema.get_field_index("order_id"), "order_id",
                                           pa.array(["NOT-IN-SILVER"], fact.schema.field("order_id").type))
    tampers = {
        "a changed row": fact.set_column(qty, "qty", pc.add(fact["qty"], pa.scalar(1, fact.schema.field("qty").type))),
        "a removed row": fact.slice(1),
        "an added row": pa.concat_tables([fact, stranger]),
    }
    for what, broken in tampers.items():
        store.replace_where("gold.fact_orders", broken, Eq("_ingest_date", tampered),
                            {"dagster.asset_key": "gold/fact_orders"})
        assert table_rows(store, "gold.fact_orders") != want, what
        with Engine("duckdb") as eng:
            result = run_fact_orders(StepContext(store, eng, "heal-other"), [own])
        assert result.published and result.counts["rewritten_partitions"] == 2, (what, result.counts)
        assert table_rows(store, "gold.fact_orders") == want, what
    with Engine("duckdb") as eng:  # nothing drifts now: the step rewrites its own day only
        assert run_fact_orders(StepContext(store, eng, "again"), [own]).counts["rewritten_partitions"] == 1
