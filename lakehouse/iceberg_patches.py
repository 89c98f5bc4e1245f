"""Five changes to PyIceberg 0.12.0 that our commits and steps need, applied when `lakehouse.iceberg`
builds a catalog.

1. A transaction's metadata, replayed once per change instead of on every read.

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
PR 3784; remove it once a release has it.

2. Rows of one partition written without being filtered into it. A write splits its rows by
partition (`_determine_partitions`): it finds the distinct partition values, then filters
the whole table once per value and copies the result. A day's step writes one partition
per chunk of a million rows, so that filter and copy only duplicated the chunk: 4 s of a
10M-row silver write (py-spy, bench/pipeline.py). Where every row has the same partition
values, the rows are handed on as they are, under the key PyIceberg would have made;
otherwise PyIceberg's own function runs.

3. A table's current metadata file parsed once per process. Loading a table reads its current
metadata file and parses it (every snapshot, schema and spec, through pydantic), and a step
loads its tables again and again (the catalog is the one place that says which file is
current): 825 loads in three small days, which parsed 175 files with this. A metadata file
is never rewritten: each commit writes a new one, under a new name (a sequence number and a
UUID; PyIceberg's and Java Iceberg's JDBC and Glue catalogs alike), and the catalog points at
it. So the last file parsed of each table (its folder) is kept with its location, and the
catalog is still asked each time which file is current: one entry per table, replaced when
the table moves on. Every load of that file shares one TableMetadata: a frozen model that
PyIceberg replaces, never changes, on every update; its dicts and lists (properties,
snapshots) are not frozen, and nothing here or in PyIceberg changes them in place (a test
checks that loads and commits leave a shared one as it was).

4. A metadata update not deep-copied. `update_table_metadata` (a transaction's replay, and
every catalog commit) ends by deep-copying its result, every snapshot and schema through
pydantic, so that a later change in place to the new metadata could not reach the one it was
made from. PyIceberg's updates never change metadata in place (each builds new lists and dicts
through `model_copy(update=...)`), and change 3 already relies on that for the metadata that
loads share. The copy grows with the table's history: at 300 snapshots one overwrite commit
took 101.8 ms of CPU with it and 58.6 ms without (bench/bookkeeping.py); on the few snapshots
of small test days it is within the noise (cProfile's 9% of their steps overstated it). Here
the function is PyIceberg's, less that copy, where PyIceberg's source is the one checked.

5. A manifest's entries read once per process. Every scan and every commit that deletes or
merges opens the manifests it needs and decodes their Avro again (schema, reader, every
entry): 12% of the CPU of `tests/test_silver_gold.py` (py-spy). A manifest file is written
once and never changed (its name holds the writing commit's UUID), so the entries read from it
are kept, under its path and length and the manifest-list fields PyIceberg's reader copies
into them (sequence number, snapshot id, spec id), up to ENTRIES_KEPT entries per process,
least recently used first out; a manifest of more than a tenth of that is read each time.
Each call gets a list of its own; the entries in it are shared, which is safe because
PyIceberg changes an entry only while reading it: writers and deletes build new ones.

All five only for the version they were checked against: another one is left as it is, with
a warning.
"""

from __future__ import annotations

import logging
import threading

import pyarrow.compute as pc
import pyiceberg
from cachetools import LRUCache  # PyIceberg's own dependency, which its manifest module uses likewise
from pyiceberg.manifest import ManifestFile
from pyiceberg.io import pyarrow as iceberg_arrow
from pyiceberg.partitioning import PartitionFieldValue, PartitionKey
from pyiceberg.serializers import FromInputFile
from pyiceberg.table import Transaction
from pyiceberg.table import update as table_update
from pyiceberg.typedef import UTF8

from lakehouse import checked_code

CHECKED_VERSION = "0.12.0"
log = logging.getLogger(__name__)

_UNCACHED = Transaction.table_metadata  # the property as PyIceberg defines it (its docstring is kept)
_SPLIT = iceberg_arrow._determine_partitions  # PyIceberg's own, for rows of several partitions
_READ = FromInputFile.table_metadata  # PyIceberg's own reader of a metadata file
_UPDATE = table_update.update_table_metadata  # PyIceberg's own, which deep-copies its result
# Change 4 copies PyIceberg's function and uses its private helpers: its source as checked.
CHECKED_UPDATE = {"update_table_metadata": "cdfaa6553c2f4d68"}
# A table's folder -> (location, encoding, TableMetadata) of its last file parsed. Used from several
# threads (Dagster's, PyIceberg's pools): a dict's get and set are atomic, and two threads that
# both parse the same new file keep equal results.
_parsed: dict = {}
_FETCH = ManifestFile.fetch_manifest_entry  # PyIceberg's own reader of a manifest's entries
# Entries a process keeps, counted across manifests: a merged manifest repeats every live file of
# its table, so a count of manifests would not bound the memory (an entry is a few KB at most).
ENTRIES_KEPT = 50_000
_entries: LRUCache = LRUCache(maxsize=ENTRIES_KEPT, getsizeof=lambda kept: max(1, len(kept)))
_entries_lock = threading.Lock()  # PyIceberg reads manifests from its thread pool


def _table_metadata(self):
    inputs = (self._table.metadata, self._updates)
    cached = self.__dict__.get("_lakehouse_metadata")
    if cached is not None and cached[0] is inputs[0] and cached[1] is inputs[1]:
        return cached[2]
    metadata = table_update.update_table_metadata(*inputs)  # ours where change 4 applies
    self.__dict__["_lakehouse_metadata"] = (*inputs, metadata)  # holds the inputs, so ids cannot be reused
    return metadata


def _updated_metadata(base_metadata, updates, enforce_validation=False, metadata_location=None):
    """PyIceberg 0.12.0's `update_table_metadata`, line for line, less its last deep copy (change 4)."""
    import datetime as dt

    from pyiceberg.table.metadata import TableMetadataUtil
    from pyiceberg.utils.datetime import datetime_to_millis

    context = table_update._TableMetadataUpdateContext()
    new_metadata = base_metadata
    for update in updates:
        new_metadata = table_update._apply_table_update(update, new_metadata, context)
    if context.has_changes():
        if metadata_location:
            new_metadata = table_update._update_table_metadata_log(new_metadata, metadata_location,
                                                                  base_metadata.last_updated_ms)
        if base_metadata.last_updated_ms == new_metadata.last_updated_ms:
            new_metadata = new_metadata.model_copy(update={"last_updated_ms": datetime_to_millis(dt.datetime.now().astimezone())})
    new_metadata.spec().check_compatible(new_metadata.schema())
    new_metadata.sort_order().check_compatible(new_metadata.schema())
    if enforce_validation:
        return TableMetadataUtil.parse_obj(new_metadata.model_dump())
    return new_metadata  # PyIceberg: new_metadata.model_copy(deep=True)


def _metadata_file(input_file, encoding: str = UTF8):
    """`FromInputFile.table_metadata`, the same file parsed once (metadata files are written once, never changed)."""
    location = input_file.location
    table = location.rsplit("/metadata/", 1)[0]
    kept = _parsed.get(table)
    if kept is not None and kept[:2] == (location, encoding):
        return kept[2]
    metadata = _READ(input_file, encoding)
    _parsed[table] = (location, encoding, metadata)
    return metadata


def _manifest_entries(self, io, discard_deleted: bool = True):
    """`ManifestFile.fetch_manifest_entry`, each manifest file decoded once (change 5)."""
    key = (self.manifest_path, self.manifest_length, self.sequence_number, self.min_sequence_number,
           self.added_snapshot_id, self.partition_spec_id, self.content, discard_deleted)
    with _entries_lock:
        kept = _entries.get(key)
    if kept is None:
        kept = tuple(_FETCH(self, io, discard_deleted))
        if len(kept) <= ENTRIES_KEPT // 10:  # a larger manifest is read each time (it would evict the rest)
            with _entries_lock:
                _entries[key] = kept
    return list(kept)


def _one_partition(spec, schema, arrow_table):
    """PyIceberg's `_determine_partitions`, without the filter and copy where all rows share one partition."""
    values = []
    for field in spec.fields:
        name = schema.find_column_name(field.source_id)
        if name is None or arrow_table.num_rows == 0:
            return _SPLIT(spec, schema, arrow_table)  # its error, or nothing to write
        column = iceberg_arrow._get_field_from_arrow_table(arrow_table, name)
        transformed = field.transform.pyarrow_transform(schema.find_field(field.source_id).field_type)(column)
        if pc.count_distinct(transformed, mode="all").as_py() != 1:
            return _SPLIT(spec, schema, arrow_table)
        values.append(transformed[0].as_py())
    key = PartitionKey(field_values=[PartitionFieldValue(field=f, value=v) for f, v in zip(spec.fields, values)],
                       partition_spec=spec, schema=schema)
    return [iceberg_arrow._TablePartition(partition_key=key, arrow_table_partition=arrow_table)]


def apply() -> None:
    """Install all five, once, on the PyIceberg version they were checked against."""
    if applied():
        return
    if pyiceberg.__version__ != CHECKED_VERSION:
        checked_code.warn_once(
            log, "PyIceberg %s is not %s: its Transaction.table_metadata is left uncached, rows are filtered into "
            "partitions even where they are all of one, and metadata files are parsed on every table load "
            "and every metadata update deep-copied, and manifests decoded on every read (lakehouse/iceberg_patches.py), "
            "so commits are slower on tables with a long history, large writes take longer and so do table loads "
            "and scans", pyiceberg.__version__, CHECKED_VERSION)
        return
    Transaction.table_metadata = property(_table_metadata, doc=_UNCACHED.__doc__)
    iceberg_arrow._determine_partitions = _one_partition
    FromInputFile.table_metadata = staticmethod(_metadata_file)
    ManifestFile.fetch_manifest_entry = _manifest_entries
    if checked_code.changed(CHECKED_UPDATE, lambda name: table_update):
        checked_code.warn_once(log, "PyIceberg's update_table_metadata is not the one lakehouse/iceberg_patches.py "
                               "checked: each metadata update is deep-copied, as PyIceberg does, so commits are "
                               "slower on tables with a long history")
        return
    for module in _updater_modules():  # where PyIceberg imported it by name: its catalogs' commits
        module.update_table_metadata = _updated_metadata


def _updater_modules() -> tuple:
    import pyiceberg.catalog
    import pyiceberg.table

    return table_update, pyiceberg.table, pyiceberg.catalog


def applied() -> bool:
    """Changes 1 to 3 and 5 (change 4 also checks PyIceberg's source, and is left out with a warning where it differs)."""
    return (Transaction.table_metadata.fget is _table_metadata and iceberg_arrow._determine_partitions is _one_partition
            and FromInputFile.table_metadata is _metadata_file and ManifestFile.fetch_manifest_entry is _manifest_entries)
