"""`lakehouse run`: let the Dagster daemon process the landing zone, exactly as in production.

The run starts `dagster-daemon` on the persistent instance under DAGSTER_HOME (or
watches the one `make ui` already runs), so the landing sensor, the automation
sensor, the run queue and the run launcher are Dagster's own. It returns once the
daemon is quiescent: no run queued or in progress, and since the last run ended a whole
landing sweep, an automation tick and a failure-alert tick, so nothing is left that a
tick would start and every failure has been reported.

It never waits on something that cannot happen: the landing zone is listed once before
the daemon starts, every sensor tick that fails stops the wait with what failed and
what to fix, and SIGINT or SIGTERM stop the daemon and everything it started. Exit codes
(`RunOutcome.exit_code`): 0 done, every run succeeded; 1 a run failed, a sensor failed,
the daemon died or the wait timed out; 2 a configuration error (landing zone not
reachable); 130 / 143 stopped by SIGINT / SIGTERM.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import (  # Dagster's retry tags, not exported at the top level
    AUTO_RETRY_RUN_ID_TAG,
    PARENT_RUN_ID_TAG,
    RETRY_NUMBER_TAG,
    WILL_RETRY_TAG,
)

from lakehouse.daemon_watch import lock_holder
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.preflight import declaration_problem, describe_landing, landing_problem
from lakehouse.sensors.alerts import SENSOR_NAME as FAILURE_SENSOR
from lakehouse.sensors.landing import SENSOR_NAME as LANDING_SENSOR
from lakehouse.sensors.scan import Cursor
from lakehouse.settings import Settings
from lakehouse.summary import render_fallbacks, render_stuck_work, render_summary, stuck_work
from lakehouse.tags import TRIGGER_TAG
from lakehouse.wiring import AUTOMATION_SENSOR

INSTANCE_MARK = "# Written by `lakehouse run`"
INSTANCE_YAML = f"""\
{INSTANCE_MARK}; edit freely, it is not overwritten.
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
# Self-healing (README "Crashes and recovery"). Runs are processes of this machine; this
# launcher is Dagster's default one that can also tell when a run's process is gone.
run_launcher:
  module: lakehouse.launcher
  class: LocalRunLauncher
run_monitoring:
  enabled: true
  poll_interval_seconds: 2          # how soon a run whose worker died is marked failed
  start_timeout_seconds: 120        # a run not started by then (its launcher died) is failed
  cancel_timeout_seconds: 60
  # Pool slots a killed run's step held go back this long after the run ended (a run that
  # ends normally gives its own back at once); its retry's steps wait for them.
  free_slots_after_run_end_seconds: 2
run_retries:
  enabled: true
  max_retries: 2                    # a run whose worker died is run again, at most twice
  retry_on_asset_or_op_failure: false  # a failed check or step is reported, never retried
# Dagster's freshness daemon evaluates each asset's FreshnessPolicy on every iteration. This
# project declares none (a source's freshness is one of its own asset checks), so the daemon
# would only query every asset and record "not applicable" for each. Turn it on with a policy.
freshness:
  enabled: false
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
RUN_SWEEP_PREFIXES = "10000"  # older date folders listed per tick while `lakehouse run` waits (the maximum)
# Between looks at the instance (each a dozen storage queries): a run's end is seen at most this
# late; the daemon's ticks, every RUN_SENSOR_INTERVAL, decide when the work is done. A signal
# interrupts the wait at once.
LOOK_SECONDS = 1.0
PROGRESS_SECONDS = 10  # `lakehouse run` says how many runs are queued and running at most this often
RUN_SENSOR_INTERVAL = "2"  # seconds between ticks while `lakehouse run` waits on the daemon
LIVE_HEARTBEAT_SECONDS = 70  # daemons post a heartbeat every 30 s
FIRST_TICK_SECONDS = 180  # no landing tick by then: the code location did not load, or the sensor is off
DAEMON_RESTARTS = 3  # a daemon that dies is replaced, up to this many times per `lakehouse run`
STOP_GRACE_SECONDS = 20  # after SIGTERM, the daemon's process group gets this long before SIGKILL
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2  # and 128 + the signal number when stopped by one
WATCHED_SENSORS = (LANDING_SENSOR, AUTOMATION_SENSOR, FAILURE_SENSOR)


def prepare_instance(settings: Settings) -> Path:
    """Write dagster.yaml (queued runs, one per partition at a time) and a workspace; migrate storage."""
    import fcntl

    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    # Two commands started at once on a new home would race on creating the storage's tables
    # (SQLite's "table runs already exists"): one prepares, the other waits, then finds it done.
    with open(home / ".prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        config = home / "dagster.yaml"
        text = config.read_text() if config.exists() else ""
        if text.startswith(INSTANCE_MARK) and "run_monitoring" not in text:  # ours, from before self-healing
            (home / "dagster.yaml.before-run-monitoring").write_text(text)
            print(f"lakehouse: {config} was written by an older version; rewritten with run monitoring and retries "
                  "(the old file is kept beside it as dagster.yaml.before-run-monitoring)", file=sys.stderr)
            text = ""
        if not text:
            config.write_text(INSTANCE_YAML)
        workspace = home / "workspace.yaml"
        workspace.write_text(WORKSPACE_YAML)
        # Create the storage now: a daemon and this process creating it at once race on the schema.
        instance = dg.DagsterInstance.from_config(str(home))
        _start_retry_cursors(instance)
        instance.dispose()
    return workspace


def _start_retry_cursors(instance: dg.DagsterInstance) -> None:
    """Have Dagster's run-retry daemon consider every run failure from now on.

    On its first pass that daemon starts reading where the event log ends then, so a
    daemon killed before its first pass (a crash seconds into the first `lakehouse run`)
    would leave the failures of that crash unretried. Its cursors are set here, before
    any daemon runs, if they are not set yet (the names are Dagster's; an import error
    here means Dagster changed them).
    """
    from dagster._daemon.auto_run_reexecution.event_log_consumer import DAGSTER_EVENT_TYPES, _create_cursor_key

    keys = {_create_cursor_key(t) for t in DAGSTER_EVENT_TYPES}
    stored = instance.daemon_cursor_storage.get_cursor_values(keys)
    if missing := keys - set(stored):
        now = str(instance.event_log_storage.get_maximum_record_id() or 0)
        instance.daemon_cursor_storage.set_cursor_values({key: now for key in missing})


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
    recovered_by: str | None = None  # the automatic retry that did the work of this failed run
    retry_of: str | None = None  # this run is an automatic retry of that one

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS" or self.recovered_by is not None


@dataclass
class RunOutcome:
    runs: list[RunRecord] = field(default_factory=list)
    summary: str | None = ""  # None: stopped before there was anything to summarise
    problem: str | None = None  # the daemon died, a tick failed, the wait timed out, a backfill failed
    backfill: str | None = None  # how the backfill being followed ended
    code: int | None = None  # the exit code a problem calls for (EXIT_CONFIG, 128 + signal); else from the runs
    stuck: str = ""  # summary.render_stuck_work: what landed but is not in silver, and why
    stuck_count: int = 0
    fallbacks: str = ""  # summary.render_fallbacks: slower paths taken by its processes, if any

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
            recovered = f" -> recovered: run again as {r.recovered_by[:8]}, which succeeded" if r.recovered_by else ""
            retry = f" (retry of run {r.retry_of[:8]})" if r.retry_of else ""
            lines.append(f"run {r.run_id[:8]} {r.label}{retry}: {r.status}{took}" + (f": {r.error}" if r.error else "")
                         + recovered)
        if self.backfill:
            lines.append(self.backfill)
        elif not self.runs and self.summary is not None and not self.problem:
            lines.append("nothing to do: no new or changed files landed (run `lakehouse generate` or upload files)")
        if self.summary is None:  # stopped early: the problem is the whole story
            return "\n".join(lines + [self.verdict()])
        parts = [self.summary, *(part for part in (self.stuck, self.fallbacks) if part), self.verdict()]
        return "\n".join([*lines, *(line for part in parts for line in ("", part))])

    def verdict(self) -> str:
        """The last line(s): what went wrong and the exit code, so the end of a long output says it."""
        failed = [r for r in self.runs if not r.ok]
        if self.ok:
            stuck = f"; {self.stuck_count} item(s) of stuck work, listed above" if self.stuck_count else ""
            recovered = sum(1 for r in self.runs if r.recovered_by)
            retries = sum(1 for r in self.runs if r.retry_of)
            healed = (f"; {recovered} failed run(s) recovered by an automatic retry" if recovered else "") + (
                f"; {retries} run(s) were retries of runs that died" if retries else "")
            return f"lakehouse run: done, {len(self.runs)} run(s) succeeded{healed}{stuck}."
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


LAUNCH_GRACE_SECONDS = 20  # a launched run's worker records its pid within a few seconds


def end_orphaned_runs(instance: dg.DagsterInstance, echo=print, before: float | None = None) -> tuple[list[str], int]:
    """Mark failed the runs a dead daemon left in progress, so Dagster runs their work again now.

    Called while this command's daemon holds the instance's lock, for the runs created
    `before` it took the lock: the daemon that launched them is gone. A run whose worker
    process is gone, or that never got a worker (its launch died with the daemon), cannot
    end by itself. Run monitoring would find them too, a STARTING one only after its start
    timeout (and meanwhile it holds a place in the queue's limits); this says so at once,
    and why. Returns the ids of the runs it ended, and how many it must look at again (a
    run launched moments before may still get its worker).
    """
    from lakehouse.launcher import worker_process, worker_status

    ended, undecided = [], 0
    starting = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED)
    for record in instance.get_run_records(dg.RunsFilter(statuses=[*starting, dg.DagsterRunStatus.STARTED])):
        run = record.dagster_run
        if before is not None and record.update_timestamp.timestamp() >= before:
            continue  # launched (or changed) since this command's daemon took over: its own
        found = worker_process(instance, run.run_id)
        if found is not None:
            alive, why = worker_status(*found, dagster_home=instance.root_directory)
        else:
            since = record.update_timestamp.timestamp()
            alive = run.status == dg.DagsterRunStatus.STARTED or time.time() - since < LAUNCH_GRACE_SECONDS
            undecided += run.status != dg.DagsterRunStatus.STARTED and alive
            why = "it never got a run worker: the daemon that launched it is gone"
        if alive:
            continue
        message = f"{why} (found by `lakehouse run` on starting a new daemon)"
        instance.report_run_failed(run, message)
        ended.append(run.run_id)
        echo(f"  run {run.run_id[:8]} {describe(run)}: was {run.status.value}, but {why}; marked failed "
             "so that Dagster runs it again")
    return ended, undecided


LOST_RETRY_SECONDS = 15  # Dagster's run-retry daemon acts within seconds of a failure
GIVE_UP_RETRY_SECONDS = 120  # a retry not made by then is reported as lost, not waited for


def rescue_lost_retries(instance: dg.DagsterInstance, since: float, asked: set[str], echo=print) -> list[str]:
    """Runs failed since `since` that Dagster decided to retry but did not: have its run-retry daemon look again.

    That daemon reads run failures from the event log after a cursor. If it reads a failure
    event in the moment before the run's own status is updated (the event is stored first),
    it sees a run that has not failed, moves its cursor past the event and never retries
    the run (Dagster 1.13). Moving the cursor back to just before such a failure makes it
    read it again; retrying is idempotent there (one retry per failed run). Each run is
    asked for once (`asked` holds them), and only runs failed since this command started.
    """
    from dagster._daemon.auto_run_reexecution.event_log_consumer import _create_cursor_key

    now = time.time()
    lost = [r for r in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE],
                                                              tags={WILL_RETRY_TAG: "true"}, updated_after=
                                                              dt.datetime.fromtimestamp(since, dt.timezone.utc)))
            if r.dagster_run.run_id not in asked and retry_pending(r.dagster_run, instance)
            and r.end_time and now - r.end_time > LOST_RETRY_SECONDS]
    if not lost:
        return []
    ids = {r.dagster_run.run_id for r in lost}
    asked |= ids
    failures = instance.event_log_storage.get_logs_for_all_runs_by_log_id(
        after_cursor=-1, dagster_event_type={dg.DagsterEventType.RUN_FAILURE})
    positions = [log_id for log_id, entry in failures.items() if entry.run_id in ids]
    if not positions:
        return []
    key = _create_cursor_key(dg.DagsterEventType.RUN_FAILURE)
    cursor = int(instance.daemon_cursor_storage.get_cursor_values({key}).get(key, "0"))
    if min(positions) <= cursor:
        instance.daemon_cursor_storage.set_cursor_values({key: str(min(positions) - 1)})
        for r in lost:
            echo(f"  run {r.dagster_run.run_id[:8]} {describe(r.dagster_run)}: its automatic retry was missed by "
                 "Dagster's run-retry daemon; asked it again")
    return sorted(ids)


def ask_for_lost(instance: dg.DagsterInstance, workspace: Path, asked: set[str], echo=print) -> bool:
    """Ask once for each dimension left older than its silver input with no run made for it since.

    A landed day's run rebuilds the dimensions after the silver it wrote, and automation asks
    for them after any other silver change; this covers a request lost anyway (a crash trial
    once ended with a stale dimension) and a day's run that ended before their step
    (`lagging_dimensions`: a run that reached their step is reported, not asked again).
    Returns whether it asked.
    """
    from lakehouse.backfill import launch_materialization
    from lakehouse.summary import lagging_dimensions

    lost = [lag for lag in lagging_dimensions(instance) if lag.run is None and lag.asset not in asked]
    if not lost:
        return False
    run_id = launch_materialization(instance, workspace, [lag.asset for lag in lost], "lakehouse run: lost request")
    asked.update(lag.asset for lag in lost)
    for lag in lost:
        echo(f"  {lag.asset} is older than {lag.input} and no run was asked for it since (a request lost, "
             f"e.g. to a crash); asked for run {run_id[:8]}")
    return True


def retry_pending(run: dg.DagsterRun, instance: dg.DagsterInstance | None = None) -> bool:
    """A failed run that Dagster's run-retry daemon will run again, but has not yet.

    Not one whose backfill has ended or is gone: Dagster does not retry those.
    """
    if not (run.status == dg.DagsterRunStatus.FAILURE and run.tags.get(WILL_RETRY_TAG) == "true"
            and AUTO_RETRY_RUN_ID_TAG not in run.tags):
        return False
    backfill_id = run.tags.get("dagster/backfill")
    if backfill_id and instance is not None:
        from dagster._core.execution.backfill import BulkActionStatus

        backfill = instance.get_backfill(backfill_id)
        busy = (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING)
        return backfill is not None and backfill.status in busy
    return True


def retry_of(run: dg.DagsterRun) -> str | None:
    """The run this one is an automatic retry of, or None."""
    return run.tags.get(PARENT_RUN_ID_TAG) if RETRY_NUMBER_TAG in run.tags else None


def last_attempt(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.DagsterRun:
    """The run's latest automatic retry (the run itself if it was not retried)."""
    seen = {run.run_id}
    while (retry_id := run.tags.get(AUTO_RETRY_RUN_ID_TAG)) and retry_id not in seen:
        retry = instance.get_run_by_id(retry_id)
        if retry is None:
            break
        seen.add(retry_id)
        run = retry
    return run


LAYERS = ("raw", "bronze", "silver", "gold", "ops")


def describe(run: dg.DagsterRun) -> str:
    """A run in one short line: its assets (by layer when many), partition and trigger."""
    keys = sorted(run.asset_selection or [], key=lambda k: k.to_user_string())
    assets = ",".join(k.to_user_string() for k in keys) or run.job_name
    if len(keys) > 4:
        layers = collections.Counter(k.path[0] for k in keys)
        order = sorted(layers, key=lambda layer: LAYERS.index(layer) if layer in LAYERS else len(LAYERS))
        assets = "+".join(order) + f" ({len(keys)} assets)"
    tags = run.tags
    partition = tags.get("dagster/partition", "")
    if "dagster/asset_partition_range_start" in tags:
        partition = f"{tags['dagster/asset_partition_range_start']}..{tags['dagster/asset_partition_range_end']}"
    backfill = f"backfill {tags['dagster/backfill']}" if "dagster/backfill" in tags else None
    trigger = (tags.get("dagster/sensor_name") or tags.get("dagster/schedule_name") or backfill
               or tags.get(TRIGGER_TAG) or "manual")
    return f"{assets} {partition} [{trigger}]".replace("  ", " ")


def backfills_in_progress(instance: dg.DagsterInstance) -> list:
    from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

    busy = [BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING]
    return list(instance.get_backfills(filters=BulkActionsFilter(statuses=busy)))


def instigators(instance: dg.DagsterInstance) -> dict:
    """Every sensor's and schedule's state by name, read once: `lakehouse run` looks at several
    sensors every second, and each read deserializes every state, automation's cursor included."""
    states: dict = {}
    for state in instance.all_instigator_state():
        states.setdefault(state.instigator_name, state)  # the first of a name, as a lookup by name found
    return states


def _landing_cursor(states: dict) -> Cursor | None:
    state = states.get(LANDING_SENSOR)
    text = getattr(state.instigator_data if state else None, "cursor", None)
    return Cursor.loads(text) if text else None


def sweep_cycles(states: dict) -> int:
    """Completed landing sweeps so far (-1 before the sensor's first tick), from `instigators()`."""
    cursor = _landing_cursor(states)
    return cursor.cycles if cursor else -1


def swept_since(instance: dg.DagsterInstance, since: float, cycles_then: int, states: dict) -> bool:
    """Whether the landing sensor has listed every folder after `since` (when it had `cycles_then` sweeps).

    Under `lakehouse run` one tick lists them all, so one tick that began after `since` is
    enough; with sweeps spread over ticks (LAKEHOUSE_LANDING_SWEEP_PREFIXES) it takes two
    more completed sweeps, the first of which may have begun before `since`.
    """
    cursor = _landing_cursor(states)
    if cursor is None:
        return False
    return ((cursor.whole and ticks_since(instance, LANDING_SENSOR, since, states) > 0)
            or cursor.cycles >= cycles_then + 2)


def ticks_since(instance: dg.DagsterInstance, name: str, since: float, states: dict) -> int:
    """Completed ticks of a sensor that started at or after `since`."""
    state = states.get(name)
    if state is None:
        return 0
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since, limit=10)
    return sum(1 for t in ticks if t.timestamp >= since and t.end_timestamp)


def stale_heartbeats(instance: dg.DagsterInstance) -> list[float]:
    """Ages (s) of recent heartbeats: with no daemon holding the lock, they are a dead daemon's last words."""
    now = time.time()
    return sorted(now - hb.timestamp for hb in instance.get_daemon_heartbeats().values()
                  if now - hb.timestamp < LIVE_HEARTBEAT_SECONDS)


def group_alive(group: int) -> bool:
    """Whether a process of process group `group` still runs.

    Ended processes not yet reaped (zombies) do not count. The daemon's code server and runs
    are reaped by the system's init once the daemon has gone, and in a container that init
    may take its time or never do it: here it took 2 of a 3-s stop, every `lakehouse run`.
    """
    import psutil

    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):  # PermissionError: the id now another user's group
        return False
    # Twice: a scan lists the processes there were when it began, so a child forked during it
    # (a run launched at that moment) is only seen by the next one.
    for _ in range(2):
        for process in psutil.process_iter():
            try:
                if os.getpgid(process.pid) == group and process.status() != psutil.STATUS_ZOMBIE:
                    return True
            except (psutil.Error, OSError):  # ended meanwhile
                continue
    return False


class Daemon:
    """`dagster-daemon run` as a child in a session and process group of its own, logging to a file.

    Its code server and the runs it launches are in the same group, so stopping means
    signalling the group. It runs under `lakehouse.daemon_watch`, which stops the group
    when this process is gone, even killed with SIGKILL (see that module).
    """

    def __init__(self, settings: Settings, workspace: Path, sensor_interval: str | None = RUN_SENSOR_INTERVAL):
        self.dagster_home = settings.dagster_home
        self.log_path = settings.home / "logs" / "daemon.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The pipe's write end stays here (not inheritable); the daemon's watchdog reads end-of-file
        # when this process ends, however it ends.
        self._workspace = workspace
        self._env = {**os.environ, "DAGSTER_HOME": str(settings.dagster_home), "LAKEHOUSE_HOME": str(settings.home)}
        if sensor_interval:
            self._env["LAKEHOUSE_SENSOR_INTERVAL"] = sensor_interval
            # `lakehouse run` waits for a whole landing sweep before it ends: one tick is a
            # whole sweep, however many date folders there are (unless set otherwise).
            self._env.setdefault("LAKEHOUSE_LANDING_SWEEP_PREFIXES", RUN_SWEEP_PREFIXES)
            self._env.setdefault("LAKEHOUSE_DAEMON_LOOP_SECONDS", RUN_SENSOR_INTERVAL)  # see daemon_watch
        # The automation sensor is evaluated in the code location (a condition of ours), over
        # gRPC with Dagster's 60 s limit for a sensor call; a long history can take longer.
        self._env.setdefault("DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS", "300")
        self._log = self.log_path.open("ab")
        self.earlier: list[int] = []  # process groups of daemons this one replaced (their runs may still work)
        self.ended_cleanly = False  # set by stop(): the daemon process ended on SIGTERM (its group may not have)
        self._launch()
        self.stopped = self.killed = False

    def _launch(self) -> None:
        # The pipe's write end stays here (not inheritable); the daemon's watchdog reads end-of-file
        # when this process ends, however it ends.
        watch_read, self.watch_fd = os.pipe()
        command = [sys.executable, "-m", "lakehouse.daemon_watch", str(watch_read),
                   "dagster-daemon", "run", "-w", str(self._workspace)]
        try:
            self.proc = subprocess.Popen(command, env=self._env, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True, pass_fds=(watch_read,))
        finally:
            os.close(watch_read)
        self.pid = self.proc.pid  # also its process group id (start_new_session)

    def restart(self) -> str:
        """Start a new daemon in place of this one, which died; returns how the dead one ended."""
        code = self.proc.returncode
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exited with code {code}"
        self.earlier.append(self.pid)  # its code server and run workers may still be finishing runs
        os.close(self.watch_fd)
        self._launch()
        return how

    def alive(self) -> bool:
        return self.proc.poll() is None

    def running(self) -> bool:
        """True once this daemon holds the instance's lock (it may be waiting for another daemon to end)."""
        return self.alive() and lock_holder(self.dagster_home) == self.pid

    def _group_alive(self) -> bool:
        self.proc.poll()  # reap the daemon itself
        return group_alive(self.pid)

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the whole group now (a second Ctrl-C while stopping)."""
        if not self.stopped and self._group_alive():
            os.killpg(self.pid, signal.SIGKILL)
            self.killed = True

    def _end_earlier(self, grace: float) -> None:
        """What is left of the groups of daemons that died before this one (orphaned code servers, runs)."""
        def signal_all(sig) -> bool:
            sent = False
            for group in self.earlier:
                try:
                    os.killpg(group, sig)
                    sent = True
                except (ProcessLookupError, PermissionError):
                    pass
            return sent

        if signal_all(signal.SIGTERM):
            deadline = time.monotonic() + grace
            while any(group_alive(group) for group in self.earlier) and time.monotonic() < deadline:
                time.sleep(0.1)
            signal_all(signal.SIGKILL)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> str:
        """SIGTERM to the daemon, its code server and its runs; SIGKILL what is left after `grace` s.

        Returns what happened, in words.
        """
        if self.stopped:
            return ""
        begun = time.monotonic()
        was_alive = self.alive()
        how = f"had exited (code {self.proc.returncode})" if not was_alive else ""
        daemon_ended = False  # the daemon itself (whose heartbeats these are) ended on SIGTERM, before any SIGKILL
        try:
            if self._group_alive():
                os.killpg(self.pid, signal.SIGTERM)
                how = how or "stopped on SIGTERM"
                while self._group_alive() and time.monotonic() - begun < grace:
                    time.sleep(0.1)
                daemon_ended = was_alive and self.proc.poll() is not None
                if self._group_alive():
                    os.killpg(self.pid, signal.SIGKILL)
                    how = f"killed with SIGKILL after {grace:.0f}s"
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._end_earlier(max(1.0, grace - (time.monotonic() - begun)))
        if self.killed:
            how = "killed with SIGKILL on a second signal"
        self.stopped = True
        self.ended_cleanly = daemon_ended and not self.killed
        self._log.close()
        os.close(self.watch_fd)
        return (f"dagster-daemon (pid {self.pid}) with its code server and runs {how} "
                f"in {time.monotonic() - begun:.1f}s")


def _error_text(error) -> str:
    """A tick's error as a person can act on it: the exception our code raised, not Dagster's wrapper."""
    root = error
    while root.cause is not None:
        root = root.cause
    return " ".join((root.message or error.message).split())


def failed_tick(instance: dg.DagsterInstance, since: float, states: dict) -> tuple[str, object] | None:
    """The first failed tick of a watched sensor that started at or after `since`, with its sensor name."""
    from dagster._core.scheduler.instigation import TickStatus

    for name in WATCHED_SENSORS:
        state = states.get(name)
        if state is None:
            continue
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since, limit=1,
                                   statuses=[TickStatus.FAILURE])
        if ticks:
            return name, ticks[0]
    return None


def stopped_sensors(states: dict) -> list[str]:
    """Watched sensors someone stopped (in the UI): `lakehouse run` would wait for their ticks forever."""
    from dagster._core.scheduler.instigation import InstigatorStatus

    return [name for name in WATCHED_SENSORS
            if (state := states.get(name)) is not None and state.status == InstigatorStatus.STOPPED]


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
    landing_uri: str | None = None, workspace: Path | None = None,
) -> tuple[list[dg.DagsterRun], str | None, int | None]:
    """Follow the runs made since `started` until nothing is left to do.

    Returns the runs, any problem, and the exit code the problem calls for (None: from the runs).
    """
    shown: dict[str, object] = {}
    since = dt.datetime.fromtimestamp(started, dt.timezone.utc)
    # Runs an earlier daemon left in progress: run monitoring ends those whose worker is gone,
    # and the run-retry daemon runs their work again.
    left = [r.dagster_run for r in instance.get_run_records(dg.RunsFilter(statuses=list(ACTIVE - {
        dg.DagsterRunStatus.QUEUED}), created_before=since))]
    if left:
        echo(f"{len(left)} run(s) were in progress before this command: "
             f"{', '.join(f'{r.run_id[:8]} {describe(r)}' for r in left)}; a run whose worker is gone is marked "
             "failed by run monitoring and run again")
    shown.update({r.run_id: r.status for r in left})
    # Retries to wait for: of runs failed since this command started, or shortly before
    # (a run it found failed by a stop or a crash moments earlier).
    since_left = since - dt.timedelta(seconds=GIVE_UP_RETRY_SECONDS)
    asked: set[str] = set()  # failed runs whose lost retry was asked for again
    asked_assets: set[str] = set()  # assets asked for again after their request was lost

    def report(run: dg.DagsterRun, earlier: bool = False) -> None:
        """A line per run as it ends (the counts of the others go in `progress`)."""
        if shown.get(run.run_id) == run.status:
            return
        shown[run.run_id] = run.status
        if run.status in ACTIVE:
            return
        error, took = "", ""
        stats = instance.get_run_stats(run.run_id)
        if stats.end_time and stats.start_time:
            took = f" in {stats.end_time - stats.start_time:.1f}s"
        if run.status == dg.DagsterRunStatus.FAILURE:  # say why now, not only at the end
            error = ": " + first_error(instance, run.run_id).splitlines()[0][:300]
            if run.tags.get(WILL_RETRY_TAG) == "true":
                error += "; it will be run again"
        retry = ""
        if parent := retry_of(run):
            retry = f" (retry {run.tags[RETRY_NUMBER_TAG]} of run {parent[:8]})"
        before = " (started before this command)" if earlier else ""
        echo(f"  run {run.run_id[:8]} {describe(run)}{before}{retry}: {run.status.value}{took}{error}")

    progress_said, progress_at = "", 0.0

    def progress(runs: list[dg.DagsterRun]) -> None:
        """Every PROGRESS_SECONDS while runs are queued or running: how many are where."""
        nonlocal progress_said, progress_at
        counts = collections.Counter(r.status for r in runs)
        queued = counts[dg.DagsterRunStatus.QUEUED] + counts[dg.DagsterRunStatus.NOT_STARTED]
        running = sum(counts[s] for s in ACTIVE) - queued
        line = (f"  ... {queued} queued, {running} running, {counts[dg.DagsterRunStatus.SUCCESS]} succeeded, "
                f"{counts[dg.DagsterRunStatus.FAILURE]} failed")
        if (queued or running) and line != progress_said and time.time() - progress_at >= PROGRESS_SECONDS:
            echo(line)
            progress_said, progress_at = line, time.time()

    def look() -> tuple[list[dg.DagsterRun], int]:
        runs = [r.dagster_run for r in reversed(instance.get_run_records(dg.RunsFilter(created_after=since)))]
        earlier = [instance.get_run_by_id(r.run_id) or r for r in left]
        for run in earlier:
            report(run, earlier=True)
        for run in runs:
            report(run)
        progress(runs)
        backfills = backfills_in_progress(instance)
        for b in backfills:
            if shown.get(b.backfill_id) != b.status:
                shown[b.backfill_id] = b.status
                echo(f"  backfill {b.backfill_id} {b.title or ''}: {b.status.value}")
        # Failed runs (since this command started, or left from before) whose retry is still to
        # come; one Dagster has not made after GIVE_UP_RETRY_SECONDS is reported, not waited for.
        now = time.time()
        failed = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE],
                                                        tags={WILL_RETRY_TAG: "true"}, updated_after=since_left))
        pending = sum(1 for r in failed if retry_pending(r.dagster_run, instance)
                      and not (r.end_time and now - r.end_time > GIVE_UP_RETRY_SECONDS))
        return runs, instance.get_runs_count(dg.RunsFilter(statuses=list(ACTIVE))) + len(backfills) + pending

    log_path = daemon.log_path if daemon is not None else None
    idle_since, idle_cycles, seen = None, -1, 0
    deadline = time.monotonic() + timeout
    first_tick_by = time.monotonic() + FIRST_TICK_SECONDS
    orphans_checked, following, took_lock = False, None, None
    while True:
        if not orphans_checked and daemon is not None:
            holder = lock_holder(daemon.dagster_home)
            if holder == daemon.pid and daemon.alive():
                if took_lock is None and following:
                    echo(f"The daemon followed (pid {following}) has ended; this command's daemon took over.")
                took_lock = took_lock or time.time()
                orphans_checked = not end_orphaned_runs(instance, echo, before=took_lock)[1]
            elif holder is not None and holder > 0 and holder != following:
                following = holder
                echo(f"A Dagster daemon (pid {holder}: `make ui` or another `lakehouse run`) is running on this "
                     f"instance; following its runs. This command's daemon (pid {daemon.pid}) takes over if "
                     "it ends first.")
        if took_lock is not None:  # only a daemon of ours runs: its retries are ours to watch
            rescue_lost_retries(instance, since_left.timestamp(), asked, echo)
        runs, active = look()
        now, states = time.time(), instigators(instance)  # one read per look, for every check below
        if failed := failed_tick(instance, started, states):
            problem, code = tick_failure(*failed, landing_uri, log_path)
            return runs, problem, code
        if stopped := stopped_sensors(states):
            return runs, (f"{', '.join(stopped)} stopped on this instance (someone stopped it in the UI), so "
                          "nothing would be left to wait for: start it again under Automation in the UI"), EXIT_FAILED
        if active or len(runs) != seen:
            idle_since, seen = None, len(runs)
        elif idle_since is None:
            idle_since, idle_cycles = now, sweep_cycles(states)  # `now`: before the states were read
        elif (idle_cycles >= 0 and swept_since(instance, idle_since, idle_cycles, states)
              and all(ticks_since(instance, name, idle_since, states) for name in (AUTOMATION_SENSOR, FAILURE_SENSOR))):
            # Look again: a tick that ended after the first look may have made a run,
            # and it is visible now that the tick is.
            runs, active = look()
            if not active and len(runs) == seen:
                if (took_lock is not None and workspace is not None
                        and ask_for_lost(instance, workspace, asked_assets, echo)):
                    idle_since = None
                    continue
                return runs, None, None
            idle_since, seen = None, len(runs)
        elif idle_cycles < 0:
            idle_cycles = sweep_cycles(states)  # the landing sensor has not ticked yet
        if daemon is not None and not daemon.alive():
            if len(daemon.earlier) >= DAEMON_RESTARTS:
                return runs, (f"dagster-daemon exited (code {daemon.proc.returncode}), for the "
                              f"{len(daemon.earlier) + 1}th time; its log ends:\n{daemon.tail()}"), None
            dead = daemon.pid
            how = daemon.restart()
            echo(f"dagster-daemon (pid {dead}) {how}; started another (pid {daemon.pid}), "
                 f"restart {len(daemon.earlier)} of at most {DAEMON_RESTARTS}")
            orphans_checked, took_lock = False, None
            continue
        if (idle_cycles < 0 and not ticks_since(instance, LANDING_SENSOR, started, states)
                and time.monotonic() > first_tick_by):
            tail = f"; its log ends:\n{daemon.tail()}" if daemon is not None else ""
            return runs, (f"no {LANDING_SENSOR} tick in {FIRST_TICK_SECONDS}s: the daemon did not load the code "
                          f"location (`dagster definitions validate -m lakehouse.definitions` shows why){tail}"), None
        if time.monotonic() > deadline:
            after = ("runs in progress are stopped with the daemon; `lakehouse status` lists what is left"
                     if daemon is not None else "runs keep going in the daemon already running (see `make ui`)")
            return runs, f"still busy after {timeout:.0f}s (--timeout); {after}", None
        pause(LOOK_SECONDS)


class Stopped(BaseException):
    """SIGINT or SIGTERM reached `lakehouse run` (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Signals:
    """While `lakehouse run` works: the first SIGINT/SIGTERM stops it; while stopping, another kills at once.

    The first signal raises Stopped only while the command waits between looks (`pause`);
    arriving during a call to the instance's storage it is held until the next pause, since
    an exception raised inside SQLAlchemy's pool makes it print a traceback of its own.
    """

    NAMES = (signal.SIGINT, signal.SIGTERM)
    current: _Signals | None = None  # those of the `lakehouse run` in progress (main thread only)

    def __init__(self):
        import threading

        self.received: int | None = None  # a signal that came while stopping
        self.pending: int | None = None  # a signal held until the next pause
        self.interruptible = False
        self.active = threading.current_thread() is threading.main_thread()  # handlers live in the main thread
        self.previous = {s: signal.signal(s, self._raise) for s in self.NAMES} if self.active else {}
        if self.active:
            _Signals.current = self

    def _raise(self, signum, frame):
        if self.interruptible:
            self.interruptible = False
            raise Stopped(signum)
        self.pending = self.pending or signum

    def checkpoint(self) -> None:
        if self.pending:
            raise Stopped(self.pending)

    def hurry(self, daemon: Daemon | None) -> None:
        """From now on a signal does not interrupt the stopping: it kills the daemon's group at once."""
        self.received = self.received or self.pending
        self.pending = None

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
        if _Signals.current is self:
            _Signals.current = None


def pause(seconds: float) -> None:
    """Sleep between looks; where a held or a new SIGINT/SIGTERM stops `lakehouse run`."""
    signals = _Signals.current
    if signals is None:
        time.sleep(seconds)
        return
    signals.checkpoint()
    signals.interruptible = True
    try:
        time.sleep(seconds)
    finally:
        signals.interruptible = False
    signals.checkpoint()


def run_pending(settings: Settings, timeout: float = 1800, echo=print, backfill_id: str | None = None) -> RunOutcome:
    """Run the daemon (or follow the one running) until quiescent; `backfill_id`: report how it ended."""
    signals = _Signals()
    daemon = instance = None
    started = time.time()
    try:
        if problem := landing_problem(settings.landing_uri) or declaration_problem(settings):  # fail fast
            return RunOutcome(summary=None, problem=problem, code=EXIT_CONFIG)
        workspace = prepare_instance(settings)
        instance = dg.DagsterInstance.from_config(str(settings.dagster_home))
        stale = [] if lock_holder(settings.dagster_home) else stale_heartbeats(instance)
        if stale:
            echo(f"The last heartbeat of a Dagster daemon is {stale[0]:.0f}s old but no process holds the "
                 "instance's daemon lock: that daemon is gone (killed, or its machine restarted).")
        daemon = Daemon(settings, workspace)  # waits while another daemon holds the instance's lock
        echo(f"Started dagster-daemon (pid {daemon.pid}, log: {daemon.log_path}); "
             "waiting for the sensors and automation.")
        runs, problem, code = wait_until_quiescent(instance, started, timeout, daemon, echo, settings.landing_uri,
                                                   workspace)
        signals.checkpoint()
        signals.hurry(daemon)
        _stop(daemon, instance, settings, started, echo)
        if signals.received:  # Ctrl-C while the daemon was being stopped anyway: still a stop by signal
            raise Stopped(signals.received)
    except Stopped as stopped:
        signals.hurry(daemon)
        name = signal.Signals(stopped.signum).name
        echo(f"{name} received: " + ("stopping dagster-daemon and the runs it started..." if daemon else
                                     "stopping (the daemon it followed is left running)"))
        _stop(daemon, instance, settings, started, echo)
        outcome = RunOutcome(summary=None, code=128 + stopped.signum,
                             problem=f"stopped by {name}; runs it interrupted are marked failed and run again, "
                                     "and queued runs start, with the next daemon (`lakehouse run` or `make ui`); "
                                     "`lakehouse status` lists the work left undone")
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
    outcome.fallbacks = render_fallbacks(settings.home, since=started)
    instance.dispose()
    return outcome


def _stop(daemon: Daemon | None, instance, settings: Settings, started: float, echo) -> None:
    """Stop the daemon this command started, with its group; runs it had in progress end as failed."""
    if daemon is None:
        return
    if daemon.stopped:
        return
    ran = daemon.running()  # a daemon still waiting for the lock launched nothing
    echo(daemon.stop())
    if instance is None or not ran:
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
    # The heartbeats of a daemon that ended on SIGTERM are not a killed daemon's: the next command must not
    # say so. Not while another daemon holds the lock (it took over, and its heartbeats are the ones there).
    if daemon.ended_cleanly and lock_holder(daemon.dagster_home) is None:
        try:
            instance.wipe_daemon_heartbeats()
        except Exception as error:  # a busy instance: not worth failing the command for
            echo(f"Could not clear the stopped daemon's heartbeats ({str(error).splitlines()[0][:200]}): the next "
                 "`lakehouse run` may take them for a killed daemon's")


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
        final = last_attempt(instance, run)
        recovered = final.run_id if final is not run and final.status == dg.DagsterRunStatus.SUCCESS else None
        out.append(RunRecord(run.run_id, describe(run), run.status.value, seconds, error, recovered, retry_of(run)))
    return out


def first_error(instance: dg.DagsterInstance, run_id: str) -> str:
    """Why a run failed: its first failed step and that step's error, or the run's own failure."""
    from lakehouse.sensors.alerts import interrupted, step_failures

    failures = step_failures(instance, run_id)
    if failures:
        step, error = failures[0]
        if interrupted(error):
            error = "interrupted (its process was stopped: the daemon was stopped or the run terminated)"
        return f"step {step} failed: {error.strip()}"
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    message = records[-1].event_log_entry.message if records else ""
    return f"no step failed: {message}" if message else "failed before any step ran; see the run's logs"
