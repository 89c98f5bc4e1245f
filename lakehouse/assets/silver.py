"""Silver assets: typed, validated, de-duplicated and enriched; daily by ingest date."""

import dagster as dg

from lakehouse.assets.automation import AUTOMATION, RANGE_IN_ONE_RUN, TABLE_WRITERS
from lakehouse.assets.checks import check_specs
from lakehouse.assets.metadata import table_metadata
from lakehouse.assets.step import partition_days, run_step
from lakehouse.contracts import SourceContract
from lakehouse.resources import EngineResource, IcebergResource
from lakehouse.resources.compute import Compute
from lakehouse.steps import run_silver
from lakehouse.tables import silver_table


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
        automation_condition=AUTOMATION,
        pool=TABLE_WRITERS,
        backfill_policy=RANGE_IN_ONE_RUN,
        check_specs=check_specs(f"silver/{source}"),
    )
    def silver(context: dg.AssetExecutionContext, engine: EngineResource, iceberg: IcebergResource,
               compute: dg.ResourceParam[Compute]):
        yield from run_step(context, engine, iceberg, run_silver, source, partition_days(context), compute=compute)

    return silver

