"""The PyIceberg predicates the steps filter and delete with, as SQL text for Spark or DuckDB.

Text, not DataFrame operations: Spark's DELETE takes a condition, and on the DuckDB engine a
filter in a view's SQL costs nothing to plan, where each sqlframe operation copies its plan.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
from pydantic import ConfigDict
from pyiceberg.expressions import (AlwaysFalse, AlwaysTrue, And, BooleanExpression, EqualTo, GreaterThan,
                                   GreaterThanOrEqual, In, IsNull, LessThan, LessThanOrEqual, Not, NotEqualTo, NotIn,
                                   NotNull, Or)

DIALECTS = ("spark", "duckdb")
_COMPARISONS = {EqualTo: "=", NotEqualTo: "<>", LessThan: "<", LessThanOrEqual: "<=", GreaterThan: ">",
                GreaterThanOrEqual: ">="}


class InView(BooleanExpression):
    """Rows whose `column` is among the values of `view`'s column `values`, a temporary view of the
    engine's session: a semi-join, so the values stay where the engine holds them (on Spark, the
    executors), however many, where an `In` list brings every one to this process and into the
    plan's text. SQL only: PyIceberg cannot evaluate it (`uses_views` says when a filter has one)."""

    model_config = ConfigDict(frozen=True)
    column: str
    view: str
    values: str

    def __init__(self, column: str, view: str, values: str) -> None:
        super().__init__(column=column, view=view, values=values)

    def __invert__(self) -> BooleanExpression:
        return Not(self)


def single_view(where: BooleanExpression) -> InView | None:
    """The one `InView` of `where` when it has exactly one and only under And/Or (no Not): then
    `where` = `where[view: false] OR (view AND where[view: true])` (`sql_condition`'s `view_as`),
    whose two sides have no subquery, so an engine can push them down to the table's files."""
    found: list[InView] = []

    def walk(node) -> bool:
        if isinstance(node, InView):
            found.append(node)
            return True
        if isinstance(node, (And, Or)):
            return walk(node.left) and walk(node.right)
        return not (isinstance(node, Not) and uses_views(node.child))

    return found[0] if walk(where) and len(set(found)) == 1 else None


def uses_views(where: BooleanExpression) -> bool:
    """Whether `where` reads a view (`InView`): only an engine's SQL can evaluate it."""
    if isinstance(where, InView):
        return True
    if isinstance(where, (And, Or)):
        return uses_views(where.left) or uses_views(where.right)
    return isinstance(where, Not) and uses_views(where.child)


def quoted(name: str, dialect: str) -> str:
    """An identifier, quoted: backticks in Spark SQL, double quotes in DuckDB's."""
    mark = "`" if dialect == "spark" else '"'
    return mark + name.replace(mark, mark + mark) + mark


def sql_literal(value, type_: pa.DataType, dialect: str) -> str:
    """A PyIceberg literal's value as SQL, typed like its column (exact for decimals)."""
    if pa.types.is_date(type_):  # ISO text, checked: nothing else goes inside the quotes
        return f"DATE '{dt.date.fromisoformat(value) if isinstance(value, str) else _date(value)}'"
    if isinstance(value, str):
        if dialect == "spark":  # Spark's default escaping (spark.sql.parser.escapedStringLiterals=false)
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return "'" + value.replace("'", "''") + "'"  # standard SQL: DuckDB takes backslashes as they are
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal) and value.is_finite():
        # Spark reads 1.5 as a double without the BD suffix; DuckDB reads it as a decimal.
        return f"{value:f}BD" if dialect == "spark" else f"{value:f}"  # plain digits, never 1E+2
    raise ValueError(f"no SQL literal for {value!r} of {type_}")


def _date(days: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=days)).isoformat()


def sql_condition(where, types: dict[str, pa.DataType], dialect: str, view_as: bool | None = None) -> str:
    """`where` as a SQL condition in `dialect`; ValueError for a predicate not translated here.

    `view_as`: an `InView` becomes that constant instead of its subquery (see `single_view`)."""
    if dialect not in DIALECTS:
        raise ValueError(f"no SQL dialect {dialect!r}; one of {', '.join(DIALECTS)}")
    if isinstance(where, AlwaysTrue):
        return "true"
    if isinstance(where, AlwaysFalse):
        return "false"
    if isinstance(where, (And, Or)):
        op = "AND" if isinstance(where, And) else "OR"
        return (f"({sql_condition(where.left, types, dialect, view_as)} {op} "
                f"{sql_condition(where.right, types, dialect, view_as)})")
    if isinstance(where, Not):
        return f"(NOT {sql_condition(where.child, types, dialect, view_as)})"
    if isinstance(where, InView) and view_as is not None:
        return "true" if view_as else "false"
    if isinstance(where, InView):
        return (f"{quoted(where.column, dialect)} IN "
                f"(SELECT {quoted(where.values, dialect)} FROM {quoted(where.view, dialect)})")
    name = where.term.name
    column = quoted(name, dialect)
    if type(where) in _COMPARISONS:
        return f"{column} {_COMPARISONS[type(where)]} {sql_literal(where.literal.value, types[name], dialect)}"
    if isinstance(where, (NotNull, IsNull)):
        return f"{column} IS {'NOT ' if isinstance(where, NotNull) else ''}NULL"
    if isinstance(where, (In, NotIn)):
        values = ", ".join(sql_literal(v.value, types[name], dialect)
                           for v in sorted(where.literals, key=lambda v: v.value))
        return f"{column} {'NOT ' if isinstance(where, NotIn) else ''}IN ({values})"
    raise ValueError(f"no SQL for the filter {where!r}")
