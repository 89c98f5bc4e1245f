"""A stop (SIGTERM, SIGINT) that reaches a run worker during one of our steps turns the step's
end into Dagster's interrupt, whatever native code did with the exception Dagster raised.

While a step's code runs, Dagster's handler turns the signal into an exception raised wherever
the interpreter is (`raise_interrupts_as`, dagster/_utils/interrupts.py). A stopped run fails
as interrupted and the next daemon runs it again. But when the signal lands inside native
code, that code decides what becomes of the exception, and in CI runs pydantic-core did two
things with it while PyIceberg serialized a table's metadata at a bronze commit: it discarded it
("Exception ignored in ...", reported as unraisable), and the stopped run went on to succeed as
if never stopped; or it turned it into its own PydanticSerializationError, and the run failed
as a step failure, which is never retried, so the day stayed unloaded.

So while one of our steps runs (`stops_end_steps`, in the main thread, where Python runs signal
handlers), its SIGTERM and SIGINT handlers are wrapped: the signal is noted, then handed to the
handler that was there (Dagster's). When the step returns, or fails with another error, after a
stop was noted, it raises Dagster's interrupt instead (the other error kept as its context): the
run fails as interrupted and is run again, as any stopped run (rerunning a day's steps is
idempotent). Code inside the step that installs its own SIGINT handler (PySpark's, when it makes
a SparkContext) takes SIGINT past the note; the group's stop is SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

STOPS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stops_end_steps():
    """Around a step's code: a stop noted while it ran ends it as Dagster's interrupt (see the module)."""
    from dagster._core.errors import DagsterExecutionInterruptedError

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    handlers = {s: signal.getsignal(s) for s in STOPS}

    def note(signum, frame):
        noted.append(signum)
        handler = handlers[signum]
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL:  # as if we were not here
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for s in STOPS:
        signal.signal(s, note)
    try:
        yield
    except (DagsterExecutionInterruptedError, KeyboardInterrupt):
        raise
    except Exception:
        if noted:
            raise DagsterExecutionInterruptedError()  # noqa: B904 (the step's own error stays its context)
        raise
    finally:
        for s, handler in handlers.items():
            if signal.getsignal(s) is note:  # another's, installed meanwhile (PySpark's SIGINT), stays
                signal.signal(s, handler)
    if noted:
        raise DagsterExecutionInterruptedError()
