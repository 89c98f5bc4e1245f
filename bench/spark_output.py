"""What the driver holds when a Spark step hands its rows to the table layer.

Baseline: collecting the whole DataFrame as Arrow (`to_arrow`, what the Spark engine did
before). Measured: `Engine.to_chunks`, one partition at a time as Arrow IPC. Each runs in
its own Python process (and Spark session), so one's retained memory does not hide the
other's: the JSON gives the median wall time of each and the growth of the driver's
resident memory while consuming (sampled every 5 ms). Same data, so read the ratios.

    python bench/spark_output.py [--rows 8000000] [--partitions 32] [--repeat 2]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_while(consume) -> tuple[float, int]:
    """Seconds `consume()` takes and how far the resident memory grew meanwhile."""
    gc.collect()
    base = _rss()
    peak, done = [base], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    consume()
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    return elapsed, max(peak[0] - base, 0)


def measure(mode: str, rows: int, partitions: int, repeat: int) -> dict:
    """In this process: warm up on a small frame, then time `mode` on the real one."""
    from lakehouse.resources.engine import Engine

    with Engine("spark") as engine:
        def frame(n):
            return engine.session.range(n, numPartitions=partitions).selectExpr(
                "id", "cast(id % 1000 as decimal(12,2)) as amount",
                "date_add(date'2026-01-01', cast(id % 30 as int)) as day",
                "concat('customer-', id % 50000) as customer").localCheckpoint(eager=True)

        def consumer(df, n):
            def whole():
                assert engine.to_arrow(df).num_rows == n

            def chunks():
                assert sum(chunk.num_rows for chunk in engine.to_chunks(df)) == n  # written, then dropped
            return whole if mode == "whole" else chunks

        consumer(frame(10_000), 10_000)()  # JIT, Python workers
        df = frame(rows)
        results = [peak_while(consumer(df, rows)) for _ in range(repeat)]
    return {"seconds": statistics.median(r[0] for r in results), "rss_growth": max(r[1] for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=8_000_000)
    parser.add_argument("--partitions", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--mode", choices=("whole", "chunks"), help=argparse.SUPPRESS)  # one measurement
    args = parser.parse_args()

    if args.mode:
        print(json.dumps(measure(args.mode, args.rows, args.partitions, args.repeat)))
        return
    from lakehouse.resources.engine import BATCH_ROWS

    figures = {}
    for mode in ("whole", "chunks"):
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--rows", str(args.rows),
                              "--partitions", str(args.partitions), "--repeat", str(args.repeat)],
                             capture_output=True, text=True, check=True).stdout
        figures[mode] = json.loads(out.strip().splitlines()[-1])
    whole, chunks = figures["whole"], figures["chunks"]
    print(json.dumps({
        "rows": args.rows, "partitions": args.partitions, "batch_rows": BATCH_ROWS, "repeat": args.repeat,
        "median_seconds": {"collect_whole": round(whole["seconds"], 3), "chunks": round(chunks["seconds"], 3)},
        "time_ratio_chunks_vs_whole": round(chunks["seconds"] / whole["seconds"], 2),
        "driver_rss_growth_mb": {"collect_whole": round(whole["rss_growth"] / 2**20, 1),
                                 "chunks": round(chunks["rss_growth"] / 2**20, 1)},
        "memory_ratio_chunks_vs_whole": round(chunks["rss_growth"] / whole["rss_growth"], 3)
        if whole["rss_growth"] else None,
    }, indent=2))


if __name__ == "__main__":
    main()
