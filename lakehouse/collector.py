"""Python's cyclic garbage collector, set for the processes that run steps and `lakehouse run`'s.

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

The other Python processes of `lakehouse run` set them too, early: the CLI and the daemon
before they import Dagster, the code server when it loads the definitions, the run workers'
forkserver with its first preload (`lakehouse.tune_collector`). With Python's defaults their
imports alone (Dagster, PyIceberg, the definitions) made about five full passes each, over an
ever larger heap (README, Benchmarks, has the figures). The daemon and the code server can
live for days (`make ui`, a deployed code server), so once their imports are done they
`settle()`: what the imports made is frozen out of the collector's sight, and Python's
defaults are back for what they make later.
"""

from __future__ import annotations

import gc

THRESHOLDS = (100_000, 50, 50)
DEFAULTS = (700, 10, 10)  # Python's


def tune() -> None:
    """Set THRESHOLDS for this process, unless someone already set thresholds other than Python's default."""
    if gc.get_threshold() == DEFAULTS:
        gc.set_threshold(*THRESHOLDS)


def settle() -> None:
    """For a long-lived process whose imports are done: those objects live as long as the process,
    so they are moved where full passes do not walk them (`gc.freeze`), and Python's default
    thresholds come back (if THRESHOLDS were ours), so later cycles are collected as usual."""
    gc.freeze()
    if gc.get_threshold() == THRESHOLDS:
        gc.set_threshold(*DEFAULTS)
