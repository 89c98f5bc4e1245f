"""More crash trials (see tests/crash_trials.py) on a home of their own, then one run worker
killed, and two `lakehouse run` started at once."""

from __future__ import annotations

import os

import pytest

from crash_trials import SEED, Lake, assert_same_tables, kill_trials, none_left, started_run_worker

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
