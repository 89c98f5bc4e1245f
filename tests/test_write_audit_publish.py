"""Write-audit-publish on Iceberg branches: checked fast-forward, failed audits leave the branch."""

from collections import namedtuple

import pyarrow as pa
import pytest
from pyiceberg.expressions import EqualTo

from lakehouse.iceberg import BranchWriter, TableStore, catalog_from_settings

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


class EngineWrites(BranchWriter):
    """Data an engine writes to a branch itself (as Spark's writer does), here through PyIceberg."""

    def __init__(self, store, data, fail=False):
        self.store, self.data, self.fail = store, data, fail

    def write(self, identifier, branch, where, snapshot_properties):
        written = self.store.replace_where(identifier, self.data, where, snapshot_properties, branch=branch)
        if self.fail:
            raise RuntimeError("the engine died after writing its branch")
        return written


def test_an_engine_written_branch_reaches_main_in_one_step_and_a_stale_one_is_dropped_and_shown(store, caplog):
    """An unaudited write by an engine (the quarantine on Spark) goes to a `write-` branch that
    main takes at once. A failed write drops its branch; one left by a dead process is listed
    by `lakehouse status` and dropped by the table's next such write once it is stale."""
    from lakehouse.summary import branches, render_branches

    head = store.load("silver.t").current_snapshot().snapshot_id
    for name in ("write-20200101T000000-deadbeef", "audit-t-2026-03-01-abcdef12"):  # a crash's, a failed audit's
        store.load("silver.t").manage_snapshots().create_branch(snapshot_id=head, branch_name=name).commit()
    shown = render_branches(store)
    assert "write-20200101T000000-deadbeef" in shown and "stopped midway" in shown and "blocking check" in shown

    with pytest.raises(RuntimeError, match="engine died"):
        store.replace_where("silver.t", EngineWrites(store, pa.table({"k": ["x"], "day": ["3"]}, schema=SCHEMA),
                                                     fail=True), EqualTo("day", "3"), {})
    assert rows(store) == ["a"]  # main never took the failed write
    assert "dropping branch write-20200101T000000-deadbeef" in caplog.text

    result = store.replace_where("silver.t", EngineWrites(store, pa.table({"k": ["b"], "day": ["2"]}, schema=SCHEMA)),
                                 EqualTo("day", "2"), {"dagster.run_id": "r9"})
    table = store.load("silver.t")
    assert rows(store) == ["a", "b"] and table.current_snapshot().snapshot_id == result.snapshot_id
    assert table.current_snapshot().summary["dagster.run_id"] == "r9" and result.branch is None
    assert [b["branch"] for b in branches(store)] == ["audit-t-2026-03-01-abcdef12"]  # kept: a failed audit's


def test_a_filter_takes_whole_files_only_when_every_file_it_may_match_holds_only_its_rows(store):
    """`takes_whole_files` decides, from the files' column metrics, whether Spark's writer may
    overwrite by the filter in one commit (else it deletes the rows, then appends); Iceberg's own
    refusal is the safety net. tests/test_oracle.py sees both outcomes in real steps on Spark."""
    from pyiceberg.expressions import GreaterThanOrEqual, In

    # One file with day 1 (the fixture's), one holding days 3 and 4 together.
    store.replace_where("silver.t", pa.table({"k": ["c", "d"], "day": ["3", "4"]}, schema=SCHEMA),
                        In("day", ["3", "4"]), {})
    assert store.takes_whole_files("silver.t", EqualTo("day", "1"))
    assert store.takes_whole_files("silver.t", GreaterThanOrEqual("day", "3"))  # the second file, by its bounds
    assert store.takes_whole_files("silver.t", EqualTo("day", "9"))  # no file: nothing to split
    assert not store.takes_whole_files("silver.t", EqualTo("day", "3"))  # the file also holds day 4
    # A set proves a file whole only when its bounds are one value (Iceberg's rule: "35" lies
    # between "3" and "4"), so a file of two days is split even by a set naming both.
    assert not store.takes_whole_files("silver.t", In("day", ["1", "3", "4"]))
