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
The rest of this process is Dagster's own daemon command, unchanged.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

GRACE_SECONDS = 20


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


def main(argv: list[str]) -> int:
    fd, command = int(argv[1]), argv[2:]
    threading.Thread(target=_watch, args=(fd, os.getppid()), name="lakehouse-run-watchdog", daemon=True).start()
    from dagster._daemon.cli import main as dagster_daemon  # what the `dagster-daemon` script runs

    sys.argv = command
    return dagster_daemon()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
