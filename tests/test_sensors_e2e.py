"""Files uploaded to S3 reach gold through sensor and automation ticks alone (the real daemon)."""

import datetime as dt
import json
import logging
import subprocess
import sys
from pathlib import Path

import boto3
import dagster as dg
import pyarrow.compute as pc

from lakehouse import checked_code
from lakehouse.generate import generate
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.resources.landing import LocalLandingZone
from lakehouse.runner import run_pending
from lakehouse.settings import load_settings

DAY = dt.date(2026, 3, 12)  # older than the recent window: found by the sweep, as a late file would be
AWS = Path(sys.executable).with_name("aws")


def aws_cp(path: Path, url: str, endpoint: str) -> None:
    """Upload with the AWS CLI, as an operator would."""
    done = subprocess.run([str(AWS), "s3", "cp", str(path), url, "--endpoint-url", endpoint, "--only-show-errors"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


ALL_BRONZE = "bronze/customers,bronze/events,bronze/orders,bronze/products"
DAY_GOLD = ["silver/customers", "silver/events", "silver/orders", "silver/products", "gold/fact_orders",
            "gold/mart_daily_sales", "gold/mart_customer_activity", "gold/dim_customer",
            "gold/dim_product"]  # what a landed day's run goes on to
SILVER_AND_GOLD = {"silver/customers", "silver/events", "silver/orders", "silver/products", "gold/fact_orders",
                   "gold/mart_daily_sales", "gold/mart_customer_activity", "gold/dim_customer", "gold/dim_product"}


def done(runs, day: str) -> set[str]:
    """Assets that successful runs materialized for `day` (or unpartitioned), however automation
    grouped them into runs: that depends on which tick saw which materialization."""
    out = set()
    for label, status in runs:
        assets, _, partition = label.partition(" ")
        first, _, last = partition.partition("..")
        if status == "SUCCESS" and (not partition or first <= day <= (last or first)):
            out |= set(assets.split(","))
    return out


def run(settings, echo=lambda line: None):
    """The outcome, and (assets, comma-separated, and partition; status) of each run it made."""
    outcome = run_pending(settings, timeout=600, echo=echo)
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        runs = set()
        for record in outcome.runs:
            run = instance.get_run_by_id(record.run_id)
            assets = ",".join(sorted(k.to_user_string() for k in run.asset_selection or ()))
            tags = run.tags
            partition = tags.get("dagster/partition", "")
            if "dagster/asset_partition_range_start" in tags:
                partition = f"{tags['dagster/asset_partition_range_start']}..{tags['dagster/asset_partition_range_end']}"
            runs.add((f"{assets} {partition}".strip(), record.status))
    return outcome, runs


def test_uploads_reach_gold_through_ticks_once_per_file_version_and_failures_reach_sns(
    tmp_path, monkeypatch, s3_bucket, s3_endpoint
):
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="lakehouse-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"alerts-{s3_bucket}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster"))
    monkeypatch.setenv("LAKEHOUSE_LANDING_URI", f"s3://{s3_bucket}/landing")
    monkeypatch.setenv("LAKEHOUSE_ALERT_TOPIC_ARN", topic)
    settings = load_settings()
    source = LocalLandingZone(f"file://{tmp_path / 'export'}")
    report = generate(source, days=1, start=DAY, seed=3)
    orders_key = next(k for k in report.files if "/orders/" in k)
    orders_url = f"s3://{s3_bucket}/landing/{orders_key}"
    aws_cp(source.root / orders_key, orders_url, s3_endpoint)
    for key in report.files:
        if key != orders_key:
            boto3.client("s3").put_object(Bucket=s3_bucket, Key=f"landing/{key}", Body=source.read(key))

    outcome, runs = run(settings)
    day = DAY.isoformat()
    assert outcome.ok, outcome.render()
    # The landing sensor's run takes the day to gold, the dimensions included: one run, nothing after it.
    assert runs == {(",".join(sorted([*ALL_BRONZE.split(","), *DAY_GOLD])) + " " + day, "SUCCESS")}, runs
    assert SILVER_AND_GOLD <= done(runs, day)
    store = TableStore(catalog_from_settings(settings))
    assert store.read("bronze.orders").num_rows == report.rows["orders"]
    silver = store.read("silver.orders")
    assert silver.num_rows == store.read("gold.fact_orders").num_rows > 0
    mart = store.read("gold.mart_daily_sales")
    assert pc.sum(mart["orders"]).as_py() == silver.num_rows
    log = store.read("ops.ingestion_log").to_pylist()
    assert len(log) == len(report.files) and {r["status"] for r in log} == {"INGESTED"}
    assert all(r["run_id"] and r["first_seen"] <= r["processed_at"] for r in log)
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        seen = instance.fetch_observations(dg.AssetKey(["raw", "orders"]), limit=10).records
        landed = sorted(k for k in report.files if "/orders/" in k)
        assert [o.partition_key for o in seen] == [day] * len(landed)
        assert sorted(o.asset_observation.metadata["key"].value for o in seen) == landed

    # The same bytes again (a retried upload): nothing runs. A fallback to a slower path that a
    # process of this home takes meanwhile (here: this one, as the daemon starts) is listed at the end.
    aws_cp(source.root / orders_key, orders_url, s3_endpoint)
    fallback = "a test's fallback to a slower path"
    outcome, runs = run(settings, echo=lambda line: checked_code.warn_once(logging.getLogger(__name__), fallback))
    assert outcome.ok and outcome.runs == [], outcome.render()
    shown = outcome.render()
    assert fallback in shown[shown.index("Fallbacks to slower paths"):], shown[-3000:]
    assert shown.splitlines()[-1].startswith("lakehouse run: done"), shown[-3000:]

    # New content under the same key: bronze, silver and gold for that day again, no duplicates.
    lines = source.read(orders_key).decode().splitlines(keepends=True)
    fewer = tmp_path / "orders-v2.csv"
    fewer.write_text("".join(lines[:-50]))
    aws_cp(fewer, orders_url, s3_endpoint)
    outcome, runs = run(settings)
    assert outcome.ok, outcome.render()
    assert "Fallbacks to slower paths" not in outcome.render()  # only those taken since this run began
    # a landed day loads every source's bronze, and takes it to gold
    assert (",".join(sorted([*ALL_BRONZE.split(","), *DAY_GOLD])) + " " + day, "SUCCESS") in runs
    assert {"silver/orders", "gold/fact_orders", "gold/mart_daily_sales"} <= done(runs, day)
    bronze = store.read("bronze.orders")
    assert bronze.num_rows == report.rows["orders"] - 50
    silver = store.read("silver.orders")
    assert pc.count_distinct(silver["order_id"]).as_py() == silver.num_rows == store.read("gold.fact_orders").num_rows
    statuses = sorted(r["status"] for r in store.read("ops.ingestion_log").to_pylist() if r["key"] == orders_key)
    assert statuses == ["INGESTED", "SUPERSEDED"]

    # A file that breaks a blocking check: the run fails, and the alert reaches SNS.
    bad = tmp_path / "orders-v3.csv"
    bad.write_text("order_id,order_date,customer_id,product_id,qty,unit_price,channel\n"
                   + "".join(f"X{i:05d},12/03/2026,C000001,P00001,many,9.99,web\n" for i in range(3000)))
    aws_cp(bad, orders_url, s3_endpoint)
    outcome, runs = run(settings)
    assert not outcome.ok
    failed = [r for r in outcome.runs if r.status == "FAILURE"]
    assert len(failed) == 1 and "silver__orders" in failed[0].error and "quarantine_share" in failed[0].error
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=5).get("Messages", [])
    bodies = [json.loads(m["Body"]) for m in messages]
    assert len(bodies) == 1, bodies
    assert bodies[0]["Subject"].startswith("[lakehouse] run failed:") and day in bodies[0]["Subject"]
    text = bodies[0]["Message"]
    assert "silver/orders" in text and f"Partition: {day}" in text and "Failed step silver__orders" in text
    assert f"/runs/{failed[0].run_id}" in text
