"""Turn the bytes of one landed file into an Arrow table of strings.

Pure: no I/O beyond the bytes given. Accepts `.csv`, `.txt` (delimiter sniffed
among `, ; | tab`), `.json` (array or NDJSON), `.ndjson`, `.jsonl`, `.parquet`,
any of them gzipped; format is decided by content first, extension second.
UTF-8 with or without BOM, Latin-1 and CRLF are normal input.

A file that cannot be read at all raises `UnreadableFile` with a reason a person
can act on. A single bad record does not sink the file: it comes back as a row
with `_parse_error` and `_raw_record` set, so it can be quarantined downstream
instead of silently dropped.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lakehouse.contracts.model import Landing

ROW_NUMBER = "_row_number"
PARSE_ERROR = "_parse_error"
RAW_RECORD = "_raw_record"
READER_COLUMNS = (ROW_NUMBER, PARSE_ERROR, RAW_RECORD)

DELIMITED = (".csv", ".txt")
JSON = (".json", ".ndjson", ".jsonl")
PARQUET = (".parquet",)
ACCEPTED = DELIMITED + JSON + PARQUET
_CANDIDATE_DELIMITERS = (",", ";", "|", "\t")
_SNIFF_BYTES = 64 * 1024


class UnreadableFile(Exception):
    """The whole file cannot be read; `reason` says why in words a user can act on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ReadResult:
    table: pa.Table  # canonical string columns + _row_number, _parse_error, _raw_record
    format: str  # e.g. "csv", "ndjson.gz", "parquet"
    encoding: str | None
    delimiter: str | None
    malformed: int  # records kept with _parse_error set

    @property
    def data_columns(self) -> list[str]:
        return [c for c in self.table.column_names if c not in READER_COLUMNS]


def canonical_name(raw: str, position: int) -> str:
    """Trim, lower-case, runs of non-alphanumerics to '_' (no leading/trailing '_')."""
    name = re.sub(r"[^0-9a-z]+", "_", raw.replace("\ufeff", "").strip().lower()).strip("_")
    return name or f"column_{position + 1}"


def canonical_names(raw_names: list[str]) -> list[str]:
    """Canonicalise a header; names that collide get `_2`, `_3`... in order of appearance."""
    seen: dict[str, int] = {}
    out = []
    for i, raw in enumerate(raw_names):
        name = canonical_name(raw, i)
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        seen.setdefault(name, 1)
        out.append(name)
    return out


def read_file(name: str, data: bytes, landing: Landing = Landing()) -> ReadResult:
    """Read one landed file with its source's declared formats and options (`landing:` of its
    defs.yaml); raises `UnreadableFile` when nothing in it can be trusted."""
    lower = name.lower()
    if not data:
        raise UnreadableFile("empty file (0 bytes)")
    compressed = data[:2] == b"\x1f\x8b"
    if compressed:
        data = _gunzip(data)
        if not data:
            raise UnreadableFile("empty file (0 bytes after gunzip)")
    inner = lower[:-3] if lower.endswith(".gz") else lower
    ext = "." + inner.rsplit(".", 1)[-1] if "." in inner else ""
    if ext not in ACCEPTED:
        families = {"csv": DELIMITED, "json": JSON, "parquet": PARQUET}
        accepted = " ".join(e for family in landing.formats for e in families[family])
        raise UnreadableFile(
            f"unsupported format {ext or '(no extension)'!r}; accepted: {accepted} (optionally .gz)"
        )
    suffix = ".gz" if compressed else ""
    if data[:4] == b"PAR1":
        _accepted("parquet", landing)
        return _read_parquet(data, "parquet" + suffix)
    if data[:4] == b"PK\x03\x04":
        raise UnreadableFile("a zip archive (e.g. an Excel workbook) named like a data file")
    if ext in PARQUET:
        raise UnreadableFile("named .parquet but the content is not Parquet (no PAR1 magic)")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise UnreadableFile("file holds only whitespace")
    if b"\x00" in data[:_SNIFF_BYTES]:
        raise UnreadableFile("binary content (NUL bytes) in a text format")
    first = data.lstrip()[:1]
    if ext in JSON or (first in (b"[", b"{") and ext == ".txt"):
        _accepted("json", landing)
        return _read_json(data, ext.lstrip(".") + suffix)
    _accepted("csv", landing)
    return _read_delimited(data, ext.lstrip(".") + suffix, landing)


def _accepted(family: str, landing: Landing) -> None:
    if family not in landing.formats:
        raise UnreadableFile(f"a {family} file, and this source accepts {', '.join(landing.formats)} "
                             "(landing.formats in its defs.yaml)")


def _gunzip(data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except EOFError:
        raise UnreadableFile(
            "truncated gzip: the stream ends before its end marker (upload cut short?)"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise UnreadableFile(f"corrupt gzip: {exc}") from None


# --- delimited text -----------------------------------------------------------------


def _decode_sample(sample: bytes) -> tuple[str, str]:
    try:
        return sample.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(sample) - 3:  # a multi-byte char cut by the sample boundary
            return sample[: exc.start].decode("utf-8"), "utf-8"
        return sample.decode("latin-1"), "latin-1"


def sniff_delimiter(sample: str) -> str:
    """Pick the delimiter that gives the header >1 field and the most consistent rows.

    Hand-written because `csv.Sniffer` guesses wrongly on `;` files whose values hold
    commas (European decimals such as `147,43`), which are exactly our inputs.
    """
    lines = sample.splitlines()
    if len(lines) > 1 and not sample.endswith(("\n", "\r")):
        lines = lines[:-1]  # the sample may end mid-line
    best, best_score = ",", (-1, -1)
    for delimiter in _CANDIDATE_DELIMITERS:
        rows = list(csv.reader(lines[:50], delimiter=delimiter))
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        consistent = sum(1 for row in rows[1:] if len(row) == width)
        score = (consistent, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _read_delimited(data: bytes, fmt: str, landing: Landing = Landing()) -> ReadResult:
    if landing.encoding:
        text, encoding = data[:_SNIFF_BYTES].decode(landing.encoding, errors="replace"), landing.encoding
    else:
        text, encoding = _decode_sample(data[:_SNIFF_BYTES])
    delimiter = landing.delimiter or sniff_delimiter(text)
    header = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), None)
    if not header or not any(h.strip() for h in header):
        raise UnreadableFile("no header row")
    names = canonical_names(header)
    bad: list[tuple[int | None, str]] = []

    def on_invalid(row) -> str:
        bad.append(
            (row.number, f"expected {row.expected_columns} fields, got {row.actual_columns}", row.text)
        )
        return "skip"

    def parse(enc: str) -> pa.Table:
        bad.clear()
        return pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=1, encoding=enc, use_threads=False
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    try:
        if landing.encoding:  # declared: no guessing, and bytes that are not of it make the file unreadable
            table = parse(landing.encoding)
        else:
            try:
                table = parse("utf8")
            except pa.ArrowInvalid as exc:
                if "UTF8" not in str(exc):
                    raise
                encoding = "latin-1"  # every byte sequence is valid Latin-1, so this cannot fail on bytes
                table = parse("latin-1")
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise UnreadableFile(f"not readable as delimited text: {exc}") from None
    return _with_malformed(table, [(n, err, text) for n, err, text in bad], fmt, encoding, delimiter)


def _with_malformed(table, bad, fmt, encoding, delimiter) -> ReadResult:
    """Interleave malformed records at their position and number every record from 1.

    pyarrow reports a bad row's physical number with the header as row 1, so record
    ordinal = number - 1; good rows take the remaining ordinals in order.
    """
    total = table.num_rows + len(bad)
    bad_ordinals = []
    for i, (number, _, _) in enumerate(bad):
        ordinal = number - 1 if number and 1 <= number - 1 <= total else None
        bad_ordinals.append(ordinal)
    taken = np.array(sorted({o for o in bad_ordinals if o is not None}), dtype=np.int64)
    free = np.setdiff1d(np.arange(1, total + 1, dtype=np.int64), taken, assume_unique=True)
    good_numbers = free[: table.num_rows]
    leftovers = iter(free[table.num_rows :].tolist())
    bad_ordinals = [o if o is not None else next(leftovers) for o in bad_ordinals]
    table = table.append_column(ROW_NUMBER, pa.array(good_numbers, pa.int64()))
    table = table.append_column(PARSE_ERROR, pa.nulls(table.num_rows, pa.string()))
    table = table.append_column(RAW_RECORD, pa.nulls(table.num_rows, pa.string()))
    if bad:
        rows = {name: pa.nulls(len(bad), pa.string()) for name in table.column_names}
        rows[ROW_NUMBER] = pa.array(bad_ordinals, pa.int64())
        rows[PARSE_ERROR] = pa.array([err for _, err, _ in bad], pa.string())
        rows[RAW_RECORD] = pa.array([text for _, _, text in bad], pa.string())
        table = pa.concat_tables([table, pa.table(rows, schema=table.schema)])
        table = table.take(pc.sort_indices(table, [(ROW_NUMBER, "ascending")]))
    return ReadResult(table, fmt, encoding, delimiter, len(bad))


# --- JSON ---------------------------------------------------------------------------


def _as_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _read_json(data: bytes, fmt: str) -> ReadResult:
    try:
        text, encoding = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = data.decode("latin-1"), "latin-1"
    records: list[tuple[int, dict | None, str | None, str | None]] = []  # ordinal, rec, error, raw
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UnreadableFile(f"invalid JSON array: {exc.msg} at line {exc.lineno}") from None
        if not isinstance(items, list):
            raise UnreadableFile("JSON document is not an array of objects")
        for i, item in enumerate(items, start=1):
            if isinstance(item, dict):
                records.append((i, item, None, None))
            else:
                records.append((i, None, "array element is not an object", _as_text(item)))
    else:
        ordinal = 0
        for line in text.splitlines():
            if not line.strip():
                continue
            ordinal += 1
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                records.append((ordinal, None, f"invalid JSON: {exc.msg}", line))
                continue
            if isinstance(item, dict):
                records.append((ordinal, item, None, None))
            else:
                records.append((ordinal, None, "line is not a JSON object", line))
        if records and all(rec is None for _, rec, _, _ in records):
            try:  # one pretty-printed object spread over several lines
                item = json.loads(text)
            except json.JSONDecodeError:
                item = None
            if isinstance(item, dict):
                records = [(1, item, None, None)]
    raw_names: dict[str, None] = {}
    for _, rec, _, _ in records:
        if rec:
            raw_names.update(dict.fromkeys(rec))
    raw_list = list(raw_names)
    names = canonical_names(raw_list)
    columns: dict[str, list] = {n: [] for n in names}
    for _, rec, _, _ in records:
        for raw, name in zip(raw_list, names):
            columns[name].append(_as_text(rec.get(raw)) if rec is not None else None)
    arrays = {n: pa.array(v, pa.string()) for n, v in columns.items()}
    arrays[ROW_NUMBER] = pa.array([r[0] for r in records], pa.int64())
    arrays[PARSE_ERROR] = pa.array([r[2] for r in records], pa.string())
    arrays[RAW_RECORD] = pa.array([r[3] for r in records], pa.string())
    table = pa.table(arrays)
    malformed = sum(1 for r in records if r[2] is not None)
    return ReadResult(table, fmt, encoding, None, malformed)


# --- Parquet ------------------------------------------------------------------------


def _read_parquet(data: bytes, fmt: str) -> ReadResult:
    try:
        source = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise UnreadableFile(f"corrupt Parquet file: {exc}") from None
    names = canonical_names(source.column_names)
    columns = {}
    for name, column in zip(names, source.columns):
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            columns[name] = column.cast(pa.string())
        elif pa.types.is_nested(column.type) or pa.types.is_binary(column.type):
            columns[name] = pa.array([_as_text(v) for v in column.to_pylist()], pa.string())
        else:
            columns[name] = column.cast(pa.string())
    n = source.num_rows
    columns[ROW_NUMBER] = pa.array(np.arange(1, n + 1, dtype=np.int64))
    columns[PARSE_ERROR] = pa.nulls(n, pa.string())
    columns[RAW_RECORD] = pa.nulls(n, pa.string())
    table = pa.table(columns)
    return ReadResult(table, fmt, None, None, 0)
