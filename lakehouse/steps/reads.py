"""Filtered reads of the lakehouse tables as engine DataFrames: partition filters pushed down to Iceberg."""

from __future__ import annotations

import pyarrow as pa
from pyiceberg.expressions import (AlwaysTrue, And, BooleanExpression, EqualTo, GreaterThanOrEqual, LessThanOrEqual,
                                   NotNull)

from lakehouse.arrowtools import conform
from lakehouse.filters import quoted, single_view, sql_condition
from lakehouse.resources.engine import Engine
from lakehouse.resources.spark_iceberg import SparkBranchWriter, SparkCatalogError
from lakehouse.steps.context import StepContext
from lakehouse.tables import TableDef
from lakehouse.transforms.silver import api


_MEMBER = "_lakehouse_member"  # the view's value a row matched, in `frame`'s join


def within(column: str, keys: list[str]) -> BooleanExpression:
    """Rows whose date `column` is one of the contiguous days `keys`."""
    return EqualTo(column, keys[0]) if len(keys) == 1 else And(
        GreaterThanOrEqual(column, keys[0]), LessThanOrEqual(column, keys[-1]))


def keyed(column: str, members: BooleanExpression) -> BooleanExpression:
    """Rows whose `column` is among some values (`members`, from `Engine.members`), for a delete that
    may also match on other columns.

    PyIceberg's delete keeps every row with a null in a column its filter names without an
    IsNull/NotNull test on it (so `Or(day, In(key))` would keep a keyless row of that day):
    the NotNull makes such rows fall to the other branch.
    """
    return And(NotNull(column), members)


def frame(ctx: StepContext, table: TableDef, where: BooleanExpression = AlwaysTrue(), columns=("*",),
          snapshot_id: int | None = None):
    """Rows of `table` matching `where` (main, or `snapshot_id`), as a DataFrame the engine reads itself.

    No copy through Python, and on a cluster no pass through the driver: Spark reads the
    table through its Iceberg catalog, its executors reading the files from S3; DuckDB reads
    the data files PyIceberg's scan plans. The filter is applied again because a file may hold
    other rows. The filter is SQL text (`lakehouse.filters`), the same on both engines; on
    Spark it must have one (every filter the steps make has). On DuckDB, files it cannot
    read (S3), delete files, or a filter with no SQL form: PyIceberg reads them, with the
    table's S3 endpoint and credentials.
    """
    ctx.ensure(table)
    types = {f.name: f.type for f in table.schema}
    if ctx.engine.reads_tables:  # Spark's own Iceberg reader: planning pushes the filter down
        df = ctx.engine.table(table.identifier, snapshot_id)
        view = single_view(where)
        if view is None:
            return _select(df.filter(sql_condition(where, types, "spark")), columns)
        # Spark pushes no part of a filter holding a subquery down to the scan (the whole table
        # would be read): the rows `where` keeps at most are filtered first, pushed down, then
        # joined with the view's values to keep the rest (`single_view`).
        F = api(df)[0]
        wide = df.filter(sql_condition(where, types, "spark", view_as=True))
        key_type = df.schema[view.column].dataType  # compared as the key's type: "1" and "01" are one int
        values = ctx.engine.session.table(quoted(view.view, "spark")).select(
            F.col(quoted(view.values, "spark")).cast(key_type).alias(_MEMBER)).distinct()
        joined = wide.join(values, wide[quoted(view.column, "spark")] == values[_MEMBER], "left")
        kept = joined.filter(f"{sql_condition(where, types, 'spark', view_as=False)} OR {_MEMBER} IS NOT NULL")
        return _select(kept.drop(_MEMBER), columns)
    loaded = ctx.store.load(table.identifier)
    paths = ctx.store.data_files(table.identifier, where, snapshot_id, loaded)
    if paths == []:
        return ctx.engine.read_parquet([], table.schema, columns=columns)
    if paths and ctx.engine.can_read(paths):
        try:
            condition = sql_condition(where, types, ctx.engine.dialect)
        except (ValueError, KeyError):  # a predicate or column not translated: PyIceberg reads it below
            pass
        else:
            return ctx.engine.read_parquet(paths, table.schema, condition, columns,
                                           keep={f.name for f in loaded.schema().fields})
    return ctx.engine.from_arrow(ctx.store.read(table.identifier, where, tuple(columns), snapshot_id))


def _select(df, columns):
    return df if tuple(columns) == ("*",) else df.select(*columns)


def output(ctx: StepContext, df, schema: pa.Schema):
    """A step's rows for `audited_write` and `replace_where`: on Spark, written by Spark's own
    Iceberg writer (the executors write the files); on DuckDB, Arrow chunks PyIceberg commits."""
    if ctx.engine.dialect == "spark":
        if not ctx.engine.reads_tables:
            raise SparkCatalogError("the spark engine writes the tables through its Iceberg catalog: give the "
                                    "Engine the lakehouse catalog (Engine('spark', store.catalog))")
        return SparkBranchWriter(ctx.store, df, schema)
    return arrow_chunks(ctx.engine, df, schema)


def arrow_chunks(engine: Engine, df, schema: pa.Schema):
    def produce():
        for chunk in engine.to_chunks(df):
            yield conform(chunk, schema)
    return produce


def schema_columns(table: TableDef) -> dict[str, str]:
    return {f.name: str(f.type) for f in table.schema}
