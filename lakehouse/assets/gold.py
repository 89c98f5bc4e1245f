"""Gold assets: dimensions, the order fact and the marts."""

import dagster as dg

from lakehouse.assets.automation import AUTOMATION, DIMENSION_AUTOMATION, RANGE_IN_ONE_RUN, TABLE_WRITERS
from lakehouse.assets.checks import check_specs
from lakehouse.assets.metadata import table_metadata
from lakehouse.assets.step import partition_days, run_step
from lakehouse.checks.catalog import GOLD_CHECKS
from lakehouse.contracts import CONTRACTS, DeclarationError
from lakehouse.contracts.declared import declaration_file
from lakehouse.resources import EngineResource, IcebergResource
from lakehouse.resources.compute import Compute
from lakehouse.steps import run_customer_activity, run_daily_sales, run_dimension, run_fact_orders
from lakehouse.tables import DIMENSION_SOURCES, FACT_ORDERS, MART_CUSTOMER_ACTIVITY, MART_DAILY_SALES, dimension_table

OWNER = "team:analytics-engineering"
# A landed day's run (sensors/landing.py) also rebuilds the dimensions: Dagster's in-process
# executor takes the ready step of highest priority, so they come after the fact, and their
# covers_facts check reads the fact the same run wrote, as when they were a run after it.
# The priority also orders the claims on the lakehouse_tables pool: while other runs' steps
# wait for it, a run's dimensions wait behind them (with a backlog of separate days, the
# dimensions of each come after the other runs' steps).
AFTER_THE_FACT = {"dagster/priority": "-1"}


def _dimension(source: str, engine_name: str) -> dg.AssetsDefinition:
    table = dimension_table(source)
    name = table.identifier.split(".")[1]

    @dg.asset(
        key=["gold", name],
        deps=[dg.AssetKey(["silver", source])],
        group_name="gold",
        kinds={"iceberg", engine_name},
        owners=[OWNER],
        description=f"{table.description} Rebuilt from the silver version history.",
        metadata=table_metadata(table),
        automation_condition=DIMENSION_AUTOMATION,
        pool=TABLE_WRITERS,
        op_tags=AFTER_THE_FACT,
        check_specs=check_specs(f"gold/{name}"),
    )
    def dimension(context: dg.AssetExecutionContext, engine: EngineResource, iceberg: IcebergResource,
                  compute: dg.ResourceParam[Compute]):
        yield from run_step(context, engine, iceberg, run_dimension, source, compute=compute)

    return dimension


def _partitioned(table, deps, step, description, partitions, engine_name) -> dg.AssetsDefinition:
    name = table.identifier.split(".")[1]

    @dg.asset(
        key=["gold", name],
        deps=[dg.AssetKey(d.split("/")) for d in deps],
        partitions_def=partitions,
        group_name="gold",
        kinds={"iceberg", engine_name},
        owners=[OWNER],
        description=description,
        metadata=table_metadata(table),
        automation_condition=AUTOMATION,
        pool=TABLE_WRITERS,
        backfill_policy=RANGE_IN_ONE_RUN,
        check_specs=check_specs(f"gold/{name}"),
    )
    def gold_asset(context: dg.AssetExecutionContext, engine: EngineResource, iceberg: IcebergResource,
                   compute: dg.ResourceParam[Compute]):
        yield from run_step(context, engine, iceberg, step, partition_days(context), compute=compute)

    return gold_asset


# Gold is Python over these sources; the declarations must keep what it relies on.
NEEDS = {
    "orders": ("order_date", "gold.fact_orders and the sales mart"),
    "events": ("event_date", "gold.mart_customer_activity, which recomputes the days silver.events records under it"),
}


def _check_declarations() -> None:
    for source, (column, why) in NEEDS.items():
        contract = CONTRACTS.get(source)
        if contract is None or contract.partition is None or contract.partition.column != column:
            raise DeclarationError(f"{declaration_file(source)}: {why} needs the source declared with "
                                   f"`partition: {{column: {column}, grain: ...}}`; put it back (the grain may change)")
    coded = sorted(asset.split("/")[1] for asset in GOLD_CHECKS if asset.startswith("gold/dim_"))
    for source in DIMENSION_SOURCES:
        if CONTRACTS[source].dimension not in coded:
            raise DeclarationError(f"{declaration_file(source)}: dimension {CONTRACTS[source].dimension!r} "
                                   f"has no gold code; the dimensions are {', '.join(coded)} (a new one needs its "
                                   "checks in lakehouse/checks/catalog.py and its fact flag in lakehouse/steps/gold.py)")


def gold_assets(partitions, engine_name: str) -> tuple[list, list]:
    """(partitioned gold assets, unpartitioned dimensions)."""
    _check_declarations()
    partitioned = [
        _partitioned(FACT_ORDERS, ["silver/orders"], run_fact_orders,
                     f"{FACT_ORDERS.description} Partitioned by ingest date; stored by month(order_date).",
                     partitions, engine_name),
        _partitioned(MART_DAILY_SALES, ["gold/fact_orders"], run_daily_sales,
                     f"{MART_DAILY_SALES.description} A partition refresh recomputes only the order dates "
                     "its ingest date touched, so late orders land in the right day.",
                     partitions, engine_name),
        _partitioned(MART_CUSTOMER_ACTIVITY, ["gold/fact_orders", "silver/events"], run_customer_activity,
                     f"{MART_CUSTOMER_ACTIVITY.description} Recomputes only the days its ingest date touched.",
                     partitions, engine_name),
    ]
    return partitioned, [_dimension(source, engine_name) for source in DIMENSION_SOURCES]
