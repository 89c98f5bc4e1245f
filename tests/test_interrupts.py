"""A stop that reaches a run worker during one of our steps ends the step as Dagster's interrupt,
whatever native code did with the exception Dagster raised (lakehouse/interrupts.py).

Each case runs a step's code as a run worker does (Dagster's captured interrupts around, its
raising region in the step, this process's main thread), sends the process a real SIGTERM at
a moment the case chooses, and checks how the step ended; each also runs without
`stops_end_steps` to show the stop is lost there, as it was in the CI runs that failed."""

from __future__ import annotations

import os
import signal

import pytest
from dagster._core.errors import DagsterExecutionInterruptedError, raise_execution_interrupts
from dagster._utils.interrupts import capture_interrupts

from lakehouse import interrupts


@pytest.fixture(autouse=True)
def own_wakeup(monkeypatch):
    """No wakeup descriptor, as in a run worker (multiprocessing's forkserver clears it in each fork;
    a test worker may have one), and the process's handlers and descriptor put back after."""
    monkeypatch.setattr(interrupts, "_pipes", {})
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    previous = signal.set_wakeup_fd(-1)
    yield
    signal.set_wakeup_fd(previous)
    for s, handler in handlers.items():  # Dagster maps SIGTERM to SIGINT's handler when it puts them back
        signal.signal(s, handler)


def stop_here():
    os.kill(os.getpid(), signal.SIGTERM)
    sum(range(1000))  # Python runs the signal's handler between these bytecodes: Dagster's raises


class DiscardsIt:
    """What pydantic-core did in a type check (through PyO3): what is raised inside is reported as
    "unraisable" and discarded. An object's __del__ is Python's own place that does the same."""

    def __del__(self):
        stop_here()


def discarded():
    DiscardsIt()


def wrapped():
    """What pydantic-core did while serializing PyIceberg's metadata: its own error, from nothing."""
    try:
        stop_here()
    except BaseException as error:
        raise ValueError(f"Error serializing to JSON: {type(error).__name__}") from None


def plain_failure():
    raise ValueError("a step's own error")


def as_a_run_worker_runs(step, ours: bool = True) -> BaseException | None:
    """How `step` ended (its exception, None if it returned) as a step's code in a run worker."""
    try:
        with capture_interrupts():  # dagster/_grpc/impl.py, around the whole run
            with raise_execution_interrupts():  # dagster/_core/execution/plan/utils.py, around a step's code
                if ours:
                    with interrupts.stops_end_steps():
                        step()
                else:
                    step()
    except BaseException as error:  # noqa: BLE001 (what ended it is the result)
        return error
    return None


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the discarding, as it happens
def test_a_stop_whose_interrupt_native_code_discards_ends_the_step_as_interrupted():
    assert as_a_run_worker_runs(discarded, ours=False) is None  # Dagster alone: the run goes on
    assert isinstance(as_a_run_worker_runs(discarded), DagsterExecutionInterruptedError)


def test_a_stop_whose_interrupt_native_code_turns_into_its_own_error_ends_the_step_as_interrupted():
    lost = as_a_run_worker_runs(wrapped, ours=False)
    assert type(lost) is ValueError  # Dagster alone: a step failure, which is never retried
    ended = as_a_run_worker_runs(wrapped)
    assert isinstance(ended, DagsterExecutionInterruptedError)
    assert isinstance(ended.__cause__, ValueError)  # what native code said is kept with it


def test_a_stop_that_reaches_python_code_and_steps_never_stopped_are_as_before():
    assert isinstance(as_a_run_worker_runs(stop_here), DagsterExecutionInterruptedError)
    assert as_a_run_worker_runs(lambda: None) is None
    failed = as_a_run_worker_runs(plain_failure)
    assert type(failed) is ValueError and failed.__cause__ is None


def test_a_stop_before_the_step_is_left_to_dagster():
    """A stop noted before the step began (Dagster's own flag then raises it at the step's start) does not
    end a later step: each step looks only at the stops that came while it ran."""
    read = interrupts._noted()
    os.write(interrupts._pipes[os.getpid()][1], bytes([signal.SIGTERM]))  # as the interpreter notes one
    assert read is not None
    assert as_a_run_worker_runs(lambda: None) is None


def test_outside_the_main_thread_nothing_is_noted():
    import threading

    found = []
    worker = threading.Thread(target=lambda: found.append(interrupts._noted()))
    worker.start()
    worker.join()
    assert found == [None] and os.getpid() not in interrupts._pipes


def test_where_the_wakeup_descriptor_is_anothers_it_is_left_to_it_and_said(monkeypatch, caplog, lakehouse_env):
    import logging

    from lakehouse import checked_code

    monkeypatch.setattr(checked_code, "_warned", set())
    theirs_read, theirs = os.pipe()
    os.set_blocking(theirs, False)
    signal.set_wakeup_fd(theirs)
    try:
        with caplog.at_level(logging.WARNING):
            assert interrupts._noted() is None
        assert signal.set_wakeup_fd(-1) == theirs  # still theirs
    finally:
        os.close(theirs_read)
        os.close(theirs)
    assert as_a_run_worker_runs(lambda: None) is None  # the steps run as before
    recorded, = checked_code.fallbacks(lakehouse_env.home)
    assert "wakeup descriptor is another's" in recorded["message"]
