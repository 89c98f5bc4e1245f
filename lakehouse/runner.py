"""`lakehouse run`: let the Dagster daemon process the landing zone, exactly as in production.

The run starts `dagster-daemon` on the persistent instance under DAGSTER_HOME (or
watches the one `make ui` already runs), so the landing sensor, the automation
sensor, the run queue and the run launcher are Dagster's own. It returns once the
daemon is quiescent: no run queued or in progress, and since the last run ended two
full landing sweeps, an automation tick and a failure-alert tick, so nothing is left
that a tick would start and every failure has been reported.

It never waits on something that cannot happen: the landing zone is listed once before
the daemon starts, every sensor tick that fails stops the wait with what failed and
what to fix, and SIGINT or SIGTERM stop the daemon and everything it started. Exit codes
(`RunOutcome.exit_code`): 0 done, every run succeeded; 1 a run failed, a sensor failed,
the daemon died or the wait timed out; 2 a configuration error (landing zone not
reachable); 130 / 143 stopped by SIGINT / SIGTERM.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.preflight import describe_landing, landing_problem
from lakehouse.sensors.alerts import SENSOR_NAME as FAILURE_SENSOR
from lakehouse.sensors.landing import SENSOR_NAME as LANDING_SENSOR
from lakehouse.sensors.scan import Cursor
from lakehouse.settings import Settings
from lakehouse.summary import render_stuck_work, render_summary, stuck_work
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
    dequeue_interval_seconds: 1
concurrency:
  runs:
    max_concurrent_runs: 2
    tag_concurrency_limits:
      # One run per ingest date at a time: two loads of the same landing folder must not race.
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
  pools:
    # Silver and gold steps (pool lakehouse_tables) run one at a time across runs: each reads
    # what the steps before it wrote, across ingest dates.
    default_limit: 1
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
FIRST_TICK_SECONDS = 180  # no landing tick by then: the code location did not load, or the sensor is off
STOP_GRACE_SECONDS = 20  # after SIGTERM, the daemon's process group gets this long before SIGKILL
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2  # and 128 + the signal number when stopped by one
WATCHED_SENSORS = (LANDING_SENSOR, AUTOMATION_SENSOR, FAILURE_SENSOR)


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
    summary: str | None = ""  # None: stopped before there was anything to summarise
    problem: str | None = None  # the daemon died, a tick failed, the wait timed out, a backfill failed
    backfill: str | None = None  # how the backfill being followed ended
    code: int | None = None  # the exit code a problem calls for (EXIT_CONFIG, 128 + signal); else from the runs
    stuck: str = ""  # summary.render_stuck_work: what landed but is not in silver, and why
    stuck_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem is None and all(r.ok for r in self.runs)

    @property
    def exit_code(self) -> int:
        if self.code is not None:
            return self.code
        return EXIT_OK if self.ok else EXIT_FAILED

    def render(self) -> str:
        lines = []
        for r in self.runs:
            took = f" ({r.seconds:.1f}s)" if r.seconds is not None else ""
            lines.append(f"run {r.run_id[:8]} {r.label}: {r.status}{took}" + (f": {r.error}" if r.error else ""))
        if self.backfill:
            lines.append(self.backfill)
        elif not self.runs and self.summary is not None and not self.problem:
            lines.append("nothing to do: no new or changed files landed (run `lakehouse generate` or upload files)")
        if self.summary is None:  # stopped early: the problem is the whole story
            return "\n".join(lines + [self.verdict()])
        return "\n".join([*lines, "", self.summary, *([""] + [self.stuck] if self.stuck else []), "", self.verdict()])

    def verdict(self) -> str:
        """The last line(s): what went wrong and the exit code, so the end of a long output says it."""
        failed = [r for r in self.runs if not r.ok]
        if self.ok:
            stuck = f"; {self.stuck_count} item(s) of stuck work, listed above" if self.stuck_count else ""
            return f"lakehouse run: done, {len(self.runs)} run(s) succeeded{stuck}."
        lines = [f"lakehouse run: {self.problem}" if self.problem else
                 f"lakehouse run: {len(failed)} of {len(self.runs)} run(s) did not succeed:"]
        if self.summary is not None:  # after a long summary, say again which runs failed and why
            if self.problem and failed:
                lines.append(f"{len(failed)} of {len(self.runs)} run(s) did not succeed:")
            for r in failed:
                error = (r.error or r.status).splitlines()[0]
                lines.append(f"  run {r.run_id} {r.label}: {r.status}: {error}")
        lines.append(f"exit code {self.exit_code}")
        return "\n".join(lines)


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
    """`dagster-daemon run` as a child in a session and process group of its own, logging to a file.

    Its code server and the runs it launches are in the same group, so stopping means
    signalling the group. It runs under `lakehouse.daemon_watch`, which stops the group
    when this process is gone, even killed with SIGKILL (see that module).
    """

    def __init__(self, settings: Settings, workspace: Path):
        self.log_path = settings.home / "logs" / "daemon.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The pipe's write end stays here (not inheritable); the daemon's watchdog reads end-of-file
        # when this process ends, however it ends.
        self._watch_read, self._watch_write = os.pipe()
        command = [sys.executable, "-m", "lakehouse.daemon_watch", str(self._watch_read),
                   "dagster-daemon", "run", "-w", str(workspace)]
        env = {**os.environ, "DAGSTER_HOME": str(settings.dagster_home), "LAKEHOUSE_HOME": str(settings.home),
               "LAKEHOUSE_SENSOR_INTERVAL": RUN_SENSOR_INTERVAL}
        self._log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         pass_fds=(self._watch_read,))
        finally:
            os.close(self._watch_read)
        self.pid = self.proc.pid  # also its process group id (start_new_session)
        self.stopped = self.killed = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _group_alive(self) -> bool:
        self.proc.poll()  # reap the daemon itself, or its zombie would count
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # the group id was reused by another user's processes: ours are gone
            return False
        return True

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the whole group now (a second Ctrl-C while stopping)."""
        if not self.stopped and self._group_alive():
            os.killpg(self.pid, signal.SIGKILL)
            self.killed = True

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> str:
        """SIGTERM to the daemon, its code server and its runs; SIGKILL what is left after `grace` s.

        Returns what happened, in words.
        """
        if self.stopped:
            return ""
        begun = time.monotonic()
        how = f"had exited (code {self.proc.returncode})" if not self.alive() else ""
        try:
            if self._group_alive():
                os.killpg(self.pid, signal.SIGTERM)
                how = how or "stopped on SIGTERM"
                while self._group_alive() and time.monotonic() - begun < grace:
                    time.sleep(0.1)
                if self._group_alive():
                    os.killpg(self.pid, signal.SIGKILL)
                    how = f"killed with SIGKILL after {grace:.0f}s"
        except ProcessLookupError:
            pass
        self.proc.wait()
        if self.killed:
            how = "killed with SIGKILL on a second signal"
        self.stopped = True
        self._log.close()
        os.close(self._watch_write)
        return (f"dagster-daemon (pid {self.pid}) with its code server and runs {how} "
                f"in {time.monotonic() - begun:.1f}s")


def _error_text(error) -> str:
    """A tick's error as a person can act on it: the exception our code raised, not Dagster's wrapper."""
    root = error
    while root.cause is not None:
        root = root.cause
    return " ".join((root.message or error.message).split())


def failed_tick(instance: dg.DagsterInstance, since: float) -> tuple[str, object] | None:
    """The first failed tick of a watched sensor that started at or after `since`, with its sensor name."""
    from dagster._core.scheduler.instigation import TickStatus

    for name in WATCHED_SENSORS:
        state = _instigator(instance, name)
        if state is None:
            continue
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since, limit=1,
                                   statuses=[TickStatus.FAILURE])
        if ticks:
            return name, ticks[0]
    return None


def stopped_sensors(instance: dg.DagsterInstance) -> list[str]:
    """Watched sensors someone stopped (in the UI): `lakehouse run` would wait for their ticks forever."""
    from dagster._core.scheduler.instigation import InstigatorStatus

    return [name for name in WATCHED_SENSORS
            if (state := _instigator(instance, name)) is not None and state.status == InstigatorStatus.STOPPED]


def tick_failure(name: str, tick, landing_uri: str | None, log_path: Path | None) -> tuple[str, int]:
    """(message, exit code) for a failed tick; a landing sensor failure is checked against the zone."""
    when = dt.datetime.fromtimestamp(tick.timestamp, dt.timezone.utc).strftime("%H:%M:%S UTC")
    error = _error_text(tick.error) if tick.error else "no error recorded"
    lines = [f"the {name} tick of {when} failed: {error}"]
    code = EXIT_FAILED
    if name == LANDING_SENSOR and landing_uri:
        problem = landing_problem(landing_uri)
        if problem:
            lines.append(problem)
            code = EXIT_CONFIG
        else:
            lines += [f"  {line}" for line in describe_landing(landing_uri)]
            lines.append("  the landing zone can be listed from here; the error above is what the sensor met")
    elif name == FAILURE_SENSOR:
        lines.append("  the failure alerts could not be sent: check LAKEHOUSE_ALERT_TOPIC_ARN and the SNS permissions")
    if log_path:
        lines.append(f"  the daemon's log has the whole trace: {log_path}")
    return "\n".join(lines), code


def wait_until_quiescent(
    instance: dg.DagsterInstance, started: float, timeout: float, daemon: Daemon | None, echo=print,
    landing_uri: str | None = None,
) -> tuple[list[dg.DagsterRun], str | None, int | None]:
    """Follow the runs made since `started` until nothing is left to do.

    Returns the runs, any problem, and the exit code the problem calls for (None: from the runs).
    """
    shown: dict[str, object] = {}
    since = dt.datetime.fromtimestamp(started, dt.timezone.utc)

    def look() -> tuple[list[dg.DagsterRun], int]:
        runs = [r.dagster_run for r in reversed(instance.get_run_records(dg.RunsFilter(created_after=since)))]
        for run in runs:
            if shown.get(run.run_id) != run.status:
                shown[run.run_id] = run.status
                error = ""
                if run.status == dg.DagsterRunStatus.FAILURE:  # say why now, not only at the end
                    error = ": " + first_error(instance, run.run_id).splitlines()[0][:300]
                echo(f"  run {run.run_id[:8]} {describe(run)}: {run.status.value}{error}")
        backfills = backfills_in_progress(instance)
        for b in backfills:
            if shown.get(b.backfill_id) != b.status:
                shown[b.backfill_id] = b.status
                echo(f"  backfill {b.backfill_id} {b.title or ''}: {b.status.value}")
        return runs, instance.get_runs_count(dg.RunsFilter(statuses=list(ACTIVE))) + len(backfills)

    log_path = daemon.log_path if daemon is not None else None
    idle_since, idle_cycles, seen = None, -1, 0
    deadline = time.monotonic() + timeout
    first_tick_by = time.monotonic() + FIRST_TICK_SECONDS
    while True:
        runs, active = look()
        if failed := failed_tick(instance, started):
            problem, code = tick_failure(*failed, landing_uri, log_path)
            return runs, problem, code
        if stopped := stopped_sensors(instance):
            return runs, (f"{', '.join(stopped)} stopped on this instance (someone stopped it in the UI), so "
                          "nothing would be left to wait for: start it again under Automation in the UI"), EXIT_FAILED
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
                return runs, None, None
            idle_since, seen = None, len(runs)
        elif idle_cycles < 0:
            idle_cycles = sweep_cycles(instance)  # the landing sensor has not ticked yet
        if daemon is not None and not daemon.alive():
            return runs, f"dagster-daemon exited (code {daemon.proc.returncode}); its log ends:\n{daemon.tail()}", None
        if idle_cycles < 0 and not ticks_since(instance, LANDING_SENSOR, started) and time.monotonic() > first_tick_by:
            tail = f"; its log ends:\n{daemon.tail()}" if daemon is not None else ""
            return runs, (f"no {LANDING_SENSOR} tick in {FIRST_TICK_SECONDS}s: the daemon did not load the code "
                          f"location (`dagster definitions validate -m lakehouse.definitions` shows why){tail}"), None
        if time.monotonic() > deadline:
            after = ("runs in progress are stopped with the daemon; `lakehouse status` lists what is left"
                     if daemon is not None else "runs keep going in the daemon already running (see `make ui`)")
            return runs, f"still busy after {timeout:.0f}s (--timeout); {after}", None
        time.sleep(0.5)


class Stopped(BaseException):
    """SIGINT or SIGTERM reached `lakehouse run` (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Signals:
    """While `lakehouse run` works: the first SIGINT/SIGTERM raises Stopped; while stopping, another kills at once."""

    NAMES = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        import threading

        self.received: int | None = None  # a signal that came while stopping
        self.active = threading.current_thread() is threading.main_thread()  # handlers live in the main thread
        self.previous = {s: signal.signal(s, self._raise) for s in self.NAMES} if self.active else {}

    @staticmethod
    def _raise(signum, frame):
        raise Stopped(signum)

    def hurry(self, daemon: Daemon | None) -> None:
        """From now on a signal does not interrupt the stopping: it kills the daemon's group at once."""
        def kill(signum, frame):
            self.received = self.received or signum
            if daemon is not None:
                daemon.kill()

        if self.active:
            for s in self.NAMES:
                signal.signal(s, kill)

    def restore(self) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def run_pending(settings: Settings, timeout: float = 1800, echo=print, backfill_id: str | None = None) -> RunOutcome:
    """Run the daemon (or follow the one running) until quiescent; `backfill_id`: report how it ended."""
    signals = _Signals()
    daemon = instance = None
    started = time.time()
    try:
        if problem := landing_problem(settings.landing_uri):  # before anything starts: fail fast
            return RunOutcome(summary=None, problem=problem, code=EXIT_CONFIG)
        workspace = prepare_instance(settings)
        instance = dg.DagsterInstance.from_config(str(settings.dagster_home))
        if daemon_alive_elsewhere(instance, settings):
            echo("A Dagster daemon is already running on this instance (make ui?); following its runs.")
        else:
            daemon = Daemon(settings, workspace)
            echo(f"Started dagster-daemon (pid {daemon.pid}, log: {daemon.log_path}); "
                 "waiting for the sensors and automation.")
        runs, problem, code = wait_until_quiescent(instance, started, timeout, daemon, echo, settings.landing_uri)
        signals.hurry(daemon)
        _stop(daemon, instance, settings, started, echo)
        if signals.received:  # Ctrl-C while the daemon was being stopped anyway: still a stop by signal
            raise Stopped(signals.received)
    except Stopped as stopped:
        signals.hurry(daemon)
        name = signal.Signals(stopped.signum).name
        echo(f"{name} received: " + ("stopping dagster-daemon and the runs it started..." if daemon else
                                     "stopping (a daemon this command did not start is left running)"))
        _stop(daemon, instance, settings, started, echo)
        outcome = RunOutcome(summary=None, code=128 + stopped.signum,
                             problem=f"stopped by {name}; runs it interrupted are marked failed, queued runs "
                                     "start with the next daemon, and `lakehouse status` lists the work left undone")
        if instance is not None:
            try:  # the signal may have cut a storage call short; the runs are a courtesy
                outcome.runs = _records(instance, _runs_since(instance, started))
            except Exception:
                pass
            instance.dispose()
        return outcome
    finally:
        if daemon is not None and not daemon.stopped:  # an unexpected error: never leave the daemon behind
            daemon.stop()
        signals.restore()
    outcome = RunOutcome(problem=problem, code=code)
    if code == EXIT_CONFIG:  # the landing zone went away: the message is the whole story
        outcome.summary = None
        outcome.runs = _records(instance, runs)
        instance.dispose()
        return outcome
    if backfill_id and not problem:
        backfill = instance.get_backfill(backfill_id)
        outcome.backfill = f"backfill {backfill_id}: {backfill.status.value}"
        if backfill.status.value not in ("COMPLETED_SUCCESS", "COMPLETED"):
            outcome.problem = f"backfill {backfill_id} ended {backfill.status.value}; see its page in the UI"
    outcome.runs = _records(instance, runs)
    store = TableStore(catalog_from_settings(settings))
    outcome.summary = render_summary(store, instance)
    stuck = stuck_work(store, instance)
    outcome.stuck, outcome.stuck_count = render_stuck_work(store, instance, stuck), len(stuck)
    instance.dispose()
    return outcome


def _stop(daemon: Daemon | None, instance, settings: Settings, started: float, echo) -> None:
    """Stop the daemon this command started, with its group; runs it had in progress end as failed."""
    if daemon is None:
        return
    if daemon.stopped:
        return
    if instance is not None:
        remember_daemon(instance, settings, started)
    echo(daemon.stop())
    if instance is None:
        return
    # A run's process marks the run failed when SIGTERM interrupts it; one that had no time to
    # (killed, or still starting) would stay "in progress" forever and hold every later wait.
    # Queued runs stay queued: the next daemon starts them.
    cut = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)
    for run in _runs_since(instance, started):
        current = instance.get_run_by_id(run.run_id)
        if current is not None and current.status in cut:
            instance.report_run_failed(current, "stopped together with the dagster-daemon that `lakehouse run` "
                                                "started, before it ended")
            echo(f"  run {run.run_id[:8]} {describe(current)}: marked failed (it was {current.status.value})")


def _runs_since(instance: dg.DagsterInstance, started: float) -> list[dg.DagsterRun]:
    since = dt.datetime.fromtimestamp(started, dt.timezone.utc)
    return [r.dagster_run for r in reversed(instance.get_run_records(dg.RunsFilter(created_after=since)))]


def _records(instance: dg.DagsterInstance, runs: list[dg.DagsterRun]) -> list[RunRecord]:
    out = []
    for run in runs:
        run = instance.get_run_by_id(run.run_id) or run  # the status as it ended
        stats = instance.get_run_stats(run.run_id)
        seconds = stats.end_time - stats.start_time if stats.end_time and stats.start_time else None
        error = first_error(instance, run.run_id) if run.status == dg.DagsterRunStatus.FAILURE else None
        out.append(RunRecord(run.run_id, describe(run), run.status.value, seconds, error))
    return out


def first_error(instance: dg.DagsterInstance, run_id: str) -> str:
    """Why a run failed: its first failed step and that step's error, or the run's own failure."""
    from lakehouse.sensors.alerts import step_failures

    failures = step_failures(instance, run_id)
    if failures:
        step, error = failures[0]
        if error.strip().endswith("DagsterExecutionInterruptedError"):
            error = "interrupted (its process was stopped: the daemon was stopped or the run terminated)"
        return f"step {step} failed: {error.strip()}"
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    message = records[-1].event_log_entry.message if records else ""
    return f"no step failed: {message}" if message else "failed before any step ran; see the run's logs"
