"""The automation's own condition: an input written by a range run that also wrote the asset.

Dagster's `executed_with_root_target` looks only at an input's latest write overall, so
after one run over two days it credits the run with the last day only; a tick that falls
while such a run is still writing then asks for the other days again (seen in crash trials
and the demo as extra silver/gold runs). Ours looks up every partition's own latest write.
"""

from __future__ import annotations

import dagster as dg

from lakehouse.assets.automation import InputWrittenWithThisAsset

DAYS = dg.DailyPartitionsDefinition(start_date="2026-05-01")
AC = dg.AutomationCondition


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def upstream(context) -> None:
    pass


def _downstream(condition: dg.AutomationCondition):
    @dg.asset(partitions_def=DAYS, deps=[upstream], backfill_policy=dg.BackfillPolicy.single_run(),
              automation_condition=AC.any_deps_match(condition))
    def downstream(context) -> None:
        pass

    return downstream


def _run(assets, instance, **kwargs) -> None:
    """A run that names its assets, as the sensors' and automation's runs do."""
    job = dg.Definitions(assets=[upstream, _downstream(AC.missing())],
                         jobs=[dg.define_asset_job("both", selection=[upstream.key, dg.AssetKey("downstream")])])
    result = job.resolve_job_def("both").execute_in_process(
        instance=instance, asset_selection=[a.key for a in assets], **kwargs)
    assert result.success


def _range(first: str, last: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def _true_for(condition, instance) -> set[str]:
    result = dg.evaluate_automation_conditions(defs=[upstream, _downstream(condition)], instance=instance)
    return {key for r in result.results if r.key == dg.AssetKey("downstream")
            for key in r.true_subset.expensively_compute_partition_keys()}


def test_a_range_run_of_both_assets_counts_for_every_day_it_wrote():
    instance = dg.DagsterInstance.ephemeral()
    _run([upstream, _downstream(AC.missing())], instance, tags=_range("2026-05-04", "2026-05-06"))
    # The reason for the condition: Dagster's own credits the run with its last day only.
    assert _true_for(AC.executed_with_root_target(), instance) == {"2026-05-06"}
    assert _true_for(InputWrittenWithThisAsset(), instance) == {"2026-05-04", "2026-05-05", "2026-05-06"}


def test_an_input_written_by_a_run_without_the_asset_does_not_count():
    instance = dg.DagsterInstance.ephemeral()
    _run([upstream, _downstream(AC.missing())], instance, tags=_range("2026-05-04", "2026-05-05"))
    _run([upstream], instance, partition_key="2026-05-05")
    _run([upstream], instance, partition_key="2026-05-07")
    assert _true_for(InputWrittenWithThisAsset(), instance) == {"2026-05-04"}


def test_the_dimensions_wait_for_the_run_that_last_wrote_their_inputs_to_end():
    """A day's run writes silver/customers before silver/products: asked for as each input was
    written, the dimensions were two runs when a tick fell between the writes (the demo's test in
    test_pipeline.py sees them as one run now). Each waits for the run that last wrote its
    input, until it has ended (succeeded or failed); a run that has not written it does not count."""
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData

    from lakehouse.assets.automation import DIMENSION_AUTOMATION, InputsRunEnded

    assert "inputs_run_ended" in {c.name for c in DIMENSION_AUTOMATION.children}
    silver = [dg.AssetSpec(["silver", s]) for s in ("customers", "products")]

    @dg.asset(key=["gold", "dim_customer"], deps=[silver[0]], automation_condition=InputsRunEnded())
    def dim_customer() -> None:
        pass

    @dg.asset(key=["gold", "dim_product"], deps=[silver[1]], automation_condition=InputsRunEnded())
    def dim_product() -> None:
        pass

    instance = dg.DagsterInstance.ephemeral()

    def free() -> set[str]:
        result = dg.evaluate_automation_conditions(defs=[*silver, dim_customer, dim_product], instance=instance)
        return {r.key.path[1] for r in result.results if r.true_subset.size}

    def run(run_id: str) -> dg.DagsterRun:
        return instance.add_run(dg.DagsterRun(job_name="day", run_id=run_id, status=dg.DagsterRunStatus.STARTED,
                                              asset_selection=frozenset(s.key for s in silver)))

    def written(spec: dg.AssetSpec, run_id: str) -> None:
        instance.report_dagster_event(DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value, job_name="day",
            event_specific_data=StepMaterializationData(dg.AssetMaterialization(spec.key))), run_id=run_id)

    def ended(day_run: dg.DagsterRun) -> None:
        instance.delete_run(day_run.run_id)  # also its events: written again under the ended run
        instance.add_run(day_run.with_status(dg.DagsterRunStatus.SUCCESS))

    assert free() == {"dim_customer", "dim_product"}  # inputs never written: nothing to wait for
    day = run("d1")
    written(silver[0], "d1")
    assert free() == {"dim_product"}
    written(silver[1], "d1")
    assert free() == set()  # the day's run is still going
    ended(day)
    for spec in silver:
        written(spec, "d1")
    assert free() == {"dim_customer", "dim_product"}  # in the same tick: one run
    next_day = run("d2")  # the next day's run, which has written neither input yet
    assert free() == {"dim_customer", "dim_product"}
    written(silver[0], "d2")  # it wrote customers: dim_customer waits for it, dim_product does not
    assert free() == {"dim_product"}
    instance.delete_run(next_day.run_id)
    instance.add_run(next_day.with_status(dg.DagsterRunStatus.FAILURE))
    written(silver[0], "d2")
    assert free() == {"dim_customer", "dim_product"}  # a failed run has ended too


def test_an_unpartitioned_asset_in_a_days_run_is_given_no_day():
    """A landed day's run also rebuilds the dimensions; Dagster gives their steps the run's days
    too. Those days must not reach the step's label or a cluster's arguments (Pipes), where
    `run_dimension` takes none."""
    from lakehouse.assets.step import partition_label
    from lakehouse.partitions import label

    seen = {}

    @dg.asset(partitions_def=DAYS)
    def day(context) -> None:
        seen["day"] = partition_label(context)

    @dg.asset(deps=[day])
    def whole(context) -> None:
        seen["whole"] = (partition_label(context), context.has_partition_key)

    assert dg.materialize([day, whole], partition_key="2026-05-04", instance=dg.DagsterInstance.ephemeral()).success
    assert seen == {"day": label(["2026-05-04"]), "whole": (None, True)}
