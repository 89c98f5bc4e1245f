"""Scratch folders of processes killed before they could remove them are removed by the next one."""

import logging
import os
import subprocess

from lakehouse import scratch
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
