"""Materialization metadata shared by every layer: what the UI shows for a table write."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import dagster as dg
import pyarrow as pa

from lakehouse import lineage
from lakehouse.tables import TableDef


def column_schema(table: TableDef, schema: pa.Schema | None = None) -> dg.TableSchema:
    """The table's columns with their contract descriptions (schema: when it evolved)."""
    schema = schema or table.schema
    return dg.TableSchema(columns=[
        dg.TableColumn(f.name, str(f.type), description=table.describe(f.name) or "Arrived beyond the contract.")
        for f in schema])


def code_reference(module: ModuleType, text: str, label: str) -> dict:
    """`dagster/code_references` to the line of `module` holding `text`: for assets with no
    function of their own (raw landing prefixes, ops tables), the UI links to what defines them."""
    path = Path(module.__file__)
    line = next(n for n, source in enumerate(path.read_text().splitlines(), 1) if text in source)
    return {"dagster/code_references": dg.CodeReferencesMetadataValue(
        code_references=[dg.LocalFileCodeReference(file_path=str(path), line_number=line, label=label)])}


def column_lineage(table: TableDef) -> dict:
    """`dagster/column_lineage`: each column's input columns, as derived from the transforms."""
    deps = lineage.of(table.identifier)
    if not deps:
        return {}
    return {"dagster/column_lineage": dg.TableColumnLineage(deps_by_column={
        column: [dg.TableColumnDep(asset_key=dg.AssetKey(t.split(".")), column_name=c) for t, c in inputs]
        for column, inputs in deps.items()})}


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
    if not snapshot_id:
        return {}
    return {"time_travel": dg.MetadataValue.md(
        f"```\nlakehouse query --as-of {snapshot_id} \"select count(*) from {identifier}\"\n```\n"
        f"Athena: `SELECT count(*) FROM {identifier} FOR VERSION AS OF {snapshot_id}`")}


def step_metadata(result) -> dict:
    """Metadata of one step's write: counts, snapshot and the days it touched."""
    counts = dict(result.counts)
    written = counts.get("silver", counts.get("rows_out", 0))
    meta: dict = {
        "dagster/row_count": written,
        "dagster/table_name": f"lakehouse.{result.table.identifier}",
        "dagster/column_schema": column_schema(result.table),
        **column_lineage(result.table),
        "snapshot_id": str(result.snapshot_id) if result.snapshot_id else "none (nothing to write)",
        **time_travel(result.table.identifier, result.snapshot_id),
    }
    for name, value in counts.items():
        if name.startswith("rule:"):
            meta[f"quarantined_by/{name[5:]}"] = value
        elif name.startswith("flag:"):
            meta[f"flagged/{name[5:]}"] = value
        else:
            meta[name] = value
    if len(result.by_day) > 1:  # a range run: the same figures per partition
        columns = [c for c in next(iter(result.by_day.values())) if ":" not in c]
        rows = [f"| {day} | " + " | ".join(str(counts.get(c, 0)) for c in columns) + " |"
                for day, counts in result.by_day.items()]
        meta["partitions"] = len(result.by_day)
        meta["per_partition"] = dg.MetadataValue.md(
            f"| partition | {' | '.join(columns)} |\n|---|{'---|' * len(columns)}\n" + "\n".join(rows))
    if result.affected_dates:
        meta["affected_dates"] = dg.MetadataValue.json(result.affected_dates)
    return meta
