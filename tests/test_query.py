"""`lakehouse query --as-of`: time travel to a snapshot id or a point in time, as a user types it."""

import datetime as dt
import os
import re
import shlex
import subprocess
import sys
import time

import pyarrow as pa
import pytest
from pyiceberg.expressions import AlwaysTrue

from lakehouse.assets.metadata import time_travel
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.query import QueryError, run_query

SCHEMA = pa.schema([pa.field("id", pa.int64())])


@pytest.fixture
def history(lakehouse_env):
    """ops.probe with two snapshots: 3 rows, then 5; and a moment between them."""
    store = TableStore(catalog_from_settings(lakehouse_env))
    store.ensure_table("ops.probe", SCHEMA)
    table = store.load("ops.probe")
    table.append(pa.table({"id": [1, 2, 3]}, schema=SCHEMA))
    first = store.load("ops.probe").current_snapshot().snapshot_id
    time.sleep(0.05)
    between = dt.datetime.now(dt.timezone.utc)
    time.sleep(0.05)
    store.load("ops.probe").overwrite(pa.table({"id": [1, 2, 3, 4, 5]}, schema=SCHEMA), overwrite_filter=AlwaysTrue())
    return lakehouse_env, first, between


def count(output: str) -> int:
    return int(output.split()[-1])


def test_as_of_a_snapshot_or_a_time_reads_the_table_as_it_was(history):
    settings, first, between = history
    sql = "select count(*) as n from ops.probe"
    assert count(run_query(settings, sql)) == 5
    assert count(run_query(settings, sql, as_of=str(first))) == 3
    assert count(run_query(settings, sql, as_of=between.isoformat())) == 3
    assert count(run_query(settings, sql, as_of=between.replace(tzinfo=None).isoformat())) == 3  # UTC by default
    assert count(run_query(settings, sql, as_of="2001-01-01T00:00:00")) == 0  # before the first write


def test_as_of_names_what_is_wrong(history):
    settings, _, _ = history
    with pytest.raises(QueryError, match="no table has a snapshot 42"):
        run_query(settings, "select 1", as_of="42")
    with pytest.raises(QueryError, match="neither a snapshot id nor a time"):
        run_query(settings, "select 1", as_of="yesterday")


def test_the_time_travel_query_in_the_metadata_runs_as_printed(history):
    settings, first, _ = history
    markdown = time_travel("ops.probe", first)["time_travel"].value
    command = re.search(r"```\n(lakehouse query .*)\n```", markdown).group(1)
    args = shlex.split(command)[1:]
    result = subprocess.run([sys.executable, "-m", "lakehouse.cli", *args], env=dict(os.environ),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert count(result.stdout) == 3
    bad = subprocess.run([sys.executable, "-m", "lakehouse.cli", "query", "--as-of", "soon", "select 1"],
                         env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "neither a snapshot id nor a time" in bad.stderr and "Traceback" not in bad.stderr
