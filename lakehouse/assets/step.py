"""Running a silver or gold step from an asset."""

from lakehouse.assets.checks import report
from lakehouse.assets.metadata import step_metadata
from lakehouse.resources import EngineResource, IcebergResource
from lakehouse.steps import StepContext


def run_step(context, engine: EngineResource, iceberg: IcebergResource, step, *args):
    """Run one step with a fresh engine scope; report its checks and its write."""
    with engine.engine() as eng:
        result = step(StepContext(iceberg.store(), eng, context.run.run_id), *args)
    partition = context.partition_key if context.has_partition_key else None
    yield from report(result.write, step_metadata(result), result.table.identifier, partition)
