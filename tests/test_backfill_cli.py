"""`lakehouse backfill`: a real backfill on the instance, carried out by the daemon, one run for the range."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus

from lakehouse.backfill import BackfillError, plan_backfill
from lakehouse.generate import generate
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.resources.landing import LocalLandingZone
from lakehouse.summary import bronze_summary
from lakehouse.layout import SOURCES

LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")
FIRST = dt.date(2026, 2, 1)
DAYS = [FIRST + dt.timedelta(days=i) for i in range(3)]


def backfill(*args):
    return subprocess.run([LAKEHOUSE, "backfill", *args], env=dict(os.environ), capture_output=True, text=True,
                          timeout=600)


def test_backfill_of_a_range_is_one_run_launched_by_the_daemon(lakehouse_env):
    generate(LocalLandingZone(lakehouse_env.landing_uri), days=len(DAYS), start=FIRST, seed=3, scale=0.05)
    result = backfill("--start", str(DAYS[0]), "--end", str(DAYS[-1]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout
    backfill_id = out.split("Backfill ", 1)[1].split()[0]
    assert f"/runs/b/{backfill_id}" in out and f"backfill {backfill_id}: COMPLETED_SUCCESS" in out
    assert f"{DAYS[0]}..{DAYS[-1]} [backfill {backfill_id}]: SUCCESS" in out  # progress, as it happened

    with dg.DagsterInstance.from_config(str(lakehouse_env.dagster_home)) as instance:
        assert instance.get_backfill(backfill_id).status == BulkActionStatus.COMPLETED_SUCCESS
        (run,) = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        assert run.tags["dagster/asset_partition_range_start"] == str(DAYS[0])
        assert run.tags["dagster/asset_partition_range_end"] == str(DAYS[-1])
        assert {k.to_user_string().split("/")[0] for k in run.asset_selection} == {"bronze", "silver", "gold"}
        # The landing sensor saw the files but left their days to the backfill.
        assert not instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "landing_sensor"}))
        others = instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "automation_sensor"}))
        assert all(r.tags.get("dagster/partition") is None for r in others)  # only the dimensions followed
        assert {k.path[1] for r in others for k in r.asset_selection} <= {"dim_customer", "dim_product"}

    store = TableStore(catalog_from_settings(lakehouse_env))
    assert {(p.source, p.ingest_date) for p in bronze_summary(store)} == {
        (s, str(d)) for s in SOURCES for d in DAYS}
    assert store.read("gold.dim_customer").num_rows > 0
    assert len(store.load("silver.orders").metadata.snapshot_log) == 2  # the empty start, then the range



@pytest.mark.parametrize("args, message", [
    (["--start", "2026-02-03", "--end", "2026-02-01"], "--start 2026-02-03 is after --end 2026-02-01"),
    (["--start", "2024-12-31", "--end", "2025-01-02"], "LAKEHOUSE_START_DATE=2025-01-01"),
    (["--start", "2026-02-01", "--end", "2999-01-01"], "--end 2999-01-01 is in the future"),
    (["--start", "2026-02-01", "--end", "2026-02-02", "--select", "key:nope/nothing"], "matches no asset"),
    (["--start", "2026-02-01", "--end", "2026-02-02", "--select", "group:"], "--select 'group:'"),
    (["--start", "2026-02-01", "--end", "2026-02-02", "--select", "group:gold and kind:pyarrow"], "matches no asset"),
])
def test_a_bad_backfill_request_names_the_fix(lakehouse_env, args, message):
    first, last = dt.date.fromisoformat(args[1]), dt.date.fromisoformat(args[3])
    select = args[5] if len(args) > 5 else None
    with pytest.raises(BackfillError, match=message.replace("(", r"\(")):
        plan_backfill(lakehouse_env, first, last, select, today=dt.date(2026, 11, 22))


def test_a_bad_backfill_request_exits_2_without_a_traceback(lakehouse_env):
    result = backfill("--start", "2026-02-03", "--end", "2026-02-01")
    assert result.returncode == 2 and "is after --end" in result.stderr and "Traceback" not in result.stderr
    result = backfill("--start", "yesterday", "--end", "2026-02-01")
    assert result.returncode == 2 and "use YYYY-MM-DD" in result.stderr


def test_only_unpartitioned_assets_cannot_be_backfilled(lakehouse_env):
    with pytest.raises(BackfillError, match="only unpartitioned"):
        plan_backfill(lakehouse_env, FIRST, FIRST, "key:gold/dim_customer", today=dt.date(2026, 11, 22))
    request = plan_backfill(lakehouse_env, FIRST, DAYS[-1], None, today=dt.date(2026, 11, 22))
    assert request.partition_keys == [str(d) for d in DAYS]
    assert {k.to_user_string() for k in request.assets} >= {"bronze/orders", "silver/orders", "gold/fact_orders"}
    assert not {k.to_user_string() for k in request.assets} & {"gold/dim_customer", "raw/orders"}
    reprocess = plan_backfill(lakehouse_env, FIRST, FIRST, "group:silver or group:gold", today=dt.date(2026, 11, 22))
    assert {k.path[0] for k in reprocess.assets} == {"silver", "gold"} and dg.AssetKey(["gold", "dim_customer"]) in reprocess.assets
