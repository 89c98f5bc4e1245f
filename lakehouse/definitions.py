"""The one `Definitions` object of the project, `lakehouse.definitions:defs`.

Settings are read (and validated) here, when Dagster loads the code location. Importing it
also sets the process's garbage collector (lakehouse/collector.py) for the imports it brings.
"""

from lakehouse import tune_collector  # noqa: F401  (first: the collector for the imports below)
from lakehouse import collector, dagster_patches, run_workers
from lakehouse.settings import load_settings
from lakehouse.wiring import build_definitions

defs = build_definitions(load_settings())
dagster_patches.install()  # in a code server, whose every sensor tick makes an instance (see that module)
dagster_patches.keep_event_log_engines()  # where Dagster's SQLite event log is imported: code server, forkserver
run_workers.install()  # in a code server with local runs only: they fork from a warm process (see that module)
if run_workers.in_code_server():
    collector.settle()  # a code server may live for days (make ui, a deployed one)
