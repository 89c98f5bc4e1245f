"""`lakehouse query`: DuckDB SQL over the Iceberg tables, named as in the catalog.

Each table becomes a DuckDB view over the Parquet data files of its current
snapshot; or, for time travel, the table as of a snapshot id (the one a
materialization's metadata shows) or a point in time (`--as-of`). Our writes are copy-on-write (no delete files) and never rename
columns, so the data files alone are the table; columns added later read as null
in older files (`union_by_name`).
"""

from __future__ import annotations

import datetime as dt

import duckdb
from pyiceberg.expressions import AlwaysTrue

from lakehouse.iceberg import TableStore, catalog_from_settings, select_by_name
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


def _as_of_snapshot(table, as_of: int | dt.datetime | None) -> int | None:
    """The snapshot of `table` to read: the given id if it is this table's, the last one by the time."""
    if as_of is None:
        return None
    if isinstance(as_of, int):
        return as_of if any(s.snapshot_id == as_of for s in table.metadata.snapshots) else None
    millis = as_of.timestamp() * 1000
    earlier = [e for e in table.metadata.snapshot_log if e.timestamp_ms <= millis]
    return earlier[-1].snapshot_id if earlier else -1  # -1: the table had no data yet


def register_tables(conn: duckdb.DuckDBPyConnection, settings: Settings, branch: str | None = None,
                    as_of: int | dt.datetime | None = None) -> list[str]:
    """A view per table; with `branch`, tables that have that branch show its head instead of main.

    With `as_of` a snapshot id, the table that has it shows that snapshot (the others,
    main); with a time, every table shows the snapshot that was current then.
    """
    store = TableStore(catalog_from_settings(settings))
    names = []
    for (namespace,) in store.catalog.list_namespaces():
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{namespace}"')
        for _, name in store.catalog.list_tables(namespace):
            identifier, view = f"{namespace}.{name}", f'"{namespace}"."{name}"'
            table = store.load(identifier)
            refs = table.metadata.refs
            if branch and branch in refs:
                _copy(conn, view, store.read(identifier, snapshot_id=refs[branch].snapshot_id))
                names.append(f"{identifier}@{branch}")
                continue
            snapshot = _as_of_snapshot(table, as_of)
            if snapshot is not None:
                data = store.read(identifier, snapshot_id=snapshot) if snapshot != -1 else \
                    table.schema().as_arrow().empty_table()
                _copy(conn, view, data)
                names.append(f"{identifier}@{snapshot}")
                continue
            paths = store.data_files(identifier, AlwaysTrue())
            if paths and all(p.startswith("file://") for p in paths):
                # CREATE VIEW cannot take prepared parameters: quote the paths as SQL literals.
                listed = ", ".join("'" + p[len("file://"):].replace("'", "''") + "'" for p in paths)
                files = f"read_parquet([{listed}], union_by_name=true)"
                found = [row[0] for row in conn.execute(f"DESCRIBE SELECT * FROM {files}").fetchall()]
                # a column no file holds yet (added since) is null, as PyIceberg reads it
                columns = ", ".join(select_by_name(f.name, found, absent="NULL") for f in table.schema().fields)
                conn.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT {columns} FROM {files}")
            else:  # empty, delete files, or object storage: read through PyIceberg
                _copy(conn, view, store.read(identifier))
            names.append(identifier)
    return names


def parse_as_of(value: str) -> int | dt.datetime:
    """A snapshot id (digits) or an ISO time (UTC unless it says otherwise)."""
    if value.strip().lstrip("-").isdigit():
        return int(value)
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise QueryError(f"--as-of {value!r} is neither a snapshot id nor a time; use e.g. 4187392011230592121 "
                         "or 2026-03-02T10:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def run_query(settings: Settings, sql: str, branch: str | None = None, as_of: str | None = None) -> str:
    moment = parse_as_of(as_of) if as_of else None
    conn = duckdb.connect()
    try:
        names = register_tables(conn, settings, branch, moment)
        if branch and not any(n.endswith("@" + branch) for n in names):
            raise QueryError(f"no table has a branch named {branch!r}")
        if isinstance(moment, int) and not any(n.endswith(f"@{moment}") for n in names):
            raise QueryError(f"no table has a snapshot {moment}; the snapshot ids are in each materialization's "
                             "metadata (snapshot_id) and in `lakehouse status`")
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
