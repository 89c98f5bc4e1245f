"""`lakehouse run` as people run it: an unreachable landing zone, a failing sensor tick and
SIGTERM/SIGKILL end it with a message and an exit code, and leave nothing running."""

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from processes import none_left, parent_of, processes_of
from lakehouse.generate import generate
from lakehouse.resources.landing import LocalLandingZone

LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # free once closed: nothing listens there


STOPS = {signal.SIGINT, signal.SIGTERM}


def start_run(*args, blocked: bool = False) -> subprocess.Popen:
    """`lakehouse run`; `blocked`: with SIGINT and SIGTERM blocked, as a parent's mask can pass them on
    (blocked in this thread around the start: the child inherits the starting thread's mask)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS) if blocked else None
    try:
        return subprocess.Popen([LAKEHOUSE, "run", *args], env=dict(os.environ), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, bufsize=1)
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def read_until(proc: subprocess.Popen, wanted, timeout: float) -> list[str]:
    """stdout lines up to and including the first for which `wanted(line)` holds."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break  # the process ended
        lines.append(line.rstrip("\n"))
        if wanted(line):
            return lines
    proc.kill()
    raise AssertionError(f"never printed what was awaited; stdout so far:\n" + "\n".join(lines)
                         + f"\nstderr:\n{proc.stderr.read()}")


@pytest.mark.parametrize("case", ["closed port", "missing bucket"])
def test_an_unreachable_landing_zone_stops_run_at_once_naming_what_to_fix(lakehouse_env, s3_endpoint, monkeypatch,
                                                                          case):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    endpoint = f"http://127.0.0.1:{closed_port()}" if case == "closed port" else s3_endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("LAKEHOUSE_LANDING_URI", "s3://no-such-landing-bucket/lakehouse")

    started = time.monotonic()
    result = subprocess.run([LAKEHOUSE, "run"], env=dict(os.environ), capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started

    assert result.returncode == 2, result.stdout + result.stderr
    err = result.stderr
    assert "Traceback" not in result.stdout + err
    assert "landing zone: s3://no-such-landing-bucket/lakehouse (LAKEHOUSE_LANDING_URI)" in err
    assert f"endpoint:     {endpoint} (AWS_ENDPOINT_URL)" in err
    assert "credentials:  env (boto3's credential chain; AWS_PROFILE unset)" in err
    assert "testing" not in err  # never a secret (nor the key id)
    if case == "closed port":
        assert "EndpointConnectionError" in err and "check AWS_ENDPOINT_URL" in err
    else:
        assert "NoSuchBucket" in err and "aws s3 mb s3://no-such-landing-bucket" in err
    assert err.rstrip().endswith("exit code 2")
    assert not (lakehouse_env.home / "logs" / "daemon.log").exists()  # failed before starting the daemon
    assert took < 30


def test_a_landing_tick_that_fails_later_stops_run_with_the_fix_and_the_daemon(lakehouse_env, s3_bucket, monkeypatch,
                                                                               tmp_path):
    """The zone was fine when `lakehouse run` started, then its bucket went away: the first failed tick ends it."""
    monkeypatch.setenv("LAKEHOUSE_LANDING_URI", f"s3://{s3_bucket}/landing")
    proc = start_run("--timeout", "300")
    try:
        read_until(proc, lambda line: line.startswith("Started dagster-daemon"), timeout=60)
        boto3.client("s3").delete_bucket(Bucket=s3_bucket)  # empty; the daemon has not loaded its code yet
        out, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 2, out + err
    assert "Traceback" not in out + err
    assert "the landing_sensor tick of" in err and "failed:" in err and "NoSuchBucket" in err
    assert f"landing zone: s3://{s3_bucket}/landing (LAKEHOUSE_LANDING_URI)" in err
    assert f"aws s3 mb s3://{s3_bucket}" in err
    assert "stopped on SIGTERM" in out  # the daemon, stopped by `lakehouse run` itself
    assert not none_left(tmp_path, within=5)


def test_sigterm_and_sigkill_stop_the_daemon_and_everything_it_started(lakehouse_env, tmp_path):
    day = dt.date(2026, 3, 2)
    report = generate(LocalLandingZone(lakehouse_env.landing_uri), days=1, start=day, seed=5, scale=0.05)

    # SIGTERM as soon as the landing sensor asked for the bronze run: the daemon, its code
    # server and the run's process (if launched yet) all stop, and so does the command, started
    # with SIGTERM blocked (README, the stop).
    proc = start_run(blocked=True)
    try:
        read_until(proc, lambda line: " queued, " in line, timeout=120)  # the progress count: a run was asked for
        assert processes_of(tmp_path)  # what is about to be stopped
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    import dagster as dg

    with dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"]) as instance:
        [run] = instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "landing_sensor"}))
    run_id = run.run_id[:8]
    assert proc.returncode == 143, out + err
    assert "SIGINT and SIGTERM came blocked from the process that started it; unblocked" in err, err
    assert "Traceback" not in out + err
    assert "SIGTERM received: stopping dagster-daemon and the runs it started" in out
    assert "with its code server and runs stopped on SIGTERM" in out
    assert "lakehouse run: stopped by SIGTERM" in out and out.rstrip().endswith("exit code 143")
    assert not none_left(tmp_path, within=2), "left running after SIGTERM"

    # The files it had no time to load are stuck work, with the run that was to load them.
    status = subprocess.run([LAKEHOUSE, "status"], env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    stuck = status.stdout.split("Stuck work", 1)[1]
    orders = sum(1 for key in report.files if "/orders/" in key)
    line = next(line for line in stuck.splitlines() if line.startswith(f"- orders {day}:"))
    assert f"{orders} file(s) landed, not in bronze" in line and f"run {run_id}" in line, stuck

    # SIGKILL cannot be caught: the daemon's watchdog sees the command gone and stops the group.
    proc = start_run()
    try:
        read_until(proc, lambda line: line.startswith("Started dagster-daemon"), timeout=60)
        deadline = time.monotonic() + 90
        while not any("dagster api grpc" in p for p in processes_of(tmp_path).values()) and time.monotonic() < deadline:
            time.sleep(0.2)  # the code server is up: a whole group to stop
        found = processes_of(tmp_path)
        servers = [pid for pid, command in found.items()  # not a fork of one of them before it takes its title
                   if "dagster api grpc" in command and "dagster api grpc" not in found.get(parent_of(pid), "")]
        # Forked by the daemon's zygote (lakehouse/code_servers.py), all in the daemon's group (its pid).
        daemon = next(pid for pid, command in found.items() if "lakehouse.daemon_watch" in command)
        assert servers and all("code-server zygote" in found.get(parent_of(pid), "")
                               and os.getpgid(parent_of(pid)) == os.getpgid(pid) == daemon for pid in servers), found
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    left = none_left(tmp_path, within=40)
    assert not left, "left running after SIGKILL of lakehouse run:\n" + "\n".join(left)
    log = (lakehouse_env.home / "logs" / "daemon.log").read_text()
    assert "is gone: stopping the daemon, its code server and its runs" in log


DAEMON_MASK = r"""
import os, signal, sys
def blocked():  # the stop signals blocked in this (the main) thread
    mask = int(next(line for line in open("/proc/self/status") if line.startswith("SigBlk:")).split()[1], 16)
    return sorted(s.name for s in (signal.SIGINT, signal.SIGTERM) if mask >> (s - 1) & 1)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})  # as a parent's mask can leave them
print(blocked())
import dagster._daemon.cli as cli
cli.main = lambda: print(blocked()) or 0  # Dagster's daemon command, which daemon_watch runs last
from lakehouse import daemon_watch
read, write = os.pipe()
sys.exit(daemon_watch.main(["daemon_watch", str(read), "dagster-daemon", "run"]))
"""


def test_the_daemon_unblocks_the_stop_signals_a_parent_blocked(tmp_path):
    """The daemon's group is stopped with SIGTERM, so `daemon_watch` unblocks it before Dagster's daemon
    starts (its code server and runs inherit that mask), whoever started it (`make ui` does too)."""
    done = subprocess.run([sys.executable, "-c", DAEMON_MASK], env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['SIGINT', 'SIGTERM']", "[]"], done.stdout + done.stderr
    assert "lakehouse daemon: SIGINT and SIGTERM came blocked" in done.stderr, done.stderr


PREPARE = "from lakehouse.runner import prepare_instance; from lakehouse.settings import load_settings; " \
          "prepare_instance(load_settings())"


def test_a_command_preparing_an_instance_waits_for_another_preparing_it(tmp_path):
    """Two `lakehouse run` started at once on a new home: one creates the instance's storage, the
    other waits for it (a race on SQLite's tables gave a traceback before)."""
    import fcntl

    home = tmp_path / "home"
    (home / "dagster").mkdir(parents=True)
    env = {**os.environ, "LAKEHOUSE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    with open(home / "dagster" / ".prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another command is preparing it
        proc = subprocess.Popen([sys.executable, "-c", PREPARE], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        time.sleep(5)
        assert proc.poll() is None and not (home / "dagster" / "history" / "runs.db").exists()
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out
    assert (home / "dagster" / "history" / "runs.db").exists()


def test_a_process_group_of_only_ended_processes_is_not_waited_for():
    """Stopping waits until the daemon's process group has ended. Its code server and runs, once
    the daemon has gone, are reaped by the system's init, which in a container may take seconds
    or never happen: an ended, unreaped process (a zombie) does not count as running."""
    from lakehouse.runner import group_alive

    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    ended = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not _zombie(ended.pid) and time.monotonic() < deadline:  # ended; not reaped (no wait yet)
            time.sleep(0.05)
        assert _zombie(ended.pid)
        os.killpg(ended.pid, 0)  # the group still exists for the operating system
        assert not group_alive(ended.pid)
        assert group_alive(running.pid)
    finally:
        running.kill()
        running.wait()
        ended.wait()
    assert not group_alive(running.pid) and not group_alive(ended.pid)


def _zombie(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
