"""The Dagster UI tells the whole story: `lakehouse ui` (what `make ui` runs) on a fresh
instance runs a small demo, then serves the webserver and daemon headless on 127.0.0.1. Its GraphQL
API and Debian's Chromium, driven by Playwright, see the graph, the checks, the
schemas and the lineage. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from asset_graph import MATERIALIZED, OPS, PARENTS

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
# As root in a sandbox with no internet: no sandboxing, and no background calls home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
GROUPS = ("raw", "bronze", "silver", "gold", "ops")
TABLES = [k for k in PARENTS if not k.startswith("raw/")]

METADATA = """
  metadataEntries { label __typename
    ... on TableSchemaMetadataEntry { schema { columns { name type description } } }
    ... on TableColumnLineageMetadataEntry { lineage { columnName columnDeps { assetKey { path } columnName } } }
    ... on TextMetadataEntry { text }
    ... on MarkdownMetadataEntry { mdStr }
    ... on IntMetadataEntry { intValue }
    ... on CodeReferencesMetadataEntry { codeReferences { __typename } }
  }
"""
GRAPH_QUERY = """
{ assetNodes {
    assetKey { path } groupName kinds description isMaterializable
    owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    dependencyKeys { path }
    assetChecksOrError { ... on AssetChecks { checks { name blocking
      executionForLatestMaterialization { status } } } }
    %s
    assetMaterializations(limit: 1) { partition %s }
} }
""" % (METADATA, METADATA)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    assert "errors" not in answer, answer["errors"]
    return answer["data"]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """`lakehouse ui` on an empty instance: a two-day dirty demo, then the webserver and daemon on a free port."""
    home = tmp_path_factory.mktemp("ui") / "home"
    url = f"http://127.0.0.1:{_free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_") and k != "DAGSTER_HOME"}
    env.update(LAKEHOUSE_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), LAKEHOUSE_UI_URL=url)
    log = home.parent / "ui.log"
    lakehouse = str(Path(sys.executable).parent / "lakehouse")
    with open(log, "w") as out:
        # Its own process group (the webserver); the daemon stops when the webserver does.
        process = subprocess.Popen([lakehouse, "ui", "--days", "2", "--scale", "0.1", "--dirty", "--seed", "11"],
                                   env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 900
        while True:
            assert process.poll() is None, f"lakehouse ui exited {process.returncode}:\n{log.read_text()[-5000:]}"
            assert time.monotonic() < deadline, f"the UI never answered:\n{log.read_text()[-5000:]}"
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(2)
        yield url, log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def nodes(ui):
    url, _ = ui
    return {"/".join(n["assetKey"]["path"]): n for n in _graphql(url, GRAPH_QUERY)["assetNodes"]}


def _entries(node_or_event) -> dict:
    return {e["label"]: e for e in node_or_event["metadataEntries"]}


def test_make_ui_ran_the_demo_first_then_served_on_the_configured_address(ui):
    url, log = ui
    text = log.read_text()
    assert "running the demo first" in text and f"Dagster UI on {url} " in text
    assert "Total sales" in text  # the demo's summary: it ran to the end before the UI started


def test_graphql_shows_the_whole_graph_raw_to_gold_with_ops_beside_it(nodes):
    assert set(nodes) == set(PARENTS)
    for key, parents in PARENTS.items():
        node = nodes[key]
        assert {"/".join(d["path"]) for d in node["dependencyKeys"]} == parents, key
        assert node["groupName"] == ("ops" if key in OPS else key.split("/")[0]), key
        assert node["isMaterializable"] == (key in MATERIALIZED), key
        assert node["description"] and node["owners"] and node["kinds"], key
        entries = _entries(node)
        assert entries["dagster/uri"]["text"] and entries["dagster/code_references"]["codeReferences"], key
    # A path through every layer, as the lineage page draws it.
    assert "raw/orders" in {"/".join(d["path"]) for d in nodes["bronze/orders"]["dependencyKeys"]}
    assert "gold/fact_orders" in {"/".join(d["path"]) for d in nodes["gold/mart_daily_sales"]["dependencyKeys"]}


def test_graphql_shows_checks_attached_and_evaluated_on_the_latest_materialization(nodes):
    for key in MATERIALIZED:
        checks = nodes[key]["assetChecksOrError"]["checks"]
        assert checks, key
        statuses = {c["name"]: (c["executionForLatestMaterialization"] or {}).get("status") for c in checks}
        assert set(statuses.values()) <= {"SUCCEEDED", "FAILED"}, (key, statuses)
    silver = {c["name"]: c for c in nodes["silver/orders"]["assetChecksOrError"]["checks"]}
    assert silver["accounting"]["blocking"] and silver["accounting"]["executionForLatestMaterialization"]["status"] == "SUCCEEDED"
    assert {"rule__qty_out_of_range", "keys_unique", "references__customers"} <= set(silver)


def test_graphql_shows_column_schemas_with_descriptions_and_column_lineage(nodes):
    for key in TABLES:
        columns = _entries(nodes[key])["dagster/column_schema"]["schema"]["columns"]
        assert columns and all(c["description"] for c in columns), key
        if key in MATERIALIZED and not key.startswith("bronze/"):
            lineage = {e["columnName"]: {("/".join(d["assetKey"]["path"]), d["columnName"]) for d in e["columnDeps"]}
                       for e in _entries(nodes[key])["dagster/column_lineage"]["lineage"]}
            assert set(lineage) == {c["name"] for c in columns}, key
    silver = {e["columnName"]: {("/".join(d["assetKey"]["path"]), d["columnName"]) for d in e["columnDeps"]}
              for e in _entries(nodes["silver/orders"])["dagster/column_lineage"]["lineage"]}
    assert silver["sales_amount"] == {("bronze/orders", "qty"), ("bronze/orders", "unit_price")}
    assert silver["region"] == {("silver/customers", "region")}
    mart = {e["columnName"]: {("/".join(d["assetKey"]["path"]), d["columnName"]) for d in e["columnDeps"]}
            for e in _entries(nodes["gold/mart_daily_sales"])["dagster/column_lineage"]["lineage"]}
    assert mart["sales"] == {("gold/fact_orders", "sales_amount")}


def test_graphql_materializations_carry_counts_snapshot_time_travel_and_lineage(nodes):
    for key in MATERIALIZED:
        (latest,) = nodes[key]["assetMaterializations"]
        entries = _entries(latest)
        assert entries["dagster/row_count"]["intValue"] >= 0, key
        assert entries["snapshot_id"]["text"].isdigit(), key
        assert f"lakehouse query --as-of {entries['snapshot_id']['text']}" in entries["time_travel"]["mdStr"], key
        if key.startswith("silver/"):
            assert "quarantine" in entries and "duplicate" in entries, key
            assert "dagster/column_lineage" in entries, key


def _browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: `make test` installs Debian's chromium"
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    return playwright, browser


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    playwright, browser = _browser()
    yield browser
    browser.close()
    playwright.stop()


def _screenshot(page, name: str, full_page: bool = False) -> None:
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=full_page)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000, name  # a picture


def _dismiss_welcome(page, timeout: float = 15000) -> None:
    """A fresh instance greets the first visitor with a community dialog over the page (on a busy
    machine it can come seconds after the page)."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=timeout)
        skip.click()
    except Exception:  # Playwright's TimeoutError: no dialog this time
        pass


def _click(page, locator) -> None:
    """Click, and if a late welcome dialog is in the way, dismiss it and click again."""
    try:
        locator.click(timeout=10000)
    except Exception:  # Playwright's TimeoutError: something over the page took the click
        _dismiss_welcome(page, timeout=2000)
        locator.click()


def test_browser_lineage_page_renders_every_layer_and_asset(ui, browser):
    url, _ = ui
    # Every group expanded: what the UI's "Expand all groups" stores for the global graph.
    expanded = ",".join(f"global@global:{g}" for g in GROUPS)
    context = browser.new_context(viewport={"width": 1800, "height": 2000})
    context.add_init_script(
        "localStorage.setItem('asset-graph-open-graph-nodes-global-__GLOBAL__', "
        f"JSON.stringify({{expanded: '{expanded}'}}));")
    page = context.new_page()
    page.goto(f"{url}/asset-groups")
    _dismiss_welcome(page)
    page.get_by_text("Global asset lineage").wait_for()
    for _ in range(3):  # zoom out until the whole graph is in view
        _click(page, page.locator("[aria-label=zoom_out]"))
        page.wait_for_timeout(400)
    page.get_by_text("fact_orders", exact=True).wait_for()
    _screenshot(page, "lineage.png")
    labels = set(page.inner_text("body").split("\n"))
    for group in GROUPS:
        assert group in labels, group
    for name in ["customers", "orders", "events", "products", "fact_orders", "mart_daily_sales", "dim_customer",
                 "quarantine", "ingestion_log", "dq_results", "rejected_files"]:
        assert any(label == name or (label.startswith(name[:8]) and "…" in label) for label in labels), name
    context.close()


def test_browser_silver_orders_page_renders_the_checks_with_their_statuses(ui, browser, nodes):
    url, _ = ui
    expected = {c["name"]: c["executionForLatestMaterialization"]["status"].capitalize()
                for c in nodes["silver/orders"]["assetChecksOrError"]["checks"]}
    context = browser.new_context(viewport={"width": 1600, "height": 1400})
    page = context.new_page()
    page.goto(f"{url}/assets/silver/orders")
    _dismiss_welcome(page)
    page.get_by_text("Latest check results").wait_for()
    page.get_by_text("sales_amount", exact=True).wait_for()  # the column schema
    page.get_by_text("qty * unit_price, exact in decimal.").wait_for()
    _screenshot(page, "silver_orders.png", full_page=True)

    page.goto(f"{url}/assets/silver/orders?view=checks")
    page.get_by_text(f"Checks ({len(expected)})").wait_for()
    _screenshot(page, "silver_orders_checks.png", full_page=True)
    lines = page.inner_text("body").split("\n")
    for name, status in expected.items():
        at = lines.index(name)
        assert status in lines[at:at + 4], (name, status, lines[at:at + 4])  # name, then its status
    context.close()

