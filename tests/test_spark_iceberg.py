"""The spark engine reads the tables through Spark's own Iceberg runtime, over the catalog
PyIceberg writes (DESIGN.md §9): both see each other's commits, snapshots and filters."""

import datetime as dt
import os
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.expressions import And, EqualTo, In, NotNull, Or

from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.resources import spark_iceberg
from lakehouse.resources.engine import Engine
from lakehouse.resources.spark_iceberg import SparkBranchWriter, SparkCatalogError, catalog_conf
from lakehouse.settings import SPARK_JAVA_OPTIONS, load_settings
from lakehouse.steps.context import StepContext
from lakehouse.steps.reads import frame
from lakehouse.tables import TableDef
from lakehouse.transforms.silver import api, trimmed

PREFIX = "spark.sql.catalog.lakehouse"


def test_the_catalog_settings_follow_pyicebergs_catalog():
    local = catalog_conf({"type": "sql", "uri": "sqlite:////srv/lake/catalog.db", "warehouse": "file:///srv/lake/wh"})
    assert local == {PREFIX: "org.apache.iceberg.spark.SparkCatalog", f"{PREFIX}.type": "jdbc",
                     f"{PREFIX}.uri": "jdbc:sqlite:/srv/lake/catalog.db", f"{PREFIX}.warehouse": "file:///srv/lake/wh",
                     f"{PREFIX}.jdbc.init-catalog-tables": "false", f"{PREFIX}.cache-enabled": "false"}
    for uri, path in (("sqlite:////srv/lake/catalog.db?check_same_thread=false", "/srv/lake/catalog.db"),
                      ("sqlite:///lake/my%20catalog.db", f"{os.getcwd()}/lake/my catalog.db")):
        assert catalog_conf({"type": "sql", "uri": uri, "warehouse": "file:///w"})[f"{PREFIX}.uri"] == f"jdbc:sqlite:{path}"
    in_s3 = catalog_conf({"type": "sql", "uri": "sqlite:////c.db", "warehouse": "s3://b/wh", "s3.region": "eu-west-1",
                          "s3.endpoint": "http://127.0.0.1:5000"})
    assert (in_s3[f"{PREFIX}.type"], in_s3[f"{PREFIX}.io-impl"], in_s3[f"{PREFIX}.client.region"],
            in_s3[f"{PREFIX}.s3.endpoint"]) == ("jdbc", "org.apache.iceberg.aws.s3.S3FileIO", "eu-west-1",
                                                 "http://127.0.0.1:5000")
    glue = catalog_conf({"type": "glue", "glue.region": "eu-west-1", "warehouse": "s3://b/wh",
                         "s3.endpoint": "http://127.0.0.1:5000", "s3.sse-kms-key-id": "arn:aws:kms:k"})
    assert glue[f"{PREFIX}.catalog-impl"] == "org.apache.iceberg.aws.glue.GlueCatalog"
    assert glue[f"{PREFIX}.io-impl"] == "org.apache.iceberg.aws.s3.S3FileIO"
    assert (glue[f"{PREFIX}.client.region"], glue[f"{PREFIX}.s3.endpoint"], glue[f"{PREFIX}.s3.sse.key"]) == \
        ("eu-west-1", "http://127.0.0.1:5000", "arn:aws:kms:k")
    with pytest.raises(SparkCatalogError, match="opens SQLite catalogs here, not 'postgresql'"):
        catalog_conf({"type": "sql", "uri": "postgresql://h/db", "warehouse": "file:///w"})
    with pytest.raises(SparkCatalogError, match="cannot open a 'rest' catalog"):
        catalog_conf({"type": "rest", "uri": "http://h", "warehouse": "s3://w"})


def test_a_missing_jdbc_driver_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(spark_iceberg, "SQLITE_JDBC", tmp_path / "sqlite-jdbc.jar")
    with pytest.raises(SparkCatalogError, match="apt-get install libxerial-sqlite-jdbc-java"):
        spark_iceberg.local_jars()


SCHEMA = pa.schema([("day", pa.date32()), ("n", pa.int64()), ("label", pa.string())])
ONE_ROW = pa.table({"day": [dt.date(2026, 3, 1)], "n": [1], "label": ["a"]}, SCHEMA)
TABLE = TableDef("silver.probe", SCHEMA, (("day", "day"),), "probe")


def test_spark_reads_what_pyiceberg_commits_at_any_snapshot_with_filters(tmp_path, monkeypatch):
    monkeypatch.delenv("LAKEHOUSE_SPARK_CODEGEN", raising=False)  # its default: a step's queries are interpreted
    settings = load_settings({"LAKEHOUSE_HOME": str(tmp_path / "home")})
    store = TableStore(catalog_from_settings(settings))
    store.ensure_table(TABLE.identifier, SCHEMA, TABLE.partition_by)
    days = [dt.date(2026, 3, 1), dt.date(2026, 3, 2)]
    first = store.replace_where(TABLE.identifier, pa.table({"day": days, "n": [1, 2], "label": ["a", "b"]}, SCHEMA),
                                EqualTo("day", "2026-03-01"), {"probe": "1"})
    with Engine("spark", store.catalog) as engine:
        assert engine.reads_tables
        # The JVM this machine started runs with LAKEHOUSE_SPARK_JAVA_OPTIONS (its default here).
        jvm = engine.session.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
        assert set(SPARK_JAVA_OPTIONS.split()) <= set(jvm.getInputArguments()), list(jvm.getInputArguments())
        ctx = StepContext(store, engine, "r1")
        whole = frame(ctx, TABLE)
        assert sorted(r["n"] for r in whole.collect()) == [1, 2]
        # a commit made after Spark first looked is seen (no stale catalog cache)
        store.replace_where(TABLE.identifier, pa.table({"day": [days[1]], "n": [20], "label": ["B"]}, SCHEMA),
                            EqualTo("day", "2026-03-02"), {"probe": "2"})
        day2 = frame(ctx, TABLE, EqualTo("day", "2026-03-02"), columns=("n", "label"))
        assert [tuple(r) for r in day2.collect()] == [(20, "B")]
        # the filter reaches Iceberg's scan, which then plans only that day's file
        plan = day2._jdf.queryExecution().executedPlan().toString()
        assert "BatchScan lakehouse.silver.probe" in plan and "day" in plan.split("BatchScan", 1)[1]
        # A step on a session started here interprets its queries (LAKEHOUSE_SPARK_CODEGEN's default):
        # no stage of the plan is generated code (Spark marks those "*(n)"), nor are its expressions.
        assert "*(" not in plan and engine.session.conf.get("spark.sql.codegen.factoryMode") == "NO_CODEGEN", plan
        # A key filter on a view of values (silver's keys elsewhere) beside the days those keys are on:
        # the days still reach Iceberg's scan (Spark pushes no part of a filter holding a subquery).
        on_label, = engine.members(engine.from_arrow(pa.table({"v": ["a"]})), "v", "label")
        batch = EqualTo("day", "2026-03-02")
        keyed_days = And(Or(batch, In("day", ["2026-03-01"])), Or(batch, And(NotNull("label"), on_label)))
        both = frame(ctx, TABLE, keyed_days, columns=("n",))
        assert sorted(r["n"] for r in both.collect()) == [1, 20]
        scan = both._jdf.queryExecution().executedPlan().toString().split("BatchScan lakehouse.silver.probe", 1)[1]
        pushed = scan.split("filters=", 1)[1].split("]", 1)[0] if "filters=" in scan else ""
        assert "day" in pushed and "20513" in pushed, scan[:600]  # 2026-03-01, the day only the view's rows need
        # Spark's writer deletes the same rows (DELETE of the days, MERGE of the view's keys), and
        # keeps a row whose key is null on a day only the view's keys are deleted from.
        store.replace_where(TABLE.identifier, pa.table({"day": [days[0]] * 2, "n": [1, 7], "label": ["a", None]},
                                                       SCHEMA), EqualTo("day", "2026-03-01"), {"probe": "3"})
        head = store.load(TABLE.identifier).current_snapshot().snapshot_id
        store.load(TABLE.identifier).manage_snapshots().create_branch(head, "probe-write").commit()
        nothing = engine.session.createDataFrame([], "day date, n bigint, label string")
        SparkBranchWriter(store, nothing, SCHEMA).write(TABLE.identifier, "probe-write", keyed_days, {"probe": "4"})
        branch = store.load(TABLE.identifier).metadata.refs["probe-write"].snapshot_id
        assert store.read(TABLE.identifier, snapshot_id=branch).column("n").to_pylist() == [7]
        old = frame(ctx, TABLE, snapshot_id=first.snapshot_id)
        assert sorted((r["n"], r["label"]) for r in old.collect()) == [(1, "a"), (2, "b")]


@pytest.mark.parametrize("submit_args, says", [
    (f"--conf spark.sql.extensions={spark_iceberg.EXTENSIONS}",
     "Spark has no Iceberg runtime on its classpath: on Glue set the job argument --datalake-formats iceberg"),
    ("--jars {jars}", "Spark's session lacks Iceberg's SQL extensions"),
])
def test_a_cluster_without_icebergs_runtime_or_extensions_is_told_the_job_argument(tmp_path, submit_args, says):
    """spark-submit without the runtime (a Glue job lacking --datalake-formats iceberg) or without
    the extensions: the step fails at once with the setting to add, not in the middle of a write."""
    import os
    import subprocess
    import sys

    script = ("from lakehouse.iceberg import catalog_from_settings\n"
              "from lakehouse.resources.engine import Engine\n"
              "from lakehouse.settings import SPARK_JAVA_OPTIONS, load_settings\n"
              "Engine('spark', catalog_from_settings(load_settings()))\n")
    args = submit_args.format(jars=",".join(spark_iceberg.local_jars()))
    env = {**os.environ, "LAKEHOUSE_HOME": str(tmp_path / "home"),
           "PYSPARK_SUBMIT_ARGS": f"--master local[1] --driver-memory 1g --driver-java-options "
                                  f"'{SPARK_JAVA_OPTIONS}' {args} pyspark-shell"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert f"SparkCatalogError: {says}" in done.stderr, done.stderr[-3000:]


def test_a_dagster_run_on_the_spark_engine_gets_its_session_from_pyspark_resource(tmp_path, monkeypatch):
    """The daily job with LAKEHOUSE_ENGINE=spark: dagster-pyspark's resource makes the one Spark
    session (with Iceberg's runtime), the steps read through its catalog, the tables fill."""
    from dagster_pyspark import PySparkResource

    from lakehouse.generate import generate
    from lakehouse.resources import engine as engine_module
    from lakehouse.resources.landing import LocalLandingZone
    from lakehouse.runner import open_instance
    from lakehouse.wiring import DAILY_JOB, build_definitions

    day = dt.date(2026, 3, 1)
    generate(LocalLandingZone(f"file://{tmp_path / 'landing'}"), days=1, start=day, seed=3, scale=0.02)
    settings = load_settings({"LAKEHOUSE_HOME": str(tmp_path / "home"), "LAKEHOUSE_ENGINE": "spark",
                              "LAKEHOUSE_LANDING_URI": f"file://{tmp_path / 'landing'}",
                              "LAKEHOUSE_START_DATE": day.isoformat(), "DAGSTER_HOME": str(tmp_path / "dagster")})
    defs = build_definitions(settings)
    resource = defs.resources["engine"]
    assert isinstance(resource.pyspark, PySparkResource) and resource.pyspark.spark_config["spark.sql.extensions"]
    if "spark" in engine_module._sessions:  # this test's session must be the resource's, bound to its catalog
        old = engine_module._sessions.pop("spark")
        engine_module._catalogs.pop(id(old), None)
        old.stop()
    made, new_session = [], engine_module._new_session
    monkeypatch.setattr(engine_module, "_new_session", lambda name: made.append(name) or new_session(name))
    with open_instance(settings) as instance:
        result = defs.resolve_job_def(DAILY_JOB).execute_in_process(
            instance=instance, partition_key=day.isoformat(), raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    session = engine_module._sessions["spark"]
    assert made == [] and engine_module._catalogs[id(session)]["spark.sql.catalog.lakehouse.type"] == "jdbc"
    assert TableStore(catalog_from_settings(settings)).read("silver.orders").num_rows > 0


def test_a_failed_audit_on_spark_leaves_main_untouched_and_keeps_the_branch_as_duckdb_does(tmp_path, monkeypatch):
    """Write-audit-publish with Spark's writer: the rows go to the audit branch, a blocking check
    fails, main does not move, and the branch keeps what Spark wrote, for a look; the branch's
    rows, the quarantine and every check's result equal the DuckDB path's on the same day."""
    import sys

    from lakehouse.generate import generate
    from lakehouse.resources.landing import LocalLandingZone

    sys.path.insert(0, str(Path(__file__).parent))
    from pipeline_helpers import VOLATILE, process_day, table_rows

    day = dt.date(2026, 3, 1)
    generate(LocalLandingZone(f"file://{tmp_path / 'landing'}"), days=1, start=day, seed=21, dirty=True, scale=0.2)
    strict = tmp_path / "quality.yaml"
    strict.write_text("assets:\n  silver/customers:\n    quarantine_share: {severity: error, max_share: 0}\n")
    monkeypatch.setenv("LAKEHOUSE_DQ_CONFIG", str(strict))
    seen = {}
    for engine in ("spark", "duckdb"):
        settings = load_settings({"LAKEHOUSE_HOME": str(tmp_path / engine), "LAKEHOUSE_START_DATE": day.isoformat(),
                                  "LAKEHOUSE_LANDING_URI": f"file://{tmp_path / 'landing'}"})
        write = process_day(settings, engine, day)["silver.customers"].write
        assert not write.published
        store = TableStore(catalog_from_settings(settings))
        table = store.load("silver.customers")
        assert store.read("silver.customers").num_rows == 0  # main: nothing published
        head = table.snapshot_by_id(table.metadata.refs[write.branch].snapshot_id)
        assert ("spark.app.id" in head.summary.additional_properties) == (engine == "spark") and write.rows > 0
        branch = store.read("silver.customers", snapshot_id=head.snapshot_id)
        assert branch.num_rows == write.rows
        results = [r for r in store.read("ops.dq_results").to_pylist() if r["asset"] == "silver/customers"]
        assert any(r["check_name"] == "quarantine_share" and not r["passed"] and not r["published"] for r in results)
        seen[engine] = {
            "branch": sorted(map(str, branch.drop_columns([c for c in VOLATILE if c in branch.column_names])
                                 .to_pylist())),
            "quarantine": table_rows(store, "silver.quarantine"),
            "checks": sorted((r["partition"], r["check_name"], r["passed"], r["severity"], r["observed"],
                              r["threshold"], r["message"], r["published"]) for r in results),
        }
    assert seen["spark"] == seen["duckdb"]


@pytest.mark.parametrize("name", ["duckdb", "spark"])
def test_both_engines_trim_exactly_what_python_calls_whitespace(name):
    """Silver's trim (`trimmed`: RE2 on DuckDB, java.util.regex on Spark) removes every character
    str.isspace() accepts and nothing else (a zero-width space and a BOM stay), and leaves a long
    run inside a value alone (on Spark, the run a backtracking suffix pattern would take time
    quadratic in)."""
    spaces = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    values = [f"{s}{s}a{s}b{s}" for s in spaces] + [f"{k}a{k}" for k in ("\u200b", "\ufeff", "x")]
    values += [" " * 5 + "x" + "\t" * 50_000 + "y" + "\u3000" * 3, "\r\n", "", None]
    with Engine(name) as engine:
        df = engine.from_arrow(pa.table({"v": values}))
        F, _ = api(df)
        got = engine.to_arrow(df.select(trimmed(F, F.col("v")).alias("v"))).column("v").to_pylist()
    assert got == [None if v is None else v.strip() for v in values]
    assert len(spaces) == 29 and "\u200b\ufeff".strip() == "\u200b\ufeff"


def case_samples() -> list[str]:
    """Every character Python's case mapping or its final-sigma rule looks at, alone and on either
    side of a capital sigma after a letter, and words of the kinds that land."""
    import unicodedata

    relevant = ("Lu", "Ll", "Lt", "Lm", "Mn", "Me", "Cf", "Sk", "Nl", "So")
    chars = [c for c in map(chr, range(0x30000)) if unicodedata.category(c) in relevant
             and (c.upper() != c or c.lower() != c or unicodedata.category(c) not in ("Nl", "So"))]
    chars += list("'.:\u00b7\u2019\uff0e\"-0 ")
    words = ["straße", "ﬁx-ǰ", "İstanbul", "ΟΔΟΣ", "ΣΑΣ Σ", "ΑΣΣ", "ΑΣ'Σ", "ΑΣ'.Σ", "A1Σ", "ΑΣ\u0301", "Α\u0301Σ",
             "ΑΣ.Β", "Σ", "a\u2028Σ"]
    return chars + [f"A{c}\u03a3" for c in chars] + [f"A\u03a3{c}" for c in chars] + words


@pytest.mark.parametrize("name", ["duckdb", "spark"])
def test_both_engines_change_case_as_python_does(name):
    """Silver's `upper` and `lower` (lakehouse/transforms/casing.py) give Python's str.upper() and
    str.lower(): full case mapping ('straße' to 'STRASSE', where DuckDB's own gives 'STRAẞE') and a
    final sigma by Unicode's rule (where Java's own applies a word rule: 'A1Σ' to 'a1ς'). Spark may
    differ only on characters its Java does not know (Unicode 14's, in Python 3.11)."""
    from lakehouse.transforms import casing

    values = case_samples()
    with Engine(name) as engine:
        df = engine.from_arrow(pa.table({"v": values}))
        F, _ = api(df)
        out = engine.to_arrow(df.select("v", casing.upper(F, F.col("v")).alias("u"), casing.lower(F, F.col("v")).alias("l")))
        wrong = [v for v, u, lo in zip(*(out.column(c).to_pylist() for c in "vul")) if (u, lo) != (v.upper(), v.lower())]
        unknown = engine.session._jvm.java.lang.Character.isDefined if name == "spark" else None
        if name == "spark":  # each because of a character Java 17 (Unicode 13) does not define
            assert all(any(not unknown(ord(c)) for c in v) for v in wrong), [v for v in wrong if all(map(unknown, map(ord, v)))]
        else:
            assert wrong == []
    assert len(values) > 10_000 and len(casing.special_upper()) == 102


@pytest.mark.parametrize("name", ["duckdb", "spark"])
def test_both_engines_apply_silvers_rules_alike_to_odd_values(name):
    """Through silver's rules: a key spelled 'straße' is 'STRASSE'; an event type with a dotted
    capital I is not 'page_view'; a payload's pattern (`^\\{.*\\}$`) reads across the line breaks
    a JSON text or a quoted CSV field can hold (java.util.regex's `.` stops at U+0085, U+2028 and
    U+2029 too, RE2's at a newline only); a timestamp in epoch seconds is before the declared
    minimum (1970 read as milliseconds), and one in year 10000 or later is no timestamp; the last
    millisecond of 9999 is that instant exactly."""
    from lakehouse.contracts import CONTRACTS
    from lakehouse.transforms.silver import classify, quarantine_rows, silver_rows
    from silver_fixtures import bronze, good

    def event(n, **changes):
        return good("events", event_id=f"3f2504e0-4f89-41d3-9a0c-0305e82c33{n:02d}", **changes)

    rows = [event(1, user_id="straße"), event(2, event_type="PAGE_V\u0130EW"), event(3, user_id="ǰx"),
            *(event(4 + i, payload=f'{{"t":"a{sep}b"}}') for i, sep in enumerate(["\u2028", "\u2029", "\u0085", "\r", "\n", "\r\n"])),
            event(10, timestamp="1773136800"), event(11, timestamp="1577836800000"),  # seconds; 2020-01-01 itself
            event(12, timestamp="999999999999999"), event(13, timestamp="253402300799999")]  # year 33658; 9999's last
    with Engine(name) as engine:
        classified = engine.materialize(classify(engine.from_arrow(bronze("events", rows)), CONTRACTS["events"], None, None))
        kept = {r["event_id"][-2:]: r for r in engine.to_arrow(silver_rows(classified, CONTRACTS["events"])).to_pylist()}
        aside = {r["_src_event_id"][-2:]: r["_rules"] for r in engine.to_arrow(quarantine_rows(classified)).to_pylist()}
    assert aside == {"02": "event_type.not_accepted", "10": "timestamp.out_of_range", "12": "timestamp.invalid"}
    assert kept["01"]["user_id"] == "STRASSE" and kept["03"]["user_id"] == "J\u030cX"
    assert sorted(kept) == ["01", "03", "04", "05", "06", "07", "08", "09", "11", "13"]
    # to the microsecond: DuckDB's epoch milliseconds went through a double (.999008 here)
    utc = dt.timezone.utc
    assert kept["13"]["timestamp"].astimezone(utc) == dt.datetime(9999, 12, 31, 23, 59, 59, 999000, utc)
    assert kept["11"]["timestamp"].astimezone(utc) == dt.datetime(2020, 1, 1, tzinfo=utc)


def test_a_local_session_records_each_querys_plan_in_the_short_form():
    """Spark records every query's physical plan for its UI, UI or not; a session started here has
    no UI and records the short form, not the numbered, per-operator one (engine.SPARK_CONFIG)."""
    with Engine("spark") as engine:
        assert engine.session.conf.get("spark.sql.ui.explainMode") == "simple"
        assert engine.from_arrow(ONE_ROW).groupBy("day").count().collect()[0]["count"] == 1
        engine.session._jsc.sc().listenerBus().waitUntilEmpty()  # the status store is fed asynchronously
        recorded = engine.session._jsparkSession.sharedState().statusStore().executionsList().last()
        plan = recorded.physicalPlanDescription()
    assert plan.startswith("== Physical Plan ==") and "HashAggregate(keys=" in plan, plan
    assert "\n(1) " not in plan and "Output [" not in plan, plan  # the formatted form's sections


def test_a_step_interprets_its_queries_and_leaves_the_session_as_it_found_it(monkeypatch):
    """LAKEHOUSE_SPARK_CODEGEN: off (the default), a step's queries on a session started here are
    interpreted, and Spark's settings are back when the step ends (nested steps too), so code sharing
    the session (a user's asset on dagster-pyspark's session) gets Spark's code generation and its
    catalog API, whose decoder fails interpreted; on, a step leaves Spark's code generation alone."""
    from lakehouse.resources.engine import NO_CODEGEN


    def settings_of(session):
        return {key: session.conf.get(key) for key in NO_CODEGEN}

    def plan_and_settings():
        with Engine("spark") as engine:  # the worker's session, whichever catalog it reads
            df = engine.from_arrow(ONE_ROW).groupBy("day").count()
            assert df.collect()[0]["count"] == 1
            return engine.session, settings_of(engine.session), df._jdf.queryExecution().executedPlan().toString()

    spark_defaults = {"spark.sql.codegen.wholeStage": "true", "spark.sql.codegen.factoryMode": "FALLBACK"}
    monkeypatch.delenv("LAKEHOUSE_SPARK_CODEGEN", raising=False)
    session, inside, plan = plan_and_settings()
    assert inside == NO_CODEGEN and "*(" not in plan, plan
    assert settings_of(session) == spark_defaults
    session.catalog.listTables()  # Spark's catalog API works again outside the step
    # A value set on the session before is the one put back, through nested steps.
    session.conf.set("spark.sql.codegen.wholeStage", "true")
    try:
        with Engine("spark") as outer:
            with Engine("spark") as inner:
                assert settings_of(inner.session) == NO_CODEGEN
            assert settings_of(outer.session) == NO_CODEGEN
        assert session.conf.get("spark.sql.codegen.wholeStage", None) == "true"
    finally:
        session.conf.unset("spark.sql.codegen.wholeStage")
    monkeypatch.setenv("LAKEHOUSE_SPARK_CODEGEN", "true")
    session, inside, plan = plan_and_settings()
    assert inside == spark_defaults and "*(" in plan, plan


def test_the_jvm_view_keeps_the_names_pyspark_looks_up_on_every_call(monkeypatch):
    """F.col, a list of columns, a window: after the first time, the classes PySpark resolves
    through its JVM view by their short names (`functions`, `PythonUtils`, `SparkSession`) and the
    static methods it calls on them are answered without asking the JVM
    (lakehouse/resources/jvm_view.py); a field is still asked each time, packages (the window's
    `org.apache...`) as before, and a class the JVM lacks is not kept."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from lakehouse.resources import jvm_view

    with Engine("spark") as engine:
        session = engine.session
        jvm = session.sparkContext._jvm
        client = jvm._gateway_client
        for name in jvm_view.KEPT_CLASSES:  # kept afresh: earlier tests used the view
            jvm.__dict__.pop(name, None)
        monkeypatch.setattr(jvm_view, "_views", {})
        jvm_view.keep_names(session)
        asked = []
        send = client.send_command
        monkeypatch.setattr(client, "send_command", lambda command, *a, **k: asked.append(command) or send(command, *a, **k))

        def lookups(work) -> list[str]:
            """What `work` looked up in py4j's reflection commands: a name in the view (or a package), or the class
            whose member it asked for."""
            del asked[:]
            work()
            return [c.split("\n")[2] for c in asked if c.startswith("r\n")]

        def query():
            window = Window.partitionBy(F.col("id") % 2).orderBy("id")
            rows = session.range(4).select(F.col("id"), F.row_number().over(window).alias("n")).collect()
            assert sorted((r.id, r.n) for r in rows) == [(0, 1), (1, 1), (2, 2), (3, 2)]

        kept = {*jvm_view.KEPT_CLASSES, *jvm_view.KEPT_CLASSES.values()}
        first, second = lookups(query), lookups(query)
        assert kept & set(first), first  # the first query looked up `functions`' methods: else this proves nothing
        assert not kept & set(second), second  # the second: every kept class and method answered by the view
        assert "org.apache.spark.sql.expressions.Window" in second  # packages and other classes, as before
        for short, name in jvm_view.KEPT_CLASSES.items():
            assert isinstance(jvm.__dict__[short], jvm_view.KeptClass) and jvm.__dict__[short]._fqn == name
        # On a kept class, a static field's value is asked for each time (it may change); a method is kept.
        types = jvm_view.KeptClass("org.apache.spark.sql.types.DataTypes", client)
        assert lookups(lambda: types.StringType) == lookups(lambda: types.StringType) != []
        assert "StringType" not in types.__dict__
        assert lookups(lambda: types.createArrayType) != [] and lookups(lambda: types.createArrayType) == []

        # A name the JVM has no class for (another Spark build) is not kept: the view answers it as before.
        monkeypatch.setattr(jvm_view, "KEPT_CLASSES", {**jvm_view.KEPT_CLASSES, "NoSuchClass": "org.apache.spark.sql.NoSuchClass"})
        monkeypatch.setattr(jvm_view, "_views", {})
        jvm_view.keep_names(session)
        assert "NoSuchClass" not in jvm.__dict__
        assert session.range(2).select(F.col("id")).count() == 2
