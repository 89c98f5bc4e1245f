"""A fallback to a slower path (library code our replacement was not applied to, run workers spawned
instead of forked) is recorded in the home and shown, not only logged (lakehouse/checked_code.py)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

from lakehouse import checked_code, records
from lakehouse.summary import render_fallbacks

CHILD = ("import logging, sys; from lakehouse import checked_code; "
         "checked_code.warn_once(logging.getLogger('x'), 'sqlframe %s differs: planning is slower', sys.argv[1])")


def test_each_fallback_is_shown_once_with_the_processes_that_took_it(lakehouse_env, monkeypatch):
    home = lakehouse_env.home
    assert render_fallbacks(home) == "Fallbacks to slower paths: none recorded in the last 7 days."
    assert render_fallbacks(home, since=0) == ""  # `lakehouse run` says nothing when none were taken
    for version in ("9.9", "9.9", "8.8"):  # three processes, two kinds
        subprocess.run([sys.executable, "-c", CHILD, version], check=True, timeout=120)
    found = checked_code.fallbacks(home)
    assert [(f["message"], f["times"]) for f in found] == [("sqlframe 9.9 differs: planning is slower", 2),
                                                           ("sqlframe 8.8 differs: planning is slower", 1)]
    python = os.path.basename(sys.executable)
    assert {f["process"] for f in found} == {f"{python} -c 9.9", f"{python} -c 8.8"}
    shown = render_fallbacks(home)
    assert "2 kind(s)" in shown and "sqlframe 9.9 differs" in shown and "sqlframe 8.8 differs" in shown
    later = time.time()
    assert render_fallbacks(home, since=later) == ""  # a later run took none
    monkeypatch.setattr(checked_code, "_warned", set())
    checked_code.warn_once(logging.getLogger("x"), "sqlframe %s differs: planning is slower", "7.7")
    assert "1 kind(s)" in render_fallbacks(home, since=later) and "7.7" in render_fallbacks(home, since=later)


def test_a_process_without_a_home_records_nothing_and_a_damaged_line_is_skipped(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / "nowhere"))  # a Glue job's: its log is the record
    monkeypatch.setattr(checked_code, "_warned", set())
    with caplog.at_level(logging.WARNING):
        checked_code.warn_once(logging.getLogger("x"), "a fallback")
    assert "a fallback" in caplog.text and "could not record" not in caplog.text
    assert not (tmp_path / "nowhere").exists()
    home = tmp_path / "home"
    home.mkdir()
    (home / checked_code.FALLBACKS).write_text("{not json\n" + json.dumps({"at": "yesterday"}) + "\n")
    records.append(home / checked_code.FALLBACKS, {"at": 1.0, "pid": 1, "process": "p", "message": "m"})
    assert [f["message"] for f in checked_code.fallbacks(home)] == ["m"]


def test_lakehouse_run_lists_the_fallbacks_its_processes_took_before_its_verdict(lakehouse_env, monkeypatch):
    from lakehouse.runner import RunOutcome

    monkeypatch.setattr(checked_code, "_warned", set())
    began = time.time()
    checked_code.warn_once(logging.getLogger("x"), "the forkserver failed: runs are spawned (about 2 s slower each)")
    outcome = RunOutcome(summary="Tables: ...", fallbacks=render_fallbacks(lakehouse_env.home, since=began))
    lines = outcome.render().splitlines()
    assert lines[-1].startswith("lakehouse run: done") and any("the forkserver failed" in line for line in lines)
    assert "Fallbacks to slower paths" not in RunOutcome(summary="Tables: ...").render()
