"""The one `Definitions` object of the project, `lakehouse.definitions:defs`.

Settings are read (and validated) here, when Dagster loads the code location.
"""

from lakehouse.settings import load_settings
from lakehouse.wiring import build_definitions

defs = build_definitions(load_settings())
