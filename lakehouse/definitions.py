"""The one `Definitions` object of the project, `lakehouse.definitions:defs`.

Settings are read (and validated) here, when Dagster loads the code location.
"""

from lakehouse import collector, dagster_patches, run_workers

collector.tune()  # a code server evaluates sensors for its whole life (lakehouse/collector.py)

from lakehouse.settings import load_settings  # noqa: E402  (after the collector is set)
from lakehouse.wiring import build_definitions  # noqa: E402

defs = build_definitions(load_settings())
dagster_patches.install()  # in a code server, whose every sensor tick makes an instance (see that module)
run_workers.install()  # in a code server with local runs only: they fork from a warm process (see that module)
