"""Two adjustments that let sqlframe 4.10 run on sqlglot's compiled build (sqlglotc).

sqlframe plans every DataFrame operation by copying and generating sqlglot trees: half of
a small day's time (py-spy, README), and sqlglotc, sqlglot's own mypyc build, does it
several times faster. sqlframe does not support it, for two reasons fixed here:

- For DuckDB 2 sqlframe subclasses sqlglot's DuckDB generator, only to write lambdas as
  `lambda x: ...` (DuckDB 2 no longer reads `x -> ...`), and a compiled class cannot be
  instantiated through a Python subclass. The same rule is applied here by a dialect
  (which stays a Python class) before generating.
- The compiled `to_column` checks its declared return type, so `col("*")`, which sqlframe
  (and PySpark's own `select("*", ...)` idiom) relies on, raises where the Python build
  returns a star. Where the compiled check fails, the Python build's answer is given.

Both are the same with the pure-Python sqlglot, so the project behaves alike with or
without sqlglotc; applied when a DuckDB session is made (`resources/engine.py`, `lineage.py`).
"""

from __future__ import annotations

import sqlglot.expressions as exp
from sqlglot.dialects import DuckDB


class ColonLambdaDuckDB(DuckDB):
    """sqlglot's DuckDB dialect, writing every lambda in the `lambda x: ...` form."""

    def generate(self, expression, copy=True, **opts):
        if any(not node.args.get("colon") for node in expression.find_all(exp.Lambda)):
            expression = expression.copy()
            for node in expression.find_all(exp.Lambda):
                node.set("colon", True)
            copy = False
        return super().generate(expression, copy=copy, **opts)


_COMPILED_TO_COLUMN = exp.to_column


def to_column(sql_path, quoted=None, dialect=None, copy=True, **kwargs):
    """sqlglot's `to_column`; a path it parses to a node other than a column (`*`) is returned as parsed."""
    try:
        return _COMPILED_TO_COLUMN(sql_path, quoted=quoted, dialect=dialect, copy=copy, **kwargs)
    except TypeError:
        if not isinstance(sql_path, str):
            raise
        node = exp.maybe_parse(sql_path, dialect=dialect)
        for key, value in kwargs.items():
            node.set(key, value)
        return node


def apply() -> None:
    import sqlframe.duckdb.session as duckdb_session

    duckdb_session._DuckDBV2 = ColonLambdaDuckDB
    exp.to_column = to_column
