"""Latency from a 10k-row orders file landing in S3 to gold published, through the real daemon.

An S3-compatible server (moto) on 127.0.0.1 holds the landing zone. The daemon runs
the landing sensor, the automation sensor and the run queue exactly as `lakehouse run`
does (ticks every LAKEHOUSE_SENSOR_INTERVAL=2 s). Each round uploads a new version of
the file and waits for the run that publishes gold.mart_daily_sales for its day.

Split: sensor (upload -> run created), automation (bronze run done -> silver and gold
run created; 0 now that the landing sensor's run goes to gold itself), run launch
(created -> started), compute (started -> finished). Baseline, same machine and data:
the assets the daemon's run materialized, executed in process with no triggering at all.

    python bench/landing_latency.py [--rounds 3] [--rows 10000]
"""

import argparse
import datetime as dt
import json
import logging
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import boto3
import dagster as dg


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def orders_file(rows: int, version: int, day: dt.date) -> bytes:
    lines = ["order_id,order_date,customer_id,product_id,qty,unit_price,channel"]
    stamp = day.strftime("%d/%m/%Y")
    for i in range(rows):
        lines.append(f"B{version}-{i:06d},{stamp},C{1 + i % 500:06d},P{1 + i % 200:05d},{1 + i % 5},"
                     f"{5 + i % 90}.{i % 100:02d},{('web', 'store', 'mobile')[i % 3]}")
    return ("\n".join(lines) + "\n").encode()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    home = Path(tempfile.mkdtemp(prefix="lakehouse-latency-"))
    os.environ.update({
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
        "LAKEHOUSE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
        "LAKEHOUSE_LANDING_URI": "s3://bench/landing",
    })
    boto3.client("s3").create_bucket(Bucket="bench")

    from lakehouse.generate import generate
    from lakehouse.resources.landing import open_landing_zone
    from lakehouse.runner import Daemon, instigators, prepare_instance, run_pending, sweep_cycles
    from lakehouse.settings import load_settings
    from lakehouse.wiring import DAILY_JOB, build_definitions

    settings = load_settings()
    day = dt.datetime.now(dt.timezone.utc).date()
    zone = open_landing_zone(settings.landing_uri)
    report = generate(zone, days=1, start=day, seed=1)  # the day's snapshots, processed first
    for key in report.files:
        if "/orders/" in key or "/events/" in key:
            zone.client.delete_object(Bucket="bench", Key=f"landing/{key}")
    assert run_pending(settings, echo=lambda line: None).ok
    key = f"retail/orders/ingest_date={day}/orders-bench.csv"

    workspace = prepare_instance(settings)
    instance = dg.DagsterInstance.from_config(str(settings.dagster_home))
    daemon = Daemon(settings, workspace)
    rounds = []
    try:
        while sweep_cycles(instigators(instance)) < 0 or not daemon.alive():
            time.sleep(0.2)
        for version in range(1, args.rounds + 1):
            rounds.append(_round(instance, zone, key, orders_file(args.rows, version, day), day.isoformat()))
    finally:
        daemon.stop()

    defs = build_definitions(settings)
    # The same assets the daemon's run materialized for the day (a landed day reloads every
    # source's bronze, so that a late reference file re-enriches), here with no triggering.
    selection = sorted({k for r in instance.get_runs() if r.tags.get("dagster/sensor_name") == "landing_sensor"
                        for k in r.asset_selection or ()}, key=lambda k: k.to_user_string())
    baseline = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        result = defs.resolve_job_def(DAILY_JOB).execute_in_process(
            instance=instance, partition_key=day.isoformat(), asset_selection=selection,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
        assert result.success
        baseline.append(time.perf_counter() - started)
    server.stop()

    def median(name):
        return round(statistics.median(r[name] for r in rounds), 2)

    figures = {
        "rows": args.rows,
        "assets_per_run": [k.to_user_string() for k in selection],
        "rounds": args.rounds,
        "sensor_interval_s": 2,
        "median_s": {name: median(name) for name in ("sensor", "automation", "run_launch", "compute", "total")},
        "baseline_in_process_compute_s": round(statistics.median(baseline), 2),
        "rounds_s": rounds,
    }
    figures["total_vs_baseline"] = round(figures["median_s"]["total"] / figures["baseline_in_process_compute_s"], 2)
    print(json.dumps(figures, indent=2))
    return 0


def _round(instance, zone, key: str, data: bytes, partition: str) -> dict:
    known = {r.run_id for r in instance.get_runs()}
    uploaded = time.time()
    zone.put(key, data)
    while True:
        runs = [r for r in instance.get_run_records() if r.dagster_run.run_id not in known]
        gold = [r for r in runs if dg.AssetKey(["gold", "mart_daily_sales"]) in (r.dagster_run.asset_selection or ())
                and r.dagster_run.tags.get("dagster/partition") == partition]
        gold.sort(key=lambda r: r.create_timestamp)
        if gold and gold[0].dagster_run.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE):
            break
        time.sleep(0.1)
    bronze = next(r for r in runs if r.dagster_run.tags.get("dagster/sensor_name") == "landing_sensor")
    auto = gold[0]
    assert auto.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    b, a = instance.get_run_stats(bronze.dagster_run.run_id), instance.get_run_stats(auto.dagster_run.run_id)
    created_b, created_a = bronze.create_timestamp.timestamp(), auto.create_timestamp.timestamp()
    if bronze.dagster_run.run_id == auto.dagster_run.run_id:  # the landing sensor's run goes to gold itself
        return {
            "runs": 1,
            "sensor": round(created_b - uploaded, 2),
            "automation": 0.0,
            "run_launch": round(b.start_time - created_b, 2),
            "compute": round(b.end_time - b.start_time, 2),
            "total": round(b.end_time - uploaded, 2),
        }
    return {
        "runs": 2,
        "sensor": round(created_b - uploaded, 2),
        "automation": round(created_a - b.end_time, 2),
        "run_launch": round((b.start_time - created_b) + (a.start_time - created_a), 2),
        "compute": round((b.end_time - b.start_time) + (a.end_time - a.start_time), 2),
        "total": round(a.end_time - uploaded, 2),
    }


if __name__ == "__main__":
    sys.exit(main())
