"""Transforms: functions from data to data, with no Dagster and no storage inside."""


def on_duckdb(F) -> bool:
    """`F`, a transform's `functions` module, is sqlframe's (DuckDB), not PySpark's: for the few
    expressions the two engines' regular expressions or functions need written differently."""
    return F.__name__.startswith("sqlframe")
