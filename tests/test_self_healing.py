"""The parts of self-healing that need no crash: the instance configs, the run launcher's
worker check, the daemon lock, and ending the runs a dead daemon left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
from dagster._core.instance.config import dagster_instance_config
from dagster._core.launcher import WorkerStatus
from dagster._core.storage.tags import WILL_RETRY_TAG

from lakehouse.daemon_watch import lock_holder
from lakehouse.runner import end_orphaned_runs, open_instance, prepare_instance

ROOT = Path(__file__).resolve().parent.parent


def worker_like(instance: dg.DagsterInstance, status: dg.DagsterRunStatus) -> tuple[dg.DagsterRun, subprocess.Popen]:
    """A run in `status` whose worker is a real process that recorded its pid the way Dagster's does."""
    run = instance.create_run_for_job(dg.GraphDefinition("g").to_job(), status=status)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    instance.report_engine_event(f"Started process for run (pid: {proc.pid}).", run,
                                 dg._core.events.EngineEventData.in_process(proc.pid))
    return run, proc


def test_the_local_instance_config_has_run_monitoring_retries_and_the_worker_checking_launcher(lakehouse_env):
    with open_instance(lakehouse_env) as instance:
        assert type(instance.run_launcher).__name__ == "LocalRunLauncher"
        assert instance.run_launcher.supports_check_run_worker_health
        assert instance.run_monitoring_enabled and instance.run_retries_enabled
        assert instance.run_retries_max_retries == 2 and not instance.run_retries_retry_on_asset_or_op_failure
        assert 0 < instance.run_monitoring_settings["poll_interval_seconds"] <= 10
        assert 60 <= instance.run_monitoring_start_timeout_seconds <= 180
        # Dagster's freshness daemon is off because no asset declares a FreshnessPolicy (it would
        # only record "not applicable" for each): one declared would never be evaluated.
        assert "FRESHNESS_DAEMON" not in instance.get_required_daemon_types()
        assert "SENSOR" in instance.get_required_daemon_types()
    from lakehouse.definitions import defs

    nodes = defs.resolve_asset_graph().asset_nodes
    assert nodes and not [n.key for n in nodes if n.freshness_policy_or_from_metadata], \
        "an asset declares a FreshnessPolicy: turn on `freshness` in lakehouse/runner.py and deploy/dagster.yaml"


def test_an_instance_config_written_by_an_older_version_is_upgraded_and_kept(lakehouse_env, capsys):
    home = lakehouse_env.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    old = "# Written by `lakehouse run`; edit freely.\ntelemetry:\n  enabled: false\nrun_coordinator:\n" \
          "  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n"
    (home / "dagster.yaml").write_text(old)
    prepare_instance(lakehouse_env)
    assert "run_monitoring" in (home / "dagster.yaml").read_text()
    assert (home / "dagster.yaml.before-run-monitoring").read_text() == old
    assert "rewritten with run monitoring and retries" in capsys.readouterr().err
    mine = "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n"
    (home / "dagster.yaml").write_text(mine)  # a user's own config is never touched
    prepare_instance(lakehouse_env)
    assert (home / "dagster.yaml").read_text() == mine


def test_the_deployment_instance_config_is_valid_and_heals(tmp_path, monkeypatch):
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_DB", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD"):
        monkeypatch.setenv(name, "x")
    shutil.copy(ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    assert config["run_retries"]["retry_on_asset_or_op_failure"] is False
    assert config["freshness"] == {"enabled": False}  # no asset declares a FreshnessPolicy
    assert config["run_launcher"]["class"] == "EcsRunLauncher"  # its worker check is what monitoring needs
    from dagster_aws.ecs import EcsRunLauncher

    assert EcsRunLauncher.supports_check_run_worker_health.fget is not None


def test_the_launcher_tells_a_live_worker_from_a_dead_one(lakehouse_env):
    with open_instance(lakehouse_env) as instance:
        run, proc = worker_like(instance, dg.DagsterRunStatus.STARTED)
        try:
            assert instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
        finally:
            proc.kill()
            proc.wait()
        health = instance.run_launcher.check_run_worker_health(run)
        assert health.status == WorkerStatus.FAILED and f"pid {proc.pid}" in health.msg and "gone" in health.msg
        # A run executed in process records no worker: nothing to check, never failed for it.
        bare = instance.create_run_for_job(dg.GraphDefinition("h").to_job(), status=dg.DagsterRunStatus.STARTED)
        assert instance.run_launcher.check_run_worker_health(bare).status == WorkerStatus.RUNNING


def test_runs_a_dead_daemon_left_are_ended_and_marked_for_a_retry(lakehouse_env):
    lines: list[str] = []
    with open_instance(lakehouse_env) as instance:
        dead, proc = worker_like(instance, dg.DagsterRunStatus.STARTED)
        proc.kill()
        proc.wait()
        live, live_proc = worker_like(instance, dg.DagsterRunStatus.STARTED)
        never = instance.create_run_for_job(dg.GraphDefinition("s").to_job(), status=dg.DagsterRunStatus.STARTING)
        try:
            import lakehouse.runner as runner

            # `never` was launched long ago (as far as the grace period goes); `fresh` just now.
            original = runner.LAUNCH_GRACE_SECONDS
            runner.LAUNCH_GRACE_SECONDS = 3  # long enough for `fresh` under a loaded machine
            time.sleep(3.1)
            fresh = instance.create_run_for_job(dg.GraphDefinition("f").to_job(), status=dg.DagsterRunStatus.STARTING)
            try:
                ended, undecided = end_orphaned_runs(instance, lines.append)
            finally:
                runner.LAUNCH_GRACE_SECONDS = original
            assert set(ended) == {dead.run_id, never.run_id} and undecided == 1  # `fresh` is looked at again
            for run_id in ended:
                run = instance.get_run_by_id(run_id)
                assert run.status == dg.DagsterRunStatus.FAILURE and run.tags.get(WILL_RETRY_TAG) == "true"
            assert instance.get_run_by_id(live.run_id).status == dg.DagsterRunStatus.STARTED
            assert instance.get_run_by_id(fresh.run_id).status == dg.DagsterRunStatus.STARTING
        finally:
            live_proc.kill()
            live_proc.wait()
    text = "\n".join(lines)
    assert f"run {dead.run_id[:8]}" in text and "is gone" in text and "never got a run worker" in text


def test_the_daemon_lock_names_its_holder_and_is_free_once_it_dies(lakehouse_env):
    home = lakehouse_env.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    assert lock_holder(home) is None
    code = ("import os, sys, time; from lakehouse.daemon_watch import take_lock; "
            "lock = take_lock(os.environ['DAGSTER_HOME']); print('held', flush=True); time.sleep(600)")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    holder = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert lock_holder(home) == holder.pid
    waiter = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        time.sleep(1.5)
        assert waiter.poll() is None and lock_holder(home) == holder.pid  # the second waits
        holder.kill()  # SIGKILL: no chance to clean up; the kernel releases the lock
        holder.wait()
        assert waiter.stdout.readline().strip() == "held"
        assert lock_holder(home) == waiter.pid
        assert "another dagster-daemon (pid" in waiter.stderr.readline()
    finally:
        for proc in (holder, waiter):
            proc.kill()
            proc.wait()
    assert lock_holder(home) is None


def test_a_retry_dagster_missed_is_asked_for_again(lakehouse_env, monkeypatch):
    """Dagster's run-retry daemon can read a failure before the run's status says so, and skip it."""
    from dagster._daemon.auto_run_reexecution.event_log_consumer import _create_cursor_key

    import lakehouse.runner as runner

    key = _create_cursor_key(dg.DagsterEventType.RUN_FAILURE)
    lines: list[str] = []
    with open_instance(lakehouse_env) as instance:
        run = instance.create_run_for_job(dg.GraphDefinition("r").to_job(), status=dg.DagsterRunStatus.STARTED)
        instance.report_run_failed(run, "its run worker (pid 1) is gone")
        assert instance.get_run_by_id(run.run_id).tags.get(WILL_RETRY_TAG) == "true"
        passed = str(instance.event_log_storage.get_maximum_record_id())
        instance.daemon_cursor_storage.set_cursor_values({key: passed})  # the daemon went past it
        monkeypatch.setattr(runner, "LOST_RETRY_SECONDS", 0)
        time.sleep(0.01)
        asked: set[str] = set()
        assert runner.rescue_lost_retries(instance, time.time() - 60, asked, lines.append) == [run.run_id]
        assert int(instance.daemon_cursor_storage.get_cursor_values({key})[key]) < int(passed)
        assert "missed by Dagster's run-retry daemon; asked it again" in lines[0]
        # Asked once: the cursor is already before the failure.
        lines.clear()
        runner.rescue_lost_retries(instance, time.time() - 60, asked, lines.append)
        assert not lines
        # A run failed before the window asked about is not this command's to rescue.
        assert runner.rescue_lost_retries(instance, time.time() + 1, set(), lines.append) == []


def test_a_dimension_left_older_than_its_silver_input_is_shown_and_asked_for_once(lakehouse_env):
    """A lost request (seen once in a crash trial): silver changed after the dimension, no run since."""
    from lakehouse.iceberg import TableStore, catalog_from_settings
    from lakehouse.runner import ask_for_lost, describe
    from lakehouse.summary import lagging_dimensions, stuck_work

    workspace = prepare_instance(lakehouse_env)
    lines: list[str] = []
    with open_instance(lakehouse_env) as instance:
        dim, silver = dg.AssetKey(["gold", "dim_customer"]), dg.AssetKey(["silver", "customers"])
        instance.report_runless_asset_event(dg.AssetMaterialization(silver, partition="2026-05-04"))
        instance.report_runless_asset_event(dg.AssetMaterialization(dim))
        assert lagging_dimensions(instance) == []  # built after its input: current
        instance.report_runless_asset_event(dg.AssetMaterialization(silver, partition="2026-05-05"))
        [lag] = lagging_dimensions(instance)
        assert (lag.asset, lag.input, lag.run) == ("gold/dim_customer", "silver/customers", None)
        stuck = [s for s in stuck_work(TableStore(catalog_from_settings(lakehouse_env)), instance)
                 if s.subject == "gold/dim_customer"]
        assert stuck and "older than silver/customers" in stuck[0].state and "request was lost" in stuck[0].why

        assert ask_for_lost(instance, workspace, set(), lines.append)
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.QUEUED and set(run.asset_selection) == {dim}
        assert describe(run) == "gold/dim_customer [lakehouse run: lost request]"
        assert "gold/dim_customer is older than silver/customers" in lines[0] and run.run_id[:8] in lines[0]
        # Asked once: the queued run is the answer now, and status says it waits for it.
        assert lagging_dimensions(instance)[0].run.dagster_run.run_id == run.run_id
        assert not ask_for_lost(instance, workspace, set(), lines.append)


def test_a_dimension_waiting_for_the_run_that_wrote_its_input_says_so(lakehouse_env):
    """While the day's run that wrote silver/customers goes on, the dimension is older than its input
    on purpose (InputsRunEnded): status names that run, not a lost request."""
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData

    from lakehouse.iceberg import TableStore, catalog_from_settings
    from lakehouse.summary import stuck_work

    prepare_instance(lakehouse_env)
    with open_instance(lakehouse_env) as instance:
        dim, silver = dg.AssetKey(["gold", "dim_customer"]), dg.AssetKey(["silver", "customers"])
        instance.report_runless_asset_event(dg.AssetMaterialization(dim))
        day = instance.add_run(dg.DagsterRun(job_name="day", run_id="0a1b2c3d-day", status=dg.DagsterRunStatus.STARTED,
                                             asset_selection=frozenset({silver})))
        instance.report_dagster_event(DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value, job_name="day",
            event_specific_data=StepMaterializationData(dg.AssetMaterialization(silver, partition="2026-05-05"))),
            run_id=day.run_id)
        [stuck] = [s for s in stuck_work(TableStore(catalog_from_settings(lakehouse_env)), instance)
                   if s.subject == "gold/dim_customer"]
        assert "waiting for run 0a1b2c3d, which wrote silver/customers, to end" in stuck.why, stuck.why
