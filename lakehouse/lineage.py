"""Column lineage of the silver and gold tables, derived from the transforms themselves.

Each transform is built as its step builds it, over empty tables in an in-memory
DuckDB through sqlframe, and sqlglot's lineage walks the SQL it compiles to back to
the input tables' columns: nothing is written per column, so a changed transform or
contract changes the lineage with it.

Deriving takes seconds (sqlframe copies expression trees on every operation), too
slow for every load of the code location. The result is stored beside this module in
`column_lineage.json` with a digest of the code it came from; a load whose code has
a different digest derives it again and says so. `lakehouse lineage --write`
refreshes the file, and a test fails while it is stale. Until then (declarations kept
elsewhere, LAKEHOUSE_SOURCES_DIR, have no stored file at all) what was derived is kept
under LAKEHOUSE_HOME by its digest, so the daemon, the code server and every run of a
`lakehouse run` do not each derive it again: seven seconds a process on this machine.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

from lakehouse import records
from lakehouse.contracts import CONTRACTS
from lakehouse.contracts.declared import SOURCES_DIR

STORED = Path(__file__).with_name("column_lineage.json")
# The code the lineage depends on; any change to it means the stored lineage may be stale.
_SOURCES = ("lineage.py", "sqlframe_patches.py", "tables.py", "readers.py", "arrowtools.py", "contracts/*.py",
            "transforms/*.py")  # and the declarations

# table identifier -> output column -> [(input table identifier, input column)]
Lineage = dict[str, dict[str, list[tuple[str, str]]]]


def code_digest() -> str:
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(p for pattern in _SOURCES for p in root.glob(pattern)):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    for path in sorted(SOURCES_DIR.glob("*/defs.yaml")):  # wherever LAKEHOUSE_SOURCES_DIR keeps them
        digest.update(f"defs/sources/{path.parent.name}/defs.yaml".encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _row_keys(identifier: str) -> tuple[str, ...]:
    """Columns that identify a row of an input table (bronze, silver, or the order fact, one
    row per order line): what a count of its rows depends on."""
    name = identifier.split(".")[1]
    source = "orders" if name == "fact_orders" else name
    return CONTRACTS[source].keys if source in CONTRACTS else ()


def _plans(session) -> dict[str, object]:
    """Every silver and gold table's DataFrame, built from its inputs as the steps build it."""
    from lakehouse.tables import DIMENSION_SOURCES, dimension_table
    from lakehouse.transforms import gold
    from lakehouse.transforms.bronze import INGEST_DATE
    from lakehouse.transforms.silver import ROW_HASH, ROW_NUMBER, SNAPSHOT, classify, latest_versions, silver_rows

    table = session.table
    plans = {}
    for source, contract in CONTRACTS.items():
        previous = None
        if contract.history == SNAPSHOT:
            previous = latest_versions(
                table(f"silver.{source}").select(*contract.keys, ROW_HASH, INGEST_DATE, ROW_NUMBER), contract.keys)
        lookups = {lk.source: table(f"silver.{lk.source}").select(lk.key, *lk.bring, INGEST_DATE, ROW_NUMBER)
                   for lk in contract.lookups}
        plans[f"silver.{source}"] = silver_rows(classify(table(f"bronze.{source}"), contract, previous, lookups),
                                                contract)
    plans["gold.fact_orders"] = gold.fact_orders(table("silver.orders"))
    plans["gold.mart_daily_sales"] = gold.daily_sales(table("gold.fact_orders").drop(INGEST_DATE))
    plans["gold.mart_customer_activity"] = gold.customer_activity(table("silver.events"), table("gold.fact_orders"))
    for source in DIMENSION_SOURCES:
        plans[dimension_table(source).identifier] = gold.dimension(table(f"silver.{source}"), source)
    return plans


def _input_tables():
    from lakehouse.tables import FACT_ORDERS, bronze_table, silver_table

    return [*(bronze_table(s) for s in CONTRACTS), *(silver_table(s) for s in CONTRACTS), FACT_ORDERS]


def derive() -> Lineage:
    """Lineage of every silver and gold table, derived in a process of its own.

    sqlframe's DuckDB session is one per process: deriving here would take over the
    connection of the engine's session (and the catalog it knows) in a process that runs steps.
    """
    done = subprocess.run([sys.executable, "-m", "lakehouse.lineage"], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"deriving the column lineage failed:\n{done.stderr[-3000:]}")
    return _decode(json.loads(done.stdout))


def _derive_here() -> Lineage:
    """Lineage of every silver and gold table, from its transform's compiled SQL."""
    import duckdb
    import pyarrow as pa
    from sqlframe.duckdb import DuckDBSession
    from sqlglot.lineage import lineage

    from lakehouse import sqlframe_patches
    from lakehouse.transforms import casing

    sqlframe_patches.apply()
    conn = duckdb.connect()
    casing.define_duckdb_macros(conn)
    schema: dict[str, dict[str, dict[str, str]]] = {}
    for t in _input_tables():
        namespace, name = t.identifier.split(".")
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{namespace}"')
        conn.register("empty", pa.Table.from_pylist([], schema=t.schema))
        conn.execute(f'CREATE TABLE "{namespace}"."{name}" AS SELECT * FROM empty')
        conn.unregister("empty")
        schema.setdefault(namespace, {})[name] = {f.name: "VARCHAR" for f in t.schema}
    session = DuckDBSession(conn=conn)
    try:
        out: Lineage = {}
        for identifier, df in _plans(session).items():
            nodes = lineage(None, df.sql(dialect="duckdb", optimize=False), schema=schema, dialect="duckdb")
            out[identifier] = {column: _deps(node) for column, node in nodes.items()}
        return out
    finally:
        conn.close()


def _deps(node) -> list[tuple[str, str]]:
    """The input columns one output column is computed from.

    A column computed from no input column (a count of rows) depends on the rows of the
    tables it counts: their key columns.
    """
    from sqlglot import exp

    found: set[tuple[str, str]] = set()
    counted: set[str] = set()
    for leaf in node.walk():
        if leaf.downstream:
            continue
        if isinstance(leaf.source, exp.Table) and leaf.source.db:
            found.add((f"{leaf.source.db}.{leaf.source.name}", leaf.name.split(".")[-1].strip('"')))
        elif isinstance(leaf.source, exp.Query) and leaf.expression.find(exp.Count):
            counted.update(_base_tables(leaf.source, node.source))
    if not found:
        found = {(t, key) for t in counted for key in _row_keys(t)}
    return sorted(found)


def _base_tables(query, root) -> set[str]:
    """The stored tables a query reads, through the CTEs of the whole statement `root`."""
    from sqlglot import exp

    ctes = {cte.alias: cte.this for cte in root.find_all(exp.CTE)}
    tables: set[str] = set()
    pending, seen = [query], set()
    while pending:
        current = pending.pop()
        from_ = current.args.get("from_") or current.args.get("from")
        for t in (from_.find_all(exp.Table) if from_ else ()):
            if t.db:
                tables.add(f"{t.db}.{t.name}")
            elif t.name in ctes and t.name not in seen:
                seen.add(t.name)
                pending.append(ctes[t.name])
    return tables


def _encode(lineage: Lineage) -> dict:
    return {t: {c: [f"{table}.{column}" for table, column in deps] for c, deps in cols.items()}
            for t, cols in sorted(lineage.items())}


def _decode(tables: dict) -> Lineage:
    return {t: {c: [tuple(dep.rsplit(".", 1)) for dep in deps] for c, deps in cols.items()}
            for t, cols in tables.items()}


def write(path: Path = STORED) -> Lineage:
    derived = derive()
    path.write_text(json.dumps({"digest": code_digest(), "tables": _encode(derived)}, indent=1) + "\n")
    return derived


def read(path: Path = STORED) -> tuple[str | None, Lineage]:
    """(digest, lineage) as stored; (None, {}) when there is no stored file."""
    if not path.exists():
        return None, {}
    document = json.loads(path.read_text())
    return document["digest"], _decode(document["tables"])


def cached(digest: str) -> Path:
    """Where the lineage derived for the code of `digest` is kept: one file per digest and per version
    of the libraries that compile and walk the SQL (no test compares this copy with the code)."""
    from importlib.metadata import version

    from lakehouse.plan_cache import LIBRARIES
    from lakehouse.settings import home_dir

    libraries = "-".join(version(name) for name in LIBRARIES)
    return home_dir() / "cache" / f"column_lineage-{digest}-{libraries}.json"


@functools.lru_cache(maxsize=2)
def current(path: Path = STORED) -> Lineage:
    """The lineage of the code as it is: stored when up to date, else derived (or kept from an earlier
    derivation of the same code), with a warning."""
    digest, stored = read(path)
    now = code_digest()
    if digest == now:
        return stored
    keep = cached(now)
    try:
        kept_digest, derived = read(keep)
    except Exception:  # missing or damaged (any shape): derived again and rewritten below
        kept_digest, derived = None, {}
    if kept_digest == now:
        how = f"taken from {keep}, derived earlier for this code"
    else:
        started = time.perf_counter()
        derived = derive()
        how = f"derived at load ({time.perf_counter() - started:.1f}s)"
        try:
            keep.parent.mkdir(parents=True, exist_ok=True)
            records.write_whole(keep, json.dumps({"digest": now, "tables": _encode(derived)}) + "\n")
            how += f" and kept in {keep}"
        except OSError as exc:
            how += f" (not kept: {exc})"
    warnings.warn(
        f"{path.name} is {'out of date with the transforms' if digest else 'missing'}, so column lineage "
        f"was {how}; run `lakehouse lineage --write` to store it.",
        stacklevel=2,
    )
    return derived


def of(identifier: str) -> dict[str, list[tuple[str, str]]]:
    """Output column -> input (table, column) pairs of one table; empty for tables nothing derives."""
    return current().get(identifier, {})


if __name__ == "__main__":  # what derive() runs
    print(json.dumps(_encode(_derive_here())))
