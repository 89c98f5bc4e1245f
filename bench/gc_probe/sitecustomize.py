"""The garbage collector's time in every Python process of a bench (bench/run_cpu.py --gc).

Put on PYTHONPATH with LAKEHOUSE_GC_PROBE naming a folder: Python imports `sitecustomize` at
start, so each process (the CLI, the daemon, the code server, the forkserver and its forks)
times its collections with `gc.callbacks` and writes the total, twice a second and at exit,
to that folder as <pid>-<start>.json (a fork, which ends with os._exit, only twice a second).
A fork starts its own count. Without the variable it does nothing.
"""

import gc
import json
import os
import sys
import threading
import time

_FOLDER = os.environ.get("LAKEHOUSE_GC_PROBE")
_state = {"started": 0.0, "seconds": 0.0, "collections": [0, 0, 0], "name": f"{os.getpid()}-{time.time_ns()}"}


def _callback(phase, info):
    if phase == "start":
        _state["started"] = time.perf_counter()
    else:
        _state["seconds"] += time.perf_counter() - _state["started"]
        _state["collections"][info["generation"]] += 1


def _write():
    record = {"gc_s": round(_state["seconds"], 4), "collections": _state["collections"],
              "command": " ".join(sys.orig_argv)[:300]}
    path = os.path.join(_FOLDER, _state["name"])
    try:  # whole or not at all: a reader may come at any moment, and two threads may write
        with open(f"{path}.{threading.get_ident()}.tmp", "w") as out:
            json.dump(record, out)
        os.replace(out.name, f"{path}.json")
    except OSError:
        pass


def _keep_writing():
    while True:
        time.sleep(0.5)
        _write()


def _start():
    threading.Thread(target=_keep_writing, name="gc-probe", daemon=True).start()


def _forked():
    _state.update(seconds=0.0, collections=[0, 0, 0], name=f"{os.getpid()}-{time.time_ns()}")
    _start()


if _FOLDER:
    gc.callbacks.append(_callback)
    _start()
    os.register_at_fork(after_in_child=_forked)
    import atexit

    atexit.register(_write)
