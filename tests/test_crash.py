"""Crash trials (see tests/crash_trials.py), then only the daemon killed."""

from __future__ import annotations

import pytest

from crash_trials import SEED, Lake, assert_same_tables, kill_all, kill_trials, none_left, started_run_worker

SEED_OFFSET = 0


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    return Lake(tmp_path_factory.mktemp("crash"), seed=SEED_OFFSET)


def test_killing_every_process_at_a_random_moment_heals_with_a_plain_run(lake):
    kill_trials(lake, SEED)


def test_killing_only_the_daemon_is_healed_by_the_same_run(lake):
    lake.land(1)
    proc = lake.start()
    started_run_worker(lake)
    killed = kill_all(lake.home, where=lambda command: "lakehouse.daemon_watch" in command, rounds=1)
    assert len(killed) == 1
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-6000:]
    assert "killed by SIGKILL; started another" in out, out[-6000:]
    assert not none_left(lake.home, within=30)
    assert_same_tables(lake, "daemon killed")


