"""One transform code path, two engines: identical tables from DuckDB (sqlframe) and Spark."""

import datetime as dt

import pytest

from lakehouse.contracts import CONTRACTS
from lakehouse.steps.context import BUILT_FROM_SILVER
from lakehouse.generate import generate
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.resources.landing import LocalLandingZone
from lakehouse.settings import load_settings
from pipeline_helpers import TABLES, process_day, process_dimensions, table_rows

START = dt.date(2026, 3, 1)
DAYS = [START + dt.timedelta(days=i) for i in range(3)]  # day 2 has the extra column, day 3 the renamed header


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    landing = tmp_path_factory.mktemp("landing")
    generate(LocalLandingZone(f"file://{landing}"), days=len(DAYS), start=START, seed=21, dirty=True, scale=0.5)
    out = {}
    for engine in ("duckdb", "spark"):
        home = tmp_path_factory.mktemp(engine)
        settings = load_settings({"LAKEHOUSE_HOME": str(home), "LAKEHOUSE_LANDING_URI": f"file://{landing}"})
        for day in DAYS:
            process_day(settings, engine, day)
        process_dimensions(settings, engine)
        out[engine] = TableStore(catalog_from_settings(settings))
    return out


@pytest.mark.parametrize("identifier", TABLES)
def test_both_engines_write_identical_tables(stores, identifier):
    duck, spark = (table_rows(stores[e], identifier) for e in ("duckdb", "spark"))
    assert duck, f"{identifier} is empty: the parity check would prove nothing"
    assert duck == spark


def test_the_fixtures_exercise_the_dirty_paths(stores):
    quarantine = table_rows(stores["duckdb"], "silver.quarantine")
    rules = {r for row in quarantine for r in row["rules"]}
    assert {"order_id.required", "order_date.invalid", "qty.out_of_range", "customer_id.required"} <= rules
    orders = table_rows(stores["duckdb"], "silver.orders")
    assert {"unknown_customer", "unknown_product"} <= {f for o in orders for f in o["_flags"].split(",") if f}
    assert any(o["order_date"] < o["_ingest_date"] for o in orders)  # late orders


@pytest.mark.parametrize("identifier", [f"silver.{s}" for s in CONTRACTS] + ["gold.fact_orders"])
def test_spark_writes_these_with_its_own_iceberg_writer_and_the_same_snapshot_properties(stores, identifier):
    """On the spark engine silver and the fact are written by Spark's Iceberg writer (the executors
    write the files; the snapshot says which Spark application), with the properties the
    DuckDB path's PyIceberg commits carry, which the steps downstream read."""
    def writes(store):
        table = store.load(identifier)
        return [s.summary.additional_properties for s in table.snapshots()
                if s.summary and s.summary.additional_properties.get("dagster.asset_key")]

    duck, spark = writes(stores["duckdb"]), writes(stores["spark"])
    assert all("spark.app.id" in w for w in spark) and not any("spark.app.id" in w for w in duck)

    def ours(side):  # PyIceberg commits a write as several snapshots (delete, appends), each with them
        props = [{k: ("<a snapshot id>" if k == BUILT_FROM_SILVER else v) for k, v in w.items()
                  if k.startswith(("dagster.", "lakehouse."))} for w in side]
        return [p for i, p in enumerate(props) if i == 0 or p != props[i - 1]]

    assert len(ours(spark)) == len(spark) == len(DAYS)
    assert ours(duck) == ours(spark)
