"""Running a silver or gold step from an asset, for one partition or a range of them."""

import datetime as dt

from lakehouse.assets.checks import report
from lakehouse.assets.metadata import step_metadata
from lakehouse.partitions import label
from lakehouse.resources import EngineResource, IcebergResource
from lakehouse.steps import StepContext


def partition_days(context) -> list[dt.date]:
    """The days a run covers: one partition, or a backfill's range (one run, see BackfillPolicy)."""
    return [dt.date.fromisoformat(k) for k in context.partition_keys]


def partition_label(context) -> str | None:
    if context.has_partition_key or context.has_partition_key_range:
        return label(list(context.partition_keys))
    return None


def run_step(context, engine: EngineResource, iceberg: IcebergResource, step, *args):
    """Run one step with a fresh engine scope; report its checks and its write."""
    with engine.engine() as eng:
        result = step(StepContext(iceberg.store(), eng, context.run.run_id), *args)
    yield from report(result.write, step_metadata(result), result.table.identifier, partition_label(context))
