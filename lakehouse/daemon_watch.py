"""`dagster-daemon` that stops, with everything it started, when `lakehouse run` is gone.

`lakehouse run` starts `python -m lakehouse.daemon_watch <fd> dagster-daemon run -w ...`
in a session (and process group) of its own. `<fd>` is the read end of a pipe whose
write end only `lakehouse run` holds. A watchdog thread blocks reading it; the kernel
closes the write end when `lakehouse run` ends however it ends (exit, crash, SIGKILL), so
the read returns end-of-file and the watchdog sends SIGTERM to the whole process group:
the daemon (which shuts down its threads), its code server and the runs it launched
(Dagster marks them failed, interrupted). Whatever is still alive after GRACE_SECONDS
gets SIGKILL. Unlike Linux's PR_SET_PDEATHSIG, which signals one process and fires when
the parent *thread* exits, this covers the whole group and works on any POSIX system.
The rest of this process is Dagster's own daemon command, its SQLite event log keeping an
engine per shard (`lakehouse/dagster_patches.py`, 2.) and its code servers forked from a child
made after its imports (`lakehouse/code_servers.py`).

One daemon per instance: before it starts, the process takes an exclusive lock on
`$DAGSTER_HOME/daemon.lock` (waiting while another daemon holds it) and writes its pid
there. The operating system releases the lock when the process ends, however it ends,
so a held lock means a live daemon, whatever its last heartbeat says, and a second
`lakehouse run` or `make ui` takes over the moment the first daemon is gone.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

GRACE_SECONDS = 20
STOPS = frozenset({signal.SIGINT, signal.SIGTERM})


def unblock_stops(who: str) -> None:
    """SIGINT and SIGTERM unblocked in this process and what it starts, said on stderr if they were blocked.

    A signal mask is inherited across fork and exec, so a parent that blocked them would leave
    `lakehouse` deaf to a stop, and the daemon's group (stopped with SIGTERM) waiting for the SIGKILL."""
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS) & STOPS
    if blocked:
        sys.stderr.write(f"{who}: {' and '.join(sorted(s.name for s in blocked))} came blocked from the process "
                         "that started it; unblocked, so that a stop reaches it and what it starts\n")
        sys.stderr.flush()


def _watch(fd: int, parent: int) -> None:
    try:
        while os.read(fd, 1024):
            pass  # nothing is ever written; only end-of-file matters
    except OSError:
        pass
    group = os.getpgrp()
    sys.stderr.write(f"lakehouse run (pid {parent}) is gone: stopping the daemon, its code server and its runs "
                     f"(process group {group})\n")
    sys.stderr.flush()
    os.killpg(group, signal.SIGTERM)
    time.sleep(GRACE_SECONDS)
    os.killpg(group, signal.SIGKILL)  # only reached if something ignored SIGTERM


LOCK_FILE = "daemon.lock"
LOOP_SECONDS_VAR = "LAKEHOUSE_DAEMON_LOOP_SECONDS"  # set by `lakehouse run` for a short backfill loop


def lock_path(dagster_home) -> str:
    return os.path.join(str(dagster_home), LOCK_FILE)


def lock_holder(dagster_home) -> int | None:
    """The pid of the live daemon holding the instance's lock, or None when no daemon holds it."""
    import fcntl

    import psutil

    path = lock_path(dagster_home)
    if not os.path.exists(path):
        return None
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            text = handle.read().strip()
            # -1: held, by a daemon that has not written its pid yet (the file may still name the last one)
            return int(text) if text.isdigit() and psutil.pid_exists(int(text)) else -1
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def take_lock(dagster_home) -> object:
    """Hold the instance's daemon lock for the life of this process (waiting for another holder to end)."""
    import fcntl

    handle = open(lock_path(dagster_home), "a+")  # not inherited by children (PEP 446): only this process holds it
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        sys.stderr.write(f"waiting: another dagster-daemon (pid {handle.read().strip() or '?'}) runs on this "
                         "instance; this one starts when it ends\n")
        sys.stderr.flush()
        fcntl.flock(handle, fcntl.LOCK_EX)
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def main(argv: list[str]) -> int:
    from lakehouse import collector

    collector.tune()  # before Dagster's daemon is imported (lakehouse/collector.py)
    fd, command = int(argv[1]), argv[2:]
    unblock_stops("lakehouse daemon")  # the group's stop is SIGTERM; the code server and runs inherit this mask
    threading.Thread(target=_watch, args=(fd, os.getppid()), name="lakehouse-run-watchdog", daemon=True).start()
    if loop := os.environ.get(LOOP_SECONDS_VAR):
        # Dagster's backfill daemon (which carries out the automation's multi-day requests)
        # sleeps a fixed 30 s between passes, and nothing in the instance config changes it:
        # each hop of a backfill (silver, then gold) would wait that long while `lakehouse run`
        # waits on it. Its loop reads this module constant when the daemon starts.
        # Likewise the sensor and automation daemons wait at least 5 s between passes (module
        # constants too): every hop (a landed day's run, then the ticks that find nothing left,
        # or the automation's runs after a backfill) would wait for the next pass.
        # Dagster's retries of runs whose worker died wait for its event-log consumer, which
        # passes every 5 s (read from the environment when its module loads, hence first).
        os.environ.setdefault("DAGSTER_EVENT_LOG_CONSUMER_DAEMON_INTERVAL_SECONDS", loop)
        import dagster._daemon.asset_daemon as asset_daemon
        import dagster._daemon.controller as controller
        import dagster._daemon.sensor as sensor_daemon

        controller.DEFAULT_DAEMON_INTERVAL_SECONDS = int(loop)
        sensor_daemon.MIN_INTERVAL_LOOP_TIME = min(sensor_daemon.MIN_INTERVAL_LOOP_TIME, float(loop))
        asset_daemon.MIN_INTERVAL_LOOP_SECONDS = min(asset_daemon.MIN_INTERVAL_LOOP_SECONDS, float(loop))
    from dagster._daemon.cli import main as dagster_daemon  # what the `dagster-daemon` script runs

    from lakehouse import code_servers

    # The code servers' zygote: after the imports it shares, before Dagster's threads, the lock
    # (which it must not hold) and the event log's change (each code server makes its own); the
    # watchdog's pipe is not its to keep open.
    code_servers.install(close=(fd,))
    from lakehouse import dagster_patches

    dagster_patches.keep_event_log_engines(imported_only=False)  # each run it creates: an event per asset and day
    lock = take_lock(os.environ["DAGSTER_HOME"])  # noqa: F841 (held until the process ends)

    collector.settle()  # a daemon may live for days (make ui)
    sys.argv = command
    return dagster_daemon()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
