"""Column lineage: derived from the transforms, stored up to date, and what the UI is given."""

import json
import re
import subprocess
import sys

import pytest

from lakehouse import lineage
from lakehouse.tables import (FACT_ORDERS, MART_CUSTOMER_ACTIVITY, MART_DAILY_SALES, bronze_table, dimension_table,
                              silver_table)
from lakehouse.contracts import CONTRACTS

OUTPUTS = [*(silver_table(s) for s in CONTRACTS), FACT_ORDERS, MART_DAILY_SALES, MART_CUSTOMER_ACTIVITY,
           dimension_table("customers"), dimension_table("products")]
INPUTS = {t.identifier: t for t in [*(bronze_table(s) for s in CONTRACTS), *(silver_table(s) for s in CONTRACTS),
                                    FACT_ORDERS]}


@pytest.fixture(scope="module")
def derived():
    return lineage.derive()


def test_the_stored_lineage_is_the_one_the_transforms_give(derived):
    digest, stored = lineage.read()
    assert digest == lineage.code_digest(), "run `lakehouse lineage --write` and commit lakehouse/column_lineage.json"
    assert stored == derived


def test_every_column_of_every_silver_and_gold_table_traces_to_real_input_columns(derived):
    assert set(derived) == {t.identifier for t in OUTPUTS}
    for table in OUTPUTS:
        columns = derived[table.identifier]
        assert list(columns) == table.schema.names, table.identifier  # every column, in table order
        for column, deps in columns.items():
            source = table.identifier.split(".")[1]
            constant = column == "_flags" and not CONTRACTS[source].flags()  # no flag rules: always null
            assert bool(deps) != constant, f"{table.identifier}.{column} <- {deps}"
            for source, name in deps:
                assert name in INPUTS[source].schema.names, f"{table.identifier}.{column} <- {source}.{name}"


def test_lineage_follows_what_the_transforms_compute(derived):
    silver, fact = derived["silver.orders"], derived["gold.fact_orders"]
    assert silver["qty"] == [("bronze.orders", "qty")]
    assert silver["sales_amount"] == [("bronze.orders", "qty"), ("bronze.orders", "unit_price")]  # DERIVED
    assert silver["region"] == [("silver.customers", "region")]  # the customers lookup, not bronze
    assert silver["category"] == [("silver.products", "category")]
    assert derived["silver.events"]["event_date"] == [("bronze.events", "timestamp")]
    assert ("bronze.customers", "email") in derived["silver.customers"]["_row_hash"]
    assert fact["customer_known"] == [("silver.orders", "_flags")]
    daily = derived["gold.mart_daily_sales"]
    assert daily["units"] == [("gold.fact_orders", "qty")]
    assert daily["orders"] == [("gold.fact_orders", "order_id")]  # a count of fact rows: their key
    activity = derived["gold.mart_customer_activity"]
    assert activity["customer_id"] == [("gold.fact_orders", "customer_id"), ("silver.events", "user_id")]
    assert activity["page_views"] == [("silver.events", "event_type")]
    assert activity["events"] == [("silver.events", "event_id")]  # not the zeros of the orders branch
    assert derived["gold.dim_customer"]["valid_from"] == [("silver.customers", "_ingest_date")]


def test_a_stale_or_missing_stored_file_is_derived_at_load_with_a_warning(tmp_path, monkeypatch, derived):
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / "home"))  # no copy kept from elsewhere
    stale = tmp_path / "stale.json"
    document = json.loads(lineage.STORED.read_text())
    document["digest"] = "0" * 16
    document["tables"] = {}
    stale.write_text(json.dumps(document))
    with pytest.warns(UserWarning, match="out of date.*lakehouse lineage --write"):
        assert lineage.current(stale) == derived
    with pytest.warns(UserWarning, match="missing"):
        assert lineage.current(tmp_path / "absent.json") == derived


def test_a_derivation_is_kept_for_the_next_process_of_the_same_code(tmp_path, monkeypatch, derived):
    # Declarations kept elsewhere have no stored file: the daemon, the code server and every run
    # would each derive it (seconds apiece) without the copy kept under LAKEHOUSE_HOME.
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / "home"))
    keep = lineage.cached(lineage.code_digest())
    keep.parent.mkdir(parents=True)
    keep.write_text('{"digest": "x", "tables": []}')  # damaged: derived again, and replaced
    lineage.current.cache_clear()
    with pytest.warns(UserWarning, match=f"derived at load .* and kept in {re.escape(str(keep))}"):
        assert lineage.current(tmp_path / "absent.json") == derived
    lineage.current.cache_clear()  # as a new process: no derivation now
    monkeypatch.setattr(lineage, "derive", lambda: pytest.fail("derived again"))
    with pytest.warns(UserWarning, match=f"missing, so column lineage was taken from {re.escape(str(keep))}.*lakehouse lineage --write"):
        assert lineage.current(tmp_path / "absent.json") == derived
    lineage.current.cache_clear()


def test_cli_prints_a_table_and_names_the_tables_it_knows():
    shown = subprocess.run([sys.executable, "-m", "lakehouse.cli", "lineage", "gold.mart_daily_sales"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "  units <- gold.fact_orders.qty" in shown.stdout.splitlines()
    unknown = subprocess.run([sys.executable, "-m", "lakehouse.cli", "lineage", "gold.nope"],
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "gold.mart_daily_sales" in unknown.stderr and "Traceback" not in unknown.stderr


def test_deriving_leaves_the_engines_session_working():
    """sqlframe has one DuckDB session per process: deriving must not take it over."""
    import pyarrow as pa

    from lakehouse.resources.engine import Engine

    with Engine("duckdb") as engine:
        before = engine.from_arrow(pa.table({"a": [1, 2, 3]}))
        lineage.derive()
        assert engine.to_arrow(before.select("a"))["a"].to_pylist() == [1, 2, 3]
