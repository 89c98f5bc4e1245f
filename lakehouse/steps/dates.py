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


def tracked_dates(ctx: StepContext, table: TableDef, where, props, new: dict[str, list]) -> tuple[dict, dict]:
    """Snapshot properties recording, for each date column of `new`, the dates a write touches: those
    of the rows it replaces (`where`) and the new ones; and those dates, sorted, by column.

    `new[column]` lists the new dates: sets of them, and (DataFrame, date column) pairs whose
    dates the engine finds, with the old ones, in one query.
    """
    dates: dict[str, set[str]] = {column: set() for column in new}
    parts = {}
    for column, sources in new.items():
        for i, source in enumerate(sources):
            if isinstance(source, tuple):
                parts[(column, i)] = source
            else:
                dates[column] |= set(source)
    if ctx.engine is None:
        if parts:  # a DataFrame's dates need the engine that made it: never recorded as none
            raise ValueError(f"tracked_dates of {table.identifier}: DataFrames given to a step without an engine")
        for column in new:
            dates[column] |= _dates(ctx, table, where, column)
    else:
        from lakehouse.steps.measures import dates_of
        from lakehouse.steps.reads import frame

        old = frame(ctx, table, where, tuple(new))
        parts.update({(column, "old"): (old, column) for column in new})
        for (column, _), found in dates_of(ctx.engine, parts).items():
            dates[column] |= found
    affected = {column: sorted(found) for column, found in dates.items()}
    return {**props, **{AFFECTED + column: ",".join(days) for column, days in affected.items()}}, affected


def _dates(ctx: StepContext, table: TableDef, where, column: str) -> set[str]:
    """The dates of `column` among the rows `where` matches, found by the engine (only the dates
    reach this process), or by PyIceberg for a step without an engine."""
    if ctx.engine is None:
        return dates_in(ctx.read(table, where, (column,)), column)
    from lakehouse.steps.measures import distinct_dates
    from lakehouse.steps.reads import frame

    return distinct_dates(ctx.engine, frame(ctx, table, where, (column,)), column)
