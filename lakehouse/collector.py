"""Python's cyclic garbage collector, set for a process that runs steps.

A step plans its transforms through sqlframe and sqlglot, which make and drop millions of
small tree nodes, and loads and commits Iceberg metadata, another few hundred thousand
objects. With Python's default thresholds (700, 10, 10) the collector runs every 700 new
objects, and its full passes walk every object the process holds (imported modules, the
metadata and lineage caches), so its cost grows with the process's age. Reference counting
frees those nodes without it; it is only needed for cycles, which they rarely form.
Measured (six small days one after another in one process, the last five: the child of
bench/small_days.py, two rounds each, alternating): 19.1 and 20.2 s with the default
thresholds, 17.6 and 19.4 s with (50000, 20, 20), 18.1 and 17.8 s with THRESHOLDS, 18.8 and
17.2 s with the collector off. Cycles are still collected, later: at most THRESHOLDS[0]
objects wait for the next young pass.

Every Python process of `lakehouse run` sets them where it starts: the CLI and the daemon
before they import Dagster, the code server when it loads the definitions, the run workers'
forkserver with its first preload (`lakehouse.tune_collector`). With Python's defaults their
imports alone (Dagster, PyIceberg, the definitions) made five full passes each, over an ever
larger heap: a one-day `lakehouse run` spent 2.6 s collecting against 1.2 s with these, and
23.9 s of CPU against 21.6 s (`python bench/run_cpu.py --baseline 6787b78 --days 1 --rounds 4
--gc`, medians).
"""

from __future__ import annotations

import gc

THRESHOLDS = (100_000, 50, 50)


def tune() -> None:
    """Set THRESHOLDS for this process, unless someone already set thresholds other than Python's default."""
    if gc.get_threshold() == (700, 10, 10):
        gc.set_threshold(*THRESHOLDS)
