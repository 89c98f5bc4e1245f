"""One fix to PyIceberg 0.12 that our commits need, applied on import of `lakehouse.iceberg`.

`Transaction.table_metadata` replays the staged updates and deep-copies the whole table
metadata (every snapshot) on each read, and one commit reads it a dozen times or more, so
a commit's cost grew with the table's history: in a day of the demo's steps, 14% of the
time went to those copies, and more every day. The property is cached here on the
identity of its two inputs, the table's metadata and the tuple of staged updates: both
are replaced, never changed in place, whenever the transaction's state changes, so a
cached value is never stale. This is the change proposed upstream in apache/iceberg-python
PR 3302 (approved, closed by the stale bot) and PR 3784; remove it once a release has it.
"""

from __future__ import annotations

from pyiceberg.table import Transaction
from pyiceberg.table.update import update_table_metadata

_UNCACHED = Transaction.table_metadata  # the property as PyIceberg defines it, for the check below


def _table_metadata(self):
    inputs = (self._table.metadata, self._updates)
    cached = self.__dict__.get("_lakehouse_metadata")
    if cached is not None and cached[0] is inputs[0] and cached[1] is inputs[1]:
        return cached[2]
    metadata = update_table_metadata(*inputs)
    self.__dict__["_lakehouse_metadata"] = (*inputs, metadata)  # holds the inputs, so ids cannot be reused
    return metadata


def apply() -> None:
    """Install the cached property, once (a later PyIceberg that changed the property is left alone)."""
    if Transaction.table_metadata is _UNCACHED and getattr(_UNCACHED.fget, "__name__", "") == "table_metadata":
        Transaction.table_metadata = property(_table_metadata, doc=_UNCACHED.__doc__)


def applied() -> bool:
    return Transaction.table_metadata.fget is _table_metadata
