"""Profile: where the test suite's CPU goes, by kind of process.

    python bench/suite_cpu.py                       # the suite as `make test` runs it
    python bench/suite_cpu.py -- -k oracle          # pytest arguments after --

With three workers (Makefile) the suite keeps both cores busy, so its time comes down only with
less CPU, and most of that CPU is not in the test workers but in the processes they start: Spark's
JVMs, and Dagster's daemons, code servers and run workers under `lakehouse run`. This runs the
suite through `make test` itself (its workers, PYTEST_WORKERS, and its temporary folders; the
pytest arguments go in PYTEST_ARGS) and reads every process's CPU time once a
second (bench/proc_cpu.py), counting only processes started after it began (a process is counted
at its last reading: the last second of a short one can be missed). Prints one JSON
document: the wall time, `make test`'s exit code, and the CPU and the number of processes by
kind. No baseline in the same run: a suite takes a quarter of an hour; compare two commits'
outputs by hand.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import psutil

from proc_cpu import CpuWatch  # bench/, this script's folder

ROOT = Path(__file__).resolve().parents[1]
KINDS = (  # first match wins
    ("java", "Spark JVMs"), ("spark-class", "Spark JVMs"), ("pyspark.daemon", "Spark's Python workers"),
    ("spawn_main", "Dagster run workers"), ("forkserver", "Dagster run workers"),
    ("api grpc", "Dagster code servers"),
    ("dagster-daemon", "Dagster daemons"), ("bin/lakehouse", "lakehouse commands"), ("-m lakehouse", "lakehouse commands"),
    ("execnet", "test workers"), ("import sys;exec(eval(sys.stdin.readline()))", "test workers"),
    ("pytest", "pytest"), ("chrom", "Chromium (UI tests)"),
)


def kind(command: str) -> str:
    return next((name for marker, name in KINDS if marker in command), "other")


def main() -> None:
    extra = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    before = {(p.pid, p.info["create_time"]) for p in psutil.process_iter(["create_time"])}
    with CpuWatch(lambda process: (process.pid, process.create_time()) not in before, 1.0) as watch:
        started = time.perf_counter()
        done = subprocess.run(["make", "-s", "test", f"PYTEST_ARGS={shlex.join(['-q', *extra])}"], cwd=ROOT,
                              stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
    by_kind, counts = watch.by_kind(kind), watch.count_by_kind(kind)
    total = sum(by_kind.values())
    print(json.dumps({"wall_s": round(wall, 1), "make_test_exit": done.returncode, "cpu_s": round(total, 1),
                      "cpu_by_kind_s": {k: round(v, 1) for k, v in by_kind.most_common()},
                      "share": {k: round(v / total, 3) for k, v in by_kind.most_common()} if total else {},
                      "processes_by_kind": dict(counts.most_common())}, indent=2))


if __name__ == "__main__":
    main()
