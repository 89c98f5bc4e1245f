"""Run workers forked from a preloaded process of the code server, instead of started cold.

A Dagster code server starts each run in a new Python process (multiprocessing's "spawn"),
which imports Dagster, this project and its engines and builds the definitions again before
the run's first step: about 2 s of CPU, and of a landed file's wait for gold, for every run.
Here a code server whose runs are processes of this machine (the instance's run launcher is
the local one: `lakehouse run`, `make ui`) starts them from multiprocessing's "forkserver"
instead: one process imports them once (PRELOAD), and each run is a fork of it. It is started
when the code server is first asked for a run, or a little before, when the landing sensor
requests one (`warm`): a code server that never starts a run (a `lakehouse run` with nothing
to do, a daemon replaced after a crash, the UI's while nobody launches) does not pay for the
imports, about 2.8 s of CPU, more than a spawned run costs. The forkserver only imports; it
opens no engine, connection or catalog, so its forks start as clean as a spawned process. It is
a child of the code server, in the daemon's process group: stopping the group stops it and its
forks, as before. In a code server the daemon's zygote forked (lakehouse/code_servers.py), it is
not started cold either: it is a fork of the code server made at the server's start, before its
threads (`park`), with Dagster imported already, which waits, at no CPU, until the first run is
asked for (or `warm`); then it is given the listener and pipe multiprocessing made, and the
server's environment and folder as they are then, and imports the rest of PRELOAD (the
definitions, the engines): about 1 s of CPU instead of 2.8 s.
A fork ends with `os._exit`, so `atexit` does not run there: what a run must clean up at its
end is registered with multiprocessing's finalizers instead (`lakehouse.resources.engine`).

What multiprocessing's forkserver gets wrong for long runs, and what is done about it:
- A run worker's exit status reaches the code server through the forkserver. If the
  forkserver ends first (killed alone, or by the SIGTERM that stops the group, which it
  does not survive), multiprocessing reports every live worker as ended with code 255, and
  Dagster would fail runs that still work. `_Popen` follows such a worker by its process id
  (and start time) instead, until it has really ended.
- The forkserver ignores a module it cannot import, and fails every launch if an import
  raises anything else. So the preload is checked once with a child (`_verify`) before the
  first run uses it; if that fails, runs are spawned as Dagster does, and a warning says why.
  Once the forkserver has ended, later runs are spawned too (`_Decision`).

Dagster has no setting for the run worker's start method (the server sets "spawn" in its
constructor), so `install()` replaces that attribute of its server class, and only for the
code it was checked against (digests of the methods that set and use it, and of the
standard library's poll it refines); anything else keeps Dagster's spawn, with a warning.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.util
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing import context as mp_context
from multiprocessing import forkserver, popen_forkserver

from lakehouse import checked_code

log = logging.getLogger(__name__)
# What a run imports: Dagster's run entry point and the instance's storage (which brings alembic,
# mako and pygments: 0.5 s of CPU a run otherwise), the code location, the steps and their engines.
# First the garbage collector's thresholds, for the imports and the runs (lakehouse/collector.py).
# Dagster's storage before the definitions: loading them there keeps the event log's engines
# (lakehouse/dagster_patches.py, 2.) only where Dagster's event log is already imported.
PRELOAD = ["lakehouse.tune_collector", "dagster._grpc.impl", "dagster._core.storage.sqlite_storage",
           "lakehouse.definitions", "lakehouse.steps", "lakehouse.ingest", "lakehouse.iceberg", "duckdb",
           "sqlframe.duckdb", "pyiceberg.catalog.sql", "pyiceberg.table", "pyarrow.dataset", "pandas"]
LOCAL_LAUNCHERS = ("LocalRunLauncher", "DefaultRunLauncher")  # runs as processes of the code server
VERIFY_SECONDS = 120.0  # the check's child must end within this
# A run launched before the check ended waits at most this long, then is spawned (and so are the
# later ones). The wait covers the whole preload (about 3 s alone, more on a busy machine), as the
# first run's launch often starts it; Dagster's call to start a run gives up after 60 s.
FIRST_RUN_WAIT = 40.0
# sha256 (first 16 hex digits) of the source this module relies on: Dagster 1.13's server
# (where it sets, uses and checks its start method) and Python 3.11's forkserver poll.
CHECKED_SOURCES = {
    "DagsterApiServer.__init__": "820bb029ed1f1260",
    "DagsterApiServer.StartRun": "ec53adf5e40c9c7c",
    "DagsterApiServer._check_for_orphaned_runs": "ca20cb95e58102d7",
    "Popen.poll": "ce9e84f657617ffd",
    "ForkServer.ensure_running": "4e37aa6dc9493a5d",
}
ORPHANED_EXIT = 255  # what multiprocessing says of a worker whose exit status was lost (unknown)


class _Popen(popen_forkserver.Popen):
    """multiprocessing's forkserver Popen, except when the forkserver ends before the worker:
    then the worker is followed by its process id, not reported as ended (see the module).

    Thread-safe (Dagster polls a run's process from two threads: the exit status is read
    from a pipe once), and `wait(timeout)` keeps its timeout while following."""

    def __init__(self, process_obj):
        self._lock = threading.Lock()
        self._following = False
        super().__init__(process_obj)

    def _launch(self, process_obj):
        super()._launch(process_obj)
        self._started = start_time(self.pid)

    def poll(self, flag=os.WNOHANG):
        return self._poll_once() if flag == os.WNOHANG else self.wait()

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self._poll_once()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.1)
        return code

    def _poll_once(self):
        from multiprocessing.connection import wait

        with self._lock:
            if self.returncode is not None:
                return self.returncode
            if not self._following:
                if not wait([self.sentinel], 0):
                    return None
                try:
                    self.returncode = forkserver.read_signed(self.sentinel)
                    return self.returncode
                except (OSError, EOFError):  # the forkserver ended, and with it the exit status
                    self._following = True
                    log.warning("the run workers' forkserver ended before run worker pid %s; following it by its "
                                "id", self.pid)
            if not alive(self.pid, self._started):
                self.returncode = ORPHANED_EXIT
            return self.returncode

    def _send_signal(self, sig):
        if self._following and not alive(self.pid, self._started):
            return  # ended: the id may be another process's by now
        super()._send_signal(sig)


class _Process(mp_context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj):
        return _Popen(process_obj)


class _Context(mp_context.ForkServerContext):
    Process = _Process


def start_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def alive(pid: int, started: float | None) -> bool:
    """Whether the process `pid`, started at `started`, still runs (a newer process with the id is not it)."""
    import psutil

    try:
        process = psutil.Process(pid)
        # Within a second, not equal: psutil derives the start time from the boot time, which
        # moves when the wall clock is stepped. A new process taking the id that soon is not a risk.
        return (started is not None and abs(process.create_time() - started) < 1.0
                and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


class _Decision:
    """The context runs start from: the forkserver once `_verify` passed, else spawn.

    Checked in a thread started by the first run's launch or by `warm`, whichever comes first.
    A run launched before the check ends waits for it, at most FIRST_RUN_WAIT, then is
    spawned, and so are all later runs. Once the forkserver has ended (killed), later runs are
    spawned too: multiprocessing would start another one unchecked, importing everything while
    the code server holds the lock that its other calls wait for."""

    def __init__(self):
        self.context = None
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._started = False

    def start(self) -> None:
        """Begin the check (the forkserver's start and preload) in a thread, once."""
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self.decide, name="lakehouse-forkserver", daemon=True).start()

    def get(self):
        self.start()
        if not self.done.wait(FIRST_RUN_WAIT):
            self._set(None, None, f"the run workers' forkserver was not ready within {FIRST_RUN_WAIT:.0f}s")
        if isinstance(forked := self.context, _Context) and not _forkserver_alive():
            self._set(forked, None, "the run workers' forkserver has ended")
        return self.context

    def decide(self) -> None:
        with self._lock:
            self._started = True  # called directly (tests), no thread is started for it later
        stopped = None
        try:
            problem = _verify(_Context(), PRELOAD)
        except Exception as exc:  # the forkserver could not start, or died in its preload
            problem = f"the forkserver failed: {type(exc).__name__}: {exc}"
            if stopped := _stopped_by(forkserver._forkserver._forkserver_pid):
                # The stop of the daemon's process group (a `lakehouse run` ending soon after it
                # began): not a fault, and no run will start here.
                problem = f"the forkserver was stopped by {stopped} before its check ended"
        self._set(None, None if problem else _Context(), problem, quiet=stopped is not None)

    def _set(self, current, context, why: str | None, quiet: bool = False) -> None:
        """`context` (None: spawn, said with `why`) if the context is still `current`: the first
        decision stands (a check that ends after the first run gave up on it changes nothing),
        and only the forkserver is given up for spawn. `quiet`: said as information, not a warning."""
        with self._lock:
            if self.context is not current:
                return
            if context is None:
                said = "%s: runs are spawned as Dagster starts them from now on (about 2 s slower each)"
                if quiet:
                    log.info(said, why)
                else:
                    checked_code.warn_once(log, said, why)
                context = multiprocessing.get_context("spawn")
            self.context = context
            self.done.set()


GONE = "gone"  # _end_of: not a child of this process (never, or reaped)
STOPPING = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def _end_of(pid: int | None, wait: float = 0.0):
    """How child `pid` ended, as `os.waitid` tells it without reaping it (multiprocessing reaps
    its forkserver itself); None while it runs; GONE if it is not (or no longer) a child of
    ours. Its pipe can close a moment before it has ended: an end is waited for up to `wait` s."""
    if pid is None:
        return GONE
    deadline = time.monotonic() + wait
    while True:
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return GONE
        if info is not None or time.monotonic() > deadline:
            return info
        time.sleep(0.05)


def _stopped_by(pid: int | None) -> str | None:
    """The name of the stopping signal (STOPPING) that ended child `pid`, else None."""
    info = _end_of(pid, wait=1.0)
    if not isinstance(info, os.waitid_result) or info.si_code not in (os.CLD_KILLED, os.CLD_DUMPED):
        return None
    return signal.Signals(info.si_status).name if info.si_status in STOPPING else None


def _forkserver_alive() -> bool:
    return _end_of(forkserver._forkserver._forkserver_pid) is None


def _verify(context, modules: list[str]) -> str | None:
    """Start one child from the forkserver; None if it had every preloaded module, else why not."""
    forkserver.set_forkserver_preload(modules)
    child = context.Process(target=_has_modules, args=(modules,), name="lakehouse-forkserver-check")
    child.start()
    child.join(VERIFY_SECONDS)
    if child.exitcode == 0:
        return None
    if child.exitcode is None:
        child.kill()
        return f"the forkserver's first child did not end within {VERIFY_SECONDS:.0f}s"
    return f"the forkserver could not import everything it preloads ({', '.join(modules)}; exit code {child.exitcode})"


def _has_modules(modules: list[str]) -> None:
    missing = [m for m in modules if m not in sys.modules]
    if missing:
        print(f"not preloaded: {', '.join(missing)}", file=sys.stderr)
        sys.exit(3)


_decision: _Decision | None = None


def in_code_server() -> bool:
    """True in a Dagster code server process (`dagster api grpc`, started by the daemon or the UI)."""
    return sys.argv[1:3] == ["api", "grpc"] and "dagster._grpc.server" in sys.modules


def local_launcher(argv: list[str]) -> bool:
    """Whether the code server's instance (its --instance-ref) launches runs as its own processes."""
    try:
        ref = json.loads(argv[argv.index("--instance-ref") + 1])
        return ref["run_launcher_data"]["class_name"] in LOCAL_LAUNCHERS
    except (ValueError, IndexError, KeyError, TypeError):
        return False  # no instance given: a code server deployed on its own (ECS, Kubernetes)


def install() -> bool:
    """In a code server of an instance with local runs: its runs start from a preloaded forkserver
    (once checked). True when applied."""
    global _decision
    if _decision is not None or not in_code_server() or not local_launcher(sys.argv):
        if _decision is None:
            _release_parked()
        return _decision is not None
    if changed := checked_code.changed(CHECKED_SOURCES, owner_of):
        checked_code.warn_once(log, "%s differ from the code lakehouse/run_workers.py was checked against: runs are "
                               "spawned as Dagster starts them (about 2 s slower each)", ", ".join(changed))
        _release_parked()
        return False
    if _parked is not None:
        multiprocessing.util.spawnv_passfds = _spawn_or_unpark
    from dagster._grpc import server

    _decision = decision = _Decision()
    # A data descriptor on the class wins over the attribute the constructor already set.
    # Only StartRun reads it (tests/test_run_workers.py checks), so the first run starts the forkserver.
    server.DagsterApiServer._mp_ctx = property(lambda self: decision.get(), lambda self, value: None)
    return True


# The forkserver as a fork of this code server made at its start (`park`), waiting to be given
# its sockets: (our end of their socket, its pid), until it is.
_parked: tuple[socket.socket, int] | None = None
_spawnv_passfds = multiprocessing.util.spawnv_passfds  # how multiprocessing starts a forkserver (and others)
PARKED_TITLE = "lakehouse run workers' forkserver, parked until the first run of code server pid {}"


def park() -> None:
    """In a code server forked by the daemon's zygote (lakehouse/code_servers.py), before Dagster
    starts its threads: fork the process that will be the run workers' forkserver, waiting.

    A forkserver started cold imports Dagster again (about 1.8 s of its 2.8 s of CPU, and of the
    first run's wait); this one has it already, and imports the rest of PRELOAD (the definitions,
    the engines) when the first run is asked for or `warm` says one is coming, as before
    (`_spawn_or_unpark`). A code server that never runs one leaves it waiting, which costs no CPU;
    it ends with the code server."""
    global _parked
    if _parked is not None or not in_code_server() or not local_launcher(sys.argv):
        return
    from lakehouse import code_servers

    server = os.getpid()

    def parked(theirs: socket.socket) -> int:
        code_servers.title(PARKED_TITLE.format(server))  # first: not taken for the code server meanwhile
        return _wait_to_serve(theirs)  # forkserver.main's end (SystemExit) is this process's

    _parked = code_servers.fork_child(parked)


def _wait_to_serve(sock: socket.socket) -> int:
    """The parked fork: wait for the forkserver's listener and pipe, then serve as multiprocessing's
    forkserver (`forkserver.main`, which ends the process when the code server is gone)."""
    import types

    from lakehouse import code_servers

    try:
        message, fds, _, _ = socket.recv_fds(sock, 1 << 20, 2)
    except OSError:
        return 0
    if not message or len(fds) != 2:
        return 0  # released, or the code server is gone
    sock.close()
    preload, data, command, env, cwd = json.loads(message)
    code_servers.title(command)
    # What a forkserver started then would have had: the code server's environment and folder as
    # they are now (Dagster adds the instance's variables to it after the fork), `python -c`'s
    # arguments and main module (the definitions it preloads do not take it for a code server).
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = ["-c"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    forkserver.main(fds[0], fds[1], preload, **data)
    return 0


def _spawn_or_unpark(path, args, passfds):
    """multiprocessing's `util.spawnv_passfds`, except for the forkserver while one is parked: that
    one is given the listener and pipe `ForkServer.ensure_running` made, and is the forkserver."""
    global _parked
    if (_parked is None or os.fsdecode(path) != sys.executable
            or not os.fsdecode(args[-1]).startswith("from multiprocessing.forkserver import main")):
        return _spawnv_passfds(path, args, passfds)
    (sock, pid), _parked = _parked, None
    multiprocessing.util.spawnv_passfds = _spawnv_passfds  # used once
    # What ensure_running gives the command it spawns (Python 3.11's, checked in CHECKED_SOURCES).
    preload = forkserver._forkserver._preload_modules
    data = {}
    if preload:
        from multiprocessing import spawn

        data = {k: v for k, v in spawn.get_preparation_data("ignore").items() if k in ("main_path", "sys_path")}
    message = [preload, data, " ".join(map(os.fsdecode, args)), dict(os.environ), os.getcwd()]
    try:
        socket.send_fds(sock, [json.dumps(message).encode()], list(passfds))
        return pid
    except OSError as exc:  # it died meanwhile: started cold instead
        stopped = _stopped_by(pid)  # a stop of the daemon's group reached it first: no fault
        _reap(pid)
        if stopped:
            log.info("the parked forkserver was stopped by %s: it is started as multiprocessing starts it", stopped)
        else:
            checked_code.warn_once(log, "the parked forkserver could not be given its sockets (%s): it is started "
                                   "as multiprocessing starts it", exc)
        return _spawnv_passfds(path, args, passfds)
    finally:
        sock.close()


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _release_parked() -> None:
    """A parked forkserver this code server will not use ends (it reads the end of its socket)."""
    global _parked
    if _parked is not None:
        (sock, pid), _parked = _parked, None
        multiprocessing.util.spawnv_passfds = _spawnv_passfds
        sock.close()
        _reap(pid)  # at once: it waits on nothing but that socket


def warm() -> None:
    """Start the forkserver now if this code server forks its runs: a run is about to be asked
    for (the landing sensor requested one), and its launch comes a second or two later."""
    if _decision is not None:
        _decision.start()


def owner_of(name: str):
    """The class holding a function of CHECKED_SOURCES."""
    from dagster._grpc import server

    return {"DagsterApiServer": server.DagsterApiServer, "Popen": popen_forkserver.Popen,
            "ForkServer": forkserver.ForkServer}[name.split(".")[0]]
