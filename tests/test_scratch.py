"""Scratch folders of processes killed before they could remove them are removed by the next one."""

import logging
import os
import subprocess
import sys

from lakehouse import records, scratch
from lakehouse.summary import render_scratch


def ended_pid() -> int:
    ended = subprocess.Popen(["true"])
    ended.wait()
    return ended.pid


def test_the_folders_of_ended_processes_are_removed_and_said_and_nothing_else(tmp_path, caplog):
    dead, alive = ended_pid(), os.getpid()
    left = tmp_path / f"lakehouse-engine-{dead}-ab12_c"
    (left / "duckdb").mkdir(parents=True)
    (left / "engine.duckdb").write_bytes(b"x" * 1000)
    kept = [tmp_path / f"lakehouse-bronze-{alive}-zz9", tmp_path / "lakehouse-small-days-abc", tmp_path / "other-1-2-3"]
    for path in kept:
        path.mkdir()
    (tmp_path / f"lakehouse-engine-{dead}-file").write_text("a file, not a folder")
    with caplog.at_level(logging.WARNING, logger="lakehouse.scratch"):
        removed = scratch.remove_left_behind(str(tmp_path))
    assert removed == [str(left)] and not left.exists()
    assert all(path.exists() for path in kept) and (tmp_path / f"lakehouse-engine-{dead}-file").exists()
    assert f"the scratch folder of process {dead}, which ended without removing it" in caplog.text
    # Recorded beside the folders, and shown by `lakehouse status`.
    [entry] = scratch.removals(str(tmp_path))
    assert (entry["folder"], entry["pid"], entry["bytes"], entry["removed"]) == (str(left), dead, 1000, True)
    shown = render_scratch(str(tmp_path))
    assert "1 found, 1.0 KB freed" in shown and str(left) in shown and "removed" in shown
    assert scratch.remove_left_behind(str(tmp_path)) == [] and len(scratch.removals(str(tmp_path))) == 1


def test_a_folder_that_cannot_be_removed_is_shown_once_with_what_to_do(tmp_path, monkeypatch):
    dead = ended_pid()
    left = tmp_path / f"lakehouse-spark-{dead}-q"
    left.mkdir()
    monkeypatch.setattr(scratch.shutil, "rmtree", lambda path, ignore_errors=False: None)  # another user's folder
    assert render_scratch(str(tmp_path)) == "Scratch folders: none left behind by an ended process."
    for _ in range(3):
        assert scratch.remove_left_behind(str(tmp_path)) == []
    [entry] = scratch.removals(str(tmp_path))
    assert entry["removed"] is False and left.exists()
    assert "0 B freed" in render_scratch(str(tmp_path)) and "could not be removed: remove it by hand" in render_scratch(
        str(tmp_path))


def test_a_scratch_folder_is_named_by_its_process_and_removed_after_its_block():
    with scratch.folder("bronze") as path:
        assert os.path.isdir(path) and os.path.basename(path).startswith(f"lakehouse-bronze-{os.getpid()}-")
    assert not os.path.exists(path)


def test_a_folder_still_left_stays_shown_however_many_are_removed_after_it(tmp_path, monkeypatch):
    dead = ended_pid()
    stuck = tmp_path / f"lakehouse-engine-{dead}-stuck"
    stuck.mkdir()
    real = scratch.shutil.rmtree
    monkeypatch.setattr(scratch.shutil, "rmtree", lambda path, ignore_errors=False: None)
    scratch.remove_left_behind(str(tmp_path))
    monkeypatch.setattr(scratch.shutil, "rmtree", real)
    (tmp_path / "elsewhere").mkdir()
    stuck.rename(tmp_path / "elsewhere" / stuck.name)  # out of the sweep's way, still not removed
    for i in range(7):
        (tmp_path / f"lakehouse-bronze-{dead}-{i}").mkdir()
    scratch.remove_left_behind(str(tmp_path))
    (tmp_path / "elsewhere" / stuck.name).rename(stuck)
    shown = render_scratch(str(tmp_path))
    assert "8 found" in shown and "1 still there" in shown and str(stuck) in shown
    assert shown.count("removed") - shown.count("could not be removed") == 5  # the last five removed
    real(stuck)
    assert "0 still there" in render_scratch(str(tmp_path))  # removed by hand: no longer asked for


def test_a_damaged_or_unreadable_record_never_stops_a_sweep_or_status(tmp_path):
    dead = ended_pid()
    record = tmp_path / scratch.RECORD
    record.write_text('{"at": null, "folder": "x", "pid": 1, "bytes": 1, "removed": true}\n'
                      '{"at": "2026-12-04T10:00:00+00:00", "folder": "y", "pid": 2, "bytes": "12", "removed": true}\n'
                      'not json\n\n[1, 2]\n')
    assert scratch.removals(str(tmp_path)) == []
    assert render_scratch(str(tmp_path)) == "Scratch folders: none left behind by an ended process."
    record.unlink()
    record.mkdir()  # unreadable, unwritable
    (tmp_path / f"lakehouse-engine-{dead}-a").mkdir()
    assert scratch.remove_left_behind(str(tmp_path)) == [str(tmp_path / f"lakehouse-engine-{dead}-a")]
    assert render_scratch(str(tmp_path)) == "Scratch folders: none left behind by an ended process."


def test_two_processes_sweeping_at_once_remove_and_record_each_folder_once(tmp_path):
    dead = ended_pid()
    for i in range(150):  # enough files that the two sweeps overlap
        (tmp_path / f"lakehouse-engine-{dead}-{i}" / "duckdb").mkdir(parents=True)
        for j in range(20):
            (tmp_path / f"lakehouse-engine-{dead}-{i}" / "duckdb" / f"{j}.tmp").write_bytes(b"x" * 5)
    sweep = f"from lakehouse import scratch; print(len(scratch.remove_left_behind({str(tmp_path)!r})))"
    procs = [subprocess.Popen([sys.executable, "-c", sweep], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    counts = [int(p.communicate(timeout=120)[0]) for p in procs]
    entries = scratch.removals(str(tmp_path))
    assert sum(counts) == 150 == len(entries) == len({e["folder"] for e in entries})
    assert all(e["removed"] and e["bytes"] == 100 for e in entries)
    assert not [p for p in tmp_path.iterdir() if p.name not in (scratch.RECORD, f"{scratch.RECORD}.lock")]


def test_the_record_keeps_its_last_lines_once_it_is_large(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "RECORD_BYTES", 2000)
    monkeypatch.setattr(records, "RECORD_KEEP", 5)
    dead = ended_pid()
    for i in range(30):
        (tmp_path / f"lakehouse-engine-{dead}-{i:02d}").mkdir()
        scratch.remove_left_behind(str(tmp_path))
    entries = scratch.removals(str(tmp_path))
    assert 5 <= len(entries) < 30 and entries[-1]["folder"].endswith("-29")
    assert (tmp_path / scratch.RECORD).stat().st_size <= 2000 + 200
