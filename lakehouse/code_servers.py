"""The daemon's code servers forked from a process that has imported Dagster, instead of started cold.

Dagster's daemon starts each code server as `python -m dagster api grpc ...`: a new interpreter
that imports Dagster again before it loads the code location, about 1.5 s of CPU, and as long
before the first sensor tick, at every `lakehouse run`, `make ui` and daemon restart. The daemon
has imported Dagster already. So, after its imports and before any of its threads run Dagster
(`lakehouse/daemon_watch.py`), it forks one child, the zygote, which stays single-threaded and
forks each code server from itself when the daemon asks; the code server then only loads the
code location (measured: 0.4 s of CPU to a server that answers, against 1.4–1.5 s spawned).
The zygote holds third-party modules and Dagster only: the project's own modules are imported
by each code server, so a code server started after an edit (a reload in the UI) loads the
edited code, as a spawned one does.

What the code server gets is what Dagster would have started: its command line (as the process
title, so `ps` and the tests see `dagster api grpc`), environment, working folder, standard
streams (the daemon's, as inherited), process group (the daemon's, so a stop of the group stops
it) and exit status (the zygote reaps it and tells the daemon). Dagster keeps the returned object
for its `pid`, `poll`, `wait` and `returncode`, as it keeps a `subprocess.Popen`.

The zygote ends when the daemon does (it reads the end of their socket). Where it cannot serve
(it was killed, Dagster's `open_server_process` is not the code checked, the command is not one
this interpreter runs, setproctitle is missing), the code server is started as Dagster starts
it, and the fallback is recorded for `lakehouse status` (`checked_code.warn_once`).
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection

from lakehouse import checked_code

log = logging.getLogger(__name__)
# sha256 (first 16 hex digits) of Dagster 1.13's function whose command line is read here.
CHECKED_SOURCES = {"open_server_process": "011c516e0b385ba6"}
POLL_SECONDS = 0.5  # how often the zygote reaps ended code servers while the daemon asks nothing
# What a code server imports beyond the daemon: its command's entry point and gRPC server.
PRELOAD = ("dagster._cli", "dagster._cli.api", "dagster._grpc.server")
LOST = 255  # the exit status of a code server whose zygote died before it: unknown (as run_workers.ORPHANED_EXIT)
# What must be the daemon's own for a fork to equal a new interpreter: these shape sys.path, the
# interpreter's flags and hash seed at its start, which a fork keeps from the daemon.
STARTUP_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "PYTHONHASHSEED", "PYTHONNOUSERSITE",
                     "PYTHONUSERBASE", "PYTHONOPTIMIZE", "PYTHONDONTWRITEBYTECODE", "PYTHONUTF8", "PYTHONIOENCODING",
                     "PYTHONWARNINGS", "PYTHONDEVMODE", "PYTHONFAULTHANDLER", "PYTHONPLATLIBDIR")


class Zygote:
    """The daemon's end: asks the zygote for a fork, and for the exit status of its forks.

    Thread-safe: Dagster starts and polls code servers from several of the daemon's threads."""

    def __init__(self, conn: Connection, pid: int):
        self.pid = pid
        self._conn = conn
        self._lock = threading.Lock()
        self.gone: str | None = None  # why it no longer serves

    def _ask(self, request: tuple):
        with self._lock:
            if self.gone:
                raise EOFError(self.gone)
            try:
                self._conn.send(request)
                return self._conn.recv()
            except (OSError, EOFError) as exc:
                self.gone = f"the code servers' zygote (pid {self.pid}) is gone ({type(exc).__name__})"
                raise EOFError(self.gone) from None

    def fork(self, args: list[str], env: dict, cwd: str | None) -> int:
        return self._ask(("fork", args, env, cwd))

    def status(self, pid: int):
        """The exit status of fork `pid` (as Popen's returncode), None while it runs."""
        return self._ask(("status", pid))


class ForkedServer:
    """What Dagster keeps of a code server it started (`subprocess.Popen`'s pid, poll, wait,
    returncode and signals), for one the zygote forked."""

    def __init__(self, zygote: Zygote, pid: int, args: list[str]):
        self.pid, self.args, self.returncode = pid, args, None
        self._zygote = zygote
        self._started = _start_time(pid)

    def poll(self):
        if self.returncode is None:
            try:
                self.returncode = self._zygote.status(self.pid)
            except EOFError:  # the zygote died: its forks are no longer its children; follow this one by its id
                if not _alive(self.pid, self._started):
                    self.returncode = LOST
        return self.returncode

    def wait(self, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.05)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # ended: the id may be another process's by now
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _start_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _alive(pid: int, started: float | None) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        return (started is not None and abs(process.create_time() - started) < 1.0
                and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def forkable(args: list[str], env: dict | None, kwargs: dict) -> str | None:
    """None if the command is a code server this interpreter would run as the zygote runs it, else why not."""
    if list(args[:5]) != [sys.executable, "-m", "dagster", "api", "grpc"]:
        return "another command or interpreter"
    if kwargs:
        return f"Dagster asked for {', '.join(sorted(kwargs))}"
    env = os.environ if env is None else env
    if any(env.get(name) != _STARTUP_ENV.get(name) for name in STARTUP_VARIABLES):
        return "the interpreter's start-up variables differ from the daemon's"
    return None


_STARTUP_ENV = {name: os.environ.get(name) for name in STARTUP_VARIABLES}  # as this interpreter started (imported early)


def install(close: tuple[int, ...] = ()) -> Zygote | None:
    """In the daemon: fork the zygote and have Dagster's code servers forked by it (see the module).
    This process must not have started a thread that may hold a lock (the daemon's watchdog only
    reads a pipe). `close`: descriptors of this process the zygote and the code servers must not
    hold. The zygote, or None where it is not applied (said, and recorded)."""
    from dagster._grpc import server

    if changed := checked_code.changed(CHECKED_SOURCES, lambda name: server):
        checked_code.warn_once(log, "%s differs from the code lakehouse/code_servers.py was checked against: the "
                               "daemon's code servers are started as Dagster starts them (about 1 s slower each)",
                               ", ".join(changed))
        return None
    try:
        import setproctitle  # noqa: F401  (the code servers' command line: see the module)
    except ImportError:
        checked_code.warn_once(log, "setproctitle is not installed: the daemon's code servers are started as Dagster "
                               "starts them (about 1 s slower each)")
        return None
    for module in PRELOAD:
        importlib.import_module(module)
    zygote = _fork(close)
    spawn = server.open_ipc_subprocess

    def open_code_server(args, **kwargs):
        env = kwargs.pop("env", None)
        cwd = kwargs.pop("cwd", None)
        if forkable(args, env, kwargs) is None:
            try:
                return ForkedServer(zygote, zygote.fork(list(args), dict(os.environ if env is None else env), cwd),
                                    list(args))
            except EOFError as exc:
                checked_code.warn_once(log, "%s: the daemon's code servers are started as Dagster starts them from "
                                       "now on (about 1 s slower each)", exc)
        return spawn(args, **kwargs, **({} if env is None else {"env": env}), **({} if cwd is None else {"cwd": cwd}))

    server.open_ipc_subprocess = open_code_server
    return zygote


def _fork(close: tuple[int, ...]) -> Zygote:
    ours, theirs = socket.socketpair()
    daemon = os.getpid()
    pid = os.fork()
    if pid == 0:  # the zygote: never returns into the daemon's code
        code = 1
        try:
            ours.close()
            for fd in close:
                os.close(fd)
            code = _serve(Connection(theirs.detach()), daemon)
        finally:
            os._exit(code)
    theirs.close()
    return Zygote(Connection(ours.detach()), pid)


def _serve(conn: Connection, daemon: int) -> int:
    """The zygote's loop: fork a code server when asked, reap them, say how each ended. Returns
    the exit status of this process: the zygote's when the daemon is gone (its code servers then
    end with their heartbeat), a code server's in a fork (`_become`)."""
    import gc

    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a stop, not an exception unwinding into the daemon's frames
    _title(f"lakehouse code-server zygote of dagster-daemon pid {daemon}")
    gc.freeze()  # what the forks share: out of their collector's sight, so its passes do not copy those pages
    ended: dict[int, int | None] = {}  # pid -> returncode, None while it runs
    while True:
        _reap(ended)
        try:
            if not conn.poll(POLL_SECONDS):
                continue
            request = conn.recv()
            if request[0] == "status":
                _reap(ended)
                conn.send(ended.get(request[1], LOST))
                continue
            _, args, env, cwd = request
            pid = os.fork()
            if pid == 0:
                conn.close()
                return _become(args, env, cwd)
            ended[pid] = None
            conn.send(pid)
        except (OSError, EOFError):
            return 0


def _reap(ended: dict) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        ended[pid] = os.waitstatus_to_exitcode(status)


def _become(args: list[str], env: dict, cwd: str | None) -> int:
    """Run `args` (`python -m <module> ...`) in this fork as a new interpreter would; its exit status."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as in a new interpreter
    os.environ.clear()
    os.environ.update(env)
    if cwd:
        os.chdir(cwd)
    _title(" ".join(args))
    # The daemon's exit handlers (registered by its imports) are not this process's; the module's
    # own are run below, as the interpreter runs them at its exit.
    atexit._clear()  # noqa: SLF001 (no public way to drop handlers others registered)
    sys.path[0] = os.getcwd()  # `python -m` puts the working folder first
    sys.argv = [args[2], *args[3:]]
    code = 0
    try:
        runpy.run_module(args[2], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    except BaseException:  # what the interpreter prints of an exception nothing caught
        traceback.print_exc()
        code = 1
    # What the interpreter does at its exit, here where the process ends with os._exit: wait for
    # the threads that are not daemons, run the exit handlers, flush the standard streams.
    threading._shutdown()  # noqa: SLF001
    atexit._run_exitfuncs()  # noqa: SLF001
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return code


def _title(title: str) -> None:
    """The process's command line as `ps` and /proc show it. Only over the daemon's own command
    line (SPT_NOENV): the environment block stays, where operators (and the tests) find a home's processes."""
    os.environ["SPT_NOENV"] = "1"
    try:
        import setproctitle

        setproctitle.setproctitle(title)
    finally:
        del os.environ["SPT_NOENV"]


