"""Benchmark: silver and gold of one day of orders on Spark's own Iceberg writer (native) against
writing every row through the driver (the earlier path), and on DuckDB, at growing sizes.

    python bench/spark_scale.py                          # 1M, 5M and 20M order rows
    python bench/spark_scale.py --sizes 250000,1000000   # what a short session can afford

For every size one landing zone and bronze are prepared (bench/pipeline.py's generator, in a
child process); then each path runs silver (customers, products, orders), the order fact and
the daily sales mart on that bronze, in its own child process, after the silver and gold
tables of the previous path are dropped. Spark runs at local[2] with the engine's settings.
The child samples its own resident memory (the Python driver, which the driver path fills)
and the JVM's (in local mode the JVM is the driver and the executors at once) every 50 ms.

"driver" is the earlier path, which the project no longer has and this file keeps as the
baseline (`_through_driver`): the steps' output collected to the Python driver one partition
at a time as Arrow and committed by PyIceberg. A path that fails (the driver path ran out of
the JVM's 4 GB at 5M rows) is recorded as failed and the others still run. Prints one
JSON document: per size and path, wall seconds, rows per second, peak memory; then the growth
of each path's driver memory from the smallest to the largest size, and the throughput
ratio native / driver at the largest.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

PATHS = ("native", "driver", "duckdb")


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def run_path(path: str, home: str) -> dict:
    """In this process: the steps on `path`, timed, with this process's and the JVM's peak memory."""
    from pipeline import DAY

    from lakehouse.iceberg import TableStore, catalog_from_settings
    from lakehouse.resources.engine import Engine
    from lakehouse.settings import load_settings
    from lakehouse.steps import StepContext, run_daily_sales, run_fact_orders, run_silver
    import lakehouse.steps.gold as gold_steps
    import lakehouse.steps.silver as silver_steps
    from lakehouse.arrowtools import conform

    settings = load_settings({"LAKEHOUSE_HOME": home})
    store = TableStore(catalog_from_settings(settings))
    for namespace in ("silver", "gold"):  # the previous path's output
        if (namespace,) in store.catalog.list_namespaces():
            for identifier in store.catalog.list_tables(namespace):
                store.catalog.drop_table(identifier)
    if path == "driver":  # the earlier path: every written row through this process
        def through_driver(ctx, df, schema):
            def produce():
                for chunk in _through_driver(df):
                    yield conform(chunk, schema)
            return produce
        silver_steps.output = gold_steps.output = through_driver
    engine_name = "duckdb" if path == "duckdb" else "spark"
    with Engine(engine_name, store.catalog):
        pass  # the session (a JVM for Spark) is started before the clock and the samplers
    jvm = _children(os.getpid())  # spark-submit's JVM (none for DuckDB)
    peaks, stop = {"python": 0, "jvm": 0}, threading.Event()

    def sample():
        while not stop.is_set():
            peaks["python"] = max(peaks["python"], _rss(os.getpid()))
            peaks["jvm"] = max(peaks["jvm"], sum(_rss(p) for p in jvm))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stages, started = {}, time.perf_counter()
    steps = [("silver", lambda c: [run_silver(c, s, DAY) for s in ("customers", "products", "orders")]),
             ("fact", lambda c: run_fact_orders(c, DAY)), ("mart", lambda c: run_daily_sales(c, DAY))]
    for name, step in steps:
        start = time.perf_counter()
        with Engine(engine_name, store.catalog) as eng:
            results = step(StepContext(store, eng, "bench"))
        for result in results if isinstance(results, list) else [results]:
            if not result.published:
                raise SystemExit(f"{path}: {result.table.identifier} failed its audit: {result.checks}")
        stages[name] = round(time.perf_counter() - start, 2)
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    rows = int(store.load("silver.orders").current_snapshot().summary["total-records"])
    return {"seconds": round(seconds, 2), "stages": stages, "silver_orders_rows": rows,
            "python_driver_peak_mb": round(peaks["python"] / 2**20), "jvm_peak_mb": round(peaks["jvm"] / 2**20)}


def _through_driver(df, rows: int = 1_000_000):
    """The earlier path, kept only as this benchmark's baseline: the rows as Arrow tables on the
    driver, one partition at a time (`toLocalIterator`), the executors packing their Arrow
    batches as IPC blobs of about `rows` rows (`mapInArrow`)."""
    import pyarrow as pa

    def blob(batches):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batches[0].schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
        return pa.RecordBatch.from_pydict({"ipc": [sink.getvalue().to_pybytes()]})

    def to_ipc(batches):
        buffered, count = [], 0
        for batch in batches:
            buffered.append(batch)
            count += batch.num_rows
            if count >= rows:
                yield blob(buffered)
                buffered, count = [], 0
        if buffered:
            yield blob(buffered)

    for row in df.mapInArrow(to_ipc, "ipc binary").toLocalIterator(prefetchPartitions=True):
        yield pa.ipc.open_stream(row.ipc).read_all()


def prepare(rows: int, home: str) -> None:
    """Landing (bench/pipeline.py's orders CSV of `rows` rows) and bronze, on the DuckDB side."""
    from pipeline import DAY, prepare_landing

    from lakehouse.contracts import CONTRACTS
    from lakehouse.iceberg import TableStore, catalog_from_settings
    from lakehouse.ingest import load_bronze
    from lakehouse.resources.landing import open_landing_zone
    from lakehouse.settings import load_settings

    prepare_landing(rows, Path(home))
    settings = load_settings({"LAKEHOUSE_HOME": home})
    store = TableStore(catalog_from_settings(settings))
    for source in ("customers", "products", "orders"):
        load_bronze(open_landing_zone(settings.landing_uri), store, CONTRACTS[source], DAY, "bench")


def _child(*args: str, fail: bool = True) -> str | None:
    """The child's last line of output; None (or exit, with `fail`) if it failed."""
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode:
        if fail:
            raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
        reason = next((line.strip() for line in done.stderr.splitlines() if "OutOfMemory" in line
                       or "Java heap space" in line), done.stderr.strip().splitlines()[-1] if done.stderr else "")
        print(f"{' '.join(args[:2])} failed: {reason[:300]}", file=sys.stderr)
        return None
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,5000000,20000000", help="order rows, comma-separated")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--child-prepare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-path", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_prepare:
        prepare(args.child_prepare, args.home)
        return
    if args.child_path:
        print(json.dumps(run_path(args.child_path, args.home)))
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]
    paths = [p for p in args.paths.split(",") if p]
    report: dict = {"cpus": os.cpu_count(), "spark_master": "local[2]", "sizes": {}}
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="lakehouse-spark-scale-") as home:
            _child("--child-prepare", str(rows), "--home", home)
            report["sizes"][rows] = {}
            for path in paths:
                out = _child("--child-path", path, "--home", home, fail=False)
                if out is None:  # recorded, and the other paths still run
                    report["sizes"][rows][path] = {"failed": True}
                    continue
                measured = json.loads(out)
                measured["rows_per_second"] = round(rows / measured["seconds"])
                report["sizes"][rows][path] = measured
                print(json.dumps({"rows": rows, "path": path, **measured}), file=sys.stderr)
    first, last = report["sizes"][sizes[0]], report["sizes"][sizes[-1]]
    report["driver_memory_growth"] = {
        p: round(last[p]["python_driver_peak_mb"] / first[p]["python_driver_peak_mb"], 2)
        if "failed" not in first[p] and "failed" not in last[p] else "failed" for p in paths}
    if {"native", "driver"} <= set(paths):
        report["native_over_driver_throughput_at_largest"] = (
            round(last["native"]["rows_per_second"] / last["driver"]["rows_per_second"], 2)
            if "failed" not in last["native"] and "failed" not in last["driver"]
            else {p: "failed" for p in ("native", "driver") if "failed" in last[p]})
    report["target"] = ("native: the Python driver's peak memory grows at most 1.2x from the smallest to the largest "
                        "size; its throughput at the largest is at least the driver path's")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
