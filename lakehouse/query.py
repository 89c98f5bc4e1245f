"""`lakehouse query`: DuckDB SQL over the Iceberg tables, named as in the catalog.

Each table becomes a DuckDB view over the Parquet data files of its current
snapshot. Our writes are copy-on-write (no delete files) and never rename
columns, so the data files alone are the table; columns added later read as null
in older files (`union_by_name`).
"""

from __future__ import annotations

import duckdb

from lakehouse.iceberg import catalog_from_settings
from lakehouse.settings import Settings
from lakehouse.summary import format_table


class QueryError(Exception):
    pass


def register_tables(conn: duckdb.DuckDBPyConnection, settings: Settings, branch: str | None = None) -> list[str]:
    """A view per table; with `branch`, tables that have that branch show its head instead of main."""
    catalog = catalog_from_settings(settings)
    names = []
    for (namespace,) in catalog.list_namespaces():
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{namespace}"')
        for _, name in catalog.list_tables(namespace):
            table = catalog.load_table(f"{namespace}.{name}")
            view = f'"{namespace}"."{name}"'
            if branch and branch in table.metadata.refs:
                arrow = table.scan(snapshot_id=table.metadata.refs[branch].snapshot_id).to_arrow()  # noqa: F841
                conn.execute(f"CREATE OR REPLACE TABLE {view} AS SELECT * FROM arrow")
                names.append(f"{namespace}.{name}@{branch}")
                continue
            tasks = list(table.scan().plan_files())
            if any(t.delete_files for t in tasks) or not all(
                t.file.file_path.startswith("file://") for t in tasks
            ):
                arrow = table.scan().to_arrow()  # noqa: F841  (read by DuckDB by name)
                conn.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM arrow")
            elif tasks:
                paths = [t.file.file_path[len("file://"):] for t in tasks]
                # CREATE VIEW cannot take prepared parameters: quote the paths as SQL literals.
                listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
                conn.execute(
                    f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM read_parquet([{listed}], union_by_name=true)"
                )
            else:
                empty = table.schema().as_arrow().empty_table()  # noqa: F841
                conn.execute(f"CREATE OR REPLACE TABLE {view} AS SELECT * FROM empty")
            names.append(f"{namespace}.{name}")
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
