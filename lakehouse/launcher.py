"""The local instance's run launcher: Dagster's default one, able to tell a dead run worker.

Dagster's run monitoring fails a STARTED run whose worker is gone only when the run
launcher can check the worker. The ECS and Kubernetes launchers can; DefaultRunLauncher,
which the local instance uses (runs are processes of the code server on this machine),
cannot, so a run whose process was killed stays STARTED forever and holds every run
queued behind it. This launcher adds the check: every run worker records its process id
in the run's event log ("Started process for run (pid: N)"), and the process is looked
up by that id and its start time (so a reused id is not taken for the worker).

Only for an instance whose runs are processes of this machine (`lakehouse run`, `make ui`).
"""

from __future__ import annotations

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus

WORKER_STARTED = "Started process for run"  # Dagster's engine event, with metadata {"pid": ...}
CLOCK_SLACK_SECONDS = 2.0  # the event is written just after the process starts


def worker_process(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, when it was recorded) of the run's worker process; None if it recorded none (an in-process run)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, ascending=True,
                                           limit=20).records  # the worker records its pid first thing
    for record in records:
        entry = record.event_log_entry
        event = entry.dagster_event
        if event is None or not (event.message or "").startswith(WORKER_STARTED):
            continue
        pid = event.engine_event_data.metadata.get("pid")
        if pid is not None:
            return int(pid.value), entry.timestamp
    return None


def _same_instance(process, dagster_home: str | None) -> bool:
    import psutil

    try:
        return dagster_home is not None and process.environ().get("DAGSTER_HOME") == dagster_home
    except (psutil.AccessDenied, psutil.NoSuchProcess, OSError):
        return False


def worker_status(pid: int, recorded_at: float, dagster_home: str | None = None) -> tuple[bool, str]:
    """(alive, why) for the process `pid` that was a run's worker at `recorded_at` (of the instance at `dagster_home`)."""
    import psutil

    try:
        process = psutil.Process(pid)
        started, status = process.create_time(), process.status()
    except psutil.NoSuchProcess:
        return False, f"its run worker (pid {pid}) is gone: killed, or the machine restarted"
    except psutil.AccessDenied:  # another user's process took the id: ours is gone
        return False, f"its run worker (pid {pid}) is gone; the id now belongs to another user's process"
    if started > recorded_at + CLOCK_SLACK_SECONDS and not _same_instance(process, dagster_home):
        # A newer process has the id (or the wall clock stepped since: then the environment,
        # which names the instance, still says it is the worker).
        return False, f"its run worker (pid {pid}) is gone; the id now belongs to a newer process"
    if status == psutil.STATUS_ZOMBIE:
        return False, f"its run worker (pid {pid}) exited without ending the run"
    return True, f"run worker pid {pid} is running"


class LocalRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher plus `check_run_worker_health`, for Dagster's run monitoring."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        found = worker_process(self._instance, run.run_id)
        if found is None:
            # Executed in process (tests, `dagster asset materialize`): no worker to check.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no run worker recorded (an in-process run)")
        alive, why = worker_status(*found, dagster_home=self._instance.root_directory)
        return CheckRunHealthResult(WorkerStatus.RUNNING if alive else WorkerStatus.FAILED, why)
