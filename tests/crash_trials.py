"""Crash trials (tests/test_crash*.py): every process of a home killed with SIGKILL at a random
moment of `lakehouse run`, then a plain `lakehouse run`, which must end with exit 0 and the
tables of an uninterrupted run.

A home goes through several trials, one more pair of ingest days landing before each, so
every trial kills a multi-day run and the recoveries pile up as they would on a machine that
keeps dying. The reference is the same landing zone processed in process, each trial's days
as one batch (the oracle tests prove day by day and range runs equal to the independent
oracle, and the backfill tests prove them equal to each other). The trials are split over
two files, each with its own home, so that two test workers split the trials.

`make test` runs two trials per file, one of each kind of kill moment (about 75 s a trial on
this machine); `make soak` runs more, at a fresh seed each time (LAKEHOUSE_CRASH_TRIALS,
LAKEHOUSE_CRASH_SEED), to look for kill moments the fixed seeds do not reach.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline_helpers import TABLES, process_dimensions, process_range, table_rows
from processes import kill_all, none_left, run_workers
from lakehouse.generate import generate
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.resources.landing import LocalLandingZone
from lakehouse.settings import load_settings

LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")
START = dt.date(2026, 5, 4)
TRIALS = int(os.environ.get("LAKEHOUSE_CRASH_TRIALS", "2"))  # per file; two files
DAYS_PER_TRIAL = 2
BRONZE = ("bronze.orders", "bronze.customers", "bronze.products", "bronze.events")
SEED = int(os.environ.get("LAKEHOUSE_CRASH_SEED", "20261202"))


def day(i: int) -> dt.date:
    return START + dt.timedelta(days=i)


class Lake:
    """A landing zone fed day by day from a generated one, a home for `lakehouse run`, and the reference."""

    def __init__(self, root: Path, seed: int = 0):
        self.source, self.landing = root / "generated", root / "landing"
        self.home, self.reference_home = root / "home", root / "reference"
        generate(LocalLandingZone(f"file://{self.source}"), days=TRIALS * DAYS_PER_TRIAL + 3, start=START, seed=3 + seed,
                 scale=0.03, dirty=True)
        self.env = {**os.environ, "LAKEHOUSE_HOME": str(self.home), "DAGSTER_HOME": str(self.home / "dagster"),
                    "LAKEHOUSE_LANDING_URI": f"file://{self.landing}", "LAKEHOUSE_START_DATE": START.isoformat()}
        self.env.pop("LAKEHOUSE_PROFILE", None)
        self.settings = load_settings(self.env)
        self.reference = load_settings({**self.env, "LAKEHOUSE_HOME": str(self.reference_home),
                                        "DAGSTER_HOME": str(self.reference_home / "dagster")})
        self.landed = 0

    def land(self, n: int) -> None:
        """Copy the next `n` ingest days into the landing zone, and process them in the reference."""
        days = [day(i) for i in range(self.landed, self.landed + n)]
        for d in days:
            for folder in self.source.glob(f"retail/*/ingest_date={d.isoformat()}"):
                shutil.copytree(folder, self.landing / folder.relative_to(self.source))
        process_range(self.reference, "duckdb", days)  # one batch, as a backfill runs it
        self.landed += n
        process_dimensions(self.reference, "duckdb")

    def run(self, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([LAKEHOUSE, "run", "--timeout", "500"], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def start(self) -> subprocess.Popen:
        return subprocess.Popen([LAKEHOUSE, "run", "--timeout", "500"], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def tables(self, settings) -> dict[str, list[dict]]:
        store = TableStore(catalog_from_settings(settings))
        return {t: table_rows(store, t) for t in TABLES}


def assert_same_tables(lake: Lake, context: str) -> None:
    got, want = lake.tables(lake.settings), lake.tables(lake.reference)
    for table in TABLES:
        if got[table] != want[table]:
            extra = [r for r in got[table] if r not in want[table]][:5]
            missing = [r for r in want[table] if r not in got[table]][:5]
            status = subprocess.run([LAKEHOUSE, "status"], env=lake.env, capture_output=True, text=True, timeout=300)
            raise AssertionError(f"{context}: {table} differs from the uninterrupted run "
                                 f"({len(got[table])} rows, want {len(want[table])})\nonly here: {extra}\n"
                                 f"only in the reference: {missing}\nlakehouse status:\n{status.stdout[-4000:]}")


def assert_bronze_whole(lake: Lake, context: str) -> None:
    """Right after a kill: each bronze partition is there in full or not at all.

    Compared on the columns both tables have: the reference has already loaded the trial's
    days, whose files may add columns (schema drift) the killed run had not reached.
    """
    store, reference = (TableStore(catalog_from_settings(s)) for s in (lake.settings, lake.reference))
    for table in BRONZE:
        if not store.exists(table):
            continue
        got_rows, want_rows = table_rows(store, table), table_rows(reference, table)
        shared = set(got_rows[0]) & set(want_rows[0]) if got_rows and want_rows else set()
        got, want = {}, {}
        for rows, by_day in ((got_rows, got), (want_rows, want)):
            for row in rows:
                by_day.setdefault(row["_ingest_date"], []).append({k: row[k] for k in shared})
        for rows in (*got.values(), *want.values()):
            rows.sort(key=lambda r: tuple(str(r[k]) for k in sorted(shared)))
        for partition, rows in got.items():
            assert rows == want.get(partition), f"{context}: {table} {partition} is half written"


def recover(lake: Lake, context: str) -> str:
    result = lake.run()
    out = result.stdout + result.stderr
    assert result.returncode == 0, f"{context}: the run after the crash did not end cleanly:\n{out[-6000:]}"
    assert "Traceback" not in out, out[-6000:]
    assert not none_left(lake.home, within=30), f"{context}: processes left after the recovery run"
    try:
        assert_same_tables(lake, context)
    except AssertionError as e:
        raise AssertionError(f"{e}\nthe run after the crash printed:\n{out[-5000:]}") from None
    return result.stdout


def kill_moment(lake: Lake, proc: subprocess.Popen, rng: random.Random, trial: int, context: str) -> None:
    """Wait for the trial's kill moment. Even trials: any moment from the start, before or while
    the daemon gets going. Odd trials: once a run's worker is at work (as Dagster records it: the
    forkserver's first child, a check of its preload, also looks like one; a kill timed from it
    once hit nothing in flight), a little later; if the
    workers end first (a short run, or a fast machine's), at once: the kill then finds the
    daemon, its code server and the command between the run's end and the command's. (It no
    longer waits for a next worker, a retry or a run a tick makes: when none came, the command
    ended on its own and the trial killed nothing, as `make soak` found.)"""
    began = time.monotonic()
    if trial % 2:
        started_run_worker(lake, timeout=120, proc=proc, context=context)  # the home: made by the trials before
        deadline = time.monotonic() + rng.uniform(0.0, 6.0)
        while time.monotonic() < deadline and run_workers(lake.home):
            time.sleep(0.05)
    else:
        deadline = began + rng.uniform(1.0, 15.0)
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)


def kill_trials(lake: Lake, seed: int) -> None:
    """TRIALS crash trials on `lake`, each ending with a plain `lakehouse run` equal to the reference."""
    rng = random.Random(seed)
    moments, recoveries, in_flight = [], [], []
    for trial in range(TRIALS):
        lake.land(DAYS_PER_TRIAL)
        context = f"trial {trial + 1} (seed {seed})"
        proc = lake.start()
        began = time.monotonic()
        kill_moment(lake, proc, rng, trial, context)
        moment = round(time.monotonic() - began, 1)
        moments.append(moment)
        killed = []
        if proc.poll() is None:
            working = bool(run_workers(lake.home))
            killed = kill_all(lake.home)
            proc.wait(timeout=10)
        if proc.returncode != -signal.SIGKILL:  # the command ended on its own first: said, and checked
            out = proc.stdout.read()
            assert proc.returncode == 0 and "Traceback" not in out, f"{context}: the command failed:\n{out[-6000:]}"
            assert not none_left(lake.home, within=30), f"{context}: processes left after the command ended"
            print(f"{context}: the command ended on its own before the kill moment ({moment:.1f}s)")
        else:
            in_flight.append(working)
            assert_bronze_whole(lake, context)
        began = time.monotonic()
        out = recover(lake, context)
        if proc.returncode == -signal.SIGKILL:
            recoveries.append(out)
            print(f"{context}: killed after {moment:.1f}s ({len(killed)} processes), recovered in "
                  f"{time.monotonic() - began:.0f}s")
    assert recoveries, f"every command ended before its kill moment (moments {moments}): nothing was tested"
    # Counted over the trials that killed: what was recovered is said, not silent (at least one
    # trial found runs the crash left behind), and most kills hit work in flight (a run worker,
    # the process of a run, alive when all were killed).
    said = [o for o in recoveries if "were in progress before this command" in o or "retry" in o]
    assert said, f"no recovery was reported in any trial (kill moments {moments})"
    assert sum(in_flight) >= max(1, len(in_flight) // 3), f"kills that hit a run worker: {in_flight}, moments {moments}"
    status = subprocess.run([LAKEHOUSE, "status"], env=lake.env, capture_output=True, text=True, timeout=300)
    assert status.returncode == 0 and "Stuck work: nothing stuck" in status.stdout, status.stdout[-3000:]
    assert "Recovered runs (" in status.stdout, status.stdout[-3000:]


def started_run_worker(lake: Lake, timeout: float = 180, proc: subprocess.Popen | None = None,
                       context: str = "") -> tuple[str, int]:
    """(run id, worker pid) of the first run Dagster records as STARTED with a live worker; `proc`,
    the command whose run it is: ending first fails the wait."""
    import dagster as dg

    from lakehouse.launcher import worker_process, worker_status

    deadline = time.monotonic() + timeout
    instance = dg.DagsterInstance.from_config(str(lake.home / "dagster"))
    try:
        while time.monotonic() < deadline:
            for run in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
                found = worker_process(instance, run.run_id)
                if found and worker_status(*found)[0]:
                    return run.run_id, found[0]
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"{context}: the command ended before any run worker started:\n"
                                     f"{proc.stdout.read()[-4000:]}")
            time.sleep(0.1)
    finally:
        instance.dispose()
    raise AssertionError(f"{context}: no run worker started" if context else "no run started within the time allowed")


