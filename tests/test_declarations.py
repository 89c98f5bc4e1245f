"""Source declarations (lakehouse/defs/sources/<source>/defs.yaml): read once, checked, and evolving
their tables when they change."""

import dataclasses
import datetime as dt
import json
import logging
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from lakehouse.components import RetailSource
from lakehouse.contracts import CONTRACTS
from lakehouse.contracts.declared import SOURCES_DIR, DeclarationError, in_dependency_order, load_declarations
from lakehouse.contracts.model import Column, Partition
from lakehouse.generate import generate
from lakehouse.iceberg import IncompatibleChange, TableStore, catalog_from_settings
from lakehouse.resources.landing import LocalLandingZone
from lakehouse.settings import load_settings
from lakehouse.summary import render_tables
from lakehouse.tables import silver_table
from pipeline_helpers import process_day


def test_every_folder_is_one_source_and_the_component_reads_it_the_same_way():
    folders = sorted(p.name for p in SOURCES_DIR.iterdir() if (p / "defs.yaml").exists())
    assert sorted(CONTRACTS) == folders and len(folders) >= 4
    for name in folders:
        document = yaml.safe_load((SOURCES_DIR / name / "defs.yaml").read_text())
        assert document["type"] == "lakehouse.components.RetailSource"
        assert RetailSource.resolve_from_dict(document["attributes"]).contract() == CONTRACTS[name]
    # the component's schema (shown in the UI's docs) has every field of a contract
    schema = RetailSource.get_model_cls().model_json_schema()
    assert set(schema["properties"]) == {f.name for f in dataclasses.fields(type(CONTRACTS["orders"]))}


def test_declarations_are_parsed_as_pyyaml_does_and_resolved_again_when_they_change(tmp_path, monkeypatch, caplog):
    from lakehouse import checked_code, components, yamltext
    from lakehouse.checks.config import DEFAULT_PATH

    # libyaml, PyYAML's C parser: the same documents as its pure-Python loader
    assert yaml.__with_libyaml__, "PyYAML without libyaml: install its wheel from PyPI"
    monkeypatch.setattr(checked_code, "_warned", set())
    texts = [p.read_text() for p in [*sorted(SOURCES_DIR.glob("*/defs.yaml")), DEFAULT_PATH]]
    with caplog.at_level(logging.WARNING, logger="lakehouse.yamltext"):
        assert all(yamltext.load(text) == yaml.safe_load(text) for text in texts)
    assert "without libyaml" not in caplog.text  # the C loader was used
    with monkeypatch.context() as m, caplog.at_level(logging.WARNING, logger="lakehouse.yamltext"):
        m.delattr(yaml, "CSafeLoader")  # a PyYAML built without libyaml: the same, said as a slower path
        assert all(yamltext.load(text) == yaml.safe_load(text) for text in texts)
    assert "without libyaml" in caplog.text

    # The components are resolved once for the same declarations, and again for changed ones.
    first = components.declared_sources()
    assert [s.contract() for s in first] == [CONTRACTS[name] for name in CONTRACTS]
    assert all(a is b for a, b in zip(first, components.declared_sources()))
    root = _copy(tmp_path)
    _edit(root, "orders", lambda a: a["columns"].append({"name": "coupon", "type": "string", "description": "A code."}))
    monkeypatch.setattr(components, "declaration_file", lambda name: root / name / "defs.yaml")
    orders = next(s for s in components.declared_sources() if s.contract().name == "orders")
    assert orders.contract().column_names[-1] == "coupon" and "coupon" not in CONTRACTS["orders"].column_names
    # the UI's docs of the component: made once, a dict of its own for each caller
    docs = components.component_docs()
    assert docs == components.component_docs() and docs is not components.component_docs()


def test_lookups_come_before_the_sources_that_use_them():
    order = in_dependency_order(CONTRACTS)
    for name, contract in CONTRACTS.items():
        assert all(order.index(lk.source) < order.index(name) for lk in contract.lookups)


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "sources"
    shutil.copytree(SOURCES_DIR, root)
    return root


def _edit(root: Path, source: str, change) -> None:
    path = root / source / "defs.yaml"
    document = yaml.safe_load(path.read_text())
    change(document["attributes"])
    path.write_text(yaml.safe_dump(document, sort_keys=False))


@pytest.mark.parametrize("change, says", [
    (lambda a: a["columns"][0].update(colour="red"), ["columns[0]", "unknown field(s) colour"]),
    (lambda a: a["columns"][1].update(type="datetime"), ["order_date", "'datetime'", "decimal(p,s)"]),
    (lambda a: a.update(keys=["order_no"]), ["key 'order_no' is not a declared column"]),
    (lambda a: a.update(name="sales"), ["name 'sales' differs from its folder 'orders'"]),
    (lambda a: a["lookups"][0].update(source="crm"), ["lookup source 'crm' is not declared"]),
    (lambda a: a.update(partition={"column": "channel", "grain": "month"}), ["'channel' is not a date column"]),
    (lambda a: a.update(partition={"column": "order_date", "grain": "week"}), ["grain 'week'", "day, month, year"]),
    (lambda a: a.pop("columns"), ["declares no columns"]),
    (lambda a: a.update(keys=[]), ["keys is empty"]),
    (lambda a: a.update(name="quarantine"), ["name 'quarantine' must be", "lakehouse tables use"]),
    (lambda a: a["columns"][6].update(accepted=["web", True]), ["channel", "accepted values must be text"]),
    (lambda a: a["columns"][1].update(parse="dd-mmm"), ["order_date", "not a date format"]),
    (lambda a: a["columns"][1].update(type="timestamp"), ["order_date", "parse: epoch_ms"]),
    (lambda a: a["columns"][2].update(normalize="title"), ["customer_id", "normalize 'title'"]),
    (lambda a: a["columns"][2].update(pattern="^(C"), ["customer_id", "not a regular expression"]),
    (lambda a: a["columns"][1].update(min_value="2020"), ["order_date", "min_value '2020'", "YYYY-MM-DD, in quotes"]),
    (lambda a: a["columns"][1].update(min_value="2020-W01-1"), ["order_date", "min_value '2020-W01-1'"]),  # Python reads it
    (lambda a: a["columns"][1].update(max_value=dt.date(2030, 1, 1)), ["order_date", "max_value", "in quotes"]),
    (lambda a: a["columns"][4].update(min_value="one"), ["qty", "min_value 'one'", "must be a number"]),
    (lambda a: a["columns"][6].update(max_value=3), ["channel", "max_value applies to numbers, dates and timestamps"]),
    (lambda a: a["lookups"][0].update(column="cust"), ["lookup column 'cust' is not a declared column"]),
    (lambda a: a["lookups"][0].update(source="orders", key="order_id", bring=["channel"]), ["cycle", "orders -> orders"]),
    (lambda a: a.update(landing={"prefix": "retail/orders"}), ["landing: prefix 'retail/orders'", "ending in '/'"]),
    (lambda a: a.update(landing={"prefix": "../orders/"}), ["landing: prefix '../orders/'", "folder names"]),
    (lambda a: a.update(landing={"prefix": "retail/ingest_date=x/"}), ["landing: prefix", "folder names"]),
    (lambda a: a.update(landing={"formats": ["xlsx"]}), ["landing: formats ['xlsx']", "csv, json, parquet"]),
    (lambda a: a.update(landing={"formats": []}), ["landing: formats []", "one or more"]),
    (lambda a: a.update(landing={"delimiter": ";;"}), ["landing: delimiter ';;' must be one character"]),
    (lambda a: a.update(landing={"encoding": "klingon"}), ["landing: encoding 'klingon'", "latin-1"]),
    (lambda a: a.update(landing={"sheet": 1}), ["landing", "unknown field(s) sheet"]),
    (lambda a: a.update(landing={"encoding": "utf-16"}), ["landing: encoding 'utf-16'", "ASCII"]),
    (lambda a: a.update(landing={"formats": ["json"], "delimiter": ";"}), ["apply to csv files"]),
    (lambda a: a.update(landing={"prefix": "retail/"}), ["customers/defs.yaml and", "prefix 'retail/customers/' of "
                                                         "customers is inside 'retail/' of orders"]),
])
def test_a_wrong_declaration_names_the_file_the_field_and_the_fix(tmp_path, change, says):
    root = _copy(tmp_path)
    _edit(root, "orders", change)
    with pytest.raises(DeclarationError) as error:
        load_declarations(root)
    assert str(root / "orders" / "defs.yaml") in str(error.value) or "cycle" in str(error.value)
    for text in says:
        assert text in str(error.value)


def test_invalid_yaml_and_a_foreign_type_are_refused(tmp_path):
    root = _copy(tmp_path)
    (root / "orders" / "defs.yaml").write_text("type: lakehouse.components.RetailSource\nattributes: [\n")
    with pytest.raises(DeclarationError, match="not valid YAML"):
        load_declarations(root)
    (root / "orders" / "defs.yaml").write_text("type: dagster.Other\nattributes: {}\n")
    with pytest.raises(DeclarationError, match="expected 'type: lakehouse.components.RetailSource'"):
        load_declarations(root)


START = dt.date(2026, 4, 6)


def _declare(monkeypatch, root: Path) -> None:
    """The declarations under `root`, read by the one reader, become this process's contracts
    (as LAKEHOUSE_SOURCES_DIR makes them at start; tests/test_new_source.py runs that way)."""
    for name, contract in load_declarations(root).items():
        monkeypatch.setitem(CONTRACTS, name, contract)


def test_a_changed_declaration_evolves_the_table_and_old_rows_stay_readable(tmp_path, monkeypatch):
    landing = tmp_path / "landing"
    generate(LocalLandingZone(f"file://{landing}"), days=2, start=START, seed=4, scale=0.05)
    settings = load_settings({"LAKEHOUSE_HOME": str(tmp_path / "home"), "LAKEHOUSE_LANDING_URI": f"file://{landing}",
                              "LAKEHOUSE_START_DATE": START.isoformat()})
    store = TableStore(catalog_from_settings(settings))
    process_day(settings, "duckdb", START)
    before, events_before = store.read("silver.orders"), store.read("silver.events")
    assert [(c.transform.__class__.__name__, c.name) for c in store.load("silver.orders").spec().fields] == \
        [("MonthTransform", "order_date_month")]
    assert store.load("silver.orders").properties["lakehouse.declared.keys"] == "order_id"

    # The orders declaration gains a column and stores silver by day instead of by month;
    # the events declaration drops a column gold does not use.
    root = _copy(tmp_path)
    _edit(root, "orders", lambda a: (a["partition"].update(grain="day"), a["columns"].append(
        {"name": "coupon", "type": "string", "description": "Discount code, when one was used."})))
    _edit(root, "events", lambda a: a.update(columns=[c for c in a["columns"] if c["name"] != "payload"]))
    _declare(monkeypatch, root)
    process_day(settings, "duckdb", START + dt.timedelta(days=1))

    table = store.load("silver.orders")
    assert [str(f.transform) for f in table.spec().fields] == ["day"]
    # the files already written keep the spec they were written with
    assert [[str(f.transform) for f in spec.fields] for spec in table.metadata.partition_specs][-2:] == [["month"], ["day"]]
    assert "coupon" in table.schema().column_names
    note = table.properties["lakehouse.evolution"]
    assert "+coupon" in note and "month(order_date) -> day(order_date)" in note
    assert note in render_tables(store)
    now = store.read("silver.orders")
    old = now.filter(pa.compute.equal(now["_ingest_date"], START))
    assert old.num_rows == before.num_rows and old["coupon"].null_count == old.num_rows
    assert sorted(old["order_id"].to_pylist()) == sorted(before["order_id"].to_pylist())
    assert now.num_rows > before.num_rows
    # a dropped column is kept with its old values, empty in new rows, and the change is shown
    events = store.read("silver.events")
    old, new = (events.filter(pa.compute.equal(events["_ingest_date"], d)) for d in (START, START + dt.timedelta(days=1)))
    assert sorted(old["payload"].to_pylist(), key=str) == sorted(events_before["payload"].to_pylist(), key=str)
    assert new.num_rows and new["payload"].null_count == new.num_rows
    dropped = store.load("silver.events").properties["lakehouse.evolution"]
    assert "no longer declared, kept (null in new rows): payload" in dropped and dropped in render_tables(store)

    # A type Iceberg cannot convert in place is refused, naming the table, the column and the fix.
    _edit(root, "orders", lambda a: [c.update(type="int") for c in a["columns"] if c["name"] == "channel"])
    _declare(monkeypatch, root)
    fresh = TableStore(catalog_from_settings(settings))
    with pytest.raises(IncompatibleChange) as error:
        fresh.ensure_table("silver.orders", silver_table("orders").schema, silver_table("orders").partition_by)
    assert "silver.orders: column 'channel' is string" in str(error.value) and "Fix:" in str(error.value)
    assert store.load("silver.orders").metadata.current_schema_id == table.metadata.current_schema_id


REFUSED = [
    (lambda a: a.update(keys=["order_id", "customer_id"]),
     "its rows were written with keys 'order_id', and the declaration now says 'customer_id, order_id'"),
    (lambda a: a.update(history="snapshot"), "its rows were written with history 'events'"),
    (lambda a: [c.update(type="int") for c in a["columns"] if c["name"] == "channel"],
     "column 'channel' is string in the table but is now declared int"),
]


def test_lakehouse_run_refuses_a_declaration_its_table_cannot_follow_before_anything_runs(tmp_path, monkeypatch, capsys):
    from lakehouse.runner import EXIT_CONFIG, run_pending

    landing = tmp_path / "landing"
    generate(LocalLandingZone(f"file://{landing}"), days=1, start=START, seed=4, scale=0.02)
    settings = load_settings({"LAKEHOUSE_HOME": str(tmp_path / "home"), "LAKEHOUSE_LANDING_URI": f"file://{landing}",
                              "LAKEHOUSE_START_DATE": START.isoformat()})
    process_day(settings, "duckdb", START)
    table = TableStore(catalog_from_settings(settings)).load("silver.orders")
    for i, (change, says) in enumerate(REFUSED):
        root = _copy(tmp_path / str(i))
        _edit(root, "orders", change)
        _declare(monkeypatch, root)
        outcome = run_pending(settings, timeout=60)
        assert outcome.code == EXIT_CONFIG and not outcome.runs, says
        assert f"{SOURCES_DIR / 'orders' / 'defs.yaml'} does not fit its table: silver.orders: {says}" in outcome.render()
        assert "Fix:" in outcome.render() and "Nothing was run." in outcome.render()
        with pytest.raises(IncompatibleChange, match=re.escape(says)):  # and a step that met it would refuse too
            TableStore(catalog_from_settings(settings)).ensure_table(
                "silver.orders", silver_table("orders").schema, silver_table("orders").partition_by,
                declared=dict(silver_table("orders").declared))
        after = TableStore(catalog_from_settings(settings)).load("silver.orders")  # refused: nothing changed
        assert (after.properties, after.metadata.current_schema_id) == (table.properties, table.metadata.current_schema_id)
    # a backfill is refused before it is queued
    from lakehouse.cli import main
    for name, value in (("LAKEHOUSE_HOME", str(tmp_path / "home")), ("LAKEHOUSE_LANDING_URI", f"file://{landing}"),
                        ("LAKEHOUSE_START_DATE", START.isoformat()), ("DAGSTER_HOME", str(settings.dagster_home))):
        monkeypatch.setenv(name, value)
    assert main(["backfill", "--start", START.isoformat(), "--end", START.isoformat(), "--no-wait"]) == 2
    assert f"lakehouse backfill: source declaration {SOURCES_DIR / 'orders' / 'defs.yaml'}" in capsys.readouterr().err


def test_keys_may_be_reordered_and_an_empty_table_takes_new_keys(tmp_path, monkeypatch):
    settings = load_settings({"LAKEHOUSE_HOME": str(tmp_path / "home"), "LAKEHOUSE_START_DATE": START.isoformat()})
    store = TableStore(catalog_from_settings(settings))
    orders = silver_table("orders")
    store.ensure_table(orders.identifier, orders.schema, orders.partition_by, declared=dict(orders.declared))
    root = _copy(tmp_path)
    _edit(root, "orders", lambda a: a.update(keys=["order_id", "customer_id"]))
    _declare(monkeypatch, root)
    changed = silver_table("orders")  # no rows yet: the new keys are taken and recorded
    TableStore(catalog_from_settings(settings)).ensure_table(
        changed.identifier, changed.schema, changed.partition_by, declared=dict(changed.declared))
    assert store.load("silver.orders").properties["lakehouse.declared.keys"] == "customer_id, order_id"
    _edit(root, "orders", lambda a: a.update(keys=["customer_id", "order_id"]))  # the same keys in another order
    _declare(monkeypatch, root)
    assert silver_table("orders").declared == changed.declared


def test_the_ui_docs_get_the_component_schema(lakehouse_env):
    from lakehouse.wiring import build_definitions

    docs = build_definitions(lakehouse_env).metadata["plugin_component_types_json"].value
    (entry,) = [c for namespace in docs for c in namespace["componentTypes"]]
    assert entry["name"] == "lakehouse.components.RetailSource" and "A source of the landing zone" in entry["description"]
    assert {"columns", "keys", "partition", "lookups"} <= set(json.loads(entry["schema"])["properties"])


def test_the_four_retail_sources_keep_their_asset_keys_tables_and_checks(lakehouse_env):
    from lakehouse.wiring import build_definitions

    graph = build_definitions(lakehouse_env).resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {f"{layer}/{s}" for s in ("orders", "customers", "products", "events")
            for layer in ("raw", "bronze", "silver")} | {"gold/dim_customer", "gold/dim_product"} <= keys
    assert [silver_table(s).partition_by for s in ("orders", "events", "customers")] == \
        [(("order_date", "month"),), (("event_date", "month"),), ()]
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert {("silver/orders", "accounting"), ("silver/orders", "keys_unique"), ("silver/orders", "quarantine_share"),
            ("gold/dim_customer", "covers_facts")} <= checks


def test_dagsters_component_loader_builds_each_source_like_the_code_location(lakehouse_env):
    """`load_from_defs_folder` walks lakehouse/defs as `dg` does; each RetailSource builds its own
    raw, bronze and silver assets and checks, the same keys, specs and checks the project has."""
    import dagster as dg
    from lakehouse.wiring import build_definitions, project_resources

    components = dg.load_from_defs_folder(path_within_project=SOURCES_DIR.parent)
    loaded = dg.Definitions.merge(components, dg.Definitions(resources=project_resources(lakehouse_env)))
    loaded = loaded.resolve_asset_graph()
    project = build_definitions(lakehouse_env).resolve_asset_graph()
    for name in CONTRACTS:
        for layer in ("raw", "bronze", "silver"):
            key = dg.AssetKey([layer, name])
            ours, theirs = loaded.get(key), project.get(key)
            def seen(node):  # what the UI shows and automation uses; the project adds code links and table URIs
                metadata = {k: v for k, v in node.metadata.items()
                            if k not in ("dagster/component_origin", "dagster/code_references", "dagster/uri")}
                return (node.partitions_def, node.description, node.owners, node.group_name, node.kinds, node.tags,
                        node.parent_keys, node.automation_condition, metadata)

            assert seen(ours) == seen(theirs), key
            assert {c.name for c in loaded.get_check_keys_for_assets([key])} == \
                {c.name for c in project.get_check_keys_for_assets([key])}, key
    # alone, a source's bronze is a step of its own; in the project, one step loads every source of a day
    assert {loaded.get(dg.AssetKey(["bronze", n])).assets_def.op.name for n in CONTRACTS} == {f"bronze_{n}" for n in CONTRACTS}
    assert {project.get(dg.AssetKey(["bronze", n])).assets_def.op.name for n in CONTRACTS} == {"bronze"}


@pytest.mark.parametrize("source, change, says", [
    ("events", lambda c: dataclasses.replace(c, partition=None), "partition: {column: event_date"),
    ("customers", lambda c: dataclasses.replace(c, dimension="dim_client"), "dimension 'dim_client' has no gold code"),
])
def test_a_declaration_gold_relies_on_cannot_be_taken_away(lakehouse_env, monkeypatch, source, change, says):
    from lakehouse.wiring import build_definitions

    monkeypatch.setitem(CONTRACTS, source, change(CONTRACTS[source]))
    with pytest.raises(DeclarationError, match=re.escape(says)):
        build_definitions(lakehouse_env)


@pytest.mark.parametrize("change, says", [
    (lambda a: a["derived"].append({"name": "margin", "type": "long", "description": "Margin."}),
     "derived column(s) with no code: margin (events)"),
    (lambda a: [c.update(name="ts") for c in a["columns"] if c["name"] == "timestamp"],
     "derived column event_date is computed from timestamp, and events declares no timestamp"),
])
def test_a_derived_column_needs_its_code_and_the_columns_it_reads(tmp_path, change, says):
    import os
    import subprocess
    import sys

    root = _copy(tmp_path)
    _edit(root, "events", change)
    env = {**os.environ, "LAKEHOUSE_SOURCES_DIR": str(root), "LAKEHOUSE_HOME": str(tmp_path / "home")}
    done = subprocess.run([str(Path(sys.executable).parent / "lakehouse"), "status"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.startswith("lakehouse: source declaration error:") and says in done.stderr
