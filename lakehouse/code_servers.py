"""The daemon's code servers forked from a process that has imported Dagster, instead of started cold.

Dagster's daemon starts each code server as `python -m dagster api grpc ...`: a new interpreter
that imports Dagster again before it loads the code location, about 1.5 s of CPU, and as long
before the first sensor tick, at every `lakehouse run`, `make ui`, daemon restart and workspace
refresh. The daemon has imported Dagster already. So, after its imports and before its threads
run Dagster (`lakehouse/daemon_watch.py`), it forks one child, the zygote, which forks each code
server from itself when the daemon asks; the code server then only loads the code location
(measured: 0.4 s of CPU to a server that answers, against 1.4–1.5 s spawned). The daemon then
has one thread of its own (its watchdog, reading a pipe) and Arrow's allocator threads, which
are fork-safe (the run workers' forkserver relies on them too). The zygote holds other projects'
modules only: each fork drops the project's own (`lakehouse.*`) before it runs, so a code server
imports them afresh, edited or not, as a spawned one does.

What the code server gets is what Dagster would have started: its command line (as the process
title: `ps -f` shows `dagster api grpc ...`, cut to the length of the daemon's own command line),
environment (`/proc/<pid>/environ`, which the operating system keeps from a process's start, is
the daemon's), working folder, standard streams (the daemon's, inherited), process group (the
daemon's, so a stop of the group stops it), exit handlers (those of its imports, as a new
interpreter registers them) and exit status (the zygote reaps it and tells the daemon); where its
runs are local, it also forks its run workers' forkserver at once, parked until the first run
(`lakehouse/run_workers.py`, `park`), while it has no thread. Dagster
keeps the returned object for its `pid`, `poll`, `wait` and `returncode`, as it keeps a
`subprocess.Popen`.

The zygote ends when the daemon does (it reads the end of their socket; a stop signal to the
group is left to the daemon, which may start a code server while it stops). Where it cannot
serve (killed, failed to fork, a Dagster whose functions read here are not the code checked, a
command for another interpreter or with other start-up variables, setproctitle missing), the
code server is started as Dagster starts it, and the fallback is said and recorded for
`lakehouse status` (`checked_code.warn_once`).
"""

from __future__ import annotations

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

from lakehouse import checked_code, run_workers  # its process helpers; its park() in each fork

log = logging.getLogger(__name__)
# sha256 (first 16 hex digits) of Dagster 1.13's functions this relies on: the one whose command
# line is read here, and those that use what it returns.
CHECKED_SOURCES = {
    "open_server_process": "011c516e0b385ba6",
    "wait_for_grpc_server": "ef602997d916e921",
    "GrpcServerProcess.wait": "e3c340d134682e09",
    "GrpcServerProcess.shutdown_server": "e0e36f45ee866f10",
}
# What a code server imports beyond the daemon: its command's entry point and gRPC server.
PRELOAD = ("dagster._cli", "dagster._cli.api", "dagster._grpc.server")
POLL_SECONDS = 0.5  # how often the zygote reaps ended code servers while the daemon asks nothing
LOST = run_workers.ORPHANED_EXIT  # the exit status of a code server whose zygote died before it: unknown
OURS = "lakehouse"  # the project's modules, which each fork imports afresh
STOPS = (signal.SIGINT, signal.SIGTERM)
_STOPS: dict = {}  # their handlers in the daemon before it forked the zygote, which ignores them


def _startup(env) -> dict:
    """What in an environment shapes a new interpreter before it runs anything (sys.path, flags,
    hash seed, encodings, locale): a fork keeps the daemon's."""
    return {k: v for k, v in env.items() if k.startswith(("PYTHON", "LC_")) or k == "LANG"}


class Zygote:
    """The daemon's end: asks the zygote for a fork, and for how its forks ended.

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
                answer = self._conn.recv()
            except (OSError, EOFError) as exc:
                self._give_up(exc)
                raise EOFError(self.gone) from None
            except BaseException as exc:  # a stop's KeyboardInterrupt: an answer left unread would be the next one's
                self._give_up(exc)
                raise
        if isinstance(answer, tuple) and answer[0] == "error":
            raise OSError(answer[1])
        return answer

    def _give_up(self, exc: BaseException) -> None:
        self.gone = f"the code servers' zygote is gone ({type(exc).__name__})"
        self._conn.close()
        try:
            os.waitpid(self.pid, os.WNOHANG)  # reaped, if it has ended (a child of the daemon)
        except ChildProcessError:
            pass

    def fork(self, args: list[str], env: dict, cwd: str | None) -> tuple[int, int]:
        """(serial, pid) of a fork running `args`. Raises EOFError (no zygote) or OSError (no fork)."""
        return self._ask(("fork", args, env, cwd))

    def status(self, serial: int):
        """The exit status of fork `serial` (as Popen's returncode), None while it runs."""
        return self._ask(("status", serial))


class ForkedServer:
    """What Dagster keeps of a code server it started (`subprocess.Popen`'s pid, poll, wait,
    returncode and signals), for one the zygote forked."""

    def __init__(self, zygote: Zygote, serial: int, pid: int, args: list[str]):
        self.pid, self.args, self.returncode = pid, args, None
        self._zygote, self._serial = zygote, serial
        self._started = run_workers.start_time(pid)
        self._lock = threading.Lock()  # the zygote tells an exit status once

    def poll(self):
        with self._lock:
            if self.returncode is None:
                try:
                    self.returncode = self._zygote.status(self._serial)
                except EOFError:  # the zygote died: its forks are no longer its children; follow this one by its id
                    if not run_workers.alive(self.pid, self._started):
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


def forkable(args: list[str], env: dict | None, kwargs: dict) -> str | None:
    """None if the command is a code server this interpreter would run as a fork runs it, else why not."""
    if list(args[:5]) != [sys.executable, "-m", "dagster", "api", "grpc"]:
        return "another command or interpreter"
    if kwargs:
        return f"Dagster asked for {', '.join(sorted(kwargs))}"
    if _startup(os.environ if env is None else env) != _STARTUP:
        return "the interpreter's start-up variables differ from the daemon's"
    return None


_STARTUP = _startup(os.environ)  # the daemon's, imported early (nothing of ours changes them)


def owner_of(name: str):
    from dagster._grpc import server

    return server.GrpcServerProcess if name.startswith("GrpcServerProcess.") else server


def install(close: tuple[int, ...] = ()) -> Zygote | None:
    """In the daemon: fork the zygote and have Dagster's code servers forked by it (see the module).
    Call it after the daemon's imports and before it starts threads or registers exit handlers of
    its own (the forks run those of the imports). `close`: descriptors of this process the zygote
    and the code servers must not hold. The zygote, or None where it is not applied (said, and recorded)."""
    from dagster._grpc import server

    if changed := checked_code.changed(CHECKED_SOURCES, owner_of):
        checked_code.warn_once(log, "%s differ from the code lakehouse/code_servers.py was checked against: the "
                               "daemon's code servers are started as Dagster starts them (about 1 s slower each)",
                               ", ".join(changed))
        return None
    try:
        import setproctitle  # noqa: F401  (the code servers' command line: see the module)

        for module in PRELOAD:
            importlib.import_module(module)
        zygote = _fork(close)
    except (ImportError, OSError) as exc:
        checked_code.warn_once(log, "the code servers' zygote could not start (%s): the daemon's code servers are "
                               "started as Dagster starts them (about 1 s slower each)", exc)
        return None
    spawn = server.open_ipc_subprocess

    def open_code_server(args, **kwargs):
        env, cwd = kwargs.get("env"), kwargs.get("cwd")
        why = forkable(args, env, {k: v for k, v in kwargs.items() if k not in ("env", "cwd")})
        if why is None:
            try:
                serial, pid = zygote.fork(list(args), dict(os.environ if env is None else env), cwd)
                return ForkedServer(zygote, serial, pid, list(args))
            except (EOFError, OSError) as exc:
                why = str(exc)
        checked_code.warn_once(log, "a code server started as Dagster starts it, not forked: %s", why)
        return spawn(args, **kwargs)

    server.open_ipc_subprocess = open_code_server
    return zygote


def fork_child(body) -> tuple[socket.socket, int]:
    """(our end of a socket, pid) of a child that runs `body(its end)` and exits with what it
    returns, never returning into this process's code (the zygote here, the parked forkserver in
    lakehouse/run_workers.py). What it prints (a traceback) is what an interpreter would."""
    ours, theirs = socket.socketpair()
    for stream in (sys.stdout, sys.stderr):  # else what waits in their buffers is written by the child too
        stream.flush()
    try:
        pid = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        raise
    if pid == 0:
        code = 1
        try:
            ours.close()
            code = body(theirs)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    theirs.close()
    return ours, pid


def _fork(close: tuple[int, ...]) -> Zygote:
    global _STOPS
    _STOPS = {sig: signal.getsignal(sig) for sig in STOPS}  # as the interpreter began (Python's, or inherited ignored)
    daemon = os.getpid()

    def zygote(theirs: socket.socket) -> int:
        for fd in close:
            os.close(fd)
        return _serve(Connection(theirs.detach()), daemon)

    ours, pid = fork_child(zygote)
    return Zygote(Connection(ours.detach()), pid)


def _serve(conn: Connection, daemon: int) -> int:
    """The zygote's loop: fork a code server when asked, reap them, say how each ended. Returns
    the exit status of this process: the zygote's when the daemon is gone (its code servers then
    end with their heartbeat), a code server's in a fork (`_become`)."""
    import gc

    # The daemon stops; the zygote ends after it (end of file), so no code server it starts meanwhile is spawned.
    for sig in STOPS:
        signal.signal(sig, signal.SIG_IGN)
    title(f"lakehouse code-server zygote of dagster-daemon pid {daemon}")
    gc.freeze()  # what the forks share: out of their collector's sight, so its passes do not copy those pages
    running: dict[int, int] = {}  # pid -> serial, of forks not yet reaped
    ended: dict[int, int] = {}  # serial -> exit status, until the daemon has been told
    serials = iter(range(1, 1 << 62))
    while True:
        try:
            _reap(running, ended)
            if not conn.poll(POLL_SECONDS):
                continue
            request = conn.recv()
            if request[0] == "status":
                _reap(running, ended)
                serial = request[1]
                conn.send(ended.pop(serial) if serial in ended else None if serial in running.values() else LOST)
                continue
            _, args, env, cwd = request
            try:
                pid = os.fork()
            except OSError as exc:  # this one is spawned; the next may fork
                conn.send(("error", f"the code servers' zygote could not fork: {exc}"))
                continue
            if pid == 0:
                try:
                    conn.close()
                    return _become(args, env, cwd)
                except BaseException:  # before or around the code server: said, as a new interpreter would
                    traceback.print_exc()
                    return 1
            running[pid] = serial = next(serials)
            conn.send((serial, pid))
        except (OSError, EOFError):
            return 0


def _reap(running: dict, ended: dict) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in running:
            ended[running.pop(pid)] = os.waitstatus_to_exitcode(status)


def _become(args: list[str], env: dict, cwd: str | None) -> int:
    """Run `args` (`python -m <module> ...`) in this fork as a new interpreter would; its exit status."""
    for sig, handler in _STOPS.items():  # as a new interpreter started by the daemon would have them
        signal.signal(sig, handler)
    os.environ.clear()
    os.environ.update(env)
    if cwd:
        os.chdir(cwd)
    title(" ".join(args))
    for name in [name for name in sys.modules if name == OURS or name.startswith(OURS + ".")]:
        del sys.modules[name]  # imported afresh by the code server: its code as it is now
    if not sys.flags.safe_path:
        sys.path[0] = os.getcwd()  # `python -m` puts the working folder first
    sys.argv = [args[2], *args[3:]]
    from lakehouse import run_workers  # afresh, as dropped above

    run_workers.park()  # a code server's run workers' forkserver (park decides), forked now, with no thread yet
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
    import atexit

    atexit._run_exitfuncs()  # noqa: SLF001
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return code


def title(text: str) -> None:
    """The process's command line as `ps -f` and /proc show it. Only over the daemon's own command
    line (SPT_NOENV): the environment block stays, where operators (and the tests) find a home's processes."""
    before = os.environ.get("SPT_NOENV")
    os.environ["SPT_NOENV"] = "1"
    try:
        import setproctitle

        setproctitle.setproctitle(text)
    finally:
        if before is None:
            del os.environ["SPT_NOENV"]
        else:
            os.environ["SPT_NOENV"] = before
