"""End to end: generate, run through a real Dagster instance and daemon, summarise; local disk and S3."""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import dagster as dg
import pyarrow as pa

from lakehouse.generate import generate
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.layout import SOURCES
from lakehouse.resources.landing import open_landing_zone
from lakehouse.settings import load_settings
from lakehouse.summary import bronze_summary
from pipeline_helpers import execute_days, execute_range

START = dt.date(2026, 3, 1)
LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")


def run_days(run: dg.DagsterRun) -> list[str]:
    """The partitions a run covered: its one partition, or every day of its range (automation
    may batch a backlog of days into one run, as the single-run backfill policy allows)."""
    tags = run.tags
    if "dagster/asset_partition_range_start" in tags:
        first = dt.date.fromisoformat(tags["dagster/asset_partition_range_start"])
        last = dt.date.fromisoformat(tags["dagster/asset_partition_range_end"])
        return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    return [tags["dagster/partition"]] if "dagster/partition" in tags else []


def demo(env):
    result = subprocess.run(
        [LAKEHOUSE, "demo", "--dirty", "--start", START.isoformat(), "--seed", "11"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def test_demo_twice_through_the_instance_is_idempotent(lakehouse_env):
    env = dict(os.environ)
    first = demo(env)
    store = TableStore(catalog_from_settings(lakehouse_env))
    summary = bronze_summary(store)
    report = json.loads((lakehouse_env.home / "generation_report.json").read_text())

    days = {(START + dt.timedelta(days=i)).isoformat() for i in range(7)}
    landed = {(key.split("/")[1], key.split("/")[2].removeprefix("ingest_date=")) for key in report["files"]}
    assert {d for _, d in landed} == days and len(landed) < len(SOURCES) * len(days)  # a day without reference files
    assert {(p.source, p.ingest_date) for p in summary} == {p for p in landed if p[0] in SOURCES}
    assert all(p.bronze_rows > 0 for p in summary)
    for source in SOURCES:
        assert sum(p.bronze_rows for p in summary if p.source == source) == report["rows"][source]
    assert sum(p.rejected_files for p in summary) == 3  # empty, truncated gzip, unsupported format
    assert "Rejected files (3)" in first and "truncated gzip" in first
    assert "bronze.orders" in first and f"orders     {START}" in first

    instance = dg.DagsterInstance.from_config(str(lakehouse_env.dagster_home))
    runs = instance.get_runs()
    assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    # Seven days landed at once: one run takes them from bronze to gold over the range (as a
    # backfill runs it), the dimensions included; automation has nothing left to do.
    assert len(runs) == 1 and runs[0].tags.get("dagster/sensor_name") == "landing_sensor", [r.tags for r in runs]
    assert sorted(run_days(runs[0])) == sorted(days)
    selected = {k.to_user_string() for k in runs[0].asset_selection}
    assert {k.split("/")[0] for k in selected} == {"bronze", "silver", "gold"}
    assert {"gold/dim_customer", "gold/dim_product", "gold/fact_orders"} <= selected
    # The dimensions come last, so their covers_facts check reads the fact this run wrote.
    order = [r.event_log_entry.dagster_event.asset_key.to_user_string() for r in instance.get_records_for_run(
        runs[0].run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=1000).records]
    assert set(order[-2:]) == {"gold/dim_customer", "gold/dim_product"}, order

    # The generator writes the same bytes again: same ETags, so the sensor starts nothing.
    second = demo(env)
    extra = [(r.run_id[:8], r.status.value, dict(r.tags)) for r in instance.get_runs()[: len(instance.get_runs()) - len(runs)]]
    assert "nothing to do" in second and not extra, f"{second}\nruns started by the second demo: {extra}"
    # The first demo's daemon stopped cleanly: the second does not take its heartbeat for a killed daemon's.
    assert "heartbeat" not in second, second
    assert bronze_summary(store) == summary
    # The same report (the last line counts this command's runs: none the second time).
    assert second.split("Bronze, per source")[1].rsplit("lakehouse run:", 1)[0] == \
        first.split("Bronze, per source")[1].rsplit("lakehouse run:", 1)[0]
    assert "Silver accounting" in first and " NO" not in first.split("Silver accounting")[1].split("Sales by")[0]
    for question in ("Sales by order date", "Sales by channel", "Sales by region", "Sales by category"):
        assert question in first
    instance.dispose()

    status = subprocess.run([LAKEHOUSE, "status"], env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0
    assert status.stdout.split("Bronze, per source")[1].split("\n\nRecovered runs")[0] == \
        first.split("Bronze, per source")[1].rsplit("\n\nlakehouse run:", 1)[0]
    assert "Recovered runs: none" in status.stdout
    assert "\n\nScratch folders" in status.stdout  # the machine's: other tests' killed processes may show here
    sql = "select count(*) as n, count(distinct _ingest_date) as days from bronze.orders"
    query = subprocess.run([LAKEHOUSE, "query", sql], env=env, capture_output=True, text=True, timeout=120)
    assert query.returncode == 0, query.stderr
    assert query.stdout.split()[-2:] == [str(report["rows"]["orders"]), "7"]
    bad = subprocess.run([LAKEHOUSE, "query", "select nope from bronze.orders"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "nope" in bad.stderr and "Traceback" not in bad.stderr


def comparable(store: TableStore, identifier: str, drop=("_ingested_at",)) -> list[dict]:
    table = store.read(identifier)
    table = table.drop_columns([c for c in drop if c in table.column_names])
    keys = [c for c in ("_source_file", "_row_number", "key") if c in table.column_names]
    return table.sort_by([(k, "ascending") for k in keys]).to_pylist()


def test_same_bronze_tables_from_local_disk_and_from_s3(tmp_path, monkeypatch, s3_bucket):
    results = {}
    for name, landing in (("local", None), ("s3", f"s3://{s3_bucket}/landing")):
        monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / name))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / name / "dagster"))
        if landing:
            monkeypatch.setenv("LAKEHOUSE_LANDING_URI", landing)
        settings = load_settings()
        generate(open_landing_zone(settings.landing_uri), days=6, start=START, seed=5, dirty=True)
        bronze = [dg.AssetKey(["bronze", source]) for source in SOURCES]  # what is compared: bronze only
        # One run over the six days, as a backfill loads them: the same readers and landing zone
        # as six daily runs, in a third of the time (daily runs are compared with a range's
        # in tests/test_backfill.py).
        execute_range(settings, START, START + dt.timedelta(days=5), selection=bronze)
        results[name] = TableStore(catalog_from_settings(settings))

    listed = boto3.client("s3").list_objects_v2(Bucket=s3_bucket, Prefix="landing/retail/")
    assert listed["KeyCount"] > 10  # the files really were in the bucket
    local, s3 = results["local"], results["s3"]
    for source in SOURCES:
        assert comparable(local, f"bronze.{source}") == comparable(s3, f"bronze.{source}"), source
    drop = ("first_seen", "processed_at", "run_id", "last_modified", "rejected_at")
    assert comparable(local, "ops.ingestion_log", drop) == comparable(s3, "ops.ingestion_log", drop)
    assert comparable(local, "bronze.rejected_files", drop) == comparable(s3, "bronze.rejected_files", drop)
    assert pa.Table.from_pylist(comparable(s3, "bronze.rejected_files", drop)).num_rows == 3


def test_aws_profile_writes_to_glue_catalog_and_s3_warehouse(tmp_path, monkeypatch, s3_bucket):
    """LAKEHOUSE_PROFILE=aws: Glue Data Catalog + S3 warehouse, both on the test server."""
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / "aws"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "aws" / "dagster"))
    monkeypatch.setenv("LAKEHOUSE_PROFILE", "aws")
    monkeypatch.setenv("LAKEHOUSE_LANDING_URI", f"s3://{s3_bucket}/landing")
    monkeypatch.setenv("LAKEHOUSE_WAREHOUSE_URI", f"s3://{s3_bucket}/warehouse")
    settings = load_settings()
    report = generate(open_landing_zone(settings.landing_uri), days=1, start=START, seed=9)
    for _ in range(2):  # the second pass must change nothing
        execute_days(settings, [START])
        summary = bronze_summary(TableStore(catalog_from_settings(settings)))
        for source in SOURCES:
            assert sum(p.bronze_rows for p in summary if p.source == source) == report.rows[source]
    glue = boto3.client("glue").get_table(DatabaseName="bronze", Name="orders")["Table"]
    assert glue["Parameters"]["table_type"] == "ICEBERG"
    assert glue["Parameters"]["metadata_location"].startswith(f"s3://{s3_bucket}/warehouse/")
    data = boto3.client("s3").list_objects_v2(Bucket=s3_bucket, Prefix="warehouse/bronze.db/orders/data/")
    assert data["KeyCount"] > 0
