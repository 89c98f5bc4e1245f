"""Plans kept on disk for later processes (lakehouse/plan_cache.py): a new process replays them and
writes the same tables as one that planned; plans do not depend on the process that made them
(its hash seed); only plain keys are kept; a damaged file or a folder that cannot be written is
planned around and recorded as a fallback; other code's folders are pruned."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from lakehouse import checked_code, plan_cache
from lakehouse.contracts import CONTRACTS
from lakehouse.resources import engine as engine_module
from lakehouse.resources.engine import Engine
from lakehouse.settings import SettingsError, load_settings, plan_cache_dir
from lakehouse.steps.measures import rows_by

TESTS = Path(__file__).parent

# Two dirty generated days and the dimensions, in a fresh process and home, with the plan cache
# given; prints what the process read and wrote and a digest of every silver and gold table.
CHILD = r"""
import contextlib, datetime as dt, hashlib, io, json, logging, sys
logging.disable(logging.WARNING)
from lakehouse import plan_cache
from lakehouse.generate import generate
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.resources.landing import open_landing_zone
from lakehouse.settings import load_settings
from pipeline_helpers import TABLES, process_day, process_dimensions, table_rows
settings = load_settings()
days = [dt.date(2026, 3, 10), dt.date(2026, 3, 11)]
with contextlib.redirect_stdout(io.StringIO()):
    generate(open_landing_zone(settings.landing_uri), days=2, start=days[0], seed=6, dirty=True, scale=0.02)
    for day in days:
        process_day(settings, "duckdb", day)
    process_dimensions(settings, "duckdb")
store = TableStore(catalog_from_settings(settings))
tables = {t: hashlib.sha256(repr(table_rows(store, t)).encode()).hexdigest() for t in TABLES}
print(json.dumps({"counts": dict(plan_cache.counts), "tables": tables}))
"""


def child(tmp: Path, name: str, cache: Path, seed: str) -> dict:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")},
           "LAKEHOUSE_HOME": str(tmp / name), "DAGSTER_HOME": str(tmp / name / "dagster"),
           "LAKEHOUSE_PLAN_CACHE": str(cache), "PYTHONHASHSEED": seed,
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def kept(cache: Path) -> dict[str, str]:
    (here,) = [p for p in cache.iterdir() if p.is_dir()]
    return {p.name: p.read_text() for p in here.glob("*.json")}


def test_a_new_process_replays_another_process_plans_and_writes_the_same_tables(tmp_path):
    first = child(tmp_path, "first", tmp_path / "cache", "1")
    assert first["counts"].get("read", 0) == 0 and first["counts"]["written"] > 20, first["counts"]
    # Another process, another hash seed, the same folder: it plans nothing and its tables are the same.
    again = child(tmp_path, "again", tmp_path / "cache", "2")
    assert again["counts"].get("written", 0) == 0, again["counts"]
    assert again["counts"]["read"] >= first["counts"]["written"], again["counts"]
    assert again["tables"] == first["tables"]
    # A process planning for itself under another hash seed makes the very same plans, byte for byte
    # (the same steps name their views alike, and CTEs are named from the SQL's text): what is kept
    # does not depend on the process that made it, such as an order of a set of names.
    other = child(tmp_path, "other", tmp_path / "other-cache", "3")
    assert other["tables"] == first["tables"]
    assert kept(tmp_path / "other-cache") == kept(tmp_path / "cache")


def test_only_plain_keys_are_kept_and_they_are_told_apart_by_value():
    orders = CONTRACTS["orders"]
    assert plan_cache.encode(("classify", orders)) == plan_cache.encode(("classify", dataclasses.replace(orders)))
    changed = dataclasses.replace(orders, keys=(*orders.keys, "channel"))
    assert plan_cache.encode(("classify", orders)) != plan_cache.encode(("classify", changed))
    values = [1, 1.0, True, "1", (1,), [1], None, ("a", ("b",)), ("a", "b")]
    assert len({plan_cache.encode(v) for v in values}) == len(values)
    assert plan_cache.encode(("rows_by", len)) is None  # a function: planned per process only
    assert plan_cache.encode({"a": 1}) is None


@pytest.fixture
def fresh(lakehouse_env, monkeypatch, tmp_path):
    """This process as a new one: no plans in memory, no folder opened; the cache in tmp_path."""
    monkeypatch.setattr(engine_module, "_plans", {})
    monkeypatch.setattr(plan_cache, "_folder", {})
    monkeypatch.setattr(checked_code, "_warned", set())
    monkeypatch.setenv("LAKEHOUSE_PLAN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def counted() -> dict[str, int]:
    """A planned transform (`rows_by`) on a few rows: three rows of two dates."""
    table = pa.table({"d": ["2026-03-10", "2026-03-11", "2026-03-10"], "v": [1, 2, 3]})
    with Engine("duckdb") as engine:
        return rows_by(engine, engine.from_arrow(table), "d")


WANT = {"2026-03-10": 2, "2026-03-11": 1}


def folder_of(cache: Path) -> Path:
    (here,) = [p for p in cache.iterdir() if p.is_dir()]
    return here


def test_a_damaged_plan_is_made_again_replaced_and_recorded(fresh, lakehouse_env, monkeypatch):
    assert counted() == WANT and plan_cache.counts["written"] >= 1
    (path,) = folder_of(fresh).glob("*.json")
    whole = path.read_text()
    path.write_text(whole[: len(whole) // 2])  # cut short by hand: os.replace never leaves a partial file
    monkeypatch.setattr(engine_module, "_plans", {})  # a new process
    assert counted() == WANT
    # Made again and replaced whole (its CTEs' names, hashes of the SQL with the views of the
    # moment, may differ: they are local to the statement).
    assert json.loads(path.read_text())["shape"] == json.loads(whole)["shape"]
    found = [f["message"] for f in checked_code.fallbacks(lakehouse_env.home)]
    assert any("was damaged" in m and "planned again and replaced" in m for m in found), found


def test_a_folder_that_cannot_be_written_leaves_planning_in_process_and_is_recorded(fresh, lakehouse_env,
                                                                                    monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("LAKEHOUSE_PLAN_CACHE", str(blocker / "plans"))  # under a file: no folder can be made
    written = plan_cache.counts["written"]
    assert counted() == WANT
    assert plan_cache.counts["written"] == written
    found = [f["message"] for f in checked_code.fallbacks(lakehouse_env.home)]
    assert any("cannot be used" in m and "LAKEHOUSE_PLAN_CACHE" in m for m in found), found


def test_other_code_reads_another_folder_and_old_folders_are_pruned(fresh, monkeypatch):
    assert counted() == WANT
    mine = folder_of(fresh)
    stale, recent = fresh / "from-old-code", fresh / "from-yesterday"
    for folder in (stale, recent):
        folder.mkdir()
    old = time.time() - (plan_cache.PRUNE_DAYS + 1) * 86400
    os.utime(stale, (old, old))
    monkeypatch.setattr(plan_cache, "_folder", {})  # a new process, of other code
    monkeypatch.setattr(engine_module, "_plans", {})
    monkeypatch.setattr(plan_cache, "code_digest", lambda: "other-code")
    read = plan_cache.counts["read"]
    assert counted() == WANT
    assert plan_cache.counts["read"] == read  # nothing read from this code's folder
    assert sorted(p.name for p in fresh.iterdir()) == sorted([mine.name, "from-yesterday", "other-code"])
    assert len(list((fresh / "other-code").glob("*.json"))) == 1


def test_the_setting(tmp_path):
    assert plan_cache_dir({"LAKEHOUSE_PLAN_CACHE": "off"}) is None
    assert plan_cache_dir({"LAKEHOUSE_PLAN_CACHE": str(tmp_path)}) == tmp_path
    assert plan_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "lakehouse" / "plans"
    assert plan_cache_dir({}) == Path.home() / ".cache" / "lakehouse" / "plans"
    with pytest.raises(SettingsError, match="LAKEHOUSE_PLAN_CACHE='plans' is not an absolute path"):
        load_settings({"LAKEHOUSE_HOME": str(tmp_path / "h"), "LAKEHOUSE_PLAN_CACHE": "plans"})
    (tmp_path / "f").write_text("")
    with pytest.raises(SettingsError, match="is a file, not a folder"):
        load_settings({"LAKEHOUSE_HOME": str(tmp_path / "h"), "LAKEHOUSE_PLAN_CACHE": str(tmp_path / "f")})
