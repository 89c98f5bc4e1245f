"""Data-quality checks: every evaluator passing and failing, WAP blocking, results history."""

import datetime as dt

import dagster as dg
import pyarrow as pa
import pytest

from lakehouse.checks import evaluate as ev
from lakehouse.checks.catalog import specs_for
from lakehouse.checks.config import spec
from lakehouse.checks.model import CheckSpec
from lakehouse.generate import generate
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.resources.landing import LocalLandingZone
from lakehouse.settings import load_settings
from lakehouse.summary import last_check_results, render_all_checks, render_checks
from lakehouse.wiring import DAILY_JOB, build_definitions
from lakehouse.layout import SOURCES
from pipeline_helpers import process_day

WARN_ROWS = CheckSpec("rule:qty.out_of_range", "WARN", "", max_rows=0)
ERROR_SHARE = CheckSpec("quarantine_share", "ERROR", "", max_share=0.25)


@pytest.mark.parametrize("spec_, observed, total, passed", [
    (WARN_ROWS, 0, 100, True), (WARN_ROWS, 3, 100, False),
    (ERROR_SHARE, 25, 100, True), (ERROR_SHARE, 26, 100, False),
])
def test_counted(spec_, observed, total, passed):
    outcome = ev.counted(spec_, observed, total, ({"row": 1},))
    assert outcome.passed is passed and outcome.observed == observed
    assert outcome.sample == (() if passed else ({"row": 1},))
    assert outcome.blocking is (spec_.severity == "ERROR")


def test_keys():
    s = CheckSpec("keys", "ERROR", "")
    good = pa.table({"k": ["a", "b"]})
    bad = pa.table({"k": ["a", None, "b", "b", "b"]})
    assert ev.null_keys(s, good, ["k"]).passed and ev.unique_keys(s, good, ["k"]).passed
    nulls, repeats = ev.null_keys(s, bad, ["k"]), ev.unique_keys(s, bad, ["k"])
    assert (nulls.passed, nulls.observed) == (False, 1)
    assert (repeats.passed, repeats.observed) == (False, 2) and repeats.sample == ({"k": "b", "count_all": 3},)


def test_schema_drift():
    s = CheckSpec("schema_drift", "WARN", "")
    assert ev.schema_drift(s, None, {"a": "string"}).passed
    assert ev.schema_drift(s, {"a": "string"}, {"a": "string"}).passed
    drift = ev.schema_drift(s, {"a": "string", "b": "int"}, {"a": "long", "c": "string"})
    assert not drift.passed and drift.observed == 3
    assert drift.details == {"added": ["c"], "removed": ["b"], "retyped": {"a": "string -> long"}}


def test_matching_non_empty_and_freshness():
    s = CheckSpec("totals_match", "ERROR", "")
    assert ev.matching(s, sales={"mart": 5, "fact": 5}).passed
    off = ev.matching(s, sales={"mart": 5, "fact": 6}, orders={"mart": 1, "fact": 1})
    assert not off.passed and "sales: mart=5, fact=6" in off.message
    assert ev.non_empty(s, 1).passed and not ev.non_empty(s, 0).passed
    fresh = CheckSpec("freshness", "WARN", "", options={"max_age_hours": 36})
    now = dt.datetime(2026, 3, 10, tzinfo=dt.timezone.utc)
    assert ev.freshness(fresh, now - dt.timedelta(hours=35), now).passed
    assert not ev.freshness(fresh, now - dt.timedelta(hours=37), now).passed
    assert not ev.freshness(fresh, None, now).passed


def test_severities_and_thresholds_come_from_config_and_can_be_overridden(tmp_path, monkeypatch):
    assert spec("silver/orders", "non_empty", "").severity == "ERROR"  # asset override in quality.yaml
    assert spec("silver/events", "non_empty", "").severity == "WARN"
    assert spec("silver/orders", "rule:qty.out_of_range", "").max_rows == 0
    override = tmp_path / "dq.yaml"
    override.write_text("assets:\n  silver/orders:\n    rule:qty.out_of_range: {severity: error, max_rows: 5}\n")
    monkeypatch.setenv("LAKEHOUSE_DQ_CONFIG", str(override))
    changed = spec("silver/orders", "rule:qty.out_of_range", "")
    assert (changed.severity, changed.max_rows) == ("ERROR", 5)
    assert next(s for s in specs_for("silver/orders") if s.name == "rule:qty.out_of_range").blocking


def _outcomes(results):
    return {(name, o.name): o for name, r in results.items() for o in r.checks}


def test_clean_data_passes_every_check(tmp_path):
    settings = load_settings({"LAKEHOUSE_HOME": str(tmp_path)})
    start = dt.date(2026, 3, 1)
    generate(LocalLandingZone(settings.landing_uri), days=2, start=start, seed=4, scale=0.3)
    for day in (start, start + dt.timedelta(days=1)):
        results = process_day(settings, "duckdb", day)
        failed = {k: o.message for k, o in _outcomes(results).items() if not o.passed}
        assert failed == {} and all(r.published for r in results.values())


def test_dirty_data_fires_warn_checks_with_the_injected_counts_and_still_publishes(tmp_path):
    settings = load_settings({"LAKEHOUSE_HOME": str(tmp_path)})
    day = dt.date(2026, 3, 1)
    report = generate(LocalLandingZone(settings.landing_uri), days=1, start=day, seed=4, scale=0.3, dirty=True)
    injected = report.defect_counts()
    results = process_day(settings, "duckdb", day)
    checks = _outcomes(results)
    assert all(r.published for r in results.values())
    expected = {
        ("silver.orders", "rule:order_id.required"): injected["null_order_id"],
        ("silver.orders", "rule:order_date.invalid"): injected["unparseable_order_date"],
        ("silver.orders", "rule:qty.out_of_range"): injected["negative_qty"],
        ("silver.orders", "duplicates"): injected["duplicate_order_id"],
        ("silver.orders", "references:customers"): injected["unknown_customer_id"],
        ("silver.orders", "references:products"): injected["unknown_product_id"],
        ("silver.customers", "rule:customer_id.required"): injected["null_customer_id"],
        ("silver.customers", "duplicates"): injected["duplicate_customer_id"],
        ("silver.customers", "flag:email.pattern"): injected["bad_email"],
    }
    for key, count in expected.items():
        assert (checks[key].passed, checks[key].observed, checks[key].severity) == (False, count, "WARN"), key
    assert checks[("silver.orders", "rule:order_date.invalid")].sample  # offending rows for the UI
    failing_errors = [k for k, o in checks.items() if o.blocking and not o.passed]
    assert failing_errors == []
    store = TableStore(catalog_from_settings(settings))
    rows = [r for r in last_check_results(store) if r["asset"] == "silver/orders"]
    assert {r["check_name"]: r["observed"] for r in rows}["rule:qty.out_of_range"] == injected["negative_qty"]
    assert "silver/orders" in render_checks(store)
    listing = render_all_checks(store)
    assert "rule:qty.out_of_range" in listing and "keys_unique" in listing  # failed and passed ones
    line = next(l for l in listing.splitlines() if "silver/orders" in l and "rule:qty.out_of_range" in l)
    assert "FAIL" in line and f" {injected['negative_qty']} " in line


def _materialized(instance, path, partition):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(path.split("/")), asset_partitions=[partition]), limit=10)
    return len(records.records)


def _requested(result, path):
    return {str(k) for k in result.get_requested_partitions(dg.AssetKey(path.split("/")))}


def test_a_blocking_failure_publishes_nothing_and_stops_downstream_now_and_through_automation(lakehouse_env):
    today = dt.datetime.now(dt.timezone.utc).date()
    zone = LocalLandingZone(lakehouse_env.landing_uri)
    generate(zone, days=1, start=today, seed=8, scale=0.3)
    defs = build_definitions(lakehouse_env)
    instance = dg.DagsterInstance.from_config(str(lakehouse_env.dagster_home))
    job = defs.resolve_job_def(DAILY_JOB)
    key = today.isoformat()

    # Positive control: once bronze lands, the next automation tick asks for silver.
    evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance)  # the sensor's first tick
    bronze = [dg.AssetKey(["bronze", s]) for s in SOURCES]
    assert job.execute_in_process(instance=instance, partition_key=key, asset_selection=bronze).success
    evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=evaluation.cursor)
    assert key in _requested(evaluation, "silver/customers")  # its only input is bronze/customers

    # Now most of the day's orders arrive with impossible dates: quarantine_share (ERROR) breaks.
    header = "order_id,order_date,customer_id,product_id,qty,unit_price,channel\n"
    bad = "".join(f"X{i},99/99/2026,C000001,P00001,1,1.00,web\n" for i in range(3000))
    zone.put(f"retail/orders/ingest_date={key}/orders_broken.csv", (header + bad).encode())
    store = TableStore(catalog_from_settings(lakehouse_env))
    before = store.load("silver.orders").current_snapshot() if store.exists("silver.orders") else None

    result = job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False)

    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure and e.step_key == "silver__orders")
    message = failure.step_failure_data.error.message
    assert "quarantine_share" in message and "nothing was published" in message
    assert "99/99/2026" in message  # a few offending rows
    branch = next(n for n in store.load("silver.orders").metadata.refs if n.startswith(f"audit-silver-orders-{key}"))
    assert f"--branch {branch}" in message
    after = store.load("silver.orders")
    if before is not None:  # readers see the previous snapshot
        assert after.current_snapshot().snapshot_id == before.snapshot_id
    assert store.read("silver.orders").num_rows == 0  # main: still nothing (first write of the table)
    on_branch = store.read("silver.orders", snapshot_id=after.metadata.refs[branch].snapshot_id)
    assert on_branch.num_rows > 0  # the bad run's data is kept for inspection
    for downstream in ("silver/orders", "gold/fact_orders", "gold/mart_daily_sales"):
        assert _materialized(instance, downstream, key) == 0, downstream
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()
                   if e.asset_key == dg.AssetKey(["silver", "orders"])}
    assert evaluations["quarantine_share"].passed is False
    assert evaluations["quarantine_share"].severity == dg.AssetCheckSeverity.ERROR
    from lakehouse.query import run_query

    on_main = run_query(lakehouse_env, "select count(*) as n from silver.orders")
    on_audit = run_query(lakehouse_env, "select count(*) as n from silver.orders", branch)
    assert on_main.split()[-1] == "0" and int(on_audit.split()[-1]) == on_branch.num_rows > 0
    broken = run_query(lakehouse_env, "select count(*) as n from silver.quarantine where source_file like '%broken%'")
    assert broken.split()[-1] == "3000"  # and why: every broken row is in the quarantine
    dq = [r for r in last_check_results(store) if r["asset"] == "silver/orders" and r["check_name"] == "quarantine_share"]
    assert dq and dq[0]["passed"] is False and dq[0]["published"] is False and dq[0]["branch"] == branch

    evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=evaluation.cursor)
    assert key not in _requested(evaluation, "gold/fact_orders")
    assert key not in _requested(evaluation, "gold/mart_daily_sales")

    # Fixing the data and rerunning publishes, and cleans the old audit branch.
    (zone.root / f"retail/orders/ingest_date={key}/orders_broken.csv").unlink()
    assert job.execute_in_process(instance=instance, partition_key=key).success
    assert [n for n in store.load("silver.orders").metadata.refs if n != "main"] == []
    assert _materialized(instance, "gold/fact_orders", key) == 1
    instance.dispose()


def test_schema_drift_warns_with_the_diff_between_materializations(tmp_path):
    settings = load_settings({"LAKEHOUSE_HOME": str(tmp_path)})
    start = dt.date(2026, 3, 1)  # day 2 brings an extra column, day 3 a renamed header
    generate(LocalLandingZone(settings.landing_uri), days=3, start=start, seed=4, scale=0.2, dirty=True)
    drift = {}
    for i in range(3):
        results = process_day(settings, "duckdb", start + dt.timedelta(days=i))
        drift[i] = next(o for o in results["silver.customers"].checks if o.name == "schema_drift")
        drift[f"bronze{i}"] = _bronze_drift(settings, start + dt.timedelta(days=i))
    assert drift[0].passed and drift[1].passed and drift[2].passed  # silver's schema is the contract's
    assert drift["bronze0"]["passed"] is True
    assert drift["bronze1"]["passed"] is False and "coupon_code" in drift["bronze1"]["message"]
    assert drift["bronze2"]["passed"] is False and "cust_id" in drift["bronze2"]["message"]


def _bronze_drift(settings, day):
    store = TableStore(catalog_from_settings(settings))
    rows = [r for r in last_check_results(store)
            if r["asset"] == "bronze/orders" and r["partition"] == day.isoformat() and r["check_name"] == "schema_drift"]
    return rows[0]
