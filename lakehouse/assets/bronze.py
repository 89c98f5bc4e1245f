"""Bronze assets: one per source, daily partitioned by ingest date."""

import dagster as dg

from lakehouse.assets.automation import RANGE_IN_ONE_RUN, TABLE_WRITERS
from lakehouse.assets.checks import audit_events, check_specs
from lakehouse.assets.metadata import column_schema, table_metadata, time_travel
from lakehouse.assets.step import partition_days, partition_label
from lakehouse.assets.raw import raw_key
from lakehouse.contracts import SourceContract
from lakehouse.ingest import BronzeLoad, load_bronze
from lakehouse.interrupts import stops_end_steps
from lakehouse.layout import shown, storable
from lakehouse.readers import FALLBACK_ENCODING
from lakehouse.resources import IcebergResource, LandingZoneResource
from lakehouse.tables import bronze_table


def _cell(text: str, code: bool = False) -> str:
    """`text` in a Markdown table cell: any file name (pipes, backticks, control characters) shows as is."""
    cell = shown(text).replace("|", "\\|")
    if not code:
        return cell
    fence = "``" if "`" in cell else "`"
    return f"{fence} {cell} {fence}"


def _encoding(outcome, contract: SourceContract) -> str:
    """A delimited file's encoding; Windows-1252 undeclared is a guess (its bytes are not UTF-8), said so."""
    if outcome.encoding == FALLBACK_ENCODING and not contract.landing.encoding:
        return f"{FALLBACK_ENCODING} (guessed: not UTF-8)"
    return outcome.encoding or ""


def _metadata(load: BronzeLoad, contract: SourceContract) -> dict:
    batch = load.batch
    files = dg.MetadataValue.md(
        "| file | status | rows | malformed | format | encoding | reason |\n|---|---|---|---|---|---|---|\n"
        + "\n".join(
            f"| {_cell(f.obj.key, code=True)} | {f.status} | {f.rows} | {f.malformed_rows} | {f.format or ''} "
            f"| {_encoding(f, contract)} | {_cell(f.reason or '')} |"
            for f in batch.files
        )
    )
    return {
        "dagster/row_count": batch.num_rows,
        "dagster/table_name": f"lakehouse.{bronze_table(contract.name).identifier}",
        "dagster/column_schema": column_schema(bronze_table(contract.name), load.batch.schema),
        "files": len(batch.files),
        "files_ingested": len(batch.files) - len(batch.rejected),
        "files_rejected": len(batch.rejected),
        "malformed_rows": batch.malformed_rows,
        "missing_columns": dg.MetadataValue.json(batch.missing_columns()),
        "new_columns": dg.MetadataValue.json(batch.extra_columns()),
        "columns_added_to_table": dg.MetadataValue.json(load.bronze.added_columns),
        "ignored_keys": dg.MetadataValue.json({storable(k): why for k, why in load.ignored}),
        "snapshot_id": str(load.bronze.snapshot_id),
        **time_travel(bronze_table(contract.name).identifier, load.bronze.snapshot_id),
        "file_outcomes": files,
    }


def _spec(contract: SourceContract, partitions: dg.PartitionsDefinition) -> dg.AssetSpec:
    source = contract.name
    return dg.AssetSpec(
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
        metadata=table_metadata(bronze_table(source)),
    )


def build_bronze_assets(partitions: dg.PartitionsDefinition, contracts: list[SourceContract],
                        name: str = "bronze") -> dg.AssetsDefinition:
    """One subsettable step for the sources of an ingest date.

    The materializations are reported together once every selected source is loaded, so
    the automation sensor sees the whole day at once and makes one silver-and-gold run
    for it, instead of one run per source as each finishes.
    """

    @dg.multi_asset(
        name=name,
        specs=[_spec(c, partitions) for c in contracts],
        check_specs=[spec for c in contracts for spec in check_specs(f"bronze/{c.name}")],
        partitions_def=partitions,
        backfill_policy=RANGE_IN_ONE_RUN,
        can_subset=True,
        # In the pool of silver and gold (see automation.py): a bronze write that published
        # while a silver step was reading would be older than silver's materialization, and
        # automation would take silver for up to date when it read the bronze before it.
        pool=TABLE_WRITERS,
    )
    def bronze(context: dg.AssetExecutionContext, landing: LandingZoneResource, iceberg: IcebergResource):
        days, partition = partition_days(context), partition_label(context)
        materializations, checks, blocked = [], [], []
        with stops_end_steps():  # a stop during the loads ends the step as interrupted (lakehouse/interrupts.py)
            for contract in contracts:
                key = dg.AssetKey(["bronze", contract.name])
                if key not in context.selected_asset_keys:
                    continue
                load = load_bronze(landing.zone(), iceberg.store(), contract, days, context.run.run_id)
                for f in load.batch.rejected:
                    context.log.warning(f"rejected '{shown(f.obj.key)}': {f.reason}")
                for column, keys in load.batch.missing_columns().items():
                    context.log.warning(f"column {column!r} missing from {len(keys)} file(s), left null: {keys}")
                for ignored, reason in load.ignored:
                    context.log.warning(f"ignored '{shown(ignored)}': {reason}")
                # A blocking check fails this source; the other sources still publish.
                materialization, results, failure = audit_events(
                    load.bronze, _metadata(load, contract), f"bronze.{contract.name}", partition, key)
                materializations += [materialization] if materialization else []
                checks += results
                blocked += [failure] if failure else []
        # All materializations first, back to back: an automation tick then sees the whole day.
        yield from materializations
        yield from checks
        if blocked:
            raise dg.Failure(description="\n\n".join(f.description for f in blocked))

    return bronze
