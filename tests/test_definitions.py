"""The code location loads cleanly and wires raw -> bronze as the design says."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow as pa

from asset_graph import MATERIALIZED, OPS, PARENTS
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.layout import SOURCES
from lakehouse.tables import DIMENSION_SOURCES, dimension_table
from lakehouse.wiring import DAILY_JOB, DIMENSIONS_JOB, build_definitions

ROOT = Path(__file__).parents[1]


def test_dagster_validates_the_workspace_without_warnings_from_our_code(lakehouse_env):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        env=dict(os.environ), capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "All code locations passed validation" in output
    ours = [line for line in output.splitlines() if "Warning" in line and "/lakehouse/" in line]
    assert ours == []


def test_asset_graph_raw_to_gold(lakehouse_env):
    defs = build_definitions(lakehouse_env)
    graph = defs.resolve_asset_graph()
    store = TableStore(catalog_from_settings(lakehouse_env))
    key = lambda path: dg.AssetKey(path.split("/"))  # noqa: E731
    for child in MATERIALIZED:
        parents = PARENTS[child]
        node = graph.get(key(child))
        assert node.parent_keys == {key(p) for p in parents}, child
        assert node.group_name == child.split("/")[0] and node.owners and "iceberg" in node.kinds
        assert node.metadata["dagster/table_name"].startswith("lakehouse.")
        identifier = node.metadata["dagster/table_name"].split(".", 1)[1]
        store.ensure_table(identifier, pa.schema([pa.field("probe", pa.int64())]))
        assert node.metadata["dagster/uri"] == store.load(identifier).location()  # where the table really is
        references = node.metadata["dagster/code_references"].code_references
        assert references and all(Path(r.file_path).is_file() for r in references), child
        schema = node.metadata["dagster/column_schema"]
        assert schema.columns and all(c.description for c in schema.columns), child
        if child.startswith(("silver", "gold")):
            assert "duckdb" in node.kinds
            lineage = node.metadata["dagster/column_lineage"].deps_by_column
            assert set(lineage) == {c.name for c in schema.columns}, child
            assert {d.asset_key for deps in lineage.values() for d in deps} == node.parent_keys, child
        assert (node.partitions_def is None) == child.startswith("gold/dim_"), child
    for asset in graph.get_all_asset_keys():  # every asset, with a function or not, links to its code
        references = graph.get(asset).metadata["dagster/code_references"].code_references
        assert references and all(Path(r.file_path).is_file() and r.line_number for r in references), asset
    for source in SOURCES:
        assert graph.get(key(f"raw/{source}")).is_external
        assert graph.get(key(f"raw/{source}")).metadata["dagster/uri"].startswith(lakehouse_env.landing_uri)
    for name in OPS:
        node = graph.get(key(name))
        assert node.is_external and node.group_name == "ops" and node.parent_keys == {key(p) for p in PARENTS[name]}
        assert node.metadata["dagster/uri"].endswith(name.replace("/", "/" if lakehouse_env.profile == "local" else ".db/"))
        columns = node.metadata["dagster/column_schema"].columns
        assert columns and all(c.description for c in columns) and node.description
    daily = defs.resolve_job_def(DAILY_JOB)
    # one subsettable bronze step for every source, a silver step each, the three partitioned gold steps
    assert len(daily.nodes) == 1 + len(SOURCES) + 3
    assert {n.name for n in defs.resolve_job_def(DIMENSIONS_JOB).nodes} == \
        {dimension_table(s).identifier.replace(".", "__") for s in DIMENSION_SOURCES}


def test_the_transforms_load_without_dagster_or_resources():
    """transforms/ holds pure functions: a cluster job or a notebook can use them without Dagster's wiring."""
    import subprocess
    import sys

    probe = ("import sys, lakehouse.transforms.bronze, lakehouse.transforms.silver, lakehouse.transforms.gold; "
             "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith('dagster')} | "
             "{m for m in sys.modules if m.startswith('lakehouse.resources')}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_loading_the_code_location_imports_no_engine_catalog_or_aws_client():
    """Every run worker and code server loads the definitions first: the engines, PyIceberg's catalog
    and tables, boto3 and Pipes are imported by the steps that use them, not by the load."""
    import subprocess
    import sys

    heavy = ("sqlframe", "sqlglot", "duckdb", "pyspark", "pyiceberg.catalog", "pyiceberg.table", "boto3",
             "dagster_aws", "dagster_pyspark")
    probe = f"import sys, lakehouse.definitions; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr[-3000:]


def test_deployed_code_references_link_to_the_git_repository(lakehouse_env, monkeypatch):
    """LAKEHOUSE_GIT_URL set (a deployment): every asset's code link is a URL into the repository
    at LAKEHOUSE_GIT_BRANCH; unset (make ui), they are local files (test_asset_graph_raw_to_gold)."""
    from lakehouse.settings import load_settings

    monkeypatch.setenv("LAKEHOUSE_GIT_URL", "https://github.com/acme/lakehouse/")
    monkeypatch.setenv("LAKEHOUSE_GIT_BRANCH", "release")
    graph = build_definitions(load_settings()).resolve_asset_graph()
    for asset in graph.get_all_asset_keys():
        references = graph.get(asset).metadata["dagster/code_references"].code_references
        assert references and all(isinstance(r, dg.UrlCodeReference) for r in references), asset
        assert all(r.url.startswith("https://github.com/acme/lakehouse/tree/release/lakehouse/") for r in references)
    urls = [r.url for r in graph.get(dg.AssetKey(["raw", "orders"])).metadata["dagster/code_references"].code_references]
    assert urls[0].split("#")[0].endswith("/lakehouse/defs/sources/orders/defs.yaml")


def test_dg_checks_and_lists_the_project_and_names_a_wrong_declaration(lakehouse_env, tmp_path):
    """`dg check defs` and `dg list defs` (dagster-dg-cli, [tool.dg] in pyproject.toml) see the
    assets every declared source makes; a wrong declaration fails the check, naming it."""
    import json
    import shutil

    from lakehouse.contracts.declared import SOURCES_DIR

    dg_cli = str(Path(sys.executable).parent / "dg")
    listed = subprocess.run([dg_cli, "list", "defs", "--json"], env=dict(os.environ), capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert listed.returncode == 0, listed.stderr[-3000:]
    keys = {a["asset_key"] for a in json.loads(listed.stdout)["assets"]}
    assert {f"{layer}/{s}" for s in SOURCES for layer in ("raw", "bronze", "silver")} <= keys
    assert {c["asset_key"] for c in json.loads(listed.stdout)["asset_checks"]} >= {f"silver/{s}" for s in SOURCES}

    broken = tmp_path / "sources"
    shutil.copytree(SOURCES_DIR, broken)
    text = (broken / "orders" / "defs.yaml").read_text()
    (broken / "orders" / "defs.yaml").write_text(text.replace("keys: [order_id]", "keys: [order_no]"))
    for sources, ok in ((SOURCES_DIR, True), (broken, False)):
        check = subprocess.run([dg_cli, "check", "defs", "--use-active-venv"], capture_output=True, text=True,
                               env={**os.environ, "LAKEHOUSE_SOURCES_DIR": str(sources)}, cwd=ROOT, timeout=300)
        out = check.stdout + check.stderr
        assert (check.returncode == 0) == ok, out[-3000:]
        assert ("All definitions loaded successfully" in out) == ok
        if not ok:
            assert f"{broken}/orders/defs.yaml: key 'order_no' is not a declared column" in out
