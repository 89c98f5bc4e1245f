"""Filtered reads of the lakehouse tables as engine DataFrames: partition filters pushed down to Iceberg."""

from __future__ import annotations

import pyarrow as pa
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    LessThan,
    LessThanOrEqual,
    Not,
    NotNull,
    Or,
)

from lakehouse.arrowtools import conform
from lakehouse.filters import sql_condition
from lakehouse.resources.engine import Engine
from lakehouse.resources.spark_iceberg import SparkBranchWriter, SparkCatalogError
from lakehouse.steps.context import StepContext
from lakehouse.tables import TableDef
from lakehouse.transforms.silver import api


def within(column: str, keys: list[str]) -> BooleanExpression:
    """Rows whose date `column` is one of the contiguous days `keys`."""
    return EqualTo(column, keys[0]) if len(keys) == 1 else And(
        GreaterThanOrEqual(column, keys[0]), LessThanOrEqual(column, keys[-1]))


def keyed(column: str, values: list[str]) -> BooleanExpression:
    """Rows whose `column` is one of `values`, for a delete that may also match on other columns.

    PyIceberg's delete keeps every row with a null in a column its filter names without an
    IsNull/NotNull test on it (so `Or(day, In(key))` would keep a keyless row of that day):
    the NotNull makes such rows fall to the other branch.
    """
    return And(NotNull(column), In(column, values))


_COMPARISONS = {EqualTo: "__eq__", LessThan: "__lt__", LessThanOrEqual: "__le__", GreaterThan: "__gt__",
                GreaterThanOrEqual: "__ge__"}


def engine_condition(F, where: BooleanExpression, types: dict[str, pa.DataType]):
    """`where` (the few PyIceberg predicates the steps use) as an engine column; None if unknown."""
    if isinstance(where, AlwaysTrue):
        return F.lit(True)
    if isinstance(where, (And, Or)):
        left, right = engine_condition(F, where.left, types), engine_condition(F, where.right, types)
        if left is None or right is None:
            return None
        return left & right if isinstance(where, And) else left | right
    if isinstance(where, Not):
        inner = engine_condition(F, where.child, types)
        return None if inner is None else ~inner

    def literal(value):
        return F.lit(value).cast("date") if pa.types.is_date(types.get(where.term.name, pa.null())) else F.lit(value)

    if type(where) in _COMPARISONS:
        return getattr(F.col(where.term.name), _COMPARISONS[type(where)])(literal(where.literal.value))
    if isinstance(where, NotNull):
        return F.col(where.term.name).isNotNull()
    if isinstance(where, In):
        return F.col(where.term.name).isin(*[literal(v.value) for v in sorted(where.literals, key=lambda v: v.value)])
    return None


def frame(ctx: StepContext, table: TableDef, where: BooleanExpression = AlwaysTrue(), columns=("*",),
          snapshot_id: int | None = None):
    """Rows of `table` matching `where` (main, or `snapshot_id`), as a DataFrame the engine reads itself.

    No copy through Python, and on a cluster no pass through the driver: Spark reads the
    table through its Iceberg catalog, its executors reading the files from S3; DuckDB reads
    the data files PyIceberg's scan plans. The filter is applied again because a file may hold
    other rows. Files the engine cannot read (S3 from DuckDB, or a laptop's Spark), delete
    files, or a filter we cannot translate: PyIceberg reads them, with the table's S3
    endpoint and credentials.
    """
    ctx.ensure(table)
    if ctx.engine.reads_tables:  # Spark's own Iceberg reader: planning pushes the filter down
        df = ctx.engine.table(table.identifier, snapshot_id)
        condition = engine_condition(api(df)[0], where, {f.name: f.type for f in table.schema})
        if condition is not None:
            return _select(df.filter(condition), columns)
    loaded = ctx.store.load(table.identifier)
    paths = ctx.store.data_files(table.identifier, where, snapshot_id, loaded)
    if paths == []:
        return ctx.engine.read_parquet([], table.schema, columns=columns)
    if paths and ctx.engine.can_read(paths):
        try:
            condition = sql_condition(where, {f.name: f.type for f in table.schema}, ctx.engine.dialect)
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
