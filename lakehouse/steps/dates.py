"""Date bookkeeping: the dates a write touched, recorded in its snapshot properties, so the marts
recompute exactly those."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import In

from lakehouse.partitions import covered
from lakehouse.steps.context import AFFECTED, StepContext
from lakehouse.tables import TableDef
from lakehouse.transforms.bronze import INGEST_DATE


def dates_in(table: pa.Table, column: str) -> set[str]:
    if table.num_rows == 0:
        return set()
    return {d.isoformat() for d in pc.unique(table[column]).to_pylist() if d is not None}


def affected_dates(ctx: StepContext, table: TableDef, keys: list[str], column: str) -> list[str]:
    """The dates the latest published writes of the partitions `keys` to `table` touched.

    Walks the history newest first until every partition is accounted for; a range
    write accounts for all the days it covered at once. Falls back to the dates a
    partition holds now when its snapshot has been expired (dates a rewrite moved rows
    away from are then no longer known).
    """
    ctx.ensure(table)
    name, waiting, dates = AFFECTED + column, set(keys), set()
    for snapshot in ctx.store.main_history(table.identifier):
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        span = covered(summary)
        if span is None or name not in summary:
            continue
        hit = {k for k in waiting if span[0] <= k <= span[1]}
        if hit:
            dates |= {d for d in summary[name].split(",") if d}
            waiting -= hit
        if not waiting:
            break
    if waiting:
        dates |= _dates(ctx, table, In(INGEST_DATE, sorted(waiting)), column)  # not contiguous
    return sorted(dates)


def tracked_dates(ctx: StepContext, table: TableDef, where, props, column: str, new_dates) -> tuple[dict, list[str]]:
    """Snapshot properties recording the dates a write touches (old and new); and those dates."""
    old = _dates(ctx, table, where, column)
    affected = sorted(old | set(new_dates))
    return {**props, AFFECTED + column: ",".join(affected)}, affected


def _dates(ctx: StepContext, table: TableDef, where, column: str) -> set[str]:
    """The dates of `column` among the rows `where` matches, found by the engine (only the dates
    reach this process), or by PyIceberg for a step without an engine."""
    if ctx.engine is None:
        return dates_in(ctx.read(table, where, (column,)), column)
    from lakehouse.steps.measures import distinct_dates
    from lakehouse.steps.reads import frame

    return distinct_dates(ctx.engine, frame(ctx, table, where, (column,)), column)
