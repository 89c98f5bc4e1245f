"""Materialization metadata shared by every layer: what the UI shows for a table write."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import dagster as dg
import pyarrow as pa

from lakehouse import reporting
from lakehouse.tables import TableDef


def to_dagster(metadata: dict) -> dict:
    """Metadata in Pipes' JSON form (lakehouse.reporting) as Dagster values, as Dagster's Pipes reader makes them.

    Dagster's own conversion, not ours: a step run here and one run on a cluster through
    Pipes then give the UI identical values.
    """
    from dagster._core.definitions.metadata.external_metadata import metadata_map_from_external

    return dict(metadata_map_from_external(metadata))


def column_schema(table: TableDef, schema: pa.Schema | None = None) -> dg.TableSchema:
    """The table's columns with their contract descriptions (schema: when it evolved)."""
    return to_dagster({"schema": reporting.column_schema(table, schema)})["schema"].schema


def code_reference(module: ModuleType | Path, text: str, label: str) -> dict:
    """`dagster/code_references` to the line of `module` (or a file) holding `text`: for assets with
    no function of their own (raw landing prefixes, ops tables), the UI links to what defines them."""
    path = module if isinstance(module, Path) else Path(module.__file__)
    line = next(n for n, source in enumerate(path.read_text().splitlines(), 1) if text in source)
    return {"dagster/code_references": dg.CodeReferencesMetadataValue(
        code_references=[dg.LocalFileCodeReference(file_path=str(path), line_number=line, label=label)])}


def column_lineage(table: TableDef) -> dict:
    """`dagster/column_lineage`: each column's input columns, as derived from the transforms."""
    return {key: value.lineage for key, value in to_dagster(reporting.column_lineage(table.identifier)).items()}


def table_metadata(table: TableDef) -> dict:
    """Definition-time metadata: where the table is, what it holds and where its columns come from."""
    return {
        "dagster/table_name": f"lakehouse.{table.identifier}",
        "dagster/column_schema": column_schema(table),
        **column_lineage(table),
        "iceberg/partition_spec": ", ".join(f"{t}({c})" for c, t in table.partition_by) or "unpartitioned",
    }


def time_travel(identifier: str, snapshot_id: int | None) -> dict:
    """A ready-to-run query of the table as this materialization wrote it."""
    return to_dagster(reporting.time_travel(identifier, snapshot_id))


def step_metadata(result) -> dict:
    """Metadata of one step's write, the same whether the step ran here or through Pipes."""
    return to_dagster(reporting.step_metadata(result))
