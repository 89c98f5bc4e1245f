"""`lakehouse query`: DuckDB SQL over the Iceberg tables, named as in the catalog.

Each table becomes a DuckDB view over the Parquet data files of its current
snapshot. Our writes are copy-on-write (no delete files) and never rename
columns, so the data files alone are the table; columns added later read as null
in older files (`union_by_name`).
"""

from __future__ import annotations

import duckdb
from pyiceberg.expressions import AlwaysTrue

from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.settings import Settings
from lakehouse.summary import format_table


class QueryError(Exception):
    pass


def _copy(conn: duckdb.DuckDBPyConnection, name: str, arrow) -> None:
    """A DuckDB table holding `arrow` (a view over a Python object would not outlive this call)."""
    conn.register("_lakehouse_copy", arrow)
    try:
        conn.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _lakehouse_copy")
    finally:
        conn.unregister("_lakehouse_copy")


def register_tables(conn: duckdb.DuckDBPyConnection, settings: Settings, branch: str | None = None) -> list[str]:
    """A view per table; with `branch`, tables that have that branch show its head instead of main."""
    store = TableStore(catalog_from_settings(settings))
    names = []
    for (namespace,) in store.catalog.list_namespaces():
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{namespace}"')
        for _, name in store.catalog.list_tables(namespace):
            identifier, view = f"{namespace}.{name}", f'"{namespace}"."{name}"'
            refs = store.load(identifier).metadata.refs
            if branch and branch in refs:
                _copy(conn, view, store.read(identifier, snapshot_id=refs[branch].snapshot_id))
                names.append(f"{identifier}@{branch}")
                continue
            paths = store.data_files(identifier, AlwaysTrue())
            if paths and all(p.startswith("file://") for p in paths):
                # CREATE VIEW cannot take prepared parameters: quote the paths as SQL literals.
                listed = ", ".join("'" + p[len("file://"):].replace("'", "''") + "'" for p in paths)
                conn.execute(
                    f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM read_parquet([{listed}], union_by_name=true)"
                )
            else:  # empty, delete files, or object storage: read through PyIceberg
                _copy(conn, view, store.read(identifier))
            names.append(identifier)
    return names


def run_query(settings: Settings, sql: str, branch: str | None = None) -> str:
    conn = duckdb.connect()
    try:
        names = register_tables(conn, settings, branch)
        if branch and not any(n.endswith("@" + branch) for n in names):
            raise QueryError(f"no table has a branch named {branch!r}")
        try:
            result = conn.execute(sql)
        except duckdb.Error as exc:
            raise QueryError(str(exc).splitlines()[0]) from None
        if result.description is None:
            return "ok"
        headers = [d[0] for d in result.description]
        return format_table(headers, [list(r) for r in result.fetchall()])
    finally:
        conn.close()
