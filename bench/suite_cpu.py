"""Profile: where the test suite's CPU goes, by kind of process.

    python bench/suite_cpu.py                       # the suite as `make test` runs it
    python bench/suite_cpu.py -- -k oracle          # pytest arguments after --

The suite is CPU-bound on two cores, so its time comes down only with less CPU, and most of
that CPU is not in the test workers but in the processes they start: Spark's JVMs, and
Dagster's daemons, code servers and run workers under `lakehouse run`. This runs the suite
(`pytest -n 2 --dist loadfile`, as `make test`) and reads every process's CPU time from
/proc once a second, counting only processes started after it began (a process is counted
at its last reading: the last second of a short one can be missed). Prints one JSON
document: the wall time, pytest's exit code and the CPU by kind. No baseline in the same
run: a suite takes a quarter of an hour; compare two commits' outputs by hand.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
KINDS = (  # first match wins
    ("java", "Spark JVMs"), ("spark-class", "Spark JVMs"), ("pyspark.daemon", "Spark's Python workers"),
    ("spawn_main", "Dagster run workers"), ("api grpc", "Dagster code servers"),
    ("dagster-daemon", "Dagster daemons"), ("bin/lakehouse", "lakehouse commands"), ("-m lakehouse", "lakehouse commands"),
    ("execnet", "test workers"), ("import sys;exec(eval(sys.stdin.readline()))", "test workers"),
    ("pytest", "pytest"), ("chrom", "Chromium (UI tests)"),
)


def kind(command: str) -> str:
    return next((name for marker, name in KINDS if marker in command), "other")


def sample(seen: dict, before: set, stop: threading.Event) -> None:
    while not stop.is_set():
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                fields = stat[stat.rfind(")") + 2:].split()
                key = (entry.name, fields[19])  # pid and start time: a reused pid is another process
                if key in before:
                    continue
                if key not in seen:
                    seen[key] = [(entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"), 0.0]
                seen[key][1] = (int(fields[11]) + int(fields[12])) / TICK
            except (OSError, IndexError):
                continue
        time.sleep(1)


def running() -> set:
    keys = set()
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            keys.add((entry.name, stat[stat.rfind(")") + 2:].split()[19]))
        except (OSError, IndexError):
            continue
    return keys


def main() -> None:
    extra = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    seen: dict = {}
    stop = threading.Event()
    watcher = threading.Thread(target=sample, args=(seen, running(), stop))
    watcher.start()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadfile", *extra], cwd=ROOT,
                          stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    stop.set()
    watcher.join()
    by_kind = collections.Counter()
    for command, cpu in seen.values():
        by_kind[kind(command)] += cpu
    total = sum(by_kind.values())
    print(json.dumps({"wall_s": round(wall, 1), "pytest_exit": done.returncode, "cpu_s": round(total, 1),
                      "cpu_by_kind_s": {k: round(v, 1) for k, v in by_kind.most_common()},
                      "share": {k: round(v / total, 3) for k, v in by_kind.most_common()} if total else {}}, indent=2))


if __name__ == "__main__":
    main()
