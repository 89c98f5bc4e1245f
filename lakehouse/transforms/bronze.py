"""Bronze: every landed file of one source and ingest date, as strings, with lineage.

Files are read one at a time from a local file (S3's are downloaded first), delimited text a
block at a time, Parquet a slice of rows at a time, JSON whole. A file that cannot be read
becomes a rejection with its reason; the rest of the partition still loads. A file's rows are handed
to `keep` slice by slice (the I/O layer keeps up to a limit in memory and spills the rest to
local Parquet), so a day of CSV files of any number and size takes memory up to that limit
plus a block; the lineage columns that every row of a file shares are added to each slice
as it is written, not held for the whole file.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Iterable, Iterator, Union

import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse.arrowtools import conform
from lakehouse.contracts import SourceContract
from lakehouse.layout import LandingObject
from lakehouse.readers import (
    PARSE_ERROR,
    RAW_RECORD,
    ROW_NUMBER,
    ReadResult,
    UnreadableFile,
    read_path,
)

SOURCE_FILE = "_source_file"
INGEST_DATE = "_ingest_date"
INGESTED_AT = "_ingested_at"
LINEAGE_TYPES = {
    SOURCE_FILE: pa.string(),
    INGEST_DATE: pa.date32(),
    INGESTED_AT: pa.timestamp("us", tz="UTC"),
    ROW_NUMBER: pa.int64(),
    PARSE_ERROR: pa.string(),
    RAW_RECORD: pa.string(),
}
LINEAGE_DESCRIPTIONS = {
    SOURCE_FILE: "Landing key of the file the row came from.",
    INGEST_DATE: "Ingest date (Dagster partition) the row landed on.",
    INGESTED_AT: "When bronze read the file.",
    ROW_NUMBER: "Position of the record in its file, from 1.",
    PARSE_ERROR: "Why the record could not be parsed (the row is kept; silver quarantines it).",
    RAW_RECORD: "The record's text as landed, when it could not be parsed.",
}

INGESTED, REJECTED = "INGESTED", "REJECTED"
# ops.ingestion_log statuses beyond those: seen by the sensor, not loaded yet; an older
# version of a key that was re-uploaded; a file deleted from the landing zone.
LANDED, SUPERSEDED, REMOVED = "LANDED", "SUPERSEDED", "REMOVED"
# A listed key the sensor does not load (outside the layout, unsafe, hidden or a marker),
# with the reason; written by the sensor only, never touched by bronze runs.
IGNORED = "IGNORED"
LIVE = (LANDED, INGESTED, REJECTED)  # statuses of a key's current version


@dataclass(frozen=True)
class FileOutcome:
    obj: LandingObject
    status: str  # INGESTED or REJECTED
    rows: int = 0
    malformed_rows: int = 0
    format: str | None = None
    reason: str | None = None
    encoding: str | None = None  # of delimited text: declared, or UTF-8, or Windows-1252 when it is not UTF-8
    missing_columns: tuple[str, ...] = ()
    extra_columns: tuple[str, ...] = ()


SLICE_ROWS = 1_000_000
Rows = Union[pa.Table, str]  # a file's rows, or the path of a local Parquet file holding them


@dataclass(frozen=True)
class Part:
    """One readable file's rows as read (data and reader columns), without the lineage columns
    every row of the file shares. A spilled part's file lasts as long as the load that made it."""

    rows: Rows
    num_rows: int
    key: str
    ingest_date: dt.date
    ingested_at: dt.datetime

    def slices(self, size: int) -> Iterator[pa.Table]:
        if isinstance(self.rows, pa.Table):
            for start in range(0, self.num_rows, size):
                yield self.rows.slice(start, size)  # zero-copy
        else:
            with pq.ParquetFile(self.rows) as spilled:
                for batch in spilled.iter_batches(batch_size=size):
                    yield pa.Table.from_batches([batch])


@dataclass
class BronzeBatch:
    source: str
    ingest_date: dt.date
    schema: pa.Schema
    parts: list[Part]  # one per readable file
    files: list[FileOutcome] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return sum(p.num_rows for p in self.parts)

    def slices(self, size: int = SLICE_ROWS) -> Iterator[pa.Table]:
        """The rows in `schema`, lineage included, at most `size` rows at a time, file by file.

        PyIceberg copies what it is given while splitting it by partition, so slices keep
        that copy small; and a slice's repeated file key is a few MB where a 50M-row file's
        would be 2.4 GB (more than one Arrow string array can hold). No files: one empty table."""
        if not self.parts:
            yield self.schema.empty_table()
        for part in self.parts:
            for piece in part.slices(size):
                n = piece.num_rows
                piece = piece.append_column(SOURCE_FILE, _repeat(part.key, n, pa.string()))
                piece = piece.append_column(INGEST_DATE, _repeat(part.ingest_date, n, pa.date32()))
                piece = piece.append_column(INGESTED_AT, _repeat(part.ingested_at, n, LINEAGE_TYPES[INGESTED_AT]))
                yield conform(piece, self.schema)

    @property
    def table(self) -> pa.Table:
        """All rows as one table (for tests and small batches: it holds every row)."""
        return pa.concat_tables(list(self.slices()))

    @property
    def rejected(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == REJECTED]

    @property
    def malformed_rows(self) -> int:
        return sum(f.malformed_rows for f in self.files)

    def missing_columns(self) -> dict[str, list[str]]:
        """Contract column -> the ingested files that lacked it (those rows hold null)."""
        return self._files_by_column("missing_columns")

    def extra_columns(self) -> dict[str, list[str]]:
        """Column beyond the contract -> the files that brought it."""
        return self._files_by_column("extra_columns")

    def _files_by_column(self, attribute: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for f in self.files:
            for column in getattr(f, attribute):
                out.setdefault(column, []).append(f.obj.key)
        return out

def bronze_schema(contract: SourceContract, extra: Iterable[str] = ()) -> pa.Schema:
    """Contract columns (as strings), columns that arrived beyond them, then lineage."""
    data = [pa.field(c, pa.string()) for c in contract.column_names]
    data += [pa.field(c, pa.string()) for c in extra if c not in contract.column_names]
    return pa.schema(data + [pa.field(n, t) for n, t in LINEAGE_TYPES.items()])


def declared_forms(contract: SourceContract) -> dict[str, str]:
    """The form each date and timestamp column lands in, under its name and its aliases: a typed
    Parquet value is written so (readers.py), and silver reads it as it reads text."""
    forms = {}
    for column in contract.columns:
        if column.type in ("date", "timestamp"):
            form = column.parse or "yyyy-MM-dd"
            forms.update(dict.fromkeys((column.name, *column.aliases), form))
    return forms


def ingest_partition(
    contract: SourceContract,
    ingest_date: dt.date,
    objects: Iterable[LandingObject],
    fetch: Callable[[str], ContextManager[str]],
    ingested_at: dt.datetime,
    keep: Callable[[ReadResult], Rows] = lambda result: result.table,
) -> BronzeBatch:
    """Read every object of the partition into bronze rows plus per-file outcomes. `fetch(key)`
    gives the file's local path (read a block at a time); `keep` takes its rows,
    slice by slice, before the next file is fetched. A file found unreadable part-way is
    rejected whole: `keep` drops what it had of it."""
    parts: list[Part] = []
    outcomes: list[FileOutcome] = []
    expected = set(contract.column_names)
    named = expected | {alias for column in contract.columns for alias in column.aliases}  # a file's header may use either
    forms = declared_forms(contract)
    extras: dict[str, None] = {}
    for obj in sorted(objects, key=lambda o: o.key):
        name, result = obj.key.rsplit("/", 1)[-1], None
        try:
            with fetch(obj.key) as path:
                result = read_path(name, path, contract.landing, forms)
                columns = result.data_columns
                if not named.intersection(columns):
                    outcomes.append(FileOutcome(obj, REJECTED, format=result.format, reason=(
                        f"none of the {contract.name} columns ({', '.join(contract.column_names)}) nor their aliases "
                        f"in header {columns}")))
                    continue
                rows = keep(result)
        except UnreadableFile as exc:
            outcomes.append(FileOutcome(obj, REJECTED, format=result.format if result else None, reason=exc.reason))
            continue
        extras.update(dict.fromkeys(c for c in columns if c not in expected))
        parts.append(Part(rows, result.rows, obj.key, ingest_date, ingested_at))
        outcomes.append(
            FileOutcome(
                obj,
                INGESTED,
                rows=result.rows,
                malformed_rows=result.malformed,
                format=result.format,
                encoding=result.encoding,
                missing_columns=tuple(c for c in contract.column_names if c not in columns),
                extra_columns=tuple(c for c in columns if c not in expected),
            )
        )
    return BronzeBatch(contract.name, ingest_date, bronze_schema(contract, extras), parts, outcomes)


def combine(contract: SourceContract, batches: list[BronzeBatch]) -> BronzeBatch:
    """Several days' batches of a source as one batch (a range run), in the union of their columns.

    `ingest_date` is the first day; the rows keep their own `_ingest_date`. Log and
    rejected-file rows are made per day, from the batches themselves.
    """
    if len(batches) == 1:
        return batches[0]
    extras = dict.fromkeys(n for b in batches for n in b.schema.names if n not in LINEAGE_TYPES)
    return BronzeBatch(contract.name, batches[0].ingest_date, bronze_schema(contract, extras),
                       [p for b in batches for p in b.parts], [f for b in batches for f in b.files])


def _repeat(value, n: int, kind: pa.DataType) -> pa.Array:
    """`value` n times, without an n-long Python list."""
    return pa.repeat(pa.scalar(value, kind), n)



def rejected_rows(batch: BronzeBatch, run_id: str, now: dt.datetime) -> pa.Table:
    """Rows for `bronze.rejected_files`: one per file of the batch that could not be read."""
    files = batch.rejected
    return pa.table(
        {
            "source": [batch.source] * len(files),
            "key": [f.obj.key for f in files],
            "ingest_date": pa.array([batch.ingest_date] * len(files), pa.date32()),
            "etag": [f.obj.etag for f in files],
            "size": pa.array([f.obj.size for f in files], pa.int64()),
            "last_modified": pa.array([f.obj.last_modified for f in files], pa.timestamp("us", tz="UTC")),
            "reason": [f.reason for f in files],
            "run_id": [run_id] * len(files),
            "rejected_at": pa.array([now] * len(files), pa.timestamp("us", tz="UTC")),
        }
    )


def ingestion_log_rows(
    batch: BronzeBatch,
    run_id: str,
    now: dt.datetime,
) -> pa.Table:
    """Rows for `ops.ingestion_log`, one per file; `merge_log` restores earlier first sightings."""
    files = batch.files
    ts = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "source": [batch.source] * len(files),
            "key": [f.obj.key for f in files],
            "etag": [f.obj.etag for f in files],
            "size": pa.array([f.obj.size for f in files], pa.int64()),
            "last_modified": pa.array([f.obj.last_modified for f in files], ts),
            "ingest_date": pa.array([batch.ingest_date] * len(files), pa.date32()),
            "first_seen": pa.array([now] * len(files), ts),
            "status": [f.status for f in files],
            "run_id": [run_id] * len(files),
            "rows": pa.array([f.rows for f in files], pa.int64()),
            "malformed_rows": pa.array([f.malformed_rows for f in files], pa.int64()),
            "format": [f.format for f in files],
            "reason": [f.reason for f in files],
            "processed_at": pa.array([now] * len(files), ts),
        }
    )


def merge_log(earlier: list[dict], processed: list[dict], listed_at: dt.datetime) -> tuple[set[str], list[dict]]:
    """The ingestion-log rows a bronze run writes for one partition, and the keys they replace.

    `processed` has one row per file the run listed (INGESTED or REJECTED). A processed
    file keeps the first sighting of its live row; other live versions of its key become
    SUPERSEDED; a key the run no longer found becomes REMOVED. History (rows already
    SUPERSEDED or REMOVED) is kept. A LANDED row of an unlisted key first seen after the
    run listed the folder is a concurrent landing: its key is left to the next run.
    """
    pairs = {(r["key"], r["etag"]) for r in processed}
    listed = {key for key, _ in pairs}
    first_seen = {(r["key"], r["etag"]): r["first_seen"] for r in earlier if r["status"] in LIVE and r["first_seen"]}
    concurrent = {
        r["key"] for r in earlier
        if r["key"] not in listed and r["status"] == LANDED and r["first_seen"] and r["first_seen"] >= listed_at
    }
    out = [{**r, "first_seen": first_seen.get((r["key"], r["etag"]), r["first_seen"])} for r in processed]
    for r in earlier:
        key, live = r["key"], r["status"] in LIVE
        if key in concurrent:
            continue
        if key in listed:
            if not live:
                out.append(r)
            elif (key, r["etag"]) not in pairs:
                out.append({**r, "status": SUPERSEDED})
        else:
            out.append({**r, "status": REMOVED} if live else r)
    keys = listed | ({r["key"] for r in earlier} - concurrent)
    return keys, out
