"""Backfills: a range of days in one run equals the same days one at a time; reprocessing a range."""

import dataclasses
import datetime as dt
import json
from decimal import Decimal

import dagster as dg
import pyarrow.compute as pc
import pytest
from pyiceberg.expressions import And, GreaterThanOrEqual, LessThanOrEqual

from lakehouse.contracts import CONTRACTS
from lakehouse.generate import generate
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.resources.landing import LocalLandingZone
from lakehouse.settings import load_settings
from pipeline_helpers import (
    TABLES,
    execute_range,
    process_day,
    process_dimensions,
    table_rows,
)

START = dt.date(2026, 1, 5)
# Eight days: the generator's dirty defects all fall in its first six, and late orders and
# corrections reach up to five days back.
DAYS = [START + dt.timedelta(days=i) for i in range(8)]
BRONZE = ("bronze.orders", "bronze.customers", "bronze.products", "bronze.events")
# Columns that say when or by which run a row was written, not what it holds.
WHEN = {"bronze.rejected_files": ("rejected_at",), "ops.ingestion_log": ("first_seen", "processed_at")}


def lake(tmp_path_factory, name: str, landing):
    settings = load_settings({"LAKEHOUSE_HOME": str(tmp_path_factory.mktemp(name)), "LAKEHOUSE_LANDING_URI": landing,
                              "LAKEHOUSE_START_DATE": START.isoformat()})
    return settings, TableStore(catalog_from_settings(settings))


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    path = tmp_path_factory.mktemp("landing")
    generate(LocalLandingZone(f"file://{path}"), days=len(DAYS), start=START, seed=5, dirty=True, scale=0.1)
    return f"file://{path}"


@pytest.fixture(scope="module")
def day_by_day(tmp_path_factory, landing):
    settings, store = lake(tmp_path_factory, "daily", landing)
    for day in DAYS:
        process_day(settings, "duckdb", day)
    process_dimensions(settings, "duckdb")
    return settings, store


@pytest.fixture(scope="module")
def one_run(tmp_path_factory, landing):
    settings, store = lake(tmp_path_factory, "ranged", landing)
    run_id = execute_range(settings, DAYS[0], DAYS[-1])
    process_dimensions(settings, "duckdb")
    return settings, store, run_id


def rows(store: TableStore, identifier: str) -> list[dict]:
    table = store.read(identifier)
    return table_rows(store, identifier) if not WHEN.get(identifier) else sorted(
        (r for r in table.drop_columns([*WHEN[identifier], "run_id"]).to_pylist()),
        key=lambda r: tuple(str(v) for v in r.values()))


def test_eight_days_in_one_run_equal_eight_single_days_row_for_row(day_by_day, one_run):
    (_, daily), (_, ranged, _) = day_by_day, one_run
    for identifier in (*BRONZE, *TABLES, "bronze.rejected_files", "ops.ingestion_log"):
        expected, got = rows(daily, identifier), rows(ranged, identifier)
        assert expected, identifier
        assert got == expected, f"{identifier}: {len(got)} rows in one run vs {len(expected)} day by day"


def test_the_range_is_one_commit_per_table_and_one_dagster_run(day_by_day, one_run):
    (_, daily), (settings, ranged, run_id) = day_by_day, one_run
    def publishes(store, identifier):  # times main moved, less the empty snapshot audit branches start from
        return len(store.load(identifier).metadata.snapshot_log) - 1

    for identifier in ("bronze.orders", "silver.customers", "silver.orders", "gold.fact_orders", "gold.mart_daily_sales"):
        assert publishes(ranged, identifier) == 1, identifier
        assert publishes(daily, identifier) == len(DAYS), identifier
    summary = ranged.load("silver.orders").current_snapshot().summary.additional_properties
    assert summary["lakehouse.partition_range"] == f"{DAYS[0]}..{DAYS[-1]}"

    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        assert len(instance.get_runs(dg.RunsFilter(tags={"dagster/asset_partition_range_start": DAYS[0].isoformat()}))) == 1
        records = instance.fetch_materializations(dg.AssetKey(["silver", "orders"]), limit=100).records
        assert sorted(r.partition_key for r in records if r.run_id == run_id) == [d.isoformat() for d in DAYS]
        meta = records[0].asset_materialization.metadata
        assert meta["partitions"].value == len(DAYS) and "| partition |" in meta["per_partition"].value
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey(["silver", "orders"]), "accounting")])
        evaluation = next(iter(check.values())).event.dagster_event.event_specific_data
        assert evaluation.passed and evaluation.metadata["message"].value == f"ok in all {len(DAYS)} partitions"


def test_per_partition_check_results_are_recorded_day_by_day(day_by_day, one_run):
    """Dagster records a range run's check once; ops.dq_results has every day's result."""
    (_, daily), (_, ranged, _) = day_by_day, one_run

    # Whole-table uniqueness of a transactional table is one result per write, like the clock's freshness.
    per_write = {("silver/orders", "keys_unique"), ("silver/events", "keys_unique"), ("gold/fact_orders", "keys_unique")}

    def results(store):
        return [r for r in store.read("ops.dq_results").to_pylist()
                if (r["asset"].startswith(("bronze/", "silver/")) or r["asset"] == "gold/fact_orders")
                and r["check_name"] not in ("freshness", "schema_drift")]  # per write, or the clock's

    def per_day(store):
        return {(r["asset"], r["partition"], r["check_name"], r["passed"], r["observed"])
                for r in results(store) if (r["asset"], r["check_name"]) not in per_write}

    # A check that counts what later days did to a day's rows is a snapshot of what was known:
    # one range run knows every day; a day's own run knows that day and the days before it.
    # (Corrections arriving later, orders re-sent later, customers landing later.)
    hindsight = {("silver/orders", "superseded"), ("gold/fact_orders", "non_empty"),
                 ("silver/orders", "references:customers")}
    got = per_day(ranged)
    assert {partition for _, partition, *_ in got} == {d.isoformat() for d in DAYS}
    assert {r for r in got if r[::2][:2] not in hindsight} == {r for r in per_day(daily) if r[::2][:2] not in hindsight}
    assert {r[:3] for r in got} == {r[:3] for r in per_day(daily)}
    # The range run's superseded counts are the final truth: the rows set aside as superseded.
    superseded = sum(1 for r in ranged.read("silver.quarantine").to_pylist()
                     if r["source"] == "orders" and r["rules"] == ["superseded"])
    assert superseded > 0 and sum(r[4] for r in got if r[0] == "silver/orders" and r[2] == "superseded") == superseded
    assert superseded == sum(1 for r in daily.read("silver.quarantine").to_pylist()
                             if r["source"] == "orders" and r["rules"] == ["superseded"])
    for store, partitions in ((ranged, {f"{DAYS[0]}..{DAYS[-1]}"}), (daily, {d.isoformat() for d in DAYS})):
        table_wide = [r for r in results(store) if (r["asset"], r["check_name"]) in per_write]
        assert {(r["asset"], r["check_name"]) for r in table_wide} == per_write
        assert {r["partition"] for r in table_wide} == partitions and all(r["passed"] for r in table_wide)
    ranges = {r["partition"] for r in ranged.read("ops.dq_results").to_pylist() if r["check_name"] == "totals_match"}
    assert ranges == {f"{DAYS[0]}..{DAYS[-1]}"}


def test_reprocessing_a_past_range_after_a_rule_change_replaces_only_those_days(tmp_path_factory, landing,
                                                                                monkeypatch):
    settings, store = lake(tmp_path_factory, "rules", landing)
    days = DAYS
    execute_range(settings, days[0], days[-1])
    before = {t: store.read(t) for t in ("silver.orders", "gold.fact_orders", "gold.mart_daily_sales")}
    snapshots = {t: store.load(t).current_snapshot().snapshot_id for t in ("silver.orders", "gold.mart_daily_sales")}
    moves = {t: len(store.load(t).metadata.snapshot_log) for t in snapshots}

    # The contract changes: an order of more than 4 units is now quarantined (a fifth of
    # the orders here, so the quarantine share allowed goes up with it).
    config = tmp_path_factory.mktemp("dq") / "quality.yaml"
    config.write_text("assets:\n  silver/orders:\n    quarantine_share: {max_share: 0.5}\n")
    monkeypatch.setenv("LAKEHOUSE_DQ_CONFIG", str(config))
    orders = CONTRACTS["orders"]
    stricter = tuple(dataclasses.replace(c, max_value=4) if c.name == "qty" else c for c in orders.columns)
    monkeypatch.setitem(CONTRACTS, "orders", dataclasses.replace(orders, columns=stricter))
    first, last = days[2], days[4]
    silver_and_gold = [dg.AssetKey(["silver", "orders"]), dg.AssetKey(["gold", "fact_orders"]),
                       dg.AssetKey(["gold", "mart_daily_sales"]), dg.AssetKey(["gold", "mart_customer_activity"])]
    execute_range(settings, first, last, selection=silver_and_gold)

    silver = store.load("silver.orders")
    assert len(silver.metadata.snapshot_log) == moves["silver.orders"] + 1  # main moved once for the three days
    commit = []  # the snapshots of that one commit: PyIceberg's overwrite is a delete then an append
    for snapshot in store.main_history("silver.orders"):
        if snapshot.snapshot_id == snapshots["silver.orders"]:
            break
        commit.append(snapshot.summary.additional_properties)
    assert {c["lakehouse.partition_range"] for c in commit} == {f"{first}..{last}"}
    in_range = And(GreaterThanOrEqual("_ingest_date", first.isoformat()), LessThanOrEqual("_ingest_date", last.isoformat()))
    old = before["silver.orders"]
    old_in_range = old.filter(pc.and_(pc.greater_equal(old["_ingest_date"], first), pc.less_equal(old["_ingest_date"], last)))
    now_in_range = store.read("silver.orders", in_range)
    # Copy-on-write: files holding those days are rewritten, so the net change is what counts.
    deleted = sum(int(c.get("deleted-records", 0)) for c in commit)
    added = sum(int(c.get("added-records", 0)) for c in commit)
    assert deleted - added == old.num_rows - silver.scan().count() >= old_in_range.num_rows - now_in_range.num_rows > 0

    # Only those days changed, and the rows of other days that share an order id with them
    # (silver is unique on the key across days: the key's rows are classified again, together);
    # inside them, exactly the rows the new rule quarantines are gone.
    rerun_keys = {str(k).strip() for k in store.read("bronze.orders", in_range)["order_id"].to_pylist() if k}
    outside = [r for r in table_rows(store, "silver.orders")
               if not first <= r["_ingest_date"] <= last and r["order_id"] not in rerun_keys]
    old_outside = sorted((r for r in old.drop_columns(["_ingested_at"]).to_pylist()
                          if not first <= r["_ingest_date"] <= last and r["order_id"] not in rerun_keys),
                         key=lambda r: tuple(str(v) for v in r.values()))
    assert outside == old_outside and len(outside) > 0.5 * sum(1 for r in old.to_pylist()
                                                               if not first <= r["_ingest_date"] <= last)
    shared = [r for r in table_rows(store, "silver.orders")
              if not first <= r["_ingest_date"] <= last and r["order_id"] in rerun_keys]
    assert all(r["qty"] <= 4 for r in shared)
    assert max(now_in_range["qty"].to_pylist()) <= 4 < max(old_in_range["qty"].to_pylist())
    dropped = {r["order_id"] for r in old_in_range.to_pylist()} - set(now_in_range["order_id"].to_pylist())
    too_many = [r for r in store.read("silver.quarantine").to_pylist() if r["source"] == "orders"
                and "qty.out_of_range" in r["rules"] and int(json.loads(r["original"])["qty"]) > 4]
    # The new rule, only where it was rerun: those days, and rows of other days with their keys.
    assert {r["ingest_date"] for r in too_many} >= set(days[2:5])
    assert all(first <= r["ingest_date"] <= last or r["record_key"] in rerun_keys for r in too_many)
    # Every order that left silver broke the new rule; one that broke it and stayed has an
    # earlier valid version, which wins now (the latest valid version of a key is its row).
    old_rows = {r["order_id"]: r for r in old_in_range.to_pylist()}
    assert dropped and all(old_rows[k]["qty"] > 4 for k in dropped)
    now_rows = {r["order_id"]: r for r in now_in_range.to_pylist()}
    stayed = {k for k, r in old_rows.items() if r["qty"] > 4} - dropped
    assert all(now_rows[k]["_ingest_date"] <= old_rows[k]["_ingest_date"] and now_rows[k]["qty"] <= 4 for k in stayed)

    # The marts: every order date the range touched is recomputed from the new fact.
    fact = store.read("gold.fact_orders")
    assert set(fact["order_id"].to_pylist()) == set(store.read("silver.orders")["order_id"].to_pylist())
    mart = {(r["order_date"], r["channel"], r["region"], r["category"]): r for r in store.read("gold.mart_daily_sales").to_pylist()}
    expected: dict = {}
    for r in fact.to_pylist():
        key = (r["order_date"], r["channel"], r["region"] or "Unknown", r["category"] or "Unknown")
        orders_, sales = expected.get(key, (0, Decimal(0)))
        expected[key] = (orders_ + 1, sales + r["sales_amount"])
    assert {k: (v["orders"], v["sales"]) for k, v in mart.items()} == expected
    assert len(store.load("gold.mart_daily_sales").metadata.snapshot_log) == moves["gold.mart_daily_sales"] + 1
