"""Importing this module sets this process's garbage collector (lakehouse/collector.py).

For the run workers' forkserver, whose start is multiprocessing's: this is the first module it
preloads (lakehouse/run_workers.py PRELOAD), so its imports, and the runs forked from it, run
with the thresholds from the start.
"""

from lakehouse import collector

collector.tune()
