"""More crash trials (see tests/crash_trials.py) on a home of their own, then one run worker
killed, a stop and the run workers' forkserver killed in the middle of runs, and two
`lakehouse run` started at once."""

from __future__ import annotations

import os
import signal

import pytest

from crash_trials import SEED, Lake, assert_same_tables, kill_trials, none_left, started_run_worker
from processes import FORKSERVER, forkservers, processes_of, run_workers

SEED_OFFSET = 1


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    return Lake(tmp_path_factory.mktemp("crash"), seed=SEED_OFFSET)


def test_killing_every_process_at_other_random_moments_heals_with_a_plain_run(lake):
    kill_trials(lake, SEED + 1)


def test_killing_one_run_worker_fails_that_run_and_a_retry_does_its_work(lake):
    lake.land(1)
    proc = lake.start()
    run_id, pid = started_run_worker(lake)
    # The worker is a fork of the code server's preloaded forkserver (lakehouse/run_workers.py).
    assert FORKSERVER in run_workers(lake.home).get(pid, ""), processes_of(lake.home)
    os.kill(pid, 9)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-6000:]
    mine = "\n".join(line for line in out.splitlines() if run_id[:8] in line)
    # Failed with why (the launcher's check via run monitoring, or the code server seeing its
    # process exit, whichever comes first), then run again.
    assert f"run {run_id[:8]}" in mine and "FAILURE" in mine, mine or out[-6000:]
    assert f"(retry 1 of run {run_id[:8]})" in mine, mine
    assert "failed run(s) recovered by an automatic retry" in out, out[-6000:]
    assert not none_left(lake.home, within=30)
    assert_same_tables(lake, "one run worker killed")


def test_two_runs_started_at_once_end_cleanly_with_the_tables_of_one(lake):
    lake.land(1)
    first, second = lake.start(), lake.start()
    outs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], "\n\n".join(o[-4000:] for o in outs)
    assert any("is running on this instance; following its runs" in o for o in outs), outs
    assert not none_left(lake.home, within=30)
    assert_same_tables(lake, "two runs at once")


def test_a_stop_mid_run_stops_every_process_and_a_forkserver_killed_mid_run_fails_no_run(lake):
    """SIGTERM while a run works stops the daemon, its code server, the forkserver and the run
    (as with spawned workers). Then, while the next command's run works, the forkserver alone
    is killed: the run goes on and succeeds, as the code server follows its worker by its id
    instead of reading the forkserver's end as the run's (lakehouse/run_workers.py)."""
    lake.land(1)
    proc = lake.start()
    started_run_worker(lake)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-6000:]
    assert not none_left(lake.home, within=10), "left running after SIGTERM"

    log = lake.home / "logs" / "daemon.log"  # the code server's warnings end up there too
    before = log.stat().st_size
    proc = lake.start()
    run_id, pid = started_run_worker(lake)
    assert FORKSERVER in run_workers(lake.home).get(pid, ""), processes_of(lake.home)
    servers = forkservers(lake.home)
    assert servers, processes_of(lake.home)
    for server in servers:
        os.kill(server, signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-6000:]
    # The run (itself the retry of the run the stop ended) succeeds; nothing failed it, so nothing retries it.
    mine = [line for line in out.splitlines() if f"run {run_id[:8]} " in line]
    assert mine and all("SUCCESS" in line and "FAILURE" not in line for line in mine), "\n".join(mine) or out[-6000:]
    assert f"of run {run_id[:8]})" not in out, out[-6000:]
    with log.open("rb") as f:  # the worker outlived the forkserver, and was followed by its id
        f.seek(before)
        assert f"before run worker pid {pid}; following it by its id" in f.read().decode(errors="replace")
    assert not none_left(lake.home, within=30)
    assert_same_tables(lake, "a stop mid-run, then the forkserver killed mid-run")
