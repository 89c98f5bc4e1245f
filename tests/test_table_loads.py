"""A step's store loads each table from the catalog once, and again only to start a write
(`TableStore(keep_loaded=True)`); what other processes commit meanwhile is never lost."""

from __future__ import annotations

import datetime as dt
from collections import namedtuple

import pyarrow as pa
import pytest
from pyiceberg.expressions import EqualTo

from lakehouse.generate import generate
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.resources.landing import open_landing_zone
from lakehouse.tables import dimension_table
from pipeline_helpers import process_day, process_dimensions

Outcome = namedtuple("Outcome", "name passed blocking")
SCHEMA = pa.schema([("k", pa.string()), ("day", pa.string())])


def _written_by(step: str) -> set[str]:
    """The tables a step writes, each write starting from a fresh load (its checks' results, too)."""
    kind, _, source = step.partition(" ")
    return {"ops.dq_results"} | {
        "bronze": {f"bronze.{source}", "bronze.rejected_files", "ops.ingestion_log"},
        "run_silver": {f"silver.{source}", "silver.quarantine"},
        "run_fact_orders": {"gold.fact_orders"},
        "run_daily_sales": {"gold.mart_daily_sales"},
        "run_customer_activity": {"gold.mart_customer_activity"},
        "dimension": {dimension_table(source).identifier if source else ""},
    }[kind]


def test_each_step_loads_a_table_once_and_once_more_for_each_table_it_writes(lakehouse_env):
    generate(open_landing_zone(lakehouse_env.landing_uri), days=2, start=dt.date(2026, 3, 10), seed=5, dirty=True)
    steps: list = []
    for day in (dt.date(2026, 3, 10), dt.date(2026, 3, 11)):
        process_day(lakehouse_env, "duckdb", day, steps=steps)
        process_dimensions(lakehouse_env, "duckdb", steps=steps)
    assert len(steps) == 2 * (4 + 4 + 3 + 2), [name for name, _ in steps]
    for name, store in steps:
        loads = dict(store.loads)
        assert loads and max(loads.values()) <= 2, (name, loads)
        assert {t for t, n in loads.items() if n == 2} <= _written_by(name), (name, loads)
    # Before: 217 loads of our own for a small day's steps, silver.orders 16 in one silver step.
    assert sum(sum(store.loads.values()) for _, store in steps[:13]) < 100, [dict(s.loads) for _, s in steps[:13]]


@pytest.fixture
def stores(lakehouse_env):
    """A step's store, and another process's (a plain store), on one table holding day 1."""
    catalog = catalog_from_settings(lakehouse_env)
    other = TableStore(catalog_from_settings(lakehouse_env))
    other.ensure_table("silver.t", SCHEMA)
    other.replace_where("silver.t", pa.table({"k": ["a"], "day": ["1"]}, schema=SCHEMA), EqualTo("day", "1"), {})
    return TableStore(catalog, keep_loaded=True), other


def _keys(store: TableStore) -> list[str]:
    return sorted(r["k"] for r in store.read("silver.t").to_pylist())


def _write_day(store: TableStore, day: str, key: str) -> None:
    store.replace_where("silver.t", pa.table({"k": [key], "day": [day]}, schema=SCHEMA), EqualTo("day", day), {})


def test_a_step_reads_one_state_of_a_table_while_a_plain_store_sees_each_commit(stores):
    step, other = stores
    assert _keys(step) == ["a"]
    before = step.current_snapshot_id("silver.t")
    _write_day(other, "2", "b")  # another run commits during the step
    assert _keys(other) == ["a", "b"]
    assert _keys(step) == ["a"] and step.current_snapshot_id("silver.t") == before
    assert step.loads["silver.t"] == 1
    assert other.loads["silver.t"] >= 3  # a plain store asks the catalog each time


def test_a_steps_writes_after_another_runs_commit_keep_that_commit_and_start_fresh(stores, caplog):
    step, other = stores
    assert _keys(step) == ["a"]
    _write_day(other, "2", "b")
    _write_day(step, "3", "c")  # a write to main starts from fresh metadata: one load, no conflict
    assert step.loads["silver.t"] == 2
    assert _keys(other) == ["a", "b", "c"] and _keys(step) == ["a", "b", "c"]

    _write_day(other, "4", "d")
    written = step.audited_replace("silver.t", pa.table({"k": ["e"], "day": ["5"]}, schema=SCHEMA),
                                   EqualTo("day", "5"), {}, "audit-t-5", lambda table, head: [])
    assert written.published and step.loads["silver.t"] == 3  # its base loaded fresh, the rest as it committed
    assert _keys(other) == ["a", "b", "c", "d", "e"]
    # Built on fresh metadata, neither write met a conflict to retry (a stale start would have).
    retried = [r.getMessage() for r in caplog.records if "retry" in r.getMessage() or "moved" in r.getMessage()]
    assert not retried, retried

    # An append through the table the step holds, stale by another commit: PyIceberg's retry
    # refreshes it in place, and both rows stay (as the steps' append to ops.dq_results).
    _write_day(other, "6", "f")
    step.load("silver.t").append(pa.table({"k": ["g"], "day": ["7"]}, schema=SCHEMA))
    assert _keys(other) == ["a", "b", "c", "d", "e", "f", "g"]


def test_a_failed_audit_and_its_branch_are_seen_by_the_step_and_by_everyone(stores):
    step, other = stores
    written = step.audited_replace("silver.t", pa.table({"k": ["x"], "day": ["1"]}, schema=SCHEMA),
                                   EqualTo("day", "1"), {}, "audit-t-1",
                                   lambda table, head: [Outcome("no_x", False, True)])
    assert not written.published
    assert "audit-t-1" in step.load("silver.t").metadata.refs
    assert "audit-t-1" in other.load("silver.t").metadata.refs
    assert _keys(step) == ["a"] and _keys(other) == ["a"]
    _write_day(other, "2", "b")  # the step's table is now behind main
    assert step.remove_branches("silver.t", "audit-t-") == ["audit-t-1"]
    table = other.load("silver.t")
    assert "audit-t-1" not in table.metadata.refs
    assert sorted(r["k"] for r in table.scan().to_arrow().to_pylist()) == ["a", "b"]
