"""A transform's SQL built once per process and filled in with new views (lakehouse/plans.py,
Engine.planned): the rows are those of planning it again, a different input shape plans anew,
and a transform that reaches a view it was not given is planned each time, said as a slower path.

The oracle tests (tests/test_oracle.py) process the nasty corpus and random landing zones day
after day in one process, so every later day there runs silver's classification replayed, and
each equals the independent oracle."""

import datetime as dt

import pyarrow as pa
import pytest

from lakehouse import checked_code
from lakehouse.contracts import CONTRACTS
from lakehouse.plans import plan_of, render
from lakehouse.resources.engine import Engine
from lakehouse.steps.silver import _classified
from lakehouse.transforms.bronze import INGEST_DATE
from lakehouse.transforms.silver import api, classify, latest_versions, silver_rows
from lakehouse.readers import ROW_NUMBER
from silver_fixtures import DAY, bronze, good


@pytest.fixture(autouse=True)
def planned_here(monkeypatch):
    """These tests count plannings in this process: no plan from disk (lakehouse/plan_cache.py,
    tests/test_plan_cache.py), whatever an earlier run of the same test kept."""
    monkeypatch.setenv("LAKEHOUSE_PLAN_CACHE", "off")


def test_a_template_fills_in_new_names_and_refuses_a_view_it_was_not_given():
    made = [("VIEW", 'SELECT * FROM "_lh_1" JOIN "_lh_12" USING ("k")', "_lh_20")]
    plan = plan_of(["_lh_1", "_lh_12"], made, "SELECT \"k\", '\"_lh_x\"' AS \"_lh_note\" FROM \"_lh_20\"")
    assert render(plan.made[0][1], ["a", "b"]) == 'SELECT * FROM "a" JOIN "b" USING ("k")'
    assert render(plan.result, ["a", "b", "c"]) == "SELECT \"k\", '\"_lh_x\"' AS \"_lh_note\" FROM \"c\""
    assert plan_of(["_lh_1"], [], 'SELECT * FROM "_lh_1", "_lh_3"') is None  # a view it was not given
    assert plan_of(["_lh_1"], [("TABLE", 'SELECT * FROM "_lh_2"', "_lh_4")], 'SELECT * FROM "_lh_4"') is None


def rows(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=repr)


def lookups_of(engine, day) -> dict:
    """The silver columns each of the orders' lookups reads, from classified bronze rows of that source."""
    out = {}
    for lookup in CONTRACTS["orders"].lookups:
        other = CONTRACTS[lookup.source]
        first = good(lookup.source)
        second = {**first, lookup.key: first[lookup.key][:-1] + "2"}
        classified = classify(engine.from_arrow(bronze(lookup.source, [first, second], day)), other)
        out[lookup.source] = engine.materialize(silver_rows(classified, other).select(
            lookup.key, *lookup.bring, INGEST_DATE, ROW_NUMBER))
    return out


SOURCES = [lookup.source for lookup in CONTRACTS["orders"].lookups]
ORDERS = [  # two days of different rows: valid, a re-sent one, a correction, broken ones, an unknown customer
    [good("orders"), good("orders", order_id="O2", qty="0"), good("orders", order_id="O3", customer_id="c9"),
     {"_parse_error": "expected 7 fields, got 2", "_raw_record": "O4,x"}],
    [good("orders"), good("orders", order_id="O1", qty="5"), good("orders", order_id="O5", channel="fax"),
     good("orders", order_id="O6", unit_price="1.234,56"), good("orders", order_id="O7", customer_id="C2")],
]


def test_classify_replayed_on_another_day_gives_the_rows_of_classifying_it_again():
    contract = CONTRACTS["orders"]
    planned = []
    with Engine("duckdb") as engine:
        def plan(given, day):
            planned.append(day)
            return classify(given["bronze"], contract, given["previous"],
                            {source: given[f"lookup:{source}"] for source in SOURCES}, engine.cut)

        key = ("test classify", contract)  # a key of this test's own: the process may have classify's already
        for i, landed in enumerate(ORDERS):
            day = DAY + dt.timedelta(days=i)
            lookups = lookups_of(engine, day)
            frames = {"bronze": engine.from_arrow(bronze("orders", landed, day)), "previous": None,
                      **{f"lookup:{source}": df for source, df in lookups.items()}}
            got = engine.to_arrow(engine.planned(key, frames, lambda given, day=day: plan(given, day)))
            again = engine.to_arrow(classify(engine.from_arrow(bronze("orders", landed, day)), contract, None,
                                             lookups_of(engine, day), engine.cut))
            assert rows(got) == rows(again) and got.num_rows == len(landed)
        assert planned == [DAY]  # the second day's SQL was the first day's, on its own views

        # silver's own use of it: the same rows as classify
        landed = bronze("orders", ORDERS[1], DAY)
        lookups = lookups_of(engine, DAY)
        for _ in range(2):
            got = engine.to_arrow(_classified(engine, contract, engine.from_arrow(landed), None, lookups))
            assert rows(got) == rows(engine.to_arrow(classify(engine.from_arrow(landed), contract, None, lookups,
                                                              engine.cut)))


def test_a_snapshot_source_with_its_previous_versions_and_a_reused_table_replays_them_all():
    contract = CONTRACTS["customers"]
    planned = []
    with Engine("duckdb") as engine:
        first = bronze("customers", [good("customers"), good("customers", customer_id="C2", region="")], DAY)
        current = latest_versions(engine.materialize(classify(engine.from_arrow(first), contract)), contract.keys)
        for i, changes in enumerate([{"region": "South"}, {"region": "North"}, {"email": "bad"}]):
            day = DAY + dt.timedelta(days=i + 1)
            landed = bronze("customers", [good("customers", **changes), good("customers", customer_id="C3")], day)
            frames = {"bronze": engine.from_arrow(landed), "previous": current}
            got = engine.planned(("test snapshot", contract), frames, lambda given: planned.append(1) or classify(
                given["bronze"], contract, given["previous"], {}, engine.cut))
            again = classify(engine.from_arrow(landed), contract, current, {}, engine.cut)
            assert rows(engine.to_arrow(got)) == rows(engine.to_arrow(again))
        assert planned == [1]


def test_other_input_columns_plan_anew_and_each_shape_replays_its_own():
    contract = CONTRACTS["orders"]
    planned = []
    with Engine("duckdb") as engine:
        lookups = lookups_of(engine, DAY)
        plain = [good("orders")]
        widened = [{**good("orders", order_id="O8"), "coupon": "X1"}]  # a header with an added column
        for landed in (plain, widened, plain, widened):
            frames = {"bronze": engine.from_arrow(bronze("orders", landed)), "previous": None,
                      **{f"lookup:{source}": df for source, df in lookups.items()}}
            got = engine.planned(("test shape", contract), frames, lambda given: planned.append(1) or classify(
                given["bronze"], contract, None, {source: given[f"lookup:{source}"] for source in SOURCES}, engine.cut))
            again = classify(engine.from_arrow(bronze("orders", landed)), contract, None, lookups, engine.cut)
            assert rows(engine.to_arrow(got)) == rows(engine.to_arrow(again))
        assert planned == [1, 1]  # once per shape


def test_a_transform_reading_a_view_it_was_not_given_is_planned_each_time_and_said(monkeypatch):
    recorded = []
    monkeypatch.setattr(checked_code, "_warned", set())
    monkeypatch.setattr(checked_code, "record_fallback", recorded.append)
    planned = []
    with Engine("duckdb") as engine:
        hidden = engine.from_arrow(pa.table({"k": [1, 2], "v": ["a", "b"]}))
        for n in (1, 2):
            given = engine.from_arrow(pa.table({"k": list(range(n + 1))}))

            def transform(frames):
                planned.append(1)
                return frames["keys"].join(hidden, on="k", how="inner")
            got = engine.to_arrow(engine.planned(("test hidden",), {"keys": given}, transform))
            assert sorted(got["v"].to_pylist()) == ["a", "b"][:n]
    assert planned == [1, 1]
    assert len(recorded) == 1 and "planned again" in recorded[0]


def test_planned_transforms_do_not_nest():
    with Engine("duckdb") as engine:
        df = engine.from_arrow(pa.table({"k": [1]}))
        F, _ = api(df)

        def outer(given):
            return engine.planned(("test inner",), {"df": given["df"]}, lambda inner: inner["df"])
        with pytest.raises(RuntimeError, match="does not nest"):
            engine.planned(("test outer",), {"df": df}, outer)
        # and the Engine still plans afterwards
        assert engine.to_arrow(engine.planned(("test after",), {"df": df}, lambda g: g["df"].select(
            (F.col("k") + 1).alias("k")))).to_pylist() == [{"k": 2}]


def test_a_planned_result_as_a_view_a_table_or_arrow_has_the_same_rows_recorded_or_replayed():
    planned = []
    with Engine("duckdb") as engine:
        for n in (3, 5):  # recorded, then replayed
            df = engine.from_arrow(pa.table({"k": list(range(n)), "v": [str(i % 2) for i in range(n)]}))
            F, _ = api(df)

            def transform(given):
                planned.append(n)
                return engine.cut(given["df"].filter(F.col("k") > 0), reused=True).groupBy("v").agg(
                    F.count(F.lit(1)).alias("rows"))
            want = rows(engine.to_arrow(transform({"df": df})))
            view = engine.planned(("test modes",), {"df": df}, transform)
            table = engine.planned(("test modes",), {"df": df}, transform, "table")
            assert rows(engine.to_arrow(view)) == rows(engine.to_arrow(table)) == want
            assert rows(engine.planned(("test modes",), {"df": df}, transform, "arrow")) == want
            assert engine._bare[id(table)][1] in engine._tables  # a table of the step, dropped with it
    assert planned == [3, 3, 5]  # the test's own call each time; the planned ones once, for the first frame


def test_a_frame_given_twice_with_the_transforms_own_cuts_replays_each_in_its_place():
    planned = []
    with Engine("duckdb") as engine:
        for n in (4, 6):
            df = engine.from_arrow(pa.table({"k": list(range(n))}))
            other = engine.from_arrow(pa.table({"k": list(range(n + 10))}))
            F, _ = api(df)

            def transform(given):
                planned.append(n)
                small = engine.cut(given["a"].filter(F.col("k") > 1))
                large = engine.cut(given["c"].filter(F.col("k") > 2))
                return small.select(F.lit("small").alias("part")).union(given["b"].select(F.lit("all").alias("part"))) \
                    .union(large.select(F.lit("large").alias("part"))).groupBy("part").agg(F.count(F.lit(1)).alias("rows"))
            got = engine.planned(("test twice",), {"a": df, "b": df, "c": other}, transform, "arrow")
            assert {r["part"]: r["rows"] for r in got.to_pylist()} == {"small": n - 2, "all": n, "large": n + 7}
            # the same shape but three different frames: not the plan of a frame given twice
            got = engine.planned(("test twice",), {"a": df, "b": other, "c": other}, transform, "arrow")
            assert {r["part"]: r["rows"] for r in got.to_pylist()} == {"small": n - 2, "all": n + 10, "large": n + 7}
    assert planned == [4, 4]
