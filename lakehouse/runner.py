"""`lakehouse run`: let the Dagster daemon process the landing zone, exactly as in production.

The run starts `dagster-daemon` on the persistent instance under DAGSTER_HOME (or
watches the one `make ui` already runs), so the landing sensor, the automation
sensor, the run queue and the run launcher are Dagster's own. It returns once the
daemon is quiescent: no run queued or in progress, and since the last run ended two
full landing sweeps, an automation tick and a failure-alert tick, so nothing is left
that a tick would start and every failure has been reported.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.sensors.alerts import SENSOR_NAME as FAILURE_SENSOR
from lakehouse.sensors.landing import SENSOR_NAME as LANDING_SENSOR
from lakehouse.sensors.scan import Cursor
from lakehouse.settings import Settings
from lakehouse.summary import render_summary
from lakehouse.wiring import AUTOMATION_SENSOR

INSTANCE_MARK = "# Written by `lakehouse run`"
INSTANCE_YAML = f"""\
{INSTANCE_MARK}; edit freely, it is not overwritten once it has a run_coordinator.
telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2
    dequeue_interval_seconds: 1
    tag_concurrency_limits:
      # One run per ingest date at a time: two loads of the same landing folder must not race.
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
"""
WORKSPACE_YAML = """\
load_from:
  - python_module:
      module_name: lakehouse.definitions
      attribute: defs
      location_name: lakehouse
"""
ACTIVE = {
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING,
}
RUN_SENSOR_INTERVAL = "2"  # seconds between ticks while `lakehouse run` waits on the daemon
LIVE_HEARTBEAT_SECONDS = 70  # daemons post a heartbeat every 30 s


def prepare_instance(settings: Settings) -> Path:
    """Write dagster.yaml (queued runs, one per partition at a time) and a workspace; migrate storage."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    text = config.read_text() if config.exists() else ""
    if not text or (text.startswith(INSTANCE_MARK) and "run_coordinator" not in text):  # missing, or our old one
        config.write_text(INSTANCE_YAML)
    workspace = home / "workspace.yaml"
    workspace.write_text(WORKSPACE_YAML)
    # Create the storage now: a daemon and this process creating it at once race on the schema.
    dg.DagsterInstance.from_config(str(home)).dispose()
    return workspace


def open_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent instance under DAGSTER_HOME that `make ui` shows."""
    prepare_instance(settings)
    return dg.DagsterInstance.from_config(str(settings.dagster_home))


@dataclass
class RunRecord:
    run_id: str
    label: str
    status: str
    seconds: float | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS"


@dataclass
class RunOutcome:
    runs: list[RunRecord] = field(default_factory=list)
    summary: str = ""
    problem: str | None = None  # the daemon died, the wait timed out, or a backfill failed
    backfill: str | None = None  # how the backfill being followed ended

    @property
    def ok(self) -> bool:
        return self.problem is None and all(r.ok for r in self.runs)

    def render(self) -> str:
        lines = []
        for r in self.runs:
            took = f" ({r.seconds:.1f}s)" if r.seconds is not None else ""
            lines.append(f"run {r.run_id[:8]} {r.label}: {r.status}{took}" + (f": {r.error}" if r.error else ""))
        if self.backfill:
            lines.append(self.backfill)
        elif not self.runs:
            lines.append("nothing to do: no new or changed files landed (run `lakehouse generate` or upload files)")
        if self.problem:
            lines.append(f"PROBLEM: {self.problem}")
        return "\n".join(lines + ["", self.summary])


def describe(run: dg.DagsterRun) -> str:
    assets = ",".join(sorted(k.to_user_string() for k in run.asset_selection or [])) or run.job_name
    tags = run.tags
    partition = tags.get("dagster/partition", "")
    if "dagster/asset_partition_range_start" in tags:
        partition = f"{tags['dagster/asset_partition_range_start']}..{tags['dagster/asset_partition_range_end']}"
    backfill = f"backfill {tags['dagster/backfill']}" if "dagster/backfill" in tags else None
    trigger = tags.get("dagster/sensor_name") or tags.get("dagster/schedule_name") or backfill or "manual"
    return f"{assets} {partition} [{trigger}]".replace("  ", " ")


def backfills_in_progress(instance: dg.DagsterInstance) -> list:
    from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

    busy = [BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING]
    return list(instance.get_backfills(filters=BulkActionsFilter(statuses=busy)))


def _instigator(instance: dg.DagsterInstance, name: str):
    return next((s for s in instance.all_instigator_state() if s.instigator_name == name), None)


def sweep_cycles(instance: dg.DagsterInstance) -> int:
    """Completed landing sweeps so far (-1 before the sensor's first tick)."""
    state = _instigator(instance, LANDING_SENSOR)
    data = state.instigator_data if state else None
    cursor = getattr(data, "cursor", None)
    return Cursor.loads(cursor).cycles if cursor else -1


def ticks_since(instance: dg.DagsterInstance, name: str, since: float) -> int:
    """Completed ticks of a sensor that started at or after `since`."""
    state = _instigator(instance, name)
    if state is None:
        return 0
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since, limit=10)
    return sum(1 for t in ticks if t.timestamp >= since and t.end_timestamp)


def _ours(settings: Settings) -> Path:
    return settings.dagster_home / ".lakehouse-run-daemons"  # ids of daemons `lakehouse run` started


def daemon_alive_elsewhere(instance: dg.DagsterInstance, settings: Settings) -> bool:
    """True when another daemon (say, the one `make ui` runs) is heartbeating on this instance.

    Heartbeats outlive a stopped daemon by up to a minute, so those of daemons this
    command started itself do not count.
    """
    ours = set(_ours(settings).read_text().split()) if _ours(settings).exists() else set()
    now = time.time()
    return any(now - hb.timestamp < LIVE_HEARTBEAT_SECONDS and hb.daemon_id not in ours
               for hb in instance.get_daemon_heartbeats().values())


def remember_daemon(instance: dg.DagsterInstance, settings: Settings, since: float) -> None:
    ids = {hb.daemon_id for hb in instance.get_daemon_heartbeats().values() if hb.timestamp >= since}
    known = _ours(settings).read_text().split() if _ours(settings).exists() else []
    _ours(settings).write_text("\n".join((known + sorted(ids - set(known)))[-20:]))


class Daemon:
    """`dagster-daemon run` as a child process with its own process group and log file."""

    def __init__(self, settings: Settings, workspace: Path):
        self.log_path = settings.home / "logs" / "daemon.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        exe = Path(sys.executable).with_name("dagster-daemon")
        command = [str(exe) if exe.exists() else shutil.which("dagster-daemon") or "dagster-daemon", "run",
                   "-w", str(workspace)]
        env = {**os.environ, "DAGSTER_HOME": str(settings.dagster_home), "LAKEHOUSE_HOME": str(settings.home),
               "LAKEHOUSE_SENSOR_INTERVAL": RUN_SENSOR_INTERVAL}
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def wait_until_quiescent(instance: dg.DagsterInstance, started: float, timeout: float, daemon: Daemon | None,
                         echo=print) -> tuple[list[dg.DagsterRun], str | None]:
    """Follow the runs made since `started` until nothing is left to do; returns them and any problem."""
    shown: dict[str, object] = {}
    since = dt.datetime.fromtimestamp(started, dt.timezone.utc)

    def look() -> tuple[list[dg.DagsterRun], int]:
        runs = [r.dagster_run for r in reversed(instance.get_run_records(dg.RunsFilter(created_after=since)))]
        for run in runs:
            if shown.get(run.run_id) != run.status:
                shown[run.run_id] = run.status
                echo(f"  run {run.run_id[:8]} {describe(run)}: {run.status.value}")
        backfills = backfills_in_progress(instance)
        for b in backfills:
            if shown.get(b.backfill_id) != b.status:
                shown[b.backfill_id] = b.status
                echo(f"  backfill {b.backfill_id} {b.title or ''}: {b.status.value}")
        return runs, instance.get_runs_count(dg.RunsFilter(statuses=list(ACTIVE))) + len(backfills)

    idle_since, idle_cycles, seen = None, -1, 0
    deadline = time.monotonic() + timeout
    while True:
        runs, active = look()
        if active or len(runs) != seen:
            idle_since, seen = None, len(runs)
        elif idle_since is None:
            idle_since, idle_cycles = time.time(), sweep_cycles(instance)
        elif (idle_cycles >= 0 and sweep_cycles(instance) >= idle_cycles + 2
              and all(ticks_since(instance, name, idle_since) for name in (AUTOMATION_SENSOR, FAILURE_SENSOR))):
            # Look again: a tick that ended after the first look may have made a run,
            # and it is visible now that the tick is.
            runs, active = look()
            if not active and len(runs) == seen:
                return runs, None
            idle_since, seen = None, len(runs)
        elif idle_cycles < 0:
            idle_cycles = sweep_cycles(instance)  # the landing sensor has not ticked yet
        if daemon is not None and not daemon.alive():
            return runs, f"dagster-daemon exited (code {daemon.proc.returncode}); its log ends:\n{daemon.tail()}"
        if time.monotonic() > deadline:
            return runs, f"still busy after {timeout:.0f}s; runs keep going in the daemon (see `make ui`)"
        time.sleep(0.5)


def run_pending(settings: Settings, timeout: float = 1800, echo=print, backfill_id: str | None = None) -> RunOutcome:
    """Run the daemon (or follow the one running) until quiescent; `backfill_id`: report how it ended."""
    workspace = prepare_instance(settings)
    instance = dg.DagsterInstance.from_config(str(settings.dagster_home))
    started = time.time()
    daemon = None
    if daemon_alive_elsewhere(instance, settings):
        echo("A Dagster daemon is already running on this instance (make ui?); following its runs.")
    else:
        daemon = Daemon(settings, workspace)
        echo(f"Started dagster-daemon (log: {daemon.log_path}); waiting for the sensors and automation.")
    try:
        runs, problem = wait_until_quiescent(instance, started, timeout, daemon, echo)
    finally:
        if daemon is not None:
            remember_daemon(instance, settings, started)
            daemon.stop()
    outcome = RunOutcome(problem=problem)
    if backfill_id and not problem:
        backfill = instance.get_backfill(backfill_id)
        outcome.backfill = f"backfill {backfill_id}: {backfill.status.value}"
        if backfill.status.value not in ("COMPLETED_SUCCESS", "COMPLETED"):
            outcome.problem = f"backfill {backfill_id} ended {backfill.status.value}; see its page in the UI"
    for run in runs:
        stats = instance.get_run_stats(run.run_id)
        seconds = stats.end_time - stats.start_time if stats.end_time and stats.start_time else None
        error = _first_error(instance, run.run_id) if run.status == dg.DagsterRunStatus.FAILURE else None
        outcome.runs.append(RunRecord(run.run_id, describe(run), run.status.value, seconds, error))
    outcome.summary = render_summary(TableStore(catalog_from_settings(settings)), instance)
    instance.dispose()
    return outcome


def _first_error(instance: dg.DagsterInstance, run_id: str) -> str:
    from lakehouse.sensors.alerts import step_failures

    failures = step_failures(instance, run_id)
    return f"{failures[0][0]}: {failures[0][1].strip()}" if failures else "run failed"
