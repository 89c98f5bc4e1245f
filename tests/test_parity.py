"""One transform code path, two engines: identical tables from DuckDB (sqlframe) and Spark."""

import datetime as dt

import pytest

from lakehouse.contracts import CONTRACTS
from lakehouse.steps.context import BUILT_FROM_SILVER
from lakehouse.generate import generate
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.resources.landing import LocalLandingZone
from lakehouse.tables import DIMENSION_SOURCES, dimension_table
from lakehouse.settings import load_settings
from pipeline_helpers import TABLES, process_day, process_dimensions, table_rows

START = dt.date(2026, 3, 1)
DAYS = [START + dt.timedelta(days=i) for i in range(3)]  # day 2 has the extra column, day 3 the renamed header


@pytest.fixture(scope="module")
def lakes(tmp_path_factory):
    """The same landing zone processed on each engine: {engine: (settings, store)}."""
    landing = tmp_path_factory.mktemp("landing")
    generate(LocalLandingZone(f"file://{landing}"), days=len(DAYS), start=START, seed=21, dirty=True, scale=0.5)
    out = {}
    for engine in ("duckdb", "spark"):
        home = tmp_path_factory.mktemp(engine)
        settings = load_settings({"LAKEHOUSE_HOME": str(home), "LAKEHOUSE_LANDING_URI": f"file://{landing}"})
        for day in DAYS:
            process_day(settings, engine, day)
        process_dimensions(settings, engine)
        out[engine] = settings, TableStore(catalog_from_settings(settings))
    return out


@pytest.fixture(scope="module")
def stores(lakes):
    return {engine: store for engine, (_, store) in lakes.items()}


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


@pytest.mark.parametrize("identifier, runs", [(f"silver.{s}", len(DAYS)) for s in CONTRACTS]
                         + [(t, len(DAYS)) for t in ("gold.fact_orders", "gold.mart_daily_sales",
                                                      "gold.mart_customer_activity")]
                         + [(dimension_table(s).identifier, 1) for s in DIMENSION_SOURCES]
                         + [("silver.quarantine", len(DAYS) * len(CONTRACTS))])
def test_spark_writes_these_with_its_own_iceberg_writer_and_the_same_snapshot_properties(stores, identifier, runs):
    """On the spark engine silver, the quarantine, the fact, the marts and the dimensions are written by
    Spark's Iceberg writer (the executors write the files; the snapshot says which Spark application),
    with the properties the DuckDB path's PyIceberg commits carry, which the steps downstream read.
    The branches of the unaudited quarantine writes are gone once main has taken them."""
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

    assert len(ours(spark)) == len(spark) == runs
    assert not [b for b in stores["spark"].load(identifier).metadata.refs if b.startswith("write-")]
    assert ours(duck) == ours(spark)


def test_lakehouse_query_reads_what_spark_wrote(lakes):
    """`lakehouse query` reads a table's data files with DuckDB, which is the table only without
    delete files: Spark's row-level deletes must stay copy-on-write. Counts and sums through it
    are the DuckDB path's, and what PyIceberg reads of the same tables."""
    from lakehouse.query import run_query

    settings, store = lakes["spark"]
    for identifier in TABLES:
        tasks = list(store.load(identifier).scan().plan_files())
        assert tasks and not any(t.delete_files for t in tasks), identifier
    sql = ("select (select count(*) from silver.orders) as orders, (select sum(qty) from silver.orders) as units, "
           "(select sum(sales) from gold.mart_daily_sales) as sales, (select count(*) from silver.quarantine) as aside, "
           "(select count(*) from gold.fact_orders) as facts, (select count(*) from silver.customers) as versions")
    spark, duck = run_query(settings, sql), run_query(lakes["duckdb"][0], sql)
    assert spark == duck
    read = {name: store.read(identifier).num_rows for name, identifier in (
        ("orders", "silver.orders"), ("aside", "silver.quarantine"), ("facts", "gold.fact_orders"),
        ("versions", "silver.customers"))}
    header, _, values = spark.splitlines()[:3]
    shown = dict(zip(header.split(), values.split()))
    assert {name: int(shown[name].replace(",", "")) for name in read} == read, spark


def test_spark_replaces_whole_files_in_one_commit_and_deletes_rows_only_where_a_file_splits(stores):
    """`overwrite(where)` is one commit when the filter takes whole files (the fact: each write's files
    hold one batch of ingest dates); the daily sales mart rewrites some days of a month whose
    files hold other days too, which takes a row-level DELETE, then the append (both paths
    give the DuckDB path's rows: test_both_engines_write_identical_tables)."""
    def deletes(identifier):
        return sum(1 for s in stores["spark"].load(identifier).snapshots()
                   if s.summary and s.summary.operation.value == "delete")

    assert deletes("gold.fact_orders") == 0
    assert deletes("gold.mart_daily_sales") >= 1
