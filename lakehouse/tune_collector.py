"""Importing this module sets this process's garbage collector (lakehouse/collector.py).

The first import of the code location (lakehouse/definitions.py) and the first module the run
workers' forkserver preloads (lakehouse/run_workers.py PRELOAD), whose start is
multiprocessing's, not ours: what they import after it, and the runs forked from the
forkserver, run with the thresholds.
"""

from lakehouse import collector

collector.tune()
