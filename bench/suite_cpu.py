"""Profile: where the test suite's CPU goes, by kind of process and by test file.

    python bench/suite_cpu.py                       # the suite as `make test` runs it
    python bench/suite_cpu.py -- -k oracle          # pytest arguments after --

With three workers (Makefile) the suite keeps both cores busy, so its time comes down only with
less CPU, and most of that CPU is not in the test workers but in the processes they start: Spark's
JVMs, and Dagster's daemons, code servers and run workers under `lakehouse run`. This runs the
suite through `make test` itself (its workers, PYTEST_WORKERS, and its temporary folders; the
pytest arguments go in PYTEST_ARGS) and reads every process's CPU time once a
second (bench/proc_cpu.py), counting only processes started after it began (a process is counted
at its last reading: the last second of a short one can be missed). A process started during a
test carries the test's name in its environment (pytest's PYTEST_CURRENT_TEST, inherited by
everything it starts), so its CPU is counted under that test's file, together with what the
test worker spent on the file itself (bench/cpu_per_file/, a pytest plugin loaded for the
run). Prints one JSON document: the wall time, `make test`'s exit code, the CPU and the number
of processes by kind, and the CPU by test file (largest first). No baseline in the same run: a
suite takes ten minutes or more; compare two commits' outputs by hand.
"""

from __future__ import annotations

import collections
import json
import os
import shlex
import subprocess
import sys
import tempfile
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


def started_under(process: psutil.Process) -> str | None:
    """The test file whose test was running when `process` (or the process that started it) began."""
    running = process.environ().get("PYTEST_CURRENT_TEST")
    return running.split("::")[0] if running else None


def in_workers(prefix: Path) -> collections.Counter:
    """The test workers' own CPU by test file, as bench/cpu_per_file/ wrote it."""
    totals = collections.Counter()
    for path in prefix.parent.glob(prefix.name + ".*"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            totals[record["file"]] += record["cpu_s"]
    return totals


def main() -> None:
    extra = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    before = {(p.pid, p.info["create_time"]) for p in psutil.process_iter(["create_time"])}
    with tempfile.TemporaryDirectory() as scratch:
        per_test = Path(scratch) / "cpu"
        env = {**os.environ, "LAKEHOUSE_CPU_PER_TEST": str(per_test),
               "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).parent / "cpu_per_file"),
                                                          os.environ.get("PYTHONPATH")) if p)}
        with CpuWatch(lambda process: (process.pid, process.create_time()) not in before, 1.0, tag=started_under) as watch:
            started = time.perf_counter()
            done = subprocess.run(["make", "-s", "test", f"PYTEST_ARGS={shlex.join(['-q', '-p', 'cpu_per_file', *extra])}"],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, env=env)
            wall = time.perf_counter() - started
        workers = in_workers(per_test)
    by_kind, counts, started_by_file = watch.by_kind(kind), watch.count_by_kind(kind), watch.by_tag()
    started_by_file.pop(None, None)  # the workers themselves, pytest, make: counted by kind above
    by_file = workers + started_by_file
    total = sum(by_kind.values())
    print(json.dumps({"wall_s": round(wall, 1), "make_test_exit": done.returncode, "cpu_s": round(total, 1),
                      "cpu_by_kind_s": {k: round(v, 1) for k, v in by_kind.most_common()},
                      "share": {k: round(v / total, 3) for k, v in by_kind.most_common()} if total else {},
                      "processes_by_kind": dict(counts.most_common()),
                      "cpu_by_test_file_s": {f: {"total": round(v, 1), "in_worker": round(workers[f], 1),
                                                 "processes_started": round(started_by_file[f], 1)}
                                             for f, v in by_file.most_common()}}, indent=2))


if __name__ == "__main__":
    main()
