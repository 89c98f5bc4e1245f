"""Write-audit-publish on Iceberg branches: checked fast-forward, failed audits leave the branch."""

from collections import namedtuple

import pyarrow as pa
import pytest
from pyiceberg.expressions import EqualTo

from lakehouse.iceberg import TableStore, catalog_from_settings

Outcome = namedtuple("Outcome", "name passed blocking")
SCHEMA = pa.schema([("k", pa.string()), ("day", pa.string())])


@pytest.fixture
def store(lakehouse_env):
    store = TableStore(catalog_from_settings(lakehouse_env))
    store.ensure_table("silver.t", SCHEMA)
    store.replace_where("silver.t", pa.table({"k": ["a"], "day": ["1"]}, schema=SCHEMA), EqualTo("day", "1"), {})
    return store


def rows(store, snapshot_id=None):
    return sorted(r["k"] for r in store.read("silver.t", snapshot_id=snapshot_id).to_pylist())


def test_passing_audit_publishes_and_drops_the_branch(store):
    seen = []

    def audit(table, head):
        seen.append(rows(store, head))  # the audit sees main's rows plus the new ones
        return [Outcome("keys_unique", True, True)]

    result = store.audited_replace("silver.t", pa.table({"k": ["b"], "day": ["2"]}, schema=SCHEMA),
                                   EqualTo("day", "2"), {"dagster.run_id": "r1"}, "audit-r1", audit)
    assert result.published and seen == [["a", "b"]]
    table = store.load("silver.t")
    assert rows(store) == ["a", "b"] and table.current_snapshot().snapshot_id == result.snapshot_id
    assert list(table.metadata.refs) == ["main"]
    assert table.current_snapshot().summary["dagster.run_id"] == "r1"


def test_failed_blocking_audit_leaves_main_untouched_and_the_branch_for_inspection(store):
    before = store.load("silver.t").current_snapshot().snapshot_id
    result = store.audited_replace("silver.t", pa.table({"k": ["bad"], "day": ["1"]}, schema=SCHEMA),
                                   EqualTo("day", "1"), {}, "audit-r2",
                                   lambda table, head: [Outcome("keys_unique", False, True)])
    table = store.load("silver.t")
    assert not result.published and result.branch == "audit-r2"
    assert table.current_snapshot().snapshot_id == before and rows(store) == ["a"]
    assert rows(store, table.metadata.refs["audit-r2"].snapshot_id) == ["bad"]  # replaced day 1 on the branch
    assert store.remove_branches("silver.t", "audit-") == ["audit-r2"]
    assert list(store.load("silver.t").metadata.refs) == ["main"]


def test_failed_warning_checks_do_not_block(store):
    result = store.audited_replace("silver.t", pa.table({"k": ["c"], "day": ["3"]}, schema=SCHEMA),
                                   EqualTo("day", "3"), {}, "audit-r3",
                                   lambda table, head: [Outcome("duplicates", False, False)])
    assert result.published and rows(store) == ["a", "c"]


def test_a_commit_to_main_during_the_audit_is_never_discarded(store):
    calls = []

    def audit(table, head):
        calls.append(head)
        if len(calls) == 1:  # another writer publishes a different partition meanwhile
            store.replace_where("silver.t", pa.table({"k": ["other"], "day": ["9"]}, schema=SCHEMA), EqualTo("day", "9"), {})
        return [Outcome("keys_unique", True, True)]

    result = store.audited_replace("silver.t", pa.table({"k": ["mine"], "day": ["2"]}, schema=SCHEMA),
                                   EqualTo("day", "2"), {}, "audit-r4", audit)
    assert result.published and len(calls) == 2  # redone on a branch from the new head
    assert rows(store) == ["a", "mine", "other"]
