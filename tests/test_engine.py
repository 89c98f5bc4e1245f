"""Both engines take Arrow in and give the same Arrow back through the PySpark API."""

import datetime as dt
import re
import decimal

import pyarrow as pa
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from lakehouse.resources import EngineResource

SAMPLE = pa.table(
    {
        "id": ["a", "b", None],
        "amount": pa.array([decimal.Decimal("147.43"), decimal.Decimal("-0.01"), None], pa.decimal128(12, 2)),
        "at": pa.array([dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc), None, None], pa.timestamp("us", tz="UTC")),
        "day": pa.array([dt.date(2026, 3, 1), None, dt.date(2026, 2, 28)]),
        "n": pa.array([1, 2, None], pa.int64()),
    }
)


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_arrow_round_trip_through_a_transform(engine):
    with EngineResource(name=engine).engine() as eng:
        df = eng.from_arrow(SAMPLE)
        kept = eng.materialize(df.filter(df["n"].isNull() | (df["n"] > 0)).select("id", "amount", "at", "day", "n"))
        out = eng.to_arrow(kept)
        assert eng.to_arrow(kept.filter(kept["n"] > 1)).num_rows == 1  # the materialized frame is reusable
    assert out.schema.field("amount").type == pa.decimal128(12, 2)
    assert out.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert sorted(out.to_pylist(), key=lambda r: str(r["id"])) == sorted(SAMPLE.to_pylist(), key=lambda r: str(r["id"]))


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="duckdb, spark"):
        EngineResource(name="pandas").engine()


def test_duckdb_frames_see_the_columns_sqlframe_would_find_itself(monkeypatch):
    """Our tables' columns are given to sqlframe's catalog from DuckDB's DESCRIBE: the same types
    its own information_schema lookup finds, for every table of the lakehouse."""
    from lakehouse.contracts import CONTRACTS
    from lakehouse.tables import DIMENSION_SOURCES, DQ_RESULTS, FACT_ORDERS, INGESTION_LOG, MART_CUSTOMER_ACTIVITY, \
        MART_DAILY_SALES, QUARANTINE, REJECTED_FILES, bronze_table, dimension_table, silver_table

    tables = [DQ_RESULTS, INGESTION_LOG, QUARANTINE, REJECTED_FILES, FACT_ORDERS, MART_CUSTOMER_ACTIVITY,
              MART_DAILY_SALES, *(dimension_table(s) for s in DIMENSION_SOURCES),
              *(f(s) for s in CONTRACTS for f in (bronze_table, silver_table))]
    with EngineResource(name="duckdb").engine() as eng:
        catalog = eng.session.catalog
        for table in tables:
            with monkeypatch.context() as m:  # no information_schema lookup of sqlframe's own
                m.setattr(type(catalog), "listColumns", lambda *a, **k: pytest.fail("sqlframe looked the columns up"))
                name = eng.from_arrow(table.schema.empty_table()).expression.args["from_"].this.name
            reference = {c: t.sql(dialect="spark") for c, t in catalog.get_columns(name).items()}
            given = {c: t.sql(dialect="spark") for c, t in catalog.get_columns_from_schema(name).items()}
            assert given == reference and len(given) == len(table.schema), table.identifier
        # nanosecond timestamps, a type sqlframe renames before sqlglot parses it, still read
        df = eng.materialize(eng.from_arrow(pa.table({"t": pa.array([dt.datetime(2026, 1, 1)], pa.timestamp("ns")),
                                                      "n": [1]})).groupBy("n").count())
        assert eng.to_arrow(df).to_pylist() == [{"n": 1, "count": 1}]


def test_duckdbs_step_tables_live_in_a_database_file_of_the_process_not_in_memory():
    """With an in-memory database a step's materialized tables filled DuckDB's memory limit and a
    50M-row day failed (bench/pipeline.py --memory-rows 50000000, README): they must be able to
    go to disk. The file is the process's own, in its temporary folder; a step's tables are dropped at its end."""
    import tempfile
    from pathlib import Path

    tables = "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
    with EngineResource(name="duckdb").engine() as eng:
        conn = eng.session._conn
        ((path,),) = conn.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
        kept = eng.materialize(eng.from_arrow(SAMPLE))
        made = {t for (t,) in conn.execute(tables).fetchall()}
        assert eng.to_arrow(kept).num_rows == 3 and made
    assert path and Path(path).is_file() and Path(path).parent.parent == Path(tempfile.gettempdir())
    assert not made & {t for (t,) in conn.execute(tables).fetchall()}


def test_duckdbs_database_file_does_not_keep_the_tables_of_ended_steps():
    """A dropped table's space in the file is reused only after a checkpoint: without one, every
    step's materialized tables stayed in the file for the life of the process (a long run's disk)."""
    import os

    sizes = []
    for _ in range(4):
        with EngineResource(name="duckdb").engine() as eng:
            conn = eng.session._conn
            conn.execute("CREATE OR REPLACE VIEW wide AS SELECT i, md5(i::varchar) || md5((i + 1)::varchar) AS s "
                         "FROM range(1000000) t(i)")
            assert eng.to_arrow(eng.materialize(eng._duckdb_table("wide")).groupBy().count()).num_rows == 1
        conn.execute("DROP VIEW wide")
        ((path,),) = conn.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
        sizes.append(os.path.getsize(path))
    assert sizes[-1] <= sizes[0] * 1.25, sizes


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_a_failed_clean_up_or_restore_after_a_step_is_recorded_not_only_logged(engine, tmp_path, monkeypatch, caplog):
    """The step's writes are committed by then, so the failure is not raised; the others go on, and
    it is recorded in the home's fallbacks (shown by `lakehouse status` and `lakehouse run`) under
    one message per kind, as each engine refuses it."""
    from lakehouse import checked_code
    from lakehouse.resources.engine import LEFTOVERS, NO_CODEGEN, get_session
    from lakehouse.summary import render_fallbacks

    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    monkeypatch.setattr(checked_code, "_warned", set())
    if engine == "spark":
        settings_before = {key: get_session("spark").conf.get(key, None) for key in NO_CODEGEN}
    with EngineResource(name=engine).engine() as eng:
        eng.to_arrow(eng.from_arrow(SAMPLE))
        made = list(eng._views)
        if engine == "duckdb":  # first, a name the step listed as its view that is a table: DuckDB refuses DROP VIEW
            eng.session._conn.execute('CREATE TABLE "_lh_not_a_view" AS SELECT 1 AS x')
            eng._views.insert(0, "_lh_not_a_view")
        else:  # first, a setting to put back that Spark refuses to change in a running session
            eng._restore = {"spark.sql.extensions": "org.example.Extensions", **eng._restore}
    if engine == "duckdb":
        views = {name for (name,) in eng.session._conn.execute("SELECT view_name FROM duckdb_views()").fetchall()}
        eng.session._conn.execute('DROP TABLE "_lh_not_a_view"')
        assert made and not set(made) & views, views  # the step's own views were dropped after the failure
        said, detail = LEFTOVERS["duckdb"], "1 clean-up(s) of a step's temporary views and tables failed"
    else:
        assert {key: eng.session.conf.get(key, None) for key in NO_CODEGEN} == settings_before  # put back after it
        said, detail = LEFTOVERS["setting"], "could not put back the Spark session's spark.sql.extensions"
    assert detail in caplog.text  # the names and errors are in the log
    shown = render_fallbacks(tmp_path)
    assert said in shown and "1 kind(s)" in shown, shown


def test_a_write_that_failed_midway_does_not_stop_its_steps_clean_up(tmp_path, monkeypatch):
    """A step whose write failed while it read its rows in chunks leaves a result unread on the
    process's one connection: its end still drops its views and tables, and records nothing."""
    from lakehouse import checked_code
    from lakehouse.summary import render_fallbacks

    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    monkeypatch.setattr(checked_code, "_warned", set())
    with EngineResource(name="duckdb").engine() as eng:
        rows = eng.materialize(eng.from_arrow(pa.table({"n": list(range(50_000))})))
        names = list(eng._views) + list(eng._tables)
        with pytest.raises(RuntimeError, match="the write failed"):
            for _ in eng.to_chunks(rows, rows=1000):
                raise RuntimeError("the write failed")
    left = {name for (name,) in eng.session._conn.execute(
        "SELECT view_name FROM duckdb_views() UNION ALL SELECT table_name FROM duckdb_tables()").fetchall()}
    assert len(names) == 2 and not set(names) & left, left
    assert render_fallbacks(tmp_path, since=0) == ""


def test_sqlframe_plans_with_sqlglots_compiled_build():
    """The install brings sqlglotc (half of a small day is sqlframe's planning, several times faster compiled):
    a missing or pure-Python sqlglot would slow every step without failing one."""
    import sqlglot.expressions.core
    import sqlglot.generator

    assert sqlglot.generator.__file__.endswith(".so") and sqlglot.expressions.core.__file__.endswith(".so")


def test_duckdb_runs_what_sqlframe_could_not_with_compiled_sqlglot():
    """The gaps `lakehouse.sqlframe_patches` fills: lambdas in DuckDB 2's form (sqlframe's own
    generator subclass cannot be made over the compiled one), brackets (its type annotator
    subclass neither), and `select("*", ...)`; through `materialize` and `to_chunks` too."""
    from sqlframe.duckdb import functions as F

    with EngineResource(name="duckdb").engine() as eng:
        maps = eng.from_arrow(pa.table({"m": pa.array([[("a", {"x": 1})], [("b", {"x": 2})]],
                                                      pa.map_(pa.string(), pa.map_(pa.string(), pa.int64()))),
                                        "xs": [[5, 6], [7]]}))
        looked = eng.materialize(maps.select(maps["m"]["a"]["x"].alias("ax"), F.element_at("xs", 1).alias("first"),
                                             maps["xs"].getItem(0).alias("zeroth"),
                                             F.transform("xs", lambda x: x + 1).alias("plus")))
        got = [row for chunk in eng.to_chunks(looked) for row in chunk.to_pylist()]
        assert sorted(got, key=lambda r: r["first"]) == [{"ax": 1, "first": 5, "zeroth": 5, "plus": [6, 7]},
                                                         {"ax": None, "first": 7, "zeroth": 7, "plus": [8]}]
        df = eng.from_arrow(pa.table({"xs": [[1, 2], None, []], "k": ["a", "b", "c"]}))
        out = eng.to_arrow(df.select("*", F.transform(F.col("xs"), lambda x: x * 10).alias("tens"),
                                     F.filter(F.col("xs"), lambda x: x > 1).alias("big"))
                           .filter((F.size(F.filter(F.col("xs"), lambda x: x >= 1)) > 0) | F.col("xs").isNull()))
    assert sorted(out.to_pylist(), key=lambda r: r["k"]) == [
        {"xs": [1, 2], "k": "a", "tens": [10, 20], "big": [2]},
        {"xs": None, "k": "b", "tens": None, "big": None},
    ]


def test_sqlframes_planning_copies_less_and_writes_the_same_sql_as_its_own_code(monkeypatch):
    """`lakehouse.sqlframe_patches` drops copies and lookups whose results sqlframe threw away:
    a query written with them is the one sqlframe's own code writes, and an operation copies
    the query tree fewer times."""
    import sqlglot.expressions as exp
    import sqlframe.base.dataframe as dataframe
    import sqlframe.base.util as util
    from sqlframe.duckdb import functions as F
    from sqlglot.dialects import DuckDB
    from lakehouse import sqlframe_patches

    def query(df, other):
        out = (df.filter(F.col("n") > 0).withColumn("m", F.col("n") * 2).select("k", "m")
               .join(other, on="k", how="left").groupBy("k").agg(F.sum("m").alias("s")).distinct())
        return out.sql(dialect="duckdb", pretty=False, optimize=False)

    copies = []  # the number of nodes of each tree copied
    counting = exp.Expression.__deepcopy__

    def count(self, memo):
        copies.append(sum(1 for _ in self.walk()))
        return counting(self, memo)

    looked_up = []
    lookup = sqlframe_patches._remembered(lambda dialect: looked_up.append(dialect) or "duckdb")
    assert [lookup(1), lookup(2), lookup(3.0)] == ["duckdb"] * 3 and looked_up == [1, 3.0]  # once per class
    with EngineResource(name="duckdb").engine() as eng:
        dialect = eng.session.execution_dialect
        assert util.dialect_to_string(dialect) == util.dialect_to_string.__wrapped__(dialect)
        for each in (DuckDB(), sqlframe_patches.ColonLambdaDuckDB()):  # a fresh lookup: from the loaded dialects
            assert sqlframe_patches._remembered(util.dialect_to_string.__wrapped__)(each) \
                == util.dialect_to_string.__wrapped__(each)
        df = eng.from_arrow(pa.table({"k": ["a", "b"], "n": [1, 2]}))
        other = eng.from_arrow(pa.table({"k": ["a"], "w": [3]}))
        monkeypatch.setattr(exp.Expression, "__deepcopy__", count)
        ours, ours_copies = query(df, other), sum(copies)
        copies.clear()
        create = dataframe.BaseDataFrame._create_cte_from_expression
        monkeypatch.setattr(dataframe.BaseDataFrame, "copy", sqlframe_patches.copy_frame.__wrapped__)
        monkeypatch.setattr(dataframe.BaseDataFrame, "_create_cte_from_expression", create.__wrapped__)
        monkeypatch.setattr(dataframe.BaseDataFrame, "_convert_leaf_to_cte",
                            dataframe.BaseDataFrame._convert_leaf_to_cte.__wrapped__)
        theirs, their_copies = query(df, other), sum(copies)
    assert ours == theirs and "GROUP BY" in ours
    # A step into a CTE changes its own copy of the query in place: nothing it returns is a node of the frame before.
    monkeypatch.undo()
    assert dataframe.BaseDataFrame._convert_leaf_to_cte is sqlframe_patches.leaf_to_cte
    joined = df.join(other, on="k", how="left").hint("broadcast")
    before = joined.sql(dialect="duckdb", pretty=False, optimize=False)
    stepped = joined._convert_leaf_to_cte()
    assert not {id(node) for node in stepped.expression.walk()} & {id(node) for node in joined.expression.walk()}
    stepped.expression.set("limit", exp.Limit(expression=exp.Literal.number(1)))
    assert joined.sql(dialect="duckdb", pretty=False, optimize=False) == before
    assert ours_copies < their_copies * 0.7, (ours_copies, their_copies)  # 2,064 nodes against 3,321


PLAIN = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5))
NESTED = st.recursive(PLAIN, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=3), st.integers(0, 3)), inner, max_size=4),
    st.tuples(inner, inner)), max_leaves=12)


def _containers(x) -> list:
    """Every dict and list inside `x` (itself included)."""
    found, stack = [], [x]
    while stack:
        item = stack.pop()
        if isinstance(item, (dict, list)):
            found.append(item)
        if isinstance(item, dict):
            stack += list(item.values())
        elif isinstance(item, (list, tuple)):
            stack += list(item)
    return found


@given(x=NESTED)
@hsettings(max_examples=300, deadline=None)
def test_the_short_deepcopy_equals_pythons_and_shares_no_container_with_its_input(x):
    import copy

    from lakehouse.sqlframe_patches import flat_deepcopy

    got = flat_deepcopy(x)
    assert got == copy.deepcopy(x) and repr(got) == repr(copy.deepcopy(x))  # repr: same types (1 == 1.0 == True)
    assert not {id(c) for c in _containers(got)} & {id(c) for c in _containers(x)}


def test_sqlglot_nodes_copied_the_short_way_are_the_nodes_pythons_deepcopy_makes(monkeypatch):
    """Positions, comments and types survive the copy, and sqlframe writes the same SQL with it as without."""
    import copy

    import sqlglot
    import sqlglot.expressions.core as core
    from sqlglot.optimizer.annotate_types import annotate_types
    from sqlframe.duckdb import functions as F

    from lakehouse import sqlframe_patches

    sql = ("/* head */ SELECT a.x AS y, CAST(b.z AS DECIMAL(18, 2)) /* money */, SUM(a.q) FROM t AS a "
           "JOIN u AS b ON a.id = b.id WHERE a.q > 3 AND b.s LIKE 'x%' GROUP BY 1, 2")
    parsed = annotate_types(sqlglot.parse_one(sql, dialect="duckdb"))

    def described(tree):
        return [(type(n).__name__, n.meta, n.comments, n.type and n.type.sql(), n.sql("duckdb")) for n in tree.walk()]

    def planned():
        with EngineResource(name="duckdb").engine() as eng:
            df = eng.from_arrow(pa.table({"k": ["a", "b"], "n": [1, 2], "d": [dt.date(2026, 1, 1)] * 2}))
            out = (df.filter(F.col("n") > 0).withColumn("m", F.col("n").cast("decimal(18,2)") * 2)
                   .groupBy("k").agg(F.sum("m").alias("s"), F.max("d").alias("last")).orderBy("k"))
            text, names = out.sql(dialect="duckdb", pretty=False, optimize=False), {}
            # The same SQL but for the input's name (one per process) and the CTE names hashed from it.
            text = re.sub(r'"(t[0-9a-f]+|_lh_\d+)"', lambda m: names.setdefault(m.group(1), f'"n{len(names)}"'), text)
            return text, eng.to_arrow(out).to_pylist()

    short_sql = planned()
    assert core.deepcopy is sqlframe_patches.flat_deepcopy  # installed with the engine's session
    calls = []
    monkeypatch.setattr(core, "deepcopy", lambda x, memo=None: calls.append(type(x)) or
                        sqlframe_patches.flat_deepcopy(x, memo))
    short = described(parsed.copy())
    assert dict in calls  # the compiled copy reads the module's name at each call: positions go through it
    monkeypatch.undo()
    assert any(n.meta for n in parsed.walk()) and any(n.comments for n in parsed.walk())
    monkeypatch.setattr(core, "deepcopy", copy.deepcopy)
    assert described(parsed.copy()) == short and planned() == short_sql


def test_column_names_and_types_parsed_once_give_what_sqlglot_and_sqlframe_give_each_time():
    """`to_column` hands out copies of one parse per name and dialect, and `_input_type` one
    conversion per DuckDB type and session: equal to a fresh parse, never the same node twice."""
    import sqlglot.expressions as exp
    from sqlframe.base.util import normalize_string
    from sqlglot.dialects import DuckDB, Spark

    from lakehouse import sqlframe_patches
    from lakehouse.resources import engine as engine_module

    duck, spark = DuckDB(), Spark()
    for name in ("order_id", "t.order_id", "`Cust ID`", '"Cust ID"', "*", "x.y.z"):
        for dialect in (duck, spark, None):
            for quoted in (None, True):
                fresh = sqlframe_patches._parsed_column(name, quoted=quoted, dialect=dialect)
                first = sqlframe_patches.to_column(name, quoted=quoted, dialect=dialect)
                again = sqlframe_patches.to_column(name, quoted=quoted, dialect=dialect)
                assert first == fresh and again == fresh and first is not again, (name, dialect, quoted)
                assert first.sql() == fresh.sql()
                first.set("this", exp.to_identifier("changed"))  # a caller's change reaches no later call
                assert sqlframe_patches.to_column(name, quoted=quoted, dialect=dialect) == fresh
    # A dialect object of its own (its settings may differ) is parsed for anew, not taken for another's.
    other = DuckDB()
    sqlframe_patches.to_column("order_id", dialect=other)
    assert sqlframe_patches._PARSED_COLUMNS[("order_id", None, id(other))][0] is other
    assert sqlframe_patches.to_column(exp.column("a")) == exp.column("a")  # a node: not remembered
    with EngineResource(name="duckdb").engine() as eng:
        for kind in ("VARCHAR", "BIGINT", "DECIMAL(12,2)", "TIMESTAMP WITH TIME ZONE", "DATE", "VARCHAR[]",
                     "MAP(VARCHAR, BIGINT)", "STRUCT(a INTEGER, b VARCHAR)", "BOOLEAN", "DOUBLE"):
            want = normalize_string(kind, from_dialect="output", to_dialect="input", is_datatype=True)
            assert engine_module._input_type(eng.session, kind) == want
            assert engine_module._input_type(eng.session, kind) == want  # from the memo
            assert engine_module._input_types[(id(eng.session), kind)][0] is eng.session
        with pytest.raises(Exception):  # what sqlglot cannot parse is raised each time, not remembered
            engine_module._input_type(eng.session, "NOT A TYPE (((")
        assert (id(eng.session), "NOT A TYPE (((") not in engine_module._input_types


def test_two_different_ctes_never_share_a_name():
    """sqlframe names a CTE by a digest of its SQL and merges CTEs of one name: its 8-digit CRC32
    prefix gave these two queries one name (found by search), ours does not."""
    import sqlglot.expressions as exp
    from sqlframe.base.dataframe import BaseDataFrame

    from lakehouse import sqlframe_patches

    with EngineResource(name="duckdb").engine() as eng:
        frame = eng.from_arrow(pa.table({"x": [1]}))
        assert BaseDataFrame._create_hash_from_expression is sqlframe_patches.cte_name
        first, second = (exp.select(exp.Literal.number(n).as_("x")) for n in (4846, 19350))
        theirs = sqlframe_patches.cte_name.__wrapped__
        assert theirs(frame, first) == theirs(frame, second)  # one name for two queries
        assert sqlframe_patches.cte_name(frame, first) != sqlframe_patches.cte_name(frame, second)
        assert sqlframe_patches.cte_name(frame, first) == sqlframe_patches.cte_name(frame, first.copy())


def test_a_process_planning_a_query_loads_only_the_sqlglot_dialects_it_uses():
    """sqlframe's name lookup of a dialect imported all of sqlglot's (about 30) in every process."""
    import subprocess
    import sys

    script = """
import sys
import pyarrow as pa
from lakehouse.resources.engine import Engine
from lakehouse.transforms.silver import api
with Engine("duckdb") as eng:
    df = eng.from_arrow(pa.table({"k": ["a", "b"], "n": [1, 2]}))
    F, _ = api(df)
    assert eng.to_arrow(df.groupBy("k").agg(F.min("n").alias("m"))).num_rows == 2
print(sorted(m for m in sys.modules if m.startswith("sqlglot.dialects.")))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = eval(done.stdout.strip().splitlines()[-1])
    assert "sqlglot.dialects.duckdb" in loaded and "sqlglot.dialects.snowflake" not in loaded, loaded


def test_a_sqlframe_whose_cte_naming_was_not_checked_is_refused():
    """The CTE-name fix is a correctness fix: on a sqlframe whose naming differs from the checked
    code the DuckDB engine refuses to plan (its names might still collide) rather than warn."""
    from sqlframe.base.dataframe import BaseDataFrame

    from lakehouse import sqlframe_patches

    class Frame:  # stands in for a sqlframe whose CTE naming changed
        def _create_hash_from_expression(self, expression):
            return "t1"

    theirs = Frame._create_hash_from_expression
    with pytest.raises(RuntimeError, match=r"sqlframe 9\.9's BaseDataFrame._create_hash_from_expression.*CHECKED_NAMING"):
        sqlframe_patches._name_ctes(Frame, "9.9")
    assert Frame._create_hash_from_expression is theirs

    namespace: dict = {}
    exec("def naming(self, expression):\n    return 't1'\n", namespace)  # a function without a source file

    class Compiled:  # stands in for a sqlframe installed without its .py files
        _create_hash_from_expression = namespace["naming"]

    with pytest.raises(RuntimeError, match="has no readable source"):
        sqlframe_patches._name_ctes(Compiled, "4.10.0")

    class Checked:  # sqlframe 4.10's own naming: replaced
        _create_hash_from_expression = getattr(sqlframe_patches.cte_name, "__wrapped__",
                                               BaseDataFrame._create_hash_from_expression)

    sqlframe_patches._name_ctes(Checked, "4.10.0")
    assert Checked._create_hash_from_expression is sqlframe_patches.cte_name


def test_sqlframes_copy_savings_are_skipped_with_a_warning_on_code_they_were_not_checked_against(caplog, monkeypatch):
    """The savings replace sqlframe's functions whole: on another sqlframe's code they are not applied."""
    from sqlframe.base.dataframe import BaseDataFrame

    from lakehouse import sqlframe_patches

    class Frame:  # stands in for a sqlframe whose copy() changed
        def copy(self, **kwargs):
            return self

    class Util:
        @staticmethod
        def dialect_to_string(dialect):
            return "duckdb"

    for name in ("_create_cte_from_expression", "_convert_leaf_to_cte", "_resolve_pending_hints",
                 "_add_ctes_to_expression", "_get_outer_select_columns"):
        setattr(Frame, name, getattr(BaseDataFrame, name))
    monkeypatch.setattr(sqlframe_patches, "_saving_checked", False)
    copy, to_string, to_cte = Frame.copy, Util.dialect_to_string, Frame._convert_leaf_to_cte
    with caplog.at_level("WARNING", logger="lakehouse.sqlframe_patches"):
        sqlframe_patches._save_copies(Frame, Util)
    assert Frame.copy is copy and Util.dialect_to_string is to_string and Frame._convert_leaf_to_cte is to_cte
    assert "BaseDataFrame.copy, dialect_to_string differ" in caplog.text


def test_duckdbs_memory_limit_is_the_settings_and_follows_it_within_the_process(tmp_path):
    """LAKEHOUSE_DUCKDB_MEMORY reaches the process's one DuckDB session through the Dagster resource."""
    from lakehouse.resources.engine import DUCKDB_MEMORY_LIMIT
    from lakehouse.settings import SettingsError, load_settings
    from lakehouse.wiring import project_resources

    settings = load_settings({"LAKEHOUSE_HOME": str(tmp_path), "LAKEHOUSE_DUCKDB_MEMORY": "512MB"})
    assert project_resources(settings)["engine"].duckdb_memory_limit == "512MB"

    def limit(eng):  # fetchall: DuckDB 2 refuses other work on a connection with an unfinished result
        return eng.session._conn.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]

    with EngineResource(name="duckdb", duckdb_memory_limit="512MB").engine() as eng:
        assert limit(eng) == "488.2 MiB"  # DuckDB shows it in binary units
    with EngineResource(name="duckdb").engine() as eng:  # no setting given: as the process has it
        assert limit(eng) == "488.2 MiB"
    with EngineResource(name="duckdb", duckdb_memory_limit=DUCKDB_MEMORY_LIMIT).engine() as eng:
        assert DUCKDB_MEMORY_LIMIT == "1GB" and limit(eng) == "953.6 MiB"
    with pytest.raises(SettingsError, match="not an amount of memory"):
        EngineResource(name="duckdb", duckdb_memory_limit="1GB'; DROP TABLE x; --").engine()


def test_a_step_that_stops_reading_midway_leaves_the_connection_usable_for_the_next():
    """The process's DuckDB connection is shared by its steps: a write that failed midway through
    `to_chunks`, or an execute() result left unread, must not make every later step fail."""
    with EngineResource(name="duckdb").engine() as eng:
        df = eng.from_arrow(pa.table({"n": list(range(50_000))}))
        with pytest.raises(RuntimeError, match="the write failed"):
            for _ in eng.to_chunks(df, rows=1000):
                raise RuntimeError("the write failed")
        assert eng.to_arrow(df.filter(df["n"] < 3)).num_rows == 3
    with EngineResource(name="duckdb").engine() as eng:  # a step that made no table: its end runs no SQL
        eng.session._conn.execute("SELECT * FROM range(10)").fetchone()  # unread rows left behind
    with EngineResource(name="duckdb").engine() as eng:
        assert eng.to_arrow(eng.from_arrow(SAMPLE)).num_rows == 3  # registering Arrow failed here


def _fresh_python(code: str):
    """What `code`, run in a new interpreter, printed last as JSON: a process's collector starts at Python's defaults."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("preset", [None, (1000, 5, 5)])
def test_a_process_that_makes_a_session_collects_cycles_less_often_unless_told_otherwise(preset):
    """lakehouse/collector.py: Python's default thresholds cost a tenth of a small day's time."""
    from lakehouse.collector import THRESHOLDS

    code = ("import gc\n"
            + (f"gc.set_threshold(*{preset})\n" if preset else "")
            + "from lakehouse.resources.engine import Engine\n"
            "before = gc.get_threshold()\n"
            "with Engine('duckdb') as engine:\n"
            "    engine.to_arrow(engine.from_arrow(__import__('pyarrow').table({'n': [1]})))\n"
            "print(json.dumps([before, gc.get_threshold()]))\n")
    before, after = _fresh_python(code)
    assert before == list(preset or (700, 10, 10))
    assert after == list(preset or THRESHOLDS)


@pytest.mark.parametrize("start", [
    "from lakehouse.cli import main\ntry:\n    main(['run', '--no-such-option'])\nexcept SystemExit:\n    pass\n",
    "from lakehouse.daemon_watch import main\ntry:\n    main(['watch', 'not-a-pipe'])\nexcept ValueError:\n    pass\n",
    "import lakehouse.definitions\n",
    "from lakehouse.run_workers import PRELOAD\n__import__(PRELOAD[0])\n",
], ids=["cli", "daemon", "code server", "forkserver"])
def test_each_process_of_lakehouse_run_sets_the_collector_before_its_imports(start):
    """lakehouse/collector.py: tune() is called, and before Dagster is imported."""
    from lakehouse.collector import THRESHOLDS

    code = ("import gc, sys\nfrom lakehouse import collector\ncalls = []\ntune = collector.tune\n"
            "collector.tune = lambda: (calls.append('dagster' in sys.modules), tune())\n"
            + start + "print(json.dumps([gc.get_threshold(), calls]))\n")
    thresholds, calls = _fresh_python(code)
    assert thresholds == list(THRESHOLDS) and calls[:1] == [False]


def test_a_long_lived_process_settles_back_to_the_default_thresholds_unless_told_otherwise():
    """collector.settle(): the imports' objects frozen, Python's defaults back; a process's own thresholds kept."""
    from lakehouse.collector import DEFAULTS, THRESHOLDS

    code = ("import gc\nfrom lakehouse import collector\ncollector.tune()\ntuned = gc.get_threshold()\n"
            "collector.settle()\nsettled = gc.get_threshold(), gc.get_freeze_count() > 0\n"
            "gc.unfreeze(); gc.set_threshold(1000, 5, 5); collector.settle()\n"
            "print(json.dumps([tuned, settled, gc.get_threshold()]))\n")
    tuned, settled, own = _fresh_python(code)

    assert tuned == list(THRESHOLDS) and settled == [list(DEFAULTS), True] and own == [1000, 5, 5]


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_columns_named_like_sql_keywords_values_or_functions_keep_their_values(engine, tmp_path):
    """A landed file's header can be anything: `comment`, `desc`, `select`, `null`, `true`,
    `current_date`, `2024`. sqlframe put such a name in its SQL as it was (its catalog failed on
    `null`, `current_date` and `2024`, its reader on `comment`). On DuckDB, which
    reads a table's data files by name, PyIceberg's files name a column `1st` as `_1st` (Spark's
    keep `1st`): it was dropped; both spellings are read now."""
    import pyarrow.parquet as pq
    from pyiceberg.schema import make_compatible_name

    from lakehouse.resources.engine import Engine
    from lakehouse.transforms.silver import api

    names = ["comment", "desc", "select", "null", "true", "current_date", "1st", "2024", "1e5"]
    pq.write_table(pa.table({n: [f"w{i}"] for i, n in enumerate(names)}), tmp_path / "spark.parquet")
    pq.write_table(pa.table({make_compatible_name(n): [f"v{i}"] for i, n in enumerate(names)}), tmp_path / "py.parquet")
    files = [str(tmp_path / "spark.parquet")] + ([str(tmp_path / "py.parquet")] if engine == "duckdb" else [])
    with Engine(engine) as eng:
        df = eng.read_parquet(files, None, keep=set(names))
        F, _ = api(df)
        out = eng.to_arrow(df.select(*[F.col(n).alias(f"_src_{n}") for n in names]))
    rows = sorted(out.to_pylist(), key=lambda r: r["_src_comment"])
    assert rows == [{f"_src_{n}": f"{p}{i}" for i, n in enumerate(names)} for p in ("vw" if engine == "duckdb" else "w")]
