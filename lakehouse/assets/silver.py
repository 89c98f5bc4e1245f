"""Silver assets: typed, validated, de-duplicated and enriched; daily by ingest date."""

import datetime as dt

import dagster as dg

from lakehouse.assets.metadata import step_metadata, table_metadata
from lakehouse.contracts import CONTRACTS, SourceContract
from lakehouse.resources import EngineResource, IcebergResource
from lakehouse.steps import StepContext, run_silver
from lakehouse.tables import silver_table


def run_step(context, engine: EngineResource, iceberg: IcebergResource, step, *args) -> dg.MaterializeResult:
    """Run one step with a fresh engine scope; report its write as metadata."""
    with engine.engine() as eng:
        result = step(StepContext(iceberg.store(), eng, context.run.run_id), *args)
    return dg.MaterializeResult(metadata=step_metadata(result))


def build_silver_asset(contract: SourceContract, partitions, engine_name: str) -> dg.AssetsDefinition:
    source = contract.name
    deps = [dg.AssetKey(["bronze", source])]
    # Enrichment reads the looked-up sources' versions as of the same ingest date.
    deps += [dg.AssetKey(["silver", lookup.source]) for lookup in contract.lookups]
    table = silver_table(source)

    @dg.asset(
        key=["silver", source],
        deps=deps,
        partitions_def=partitions,
        group_name="silver",
        kinds={"iceberg", engine_name},
        owners=[contract.owner],
        description=(
            f"{table.description} Rows that break a rule go to silver.quarantine with every rule "
            "they broke; duplicates are counted in the metadata."
        ),
        metadata=table_metadata(table),
    )
    def silver(context: dg.AssetExecutionContext, engine: EngineResource, iceberg: IcebergResource):
        return run_step(context, engine, iceberg, run_silver, source, dt.date.fromisoformat(context.partition_key))

    return silver


def silver_assets(partitions, engine_name: str) -> list[dg.AssetsDefinition]:
    return [build_silver_asset(c, partitions, engine_name) for c in CONTRACTS.values()]
