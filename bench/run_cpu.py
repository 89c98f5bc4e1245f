"""Benchmark: the CPU and wall time of one `lakehouse run`, this tree against a baseline commit, in one run.

    python bench/run_cpu.py                          # against HEAD~1, 2 days, 2 rounds
    python bench/run_cpu.py --baseline 5f68561 --days 1 --rounds 3
    python bench/run_cpu.py --baseline-python ~/.pyenv/versions/3.11.7/bin/python3.11   # this tree, two interpreters
    python bench/run_cpu.py --baseline HEAD~1 --gc     # also the garbage collector's seconds by kind of process
    python bench/run_cpu.py --baseline HEAD~1 --nothing-new   # a second run over the same home: no work

What the test suite and a laptop pay for each `lakehouse run` is mostly not the data: the
CLI, the daemon, the code server and a process per run. Each round generates --days dirty
days (the demo's scale) into a fresh home and runs `lakehouse run` once, with this tree and
with the baseline checked out in a temporary git worktree, alternating. Each side runs in its
own folder with that folder on PYTHONPATH: a process started with `python -m` (the daemon,
the code server and its runs) puts its working folder first, so PYTHONPATH alone would
leave them on whatever tree the bench was started from. The CPU is summed over every process whose
environment points at that home, read every 0.2 s (bench/proc_cpu.py; a process is counted
at its last reading, so the last 0.2 s of a short one can be missed), by kind of process.
Prints one JSON document: medians over the rounds and the ratios (this tree / baseline).
With --baseline-python the baseline is this tree (unless --baseline is given too) run by a
temporary virtualenv made from that interpreter. With --gc, each Python process also times its
garbage collections (bench/gc_probe, put on PYTHONPATH), summed by kind of process. With
--nothing-new, the days are first processed by a `lakehouse run` that is not measured, and the
one measured finds nothing new: what a scheduled run or a test's idempotence check pays.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from proc_cpu import CpuWatch  # bench/, this script's folder
from small_days import baseline_python, baseline_tree

ROOT = Path(__file__).resolve().parents[1]
GENERATE = r"""
import datetime as dt, sys
from lakehouse.generate import generate
from lakehouse.resources.landing import open_landing_zone
from lakehouse.settings import load_settings
settings = load_settings()
generate(open_landing_zone(settings.landing_uri), days=int(sys.argv[1]), start=dt.date(2026, 3, 10), seed=3, dirty=True)
"""


def kind(command: str) -> str:
    if "spawn_main" in command or "forkserver" in command:  # spawned, or forked (run_workers.py), parked or not
        return "run workers"
    if "api grpc" in command:
        return "code server"
    if "dagster-daemon" in command:
        return "daemon"
    if "bin/lakehouse run" in command:
        return "lakehouse run"
    return "other"


def one_round(root: Path, days: int, python: str = sys.executable, gc_probe: bool = False,
              nothing_new: bool = False) -> dict:
    home = Path(tempfile.mkdtemp(prefix="lakehouse-run-cpu-"))
    env = {**os.environ, "LAKEHOUSE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
           "LAKEHOUSE_START_DATE": "2026-03-10"}
    env.pop("LAKEHOUSE_PROFILE", None)
    env["PYTHONPATH"] = str(root)
    subprocess.run([python, "-c", GENERATE, str(days)], env=env, cwd=root, check=True, capture_output=True,
                   timeout=600)
    lakehouse = str(Path(python).parent / "lakehouse")
    if nothing_new:
        first = subprocess.run([lakehouse, "run"], env=env, cwd=root, capture_output=True, text=True, timeout=1800)
        if first.returncode != 0:
            raise SystemExit(f"the first lakehouse run ({root}) failed:\n{first.stdout[-3000:]}{first.stderr[-2000:]}")
    probes = home / "gc-probe"
    if gc_probe:  # for `lakehouse run`'s processes, not the generator's
        probes.mkdir()
        env = {**env, "PYTHONPATH": os.pathsep.join([str(root), str(Path(__file__).resolve().parent / "gc_probe")]),
               "LAKEHOUSE_GC_PROBE": str(probes)}
    with CpuWatch(lambda process: process.environ().get("LAKEHOUSE_HOME") == str(home), 0.2) as watch:
        started = time.perf_counter()
        done = subprocess.run([lakehouse, "run"], env=env, cwd=root, capture_output=True,
                              text=True, timeout=1800)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"lakehouse run ({root}) failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    by_kind = watch.by_kind(kind)
    result = {"wall_s": round(wall, 2), "cpu_s": round(sum(by_kind.values()), 2),
              "by_kind": {k: round(v, 2) for k, v in by_kind.most_common()},
              "last_line": done.stdout.strip().splitlines()[-1]}
    if gc_probe:
        time.sleep(1)  # the probes' last writes
        gc_by_kind = collections.Counter()
        for path in probes.glob("*.json"):
            record = json.loads(path.read_text())
            gc_by_kind[kind(record["command"])] += record["gc_s"]
        result["gc_s"] = round(sum(gc_by_kind.values()), 2)
        result["gc_by_kind"] = {k: round(v, 2) for k, v in gc_by_kind.most_common()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git revision (default HEAD~1, or this tree with --baseline-python)")
    parser.add_argument("--baseline-python", help="the baseline's interpreter (default: this one)")
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--gc", action="store_true", help="also time each process's garbage collections")
    parser.add_argument("--nothing-new", action="store_true", help="measure a second run, which finds no work")
    args = parser.parse_args()
    revision = args.baseline or (None if args.baseline_python else "HEAD~1")
    runs: dict[str, list[dict]] = {"this_tree": [], "baseline": []}
    with baseline_tree(revision) as worktree, baseline_python(args.baseline_python) as python:
        for _ in range(args.rounds):
            runs["this_tree"].append(one_round(ROOT, args.days, gc_probe=args.gc, nothing_new=args.nothing_new))
            runs["baseline"].append(one_round(worktree, args.days, python, gc_probe=args.gc,
                                              nothing_new=args.nothing_new))
    keys = ("wall_s", "cpu_s", "gc_s") if args.gc else ("wall_s", "cpu_s")
    medians = {name: {k: round(statistics.median(r[k] for r in rounds), 1) for k in keys}
               for name, rounds in runs.items()}
    print(json.dumps({
        "baseline": revision or "this tree", "baseline_python": args.baseline_python or sys.executable,
        "python": sys.executable, "days": args.days, "nothing_new": args.nothing_new, "rounds": args.rounds,
        "medians": medians,
        "ratio_cpu": round(medians["this_tree"]["cpu_s"] / medians["baseline"]["cpu_s"], 2),
        "ratio_wall": round(medians["this_tree"]["wall_s"] / medians["baseline"]["wall_s"], 2),
        "rounds_detail": runs,
    }, indent=2))


if __name__ == "__main__":
    main()
