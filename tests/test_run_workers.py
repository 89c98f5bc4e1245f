"""Run workers forked from the code server's preloaded forkserver (lakehouse/run_workers.py).

Each case runs in a Python process of its own: multiprocessing's forkserver and its preload
belong to the process, and these tests kill it or give it a broken preload.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lakehouse import checked_code, run_workers

FOLLOW = textwrap.dedent("""
    import json, os, signal, sys, time
    from multiprocessing import forkserver, get_context
    from lakehouse import run_workers

    ours = sys.argv[1] == "ours"
    forkserver.set_forkserver_preload(["json"])
    context = run_workers._Context() if ours else get_context("forkserver")
    worker = context.Process(target=time.sleep, args=(3,))
    began = time.monotonic()
    worker.start()
    os.kill(forkserver._forkserver._forkserver_pid, signal.SIGKILL)
    time.sleep(0.5)
    alive_after_kill = worker.is_alive()
    worker.join(30)
    print(json.dumps({"alive_after_kill": alive_after_kill, "exitcode": worker.exitcode,
                      "ended_after": round(time.monotonic() - began, 1)}))
""")


def run(script: str, *args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    """`script` in a new Python; `home`: its LAKEHOUSE_HOME, where its fallbacks are recorded (else none)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
           "LAKEHOUSE_HOME": str(home or Path(os.devnull) / "no-home")}
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=180, env=env)


def engine_scratch(out: str) -> None:
    """A run's use of the DuckDB engine, in a worker; writes where its scratch folder was."""
    import pyarrow as pa

    from lakehouse.resources import engine

    with engine.Engine("duckdb") as eng:
        assert eng.to_arrow(eng.from_arrow(pa.table({"a": [1, 2]}))).num_rows == 2
    Path(out).write_text(engine._spill)


@pytest.mark.parametrize("start", ["ours", "spawn"])
def test_a_worker_removes_its_scratch_folder_when_it_ends(tmp_path, start):
    """A fork ends with os._exit, which skips atexit: the engine's clean-up (its DuckDB file and
    spill folder) is a multiprocessing finalizer, which runs at the end of a fork and of a spawn."""
    out = tmp_path / "scratch.txt"
    script = textwrap.dedent(f"""
        import multiprocessing, sys
        from lakehouse import run_workers
        import test_run_workers
        context = run_workers._Context() if "{start}" == "ours" else multiprocessing.get_context("spawn")
        worker = context.Process(target=test_run_workers.engine_scratch, args=(sys.argv[1],))
        worker.start()
        worker.join(120)
        print(worker.exitcode)
    """)
    done = run(script, str(out))
    assert done.stdout.strip() == "0", done.stderr
    folder = Path(out.read_text())
    assert folder.name.startswith("lakehouse-engine-") and not folder.exists(), folder


def test_a_worker_outliving_its_forkserver_is_followed_by_its_id_not_reported_ended():
    """The forkserver killed under a live worker: multiprocessing alone says the worker ended
    (code 255), which would fail a run that still works; ours waits for the worker itself."""
    plain = json.loads(run(FOLLOW, "plain").stdout)
    assert plain["alive_after_kill"] is False and plain["exitcode"] == 255  # the fault this module mends
    done = run(FOLLOW, "ours")
    ours = json.loads(done.stdout)
    assert ours["alive_after_kill"] is True, done.stderr
    assert ours["ended_after"] >= 3.0 and ours["exitcode"] == run_workers.ORPHANED_EXIT
    assert "following it by its id" in done.stderr


def test_a_preload_the_forkserver_cannot_import_is_found_before_any_run():
    """Python's forkserver skips a module it cannot import; the check says so, and runs are then spawned."""
    script = ("import sys; from lakehouse import run_workers as r; "
              "print(r._verify(r._Context(), ['lakehouse.settings', 'lakehouse_no_such_module']))")
    done = run(script)
    assert "could not import everything it preloads" in done.stdout, done.stdout + done.stderr
    script = "from lakehouse import run_workers as r; print(r._verify(r._Context(), ['lakehouse.settings']))"
    assert run(script).stdout.strip() == "None"


def test_a_failed_check_falls_back_to_spawn_with_a_warning_recorded_for_status(tmp_path):
    script = textwrap.dedent("""
        import logging
        from lakehouse import run_workers as r
        logging.basicConfig(level=logging.WARNING)
        r.PRELOAD = ["lakehouse_no_such_module"]
        decision = r._Decision()
        decision.decide()
        print(decision.get().get_start_method())
    """)
    done = run(script, home=tmp_path)
    assert done.stdout.strip() == "spawn", done.stderr
    assert "could not import everything it preloads" in done.stderr and "runs are spawned" in done.stderr
    recorded, = checked_code.fallbacks(tmp_path)
    assert recorded["message"].startswith("the forkserver could not import everything it preloads"), recorded


def test_the_forkserver_starts_when_a_run_is_asked_for_not_before():
    """A code server that starts no run pays nothing for the forkserver; `warm` (the landing
    sensor's requests) or the first run's launch starts it, once, and its check decides."""
    script = textwrap.dedent("""
        import threading
        from multiprocessing import forkserver
        from lakehouse import run_workers as r
        r.PRELOAD = ["json"]
        checks = []
        verify = r._verify
        r._verify = lambda context, modules: checks.append(1) or verify(context, modules)
        def forkserver_pid():
            return forkserver._forkserver._forkserver_pid
        r.warm()  # no code server here: nothing to start
        import json, sys
        import dagster._grpc.server
        local = {"run_launcher_data": {"class_name": "LocalRunLauncher", "module_name": "lakehouse.launcher"}}
        sys.argv = ["dagster", "api", "grpc", "--instance-ref", json.dumps(local)]  # as a code server of local runs
        assert r.install()
        decision = r._decision
        threads = lambda: [t for t in threading.enumerate() if t.name == "lakehouse-forkserver"]
        assert (threads(), forkserver_pid(), checks) == ([], None, []), "started before any run was asked for"
        r.warm(); r.warm()
        assert decision.done.wait(60) and isinstance(decision.context, r._Context)
        assert decision.get() is decision.context and forkserver_pid() is not None and checks == [1]
        first = r._Decision()  # no warm: the first run's launch starts it
        assert first.get() is first.context and isinstance(first.context, r._Context) and checks == [1, 1]
        print("ok")
    """)
    done = run(script)
    assert done.stdout.strip() == "ok", done.stderr


def test_only_a_code_server_of_local_runs_forks_them():
    local = {"run_launcher_data": {"class_name": "LocalRunLauncher", "module_name": "lakehouse.launcher"}}
    ecs = {"run_launcher_data": {"class_name": "EcsRunLauncher", "module_name": "dagster_aws.ecs"}}
    assert run_workers.local_launcher(["api", "grpc", "--instance-ref", json.dumps(local)])
    assert not run_workers.local_launcher(["api", "grpc", "--instance-ref", json.dumps(ecs)])
    assert not run_workers.local_launcher(["api", "grpc", "-m", "lakehouse.definitions"])
    assert not run_workers.install()  # pytest is no code server


def test_the_code_it_replaces_is_the_code_it_was_checked_against():
    """A Dagster or Python upgrade that changes these is caught here (install() would fall back to spawn)."""
    assert checked_code.changed(run_workers.CHECKED_SOURCES, run_workers.owner_of) == []


def test_only_a_runs_launch_reads_the_start_method_so_only_it_starts_the_forkserver():
    """The forkserver starts when Dagster's server reads its start method: a read anywhere else (a
    new Dagster) would start it, and wait for its preload, where no run was asked for."""
    import ast
    import inspect

    from dagster._grpc import server

    tree = ast.parse(textwrap.dedent(inspect.getsource(server.DagsterApiServer)))
    uses = sorted((method.name, type(node.ctx).__name__) for method in tree.body[0].body
                  if isinstance(method, ast.FunctionDef) for node in ast.walk(method)
                  if isinstance(node, ast.Attribute) and node.attr == "_mp_ctx")
    assert [use for use in uses if use[1] == "Load"] and {m for m, ctx in uses if ctx == "Load"} == {"StartRun"}, uses


def test_a_check_cut_short_by_the_groups_stop_is_said_as_such_not_as_a_failure(tmp_path):
    """`lakehouse run` stopping soon after it began sends SIGTERM to the forkserver while its check
    runs: that is said as information, and a forkserver that died otherwise is still a warning."""
    script = textwrap.dedent("""
        import logging, os, signal, subprocess, sys, time
        from multiprocessing import forkserver
        from lakehouse import run_workers as r
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        # The child takes the signals' default actions and says so before it is signalled: a
        # mask or disposition inherited from the test worker must not keep it alive.
        ready = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_DFL); "
                 "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM}); print('ready', flush=True); time.sleep(60)")
        for sig in (signal.SIGTERM, signal.SIGKILL):
            child = subprocess.Popen([sys.executable, "-c", ready], stdout=subprocess.PIPE, text=True)
            assert child.stdout.readline().strip() == "ready"
            os.kill(child.pid, sig)
            forkserver._forkserver._forkserver_pid = child.pid
            def cut_short(context, modules):
                raise EOFError("unexpected EOF")
            r._verify = cut_short
            decision = r._Decision()
            decision.decide()
            assert decision.get().get_start_method() == "spawn"
            assert child.wait(5) == -sig  # not reaped by the look at how it ended
    """)
    done = run(script, home=tmp_path)
    assert done.returncode == 0, done.stderr
    # Only the failure is a fallback to record: the stop ends the code server, no run is spawned.
    assert [f["message"].split(":")[0] for f in checked_code.fallbacks(tmp_path)] == ["the forkserver failed"]
    lines = [line for line in done.stderr.splitlines() if "runs are spawned" in line]
    assert lines[0].startswith("INFO the forkserver was stopped by SIGTERM before its check ended"), lines
    assert lines[1].startswith("WARNING the forkserver failed: EOFError: unexpected EOF"), lines
    assert len(lines) == 2, lines


PARKED = textwrap.dedent("""
    import json, logging, os, signal, sys, time
    import dagster._grpc.server
    from multiprocessing import forkserver
    from lakehouse import run_workers as r
    logging.basicConfig(level=logging.WARNING)
    case = sys.argv[1]
    local = {"run_launcher_data": {"class_name": "LocalRunLauncher", "module_name": "lakehouse.launcher"}}
    sys.argv = ["dagster", "api", "grpc", "--instance-ref", json.dumps(local)]  # as a code server of local runs
    r.park()  # as the daemon's zygote does in the code servers it forks, before their threads
    parked = r._parked[1]
    result = {"parked_title": "", "me": os.getpid(),
              "parked_parent": int(open(f"/proc/{parked}/stat").read().rsplit(")", 1)[1].split()[1])}
    if case == "released":
        sys.argv[4] = json.dumps({"run_launcher_data": {"class_name": "EcsRunLauncher", "module_name": "x"}})
        result["installed"] = r.install()
        result["released_gone"] = not os.path.exists(f"/proc/{parked}")  # ended, and reaped: no zombie left
        print(json.dumps(result)); sys.exit(0)
    deadline = time.monotonic() + 30
    while not result["parked_title"].startswith("lakehouse run workers"):
        assert time.monotonic() < deadline
        result["parked_title"] = open(f"/proc/{parked}/cmdline", "rb").read().replace(b"\\0", b" ").decode()
        time.sleep(0.05)
    if case == "died":
        os.kill(parked, signal.SIGKILL)
        os.waitpid(parked, 0)
    r.PRELOAD = ["json"]
    assert r.install()
    decision = r._Decision()
    decision.decide()
    worker = decision.get().Process(target=time.sleep, args=(2,))
    worker.start()
    server = forkserver._forkserver._forkserver_pid
    result.update(start_method=decision.get().get_start_method(), forkserver_is_parked=server == parked,
                  worker_parent=int(open(f"/proc/{worker.pid}/stat").read().rsplit(")", 1)[1].split()[1]) == server,
                  forkserver_title=open(f"/proc/{server}/cmdline", "rb").read().replace(b"\\0", b" ").decode())
    worker.join(30)
    result["exitcode"] = worker.exitcode
    print(json.dumps(result))
""")


def test_a_parked_fork_of_the_code_server_becomes_its_forkserver_when_a_run_is_asked_for():
    """In a code server the daemon's zygote forked (lakehouse/code_servers.py), the forkserver is a
    fork made at the server's start, with Dagster imported already: the first run's check gives it
    the listener and pipe multiprocessing made, and runs fork from it."""
    done = run(PARKED, "used")
    result = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else done.stderr
    assert isinstance(result, dict), result
    assert result["parked_title"].startswith(run_workers.PARKED_TITLE.format(result["me"]))
    assert result["parked_parent"] == result["me"]
    assert result["start_method"] == "forkserver" and result["forkserver_is_parked"] and result["worker_parent"]
    assert "from multiprocessing.forkserver import main" in result["forkserver_title"]  # where ps and the tests look
    assert result["exitcode"] == 0


def test_a_parked_fork_a_code_server_does_not_use_ends_and_one_that_died_is_replaced_said(tmp_path):
    done = run(PARKED, "released")
    released = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else done.stderr
    assert isinstance(released, dict) and released["installed"] is False and released["released_gone"], released
    done = run(PARKED, "died", home=tmp_path)
    result = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else done.stderr
    assert isinstance(result, dict), result
    assert result["start_method"] == "forkserver" and not result["forkserver_is_parked"] and result["worker_parent"]
    assert result["exitcode"] == 0
    recorded, = checked_code.fallbacks(tmp_path)
    assert "the parked forkserver" in recorded["message"] and "started as multiprocessing starts it" in recorded["message"]
