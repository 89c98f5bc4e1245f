"""A stop (SIGTERM, SIGINT) that reaches a run worker during one of our steps ends that step as
interrupted, whatever native code did with Dagster's interrupt.

While a step's code runs, Dagster turns the signal into an exception raised wherever the
interpreter is (`raise_interrupts_as`, dagster/_utils/interrupts.py). A stopped run fails as
interrupted and the next daemon runs it again. But when the signal lands inside native code,
that code decides what becomes of the exception, and in CI runs pydantic-core did two things
with it while PyIceberg serialized a table's metadata at a bronze commit: it discarded it
("Exception ignored in ...", reported as unraisable), and the stopped run went on to succeed
as if never stopped; or it wrapped it into its own PydanticSerializationError, and the run
failed as a step failure, which is never retried, so the day stayed unloaded.

So a run worker also notes every signal it gets through Python's wakeup descriptor, which the
interpreter writes to for any signal with a Python handler, before and whatever that handler
does. At the end of each of our steps (`stops_end_steps`), a stop noted during the step turns
its end, normal or failed with another error, into Dagster's interrupt: the run fails as
interrupted and is retried (a step's writes are idempotent). Only in a process's main thread,
where Python runs signal handlers; a descriptor some other code set is left to it, which is
said and recorded for `lakehouse status`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

from lakehouse import checked_code

log = logging.getLogger(__name__)

STOPS = frozenset({signal.SIGTERM, signal.SIGINT})
_pipes: dict[int, tuple[int, int] | None] = {}  # pid -> this process's wakeup pipe (a fork makes its own)


def _noted() -> int | None:
    """The read end of this process's wakeup pipe, set up on first use; None where it cannot be ours."""
    pid = os.getpid()
    if pid not in _pipes:
        if threading.current_thread() is not threading.main_thread():
            return None
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        if previous != -1 and previous not in {p[1] for p in _pipes.values() if p}:  # another's (asyncio's)
            signal.set_wakeup_fd(previous)
            os.close(read)
            os.close(write)
            _pipes[pid] = None
            checked_code.warn_once(log, "this process's signal wakeup descriptor is another's, so a stop that native "
                                   "code discards or rewraps may not stop our steps (lakehouse/interrupts.py)")
        else:
            _pipes[pid] = (read, write)
    return _pipes[pid][0] if _pipes[pid] else None


def _stops_since_last_look(read: int) -> bool:
    seen = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(read, 512):
            seen += chunk
    return any(number in STOPS for number in seen)


@contextlib.contextmanager
def stops_end_steps():
    """Around a step's code: a stop noted while it ran ends it as Dagster's interrupt (see the module)."""
    from dagster._core.errors import DagsterExecutionInterruptedError

    read = _noted()
    if read is None:
        yield
        return
    _stops_since_last_look(read)  # before the step: Dagster's own flag handles those
    try:
        yield
    except (DagsterExecutionInterruptedError, KeyboardInterrupt):
        raise
    except Exception as error:
        if _stops_since_last_look(read):
            raise DagsterExecutionInterruptedError() from error
        raise
    if _stops_since_last_look(read):
        raise DagsterExecutionInterruptedError()
