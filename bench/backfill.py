"""Backfills: a range in one run versus a run per day; and whether a new day's cost grows with history.

    python bench/backfill.py [--days 30] [--history 30 365] [--scale 1.0] [--repeat 3]

Both parts run the daily job (bronze, silver, gold) in process on a Dagster instance,
the way the daemon would run it, on generated landing files (the demo's, not dirty).

- range: `--days` days as ONE run over the partition range (what `lakehouse backfill`
  launches; BackfillPolicy.single_run) versus the same days as one run per partition,
  each on its own fresh lakehouse. Target: the range at least 10x faster.
- history: two lakehouses with `--history` days already loaded (each loaded as one
  range run, as a backfill would), then the next day processed as a single-partition
  run, `--repeat` times each, alternating between the two; medians and the ratio.
  Target: within 1.2x, since a new day's work must not grow with history.

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lakehouse.generate import generate  # noqa: E402
from lakehouse.resources.landing import LocalLandingZone  # noqa: E402
from lakehouse.runner import open_instance  # noqa: E402
from lakehouse.settings import load_settings  # noqa: E402
from lakehouse.wiring import DAILY_JOB, build_definitions  # noqa: E402

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def lakehouse(root: Path, name: str, landing: str, start: dt.date):
    env = {"LAKEHOUSE_HOME": str(root / name), "LAKEHOUSE_LANDING_URI": landing,
           "LAKEHOUSE_START_DATE": start.isoformat()}
    os.environ["DAGSTER_HOME"] = str(root / name / "dagster")
    return load_settings(env)


def run(settings, first: dt.date, last: dt.date | None = None) -> float:
    """The daily job for one day (last None) or for first..last as one run; returns seconds."""
    job = build_definitions(settings).resolve_job_def(DAILY_JOB)
    tags = ({"dagster/asset_partition_range_start": first.isoformat(),
             "dagster/asset_partition_range_end": last.isoformat()} if last else {})
    with open_instance(settings) as instance:
        started = time.perf_counter()
        result = job.execute_in_process(instance=instance, run_config=QUIET, raise_on_error=False, tags=tags,
                                        partition_key=None if last else first.isoformat())
        seconds = time.perf_counter() - started
    if not result.success:
        raise SystemExit(f"run failed: {[e.message for e in result.all_events if e.is_failure]}")
    return seconds


def range_versus_single(root: Path, days: int, scale: float) -> dict:
    start = dt.date(2026, 1, 1)
    landing = f"file://{root}/range-landing"
    generate(LocalLandingZone(landing), days=days, start=start, seed=9, scale=scale)
    last = start + dt.timedelta(days=days - 1)
    one_run = run(lakehouse(root, "range", landing, start), start, last)
    single = lakehouse(root, "single", landing, start)
    per_day = [run(single, start + dt.timedelta(days=i)) for i in range(days)]
    return {
        "days": days,
        "one_run_seconds": round(one_run, 2),
        "run_per_day_seconds": round(sum(per_day), 2),
        "run_per_day_median_seconds": round(statistics.median(per_day), 2),
        "speedup": round(sum(per_day) / one_run, 2),
        "target_speedup": 10,
    }


def new_day_versus_history(root: Path, histories: list[int], scale: float, repeat: int) -> dict:
    longest = max(histories)
    start = dt.date(2025, 1, 1)
    landing = f"file://{root}/history-landing"
    generate(LocalLandingZone(landing), days=longest + 1, start=start, seed=9, scale=scale)
    lakes, loads = {}, {}
    for days in histories:
        first = start + dt.timedelta(days=longest - days)  # every history ends the day before the new day
        lakes[days] = lakehouse(root, f"history-{days}", landing, first)
        loads[days] = round(run(lakes[days], first, start + dt.timedelta(days=longest - 1)), 2)
    new_day = start + dt.timedelta(days=longest)
    times: dict[int, list[float]] = {d: [] for d in histories}
    for _ in range(repeat):  # alternate, so drift on a noisy machine hits both alike
        for days in histories:
            times[days].append(run(lakes[days], new_day))
    medians = {d: statistics.median(t) for d, t in times.items()}
    low, high = min(histories), max(histories)
    return {
        "new_day": new_day.isoformat(),
        "history_load_seconds_one_run": loads,
        "new_day_seconds": {str(d): [round(t, 2) for t in times[d]] for d in histories},
        "new_day_median_seconds": {str(d): round(m, 2) for d, m in medians.items()},
        "ratio": round(medians[high] / medians[low], 3),
        "target_ratio": 1.2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--history", type=int, nargs=2, default=[30, 365])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("pyiceberg").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        report = {
            "scale": args.scale,
            "machine_cpus": os.cpu_count(),
            "range_versus_run_per_day": range_versus_single(root, args.days, args.scale),
            "new_day_versus_history": new_day_versus_history(root, args.history, args.scale, args.repeat),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
