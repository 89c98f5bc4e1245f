"""What is in the lakehouse: per table and partition, files and row counts."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.iceberg import TableStore
from lakehouse.layout import SOURCES
from lakehouse.tables import INGESTION_LOG, REJECTED_FILES, bronze_table
from lakehouse.transforms.bronze import INGEST_DATE, REJECTED


@dataclass(frozen=True)
class PartitionSummary:
    source: str
    ingest_date: str
    files: int
    rejected_files: int
    bronze_rows: int
    malformed_rows: int


def _counts(table: pa.Table, keys: list[str]) -> dict[tuple, int]:
    if table.num_rows == 0:
        return {}
    grouped = table.group_by(keys).aggregate([([], "count_all")])
    return {tuple(str(row[k]) for k in keys): row["count_all"] for row in grouped.to_pylist()}


def bronze_summary(store: TableStore) -> list[PartitionSummary]:
    """One line per (source, ingest date) that has landed files or bronze rows."""
    log = (
        store.read(INGESTION_LOG.identifier, columns=("source", "ingest_date", "status", "malformed_rows"))
        if store.exists(INGESTION_LOG.identifier)
        else INGESTION_LOG.schema.empty_table()
    )
    files = _counts(log, ["source", "ingest_date"])
    rejected = _counts(log.filter(pc.equal(log["status"], REJECTED)), ["source", "ingest_date"])
    malformed: dict[tuple, int] = {}
    if log.num_rows:
        sums = log.group_by(["source", "ingest_date"]).aggregate([("malformed_rows", "sum")])
        malformed = {(r["source"], str(r["ingest_date"])): r["malformed_rows_sum"] or 0 for r in sums.to_pylist()}
    rows: dict[tuple, int] = {}
    for source in SOURCES:
        ident = bronze_table(source).identifier
        if store.exists(ident):
            counted = _counts(store.read(ident, columns=(INGEST_DATE,)), [INGEST_DATE])
            rows.update({(source, day): n for (day,), n in counted.items()})
    keys = sorted(set(files) | set(rows), key=lambda k: (SOURCES.index(k[0]), k[1]))
    return [
        PartitionSummary(
            source, day, files.get((source, day), 0), rejected.get((source, day), 0),
            rows.get((source, day), 0), malformed.get((source, day), 0),
        )
        for source, day in keys
    ]


def rejected_files(store: TableStore) -> list[dict]:
    if not store.exists(REJECTED_FILES.identifier):
        return []
    table = store.read(REJECTED_FILES.identifier, columns=("source", "ingest_date", "key", "reason"))
    return sorted(table.to_pylist(), key=lambda r: (r["ingest_date"], r["key"]))


def format_table(headers: list[str], rows: list[list]) -> str:
    """Plain fixed-width text table (stdlib only; the CLI must read well in CI logs)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(str(r[i]).lstrip("-").isdigit() for r in rows) and rows for i in range(len(headers))]
    def line(r):
        padded = (c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
        return "  ".join(padded).rstrip()
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def render_bronze_summary(store: TableStore) -> str:
    parts = bronze_summary(store)
    rows = [[p.source, p.ingest_date, p.files, p.rejected_files, p.bronze_rows, p.malformed_rows] for p in parts]
    totals: dict[str, int] = {}
    for p in parts:
        totals[p.source] = totals.get(p.source, 0) + p.bronze_rows
    out = ["Bronze, per source and ingest date:", format_table(
        ["source", "ingest_date", "files", "rejected", "bronze_rows", "malformed_rows"], rows
    )]
    out.append("")
    out.append("Totals: " + ", ".join(f"bronze.{s} {n:,} rows" for s, n in totals.items()))
    rejected = rejected_files(store)
    if rejected:
        out.append("")
        out.append(f"Rejected files ({len(rejected)}), kept in bronze.rejected_files:")
        out.append(format_table(["ingest_date", "key", "reason"], [[r["ingest_date"], r["key"], r["reason"]] for r in rejected]))
    return "\n".join(out)
