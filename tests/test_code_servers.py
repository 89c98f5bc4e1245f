"""The daemon's code servers forked by its zygote (lakehouse/code_servers.py): each gets what a new
interpreter would have had, and where the zygote cannot serve, Dagster's spawn, said and recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from dagster._grpc import server

from lakehouse import checked_code, code_servers

TESTS = Path(__file__).parent

# Run in a process of its own: the zygote is a fork of the process that installs it, and a test
# worker has threads of its own. Prints one JSON document.
DRIVER = r"""
import json, os, signal, subprocess, sys, time, weakref
from pathlib import Path
tests, out = sys.argv[1], Path(sys.argv[2])
os.environ["ZYGOTE_PROBE"] = "daemon"
weakref.finalize(object, print)  # as the daemon's imports do: weakref's exit handler is registered before the fork
read, write = os.pipe()  # stands for the watchdog's pipe, whose read end alone is the daemon's: the zygote closes it
os.close(write)
from dagster._grpc import server
from lakehouse import code_servers
stops = [str(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM)]
zygote = code_servers.install(close=(read,))
result = {"zygote": zygote.pid, "daemon": os.getpid(), "stops": stops}

def probe(how):
    args = [sys.executable, "-m", "zygote_probe", str(out / how), how]
    env = {**os.environ, "ZYGOTE_PROBE": "server"}
    return args, code_servers.ForkedServer(zygote, *zygote.fork(args, env, tests), args)

def until(condition):
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.05)

for how in ("exit3", "end", "raise"):
    args, forked = probe(how)
    result[how] = {"code": forked.wait(30), "args": args, "report": json.loads((out / how).read_text()),
                   "atexit": (out / (how + ".atexit")).exists(), "finalized": (out / (how + ".finalized")).exists()}
# By now the zygote has served: its own title is set.
result["zygote_command"] = open(f"/proc/{zygote.pid}/cmdline", "rb").read().replace(b"\0", b" ").decode().strip()
_, sleeping = probe("sleep")
until(lambda: (out / "sleep").exists())
result["sleeping"] = sleeping.poll()
sleeping.terminate()
result["terminated"] = sleeping.wait(30)

# A zygote whose daemon is gone ends (made before this process has gRPC's threads, as in the daemon).
other = code_servers._fork(())
other._conn.close()
until(lambda: os.waitpid(other.pid, os.WNOHANG)[0])

# A real code server, through Dagster's own function: it answers, and ends when told to.
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._grpc.client import DagsterGrpcClient
from dagster._grpc.server import GrpcServerCommand, open_server_process
(out / "defs.py").write_text("import dagster as dg\ndefs = dg.Definitions(assets=[dg.AssetSpec('a')])\n")
socket_path = str(out / "s.sock")
process = open_server_process(instance_ref=None, port=None, socket=socket_path, heartbeat=True, heartbeat_timeout=60,
                              server_command=GrpcServerCommand.API_GRPC,
                              loadable_target_origin=LoadableTargetOrigin(executable_path=sys.executable,
                                                                          python_file=str(out / "defs.py")))
client = DagsterGrpcClient(socket=socket_path, host="localhost")
result["server"] = {"forked": isinstance(process, code_servers.ForkedServer), "ping": client.ping("hello"),
                    "parent": int(open(f"/proc/{process.pid}/stat").read().rsplit(")", 1)[1].split()[1])}
client.shutdown_server()
result["server"]["code"] = process.wait(30)

# Another command: spawned, and said.
result["other_command"] = type(server.open_ipc_subprocess([sys.executable, "-c", "pass"])).__name__

# The zygote killed: a fork it left is followed by its id; the next code server is spawned, said and recorded.
_, orphan = probe("sleep")
os.kill(zygote.pid, signal.SIGKILL)
os.waitpid(zygote.pid, 0)
result["orphan_running"] = orphan.poll()
os.kill(orphan.pid, signal.SIGKILL)
until(lambda: orphan.poll() is not None)
result["orphan_ended"] = orphan.returncode
spawned = server.open_ipc_subprocess([sys.executable, "-m", "dagster", "api", "grpc", "--help"])
result["after_kill"] = {"type": type(spawned).__name__, "code": spawned.wait(60)}
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def forked(tmp_path_factory):
    out, home = tmp_path_factory.mktemp("zygote"), tmp_path_factory.mktemp("home")
    env = {**os.environ, "LAKEHOUSE_HOME": str(home), "PYTHONPATH": str(TESTS.parent)}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(TESTS), str(out)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = driver.communicate(timeout=240)
    finally:  # whatever the driver left (its zygote, a probe): they hold its pipes
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert driver.returncode == 0, stdout[-3000:] + stderr[-6000:]
    return json.loads(stdout.strip().splitlines()[-1]), stderr, out, home


def test_a_fork_gets_the_command_environment_folder_and_exit_status_a_new_interpreter_would(forked):
    result, _, out, home = forked
    assert "lakehouse code-server zygote of dagster-daemon pid" in result["zygote_command"]
    assert {how: result[how]["code"] for how in ("exit3", "end", "raise")} == {"exit3": 3, "end": 0, "raise": 1}
    for how in ("exit3", "end", "raise"):
        args, report = result[how]["args"], result[how]["report"]
        assert report["argv"] == [str(TESTS / "zygote_probe.py"), str(out / how), how]
        assert report["cwd"] == report["path0"] == str(TESTS)
        assert report["variable"] == "server" and report["ppid"] == result["zygote"]
        assert report["stops"] == result["stops"]  # SIGINT's and SIGTERM's handlers: the daemon's as it began
        # Its command line as `ps -f` shows it (within the daemon's own length), its environment
        # block the daemon's, where the home's processes are found.
        assert report["cmdline"] and " ".join(args).startswith(report["cmdline"]), report["cmdline"]
        assert f"LAKEHOUSE_HOME={home}" in report["environ"]
        assert report["fds"] == {}, report["fds"]  # neither the zygote's socket nor the pipe it was told to close
        assert result[how]["atexit"] and result[how]["finalized"]  # its exit handlers ran, weakref's among them


def test_an_exception_is_printed_and_a_signal_reaches_it(forked):
    result, stderr, _, _ = forked
    assert "RuntimeError: the probe raised" in stderr and "Traceback" in stderr
    assert result["sleeping"] is None and result["terminated"] == 143


def test_dagsters_code_server_is_forked_answers_and_ends_when_told(forked):
    result, _, _, _ = forked
    server_ = result["server"]
    assert server_["forked"] and server_["ping"]["echo"] == "hello" and server_["parent"] == result["zygote"]
    assert server_["code"] == 0


def test_without_the_zygote_code_servers_are_spawned_said_and_recorded(forked):
    result, stderr, _, home = forked
    assert result["other_command"] == "Popen"
    assert result["orphan_running"] is None and result["orphan_ended"] == code_servers.LOST
    assert result["after_kill"] == {"type": "Popen", "code": 0}
    recorded = [r["message"] for r in checked_code.fallbacks(home)]
    assert any("not forked: another command or interpreter" in m for m in recorded), recorded
    assert any("not forked: the code servers' zygote is gone" in m for m in recorded), recorded
    assert "not forked: the code servers' zygote is gone" in stderr


def test_another_dagster_or_no_setproctitle_leaves_dagsters_spawn_with_a_warning(monkeypatch, caplog):
    spawn = server.open_ipc_subprocess
    with monkeypatch.context() as m:
        m.setattr(checked_code, "_warned", set())
        m.setitem(code_servers.CHECKED_SOURCES, "open_server_process", "0" * 16)
        assert code_servers.install() is None  # checked before any fork
    with monkeypatch.context() as m:
        m.setattr(checked_code, "_warned", set())
        m.setitem(sys.modules, "setproctitle", None)
        assert code_servers.install() is None
    assert server.open_ipc_subprocess is spawn
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "open_server_process differ from the code" in said and "zygote could not start (" in said


def test_only_its_own_interpreters_code_servers_are_forked():
    args = [sys.executable, "-m", "dagster", "api", "grpc", "--socket", "s"]
    assert code_servers.forkable(args, dict(os.environ), {}) is None
    assert code_servers.forkable(["/other/python", *args[1:]], None, {}) == "another command or interpreter"
    assert code_servers.forkable([sys.executable, "-m", "dagster", "dev"], None, {})
    assert code_servers.forkable(args, None, {"stdout": 1}) == "Dagster asked for stdout"
    changed = {**os.environ, "PYTHONPATH": "/elsewhere"}
    assert code_servers.forkable(args, changed, {}) == "the interpreter's start-up variables differ from the daemon's"


def test_the_code_it_relies_on_is_the_code_it_was_checked_against():
    assert not checked_code.changed(code_servers.CHECKED_SOURCES, code_servers.owner_of)
