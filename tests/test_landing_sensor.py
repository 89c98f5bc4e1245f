"""The landing sensor tick by tick: what it lists, records, ignores and asks to run."""

import datetime as dt
import os

import dagster as dg
import pytest

from lakehouse import run_workers
from lakehouse.contracts import CONTRACTS
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.ingest import load_bronze
from lakehouse.resources import IcebergResource, LandingZoneResource
from lakehouse.resources.landing import LocalLandingZone, open_landing_zone
from lakehouse.sensors.alerts import failure_message
from lakehouse.sensors.landing import build_landing_sensor, evaluate, run_request, through_gold, Sighting
from lakehouse.sensors.scan import Cursor, Folder, choose_folders
from lakehouse.settings import load_settings
from lakehouse.tables import INGESTION_LOG
from lakehouse.transforms.bronze import merge_log
from lakehouse.wiring import build_definitions
from lakehouse.layout import SOURCES

NOW = dt.datetime(2026, 3, 20, 12, tzinfo=dt.timezone.utc)
DAY = dt.date(2026, 3, 19)
ORDERS = "order_id,order_date,customer_id,product_id,qty,unit_price,channel\n"
ALL_BRONZE = [dg.AssetKey(["bronze", s]) for s in SOURCES]


def orders(n: int, first: int = 1) -> bytes:
    rows = "".join(f"O{i:05d},18/03/2026,C000001,P00001,1,9.99,web\n" for i in range(first, first + n))
    return (ORDERS + rows).encode()


def tick(settings, cursor=None, now=NOW):
    store = TableStore(catalog_from_settings(settings))
    return evaluate(open_landing_zone(settings.landing_uri), store, settings, cursor or Cursor(), now)


def log_rows(settings) -> list[dict]:
    rows = TableStore(catalog_from_settings(settings)).read(INGESTION_LOG.identifier).to_pylist()
    return sorted(rows, key=lambda r: (r["key"], r["first_seen"]))


def load(settings, source: str, day: dt.date, run_id: str = "run-1"):
    store = TableStore(catalog_from_settings(settings))
    return load_bronze(open_landing_zone(settings.landing_uri), store, CONTRACTS[source], day, run_id)


def test_the_walk_lists_recent_folders_every_tick_and_sweeps_older_ones_in_turn():
    today = dt.date(2026, 3, 20)
    folders = [Folder("orders", today - dt.timedelta(days=i)) for i in range(10)]
    cursor, seen_old, cycles = Cursor(), [], []
    for _ in range(4):
        chosen, cursor = choose_folders(folders, today, lookback_days=3, sweep=3, cursor=cursor)
        assert set(folders[:3]) <= set(chosen) and len(chosen) == 6  # 3 recent + 3 older
        seen_old.append({f.day for f in chosen[3:]})
        cycles.append(cursor.cycles)
    assert set().union(*seen_old[:3]) == {f.day for f in folders[3:]}  # 7 older folders within 3 ticks
    assert cycles == [0, 0, 1, 1]
    chosen, moved = choose_folders(folders, today, 3, 0, Cursor())  # no sweep: recent only, a cycle per tick
    assert len(chosen) == 3 and moved.cycles == 1
    assert not cursor.whole  # 7 older folders, 3 a tick: no tick lists them all
    chosen, moved = choose_folders(folders, today, 3, 10, cursor)  # a sweep as large as the history: every tick
    assert len(chosen) == 10 and moved.whole and moved.cycles == cursor.cycles + 1
    assert Cursor.loads(moved.dumps()) == moved
    assert Cursor.loads(Cursor("2026-03-01/orders", 4).dumps()) == Cursor("2026-03-01/orders", 4)
    assert Cursor.loads('{"v": 1, "sweep_after": "x", "cycles": 2, "reported": ["a"]}') == Cursor("x", 2)  # older form
    assert Cursor.loads("not json") == Cursor()


def test_consecutive_landed_days_are_one_run_to_gold_and_a_gap_splits_them():
    def request(day: dt.date, n: int = 1):
        files = [Sighting("orders", day, f"retail/orders/ingest_date={day}/o{i}.csv", f"e{i}", NOW) for i in range(n)]
        return run_request(day, files)

    days = [DAY - dt.timedelta(days=d) for d in (5, 4, 3, 1)]  # a gap before the last day
    gold = [*ALL_BRONZE, dg.AssetKey(["silver", "orders"]), dg.AssetKey(["gold", "fact_orders"])]
    asked = [request(d, n=2) for d in reversed(days)]  # in any order
    span, single = through_gold(asked, gold)
    assert span.partition_key is None and span.asset_selection == gold
    assert (span.tags["dagster/asset_partition_range_start"], span.tags["dagster/asset_partition_range_end"]) == (
        days[0].isoformat(), days[2].isoformat())
    assert span.tags["lakehouse/files"] == "6" and span.tags["lakehouse/trigger"] == "landing_sensor"
    assert single.partition_key == days[3].isoformat() and single.asset_selection == gold
    assert single.run_key == request(days[3], n=2).run_key
    # Asking again gives the same run keys; other files in one of the days give another.
    again = through_gold([request(d, n=2) for d in days], gold)
    assert [r.run_key for r in again] == [span.run_key, single.run_key]
    changed = through_gold([request(days[0], n=3), *[request(d, n=2) for d in days[1:]]], gold)
    assert changed[0].run_key != span.run_key and changed[1].run_key == single.run_key
    assert through_gold([], gold) == []


def test_same_second_uploads_are_all_picked_up_in_one_run(lakehouse_env):
    zone = LocalLandingZone(lakehouse_env.landing_uri)
    keys = [f"retail/orders/ingest_date={DAY}/part-{i}.csv" for i in range(5)]
    for i, key in enumerate(keys):
        zone.put(key, orders(3, first=i * 10))
    stamp = NOW.timestamp() - 60
    for key in keys:  # all five in the very same second
        os.utime(zone.root / key, (stamp, stamp))
    first = tick(lakehouse_env)
    assert [r.partition_key for r in first.requests] == [DAY.isoformat()]
    assert first.requests[0].tags["lakehouse/files"] == "5"
    assert first.requests[0].asset_selection == ALL_BRONZE  # every source of the day, not only orders
    assert [r["status"] for r in log_rows(lakehouse_env)] == ["LANDED"] * 5
    assert {o.asset_key for o in first.observations} == {dg.AssetKey(["raw", "orders"])} and len(first.observations) == 5

    again = tick(lakehouse_env, first.cursor, NOW + dt.timedelta(seconds=30))  # before the run: same request
    assert [r.run_key for r in again.requests] == [first.requests[0].run_key] and not again.observations
    assert len(log_rows(lakehouse_env)) == 5  # each version recorded once


def test_unchanged_reupload_does_nothing_and_a_changed_one_reprocesses(lakehouse_env):
    zone = LocalLandingZone(lakehouse_env.landing_uri)
    key = f"retail/orders/ingest_date={DAY}/orders.csv"
    zone.put(key, orders(10))
    first = tick(lakehouse_env)
    load(lakehouse_env, "orders", DAY)
    assert [(r["status"], r["rows"]) for r in log_rows(lakehouse_env)] == [("INGESTED", 10)]

    zone.put(key, orders(10))  # same bytes, new modification time
    unchanged = tick(lakehouse_env, first.cursor, NOW + dt.timedelta(minutes=1))
    assert unchanged.requests == [] and unchanged.observations == []

    zone.put(key, orders(7))  # new content under the same key
    changed = tick(lakehouse_env, unchanged.cursor, NOW + dt.timedelta(minutes=2))
    assert len(changed.requests) == 1 and changed.requests[0].run_key != first.requests[0].run_key
    result = load(lakehouse_env, "orders", DAY, "run-2")
    assert result.bronze.rows == 7
    store = TableStore(catalog_from_settings(lakehouse_env))
    assert store.read("bronze.orders").num_rows == 7  # replaced, not appended
    assert [(r["status"], r["rows"], r["run_id"]) for r in log_rows(lakehouse_env)] == [
        ("SUPERSEDED", 10, "run-1"), ("INGESTED", 7, "run-2")]
    assert tick(lakehouse_env, changed.cursor, NOW + dt.timedelta(minutes=3)).requests == []


def test_a_late_file_for_an_old_ingest_date_is_found_by_the_sweep(lakehouse_env, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_LANDING_SWEEP_PREFIXES", "2")
    settings = load_settings()
    zone = LocalLandingZone(settings.landing_uri)
    for back in range(1, 8):
        zone.put(f"retail/orders/ingest_date={DAY - dt.timedelta(days=back)}/o.csv", orders(2))
    cursor = tick(settings).cursor  # everything recent was seen; older folders are walked in turn
    late = DAY - dt.timedelta(days=40)
    zone.put(f"retail/orders/ingest_date={late}/late.csv", orders(4))
    found_after = None
    for n in range(1, 10):
        result = tick(settings, cursor, NOW + dt.timedelta(minutes=n))
        cursor = result.cursor
        if any(r.partition_key == late.isoformat() for r in result.requests):
            found_after = n
            break
    assert found_after is not None and found_after <= 4  # 7 older folders, 2 per tick
    assert load(settings, "orders", late).bronze.rows == 4


def test_the_dagster_sensor_returns_requests_observations_and_a_cursor(lakehouse_env, monkeypatch):
    from dagster._core.utils import make_new_run_id

    warmed = []  # the code server's run forkserver is started when a tick requests runs, not before
    monkeypatch.setattr(run_workers, "warm", lambda: warmed.append(1))
    zone = LocalLandingZone(lakehouse_env.landing_uri)
    today = dt.datetime.now(dt.timezone.utc).date()
    zone.put(f"retail/orders/ingest_date={today}/a.csv", orders(2))
    zone.put(f"retail/customers/ingest_date={today}/c.csv", b"customer_id,first_name\nC1,Ann\n")
    sensor = build_landing_sensor(lakehouse_env, [dg.AssetKey(["bronze", s]) for s in CONTRACTS])
    resources = {"landing": LandingZoneResource(uri=lakehouse_env.landing_uri),
                 "iceberg": IcebergResource.from_settings(lakehouse_env)}
    with dg.instance_for_test() as instance:
        result = sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert warmed == [1]
        instance.add_run(dg.DagsterRun(job_name="landing", run_id=make_new_run_id(), tags=result.run_requests[0].tags))
        again = sensor(dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor))
    (request,) = result.run_requests
    assert request.partition_key == today.isoformat()
    assert set(request.asset_selection) == set(ALL_BRONZE)
    assert len(result.asset_events) == 2 and all(e.partition == today.isoformat() for e in result.asset_events)
    assert Cursor.loads(result.cursor).cycles == 1
    assert again.run_requests == [] and warmed == [1]  # its run exists (the daemon's): no request, no start


def test_days_already_asked_for_are_not_asked_again_when_a_span_changes(lakehouse_env):
    """A span's days keep their files' keys: while its run works (the files still LANDED), a
    neighbouring day landing asks for that day alone, not for the span again under a new key."""
    from dagster._core.utils import make_new_run_id

    zone = LocalLandingZone(lakehouse_env.landing_uri)
    today = dt.datetime.now(dt.timezone.utc).date()
    days = [today - dt.timedelta(days=2), today - dt.timedelta(days=1)]
    for day in days:
        zone.put(f"retail/orders/ingest_date={day}/a.csv", orders(2))
    sensor = build_landing_sensor(lakehouse_env, ALL_BRONZE)
    resources = {"landing": LandingZoneResource(uri=lakehouse_env.landing_uri),
                 "iceberg": IcebergResource.from_settings(lakehouse_env)}
    with dg.instance_for_test() as instance:
        first = sensor(dg.build_sensor_context(instance=instance, resources=resources))
        (span,) = first.run_requests
        assert span.tags["dagster/asset_partition_range_start"] == days[0].isoformat()
        assert span.tags["dagster/asset_partition_range_end"] == days[1].isoformat()
        instance.add_run(dg.DagsterRun(job_name="landing", run_id=make_new_run_id(), tags=span.tags))  # the daemon's run

        zone.put(f"retail/orders/ingest_date={today}/a.csv", orders(2))
        second = sensor(dg.build_sensor_context(instance=instance, resources=resources, cursor=first.cursor))
        assert [(r.partition_key, "dagster/asset_partition_range_start" in r.tags) for r in second.run_requests] == [
            (today.isoformat(), False)]
        instance.add_run(dg.DagsterRun(job_name="landing", run_id=make_new_run_id(), tags=second.run_requests[0].tags))
        # A new version of a file of a day in the span is new work: asked for (its neighbours were).
        zone.put(f"retail/orders/ingest_date={days[1]}/a.csv", orders(3))
        third = sensor(dg.build_sensor_context(instance=instance, resources=resources, cursor=second.cursor))
        (again,) = third.run_requests
        assert again.partition_key == days[1].isoformat()


def checks_of(result, source: str) -> dict[str, tuple[bool, str]]:
    return {e.check_name: (e.passed, e.metadata["message"].value) for e in result.get_asset_check_evaluations()
            if e.asset_key == dg.AssetKey(["bronze", source])}


def test_a_day_where_only_customers_landed_loads_all_four_bronze_partitions(lakehouse_env):
    zone = LocalLandingZone(lakehouse_env.landing_uri)
    zone.put(f"retail/customers/ingest_date={DAY}/customers.csv", b"customer_id,first_name\nC1,Ann\nC2,Bo\n")
    first = tick(lakehouse_env)
    (request,) = first.requests
    assert request.partition_key == DAY.isoformat() and request.asset_selection == ALL_BRONZE

    bronze = build_definitions(lakehouse_env).resolve_assets_def(dg.AssetKey(["bronze", "orders"]))
    with dg.instance_for_test() as instance:
        runs = [dg.materialize([bronze], instance=instance, partition_key=request.partition_key,
                               selection=request.asset_selection, tags=request.tags) for _ in range(2)]
    for result in runs:  # the second run of the same day: the same rows, the same verdicts
        assert result.success
        assert {m.asset_key for m in result.asset_materializations_for_node("bronze")} == set(ALL_BRONZE)
        assert all(m.partition == DAY.isoformat() for m in result.asset_materializations_for_node("bronze"))
        for source in ("orders", "products", "events"):
            checks = checks_of(result, source)
            assert checks["non_empty"] == (True, f"no files landed for {source} on {DAY}")
            assert all(passed for name, (passed, _) in checks.items() if name != "freshness"), checks
        assert checks_of(result, "customers")["non_empty"] == (True, "ok")

    store = TableStore(catalog_from_settings(lakehouse_env))
    assert store.read("bronze.customers").num_rows == 2
    assert all(store.read(f"bronze.{s}").num_rows == 0 for s in ("orders", "products", "events"))
    assert [(r["key"], r["status"]) for r in log_rows(lakehouse_env)] == [
        (f"retail/customers/ingest_date={DAY}/customers.csv", "INGESTED")]
    assert tick(lakehouse_env, first.cursor, NOW + dt.timedelta(minutes=1)).requests == []  # nothing new: no run


def test_a_day_whose_files_held_no_rows_still_fails_non_empty(lakehouse_env):
    zone = LocalLandingZone(lakehouse_env.landing_uri)
    zone.put(f"retail/orders/ingest_date={DAY}/header-only.csv", ORDERS.encode())
    zone.put(f"retail/orders/ingest_date={DAY}/_SUCCESS", b"")  # a marker: not a file that landed
    result = load(lakehouse_env, "orders", DAY)
    outcome = next(o for o in result.bronze.audit if o.name == "non_empty")
    assert not outcome.passed and outcome.message == "the partition has no rows"
    products = load(lakehouse_env, "products", DAY)  # no file at all: passes, saying so
    assert [(o.passed, o.message) for o in products.bronze.audit if o.name == "non_empty"] == [
        (True, f"no files landed for products on {DAY}")]


def row(key, etag, status, seen, rows=None):
    return {"key": key, "etag": etag, "status": status, "first_seen": seen, "rows": rows}


def test_merge_log_keeps_history_and_leaves_a_concurrent_landing_alone():
    t0, listed, t2 = NOW, NOW + dt.timedelta(minutes=1), NOW + dt.timedelta(minutes=2)
    earlier = [
        row("a", "1", "INGESTED", t0, 5),   # re-uploaded as a/2 -> SUPERSEDED
        row("a", "2", "LANDED", t0),        # processed now, keeps its first sighting
        row("b", "1", "INGESTED", t0, 3),   # gone from the folder -> REMOVED
        row("c", "1", "LANDED", t2),        # landed after the run listed: not this run's
        row("d", "0", "SUPERSEDED", t0, 1),  # history, kept as is
    ]
    processed = [row("a", "2", "INGESTED", listed, 6), row("d", "1", "INGESTED", listed, 2)]
    keys, out = merge_log(earlier, processed, listed)
    assert keys == {"a", "b", "d"}
    got = sorted((r["key"], r["etag"], r["status"], r["first_seen"]) for r in out)
    assert got == [("a", "1", "SUPERSEDED", t0), ("a", "2", "INGESTED", t0), ("b", "1", "REMOVED", t0),
                   ("d", "0", "SUPERSEDED", t0), ("d", "1", "INGESTED", listed)]


def test_failure_message_names_assets_partition_step_and_link():
    run = dg.DagsterRun(job_name="__ASSET_JOB", run_id="abc-123", asset_selection=frozenset(
        {dg.AssetKey(["silver", "orders"])}), tags={"dagster/partition": "2026-03-19",
                                                   "dagster/sensor_name": "automation_sensor"})
    subject, body = failure_message(run, [("silver__orders", "blocking check(s) failed: quarantine_share " + "x" * 900)],
                                    "http://ui:3000")
    assert subject == "[lakehouse] run failed: 2026-03-19 silver__orders"
    assert "Partition: 2026-03-19" in body and "Failed step silver__orders: blocking check(s) failed" in body
    assert "http://ui:3000/runs/abc-123" in body and len(body) < 1200


@pytest.mark.parametrize("name,value,message", [
    ("LAKEHOUSE_SENSOR_INTERVAL", "0", "whole number"),
    ("LAKEHOUSE_LANDING_SWEEP_PREFIXES", "many", "whole number"),
    ("LAKEHOUSE_ALERT_TOPIC_ARN", "alerts", "SNS topic ARN"),
    ("LAKEHOUSE_UI_URL", "localhost:3000", "http(s) URL"),
])
def test_sensor_settings_errors_name_the_setting(lakehouse_env, monkeypatch, name, value, message):
    from lakehouse.settings import SettingsError

    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name) as err:
        load_settings()
    assert message in str(err.value)
