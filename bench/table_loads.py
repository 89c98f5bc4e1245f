"""Benchmark: how often a small day's steps ask the Iceberg catalog for a table, this tree against a baseline.

    python bench/table_loads.py                      # against HEAD~1
    python bench/table_loads.py --baseline 3cab353 --days 3

Each load is a catalog query: locally a SQLite query (about 0.5 ms), on AWS a Glue GetTable
call (tens of milliseconds, and an API call billed and throttled per account). --days dirty
days of the demo's scale are processed in process (tests/pipeline_helpers.process_day, which
gives each step its own store, as a Dagster step has), in a fresh child process and home per
tree; the loads of the last day are counted, split into the stores' own and those the catalog
makes inside a commit (PyIceberg's SQL and Glue catalogs read the current metadata to check
a commit against: one per commit, which this project cannot save). The counts are exact, so
one round is enough. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from small_days import CHILD_SETUP, ROOT, baseline_tree  # bench/, this script's folder

CHILD = CHILD_SETUP + r"""
from pyiceberg.catalog.sql import SqlCatalog
with contextlib.redirect_stdout(io.StringIO()):
    for day in days[:-1]:
        pipeline_helpers.process_day(settings, "duckdb", day)
counts = {"ours": collections.Counter(), "in commits": collections.Counter()}
committing = []
load, commit = SqlCatalog.load_table, SqlCatalog.commit_table
def counted_load(self, identifier):
    name = identifier if isinstance(identifier, str) else ".".join(identifier)
    counts["in commits" if committing else "ours"][name] += 1
    return load(self, identifier)
def counted_commit(self, *args, **kwargs):
    committing.append(1)
    try:
        return commit(self, *args, **kwargs)
    finally:
        committing.pop()
SqlCatalog.load_table, SqlCatalog.commit_table = counted_load, counted_commit
with contextlib.redirect_stdout(io.StringIO()):
    pipeline_helpers.process_day(settings, "duckdb", days[-1])
print(json.dumps({k: dict(v) for k, v in counts.items()}))
"""


def count(root: Path, days: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(root), str(days)], capture_output=True, text=True,
                          timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"the run in {root} failed:\n{done.stderr[-3000:]}")
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    ours = counts["ours"]
    return {"loads": sum(ours.values()) + sum(counts["in commits"].values()),
            "by_the_stores": sum(ours.values()), "inside_commits": sum(counts["in commits"].values()),
            "by_the_stores_per_table": dict(sorted(ours.items(), key=lambda kv: -kv[1]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD~1", help="git revision to compare with (default HEAD~1)")
    parser.add_argument("--days", type=int, default=2, help="days processed; the last one is counted")
    args = parser.parse_args()
    with baseline_tree(args.baseline) as baseline:
        result = {"baseline": args.baseline, "days": args.days,
                  "this tree": count(ROOT, args.days), "baseline tree": count(baseline, args.days)}
    result["ratio_loads"] = round(result["this tree"]["loads"] / result["baseline tree"]["loads"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
