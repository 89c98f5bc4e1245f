"""A module the code servers' zygote runs in tests/test_code_servers.py: `python -m zygote_probe <report> <how>`.

It writes what it sees of itself to <report> (JSON), then ends as <how> says: "exit3", "end"
(the module's end), "raise", or "sleep" (until signalled)."""

import atexit
import json
import os
import sys
import time

report, how = sys.argv[1], sys.argv[2]
atexit.register(lambda: open(report + ".atexit", "w").write("ran"))


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
               "fds": fds}, f)
if how == "exit3":
    sys.exit(3)
if how == "raise":
    raise RuntimeError("the probe raised")
if how == "sleep":
    time.sleep(600)
