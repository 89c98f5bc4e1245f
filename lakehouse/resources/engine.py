"""The compute engine behind the PySpark DataFrame API: DuckDB (via sqlframe) or Spark.

Transforms only see a session and DataFrames; this module owns moving Arrow data
in and out, which is the one place the two engines differ.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
import threading
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse.settings import ENGINES

_sessions: dict[str, object] = {}
_lock = threading.Lock()
_view_ids = itertools.count()
_spill: str | None = None

SPARK_CONFIG = {
    "spark.master": "local[2]",
    "spark.app.name": "lakehouse",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "4",
    "spark.ui.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.driver.memory": "4g",
}


def get_session(engine: str):
    """One session per process and engine: a cold Spark session costs seconds."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    with _lock:
        if engine not in _sessions:
            _sessions[engine] = _new_session(engine)
        return _sessions[engine]


def _new_session(engine: str):
    if engine == "duckdb":
        import duckdb
        from sqlframe.duckdb import DuckDBSession

        conn = duckdb.connect()
        conn.execute("SET TimeZone = 'UTC'")
        # duckdb prints "nanobind: leaked ..." at exit for open connections; close ours.
        atexit.register(conn.close)
        return DuckDBSession(conn=conn)
    from dagster_pyspark.resources import spark_session_from_config

    session = spark_session_from_config(SPARK_CONFIG)
    atexit.register(session.stop)
    return session


def from_arrow(session, table: pa.Table):
    """An Arrow table as a DataFrame of `session` (either engine)."""
    if _is_sqlframe(session):
        # A bare registered Arrow object is not resolvable by session.table; a view is.
        name = f"_lh_arrow_{next(_view_ids)}"
        conn = session._conn
        conn.register(f"{name}_src", table)
        conn.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM "{name}_src"')
        return session.table(name)
    # Through Parquet rather than pandas: no size limit, exact decimals and UTC timestamps.
    # Spark reads lazily, so the file lives until the process ends.
    path = Path(_spill_dir()) / f"arrow_{next(_view_ids)}.parquet"
    pq.write_table(table, path)
    return session.read.parquet(str(path))


def _spill_dir() -> str:
    global _spill
    if _spill is None:
        _spill = tempfile.mkdtemp(prefix="lakehouse-spark-")
        atexit.register(shutil.rmtree, _spill, True)
    return _spill


def to_arrow(df) -> pa.Table:
    """A DataFrame's rows as Arrow, keeping UTC timestamps and decimals."""
    if hasattr(df, "toArrow") and _is_sqlframe(df.session):
        return df.toArrow()
    batches = df._collect_as_arrow()
    return pa.Table.from_batches(batches) if batches else _empty_from_spark(df)


def _is_sqlframe(session) -> bool:
    return type(session).__module__.startswith("sqlframe")


def _empty_from_spark(df) -> pa.Table:
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(df.schema).empty_table()


class EngineResource(dg.ConfigurableResource):
    """Which engine runs the PySpark-API transforms: `duckdb` (default) or `spark`."""

    name: str = "duckdb"

    def session(self):
        return get_session(self.name)

    def from_arrow(self, table: pa.Table):
        return from_arrow(self.session(), table)

    def to_arrow(self, df) -> pa.Table:
        return to_arrow(df)
