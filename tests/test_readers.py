"""Every accepted format, the text quirks that are normal, and every unreadable-file case."""

import gzip
import io
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from lakehouse.contracts.model import Landing
from lakehouse.readers import UnreadableFile, canonical_names, read_file, read_path, sniff_delimiter

ROWS = [{"order_id": "1", "unit_price": "147,43"}, {"order_id": "2", "unit_price": "3.50"}]


def data_rows(result):
    return [{c: r[c] for c in result.data_columns} for r in result.table.to_pylist()]


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


CSV = b'order_id,unit_price\n1,"147,43"\n2,3.50\n'
FORMATS = {
    "orders.csv": CSV,
    "orders.txt": b"order_id;unit_price\n1;147,43\n2;3.50\n",
    "orders_pipe.txt": b"order_id|unit_price\n1|147,43\n2|3.50\n",
    "orders_tab.txt": b"order_id\tunit_price\n1\t147,43\n2\t3.50\n",
    "orders.json": json.dumps(ROWS).encode(),
    "orders_lines.json": b"".join(json.dumps(r).encode() + b"\n" for r in ROWS),
    "orders.ndjson": b"".join(json.dumps(r).encode() + b"\n" for r in ROWS),
    "orders.jsonl": b"".join(json.dumps(r).encode() + b"\n" for r in ROWS),
    "orders.parquet": parquet_bytes(pa.table({"order_id": ["1", "2"], "unit_price": ["147,43", "3.50"]})),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("gzipped", [False, True])
def test_every_format_plain_and_gzipped(name, gzipped):
    data = FORMATS[name]
    if gzipped:
        name, data = name + ".gz", gzip.compress(data)
    result = read_file(name, data)
    assert data_rows(result) == ROWS
    assert result.table.column("_row_number").to_pylist() == [1, 2]
    assert result.format.endswith(".gz") == gzipped
    assert all(pa.types.is_string(f.type) for f in result.table.schema if f.name in result.data_columns)


def test_format_comes_from_content_when_extension_lies():
    assert data_rows(read_file("orders.csv", FORMATS["orders.parquet"])) == ROWS
    assert data_rows(read_file("orders.csv.gz", CSV)) == ROWS  # says gz, is not
    assert data_rows(read_file("orders.csv", gzip.compress(CSV))) == ROWS  # is gz, does not say so


def test_a_sources_declared_formats_delimiter_and_encoding_are_used():
    only_csv = Landing(formats=("csv",))
    assert data_rows(read_file("orders.csv", CSV, only_csv)) == ROWS
    for name in ("orders.json", "orders.parquet"):
        with pytest.raises(UnreadableFile, match=f"a {name.split('.')[1]} file, and this source accepts csv"):
            read_file(name, FORMATS[name], only_csv)
    with pytest.raises(UnreadableFile, match="a parquet file"):  # the content decides, not the name
        read_file("orders.csv", FORMATS["orders.parquet"], only_csv)
    # a header with a comma in a name and European decimals: sniffing picks ',', the declaration says ';'
    text = "id;amount, eur\n1;3,50\n2;4,75\n".encode()
    assert sniff_delimiter(text.decode()) == ","
    assert data_rows(read_file("o.csv", text, Landing(delimiter=";"))) == [
        {"id": "1", "amount_eur": "3,50"}, {"id": "2", "amount_eur": "4,75"}]
    # declared, the encoding is used as Python knows it: Latin-1's 0x93 is a control character
    cp1252 = "order_id;note\n1;\u201cquoted\u201d\n".encode("cp1252")
    assert data_rows(read_file("o.csv", cp1252, Landing(encoding="cp1252"))) == [{"order_id": "1", "note": "\u201cquoted\u201d"}]
    assert data_rows(read_file("o.csv", cp1252, Landing(encoding="latin-1")))[0]["note"] == "\x93quoted\x94"
    with pytest.raises(UnreadableFile, match="not readable as delimited text"):  # declared, so no guessing
        read_file("o.csv", "order_id\n\u00e9\n".encode("latin-1"), Landing(encoding="utf-8"))


def test_bom_crlf_and_latin1_are_normal():
    text = "Customer ID;Name\r\nC1;José Müller\r\nC2;Zoë\r\n"
    for data in (b"\xef\xbb\xbf" + text.encode("utf-8"), text.encode("latin-1")):
        result = read_file("c.csv", data)
        assert data_rows(result) == [{"customer_id": "C1", "name": "José Müller"}, {"customer_id": "C2", "name": "Zoë"}]
    assert read_file("c.csv", text.encode("latin-1")).encoding == "windows-1252"


def test_utf16_after_its_byte_order_mark_is_text(tmp_path, monkeypatch):
    """Excel's "Unicode text" export: UTF-16 (either byte order) with its mark, tab-delimited, CRLF;
    streamed from disk in blocks too, and JSON. Invalid UTF-16 after the mark is refused with why."""
    from lakehouse import readers

    text = "Order ID\tNote\r\n" + "".join(f"O{i}\tO\u2019Brien \u2713 {i}\r\n" for i in range(3000))
    want = [{"order_id": f"O{i}", "note": f"O\u2019Brien \u2713 {i}"} for i in range(3000)]
    for data in (text.encode("utf-16-le"), text.encode("utf-16-be")):
        data = (b"\xff\xfe" if data[1] == 0 else b"\xfe\xff") + data
        path = tmp_path / "u.txt"
        path.write_bytes(gzip.compress(data, mtime=0))
        assert data_rows(read_file("u.txt", data)) == want
        monkeypatch.setattr(readers, "BLOCK_BYTES", 4096)
        streamed = read_path("u.txt.gz", str(path))
        assert [{k: r[k] for k in ("order_id", "note")} for t in streamed.batches() for r in t.to_pylist()] == want
        assert streamed.encoding == "utf-16" and streamed.delimiter == "\t"
    as_json = json.dumps([{"order_id": "O1", "note": "é"}]).encode("utf-16")
    assert data_rows(read_file("u.json", as_json)) == [{"order_id": "O1", "note": "é"}]
    for name in ("u.csv", "u.json"):
        with pytest.raises(UnreadableFile, match="(?i)utf-16"):
            read_file(name, b"\xff\xfea\x00,\x00\x00\xd8")


def test_text_that_is_not_utf8_is_read_as_windows_1252_in_every_format(tmp_path):
    """Latin-1's characters, and in 0x80-0x9F, where Latin-1 has control characters, Windows's
    curly quotes, dashes, € and …; the five bytes Windows leaves undefined are Latin-1's (as
    browsers read text labelled Latin-1). Streamed from disk too, and in JSON and Parquet bytes."""
    names = ["O\u2019Brien \u2013 \u20ac5\u2026", "Zoë Müller", "\u201cq\u201d"]
    undefined = bytes([0x81, 0x8D, 0x8F, 0x90, 0x9D])
    data = ("id;name\n" + "".join(f"{i};{n}\n" for i, n in enumerate(names))).encode("cp1252") + b"9;" + undefined + b"\n"
    want = [*names, "\x81\x8d\x8f\x90\x9d"]
    path = tmp_path / "c.csv"
    path.write_bytes(data)
    for result in (read_file("c.csv", data), read_path("c.csv", str(path))):
        assert [r["name"] for r in data_rows(result)] == want and result.encoding == "windows-1252"
    as_json = ("\n".join(json.dumps({"id": i, "name": n}, ensure_ascii=False) for i, n in enumerate(names))).encode("cp1252")
    assert [r["name"] for r in data_rows(read_file("c.jsonl", as_json))] == names
    table = pa.table({"name": pa.array([n.encode("cp1252") for n in names] + [undefined], pa.binary())})
    assert [r["name"] for r in data_rows(read_file("c.parquet", parquet_bytes(table)))] == want


def test_values_stay_exactly_as_landed():
    result = read_file("o.csv", b"id,channel,qty\n1,  Web ,007\n2,,\n")
    assert data_rows(result) == [{"id": "1", "channel": "  Web ", "qty": "007"}, {"id": "2", "channel": "", "qty": ""}]


def test_typed_parquet_and_nested_json_become_strings():
    table = pa.table({"Qty": pa.array([3], pa.int32()), "Price": [1.5], "When": pa.array([1], pa.timestamp("ms"))})
    assert data_rows(read_file("p.parquet", parquet_bytes(table))) == [
        {"qty": "3", "price": "1.5", "when": "1970-01-01 00:00:00.001"}
    ]
    line = b'{"event_id":"e1","timestamp":1700000000000,"ok":true,"payload":{"page":"/","ids":[1,2]},"x":null}\n'
    assert data_rows(read_file("e.ndjson", line)) == [
        {"event_id": "e1", "timestamp": "1700000000000", "ok": "true", "payload": '{"page":"/","ids":[1,2]}', "x": None}
    ]


def test_typed_parquet_dates_and_timestamps_land_in_their_declared_form_and_bytes_as_text():
    """A Parquet DATE or TIMESTAMP is not ambiguous: written as the contract declares the column
    (dd/MM/yyyy, epoch milliseconds), in UTC, a timestamp without a zone taken as UTC, so silver
    reads it as it reads text instead of quarantining every row. Hive's and Impala's strings as
    BINARY are text (UTF-8, else Windows-1252); nested values holding bytes or times are JSON."""
    import datetime as dt

    from lakehouse.contracts import CONTRACTS
    from lakehouse.transforms.bronze import declared_forms

    forms = {**declared_forms(CONTRACTS["orders"]), **declared_forms(CONTRACTS["events"])}
    assert forms == {"order_date": "dd/MM/yyyy", "timestamp": "epoch_ms"}
    berlin_late = dt.datetime(2026, 5, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))  # 21:30 UTC
    table = pa.table({
        "order_date": pa.array([dt.date(2026, 5, 1), None], pa.date32()),
        "Order ID": pa.array([b"O1", b"\xe9t\xe9"], pa.binary()),
        "timestamp": pa.array([berlin_late, dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc)], pa.timestamp("ns", tz="Europe/Berlin")),
        "extra_day": pa.array([dt.date(2026, 5, 1), None], pa.date32()),
        "payload": pa.array([{"b": b"x", "at": dt.datetime(2026, 1, 1)}, None]),
    })
    rows = data_rows(read_file("o.parquet", parquet_bytes(table), forms=forms))
    assert rows == [
        {"order_date": "01/05/2026", "order_id": "O1", "timestamp": "1777671000000", "extra_day": "2026-05-01",
         "payload": '{"b":"x","at":"2026-01-01T00:00:00"}'},
        {"order_date": None, "order_id": "été", "timestamp": "1777593600000", "extra_day": None, "payload": None},
    ]
    assert int(berlin_late.timestamp() * 1000) == 1777671000000
    naive = pa.table({"timestamp": pa.array([dt.datetime(2026, 5, 1, 9, 0, 0, 1500)], pa.timestamp("us")),
                      "order_date": pa.array([dt.datetime(2026, 5, 1, 23, 59)], pa.timestamp("s"))})
    assert data_rows(read_file("o.parquet", parquet_bytes(naive), forms=forms)) == [
        {"timestamp": "1777626000001", "order_date": "01/05/2026"}]


def test_int96_and_view_typed_parquet_keep_their_values():
    """INT96 timestamps (Hive, Impala, Spark before 3.0) read in Arrow's default nanoseconds wrapped
    around past 2262: 9999-12-31, the usual open end of a dimension row, became an instant of 1816.
    Arrow's view types (Polars writes them) are text too, not Python's repr of bytes."""
    import datetime as dt

    sink = io.BytesIO()
    stamps = [dt.datetime(9999, 12, 31), dt.datetime(2026, 5, 1, 9, 0, 0, 123456), dt.datetime(1500, 1, 1)]
    pq.write_table(pa.table({"timestamp": pa.array(stamps, pa.timestamp("us"))}), sink,
                   use_deprecated_int96_timestamps=True)
    assert pq.read_metadata(io.BytesIO(sink.getvalue())).schema.column(0).physical_type == "INT96"
    got = data_rows(read_file("e.parquet", sink.getvalue(), forms={"timestamp": "epoch_ms"}))
    epoch = dt.datetime(1970, 1, 1)
    assert got == [{"timestamp": str((s - epoch) // dt.timedelta(milliseconds=1))} for s in stamps]
    assert got[0] == {"timestamp": "253402214400000"}
    views = pa.table({"order_id": pa.array(["O1", "Ö2"], pa.string_view()),
                      "customer_id": pa.array([b"C1", b"O\x92B"], pa.binary_view())})
    assert data_rows(read_file("o.parquet", parquet_bytes(views))) == [
        {"order_id": "O1", "customer_id": "C1"}, {"order_id": "Ö2", "customer_id": "O’B"}]


_PARQUET_PEAKS = """
import json, sys, tracemalloc
import pyarrow as pa
from lakehouse import readers

readers.BLOCK_BYTES = 1 << 20  # slices of about 1 MB of decoded rows
readers.read_path("small.parquet", sys.argv[2]).table  # what a first read imports is not the file's
before, peak, numbers = pa.total_allocated_bytes(), 0, []
tracemalloc.start()
result = readers.read_path("big.parquet", sys.argv[1])
for table in result.batches():
    column = table.column("_row_number")
    numbers.append((column[0].as_py(), column[-1].as_py(), table.num_rows))
    peak = max(peak, pa.total_allocated_bytes() - before)
    del table, column
python_peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
whole = readers.read_path("big.parquet", sys.argv[1]).table.nbytes  # what a read of it whole holds
print(json.dumps({"slices": numbers, "counted": result.rows, "arrow_peak": peak, "python_peak": python_peak,
                  "whole": whole}))
"""


def test_a_large_parquet_file_is_read_a_slice_at_a_time(tmp_path):
    """A Parquet file's row groups are read a slice of rows at a time, numbered on across slices:
    1M rows in two row groups, slices of about a block (1 MB here), never more than a few slices' worth of Arrow memory live (measured in
    a process of its own, as the CSV test above), a fraction of the rows read whole, and the
    file's bytes read as its pages are decoded, not every row group's ahead (Arrow's pre-buffering)."""
    n = 1_000_000
    table = pa.table({"order_id": pa.array([f"O{i:09d}" for i in range(n)]),
                      "customer_id": pa.array([f"C{i % 5000:06d}" for i in range(n)]),
                      "qty": pa.array([i % 7 for i in range(n)], pa.int64())})
    path = tmp_path / "big.parquet"
    pq.write_table(table, path, row_group_size=n // 2, compression="none")
    pq.write_table(table.slice(0, 1), tmp_path / "small.parquet")
    done = subprocess.run([sys.executable, "-c", _PARQUET_PEAKS, str(path), str(tmp_path / "small.parquet")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    slices = got["slices"]
    assert got["counted"] == n and sum(rows for _, _, rows in slices) == n and len(slices) >= 15
    starts = [1] + [sum(rows for _, _, rows in slices[:i]) + 1 for i in range(1, len(slices))]
    assert [(first, last) for first, last, _ in slices] == [(s, s + rows - 1) for s, (_, _, rows) in zip(starts, slices)]
    assert got["arrow_peak"] < got["whole"] / 4, (got["arrow_peak"], got["whole"])
    size = path.stat().st_size  # 16 MB, uncompressed: read ahead, it was all in Python's memory
    assert got["python_peak"] < size / 4, (got["python_peak"], size)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(st.none(), st.text(max_size=30)), max_size=400),
       group_rows=st.integers(1, 120), block=st.integers(1, 1 << 14), as_bytes=st.booleans())
def test_parquet_read_in_slices_equals_the_file_read_whole(tmp_path_factory, monkeypatch, values, group_rows, block,
                                                            as_bytes):
    """However the row groups and the slices fall, the slices hold every row in order, numbered
    from 1 without a gap, each value as pyarrow reads the whole file (bytes as UTF-8 text)."""
    from lakehouse import readers

    monkeypatch.setattr(readers, "BLOCK_BYTES", block)
    column = pa.array([None if v is None else v.encode() if as_bytes else v for v in values],
                      pa.binary() if as_bytes else pa.string())
    path = tmp_path_factory.mktemp("pq") / "t.parquet"
    pq.write_table(pa.table({"Name": column, "n": pa.array(range(len(values)), pa.int64())}), path,
                   row_group_size=group_rows)
    whole = pq.read_table(path).to_pylist()
    want = [{"name": None if r["Name"] is None else r["Name"].decode() if as_bytes
             else r["Name"], "n": str(r["n"]), "_row_number": i} for i, r in enumerate(whole, start=1)]
    got = [{k: r[k] for k in ("name", "n", "_row_number")}
           for part in read_path("t.parquet", str(path)).batches() for r in part.to_pylist()]
    assert got == want


def test_a_parquet_file_damaged_after_its_first_slices_is_rejected_whole(tmp_path, monkeypatch):
    """Damage found part-way (a row group's pages) raises UnreadableFile from the slices, as for
    text found unreadable part-way: bronze drops what it had of the file and rejects it."""
    table = pa.table({"order_id": pa.array([f"O{i:09d}-{i * 7919 % 100003}" for i in range(200_000)])})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=100_000, compression="snappy")
    data = bytearray(sink.getvalue())
    second = pq.read_metadata(io.BytesIO(bytes(data))).row_group(1).column(0)
    start = second.data_page_offset + 40
    data[start:start + 64] = bytes(64)  # inside the second row group's first data page
    path = tmp_path / "o.parquet"
    path.write_bytes(bytes(data))
    from lakehouse import readers

    monkeypatch.setattr(readers, "BLOCK_BYTES", 1 << 18)  # slices of about 256 KB: several before the damage
    result = read_path("o.parquet", str(path))
    seen = 0
    with pytest.raises(UnreadableFile, match="corrupt Parquet"):
        for slice_ in result.batches():
            seen += slice_.num_rows
    assert seen > 0  # slices before the damage came first


def test_a_stream_delivered_the_firehose_way_is_read_record_by_record():
    """Kinesis Data Firehose writes objects without an extension, and without its newline
    delimiter a stream's JSON records back to back: each is a record, numbered in order. Junk
    after them is one malformed record, the records before it kept. No extension and CSV
    content reads as CSV."""
    objects = [{"event_id": f"e{i}", "n": i} for i in range(5)]
    back_to_back = "".join(json.dumps(o) for o in objects[:3]).encode() + b"\n" + json.dumps(objects[3]).encode() + \
        b" " + json.dumps(objects[4]).encode() + b"\n"
    for name, data in (("stream-1-2026-05-01-13-00-00-1a2b", back_to_back),
                       ("stream-1-2026-05-01-13-00-00-1a2b.gz", gzip.compress(back_to_back, mtime=0)),
                       ("events.json", back_to_back)):
        result = read_file(name, data)
        assert [(r["event_id"], r["_row_number"]) for r in result.table.to_pylist()] == [(f"e{i}", i + 1) for i in range(5)]
        assert result.malformed == 0 and result.format.startswith("json")
    pretty = "\n".join(json.dumps(o, indent=2) for o in objects[:2]).encode()  # pretty-printed, back to back
    assert [r["event_id"] for r in data_rows(read_file("e.json", pretty))] == ["e0", "e1"]
    junk = json.dumps(objects[0]).encode() + b'{"event_id": "e1", oops\n[1]{"event_id":"e2"}\n'
    rows = read_file("e.jsonl", junk).table.to_pylist()
    assert [(r["event_id"], r["_row_number"], r["_parse_error"], r["_raw_record"]) for r in rows] == [
        ("e0", 1, None, None), (None, 2, "invalid JSON: Expecting property name enclosed in double quotes",
                                '{"event_id": "e1", oops'),
        (None, 3, "line is not a JSON object", "[1]"), ("e2", 4, None, None)]
    assert data_rows(read_file("orders-export", b"order_id;qty\nO1;2\n")) == [{"order_id": "O1", "qty": "2"}]
    dotted = read_file("retail.events-1-2026-05-01-13-00-00-1a2b", back_to_back)  # a stream named with dots
    assert dotted.table.num_rows == 5 and dotted.format == "json"


def test_json_lines_end_at_line_feeds_and_values_python_cannot_hold_are_malformed():
    """JSON keeps U+2028, U+2029 and U+0085 raw in strings (JSON.stringify, ensure_ascii=False): a
    line holding them is one record. A pretty-printed object whose inner objects sit on lines of
    their own is one record. An integer past Python's 4,300 digits is a malformed record; an array
    nested past Python's limit rejects its file, with why."""
    raw = '{"event_id":"e1","payload":{"t":"a\u2028b\u2029c\u0085d"}}\n{"event_id":"e2"}\n'.encode()
    assert [(r["event_id"], r["payload"]) for r in data_rows(read_file("e.jsonl", raw))] == [
        ("e1", '{"t":"a\u2028b\u2029c\u0085d"}'), ("e2", None)]
    pretty = b'{"event_id": "e1", "items": [\n  {"sku": "A"},\n  {"sku": "B"}\n]}\n'
    assert data_rows(read_file("e.json", pretty)) == [{"event_id": "e1", "items": '[{"sku":"A"},{"sku":"B"}]'}]
    huge = b'{"event_id":"e1","n":' + b"1" * 5000 + b'}\n{"event_id":"e2"}\n'
    rows = read_file("e.ndjson", huge).table.to_pylist()
    assert [(r["event_id"], (r["_parse_error"] or "")[:40]) for r in rows] == [
        (None, "invalid JSON: Exceeds the limit (4300 di"), ("e2", "")]
    with pytest.raises(UnreadableFile, match="invalid JSON array: nested too deeply"):
        read_file("e.json", b"[" * 100_000)


def test_header_canonicalisation():
    assert canonical_names([" Order ID ", "unit-price", "Cust.ID", "ÜBER", "", "order_id", "__x__"]) == [
        "order_id", "unit_price", "cust_id", "ber", "column_5", "order_id_2", "x"
    ]
    result = read_file("o.csv", b"\xef\xbb\xbf Order ID ,Unit Price (EUR)\n1,2\n")
    assert result.data_columns == ["order_id", "unit_price_eur"]


def test_delimiter_sniffing_prefers_consistent_rows():
    assert sniff_delimiter('a;b;c\n1;"2,5";3\n4;5,5;6\n') == ";"
    assert sniff_delimiter("a,b\n1,2\n") == ","
    assert sniff_delimiter("a|b|c\n1|2|3\n") == "|"
    assert sniff_delimiter("a\tb\n1\t2\n") == "\t"


def test_malformed_csv_rows_are_kept_with_their_error_and_position():
    result = read_file("o.csv", b"a,b\n1,2\n3,4,5\n\n6\n7,8\n")
    rows = result.table.to_pylist()
    assert result.malformed == 2
    assert [r["_row_number"] for r in rows] == [1, 2, 3, 4]
    assert rows[1]["_parse_error"] == "expected 2 fields, got 3" and rows[1]["_raw_record"] == "3,4,5"
    assert rows[2]["_parse_error"] == "expected 2 fields, got 1" and rows[2]["a"] is None
    assert rows[3]["a"] == "7" and rows[3]["_parse_error"] is None


def test_malformed_json_lines_are_kept_and_the_rest_loads():
    result = read_file("e.ndjson", b'{"a":1}\n{broken\n42\n{"a":2}\n')
    rows = result.table.to_pylist()
    assert result.malformed == 2
    assert [r["a"] for r in rows] == ["1", None, None, "2"]
    assert rows[1]["_parse_error"].startswith("invalid JSON") and rows[1]["_raw_record"] == "{broken"
    assert rows[2]["_parse_error"] == "line is not a JSON object"


def test_pretty_printed_single_object_is_one_record():
    assert data_rows(read_file("o.json", b'{\n  "a": 1,\n  "b": "x"\n}\n')) == [{"a": "1", "b": "x"}]


def test_header_only_file_is_readable_and_empty():
    result = read_file("o.csv", b"order_id,qty\n")
    assert result.table.num_rows == 0 and result.data_columns == ["order_id", "qty"]


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("o.csv", b"", "empty file (0 bytes)"),
        ("o.csv.gz", gzip.compress(b"", mtime=0), "empty file (0 bytes after gunzip)"),
        ("o.csv", b"  \n\n", "only whitespace"),
        ("o.csv.gz", gzip.compress(CSV * 50, mtime=0)[:-30], "truncated gzip"),
        ("o.csv.gz", b"\x1f\x8b\x08\x00garbage-not-deflate", "gzip"),
        ("o.xlsx", b"PK\x03\x04" + bytes(64), "unsupported format '.xlsx'"),
        ("o", b"PK\x03\x04" + bytes(64), "zip archive"),  # no extension: read by its content
        ("o", b"\x00\x01\x02garbage", "binary content"),
        ("o.xml", b"<orders/>", "unsupported format '.xml'"),
        ("o.csv", b"PK\x03\x04" + bytes(64), "zip archive"),
        ("o.parquet", CSV, "not Parquet"),
        ("o.parquet", b"PAR1" + bytes(100) + b"PAR1", "corrupt Parquet"),
        ("o.csv", b"a,b\n\x00\x01\x02\x03", "binary content"),
        ("o.json", b'[{"a": 1}, ', "invalid JSON array"),
        ("o.json", b'["a", "b"', "invalid JSON array"),
    ],
)
def test_unreadable_files_say_why(name, data, reason, tmp_path):
    with pytest.raises(UnreadableFile) as err:
        read_file(name, data)
    assert reason in err.value.reason
    path = tmp_path / "landed"
    path.write_bytes(data)
    with pytest.raises(UnreadableFile) as err:  # streamed from disk: refused before any row
        list(read_path(name, str(path)).batches())
    assert reason in err.value.reason


def test_a_truncated_gzip_is_refused_whatever_its_encoding_and_wherever_it_is_cut(tmp_path):
    """Latin-1 text is known not to be UTF-8 from its first bytes; the gzip is still read to its end
    before any row is handed on."""
    text = "order_id;note\n" + "".join(f"{i};Müller é\n" for i in range(20_000))
    for encoding in ("latin-1", "utf-8"):
        data = gzip.compress(text.encode(encoding), mtime=0)
        for cut in (len(data) - 30, len(data) // 2):
            path = tmp_path / f"{encoding}-{cut}.csv.gz"
            path.write_bytes(data[:cut])
            with pytest.raises(UnreadableFile, match="truncated gzip"):
                list(read_path(path.name, str(path)).batches())


def test_a_quoted_crlf_split_by_a_block_boundary_keeps_its_line_feed(tmp_path, monkeypatch):
    """Arrow's CSV reader drops the LF of a quoted CR LF that a block boundary splits (apache/arrow
    issue 51368): here at every offset, each value is still exactly as landed, in UTF-8, in
    Windows-1252 and in UTF-16 text (decoded before Arrow reads it, so the guard sees its blocks)."""
    from lakehouse import readers

    text = "a,b\r\n" + "".join(f'{i},"x\r\ny \u00e9"\r\n' for i in range(200))
    for encoding, blocks in (("utf-8", range(40, 200)), ("cp1252", range(40, 120)), ("utf-16", range(40, 120))):
        path = tmp_path / f"crlf-{encoding}.csv"
        path.write_bytes(text.encode(encoding))
        for block in blocks:
            monkeypatch.setattr(readers, "BLOCK_BYTES", block)
            result = readers.read_path(path.name, str(path))
            slices = list(result.batches())
            assert len(slices) > 1 and result.malformed == 0
            assert [v for s in slices for v in s["b"].to_pylist()] == ["x\r\ny \u00e9"] * 200, (encoding, block)


# --- delimited text read a block at a time, against the csv module ------------------------

FIELD = st.text(alphabet=list("ab1 ,;\"\n\ré\u00fc"), max_size=6)


def expected_rows(records: list[list[str]], width: int) -> list[dict]:
    """What a reader must return, worked out from the csv module's records (blank lines are none):
    each numbered from 1; one of the header's width is its values, any other a malformed row saying so."""
    rows = []
    for number, fields in enumerate(records, start=1):
        good = len(fields) == width
        rows.append({**{f"c{i}": (fields[i] if good else None) for i in range(width)}, "_row_number": number,
                     "_parse_error": None if good else f"expected {width} fields, got {len(fields)}"})
    return rows


@hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(width=st.integers(1, 4), data=st.data(), crlf=st.booleans(), bom=st.booleans(), latin1=st.booleans(),
       gz=st.booleans(), block=st.integers(256, 4096))
def test_delimited_text_read_a_block_at_a_time_equals_the_csv_modules_records(
        tmp_path, monkeypatch, width, data, crlf, bom, latin1, gz, block):
    """Quotes, delimiters and line breaks inside values, records of the wrong width, CRLF, a BOM,
    Latin-1, gzip: read whole from memory and streamed from disk in blocks of `block` bytes
    (records cross blocks; Arrow needs a block to be longer than any one record), every row is the
    csv module's record at its number."""
    import csv as csvmodule

    from lakehouse import readers

    records = data.draw(st.lists(st.lists(FIELD, min_size=1, max_size=width + 2).filter(lambda r: r != [""]),
                                 max_size=40))
    out = io.StringIO()
    writer = csvmodule.writer(out, lineterminator="\r\n" if crlf else "\n")
    writer.writerow([f"c{i}" for i in range(width)])
    writer.writerows(records)
    text = out.getvalue()
    raw = (b"\xef\xbb\xbf" if bom and not latin1 else b"") + text.encode("latin-1" if latin1 else "utf-8")
    raw = gzip.compress(raw, mtime=0) if gz else raw
    # The oracle reads the text back (the writer leaves a lone "\r" unquoted: a line break to any reader).
    records = [record for record in csvmodule.reader(io.StringIO(text, newline="")) if record][1:]
    want = expected_rows(records, width)
    landing = Landing(delimiter=",")
    path = tmp_path / f"f{block}.csv"
    path.write_bytes(raw)
    whole = readers.read_file("o.csv", raw, landing)  # one block
    monkeypatch.setattr(readers, "BLOCK_BYTES", block)
    streamed = readers.read_path("o.csv", str(path), landing)
    slices = list(streamed.batches())
    for result, table in ((whole, None), (streamed, pa.concat_tables([streamed.schema.empty_table(), *slices]))):
        table = table if table is not None else result.table
        got = [{k: r[k] for k in want[0]} for r in table.to_pylist()] if want else table.to_pylist()
        assert got == want
        assert result.malformed == sum(1 for r in want if r["_parse_error"]) and result.rows == len(want)
        for row, fields in zip(table.to_pylist(), records):
            if row["_parse_error"] and not any(c in "".join(fields) for c in ",\"\n\r"):
                assert row["_raw_record"] == ",".join(fields)  # as landed


_BLOCKWISE_PEAKS = """
import json, sys, tracemalloc
import pyarrow as pa
from lakehouse import readers

readers.BLOCK_BYTES = 1 << 20
readers.read_path("small.csv", sys.argv[2]).table  # what a first read imports is not the file's
before, peak, rows = pa.total_allocated_bytes(), 0, 0
tracemalloc.start()
result = readers.read_path("big.csv", sys.argv[1])
for table in result.batches():
    rows += table.num_rows
    peak = max(peak, pa.total_allocated_bytes() - before)
    del table
print(json.dumps({"rows": rows, "counted": result.rows, "arrow_peak": peak,
                  "python_peak": tracemalloc.get_traced_memory()[1]}))
"""


def test_a_large_file_is_read_a_block_at_a_time(tmp_path):
    """Streamed from disk, a 21 MB file never has more than a few 1 MB blocks of Arrow memory live
    (read whole, its rows alone are about 30 MB).

    Measured in a process of its own: Arrow's allocation count is the whole process's, and a
    thread another test left behind in this worker once added 5 MB to it (CI, stop 55)."""
    path = tmp_path / "big.csv"
    with path.open("w") as out:
        out.write("order_id,customer_id,qty\n")
        for i in range(1_000_000):
            out.write(f"O{i:09d},C{i % 5000:06d},{i % 7}\n")
    (tmp_path / "small.csv").write_text("order_id,customer_id,qty\nO1,C1,1\n")
    done = subprocess.run([sys.executable, "-c", _BLOCKWISE_PEAKS, str(path), str(tmp_path / "small.csv")], capture_output=True, text=True,
                          check=True)
    got = json.loads(done.stdout)
    assert got["rows"] == got["counted"] == 1_000_000 and path.stat().st_size > 20e6
    assert got["arrow_peak"] < 8 * 2**20, got  # a 1 MB block parsed is about 2 MB of Arrow
    assert got["python_peak"] < 24 * 2**20, got  # the file's bytes are never held (the encoding pass: 8 MB chunks)
