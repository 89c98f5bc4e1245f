"""What a step reports, built once for every compute: its write's metadata and each check's.

A step runs here or on a cluster (Glue, EMR, through Dagster Pipes). Both report with
these functions, so the UI, `lakehouse status` (which sums `flagged/*`) and the alerts see
the same keys and values wherever the step ran. The values are in the JSON form Pipes
carries (`{"raw_value": ..., "type": ...}`), because the cluster has `dagster_pipes`
but not `dagster`; the Dagster side turns them into metadata values with the function
Dagster's Pipes reader applies (`lakehouse.assets.metadata.to_dagster`). No Dagster here.
"""

from __future__ import annotations

import json

from lakehouse import lineage

NEW_COLUMN = "Arrived beyond the contract."  # a column schema evolution added, with no description


def value(raw, kind: str) -> dict:
    return {"raw_value": raw, "type": kind}


def _plain(raw):
    """JSON-safe: dates, decimals and the like as text."""
    return json.loads(json.dumps(raw, default=str))


def column_schema(table, schema=None) -> dict:
    """`dagster/column_schema`: the table's columns with their contract descriptions (schema: when it evolved)."""
    return value({"columns": [{"name": f.name, "type": str(f.type), "description": table.describe(f.name) or NEW_COLUMN}
                              for f in (schema or table.schema)]}, "table_schema")


def column_lineage(identifier: str) -> dict:
    """`dagster/column_lineage`, as derived from the transforms; {} for tables nothing derives."""
    deps = lineage.of(identifier)
    if not deps:
        return {}
    return {"dagster/column_lineage": value({"deps_by_column": {
        column: [{"asset_key": t.split("."), "column_name": c} for t, c in inputs]
        for column, inputs in deps.items()}}, "table_column_lineage")}


def time_travel(identifier: str, snapshot_id: int | None) -> dict:
    """A ready-to-run query of the table as this materialization wrote it."""
    if not snapshot_id:
        return {}
    return {"time_travel": value(
        f"```\nlakehouse query --as-of {snapshot_id} \"select count(*) from {identifier}\"\n```\n"
        f"Athena: `SELECT count(*) FROM {identifier} FOR VERSION AS OF {snapshot_id}`", "md")}


def count_key(name: str) -> str:
    """A step count's metadata key: rule:x -> quarantined_by/x, flag:x -> flagged/x, others as they are."""
    if name.startswith("rule:"):
        return f"quarantined_by/{name[5:]}"
    if name.startswith("flag:"):
        return f"flagged/{name[5:]}"
    return name


def step_metadata(result) -> dict:
    """Metadata of one step's write (a `StepResult`): counts, snapshot, schema, lineage, the days it touched."""
    counts = dict(result.counts)
    identifier = result.table.identifier
    meta: dict = {
        "dagster/row_count": value(int(counts.get("silver", counts.get("rows_out", 0))), "int"),
        "dagster/table_name": value(f"lakehouse.{identifier}", "text"),
        "dagster/column_schema": column_schema(result.table),
        **column_lineage(identifier),
        "snapshot_id": value(str(result.snapshot_id) if result.snapshot_id else "none (nothing to write)", "text"),
        **time_travel(identifier, result.snapshot_id),
    }
    meta.update({count_key(name): value(int(n), "int") for name, n in counts.items()})
    if len(result.by_day) > 1:  # a range run: the same figures per partition
        columns = [c for c in next(iter(result.by_day.values())) if ":" not in c]
        rows = [f"| {day} | " + " | ".join(str(day_counts.get(c, 0)) for c in columns) + " |"
                for day, day_counts in result.by_day.items()]
        meta["partitions"] = value(len(result.by_day), "int")
        meta["per_partition"] = value(
            f"| partition | {' | '.join(columns)} |\n|---|{'---|' * len(columns)}\n" + "\n".join(rows), "md")
    if result.affected_dates:
        meta["affected_dates"] = value(_plain(list(result.affected_dates)), "json")
    return meta


def check_metadata(outcome) -> dict:
    """Metadata of one check result (a `CheckOutcome`): what was observed against what, and a few offending rows."""
    meta = {"check": value(outcome.name, "text"), "message": value(outcome.message, "text")}
    if isinstance(outcome.observed, (int, float)):
        meta["observed"] = value(float(outcome.observed), "float")
    if outcome.spec.threshold is not None:
        meta["threshold"] = value(float(outcome.spec.threshold), "float")
    if outcome.sample:
        meta["offending_rows"] = value(_plain(list(outcome.sample)), "json")
    if outcome.details:
        meta["details"] = value(_plain(outcome.details), "json")
    return meta
