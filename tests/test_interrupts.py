"""A stop that reaches a run worker during one of our steps ends the step as Dagster's interrupt,
whatever native code did with the exception Dagster raised (lakehouse/interrupts.py).

Each case runs a step's code as a run worker does (Dagster's captured interrupts around, its
raising region in the step, this process's main thread), sends the process a real SIGTERM at
a moment the case chooses, and checks how the step ended. The discarding is imitated with an
object's __del__ (Python's own unraisable path, the one PyO3 takes) and the rewrapping in Python
code; the first two cases also run without `stops_end_steps`, where the stop is lost, as it was
in the CI runs that failed."""

from __future__ import annotations

import os
import signal

import pytest
from dagster._core.errors import DagsterExecutionInterruptedError, raise_execution_interrupts
from dagster._utils.interrupts import capture_interrupts

from lakehouse import interrupts


@pytest.fixture(autouse=True)
def handlers_back():
    """The process's SIGINT and SIGTERM handlers put back (Dagster maps SIGTERM to SIGINT's when it restores them)."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in handlers.items():
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
    # What native code said is kept as its context, not its cause: the run's error reads as a stop
    # (lakehouse/sensors/alerts.py follows causes to the root to name what failed).
    assert isinstance(ended.__context__, ValueError) and ended.__cause__ is None


def test_a_stop_that_reaches_python_code_and_steps_never_stopped_are_as_before():
    assert isinstance(as_a_run_worker_runs(stop_here), DagsterExecutionInterruptedError)
    assert as_a_run_worker_runs(lambda: None) is None
    failed = as_a_run_worker_runs(plain_failure)
    assert type(failed) is ValueError and failed.__cause__ is None


def test_the_handlers_are_dagsters_again_after_the_step_and_other_threads_are_left_alone():
    import threading

    with capture_interrupts():
        with raise_execution_interrupts():
            dagsters = signal.getsignal(signal.SIGTERM)
            with interrupts.stops_end_steps():
                assert signal.getsignal(signal.SIGTERM) is not dagsters
            assert signal.getsignal(signal.SIGTERM) is dagsters
    ended = []

    def in_a_thread():
        with interrupts.stops_end_steps():  # Python runs handlers in the main thread only: nothing to wrap
            ended.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    worker = threading.Thread(target=in_a_thread)
    worker.start()
    worker.join()
    assert ended == [before]
