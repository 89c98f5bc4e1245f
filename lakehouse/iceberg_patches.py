"""One fix to PyIceberg 0.12.0 that our commits need, applied when `lakehouse.iceberg` builds a catalog.

`Transaction.table_metadata` replays the staged updates and deep-copies the whole table
metadata (every snapshot) on each read, and one commit reads it a dozen times or more, so
a commit's cost grew with the table's history: in a day of the demo's steps, 14% of the
time went to those copies. The property is cached here on the identity of its two inputs,
the table's metadata and the tuple of staged updates: in 0.12.0 both are replaced, never
changed in place, whenever the transaction's state changes (staging, a retry's rebuild, a
commit, a refresh), and no caller changes the metadata it gets, so a cached value is never
stale. Each replay still copies every snapshot, so a commit's cost still grows with the
history, about ten times more slowly; expiring snapshots is the remedy. This is the change
proposed upstream in apache/iceberg-python PR 3302 (approved, closed by the stale bot) and
PR 3784; remove it once a release has it. Only for the version it was checked against:
another one is left as it is, with a warning.
"""

from __future__ import annotations

import logging

import pyiceberg
from pyiceberg.table import Transaction
from pyiceberg.table.update import update_table_metadata

CHECKED_VERSION = "0.12.0"
log = logging.getLogger(__name__)

_UNCACHED = Transaction.table_metadata  # the property as PyIceberg defines it (its docstring is kept)
_warned: list[str] = []  # the version already warned about: one warning per process, not one per catalog


def _table_metadata(self):
    inputs = (self._table.metadata, self._updates)
    cached = self.__dict__.get("_lakehouse_metadata")
    if cached is not None and cached[0] is inputs[0] and cached[1] is inputs[1]:
        return cached[2]
    metadata = update_table_metadata(*inputs)
    self.__dict__["_lakehouse_metadata"] = (*inputs, metadata)  # holds the inputs, so ids cannot be reused
    return metadata


def apply() -> None:
    """Install the cached property, once, on the PyIceberg version it was checked against."""
    if applied():
        return
    if pyiceberg.__version__ != CHECKED_VERSION:
        if pyiceberg.__version__ in _warned:
            return
        _warned.append(pyiceberg.__version__)
        log.warning("PyIceberg %s is not %s: its Transaction.table_metadata is left uncached (lakehouse/"
                    "iceberg_patches.py), so commits are slower on tables with a long history", pyiceberg.__version__,
                    CHECKED_VERSION)
        return
    Transaction.table_metadata = property(_table_metadata, doc=_UNCACHED.__doc__)


def applied() -> bool:
    return Transaction.table_metadata.fget is _table_metadata
