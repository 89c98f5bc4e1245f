"""The compute engine behind the PySpark DataFrame API: DuckDB (via sqlframe) or Spark.

Transforms only see DataFrames; this module owns what differs between engines:
moving Arrow data in and out, and evaluating a DataFrame once for reuse.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import re
import shutil
import sys
import threading
from pathlib import Path
from typing import Optional

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse import checked_code, collector, plan_cache, scratch
from lakehouse.iceberg import CATALOG_NAME, physical_name, select_by_name
from lakehouse.memo import remembered
from lakehouse.plans import PLANS_KEPT, Plan, plan_of, render
from lakehouse.resources.spark_iceberg import EXTENSIONS, SparkCatalogError, catalog_conf, local_jars, runtime_jar
from lakehouse.settings import DUCKDB_MEMORY_LIMIT, ENGINES, memory_bytes, plan_cache_dir, spark_codegen, spark_java_options

_sessions: dict[str, object] = {}
_catalogs: dict[int, dict[str, str]] = {}  # the Iceberg catalog each session (by id) was given
_jar_problems: dict[str, Exception] = {}  # why a local Spark session has no Iceberg runtime
_lock = threading.Lock()
_names = itertools.count()
_spill: str | None = None
_memory_limits: dict[int, str] = {}  # the memory limit set on each DuckDB connection (by id)
log = logging.getLogger(__name__)
BATCH_ROWS = 1_000_000
_PLAIN = re.compile(r"[a-z_][a-z0-9_]*")  # a column name no dialect quotes or folds

SPARK_CONFIG = {
    "spark.master": "local[2]",
    "spark.app.name": "lakehouse",
    "spark.sql.session.timeZone": "UTC",
    # Unparseable dates must give null (then quarantine), not a SparkUpgradeException.
    "spark.sql.legacy.timeParserPolicy": "CORRECTED",
    "spark.sql.ansi.enabled": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    # Spark writes every query's physical plan into the event its UI and history server read,
    # whether or not a UI runs; "formatted" (the default) numbers and describes every operator,
    # which small days pay at every query (measured in README, Engines). Locally there is no UI
    # to read it; a cluster keeps its own choice.
    "spark.sql.ui.explainMode": "simple",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.driver.memory": "4g",
}
# While a step of ours runs on a session started here (not under spark-submit), unless
# LAKEHOUSE_SPARK_CODEGEN: Spark interprets each query's plan and expressions instead of generating
# Java and compiling it (Janino) per query, which on small days costs more than the query itself.
# factoryMode is Spark's own switch between generated and interpreted expressions
# (SQLConf.CODEGEN_FACTORY_MODE, internal); both give the same rows. Only for the step: Spark 3.5's
# interpreted decoder of its catalog's case classes fails (`spark.catalog.listTables()`: "argument
# type mismatch"), which our steps never call but code sharing the session may.
NO_CODEGEN = {"spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN"}
# Left to the cluster when spark-submit launched us (Glue, EMR): it knows its master and sizes, and
# its UI and history server are there to read.
CLUSTER_DECIDES = ("spark.master", "spark.driver.memory", "spark.sql.shuffle.partitions", "spark.ui.enabled",
                   "spark.sql.ui.explainMode")


def launched_by_spark_submit() -> bool:
    """True when spark-submit (Glue, EMR, or PYSPARK_SUBMIT_ARGS naming a master) started this Python."""
    return bool(os.environ.get("PYSPARK_GATEWAY_PORT")) or "--master" in os.environ.get("PYSPARK_SUBMIT_ARGS", "")


def spark_config() -> dict[str, str]:
    """The Spark session's settings (here and for dagster-pyspark's PySparkResource, so both make
    the same one session): ours, less what the cluster decides under spark-submit; started
    here, also Iceberg's runtime, the SQLite catalog's driver (a cluster brings its own) and
    LAKEHOUSE_SPARK_JAVA_OPTIONS."""
    if launched_by_spark_submit():
        return {k: v for k, v in SPARK_CONFIG.items() if k not in CLUSTER_DECIDES}
    # Python workers (mapInArrow) must run this interpreter, which has pyarrow; PySpark reads
    # only the environment for it and otherwise takes the first python3 on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf = dict(SPARK_CONFIG)
    if java_options := spark_java_options():  # LAKEHOUSE_SPARK_JAVA_OPTIONS, for the JVM this starts
        conf["spark.driver.extraJavaOptions"] = java_options
    try:
        conf.update({"spark.jars": ",".join(local_jars()), "spark.sql.extensions": EXTENSIONS})
    except SparkCatalogError as exc:  # Spark still runs; reading the tables through it says why not
        _jar_problems["spark"] = exc
    return conf


def get_session(engine: str, catalog: dict[str, str] | None = None, session=None):
    """One session per process and engine: a cold Spark session costs seconds.

    `catalog`: the Spark settings of the Iceberg catalog the session reads the tables
    through (`spark_iceberg.catalog_conf`). A Spark session serves one catalog, as its
    JDBC catalog is named like PyIceberg's; asked for another (tests do), it starts anew.
    `session`: the Spark session a Dagster run's PySparkResource made (`spark_config()` too);
    it is never stopped here, and one already given another catalog is refused.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    with _lock:
        if session is not None:
            _sessions[engine] = session
        current = _sessions.get(engine)
        bound = _catalogs.get(id(current)) if current is not None else None
        if engine == "spark" and catalog and bound not in (None, catalog):
            if session is not None:
                raise SparkCatalogError("this Spark session already reads another lakehouse catalog "
                                        f"({bound.get(f'spark.sql.catalog.{CATALOG_NAME}.uri') or bound}); a "
                                        "process serves one catalog")
            _sessions.pop(engine).stop()  # ours (tests open several catalogs): start anew
            _catalogs.pop(id(current))
        if engine not in _sessions:
            _sessions[engine] = _new_session(engine)
        current = _sessions[engine]
        if engine == "spark":
            from lakehouse.resources import jvm_view  # py4j: only where Spark runs

            jvm_view.keep_names(current)
        if engine == "spark" and catalog and id(current) not in _catalogs:
            if engine in _jar_problems:
                raise _jar_problems[engine]
            for key, value in catalog.items():  # a catalog's settings may be set until its first use
                current.conf.set(key, value)
            _check_catalog(current)
            _catalogs[id(current)] = catalog
        return current


def _check_catalog(session) -> None:
    """Open the catalog once, so a cluster without Iceberg's runtime or its SQL extensions fails
    here, before any work, with the fix."""
    if EXTENSIONS not in (session.conf.get("spark.sql.extensions", "") or ""):
        raise SparkCatalogError(
            f"Spark's session lacks Iceberg's SQL extensions ({EXTENSIONS}), which the writes to audit branches "
            f"need: on Glue add the job argument --conf spark.sql.extensions={EXTENSIONS} (lakehouse deploy sets "
            "it), on EMR the same --conf on spark-submit")
    try:
        session.sql(f"SHOW NAMESPACES IN {CATALOG_NAME}").collect()
    except Exception as exc:  # py4j wraps the JVM's ClassNotFoundException and catalog errors
        if "ClassNotFoundException" in str(exc) or "Cannot find catalog plugin class" in str(exc):
            said = next((line.strip() for line in str(exc).splitlines() if "ClassNotFound" in line
                         or "Cannot find catalog" in line), "")
            raise SparkCatalogError(
                "Spark has no Iceberg runtime on its classpath: on Glue set the job argument --datalake-formats "
                "iceberg, on EMR the iceberg-defaults classification (iceberg.enabled: true), elsewhere "
                f"--jars {runtime_jar().name} (from the `local` extra); the Glue catalog and an s3:// warehouse "
                "also need Iceberg's AWS bundle (iceberg-aws-bundle), which clusters have and this project does not "
                f"install: locally, keep the warehouse on disk for the spark engine (Spark said: {said[:300]})") from None
        raise


def _new_session(engine: str):
    collector.tune()  # a process that makes a session plans steps
    if engine == "duckdb":
        import duckdb
        from sqlframe.duckdb import DuckDBSession

        from lakehouse import sqlframe_patches
        from lakehouse.transforms import casing

        sqlframe_patches.apply()

        # A database file of this process's own, not an in-memory one. Measured: a 10M-row day
        # under a 400 MB limit fails in memory (Out of Memory, materializing the classified rows)
        # and passes with a file, no slower; in memory a 50M-row day failed under the 2 GB limit.
        conn = duckdb.connect(os.path.join(_spill_dir(), "engine.duckdb"))
        conn.execute("SET TimeZone = 'UTC'")
        _limit_memory(conn, DUCKDB_MEMORY_LIMIT)
        conn.execute(f"SET temp_directory = '{_spill_dir()}/duckdb'")
        conn.execute("SET preserve_insertion_order = false")
        casing.define_duckdb_macros(conn)  # silver's upper and lower, as on Spark
        # duckdb prints "nanobind: leaked ..." at exit for open connections; close ours.
        at_exit(conn.close, priority=2)
        return DuckDBSession(conn=conn)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in spark_config().items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    atexit.register(session.stop)  # a run's Spark session is dagster-pyspark's, which stops it itself
    return session


def at_exit(function, *args, priority: int) -> None:
    """Call `function(*args)` when this process ends, higher priorities first.

    Through multiprocessing's finalizers, not `atexit`: a run worker forked from the code
    server's forkserver (lakehouse/run_workers.py) ends with `os._exit`, which skips `atexit`,
    while multiprocessing runs its finalizers at the end of any process it started, and
    through `atexit` in others. A fork does not inherit its parent's (they are cleared).
    """
    from multiprocessing import util

    util.Finalize(None, function, args=args, exitpriority=priority)


def _limit_memory(conn, limit: str) -> None:
    """Bounded memory: DuckDB spills to disk beyond `limit` instead of growing the process.

    Measured on a 10M-row day (bench/pipeline.py): the process peaked at 3.55 GiB under
    2GB and 2.75 GiB under 1GB, silver taking 84 s and 95 s; small days never reach either.
    """
    if _memory_limits.get(id(conn)) != limit:
        memory_bytes("the DuckDB memory limit", limit)  # checked here too: it goes into SQL
        conn.execute(f"SET memory_limit = '{limit.strip()}'")
        _memory_limits[id(conn)] = limit


# What a step's end could not undo, one message per kind (the log has the names and errors): recorded
# with the fallbacks (`checked_code`), as slower or holding disk space, never wrong.
LEFTOVERS = {
    "duckdb": "a step's temporary DuckDB views or tables could not all be dropped (the log says which and why): "
              "they keep their space in the process's DuckDB file until the process ends; results are the same",
    "spark": "a step's temporary Spark views could not all be dropped (the log says which and why): a live session "
             "keeps them until the process ends, one that died took them along; results are the same",
    "setting": "a Spark setting a step changed could not be put back (the log says which and why): a live session "
               "goes on with the step's setting (queries interpreted: slower on large data), one that died has "
               "nothing to put back; results are the same",
}
_plans: dict = {}  # (id(session), key and input columns) -> (session, plans.Plan): `Engine.planned`
_input_types: dict = {}  # (id(session), DuckDB type) -> (session, the type as sqlframe's input): `_input_type`


def _input_type(session, kind: str) -> str:
    """A DuckDB column type as sqlframe converts it for its catalog, converted once per session:
    sqlglot parses and writes the type each time, and a step tells sqlframe of a few dozen tables
    of the same few types (a parse per column: about 1% of a tiny day's CPU, py-spy)."""
    from sqlframe.base.util import normalize_string  # not for a code location that only loads definitions

    return remembered(_input_types, (id(session), kind), session, lambda: normalize_string(
        kind, from_dialect="output", to_dialect="input", is_datatype=True))


def _is_sqlframe(obj) -> bool:
    """True for sqlframe sessions and DataFrames (the DuckDB engine)."""
    return type(obj).__module__.startswith("sqlframe")


def _spill_dir() -> str:
    global _spill
    if _spill is None:
        _spill = scratch.new_folder("engine")
        at_exit(shutil.rmtree, _spill, True, priority=1)  # after the connection to the database file in it
    return _spill


def to_arrow(df) -> pa.Table:
    """A DataFrame's rows as Arrow, keeping UTC timestamps and decimals."""
    if _is_sqlframe(df):
        return df.toArrow()
    batches = df._collect_as_arrow()
    return pa.Table.from_batches(batches) if batches else _empty(df)


def _empty(df) -> pa.Table:
    """A Spark DataFrame's schema as an empty Arrow table."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(df.schema).empty_table()


class Engine:
    """A session plus Arrow in/out and one-time evaluation, for one step.

    Use as a context manager: the temporary views and tables it made are dropped at
    the end, so a long-lived process (a run of many steps) does not accumulate them.
    """

    def __init__(self, name: str, catalog=None, session=None, memory_limit: str | None = None):
        """`catalog`: the PyIceberg catalog of the tables; Spark then reads them through its own
        Iceberg runtime over the same catalog (`table`). `memory_limit`: DuckDB's, for the
        process's one DuckDB session (LAKEHOUSE_DUCKDB_MEMORY); None leaves it as it is
        (DUCKDB_MEMORY_LIMIT for a new session)."""
        self.name = name
        conf = catalog_conf(catalog.properties) if catalog is not None and name == "spark" else None
        self.session = get_session(name, conf, session)
        self._duckdb = _is_sqlframe(self.session)
        if self._duckdb:
            # A result of an earlier step's execute() left unread would make DuckDB 2 refuse this step's
            # every query on the process's one connection; a no-op otherwise (and DuckDB 1, which
            # pyproject allows, has no abort: there a new query replaced an unread result).
            abort = getattr(self.session._conn, "abort", None)
            if abort is not None:
                abort()
            if memory_limit is not None:
                _limit_memory(self.session._conn, memory_limit)
        self.reads_tables = conf is not None  # Spark's Iceberg catalog is there: `table` works
        self._views: list[str] = []
        self._tables: list[str] = []
        self._bare: dict[int, tuple] = {}  # id(frame) -> (frame, its view's name, its columns): `_duckdb_table`'s
        self._made: list | None = None  # while `planned` records: the (kind, SELECT, name) `_named` ran
        # Session settings this step changed, and their values before. Steps run one at a time in a
        # process (the in-process executor), so Engines on one session nest and each restores its own;
        # two threads' overlapping steps could leave the other's settings behind.
        self._restore: dict[str, str | None] = {}
        if not self._duckdb and not launched_by_spark_submit() and not spark_codegen():
            try:
                for key, value in NO_CODEGEN.items():
                    self._restore[key] = self.session.conf.get(key, None)
                    self.session.conf.set(key, value)
            except Exception:
                self._put_back()  # __exit__ never runs for an Engine that failed to open
                raise

    def from_arrow(self, table: pa.Table):
        """An Arrow table as a DataFrame of this engine."""
        name = f"_lh_{next(_names)}"
        if self._duckdb:
            # A bare registered Arrow object is not resolvable by session.table; a view is.
            conn = self.session._conn
            conn.register(f"{name}_arrow", table)
            conn.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM "{name}_arrow"')
            self._views.append(name)
            return self._duckdb_table(name)
        # Through Parquet rather than pandas: no size limit, exact decimals and UTC
        # timestamps. Spark reads lazily, so the file lives until the process ends.
        path = Path(_spill_dir()) / f"arrow{name}.parquet"  # Spark skips files named _*
        pq.write_table(table, path)
        return self.session.read.parquet(str(path))

    def to_arrow(self, df) -> pa.Table:
        """`df`'s rows as Arrow, here: for aggregates and a few example rows (on Spark, through the driver)."""
        return to_arrow(df)

    def to_chunks(self, df, rows: int = BATCH_ROWS):
        """The rows of `df` (DuckDB) as Arrow tables of at most about `rows` rows each, produced lazily,
        never the whole DataFrame at once.

        Not on Spark: there a table's rows stay on the executors (Spark's own Iceberg writer,
        `mapInArrow`); bringing them to the driver is what this project no longer does (it
        ran out of the driver's memory at 5M rows, README, bench/spark_scale.py).
        """
        if not self._duckdb:
            raise TypeError("the spark engine does not bring a table's rows to the driver: write it with Spark's "
                            "own Iceberg writer (lakehouse.steps.reads.output)")
        # A relation, not a cursor: DuckDB copies the rows once more for a cursor's Arrow output.
        reader = self.session._conn.sql(df.sql(dialect="duckdb", pretty=False, optimize=False)).to_arrow_reader(rows)
        try:
            for batch in reader:
                yield pa.Table.from_batches([batch])
        finally:
            # Left open (a write that failed midway), the reader holds the process's one connection:
            # DuckDB 2 refuses every later query on it, so every later step of the process would fail.
            reader.close()

    def map_arrow(self, df, function, schema: pa.Schema):
        """`df` with `function` (Arrow table -> Arrow table of `schema`) applied to its rows batch by batch,
        where the rows are: in Spark's executors (`mapInArrow`), so on a cluster not on the driver;
        on DuckDB in this process. `function` must pickle (a module-level function, a partial)."""
        if self._duckdb:
            done = [function(chunk) for chunk in self.to_chunks(df)]
            return self.from_arrow(pa.concat_tables(done) if done else schema.empty_table())
        from pyspark.sql.pandas.types import from_arrow_schema

        def apply(batches):
            for batch in batches:
                yield from function(pa.Table.from_batches([batch])).to_batches()
        return df.mapInArrow(apply, from_arrow_schema(schema))

    def can_read(self, paths: list[str]) -> bool:
        """Whether this engine reads these data files itself (else PyIceberg reads them for it).

        DuckDB here reads local files only (its S3 support is an extension from the
        internet). Spark reads any scheme its Hadoop configuration has a filesystem for:
        `s3://` on Glue and EMR, not on a laptop.
        """
        schemes = {p.split("://", 1)[0] if "://" in p else "file" for p in paths}
        if self._duckdb:
            return schemes <= {"file"}
        jvm, conf = self.session._jvm, self.session._jsc.hadoopConfiguration()
        for scheme in schemes - {"file"}:
            try:
                jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass(scheme, conf)
            except Exception:  # py4j wraps Hadoop's UnsupportedFileSystemException
                return False
        return True

    def table(self, identifier: str, snapshot_id: int | None = None):
        """A lakehouse table through Spark's Iceberg catalog (at `snapshot_id`, else main's head):
        filters on the result are pushed down to Iceberg's scan planning, and the executors
        read the files."""
        reader = self.session.read
        if snapshot_id is not None:
            reader = reader.option("snapshot-id", str(snapshot_id))
        return reader.table(f"{CATALOG_NAME}.{identifier}")

    @property
    def dialect(self) -> str:
        """The SQL dialect of this engine's conditions (`lakehouse.filters`)."""
        return "duckdb" if self._duckdb else "spark"

    def read_parquet(self, paths: list[str], schema: pa.Schema, condition: str = "true", columns=("*",),
                     keep=None):
        """A DataFrame over Parquet data files (an Iceberg scan's files), or empty with `schema`.

        `condition`: SQL in this engine's dialect that the rows must meet (a file may hold
        others); `columns`: those to return, else every column of the files that is in `keep`
        (the table's, as readers may add columns from the paths, such as hive-style folders).
        """
        if not paths:
            empty = self.from_arrow(schema.empty_table())
            return empty if tuple(columns) == ("*",) else empty.select(*columns)
        local = [p[len("file://"):] if p.startswith("file://") else p for p in paths]
        if self._duckdb:
            # One read_parquet over the list: sqlframe's reader unions the files one by one,
            # and its plan copying makes that quadratic (a 30-day range took 40 s to plan).
            # By name, so files written before a column was added read it as null. The filter
            # and the columns are in the view's SQL: no sqlframe operation to plan.
            conn, name = self.session._conn, f"_lh_{next(_names)}"
            files = ", ".join("'" + p.replace("'", "''") + "'" for p in local)
            conn.execute(f'CREATE OR REPLACE VIEW "{name}_files" AS SELECT * FROM '
                         f"read_parquet([{files}], union_by_name = true, hive_partitioning = false)")
            found = [row[0] for row in conn.execute(f'DESCRIBE "{name}_files"').fetchall()]
            if tuple(columns) == ("*",):
                # a file's name for a column (its own, or PyIceberg's `_1st` for `1st`) -> the column
                logical = {name: c for c in keep for name in (physical_name(c), c)} if keep is not None else \
                    {c: c for c in found}
                columns = list(dict.fromkeys(logical[c] for c in found if c in logical))
            listed = ", ".join(select_by_name(c, found) for c in columns)
            conn.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT {listed} FROM "{name}_files" WHERE {condition}')
            self._views += [name, f"{name}_files"]
            return self._duckdb_table(name)
        df = self.session.read.parquet(*local)
        if tuple(columns) == ("*",):
            columns = [c for c in df.columns if keep is None or c in keep]
        return df.filter(condition).select(*columns)

    def members(self, values, values_column: str, *columns: str) -> list:
        """For each of `columns`, a filter for rows whose value there is one of the (non-null) values
        of `values`'s `values_column`.

        On Spark a semi-join on a temporary view (`filters.InView`): the values stay on the
        executors, however many, and Spark's reads and row-level DELETE take it. On DuckDB
        an `In` list, as PyIceberg, which writes that engine's tables, evaluates its delete
        filter in this process.
        """
        from pyiceberg.expressions import In

        from lakehouse.filters import InView

        if self._duckdb:
            found = sorted(v for v in self.to_arrow(values)[values_column].to_pylist() if v is not None)
            return [In(column, found) for column in columns]
        if not self.reads_tables:  # PyIceberg would get the view, which it cannot evaluate
            raise SparkCatalogError("a filter on a view needs Spark's Iceberg catalog: give the Engine the "
                                    "lakehouse catalog (Engine('spark', store.catalog))")
        name = f"_lh_{next(_names)}"
        # Without nulls, as the DuckDB list: under a NOT, a null among the values would make IN unknown.
        values.filter(values[values_column].isNotNull()).createOrReplaceTempView(name)
        self._views.append(name)
        return [InView(column, name, values_column) for column in columns]

    def materialize(self, df):
        """Evaluate `df` once; later queries on the result reuse it (cache() is a no-op in sqlframe)."""
        if self._duckdb:
            # A plain table: sqlframe's catalog does not see DuckDB's temp schema. The
            # database is this process's own file (spilled beyond the memory limit), and __exit__ drops it.
            return self._named(df, "TABLE", self._tables)
        return df.localCheckpoint(eager=True)

    def _named(self, df, kind: str, made: list[str]):
        """`df` as a DuckDB table or view of ours (`kind`), listed in `made` for __exit__ to drop."""
        sql = df.sql(dialect="duckdb", pretty=False, optimize=False)
        name = self._create(kind, sql, made)
        if self._made is not None:  # `planned` is recording a transform's statements
            self._made.append((kind, sql, name))
        return self._duckdb_table(name)

    def _create(self, kind: str, sql: str, made: list[str]) -> str:
        """A new view or table of ours (`kind`) of the query `sql`, listed in `made`; its name."""
        name = f"_lh_{next(_names)}"
        self.session._conn.execute(f'CREATE {kind} "{name}" AS {sql}')
        made.append(name)
        return name

    def planned(self, key: tuple, frames: dict, transform, result: str = "view"):
        """`transform(frames)`, a DataFrame, as `result` says: "view" (a frame over a view), "table"
        (as `materialize` makes it) or "arrow" (its rows, as `to_arrow` gives them). On DuckDB its
        SQL is built once per process for the same `key` and the same columns (names and types, in
        order) of each of `frames` (slot name -> DataFrame or None), and afterwards filled in with
        the new frames' views (`lakehouse.plans`), and kept on disk for later processes of the same
        code (`lakehouse.plan_cache`): each Dagster run is a new process.

        `transform` must be pure: its SQL depends only on `key` (which must name everything else it
        uses, such as a source's contract) and on its frames' columns, never on their rows (nothing
        collected inside); it reaches tables only through `frames` and this Engine's `cut` and
        `materialize`, which it may call. A transform whose SQL names any other view of ours is
        planned each time, recorded as a slower path. On Spark, which plans a query itself, the
        transform runs each time.
        """
        if not self._duckdb:
            df = transform(frames)
            return self.materialize(df) if result == "table" else self.to_arrow(df) if result == "arrow" else df
        if self._made is not None:
            raise RuntimeError("Engine.planned does not nest: a planned transform's own steps are recorded with it")
        names, given, shape = [], {}, [key]
        for slot, df in frames.items():
            if df is None:
                given[slot], columns, same = None, None, None
            else:  # behind a view of its own: the view's name fills the slot
                given[slot], name, columns = self._as_view(df)
                same = names.index(name) if name in names else None  # a frame given twice: the same view twice
                names.append(name)
            shape.append((slot, columns, same))
        shape = tuple(shape)
        found = _plans.get((id(self.session), shape))
        if found is not None and found[0] is self.session:
            return self._replay(found[1], names, result)
        cache = plan_cache_dir()
        kept = plan_cache.read(cache, shape)  # another process's plan of the same code (lakehouse/plan_cache.py)
        if kept is not None:
            self._remember(shape, kept)
            return self._replay(kept, names, result)
        self._made = []
        try:
            sql = transform(given).sql(dialect="duckdb", pretty=False, optimize=False)
            plan = plan_of(names, self._made, sql)
        finally:
            self._made = None
        if plan is None:
            checked_code.warn_once(log, "a transform's SQL reads a view it was not given: it is planned again at "
                                        "each call instead of once per process (slower); results are the same")
        else:
            self._remember(shape, plan)
            plan_cache.write(cache, shape, plan)
        return self._result(sql, result)

    def _remember(self, shape: tuple, plan: Plan) -> None:
        if len(_plans) >= PLANS_KEPT:
            _plans.clear()
        _plans[(id(self.session), shape)] = (self.session, plan)

    def _as_view(self, df) -> tuple:
        """(a frame over a view of `df`'s rows, the view's name, its columns): `df` itself where it is
        one of this Engine's frames over a view or table, else a new view of it."""
        bare = self._bare.get(id(df))
        if bare is None or bare[0] is not df:
            df = self._named(df, "VIEW", self._views)
            bare = self._bare[id(df)]
        return bare

    def _replay(self, plan: Plan, names: list[str], result: str):
        """A recorded transform's statements again, on the views `names`: its intermediates, then its result."""
        names = list(names)
        for kind, shape in plan.made:
            names.append(self._create(kind, render(shape, names), self._tables if kind == "TABLE" else self._views))
        return self._result(render(plan.result, names), result)

    def _result(self, sql: str, result: str):
        """The query `sql` as a view, a table (and a frame over it), or its rows in Arrow."""
        if result == "arrow":  # as sqlframe's toArrow on DuckDB 2: a relation's Arrow table
            return self.session._conn.sql(sql).to_arrow_table()
        kind, made = {"view": ("VIEW", self._views), "table": ("TABLE", self._tables)}[result]
        return self._duckdb_table(self._create(kind, sql, made))

    def _duckdb_table(self, name: str):
        """sqlframe's DataFrame over a DuckDB table or view of ours, its columns told to sqlframe's
        catalog from one DESCRIBE. Left to itself, sqlframe builds and plans an
        information_schema query per table: about a tenth of a small step's time, as a step
        makes a few dozen of these. The types are converted as sqlframe converts them."""
        described = self.session._conn.execute(f'DESCRIBE "{name}"').fetchall()
        if all(_PLAIN.fullmatch(column) for column, *_ in described):  # else sqlframe's own quoting rules
            try:
                columns = {column: _input_type(self.session, kind) for column, kind, *_ in described}
            except Exception:  # a type sqlglot cannot parse: sqlframe's own lookup decides, as before
                pass
            else:
                self.session.catalog.add_table(name, columns)
        frame = self.session.table(name)
        self._bare[id(frame)] = (frame, name, tuple((column, kind) for column, kind, *_ in described))
        return frame

    def cut(self, df, reused: bool = False):
        """`df` behind a DuckDB view, to keep sqlframe's plans shallow; Spark plans deep ones fine.

        sqlframe copies a DataFrame's whole expression tree on every operation, so a
        transform of a few dozen operations spends seconds planning; a view in between
        resets the depth. A view, not a table: DuckDB still plans the whole chain as one
        query when it is materialized, instead of writing every intermediate's rows (all
        its columns) to the database file. Measured (bench/pipeline.py, 10M rows): the
        orders transform 88.6 s with tables, 60.1 s with views. A view is evaluated each
        time a query names it, so a cut result must be deterministic (the windows over it
        order by a unique key); `reused`: the next query reads it more than once, so DuckDB
        evaluates it once, into a table. Spark's optimizer sees through the plan: there `cut`
        changes nothing.
        """
        if not self._duckdb:
            return df
        return self.materialize(df) if reused else self._named(df, "VIEW", self._views)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        """Drop every temporary view and table of the step, each on its own, and put back the Spark
        session's settings the step changed. A failure is not raised: the step's writes are committed
        by then, and its own error (a session that died takes its views along) is the one to see. It
        is logged with the names and errors, and recorded under one message per kind (`LEFTOVERS`),
        which `lakehouse status` and `lakehouse run` show with the fallbacks."""
        if self._duckdb:
            conn = self.session._conn
            drops = [lambda name=name: conn.execute(f'DROP TABLE IF EXISTS "{name}"') for name in self._tables]
            drops += [lambda name=name: (conn.execute(f'DROP VIEW IF EXISTS "{name}"'),
                                         conn.unregister(f"{name}_arrow")) for name in self._views]
            if self._tables:
                # A dropped table's blocks in the database file are reused only after a checkpoint,
                # which DuckDB takes by itself only for a large write-ahead log (CREATE TABLE AS
                # writes to the file, not the log): without one the file kept every step's tables.
                drops.append(lambda: conn.execute("CHECKPOINT"))
        else:
            drops = [lambda name=name: self.session.catalog.dropTempView(name) for name in self._views]
        failed = []
        for drop in drops:
            try:
                drop()
            except Exception as error:
                failed.append(str(error).splitlines()[0][:200])
        if failed:
            log.warning("%d clean-up(s) of a step's temporary views and tables failed: %s", len(failed), "; ".join(failed))
            checked_code.warn_once(log, LEFTOVERS["duckdb" if self._duckdb else "spark"])
        self._views.clear()
        self._tables.clear()
        self._put_back()

    def _put_back(self) -> None:
        """The session's settings this step changed, as they were (unset: Spark's default)."""
        for key, value in self._restore.items():
            try:
                if value is None:
                    self.session.conf.unset(key)
                else:
                    self.session.conf.set(key, value)
            except Exception as error:
                log.warning("could not put back the Spark session's %s after a step: %s", key,
                            str(error).splitlines()[0][:200])
                checked_code.warn_once(log, LEFTOVERS["setting"])
        self._restore.clear()


class EngineResource(dg.ConfigurableResource):
    """Which engine runs the PySpark-API transforms: `duckdb` (default) or `spark`, whose session
    is dagster-pyspark's PySparkResource (given with the spark engine only: it starts Spark)."""

    name: str = "duckdb"
    duckdb_memory_limit: Optional[str] = None  # LAKEHOUSE_DUCKDB_MEMORY; None: as the process has it
    # dagster_pyspark.PySparkResource; typed by its base so a DuckDB code location need not import it
    pyspark: Optional[dg.ConfigurableResource] = None

    def engine(self, catalog=None) -> Engine:
        """`catalog`: the tables' PyIceberg catalog, which the spark engine reads them through."""
        session = self.pyspark.spark_session if self.pyspark is not None and self.name == "spark" else None
        return Engine(self.name, catalog, session, self.duckdb_memory_limit)
