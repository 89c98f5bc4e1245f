"""Benchmark: the CPU of some test files run in one pytest process, this tree against a baseline
commit or another interpreter.

    python bench/tests_cpu.py tests/test_silver_gold.py                      # against HEAD~1
    python bench/tests_cpu.py --baseline 05413bf --rounds 3 tests/test_silver_gold.py
    python bench/tests_cpu.py --baseline-python ~/.pyenv/versions/3.11.7/bin/python3.11 tests/test_silver_gold.py

For changes to what the tests' own processes do (steps in process, reads, commits): the
suite's figures move by a fifth with the machine (README, Tests), this compares the same
files run one after the other, each tree in turn, the baseline checked out in a temporary git
worktree and put first on PYTHONPATH. The CPU is the pytest process's and its children's
(user + system, from the OS), so tests that start other processes count them too. A tree
whose tests fail is reported, not timed. Prints one JSON document: medians over the rounds
and the ratio (this tree / baseline). With --baseline-python, the baseline is this tree (unless
--baseline is given too) run by a temporary virtualenv made from that interpreter.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from small_days import ROOT, baseline_python, baseline_tree, tree_env  # bench/, this script's folder


def one_round(root: Path, files: list[str], python: str = sys.executable) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    env = tree_env(root)
    done = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(root),
                           *[str(root / f) for f in files]], env=env, cwd="/tmp", capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"the tests in {root} failed:\n{done.stdout[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu": cpu, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git revision to compare with (default HEAD~1, or this tree with "
                                           "--baseline-python)")
    parser.add_argument("--baseline-python", help="the baseline's interpreter (default: this one)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("files", nargs="+", help="test files, relative to the project's folder")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"this tree": [], "baseline tree": []}
    revision = args.baseline or (None if args.baseline_python else "HEAD~1")
    with baseline_tree(revision) as baseline, baseline_python(args.baseline_python) as python:
        for _ in range(args.rounds):  # alternating, so both see the same machine noise
            runs["this tree"].append(one_round(ROOT, args.files))
            runs["baseline tree"].append(one_round(baseline, args.files, python))
    result: dict = {"baseline": revision or "this tree", "baseline_python": args.baseline_python or sys.executable,
                    "python": sys.executable, "rounds": args.rounds, "files": args.files}
    for name, rounds in runs.items():
        result[name] = {key: {"median": round(statistics.median(r[key] for r in rounds), 1),
                              "each": [round(r[key], 1) for r in rounds]} for key in ("cpu", "wall")}
    result["ratio_cpu"] = round(result["this tree"]["cpu"]["median"] / result["baseline tree"]["cpu"]["median"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
