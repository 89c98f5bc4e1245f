"""Running a silver or gold step from an asset, for one partition or a range of them."""

import datetime as dt

from lakehouse.assets.checks import report
from lakehouse.assets.metadata import step_metadata
from lakehouse.interrupts import stops_end_steps
from lakehouse.partitions import label
from lakehouse.resources import EngineResource, IcebergResource
from lakehouse.resources.compute import Compute
from lakehouse.steps import STEPS, StepContext


def partition_days(context) -> list[dt.date]:
    """The days a run covers: one partition, or a backfill's range (one run, see BackfillPolicy)."""
    return [dt.date.fromisoformat(k) for k in context.partition_keys]


def partition_label(context) -> str | None:
    """The run's day or days, for a partitioned asset; None for an unpartitioned one (a dimension),
    which a landed day's run also materializes: Dagster gives it the run's days too."""
    if context.assets_def.partitions_def is None:
        return None
    if context.has_partition_key or context.has_partition_key_range:
        return label(list(context.partition_keys))
    return None


def run_step(context, engine: EngineResource, iceberg: IcebergResource, step, *args, compute: Compute | None = None):
    """Run one step here with a fresh engine scope, or on the cluster `compute` names; report it."""
    if compute is not None and not compute.local:
        keys = list(context.partition_keys) if partition_label(context) else None
        name = next(n for n, f in STEPS.items() if f is step)
        yield from compute.run(context, name, [a for a in args if isinstance(a, str)], keys)
        return
    with stops_end_steps():
        store = iceberg.store()
        with engine.engine(store.catalog) as eng:
            result = step(StepContext(store, eng, context.run.run_id), *args)
    yield from report(result.write, step_metadata(result), result.table.identifier, partition_label(context))
