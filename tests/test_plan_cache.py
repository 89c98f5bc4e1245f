"""Plans kept on disk for later processes (lakehouse/plan_cache.py): a new process replays them and
writes the same tables as one that planned; plans do not depend on the process that made them
(its hash seed); only plain keys are kept; a damaged file or a folder that cannot be written is
planned around and recorded as a fallback; other code's folders are pruned."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pyarrow as pa
import pytest

from lakehouse import checked_code, plan_cache
from lakehouse.contracts import CONTRACTS
from lakehouse.resources import engine as engine_module
from lakehouse.resources.engine import Engine
from lakehouse.settings import SettingsError, load_settings, plan_cache_dir
from lakehouse.steps.measures import _rows_by

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


def folder_of(cache: Path) -> Path:
    (here,) = [p for p in cache.iterdir() if p.is_dir()]
    return here


def kept(cache: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder_of(cache).glob("*.json")}


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


class Kind(str, enum.Enum):
    A = "a"


def test_only_plain_keys_are_kept_and_they_are_told_apart_by_value():
    orders = CONTRACTS["orders"]
    assert plan_cache.encode(("classify", orders)) == plan_cache.encode(("classify", dataclasses.replace(orders)))
    changed = dataclasses.replace(orders, keys=(*orders.keys, "channel"))
    assert plan_cache.encode(("classify", orders)) != plan_cache.encode(("classify", changed))
    values = [1, 1.0, True, "1", (1,), [1], None, ("a", ("b",)), ("a", "b")]
    assert len({plan_cache.encode(v) for v in values}) == len(values)
    assert plan_cache.encode(("rows_by", len)) is None  # a function: planned per process only
    assert plan_cache.encode(Kind.A) is None  # equal to "a", and formats as "Kind.A": not plain
    assert plan_cache.encode({"a": 1}) is None


@pytest.fixture
def fresh(lakehouse_env, monkeypatch, tmp_path):
    """This process as a new one: no plans in memory, no folder opened, nothing counted; the cache in tmp_path."""
    monkeypatch.setattr(engine_module, "_plans", {})
    monkeypatch.setattr(plan_cache, "_folders", {})
    monkeypatch.setattr(plan_cache, "counts", plan_cache.collections.Counter())
    monkeypatch.setattr(checked_code, "_warned", set())
    monkeypatch.setenv("LAKEHOUSE_PLAN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def counted(key_extra=()) -> dict[str, int]:
    """A planned transform (`Engine.planned`, as `rows_by` calls it) on three rows of two dates."""
    table = pa.table({"d": ["2026-03-10", "2026-03-11", "2026-03-10"], "v": [1, 2, 3]})
    with Engine("duckdb") as engine:
        grouped = engine.planned(("rows_by", "d", *key_extra), {"df": engine.from_arrow(table)},
                                 lambda given: _rows_by(given["df"], "d"), "arrow")
    return {row["_group"]: int(row["_rows"]) for row in grouped.to_pylist()}


WANT = {"2026-03-10": 2, "2026-03-11": 1}


def fallbacks(settings) -> list[str]:
    return [f["message"] for f in checked_code.fallbacks(settings.home)]


def as_new_process(monkeypatch) -> None:
    monkeypatch.setattr(engine_module, "_plans", {})
    monkeypatch.setattr(plan_cache, "_folders", {})


def test_a_plan_is_read_back_by_a_new_process(fresh, monkeypatch):
    assert counted() == WANT and plan_cache.counts == {"written": 1}
    as_new_process(monkeypatch)
    assert counted() == WANT and plan_cache.counts == {"written": 1, "read": 1}


def rewrite(path: Path, change) -> None:
    """The kept file with its plan changed by `change(plan data)`, its digest and checksum made to match."""
    document = json.loads(path.read_text())
    data = json.loads(document["body"])
    change(data)
    document["body"] = json.dumps(data)
    document["sha256"] = hashlib.sha256(document["body"].encode()).hexdigest()
    path.write_text(json.dumps(document))


def cut_short(path: Path) -> None:
    path.write_text(path.read_text()[:100])  # by hand: os.replace never leaves a partial file


def bad_slot(path: Path) -> None:
    rewrite(path, lambda data: data["result"].append(1))  # one view given (slot 0), none made: slot 1 is nothing


def not_utf8(path: Path) -> None:
    path.write_bytes(b"\xff\xfe" + path.read_bytes())


def unknown_kind(path: Path) -> None:
    rewrite(path, lambda data: data["made"].append(["MACRO", ["SELECT 1"]]))


def altered(path: Path) -> None:
    document = json.loads(path.read_text())
    document["body"] = document["body"].replace("COUNT(1)", "COUNT(1) + 1")  # valid, and wrong: the checksum tells
    path.write_text(json.dumps(document))


def from_other_code(path: Path) -> None:
    document = json.loads(path.read_text())
    document["digest"] = "0" * 24
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("damage", [cut_short, not_utf8, bad_slot, unknown_kind, altered, from_other_code])
def test_a_file_that_is_not_this_codes_plan_is_made_again_replaced_and_recorded(fresh, lakehouse_env, monkeypatch,
                                                                                 damage):
    assert counted() == WANT
    (path,) = folder_of(fresh).glob("*.json")
    whole = json.loads(path.read_text())
    damage(path)
    as_new_process(monkeypatch)
    assert counted() == WANT
    assert plan_cache.counts == {"written": 2}  # not read: planned again, and replaced
    assert json.loads(json.loads(path.read_text())["body"])["shape"] == json.loads(whole["body"])["shape"]
    assert any("was damaged" in m and "planned again and replaced" in m for m in fallbacks(lakehouse_env))


def test_a_key_that_is_not_plain_values_is_planned_in_each_process_and_said(fresh, lakehouse_env):
    assert counted(key_extra=(len,)) == WANT
    assert plan_cache.counts == {} and not list(folder_of(fresh).glob("*.json"))
    assert any("is not plain values" in m and "'rows_by'" in m for m in fallbacks(lakehouse_env))


def test_a_folder_that_cannot_be_written_leaves_planning_in_process_and_is_recorded(fresh, lakehouse_env,
                                                                                    monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("LAKEHOUSE_PLAN_CACHE", str(blocker / "plans"))  # under a file: no folder can be made
    assert counted() == WANT and plan_cache.counts == {}
    assert any("cannot be written" in m and "LAKEHOUSE_PLAN_CACHE" in m for m in fallbacks(lakehouse_env))


def test_a_root_others_can_write_is_not_used(fresh, lakehouse_env):
    fresh.mkdir()
    fresh.chmod(0o777)
    assert counted() == WANT and plan_cache.counts == {}
    assert any("writable by others" in m for m in fallbacks(lakehouse_env))


def test_a_process_started_before_its_code_changed_on_disk_keeps_nothing(fresh, lakehouse_env, monkeypatch):
    _started, files, versions = plan_cache._LOADED
    monkeypatch.setattr(plan_cache, "_LOADED", (0.0, files, versions))  # started before every file's last change
    assert counted() == WANT and plan_cache.counts == {}
    assert any("the code changed on disk after this process started" in m for m in fallbacks(lakehouse_env))


def test_a_file_that_cannot_be_read_is_part_of_the_digest_and_never_breaks_the_import(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("A = 1\n")
    first = plan_cache.files_digest(package)
    (package / ".#a.py").symlink_to(package / "gone")  # an editor's lock: hidden, not code
    assert plan_cache.files_digest(package) == first
    (package / "b.py").symlink_to(package / "gone")  # a dangling link named as code
    assert plan_cache.files_digest(package) not in (first, None)


def test_a_default_umask_that_lets_the_group_write_still_gives_a_folder_of_ones_own(fresh, lakehouse_env):
    old = os.umask(0o002)
    try:
        assert counted() == WANT
    finally:
        os.umask(old)
    assert plan_cache.counts == {"written": 1}
    for folder in (fresh, folder_of(fresh)):
        assert folder.stat().st_mode & 0o777 == 0o700


def test_a_digest_folder_others_can_write_is_not_used(fresh, lakehouse_env, monkeypatch):
    assert counted() == WANT
    folder_of(fresh).chmod(0o770)
    as_new_process(monkeypatch)
    assert counted() == WANT and plan_cache.counts == {"written": 1}
    assert any("writable by others" in m for m in fallbacks(lakehouse_env))


def test_the_digest_follows_the_files_the_declarations_and_the_libraries(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    (package / "sub" / "__pycache__").mkdir(parents=True)
    (package / "a.py").write_text("A = 1\n")
    (package / "sub" / "b.yaml").write_text("b: 1\n")
    first = plan_cache.files_digest(package)
    (package / "sub" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"x")
    (package / "notes.txt").write_text("not code")
    assert plan_cache.files_digest(package) == first
    (package / "sub" / "b.yaml").write_text("b: 2\n")
    assert plan_cache.files_digest(package) != first

    orders, versions = CONTRACTS["orders"], plan_cache._versions()
    base = plan_cache.code_digest(first, CONTRACTS, versions)
    assert plan_cache.code_digest(first, dict(CONTRACTS), list(versions)) == base
    assert plan_cache.code_digest("other files", CONTRACTS, versions) != base
    replaced = {**CONTRACTS, "orders": dataclasses.replace(orders, owner="team:x")}
    assert plan_cache.code_digest(first, replaced, versions) != base
    version = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "9.9.9" if name == "sqlglot" else version(name))
    assert any("sqlglot 9.9.9" == v for v in plan_cache._versions())
    assert plan_cache.code_digest(first, CONTRACTS, plan_cache._versions()) != base


def test_a_replaced_declaration_opens_another_folder_and_old_folders_of_digests_are_pruned(fresh, monkeypatch):
    assert counted() == WANT
    mine = folder_of(fresh)
    stale, recent, foreign = fresh / ("a" * 24), fresh / ("b" * 24), fresh / "not-a-digest"
    for folder in (stale, recent, foreign):
        folder.mkdir()
    old = time.time() - (plan_cache.PRUNE_DAYS + 1) * 86400
    for folder in (stale, foreign):
        os.utime(folder, (old, old))
    orders = CONTRACTS["orders"]
    monkeypatch.setitem(CONTRACTS, "orders", dataclasses.replace(orders, owner="team:elsewhere"))
    monkeypatch.setattr(engine_module, "_plans", {})  # the same process, another declaration
    assert counted() == WANT
    assert plan_cache.counts == {"written": 2}  # nothing read from the first declaration's folder
    assert sorted(p.name for p in fresh.iterdir()) == sorted(
        [mine.name, recent.name, foreign.name, plan_cache.code_digest(*plan_cache._LOADED[1:2], CONTRACTS,
                                                                      plan_cache._LOADED[2])])


def test_the_setting(tmp_path):
    home = {"LAKEHOUSE_HOME": str(tmp_path / "h")}
    assert plan_cache_dir({**home, "LAKEHOUSE_PLAN_CACHE": "OFF"}) is None
    assert plan_cache_dir({**home, "LAKEHOUSE_PLAN_CACHE": str(tmp_path)}) == tmp_path
    assert plan_cache_dir({**home, "LAKEHOUSE_PLAN_CACHE": "~/plans"}) == Path("~/plans").expanduser()
    assert plan_cache_dir(home) == tmp_path / "h" / "cache" / "plans"
    assert load_settings(home).plan_cache == tmp_path / "h" / "cache" / "plans"
    with pytest.raises(SettingsError, match="LAKEHOUSE_PLAN_CACHE='plans' is not an absolute path"):
        load_settings({**home, "LAKEHOUSE_PLAN_CACHE": "plans"})
    (tmp_path / "f").write_text("")
    with pytest.raises(SettingsError, match="is a file, not a folder"):
        load_settings({**home, "LAKEHOUSE_PLAN_CACHE": str(tmp_path / "f")})
