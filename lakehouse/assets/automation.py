"""When silver and gold refresh on their own: after their inputs, never past a failed blocking check."""

import warnings

import dagster as dg
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES  # queued to canceling, as Dagster counts them

AC = dg.AutomationCondition


class InputWrittenWithThisAsset(dg.AutomationCondition):
    """True for an input partition whose latest write came from a run that also targeted the asset.

    Replaces Dagster's `executed_with_root_target` inside eager(). That one looks only at the
    input's latest write overall and counts it only for the partition it wrote: after a
    range run over 04..05 the input of 04 looks written by someone else. An automation tick
    that falls while such a run is still writing (its input of 04 already written, the asset
    of 04 just finished) then asks for 04 again. This looks up each partition's own latest write.
    """

    @property
    def name(self) -> str:
        return "input_written_with_this_asset"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        subset, root = context.candidate_subset, context.root_context.key
        if subset.is_empty or context.key == root:
            return dg.AutomationResult(context, context.get_empty_subset())
        instance = context.asset_graph_view.instance
        partitions = subset.expensively_compute_partition_keys() if subset.is_partitioned else None
        if partitions is None:
            latest = instance.get_latest_materialization_event(context.key)
            runs = {None: latest.run_id} if latest else {}
        else:
            ids = instance.get_latest_storage_id_by_partition(
                context.key, dg.DagsterEventType.ASSET_MATERIALIZATION, set(partitions))
            if not ids:  # never written (an empty storage_ids filter would be no filter at all)
                return dg.AutomationResult(context, context.get_empty_subset())
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=context.key, storage_ids=list(ids.values())), limit=len(ids) or 1).records
            runs = {r.partition_key: r.run_id for r in records}
        selections = {r.run_id: r.asset_selection or set()
                      for r in instance.get_runs(dg.RunsFilter(run_ids=list(set(runs.values()))))} if runs else {}
        hits = {p for p, run_id in runs.items() if root in selections.get(run_id, set())}
        if partitions is None:
            return dg.AutomationResult(context, subset if None in hits else context.get_empty_subset())
        return dg.AutomationResult(context, subset.compute_intersection_with_partition_keys(hits))


# Dagster's eager() without its `in_latest_time_window()` clause: a late file for an old
# ingest date, or a week landing at once, must flow to gold too, not only today's partition.
FOLLOW_INPUTS = (AC.eager().without(AC.in_latest_time_window())
                 .replace("executed_with_root_target", InputWrittenWithThisAsset())
                 .with_label("eager, every partition"))

# An input counts when its blocking checks passed, or when it is itself requested in this
# tick: then it runs in the same run, and a failed blocking check there fails its step
# and skips everything after it. So one tick chains silver and gold into one run per day.
# (Dagster's all_deps_blocking_checks_passed() wants the checks requested too; checks that
# run inside their asset's step never are, so it would split the chain into a run per layer.)
# An input whose blocking check failed, with nothing published, triggers nothing.
INPUTS_PASSED = AC.all_deps_match(
    AC.all_checks_match(AC.check_passed(), blocking_only=True) | AC.will_be_requested()
).with_label("inputs passed their blocking checks, or run first in the same run")
AUTOMATION = FOLLOW_INPUTS & INPUTS_PASSED

class InputsRunEnded(dg.AutomationCondition):
    """True once the runs that last wrote the asset's inputs have ended.

    For the dimensions, after silver changes made outside a landed day's run (which rebuilds
    them itself, sensors/landing.py): a backfill writes silver/customers, then
    silver/products. eager() alone asked for each as soon as its own input was written: when
    a tick fell between the two writes, two runs one after the other, each a process (a
    one-day `lakehouse run` once made three runs, four others two). Waiting for the run that
    wrote the input, both are asked for in the same tick after it: one run, when one run wrote
    both inputs. A run that failed has ended too. While
    runs writing silver follow each other without a pause, the dimensions wait for whichever
    last wrote their input (as eager() itself waits while a run plans to write it).
    """

    @property
    def name(self) -> str:
        return "inputs_run_ended"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        subset = context.candidate_subset
        if subset.is_empty:
            return dg.AutomationResult(context, subset)
        instance = context.asset_graph_view.instance
        writers = {event.run_id for key in context.asset_graph.get(context.key).parent_keys
                   if (event := instance.get_latest_materialization_event(key)) is not None and event.run_id}
        going = unfinished_runs(instance, writers)
        return dg.AutomationResult(context, context.get_empty_subset() if going else subset)


def unfinished_runs(instance: dg.DagsterInstance, run_ids) -> list[str]:
    """The ids, among `run_ids`, of runs not ended yet (queued to canceling, as Dagster counts them);
    `lakehouse status` says the same of a dimension waiting on one."""
    if not run_ids:
        return []
    return [run.run_id for run in instance.get_runs(dg.RunsFilter(run_ids=sorted(run_ids)))
            if run.status in NOT_FINISHED_STATUSES]


# The unpartitioned dimensions read whatever silver has published, once the run that wrote
# it has ended (so both are one run). A silver write by a run that also targeted them (a
# landed day's) does not count, as for silver and gold: that run rebuilds them. If it ends
# before their step (cancelled, out of retries), they stay behind silver, as a day's gold
# then does: `lakehouse status` lists them, and `lakehouse run` asks for them (ask_for_lost).
# `any_deps_missing` would hold them back while any day since LAKEHOUSE_START_DATE has no
# snapshot, so it is left out.
DIMENSION_AUTOMATION = (AC.eager().without(~AC.any_deps_missing())
                        .replace("executed_with_root_target", InputWrittenWithThisAsset())
                        & InputsRunEnded()).with_label("after any silver snapshot, once its run has ended")

# A backfill over a range of days is one run: each step reads, transforms and writes the
# whole range at once (one engine session, one Iceberg commit per table). One run also
# keeps the days in order, which the snapshot sources' change detection relies on.
RANGE_IN_ONE_RUN = dg.BackfillPolicy.single_run()
# The parameter is marked beta in 1.13 and warns once per asset; the policy itself is
# what Dagster's own docs recommend for ranged backfills, so the warning is only noise.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
# Likewise the automation sensor's `use_user_code_server`, which a condition of ours needs (wiring.py).
warnings.filterwarnings("ignore", message="Parameter `use_user_code_server`", category=dg.BetaWarning)

# Bronze, silver and gold steps run one at a time across runs (a Dagster concurrency pool;
# the instance config gives every pool a limit of 1). A silver write recomputes keys across
# ingest dates and the fact rewrites whatever drifted from silver, so each step must see
# the tables as the previous step left them. Bronze is in it too: automation orders work by
# when materializations were recorded, which is only sound if no input is published while
# a step reads it (a crash trial left silver older than a bronze retry that overlapped it).
TABLE_WRITERS = "lakehouse_tables"
