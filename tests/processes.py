"""The processes of one lakehouse home, found the way an operator would: by their environment."""

import os
import signal
import time
from pathlib import Path


def processes_of(root: Path) -> dict[int, str]:
    """{pid: command line} of live processes whose environment points under `root` (LAKEHOUSE_HOME, DAGSTER_HOME)."""
    marker = str(root).encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
        if state == "Z":
            continue  # exited, waiting to be reaped: nothing left to stop
        if any(v.startswith((b"DAGSTER_HOME=", b"LAKEHOUSE_HOME=")) and marker in v for v in env):
            found[int(entry.name)] = command[:160]
    return found


FORKSERVER = "multiprocessing.forkserver import main"  # the command line of the code server's forkserver and its forks


def parent_of(pid: int) -> int | None:
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def run_workers(root: Path) -> dict[int, str]:
    """{pid: command line} of the home's run workers: forks of the code server's forkserver
    (lakehouse/run_workers.py), or processes spawned by multiprocessing where that is not applied."""
    found = processes_of(root)
    return {pid: command for pid, command in found.items()
            if "spawn_main" in command or (FORKSERVER in command and FORKSERVER in found.get(parent_of(pid), ""))}


def forkservers(root: Path) -> dict[int, str]:
    """{pid: command line} of the home's forkservers (a child of a code server, not of another forkserver)."""
    found = processes_of(root)
    return {pid: command for pid, command in found.items()
            if FORKSERVER in command and "api grpc" in found.get(parent_of(pid), "")}


def none_left(root: Path, within: float) -> list[str]:
    deadline = time.monotonic() + within
    while (left := processes_of(root)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [f"{pid}: {command}" for pid, command in left.items()]


def kill_all(root: Path, where=lambda command: True, rounds: int = 20) -> list[str]:
    """SIGKILL every process of the home whose command line `where` accepts, until none is left.

    `rounds=1` kills only what is running now: a supervisor that restarts what was killed
    (lakehouse run restarting the daemon) would otherwise have its restart killed too.
    """
    killed = []
    for _ in range(rounds):  # a process may start another while being killed
        found = {pid: c for pid, c in processes_of(root).items() if where(c)}
        if not found:
            break
        for pid, command in found.items():
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(command)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    return killed
