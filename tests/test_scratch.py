"""Scratch folders of processes killed before they could remove them are removed by the next one."""

import logging
import os
import subprocess

from lakehouse import scratch


def test_the_folders_of_ended_processes_are_removed_and_said_and_nothing_else(tmp_path, caplog):
    ended = subprocess.Popen(["true"])
    ended.wait()
    dead, alive = ended.pid, os.getpid()
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


def test_a_scratch_folder_is_named_by_its_process_and_removed_after_its_block():
    with scratch.folder("bronze") as path:
        assert os.path.isdir(path) and os.path.basename(path).startswith(f"lakehouse-bronze-{os.getpid()}-")
    assert not os.path.exists(path)
