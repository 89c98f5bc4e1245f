"""Turn one landed file (bytes in memory, or a local file read a block at a time) into Arrow
slices of strings.

No I/O beyond the bytes or the local file given. Accepts `.csv`, `.txt` (delimiter sniffed
among `, ; | tab`), `.json` (array or NDJSON), `.ndjson`, `.jsonl`, `.parquet`, and a name
without an extension (JSON when it starts with `[` or `{`, like `.txt`), any of them gzipped;
format is decided by content first, extension second.
UTF-8 with or without BOM, UTF-16 after its BOM, Latin-1 and Windows-1252 (read alike: the
fallback when text is not UTF-8) and CRLF are normal input.

A file that cannot be read at all raises `UnreadableFile` with a reason a person
can act on. A single bad record does not sink the file: it comes back as a row
with `_parse_error` and `_raw_record` set, so it can be quarantined downstream
instead of silently dropped.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import gzip
import io
import json
import os
import re
import weakref
import zlib
from typing import BinaryIO, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lakehouse.contracts.model import Landing

ROW_NUMBER = "_row_number"
PARSE_ERROR = "_parse_error"
RAW_RECORD = "_raw_record"

DELIMITED = (".csv", ".txt")
JSON = (".json", ".ndjson", ".jsonl")
PARQUET = (".parquet",)
ACCEPTED = DELIMITED + JSON + PARQUET
_CANDIDATE_DELIMITERS = (",", ";", "|", "\t")
_SNIFF_BYTES = 64 * 1024


# Text that is not UTF-8 (and declares no encoding) is read as Windows-1252, as browsers read
# text labelled Latin-1 (the WHATWG Encoding Standard): Latin-1 but for bytes 0x80-0x9F, control
# characters in Latin-1 that no text holds, and the curly quotes, dashes, € and … of Windows
# exports. The five bytes Windows leaves undefined keep Latin-1's meaning. Python's cp1252 refuses
# those five, and Arrow's CSV reader decodes through a named codec, hence this one.
FALLBACK_ENCODING = "windows-1252"
_FALLBACK_CODEC = "lakehouse_windows_1252"


def _fallback_codec(name: str):
    if name != _FALLBACK_CODEC:
        return None
    table = "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in range(256))
    encoding_table = codecs.charmap_build(table)

    class Decoder(codecs.IncrementalDecoder):  # one byte is one character: no state
        def decode(self, data, final=False):
            return codecs.charmap_decode(data, self.errors, table)[0]

    class Encoder(codecs.IncrementalEncoder):
        def encode(self, text, final=False):
            return codecs.charmap_encode(text, self.errors, encoding_table)[0]

    return codecs.CodecInfo(name=_FALLBACK_CODEC, encode=lambda t, e="strict": codecs.charmap_encode(t, e, encoding_table),
                            decode=lambda b, e="strict": codecs.charmap_decode(b, e, table),
                            incrementalencoder=Encoder, incrementaldecoder=Decoder)


codecs.register(_fallback_codec)


def codec(encoding: str) -> str:
    """The Python codec that reads `encoding` as this module names it."""
    return _FALLBACK_CODEC if encoding == FALLBACK_ENCODING else encoding


def decode_text(data: bytes) -> tuple[str, str]:
    """Bytes as text: UTF-16 after its byte-order mark, UTF-8 if every byte is, else the fallback
    (Windows-1252); and which."""
    if data.startswith(_UTF16_BOMS):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise UnreadableFile(f"not valid UTF-16 after its byte-order mark ({exc.reason})") from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode(_FALLBACK_CODEC), FALLBACK_ENCODING


class UnreadableFile(Exception):
    """The whole file cannot be read; `reason` says why in words a user can act on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ReadResult:
    """A file's rows (canonical string columns + `_row_number`, `_parse_error`, `_raw_record`), as
    slices read one after another: a multi-GB CSV is never in memory whole.

    What is known before any row (format, columns) is set at once; `rows` and `malformed` count
    the slices as they pass. A file found unreadable part-way raises `UnreadableFile` from
    `batches()`: whoever keeps the slices drops those it has (bronze rejects the whole file)."""

    def __init__(self, columns: list[str], format: str, encoding: str | None, delimiter: str | None,
                 batches: Iterator[pa.Table]):
        self.data_columns, self.format, self.encoding, self.delimiter = columns, format, encoding, delimiter
        self.schema = pa.schema([pa.field(c, pa.string()) for c in columns]
                                + [pa.field(ROW_NUMBER, pa.int64()), pa.field(PARSE_ERROR, pa.string()),
                                   pa.field(RAW_RECORD, pa.string())])
        self.rows = self.malformed = 0
        self._batches, self._table = batches, None

    def batches(self) -> Iterator[pa.Table]:
        """The rows in record order, a slice at a time (the file is read once: after `table`,
        this is that table)."""
        if self._table is not None:
            yield self._table
            return
        if self._batches is None:
            raise RuntimeError("a file's slices are read once")
        batches, self._batches = self._batches, None
        for table in batches:
            self.rows += table.num_rows
            self.malformed += table.num_rows - table.column(PARSE_ERROR).null_count
            yield table

    @property
    def table(self) -> pa.Table:
        """Every row at once (small files, tests): the slices are read on first use."""
        if self._table is None:
            self._table = pa.concat_tables([self.schema.empty_table(), *self.batches()])
        return self._table


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


def read_file(name: str, data: bytes, landing: Landing = Landing(), forms: Mapping[str, str] | None = None) -> ReadResult:
    """Read one landed file held in memory, every row at once; raises `UnreadableFile` when
    nothing in it can be trusted."""
    result = _read(name, _Source(data=data), landing, forms or {})
    result.table  # noqa: B018 - read now, so an unreadable file raises here
    return result


def read_path(name: str, path: str, landing: Landing = Landing(), forms: Mapping[str, str] | None = None) -> ReadResult:
    """Read the landed file `name` from the local file `path`, with its source's declared formats
    and options (`landing:` of its defs.yaml). Delimited text streams: `batches()` reads it a
    block at a time, so a file of any size takes memory in proportion to a block; Parquet a slice
    of rows of about a block's size at a time. JSON is read whole. `forms`: the declared form of
    the source's date and timestamp columns (`dd/MM/yyyy`, `epoch_ms`) by column name, in which a
    typed Parquet value is written."""
    return _read(name, _Source(path=path), landing, forms or {})


def _read(name: str, source: _Source, landing: Landing, forms: Mapping[str, str]) -> ReadResult:
    lower = name.lower()
    if source.size == 0:
        raise UnreadableFile("empty file (0 bytes)")
    head = source.head(_SNIFF_BYTES + len(_BOM))
    if source.compressed and not head:
        raise UnreadableFile("empty file (0 bytes after gunzip)")
    inner = lower[:-3] if lower.endswith(".gz") else lower
    # An extension is a short run of letters and digits after the last dot; without one (Firehose's
    # objects, named after their delivery stream, whose name may hold dots) a file is read by its content.
    ext = match.group(0) if (match := _EXTENSION.search(inner)) else ""
    if ext not in ACCEPTED and ext:
        families = {"csv": DELIMITED, "json": JSON, "parquet": PARQUET}
        accepted = " ".join(e for family in landing.formats for e in families[family])
        raise UnreadableFile(f"unsupported format {ext!r}; accepted: {accepted} (optionally .gz)")
    suffix = ".gz" if source.compressed else ""
    if head[:4] == b"PAR1":
        _accepted("parquet", landing)
        return _read_parquet(source, "parquet" + suffix, forms)
    if head[:4] == b"PK\x03\x04":
        raise UnreadableFile("a zip archive (e.g. an Excel workbook) named like a data file")
    if ext in PARQUET:
        raise UnreadableFile("named .parquet but the content is not Parquet (no PAR1 magic)")
    if head.startswith(_BOM):
        source.skip, head = len(_BOM), head[len(_BOM):]
    utf16 = head.startswith(_UTF16_BOMS)  # Excel's "Unicode text"; the codec reads the mark
    head = head[:_SNIFF_BYTES]
    if b"\x00" in head and not utf16:
        raise UnreadableFile("binary content (NUL bytes) in a text format")
    first = (head.decode("utf-16", errors="ignore").encode() if utf16 else head).lstrip()[:1]
    if ext in JSON or (first in (b"[", b"{") and ext in (".txt", "")):
        _accepted("json", landing)
        data = source.read_all()
        if not data.strip():
            raise UnreadableFile("file holds only whitespace")
        return _read_json(data, (ext.lstrip(".") or "json") + suffix)
    _accepted("csv", landing)
    return _read_delimited(source, head, (ext.lstrip(".") or "csv") + suffix, landing, "utf-16" if utf16 else None)


def _accepted(family: str, landing: Landing) -> None:
    if family not in landing.formats:
        raise UnreadableFile(f"a {family} file, and this source accepts {', '.join(landing.formats)} "
                             "(landing.formats in its defs.yaml)")


_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_EXTENSION = re.compile(r"\.[a-z0-9]{1,8}$")
_CHUNK = 8 << 20  # bytes read at a time by the check that comes before a delimited file's rows
BLOCK_BYTES = 16 << 20  # text parsed into one slice of rows


class _Source:
    """A landed file's bytes, from memory or a local file, gunzipped as they are read.

    A local file is opened once: every pass (the sniff, the encoding check, the rows) reads
    the same file, even if the landing zone's copy is replaced meanwhile."""

    def __init__(self, data: bytes | None = None, path: str | None = None):
        self.data, self.skip = data, 0  # skip: a byte-order mark's bytes
        if path is not None:
            self._fd = os.open(path, os.O_RDONLY)
            weakref.finalize(self, os.close, self._fd)
            magic, self.size = os.pread(self._fd, 2, 0), os.fstat(self._fd).st_size
        else:
            magic, self.size = data[:2], len(data)
        self.compressed = magic == b"\x1f\x8b"
        if self.compressed and data is not None:
            self.data = _gunzip(data)

    @contextlib.contextmanager
    def open(self) -> Iterator[BinaryIO]:
        """The (gunzipped) bytes from the start, past any byte-order mark."""
        if self.data is not None:
            handle = raw = io.BytesIO(self.data)
        else:
            raw = os.fdopen(os.dup(self._fd), "rb")  # a duplicate shares the offset: passes take turns
            raw.seek(0)
            handle = gzip.GzipFile(fileobj=raw, mode="rb") if self.compressed else raw
        try:
            _guarded(handle.read, self.skip)
            yield handle
        finally:
            handle.close()
            raw.close()

    def head(self, n: int) -> bytes:
        with self.open() as handle:
            return _guarded(handle.read, n)

    def chunks(self) -> Iterator[bytes]:
        with self.open() as handle:
            while chunk := _guarded(handle.read, _CHUNK):
                yield chunk

    def read_all(self) -> bytes:
        return self.data[self.skip:] if self.data is not None else b"".join(self.chunks())

    def random_access(self):
        """The bytes for a reader that seeks (Parquet): the local file itself, else in memory."""
        if self.data is not None or self.compressed:
            return pa.BufferReader(self.read_all())
        return pa.PythonFile(os.fdopen(os.dup(self._fd), "rb"), mode="r")


@contextlib.contextmanager
def _gzip_errors() -> Iterator[None]:
    """A broken gzip stream, said in words a user can act on."""
    try:
        yield
    except EOFError:
        raise UnreadableFile("truncated gzip: the stream ends before its end marker (upload cut short?)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise UnreadableFile(f"corrupt gzip: {exc}") from None


def _guarded(read, n: int) -> bytes:
    with _gzip_errors():
        return read(n)


def _gunzip(data: bytes) -> bytes:
    with _gzip_errors():
        return gzip.decompress(data)


class _NoTrailingCR:
    """A stream whose reads never split a CR LF: Arrow's CSV reader drops the line feed of a
    quoted CR LF that a block boundary splits (apache/arrow issue 51368; the whole-file reader
    had it too, at every 1 MB), so such a CR waits for the next read and arrives with its LF."""

    def __init__(self, raw: BinaryIO):
        self.raw, self.held, self.closed = raw, b"", False

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        whole = n is None or n < 0
        wanted = -1 if whole else max(n - len(self.held), 0)
        data, self.held = self.held + (_guarded(self.raw.read, wanted) if wanted else b""), b""
        if not whole and len(data) > n:
            data, self.held = data[:n], data[n:]
        if len(data) > 1 and data.endswith(b"\r"):
            self.held = self.held or _guarded(self.raw.read, 1)
            if self.held.startswith(b"\n"):  # a CR LF would be split: the CR goes out with its LF
                data, self.held = data[:-1], b"\r" + self.held
        return data

    def close(self) -> None:
        self.closed = True


class _AsUtf8:
    """`raw`'s text in `encoding`, as a stream of UTF-8 for Arrow. Decoded here rather than by
    Arrow's reader, whose own decoding cuts blocks anywhere: `_NoTrailingCR`, on top, then guards
    what Arrow reads (for UTF-16 and Windows-1252 text too)."""

    def __init__(self, raw: BinaryIO, encoding: str):
        self.raw, self.decoder = raw, codecs.getincrementaldecoder(encoding)()
        self.pending, self.ended, self.closed = b"", False, False

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        whole = n is None or n < 0
        while not self.ended and (whole or len(self.pending) < n):
            chunk = _guarded(self.raw.read, _CHUNK)
            self.ended = not chunk
            self.pending += self.decoder.decode(chunk, final=self.ended).encode("utf-8")
        out, self.pending = (self.pending, b"") if whole else (self.pending[:n], self.pending[n:])
        return out

    def close(self) -> None:
        self.closed = True


# --- delimited text -----------------------------------------------------------------


def _decode_sample(sample: bytes) -> tuple[str, str]:
    try:
        return sample.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(sample) - 3:  # a multi-byte char cut by the sample boundary
            return sample[: exc.start].decode("utf-8"), "utf-8"
        return sample.decode(_FALLBACK_CODEC), FALLBACK_ENCODING


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


def _encoding_of(source: _Source, declared: str | None) -> str:
    """The whole file's encoding, decided before any row is read (a slice already handed on
    cannot be taken back): the declared one, which every byte must be valid in, else UTF-8 if
    every byte is, else Windows-1252 (FALLBACK_ENCODING: valid for any byte). Reads to the end,
    so a broken gzip or a file of only whitespace is refused here."""
    decoder = codecs.getincrementaldecoder(declared or "utf-8")()

    def decodes(chunk: bytes, final: bool = False) -> bool:
        try:
            decoder.decode(chunk, final)
            return True
        except UnicodeDecodeError as exc:
            if declared:
                raise UnreadableFile(f"not readable as delimited text: not valid {declared} ({exc.reason})") from None
            return False

    valid, content = True, False
    for chunk in source.chunks():
        content = content or bool(chunk.strip())
        valid = valid and decodes(chunk)
    valid = valid and decodes(b"", final=True)  # a multi-byte character cut by the end
    if not content:
        raise UnreadableFile("file holds only whitespace")
    return declared or ("utf-8" if valid else FALLBACK_ENCODING)


def _read_delimited(source: _Source, head: bytes, fmt: str, landing: Landing = Landing(),
                    marked: str | None = None) -> ReadResult:
    """`marked`: the encoding a byte-order mark names (UTF-16), unless one is declared."""
    encoding = _encoding_of(source, landing.encoding or marked)
    text = head.decode(codec(encoding), errors="replace") if encoding != "utf-8" else _decode_sample(head)[0]
    delimiter = landing.delimiter or sniff_delimiter(text)
    header = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), None)
    if not header or not any(h.strip() for h in header):
        raise UnreadableFile("no header row")
    names = canonical_names(header)
    return ReadResult(names, fmt, encoding, delimiter, _delimited_rows(source, names, delimiter, encoding))


def _delimited_rows(source: _Source, names: list[str], delimiter: str, encoding: str) -> Iterator[pa.Table]:
    bad: list[tuple[int | None, str, str]] = []

    def on_invalid(row) -> str:
        bad.append((row.number, f"expected {row.expected_columns} fields, got {row.actual_columns}", row.text))
        return "skip"

    with source.open() as handle, _gzip_errors():  # gzip was checked before: only if it changed since
        try:
            utf8 = codecs.lookup(codec(encoding)).name in ("utf-8", "ascii")  # what Arrow reads as it is
            text = handle if utf8 else _AsUtf8(handle, codec(encoding))
            reader = pacsv.open_csv(
                _NoTrailingCR(text),
                read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, encoding="utf8", use_threads=False,
                                               block_size=BLOCK_BYTES),
                parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True,
                                                 invalid_row_handler=on_invalid),
                convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                     strings_can_be_null=False, quoted_strings_can_be_null=False),
            )
            yield from _numbered((pa.Table.from_batches([batch]) for batch in reader), names, bad)
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise UnreadableFile(f"not readable as delimited text: {exc}") from None


def _numbered(tables: Iterator[pa.Table], names: list[str], bad: list[tuple[int | None, str, str]]
              ) -> Iterator[pa.Table]:
    """Number every record from 1 in file order, the malformed ones (`bad`, as pyarrow reports
    them while parsing) among the rest at their place, a slice at a time.

    pyarrow gives a bad record's number with the header as 1, so its ordinal is number - 1;
    good rows take the remaining ordinals in order. A slice's bad records have all been reported
    when it arrives (blocks are parsed in order), so its good rows' ordinals are known then; its
    bad records go out with it, and those pyarrow could not number go last.
    """
    waiting: dict[int, tuple[str, str]] = {}  # ordinal -> (error, text): reported, not yet written
    unnumbered: list[tuple[str, str]] = []
    next_ordinal, good, reported = 1, 0, 0

    def take_reported() -> None:
        nonlocal reported
        for number, error, text in bad:
            if number and number - 1 >= next_ordinal and number - 1 not in waiting:
                waiting[number - 1] = (error, text)
            else:
                unnumbered.append((error, text))
        reported += len(bad)
        bad.clear()

    def with_bad(table: pa.Table, ordinals: np.ndarray, until: int) -> pa.Table:
        table = table.append_column(ROW_NUMBER, pa.array(ordinals, pa.int64()))
        table = table.append_column(PARSE_ERROR, pa.nulls(table.num_rows, pa.string()))
        table = table.append_column(RAW_RECORD, pa.nulls(table.num_rows, pa.string()))
        due = sorted(o for o in waiting if o <= until)
        if not due:
            return table
        rows = {name: pa.nulls(len(due), pa.string()) for name in table.column_names}
        rows[ROW_NUMBER] = pa.array(due, pa.int64())
        rows[PARSE_ERROR] = pa.array([waiting[o][0] for o in due], pa.string())
        rows[RAW_RECORD] = pa.array([waiting.pop(o)[1] for o in due], pa.string())
        table = pa.concat_tables([table, pa.table(rows, schema=table.schema)])
        return table.take(pc.sort_indices(table, [(ROW_NUMBER, "ascending")]))

    for table in tables:
        take_reported()
        n = table.num_rows
        taken = np.array(sorted(o for o in waiting if o >= next_ordinal), dtype=np.int64)
        span = np.arange(next_ordinal, next_ordinal + n + len(taken), dtype=np.int64)
        ordinals = np.setdiff1d(span, taken, assume_unique=True)[:n]
        until = int(ordinals[-1]) if n else next_ordinal - 1
        yield with_bad(table, ordinals, until)
        next_ordinal, good = until + 1, good + n
    take_reported()
    total = good + reported
    for ordinal in [o for o in waiting if o > total]:  # a number past the end: placed with the unnumbered
        unnumbered.append(waiting.pop(ordinal))
    free = np.setdiff1d(np.arange(next_ordinal, total + 1, dtype=np.int64),
                        np.array(sorted(waiting), dtype=np.int64), assume_unique=True)
    for ordinal, (error, text) in zip(free.tolist(), unnumbered):
        waiting[ordinal] = (error, text)
    if waiting:
        yield with_bad(pa.table({name: pa.array([], pa.string()) for name in names}), np.array([], np.int64), total)


# --- JSON ---------------------------------------------------------------------------


def _as_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _json_default(value) -> str:
    """What JSON has no type for, inside a nested Parquet value: bytes as text, dates and times
    in ISO 8601, decimals exactly."""
    if isinstance(value, bytes):
        return _decoded(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def _decoded(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode(_FALLBACK_CODEC)


def _read_json(data: bytes, fmt: str) -> ReadResult:
    text, encoding = decode_text(data)
    records: list[tuple[int, dict | None, str | None, str | None]] = []  # ordinal, rec, error, raw
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UnreadableFile(f"invalid JSON array: {exc.msg} at line {exc.lineno}") from None
        except (ValueError, RecursionError) as exc:  # an integer of over 4,300 digits, nesting past Python's limit
            raise UnreadableFile(f"invalid JSON array: {_why(exc)}") from None
        if not isinstance(items, list):
            raise UnreadableFile("JSON document is not an array of objects")
        for i, item in enumerate(items, start=1):
            if isinstance(item, dict):
                records.append((i, item, None, None))
            else:
                records.append((i, None, "array element is not an object", _as_text(item)))
    else:
        # Objects one after another, however spread over lines: NDJSON, pretty-printed, back to back.
        records = _json_values(text, 0, "value")
        if not all(rec is not None for _, rec, _, _ in records):  # else line by line, to keep the good ones
            records = []
            # Lines end at a line feed only: JSON keeps U+2028, U+2029 and U+0085 raw inside strings,
            # where str.splitlines would end a line.
            for line in text.split("\n"):
                if line.strip():
                    records += _json_values(line.removesuffix("\r"), len(records), "line")
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
    return _whole(pa.table(arrays), names, fmt, encoding)


def _json_values(text: str, before: int, what: str) -> list[tuple[int, dict | None, str | None, str | None]]:
    """The records of `text`: one JSON object, or several back to back (Firehose writes a stream's
    records so unless told to add a newline), numbered after `before`. What does not parse, from
    there to the end of `text`, is one malformed record; a value that is not an object is one."""
    out, at, end = [], 0, len(text.rstrip())
    while at < end:
        while text[at].isspace():
            at += 1
        try:
            item, stop = _DECODER.raw_decode(text, at)
        except (ValueError, RecursionError) as exc:
            return out + [(before + len(out) + 1, None, f"invalid JSON: {_why(exc)}", text[at:])]
        if isinstance(item, dict):
            out.append((before + len(out) + 1, item, None, None))
        else:
            out.append((before + len(out) + 1, None, f"{what} is not a JSON object", text[at:stop]))
        at = stop
    return out


_DECODER = json.JSONDecoder()


def _why(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)


# --- Parquet ------------------------------------------------------------------------


def _read_parquet(source: _Source, fmt: str, forms: Mapping[str, str]) -> ReadResult:
    """A Parquet file a slice of rows at a time, as delimited text is read: a file's row group is
    often hundreds of MB (Spark's and Glue's are 128 MB compressed), and read whole a file of a few
    GB did not fit in memory. Its pages are read as they are decoded, 1 MB at a time (Arrow's
    default reads every row group's bytes ahead and keeps them until the end). INT96 timestamps
    (Hive, Impala, and Spark by default) are read in microseconds: in Arrow's default
    nanoseconds, one past 2262 (9999-12-31, the usual "no end" of a dimension table) wrapped
    around to another instant without an error. A gzipped Parquet file is read whole."""
    handle = source.random_access()
    try:
        file = pq.ParquetFile(handle, coerce_int96_timestamp_unit="us", pre_buffer=False, buffer_size=1 << 20)
        names = canonical_names(file.schema_arrow.names)
    except (pa.ArrowException, OSError) as exc:  # invalid, or of a type Arrow does not read
        handle.close()
        raise UnreadableFile(f"corrupt Parquet file: {exc}") from None
    return ReadResult(names, fmt, None, None, _parquet_slices(file, handle, names, forms))


def _slice_rows(metadata: pq.FileMetaData) -> int:
    """Rows per slice: about BLOCK_BYTES of the file's decoded data (its row groups' own sizes),
    as a delimited file's block, so wide rows make short slices."""
    groups = [metadata.row_group(i) for i in range(metadata.num_row_groups)]
    rows, size = sum(g.num_rows for g in groups), sum(g.total_byte_size for g in groups)
    return max(1024, min(1 << 20, BLOCK_BYTES * rows // size)) if rows and size else 65_536


def _parquet_slices(file: pq.ParquetFile, handle, names: list[str], forms: Mapping[str, str]) -> Iterator[pa.Table]:
    batches, first = file.iter_batches(batch_size=_slice_rows(file.metadata), use_threads=False), 1
    try:
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as exc:  # a damaged page or row group, found as it is read
                raise UnreadableFile(f"corrupt Parquet file: {exc}") from None
            if batch is None:
                return
            try:
                columns = {name: _parquet_text(pa.chunked_array([column], column.type), forms.get(name))
                           for name, column in zip(names, batch.columns)}
            except (pa.ArrowException, ValueError, OverflowError, RecursionError) as exc:  # a value Python cannot hold
                raise UnreadableFile(f"a Parquet value cannot be written as text: {exc}") from None
            n = batch.num_rows
            columns[ROW_NUMBER] = pa.array(np.arange(first, first + n, dtype=np.int64))
            columns[PARSE_ERROR] = pa.nulls(n, pa.string())
            columns[RAW_RECORD] = pa.nulls(n, pa.string())
            first += n
            yield pa.table(columns)
    finally:
        handle.close()  # its descriptor (a downloaded S3 object's disk space) goes now, not at collection


def _parquet_text(column: pa.ChunkedArray, form: str | None):
    """A Parquet column as the text bronze keeps. A date or timestamp is written in the form its
    contract column declares, in UTC (a typed value is not ambiguous: a date lands as 01/05/2026
    where dd/MM/yyyy is declared, a timestamp as epoch milliseconds where epoch_ms is; a
    timezone-less one is taken as UTC); elsewhere in ISO 8601. Bytes are text, UTF-8 else
    Windows-1252 (Hive and Impala write strings as binary). Nested values are JSON."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        return _parquet_text(column.cast(kind.value_type), form)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return column.cast(pa.string())
    if (pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind)
            or pa.types.is_fixed_size_binary(kind)):
        try:
            return column.cast(pa.string())  # checks every value is UTF-8, at Arrow's speed
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return pa.array([None if v is None else _decoded(v) for v in column.to_pylist()], pa.string())
    if form and (pa.types.is_date(kind) or pa.types.is_timestamp(kind)):
        return _temporal_text(column, form)
    if pa.types.is_nested(kind):
        return pa.array([_as_text(v) for v in column.to_pylist()], pa.string())
    try:
        return column.cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # a type Arrow writes no text for (durations...)
        return pa.array([_as_text(v) if isinstance(v, (list, dict)) else None if v is None else str(v)
                         for v in column.to_pylist()], pa.string())


_PER_MILLISECOND = {"s": None, "ms": 1, "us": 1_000, "ns": 1_000_000}


def _temporal_text(column: pa.ChunkedArray, form: str):
    """Dates and timestamps in a declared form (`epoch_ms`, or a date format of dd, MM, yyyy)."""
    kind = column.type
    unit = kind.unit if pa.types.is_timestamp(kind) else "ms"
    # Arrow keeps a zoned timestamp as its UTC instant: without its zone, it reads as UTC.
    stamps = column.cast(pa.timestamp(unit))
    if form != "epoch_ms":
        return pc.strftime(stamps, format=form.replace("yyyy", "%Y").replace("MM", "%m").replace("dd", "%d"))
    ticks = stamps.cast(pa.int64())
    if unit == "s":
        return pc.multiply(ticks, 1000).cast(pa.string())
    per = _PER_MILLISECOND[unit]
    below = pc.if_else(pc.less(ticks, 0), per - 1, 0)  # floor, as for any instant before 1970
    return pc.divide(pc.subtract(ticks, below), per).cast(pa.string())


def _whole(table: pa.Table, names: list[str], fmt: str, encoding: str | None) -> ReadResult:
    """A file read whole (JSON) as a result of one slice."""
    return ReadResult(names, fmt, encoding, None, iter([table]))
