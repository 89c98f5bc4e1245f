"""Bronze assets: one per source, daily partitioned by ingest date."""

import datetime as dt

import dagster as dg

from lakehouse.assets.checks import check_specs, report
from lakehouse.assets.raw import raw_key
from lakehouse.contracts import CONTRACTS, SourceContract
from lakehouse.ingest import BronzeLoad, load_bronze_partition
from lakehouse.resources import IcebergResource, LandingZoneResource
from lakehouse.tables import bronze_table


def _column_schema(load: BronzeLoad, contract: SourceContract) -> dg.TableSchema:
    described = {c.name: c.description for c in contract.columns}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(f.name, str(f.type), description=described.get(f.name, ""))
            for f in load.batch.schema
        ]
    )


def _metadata(load: BronzeLoad, contract: SourceContract) -> dict:
    batch = load.batch
    files = dg.MetadataValue.md(
        "| file | status | rows | malformed | format | reason |\n|---|---|---|---|---|---|\n"
        + "\n".join(
            f"| `{f.obj.key}` | {f.status} | {f.rows} | {f.malformed_rows} | {f.format or ''} | {f.reason or ''} |"
            for f in batch.files
        )
    )
    return {
        "dagster/row_count": batch.num_rows,
        "dagster/table_name": f"lakehouse.{bronze_table(contract.name).identifier}",
        "dagster/column_schema": _column_schema(load, contract),
        "files": len(batch.files),
        "files_ingested": len(batch.files) - len(batch.rejected),
        "files_rejected": len(batch.rejected),
        "malformed_rows": batch.malformed_rows,
        "missing_columns": dg.MetadataValue.json(batch.missing_columns()),
        "new_columns": dg.MetadataValue.json(batch.extra_columns()),
        "columns_added_to_table": dg.MetadataValue.json(load.bronze.added_columns),
        "ignored_keys": dg.MetadataValue.json(dict(load.ignored)),
        "snapshot_id": str(load.bronze.snapshot_id),
        "file_outcomes": files,
    }


def build_bronze_asset(contract: SourceContract, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    source = contract.name

    @dg.asset(
        key=["bronze", source],
        deps=[raw_key(source)],
        partitions_def=partitions,
        group_name="bronze",
        kinds={"iceberg", "pyarrow"},
        owners=[contract.owner],
        description=(
            f"{source.capitalize()} as landed: every file of the ingest date, values as strings, "
            "headers canonicalised, lineage columns added. Unreadable files go to "
            "bronze.rejected_files; every file is logged in ops.ingestion_log."
        ),
        metadata={"dagster/table_name": f"lakehouse.bronze.{source}"},
        check_specs=check_specs(f"bronze/{source}"),
    )
    def bronze(
        context: dg.AssetExecutionContext, landing: LandingZoneResource, iceberg: IcebergResource
    ) -> dg.MaterializeResult:
        day = dt.date.fromisoformat(context.partition_key)
        load = load_bronze_partition(landing.zone(), iceberg.store(), contract, day, context.run.run_id)
        for f in load.batch.rejected:
            context.log.warning(f"rejected {f.obj.key}: {f.reason}")
        for column, keys in load.batch.missing_columns().items():
            context.log.warning(f"column {column!r} missing from {len(keys)} file(s), left null: {keys}")
        for key, reason in load.ignored:
            context.log.warning(f"ignored {key}: {reason}")
        yield from report(load.bronze, _metadata(load, contract), f"bronze.{source}", context.partition_key)

    return bronze


def bronze_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    return [build_bronze_asset(c, partitions) for c in CONTRACTS.values()]
