"""Run the pipeline steps directly (no Dagster), for tests that compare table contents."""

import datetime as dt

from lakehouse.contracts import CONTRACTS, in_dependency_order
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.ingest import load_bronze
from lakehouse.resources.engine import Engine
from lakehouse.resources.landing import open_landing_zone
from lakehouse.tables import DIMENSION_SOURCES, dimension_table
from lakehouse.steps import (
    StepContext,
    run_customer_activity,
    run_daily_sales,
    run_dimension,
    run_fact_orders,
    run_silver,
)

FIXED_NOW = dt.datetime(2026, 3, 20, 12, tzinfo=dt.timezone.utc)
DAILY_ORDER = tuple(in_dependency_order(CONTRACTS))  # a looked-up source before the sources that look it up
TABLES = (
    *(f"silver.{s}" for s in CONTRACTS), "silver.quarantine",
    "gold.fact_orders", "gold.mart_daily_sales", "gold.mart_customer_activity",
    *(dimension_table(s).identifier for s in DIMENSION_SOURCES),
)
VOLATILE = ("run_id", "quarantined_at", "_ingested_at")


def process_day(settings, engine: str, day: dt.date, run_id: str = "test", steps: list | None = None) -> dict:
    """Bronze, silver and partitioned gold for one ingest date; returns step results by table."""
    return process_range(settings, engine, [day], run_id, steps)


def _step_store(catalog, steps: list | None, name: str) -> TableStore:
    """A store for one step, as a Dagster step has; `steps` collects (name, store)."""
    store = TableStore(catalog, keep_loaded=True)
    if steps is not None:
        steps.append((name, store))
    return store


def process_dimensions(settings, engine: str, run_id: str = "test", steps: list | None = None) -> None:
    catalog = catalog_from_settings(settings)
    for source in DIMENSION_SOURCES:
        store = _step_store(catalog, steps, f"dimension {source}")
        with Engine(engine, catalog) as eng:
            run_dimension(StepContext(store, eng, run_id), source)


def table_rows(store: TableStore, identifier: str) -> list[dict]:
    """Every row, volatile columns dropped, in a stable order."""
    table = store.read(identifier)
    table = table.drop_columns([c for c in VOLATILE if c in table.column_names])
    return sorted(table.to_pylist(), key=lambda r: tuple(str(v) for v in r.values()))


def execute_days(settings, days: list[dt.date], selection=None) -> None:
    """The daily job for each day, then the dimensions, in process on the persistent instance.

    For tests about what the tables hold; how runs get triggered is tested through the daemon.
    `selection`: only these asset keys of the daily job, and no dimensions.
    """
    from lakehouse.runner import open_instance
    from lakehouse.wiring import DAILY_JOB, DIMENSIONS_JOB, build_definitions

    defs = build_definitions(settings)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with open_instance(settings) as instance:
        for day in days:
            result = defs.resolve_job_def(DAILY_JOB).execute_in_process(
                instance=instance, partition_key=day.isoformat(), run_config=quiet, asset_selection=selection,
                raise_on_error=False)
            assert result.success, day
        if selection is None:
            assert defs.resolve_job_def(DIMENSIONS_JOB).execute_in_process(instance=instance, run_config=quiet).success


def execute_range(settings, first: dt.date, last: dt.date, selection=None) -> str:
    """The daily job over first..last as ONE run (what a backfill launches), in process; returns the run id.

    `selection`: asset keys to run (default: every asset of the daily job).
    """
    from lakehouse.runner import open_instance
    from lakehouse.wiring import DAILY_JOB, build_definitions

    defs = build_definitions(settings)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    tags = {"dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat()}
    with open_instance(settings) as instance:
        result = defs.resolve_job_def(DAILY_JOB).execute_in_process(
            instance=instance, tags=tags, run_config=quiet, asset_selection=selection, raise_on_error=False)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        return result.run_id


def process_range(settings, engine: str, days: list[dt.date], run_id: str = "test",
                  steps: list | None = None) -> dict:
    """Bronze, silver and partitioned gold for contiguous days as one batch each (a backfill's steps);
    returns step results by table. `steps` collects each step's (name, TableStore)."""
    catalog = catalog_from_settings(settings)
    zone = open_landing_zone(settings.landing_uri)
    for source in DAILY_ORDER:
        load_bronze(zone, _step_store(catalog, steps, f"bronze {source}"), CONTRACTS[source], days, run_id,
                    now=FIXED_NOW)
    results = {}
    for step, *args in [(run_silver, s) for s in DAILY_ORDER] + [(run_fact_orders,), (run_daily_sales,),
                                                               (run_customer_activity,)]:
        store = _step_store(catalog, steps, " ".join([step.__name__, *args]))
        with Engine(engine, catalog) as eng:
            result = step(StepContext(store, eng, run_id), *args, days)
        results[result.table.identifier] = result
    return results
