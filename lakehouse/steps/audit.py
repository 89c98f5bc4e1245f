"""Write-audit-publish: a write goes to an audit branch, its checks run there, main moves only if they pass;
every evaluation is appended to ops.dq_results."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import replace

import pyarrow as pa

from lakehouse.checks import evaluate as ev
from lakehouse.checks.catalog import specs_for
from lakehouse.checks.model import CheckOutcome
from lakehouse.iceberg import WriteResult
from lakehouse.partitions import label
from lakehouse.resources.engine import Engine
from lakehouse.steps.context import COLUMNS, StepContext
from lakehouse.tables import DQ_RESULTS, TableDef
from lakehouse.transforms.bronze import INGEST_DATE


def branch_name(asset: str, keys: list[str] | None, run_id: str) -> str:
    """audit-<asset>-<partition or range>-<run>: findable by asset and partitions, unique per run."""
    part = label(keys) if keys else "all"
    return re.sub(r"[^a-z0-9_-]", "-", f"audit-{asset}-{part}-{run_id[:8]}".lower())


def writes_to(ctx: StepContext, table: TableDef, asset: str, start: int | None = None):
    """Snapshot properties of the published writes of `asset` to `table`, newest first (from `start` back)."""
    for snapshot in ctx.store.main_history(table.identifier, start):
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        if summary.get("dagster.asset_key") == asset:
            yield summary


def previous_value(ctx: StepContext, table: TableDef, asset: str, prop: str):
    """The property `prop` of the newest published snapshot written by `asset`."""
    return next((summary[prop] for summary in writes_to(ctx, table, asset) if prop in summary), None)


def audited_write(ctx, table: TableDef, asset: str, keys: list[str] | None, data, where, props, columns: dict,
                  audit, evolve: bool = False) -> WriteResult:
    """Write to an audit branch, run `audit(head_snapshot_id, drift_outcome)`, publish if it passes.

    Adds the schema-drift check (columns now vs the previous materialization), records
    every outcome in ops.dq_results, and after a publish drops the audit branches an
    earlier failed run left for this asset and partition.
    """
    previous = previous_value(ctx, table, asset, COLUMNS)
    drift_spec = ev.index(specs_for(asset))["schema_drift"]
    drift = ev.schema_drift(drift_spec, json.loads(previous) if previous else None, columns)
    props = {**props, COLUMNS: json.dumps(columns, sort_keys=True)}
    branch = branch_name(asset, keys, ctx.run_id)
    write = ctx.store.audited_replace(
        table.identifier, data, where, props, branch, lambda t, head: [drift, *audit(head)], evolve=evolve
    )
    if write.published:
        ctx.store.remove_branches(table.identifier, branch.rsplit("-", 1)[0] + "-")
    record_results(ctx, asset, keys, write)
    return write


def record_results(ctx: StepContext, asset: str, keys: list[str] | None, write: WriteResult) -> None:
    """Append one ops.dq_results row per check evaluation of this write.

    A check evaluated per day in a range run has a row per day; a check of the whole
    write (schema drift, the marts) is recorded against the range, as `first..last`.
    """
    ctx.ensure(DQ_RESULTS)
    now = dt.datetime.now(dt.timezone.utc)
    rows = [
        {
            "asset": asset, "partition": o.partition or (label(keys) if keys else None), "check_name": o.name, "passed": o.passed,
            "severity": o.severity, "observed": None if o.observed is None else float(o.observed),
            "threshold": None if o.spec.threshold is None else float(o.spec.threshold),
            "message": o.message, "published": write.published, "branch": write.branch,
            "snapshot_id": write.snapshot_id, "run_id": ctx.run_id, "evaluated_at": now,
        }
        for o in write.audit
    ]
    if rows:
        ctx.store.load(DQ_RESULTS.identifier, fresh=True).append(pa.Table.from_pylist(rows, schema=DQ_RESULTS.schema))


def per_day(keys: list[str], outcomes_of) -> list[CheckOutcome]:
    """`outcomes_of(key)` for every day of the write, each outcome tagged with its day."""
    return [replace(o, partition=key) for key in keys for o in outcomes_of(key)]


def counts_by_day(engine: Engine, counts, names: dict[str, str], keys: list[str]) -> dict[str, dict[str, int]]:
    """Counts with one row per ingest date (a DataFrame, or its rows in Arrow) -> {day: {name: count}};
    zeros for a day with no rows."""
    by_day = {k: dict.fromkeys(names.values(), 0) for k in keys}
    for row in (counts if isinstance(counts, pa.Table) else engine.to_arrow(counts)).to_pylist():
        day = row.pop(INGEST_DATE).isoformat()
        by_day[day] = {names[k]: int(v or 0) for k, v in row.items()}
    return by_day


def total_counts(by_day: dict[str, dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in by_day.values():
        for name, n in counts.items():
            total[name] = total.get(name, 0) + n
    return total
