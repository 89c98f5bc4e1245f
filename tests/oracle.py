"""An independent oracle: the expected silver keys and gold marts, from the raw landing files.

Plain Python (csv, json, gzip, pyarrow.parquet, decimal) written from the README's and
DESIGN.md's rules, importing nothing from `lakehouse`: it must be able to disagree with
the code under test. It reads a local landing folder (`retail/<source>/ingest_date=D/`).

Rules it encodes (the documented behaviour):
- readers: gzip by magic bytes; Parquet by magic; JSON by extension (or a .txt, or a name
  without an extension, starting with [ or {), as an array, NDJSON (a line holding several
  values back to back holds several records; junk after them is one malformed record), or
  objects over several lines; otherwise
  delimited text (`,` `;` `|` tab), UTF-16 after its BOM, UTF-8 with or without BOM, else
  Windows-1252 (its five undefined bytes as Latin-1's); headers
  trimmed, lower-cased, non-alphanumerics to `_`; a line with the wrong number of
  fields, or an NDJSON line or JSON array element that is not an object, is a malformed
  record; a file with none of the source's columns is rejected whole. A typed Parquet
  date or timestamp lands in its column's declared form, in UTC (a timestamp without a
  zone is UTC); Parquet bytes are text (UTF-8, else Windows-1252); nested values are JSON.
- every value trimmed, blank = missing; types checked strictly before parsing.
- transactional sources (orders, events): one row per key across all days; a key's
  rows ordered by (ingest date, file key, row number); the last row's content wins and
  the first row with that content is kept; earlier other content is superseded.
- snapshot sources: the last row of a key within a day is that day's version; a
  version is written when it differs from the key's previous written-or-unchanged one.
- an order takes the region/category of the version current on its ingest date,
  else (the key arrived later) the key's first version, else Unknown.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import gzip
import io
import json
import re
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

UTC = dt.timezone.utc
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
EMAIL = re.compile(r"^[a-z0-9._%+\-]+@[a-z0-9.\-]+\.[a-z]{2,}$")
PHONE = re.compile(r"^\+?[0-9]{6,15}$")
EVENT_TYPES = ("page_view", "add_to_cart", "checkout", "purchase")


# --- reading -------------------------------------------------------------------------

def _header(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.replace("\ufeff", "").strip().lower()).strip("_")


def _text(data: bytes) -> str | None:
    """UTF-16 after its byte-order mark (None if it is not), UTF-8, else Windows-1252 with the
    five bytes it leaves undefined as Latin-1's (as browsers read text labelled Latin-1)."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="oracle-latin-1")


codecs.register_error("oracle-latin-1", lambda e: (e.object[e.start:e.end].decode("latin-1"), e.end))


def _json_value(value):
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# How a typed Parquet date or timestamp lands as text: in its column's declared form, in UTC.
FORMS = {"order_date": "dd/MM/yyyy", "timestamp": "epoch_ms"}
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _parquet_value(v, column: str) -> str | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        return _decode_bytes(v)
    form = FORMS.get(column)
    if isinstance(v, dt.date) and form:  # a date is its midnight, a timestamp without a zone is UTC
        moment = v if isinstance(v, dt.datetime) else dt.datetime(v.year, v.month, v.day)
        moment = moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)
        if form == "epoch_ms":
            return str((moment - EPOCH) // dt.timedelta(milliseconds=1))
        return f"{moment.day:02d}/{moment.month:02d}/{moment.year:04d}"  # order_date's dd/MM/yyyy
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"), default=_json_extra)
    return str(v)


def _decode_bytes(v: bytes) -> str:
    try:
        return v.decode("utf-8")
    except UnicodeDecodeError:
        return v.decode("cp1252", errors="oracle-latin-1")


def _json_extra(v) -> str:
    return _decode_bytes(v) if isinstance(v, bytes) else v.isoformat() if isinstance(v, (dt.date, dt.time)) else str(v)


# The contract columns of each source, and their aliases: a file with none of them (in its
# header, or in any of its JSON objects) is rejected whole, not read as rows of missing values.
COLUMNS = {
    "orders": {"order_id", "order_date", "customer_id", "product_id", "qty", "unit_price", "channel",
               "cust_id", "customer", "customer_no", "prod_id", "sku"},  # aliases count
    "events": {"event_id", "user_id", "timestamp", "event_type", "payload"},
    "customers": {"customer_id", "first_name", "last_name", "email", "phone", "region"},
    "products": {"product_id", "name", "category", "list_price"},
}


def read_records(data: bytes, source: str, name: str) -> list[dict | None] | None:
    """Records of one file of `source` as {column: text}; None for a malformed record; None
    overall if unreadable or if the file has none of the source's columns. The file's `name`
    says whether text is JSON: `.json`, `.ndjson`, `.jsonl`, or a `.txt` starting with `[` or `{`."""
    read = _read(data, name.lower().removesuffix(".gz"))
    if read is None:
        return None
    columns, records = read
    return records if COLUMNS[source] & set(columns) else None


def _read(data: bytes, name: str) -> tuple[list[str], list[dict | None]] | None:
    """(the file's columns, its records), or None if unreadable."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            return None
    if not data.strip():
        return None
    if data[:4] == b"PAR1":
        import pyarrow.parquet as pq

        # INT96 timestamps in microseconds: nanoseconds end in 2262 (and wrap around past it)
        table = pq.read_table(io.BytesIO(data), coerce_int96_timestamp_unit="us")
        return ([_header(k) for k in table.column_names],
                [{_header(k): _parquet_value(v, _header(k)) for k, v in row.items()} for row in table.to_pylist()])
    text = _text(data)
    if text is None:
        return None
    stripped = text.lstrip().lstrip("\ufeff")
    if not stripped.strip() or "\x00" in text and data[:2] not in (b"\xff\xfe", b"\xfe\xff"):  # NUL bytes, unless UTF-16's
        return None
    json_extension = name.endswith((".json", ".ndjson", ".jsonl"))
    no_extension = not re.search(r"\.[a-z0-9]{1,8}$", name)  # (a Firehose stream's name may hold dots)
    if json_extension or (name.endswith(".txt") or no_extension) and stripped.startswith(("[", "{")):
        if stripped.startswith("["):
            try:
                objects = json.loads(stripped)
            except (ValueError, RecursionError):
                return None
            if not isinstance(objects, list):
                return None
        else:  # objects however spread over lines; if some are not, line by line (ending at line feeds)
            objects = _back_to_back(stripped)
            if not all(isinstance(o, dict) for o in objects):
                objects = [o for line in text.split("\n") if line.strip() for o in _back_to_back(line)]
        records = [{_header(k): _json_value(v) for k, v in obj.items()} if isinstance(obj, dict) else None
                   for obj in objects]
        return [k for r in records if r for k in r], records
    first = text.splitlines()[0]
    delimiter = max((",", ";", "|", "\t"), key=first.count)
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    header = [_header(h) for h in rows[0]]
    return header, [dict(zip(header, row)) if len(row) == len(header) else None for row in rows[1:] if row]


def _back_to_back(text: str) -> list:
    """The JSON values of `text`, one after another with or without whitespace between (a
    Firehose object); what does not parse, to the end, is one None."""
    values, position, decoder = [], 0, json.JSONDecoder()
    text = text.strip()
    while position < len(text):
        try:
            value, position = decoder.raw_decode(text, position)
        except (ValueError, RecursionError):
            return values + [None]
        values.append(value)
        while position < len(text) and text[position].isspace():
            position += 1
    return values


def landed(root: Path) -> dict[str, list[dict]]:
    """source -> every record as {'day', 'file', 'row', 'values' (or None if malformed)}."""
    out: dict[str, list[dict]] = defaultdict(list)
    for source_dir in sorted((root / "retail").iterdir()):
        for day_dir in sorted(source_dir.iterdir()):
            day = dt.date.fromisoformat(day_dir.name.split("=", 1)[1])
            for path in sorted(day_dir.iterdir()):
                records = read_records(path.read_bytes(), source_dir.name, path.name)
                if records is None:
                    continue
                key = path.relative_to(root).as_posix()
                for i, values in enumerate(records, start=1):
                    out[source_dir.name].append({"day": day, "file": key, "row": i, "values": values})
    return out


# --- typing and rules ------------------------------------------------------------------

def _value(record: dict, *names: str) -> str | None:
    for name in names:
        text = (record.get(name) or "").strip()
        if text:
            return text
    return None


def _date(text: str | None):
    if text is None or not re.fullmatch(r"[0-9]{2}/[0-9]{2}/[0-9]{4}", text):
        return None
    try:
        return dt.datetime.strptime(text, "%d/%m/%Y").date()
    except ValueError:
        return None


def _decimal(text: str | None, scale: int = 2, precision: int = 12):
    if text is None:
        return None
    text = text.replace(",", ".")
    if not re.fullmatch(rf"[+-]?[0-9]{{1,{precision - scale}}}(\.[0-9]{{1,{scale}}})?", text):
        return None
    return Decimal(text).quantize(Decimal(1).scaleb(-scale))


def _int(text: str | None):
    return int(text) if text is not None and re.fullmatch(r"[+-]?[0-9]{1,9}", text) else None


def order(r: dict, day: dt.date):
    """(typed order, valid?)"""
    v = {
        "order_id": _value(r, "order_id"),
        "order_date": _date(_value(r, "order_date")),
        "customer_id": (_value(r, "customer_id", "cust_id", "customer", "customer_no") or "").upper() or None,
        "product_id": (_value(r, "product_id", "prod_id", "sku") or "").upper() or None,
        "qty": _int(_value(r, "qty")),
        "unit_price": _decimal(_value(r, "unit_price")),
        "channel": (_value(r, "channel") or "").lower() or None,
    }
    ok = all(v[k] is not None for k in v)
    ok = ok and dt.date(2020, 1, 1) <= v["order_date"] <= day and 0 < v["qty"] <= 1_000_000
    ok = ok and 0 <= v["unit_price"] <= 1_000_000
    ok = ok and v["channel"] in ("web", "store", "mobile")
    return v, ok


def event(r: dict, day: dt.date):
    stamp = _value(r, "timestamp")
    v = {
        "event_id": (_value(r, "event_id") or "").lower() or None,
        "user_id": (_value(r, "user_id") or "").upper() or None,
        # a time Python can hold: before year 10000
        "timestamp": int(stamp) if stamp and re.fullmatch(r"[0-9]{1,15}", stamp) and int(stamp) < 253402300800000 else None,
        "event_type": (_value(r, "event_type") or "").lower() or None,
        "payload": _value(r, "payload"),
    }
    ok = all(v[k] is not None for k in ("event_id", "user_id", "timestamp", "event_type"))
    ok = ok and bool(UUID.match(v["event_id"])) and v["event_type"] in EVENT_TYPES
    ok = ok and v["timestamp"] >= (dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc) - EPOCH) // dt.timedelta(milliseconds=1)
    ok = ok and (v["payload"] is None or bool(re.fullmatch(r"\{.*\}", v["payload"], re.S)))
    return v, ok


def customer(r: dict, day: dt.date):
    phone = _value(r, "phone")
    if phone is not None:
        phone = ("+" if phone.startswith("+") else "") + re.sub(r"[^0-9]", "", phone)
    email = (_value(r, "email") or "").lower() or None
    v = {
        "customer_id": (_value(r, "customer_id") or "").upper() or None,
        "first_name": _value(r, "first_name"), "last_name": _value(r, "last_name"),
        "email": email if email is None or EMAIL.match(email) else None,
        "phone": phone if phone is None or PHONE.match(phone) else None,
        "region": _value(r, "region"),
    }
    return v, v["customer_id"] is not None and v["region"] is not None


def product(r: dict, day: dt.date):
    price_text = _value(r, "list_price")
    price = _decimal(price_text)
    v = {"product_id": (_value(r, "product_id") or "").upper() or None, "name": _value(r, "name"),
         "category": _value(r, "category"), "list_price": price}
    ok = v["product_id"] is not None and v["category"] is not None
    ok = ok and (price_text is None or (price is not None and price >= 0))
    return v, ok


TYPED = {"orders": (order, "order_id"), "events": (event, "event_id"),
         "customers": (customer, "customer_id"), "products": (product, "product_id")}


# --- silver ------------------------------------------------------------------------------

def _sort_key(rec: dict):
    return (rec["day"], rec["file"].encode("utf-8"), rec["row"])


def silver(records: dict[str, list[dict]]) -> dict:
    """Expected silver: winners of transactional sources, versions of snapshots, and per-day accounting."""
    out = {"accounting": defaultdict(lambda: defaultdict(int))}
    for source, (typer, key) in TYPED.items():
        valid = []
        for rec in records.get(source, []):
            out["accounting"][(source, rec["day"])]["bronze"] += 1
            typed, ok = typer(rec["values"], rec["day"]) if rec["values"] is not None else (None, False)
            if ok:
                valid.append({**rec, "typed": typed})
            else:
                out["accounting"][(source, rec["day"])]["quarantine"] += 1
        by_key = defaultdict(list)
        for rec in sorted(valid, key=_sort_key):
            by_key[rec["typed"][key]].append(rec)
        if source in ("orders", "events"):
            winners = {}
            for k, rows in by_key.items():
                content = rows[-1]["typed"]
                kept = next(r for r in rows if r["typed"] == content)
                winners[k] = kept
                for r in rows:
                    outcome = "silver" if r is kept else ("duplicate" if r["typed"] == content else "superseded")
                    out["accounting"][(source, r["day"])][outcome] += 1
            out[source] = winners
        else:
            versions = defaultdict(list)  # key -> [(day, typed)]
            for k, rows in by_key.items():
                per_day = {}
                for r in rows:
                    if r["day"] in per_day:
                        out["accounting"][(source, r["day"])]["duplicate"] += 1
                    per_day[r["day"]] = r  # the last row of the day wins
                previous = None
                for d in sorted(per_day):
                    typed = per_day[d]["typed"]
                    if typed == previous:
                        out["accounting"][(source, d)]["unchanged"] += 1
                    else:
                        out["accounting"][(source, d)]["silver"] += 1
                        versions[k].append((d, typed))
                    previous = typed
            out[source] = dict(versions)
    return out


def _as_of(versions: list[tuple], day: dt.date):
    current = [typed for d, typed in versions if d <= day]
    return current[-1] if current else versions[0][1]


def enriched_orders(expected: dict) -> list[dict]:
    rows = []
    for k, rec in expected["orders"].items():
        o = rec["typed"]
        cust, prod = expected["customers"].get(o["customer_id"]), expected["products"].get(o["product_id"])
        rows.append({**o, "_ingest_date": rec["day"],
                     "region": _as_of(cust, rec["day"])["region"] if cust else None,
                     "category": _as_of(prod, rec["day"])["category"] if prod else None})
    return rows


def daily_sales(expected: dict) -> dict[tuple, tuple]:
    """(order_date, channel, region, category) -> (orders, units, sales)."""
    out: dict[tuple, list] = defaultdict(lambda: [0, 0, Decimal("0.00")])
    for o in enriched_orders(expected):
        cell = out[(o["order_date"], o["channel"], o["region"] or "Unknown", o["category"] or "Unknown")]
        cell[0] += 1
        cell[1] += o["qty"]
        cell[2] += o["qty"] * o["unit_price"]
    return {k: (a, b, c) for k, (a, b, c) in out.items()}


def customer_activity(expected: dict) -> dict[tuple, dict]:
    """(customer_id, day) -> events by type, events, orders, units, sales."""
    blank = {**{t: 0 for t in EVENT_TYPES}, "events": 0, "orders": 0, "units": 0, "sales": Decimal("0.00")}
    out: dict[tuple, dict] = defaultdict(lambda: dict(blank))
    for rec in expected["events"].values():
        e = rec["typed"]
        day = dt.datetime.fromtimestamp(e["timestamp"] / 1000, UTC).date()
        cell = out[(e["user_id"], day)]
        cell[e["event_type"]] += 1
        cell["events"] += 1
    for o in enriched_orders(expected):
        cell = out[(o["customer_id"], o["order_date"])]
        cell["orders"] += 1
        cell["units"] += o["qty"]
        cell["sales"] += o["qty"] * o["unit_price"]
    return dict(out)


def expected(root: Path) -> dict:
    result = silver(landed(root))
    result["daily_sales"] = daily_sales(result)
    result["customer_activity"] = customer_activity(result)
    return result
