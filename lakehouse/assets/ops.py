"""Ops: the tables the lakehouse keeps about itself, in the graph beside what writes them.

They are written as side effects of other steps (the landing sensor and bronze write
the ingestion log and rejected files, silver the quarantine, every audited write its
check results), so Dagster does not materialize them: they are external assets whose
edges say where their rows come from, and whose metadata says where to query them.
"""

from __future__ import annotations

import dagster as dg

from lakehouse import tables
from lakehouse.assets.metadata import code_reference, table_metadata
from lakehouse.contracts import CONTRACTS
from lakehouse.tables import DQ_RESULTS, INGESTION_LOG, QUARANTINE, REJECTED_FILES, TableDef

OWNER = "team:data-platform"


def _spec(table: TableDef, deps: list[dg.AssetKey], written_by: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=table.identifier.split("."),
        deps=deps,
        group_name="ops",
        kinds={"iceberg"},
        owners=[OWNER],
        description=f"{table.description} Written by {written_by}; query it with "
                    f"`lakehouse query \"select * from {table.identifier}\"`.",
        metadata={**table_metadata(table), **code_reference(tables, f'"{table.identifier}"', "table definition")},
    )


def ops_specs() -> list[dg.AssetSpec]:
    """The ops tables. ops.dq_results has no edges: its rows are check results of every
    asset, not data derived from them, and edges to all of them would hide the graph."""
    raw = [dg.AssetKey(["raw", s]) for s in CONTRACTS]
    bronze = [dg.AssetKey(["bronze", s]) for s in CONTRACTS]
    return [
        _spec(INGESTION_LOG, raw, "the landing sensor (pending files, and keys it ignored with the reason) and "
                                  "bronze (what became of each file)"),
        _spec(REJECTED_FILES, raw, "bronze, for files that could not be read at all"),
        _spec(QUARANTINE, bronze, "silver, for rows that broke a quarantine rule"),
        _spec(DQ_RESULTS, [], "every audited write of bronze, silver and gold, published or not"),
    ]
