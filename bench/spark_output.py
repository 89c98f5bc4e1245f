"""What the driver holds when a Spark step hands its rows to the table layer.

Baseline: collecting the whole DataFrame as Arrow (`to_arrow`, what the Spark engine did
before). Measured: `Engine.to_chunks`, one partition at a time as Arrow IPC. Reports the
median wall time of each and the peak Arrow memory on the driver while consuming
(pyarrow's allocator), as JSON. Same run, same data, so the ratios are what to read.

    python bench/spark_output.py [--rows 2000000] [--partitions 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import pyarrow as pa


def peak_while(consume) -> tuple[float, int]:
    """Seconds `consume()` takes and the most Arrow memory allocated meanwhile (sampled every 5 ms)."""
    peak, done = [pa.total_allocated_bytes()], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], pa.total_allocated_bytes())
            time.sleep(0.005)

    base = pa.total_allocated_bytes()
    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    consume()
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    return elapsed, max(peak[0] - base, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from lakehouse.resources.engine import BATCH_ROWS, Engine

    with Engine("spark") as engine:
        spark = engine.session
        df = spark.range(args.rows, numPartitions=args.partitions).selectExpr(
            "id", "cast(id % 1000 as decimal(12,2)) as amount", "date_add(date'2026-01-01', cast(id % 30 as int)) as day",
            "concat('customer-', id % 50000) as customer").localCheckpoint(eager=True)

        def whole():
            table = engine.to_arrow(df)
            assert table.num_rows == args.rows

        def chunked():
            rows = 0
            for chunk in engine.to_chunks(df):
                rows += chunk.num_rows  # the table layer writes and drops each chunk
            assert rows == args.rows

        whole(), chunked()  # warm up: JIT, Python workers
        runs = {"collect_whole": [], "chunks": []}
        peaks = {"collect_whole": 0, "chunks": 0}
        for _ in range(args.repeat):
            for name, consume in (("collect_whole", whole), ("chunks", chunked)):
                seconds, peak = peak_while(consume)
                runs[name].append(seconds)
                peaks[name] = max(peaks[name], peak)
    medians = {k: statistics.median(v) for k, v in runs.items()}
    print(json.dumps({
        "rows": args.rows, "partitions": args.partitions, "batch_rows": BATCH_ROWS, "repeat": args.repeat,
        "median_seconds": {k: round(v, 3) for k, v in medians.items()},
        "time_ratio_chunks_vs_whole": round(medians["chunks"] / medians["collect_whole"], 2),
        "peak_driver_arrow_mb": {k: round(v / 2**20, 1) for k, v in peaks.items()},
        "memory_ratio_chunks_vs_whole": round(peaks["chunks"] / peaks["collect_whole"], 3) if peaks["collect_whole"] else None,
    }, indent=2))


if __name__ == "__main__":
    main()
