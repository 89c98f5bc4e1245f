"""A module the code servers' zygote runs in tests/test_code_servers.py: `python -m zygote_probe <report> <how>`.

It writes what it sees of itself to <report> (JSON), then ends as <how> says: "exit3", "end"
(the module's end), "raise", or "sleep" (until signalled)."""

import atexit
import json
import os
import signal
import sys
import time
import weakref

report, how = sys.argv[1], sys.argv[2]
atexit.register(lambda: open(report + ".atexit", "w").write("ran"))


class Kept:
    pass


kept = Kept()  # alive to the end: its finalizer runs at exit, through the handler weakref registers once per process
weakref.finalize(kept, lambda: open(report + ".finalized", "w").write("ran")).atexit = True


def targets() -> dict[str, str]:
    """What each descriptor beyond the standard streams is open on (the listing's own is gone by then)."""
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            pass
    return {fd: target for fd, target in found.items() if int(fd) > 2}


fds = targets()
with open(report, "w") as f:
    json.dump({"argv": sys.argv, "cwd": os.getcwd(), "path0": sys.path[0], "pid": os.getpid(), "ppid": os.getppid(),
               "variable": os.environ.get("ZYGOTE_PROBE"),
               "cmdline": open("/proc/self/cmdline", "rb").read().replace(b"\0", b" ").decode().strip(),
               "environ": open("/proc/self/environ", "rb").read().decode(errors="replace").split("\0"),
               "fds": fds, "stops": [str(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM)]}, f)
if how == "exit3":
    sys.exit(3)
if how == "raise":
    raise RuntimeError("the probe raised")
if how == "sleep":  # until signalled: SIGTERM ends it with 143 whatever the disposition it inherited
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    time.sleep(120)
