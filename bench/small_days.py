"""Benchmark: the fixed cost of a small day's steps, this tree against a baseline commit, in one run.

    python bench/small_days.py                      # against HEAD~1
    python bench/small_days.py --baseline 5f68561 --days 8 --rounds 2

A small day (the demo's scale) is what a laptop, the demo and the test suite process, and
there the steps' fixed costs (planning, Iceberg commits and scans) are the time, not the
data. Each round processes --days dirty generated days one after another, in process
(bronze, silver, the partitioned gold; tests/pipeline_helpers.process_day), once with this
tree and once with the baseline checked out in a temporary git worktree, alternating, each
in a fresh child process and home. Later days show whether a day's cost grows with the
tables' history. Prints one JSON document: seconds per day, medians over the rounds, and the ratio.
The baseline must be in the clone's history (not a shallow clone). Its bytecode is compiled
when it is checked out, as `make install` compiles this tree's: where PYTHONDONTWRITEBYTECODE
is set, every process of the baseline would otherwise compile its modules again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The start of a bench's child process: a fresh home, the tree given as its first argument first
# on its path, and as many dirty days of the demo's scale generated as its second says (`days`).
CHILD_SETUP = r"""
import collections, contextlib, datetime as dt, io, json, logging, os, sys, tempfile, time
home = tempfile.mkdtemp(prefix="lakehouse-bench-")
os.environ.update(LAKEHOUSE_HOME=home, DAGSTER_HOME=home + "/dagster")
root, n = sys.argv[1], int(sys.argv[2])
sys.path[:0] = [root, root + "/tests"]
logging.disable(logging.WARNING)
from lakehouse.generate import generate
from lakehouse.resources.landing import open_landing_zone
from lakehouse.settings import load_settings
import pipeline_helpers
settings = load_settings()
days = [dt.date(2026, 3, 10) + dt.timedelta(days=i) for i in range(n)]
with contextlib.redirect_stdout(io.StringIO()):
    generate(open_landing_zone(settings.landing_uri), days=n, start=days[0], seed=3, dirty=True)
"""

CHILD = CHILD_SETUP + r"""
times = []
for day in days:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        pipeline_helpers.process_day(settings, "duckdb", day)
    times.append(time.perf_counter() - started)
print(json.dumps(times))
"""


def one_round(root: Path, days: int) -> list[float]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(root), str(days)], capture_output=True, text=True,
                          timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"the run in {root} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def tree_env(root: Path) -> dict[str, str]:
    """This environment with `root` and its tests first on PYTHONPATH: for the processes a child
    starts too (Spark's Python workers, pytest's), which do not see the child's own sys.path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests")])}


@contextlib.contextmanager
def baseline_python(python: str | None):
    """The interpreter of a temporary virtualenv made from `python` with the locked versions, or
    this one when None: for comparing interpreters (how they were built) on the same code.
    Its bytecode is compiled at install, as `make install` does."""
    if python is None:
        yield sys.executable
        return
    uv = str(Path(sys.executable).parent / "uv")
    with tempfile.TemporaryDirectory(prefix="lakehouse-python-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([uv, "venv", "--quiet", "--python", python, str(venv)], check=True)
        subprocess.run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "--compile-bytecode",
                        "--no-deps", "-r", str(ROOT / "requirements.lock"), "-e", str(ROOT)], check=True)
        yield str(venv / "bin" / "python")


@contextlib.contextmanager
def baseline_tree(revision: str | None):
    """`revision` checked out in a temporary git worktree, removed afterwards (None: this tree)."""
    if revision is None:
        yield ROOT
        return
    with tempfile.TemporaryDirectory(prefix="lakehouse-baseline-") as tmp:
        baseline = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(baseline), revision],
                       check=True)
        subprocess.run([sys.executable, "-m", "compileall", "-q", *[str(baseline / d) for d in ("lakehouse", "tests",
                                                                                              "bench")]], check=True)
        try:
            yield baseline
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD~1", help="git revision to compare with (default HEAD~1)")
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with baseline_tree(args.baseline) as baseline:
        runs: dict[str, list[list[float]]] = {"this tree": [], "baseline": []}
        for _ in range(args.rounds):  # alternating, so both see the same machine noise
            runs["this tree"].append(one_round(ROOT, args.days))
            runs["baseline"].append(one_round(baseline, args.days))
    result = {"baseline": args.baseline, "days": args.days, "rounds": args.rounds}
    for name, rounds in runs.items():
        per_day = [statistics.median(r[i] for r in rounds) for i in range(args.days)]
        result[name] = {"seconds_per_day": [round(t, 2) for t in per_day], "total": round(sum(per_day), 1),
                        "median_day_after_the_first": round(statistics.median(per_day[1:]), 2)}
    result["ratio_total"] = round(result["this tree"]["total"] / result["baseline"]["total"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
