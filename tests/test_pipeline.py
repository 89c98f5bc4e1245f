"""End to end: generate, run through a real Dagster instance, summarise; local disk and S3."""

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
from lakehouse.runner import run_pending
from lakehouse.settings import load_settings
from lakehouse.summary import bronze_summary

START = dt.date(2026, 3, 1)
LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")


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
    assert {(p.source, p.ingest_date) for p in summary} == {(s, d) for s in SOURCES for d in days}
    assert all(p.bronze_rows > 0 for p in summary)
    for source in SOURCES:
        assert sum(p.bronze_rows for p in summary if p.source == source) == report["rows"][source]
    assert sum(p.rejected_files for p in summary) == 3  # empty, truncated gzip, unsupported format
    assert "Rejected files (3)" in first and "truncated gzip" in first
    assert "bronze.orders" in first and f"orders     {START}" in first

    second = demo(env)
    assert bronze_summary(store) == summary
    assert second.split("Bronze, per source")[1] == first.split("Bronze, per source")[1]
    instance = dg.DagsterInstance.from_config(str(lakehouse_env.dagster_home))
    runs = instance.get_runs()
    assert len(runs) == 14 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert {r.tags["dagster/partition"] for r in runs} == days
    instance.dispose()


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
        outcome = run_pending(settings)
        assert outcome.ok and len(outcome.runs) == 6, outcome.render()
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
