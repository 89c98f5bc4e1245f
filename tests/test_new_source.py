"""A sixth source declared by one new folder, `returns/defs.yaml`, and nothing else: landed files
reach bronze, silver and the quarantine through the real daemon, with checks, status and the
asset graph, partitioned as declared."""

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

from lakehouse.contracts.declared import SOURCES_DIR
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.settings import load_settings

LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")
ROOT = Path(__file__).resolve().parents[1]
DAY = dt.date(2026, 6, 1)

RETURNS = """\
# A copy of events/defs.yaml with names changed: customer returns, one CSV a day, in a folder
# of their own and only as CSV.
type: lakehouse.components.RetailSource
attributes:
  name: returns
  description: Returned order lines from the returns desk.
  landed_as: CSV with header; dd/MM/yyyy dates
  owner: team:data-platform
  landing: {prefix: desk/returns/, formats: [csv], delimiter: ";"}
  keys: [return_id]
  history: events
  partition: {column: return_date, grain: day}
  columns:
    - {name: return_id, type: string, description: Return identifier., required: true, normalize: upper}
    - {name: order_id, type: string, description: Order line returned., required: true}
    - {name: return_date, type: date, description: Day of the return., required: true, parse: dd/MM/yyyy}
    - {name: qty, type: int, description: Units returned., required: true, min_value: 0, min_exclusive: true}
    - {name: reason, type: string, description: Why it came back., normalize: lower,
       accepted: [damaged, wrong_item, changed_mind]}
"""


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("returns")
    sources = root / "sources"
    shutil.copytree(SOURCES_DIR, sources)
    (sources / "returns").mkdir()
    (sources / "returns" / "defs.yaml").write_text(RETURNS)
    landing = root / "landing"
    env = {**os.environ, "LAKEHOUSE_HOME": str(root / "home"), "DAGSTER_HOME": str(root / "home" / "dagster"),
           "LAKEHOUSE_LANDING_URI": f"file://{landing}", "LAKEHOUSE_START_DATE": DAY.isoformat(),
           "LAKEHOUSE_SOURCES_DIR": str(sources)}
    env.pop("LAKEHOUSE_PROFILE", None)
    # The generator writes every declared source: plain rows for one it has no code for.
    made = subprocess.run([LAKEHOUSE, "generate", "--days", "1", "--start", DAY.isoformat(), "--seed", "8",
                           "--scale", "0.05"], env=env, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    folder = landing / "desk" / "returns" / f"ingest_date={DAY}"
    assert [p.name for p in folder.iterdir()] == [f"returns_{DAY:%Y%m%d}.csv"]
    # written as declared: semicolons
    assert (folder / f"returns_{DAY:%Y%m%d}.csv").read_text().splitlines()[0] == "return_id;order_id;return_date;qty;reason"
    # read with the declared delimiter (the rows also hold commas)
    rows = ["return_id;order_id;return_date;qty;reason"]
    rows += [f"r{i:04d};O{i:05d},a,b;{DAY:%d/%m/%Y};{1 + i % 3};{['Damaged', 'wrong_item', 'changed_mind'][i % 3]}"
             for i in range(40)]
    rows += ["r9001;O1;01/06/2026;many;damaged", "r9002;O2;31/02/2026;1;damaged", "r9003;O3;01/06/2026;1;lost"]
    (folder / "returns.csv").write_text("\n".join(rows) + "\n")
    (folder / "returns.json").write_text('[{"return_id": "r1"}]')  # not a format this source accepts
    # the old default place is no source's prefix any more: recorded as ignored, not loaded
    stray = landing / "retail" / "returns" / f"ingest_date={DAY}"
    stray.mkdir(parents=True)
    (stray / "old.csv").write_text("return_id;order_id\nr1;O1\n")
    done = subprocess.run([LAKEHOUSE, "run", "--timeout", "500"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return env, load_settings(env)


def test_its_files_reach_bronze_silver_and_the_quarantine_partitioned_as_declared(lake):
    _, settings = lake
    store = TableStore(catalog_from_settings(settings))
    generated = 10  # round(200 * 0.05) rows, all valid
    assert store.read("bronze.returns").num_rows == generated + 43
    silver = store.read("silver.returns")
    assert silver.num_rows == generated + 40
    assert set(silver["reason"].to_pylist()) == {"damaged", "wrong_item", "changed_mind"}
    assert {f"R{i:04d}" for i in range(40)} < set(silver["return_id"].to_pylist())
    quarantined = {json.loads(r["original"])["return_id"]: r["rules"]
                   for r in store.read("silver.quarantine").to_pylist() if r["source"] == "returns"}
    assert quarantined == {"r9001": ["qty.invalid"], "r9002": ["return_date.invalid"], "r9003": ["reason.not_accepted"]}
    spec = store.load("silver.returns").spec()
    assert [(str(f.transform), store.load("silver.returns").schema().find_column_name(f.source_id))
            for f in spec.fields] == [("day", "return_date")]
    checks = {r["check_name"] for r in store.read("ops.dq_results").to_pylist() if r["asset"] == "silver/returns"}
    assert {"accounting", "keys_unique", "quarantine_share"} <= checks
    rejected = {r["key"]: r["reason"] for r in store.read("bronze.rejected_files").to_pylist() if r["source"] == "returns"}
    assert rejected == {f"desk/returns/ingest_date={DAY}/returns.json":
                        "a json file, and this source accepts csv (landing.formats in its defs.yaml)"}
    ignored = {r["key"]: r["reason"] for r in store.read("ops.ingestion_log").to_pylist() if r["status"] == "IGNORED"}
    assert ignored[f"retail/returns/ingest_date={DAY}/old.csv"] == \
        "retail/returns/ is not where returns lands: its files go under desk/returns/ (landing.prefix in its defs.yaml)"


def test_status_and_the_asset_graph_show_it(lake):
    env, settings = lake
    status = subprocess.run([LAKEHOUSE, "status"], env=env, capture_output=True, text=True, timeout=300)
    assert status.returncode == 0, status.stderr[-3000:]
    assert "silver.returns" in status.stdout and f"returns    {DAY}" in status.stdout

    query = "{ assetNodes { assetKey { path } isPartitioned dependencyKeys { path } } }"
    os.environ["LAKEHOUSE_SOURCES_DIR"] = env["LAKEHOUSE_SOURCES_DIR"]  # for the code server this starts
    try:
        with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance, \
                define_out_of_process_context(str(ROOT / "workspace.yaml"), None, instance) as context:
            result = execute_dagster_graphql(context, query)
    finally:
        del os.environ["LAKEHOUSE_SOURCES_DIR"]
    nodes = {"/".join(n["assetKey"]["path"]): n for n in result.data["assetNodes"]}
    for key, parents in (("raw/returns", set()), ("bronze/returns", {"raw/returns"}),
                         ("silver/returns", {"bronze/returns"})):
        assert nodes[key]["isPartitioned"], key
        assert {"/".join(d["path"]) for d in nodes[key]["dependencyKeys"]} == parents, key
    assert "bronze/returns" in {"/".join(d["path"]) for d in nodes["silver/quarantine"]["dependencyKeys"]}
