"""Stuck work (`lakehouse status`, the end of `lakehouse run`): a partition blocked by a failed check.

Files landed but not loaded are covered through the daemon in test_run_cli.py.
"""

import datetime as dt

from lakehouse.generate import generate
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.resources.landing import LocalLandingZone
from lakehouse.runner import open_instance
from lakehouse.summary import Stuck, render_stuck_work, stuck_work
from lakehouse.wiring import DAILY_JOB, build_definitions

DAY = dt.date(2026, 3, 3)
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def test_a_partition_blocked_by_a_failed_check_names_the_check_and_its_audit_branch(lakehouse_env, tmp_path,
                                                                                    monkeypatch):
    store = TableStore(catalog_from_settings(lakehouse_env))
    with open_instance(lakehouse_env) as instance:
        assert stuck_work(store, instance) == []
        assert render_stuck_work(store, instance).startswith("Stuck work: nothing stuck")

    # Any quarantined order blocks silver orders; the dirty sample has some.
    config = tmp_path / "quality.yaml"
    config.write_text("assets:\n  silver/orders:\n    quarantine_share: {severity: error, max_share: 0}\n")
    monkeypatch.setenv("LAKEHOUSE_DQ_CONFIG", str(config))
    generate(LocalLandingZone(lakehouse_env.landing_uri), days=1, start=DAY, seed=7, scale=0.05, dirty=True)
    with open_instance(lakehouse_env) as instance:
        result = build_definitions(lakehouse_env).resolve_job_def(DAILY_JOB).execute_in_process(
            instance=instance, partition_key=str(DAY), run_config=QUIET, raise_on_error=False)
        assert not result.success
        items = stuck_work(store, instance)
        text = render_stuck_work(store, instance, items)

    run = result.run_id[:8]
    # The dimensions were not rebuilt after the silver snapshots this run published: no daemon
    # ran the automation (the job ran in process), and they say so.
    dims = [s for s in items if s.subject.startswith("gold/dim_")]
    assert [(s.subject, s.state) for s in dims] == [("gold/dim_customer", "older than silver/customers"),
                                                    ("gold/dim_product", "older than silver/products")]
    assert all("automation rebuilds it on its next tick while a daemon runs" in s.why for s in dims)
    items = [s for s in items if s not in dims]
    assert [(s.subject, s.partition, s.state) for s in items] == [
        ("silver/orders", str(DAY), "in bronze, not in silver")]
    why = items[0].why
    assert why.startswith(f"blocked by failed check quarantine_share of silver/orders in run {run}")
    branch = why.split("audit branch ", 1)[1].split(":", 1)[0]
    assert branch.startswith(f"audit-silver-orders-{DAY}")
    assert f'lakehouse query --branch {branch} "select * from silver.orders"' in why
    assert f"lakehouse backfill --start {DAY} --end {DAY} --select 'key:silver/orders+'" in why
    assert text.startswith("Stuck work (3):") and f"- silver/orders {DAY}: in bronze, not in silver: {why}" in text
    assert isinstance(items[0], Stuck)


def test_a_dimension_its_days_run_failed_or_did_not_reach_says_why_and_only_a_lost_one_is_asked_for(
        lakehouse_env, monkeypatch):
    """A landed day's run also rebuilds the dimensions, after the fact. When their step failed, status
    shows that run's error and `lakehouse run` does not ask again (a failed step is reported, never
    retried); when the run ended before their step, automation will not ask for them (the run
    targeted them): status says so, and `lakehouse run` asks for them (lagging_dimensions)."""
    import dagster as dg
    from dagster._core.events import DagsterEvent, DagsterEventType, StepFailureData, StepMaterializationData
    from dagster._utils.error import SerializableErrorInfo

    import lakehouse.assets.gold as gold_assets
    from lakehouse.summary import lagging_dimensions

    def broken(ctx, source):
        raise RuntimeError("dimension step broken for this test")

    store = TableStore(catalog_from_settings(lakehouse_env))
    generate(LocalLandingZone(lakehouse_env.landing_uri), days=1, start=DAY, seed=7, scale=0.05)
    monkeypatch.setattr(gold_assets, "run_dimension", broken)
    defs = build_definitions(lakehouse_env)
    day_run = list(defs.resolve_job_def(DAILY_JOB).asset_layer.executable_asset_keys)
    dims = [dg.AssetKey(["gold", "dim_customer"]), dg.AssetKey(["gold", "dim_product"])]
    with open_instance(lakehouse_env) as instance:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, partition_key=str(DAY), run_config=QUIET, asset_selection=[*day_run, *dims],
            raise_on_error=False)
        assert not result.success
        items = [s for s in stuck_work(store, instance) if s.subject.startswith("gold/dim_")]
        assert [lag.run.dagster_run.run_id for lag in lagging_dimensions(instance)] == [result.run_id] * 2

        # A run that wrote silver/customers and ended before the dimensions' step (cancelled, say).
        cut = instance.add_run(dg.DagsterRun(job_name="__ASSET_JOB", run_id="cut-run-0001",
                                             status=dg.DagsterRunStatus.CANCELED, asset_selection=frozenset(
                                                 [*day_run, *dims])))
        instance.report_dagster_event(DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value, job_name="__ASSET_JOB",
            event_specific_data=StepMaterializationData(dg.AssetMaterialization(
                ["silver", "customers"], partition=str(DAY)))), run_id=cut.run_id)
        # Its dimension step was stopped midway (the cancel interrupted it): not a failure of its own.
        instance.report_dagster_event(DagsterEvent(
            event_type_value=DagsterEventType.STEP_FAILURE.value, job_name="__ASSET_JOB", step_key="gold__dim_customer",
            event_specific_data=StepFailureData(error=SerializableErrorInfo(
                "dagster._core.errors.DagsterExecutionInterruptedError\n", [], "DagsterExecutionInterruptedError"),
                user_failure_data=None)), run_id=cut.run_id)
        assert instance.get_records_for_run(cut.run_id, of_type=DagsterEventType.STEP_FAILURE).records
        lags = {lag.asset: lag for lag in lagging_dimensions(instance)}
        cut_items = [s for s in stuck_work(store, instance) if s.subject == "gold/dim_customer"]
    run = result.run_id[:8]
    assert [(s.subject, s.state) for s in items] == [("gold/dim_customer", "older than silver/customers"),
                                                     ("gold/dim_product", "older than silver/products")]
    for item in items:  # the step's own error, from the run that reached it
        assert item.why.startswith(f"run {run} FAILURE: step gold__dim_") and "broken for this test" in item.why
    assert lags["gold/dim_customer"].run is None and lags["gold/dim_product"].run is not None  # lost: asked for
    assert cut_items[0].why.startswith("run cut-run- wrote silver/customers and ended CANCELED before rebuilding it")
    assert "`lakehouse run` asks for it" in cut_items[0].why
