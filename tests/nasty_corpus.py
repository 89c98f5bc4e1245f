"""Landing zones written the way other people's systems write them, for the oracle tests.

Built with plain Python (no project code): odd file names, every reader format,
records re-sent and corrected on later days, days without reference files, a customer
that arrives after its orders. `random_zone` draws such zones for property-based tests.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import random
import unicodedata
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

START = dt.date(2026, 5, 1)
DAYS = [START + dt.timedelta(days=i) for i in range(5)]
ORDER_HEADER = ["order_id", "order_date", "customer_id", "product_id", "qty", "unit_price", "channel"]


def put(root: Path, source: str, day: dt.date, name: str, data: bytes) -> None:
    folder = root / "retail" / source / f"ingest_date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def delimited(header: list[str], rows: list[list], delimiter: str = ",", newline: str = "\n") -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def ndjson(objects: list, ascii: bool = True) -> bytes:
    return "".join(json.dumps(o, ensure_ascii=ascii) + "\n" for o in objects).encode()


def ms(day: dt.date, hour: int) -> int:
    return int(dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.timezone.utc).timestamp() * 1000)


def eid(n: int) -> str:
    return str(uuid.UUID(int=n))


def d(day: dt.date) -> str:
    return day.strftime("%d/%m/%Y")


def write_corpus(root: Path) -> None:
    """The fixed nasty corpus: every defect the oracle tests must see, in five ingest days."""
    d1, d2, d3, d4, d5 = DAYS
    # Day 1: reference data, orders (one for a customer not known yet), events.
    put(root, "customers", d1, "customers.csv", delimited(
        ["customer_id", "first_name", "last_name", "email", "phone", "region"],
        [["c1", "Ann", "Lee", "ANN@example.com", "+44 20 7946 0018", "North"],
         ["C2", "Bob", "Ray", "not-an-email", "12", "South"]]).encode())
    put(root, "products", d1, "products (catalog).txt", delimited(
        ["Product ID", "Name", "Category", "List Price"],
        [["P1", "Atlas", "Books", "12.50"], ["p2", "Dice", "Games", "3,99"]], delimiter="|").encode())
    put(root, "orders", d1, "orders 2026 (copy).csv", delimited(ORDER_HEADER, [
        ["O1", d(d1), "c1", "P1", "2", "10,50", " Web "],
        ["O2", d(d1), "C2", "P2", "1", "3.99", "store"],
        ["O3", d(d1), "\tC9\u00a0", "P1", "1", "12.50", "mobile"],  # C9 arrives on day 3; a tab, a no-break space
        ["O4", d(d1), "C1", "P1", "-1", "12.50", "web"],             # quarantined
        ["O5", d(d1 - dt.timedelta(days=10)), "C1", "P2", "4", "1.25", "web"],  # late order
    ]).encode())
    put(root, "events", d1, "events+web.ndjson.gz", gzip.compress(ndjson([
        {"event_id": eid(1), "user_id": "c1", "timestamp": ms(d1, 9), "event_type": "page_view", "payload": {"p": 1}},
        {"event_id": eid(2), "user_id": "C1\r\n", "timestamp": ms(d1, 10), "event_type": "\u3000PURCHASE", "payload": {}},
        {"event_id": "not-a-uuid", "user_id": "C2", "timestamp": ms(d1, 11), "event_type": "page_view"},
        {"event_id": eid(5), "user_id": "C2", "timestamp": ms(d1 - dt.timedelta(days=1), 23), "event_type": "checkout"},
        {"event_id": eid(6), "user_id": "C9", "timestamp": ms(d1, 12), "event_type": "page_view", "payload": None},
    ]), mtime=0))
    # Day 2: no reference files; O1 re-sent as it was, O2 corrected (a new order date moves
    # its mart day), two files whose names differ only in Unicode normalisation.
    put(root, "orders", d2, unicodedata.normalize("NFC", "órdenes.csv"), delimited(ORDER_HEADER, [
        ["O1", d(d1), "C1", "P1", "2", "10.50", "web"],               # duplicate of day 1
        ["O2", d(d2), "C2", "P2", "3", "3.99", "store"],              # correction
        ["O6", d(d2), "C1", "P2", "1", "3.99", "web"],
        ["", d(d2), "C1", "P1", "1", "1.00", "web"],                 # no order id: quarantined
    ]).encode())
    # Extra columns named as SQL reads a keyword, a function, or not a name at all.
    put(root, "orders", d2, unicodedata.normalize("NFD", "órdenes.csv"), delimited(
        [*ORDER_HEADER, "comment", "current_date", "1st", "2024"], [
            ["O7", d(d2), "C2", "P1", "5", "12.50", "mobile", "gift", "x", "a", "1"],
            ["O17", d(d2), "C1", "P1", "0", "1.00", "web", "qty 0", "y", "b", "2"],      # quarantined: qty
            ["O18", d(d2), "C1", "P2", "1", "3.99", "web", "", "", "", ""],
            ["O19", d(d2), "C2", "P1", "2", "12.50", "store", "", "z", "c", "3"],
            ["O20", d(d2), "C9", "P2", "1", "3.99", "mobile", "", "", "", ""],
        ]).encode())
    put(root, "events", d2, "events.json", json.dumps([
        {"event_id": eid(1), "user_id": "C1", "timestamp": ms(d1, 9), "event_type": "page_view", "payload": {"p": 1}},
        {"event_id": eid(3), "user_id": "C2", "timestamp": ms(d2, 8), "event_type": "add_to_cart", "payload": {"q": 2}},
    ]).encode())
    # Day 3: customers as UTF-8 with BOM and CRLF: C1 moves region, C9 first appears.
    put(root, "customers", d3, "clientes ñ;v2.csv", ("\ufeff" + delimited(
        ["customer_id", "first_name", "last_name", "email", "phone", "region"],
        [["C1", "Ann", "Lee", "ann@example.com", "+442079460018", "East"],
         ["C2", "Bob", "Ray", "bob@example.com", "555 0100 99", "South"],
         ["C9", "Zoë", "Kim", "zoe@example.com", "", "West"]], newline="\r\n")).encode("utf-8"))
    # Its header has drifted: a column added (coupon), customer_id under a declared alias.
    drifted = [*ORDER_HEADER[:2], "Cust ID", *ORDER_HEADER[3:], "coupon"]
    put(root, "orders", d3, "orders;semi.txt", delimited(drifted, [
        ["O8", d(d3), "C1", "P1", "1", "12,50", "WEB", "SPRING"],
        ["O9", d(d3), "C2", "P3", "2", "7,00", "store", ""],         # P3 never arrives
        ["O12", d(d3), "", "P1", "1", "1,00", "web", ""],            # no customer: quarantined
        ["O13", d(d3), "C7", "P2", "3", "3,99", "mobile", ""],       # C7 never arrives
        ["O14", d(d3), "c9", "P1", "1", "12,50", "web", "SPRING"],
    ], delimiter=";").encode())
    # Day 4: only products, as Parquet: P1 changes category.
    buf = io.BytesIO()
    pq.write_table(pa.table({"product_id": ["P1", "P2"], "name": ["Atlas", "Dice"],
                             "category": ["Comics", "Games"], "list_price": ["12.50", "3.99"]}), buf)
    put(root, "products", d4, "products.parquet", buf.getvalue())
    # and events as Parquet written by Spark or Firehose: typed timestamps, ids as bytes (Hive's strings)
    buf = io.BytesIO()
    pq.write_table(pa.table({
        "event_id": pa.array([eid(12).encode(), eid(13).encode()], pa.binary()), "user_id": ["C2", "c9"],
        "timestamp": pa.array([dt.datetime(2026, 5, 4, 8, tzinfo=dt.timezone.utc), dt.datetime(2026, 5, 3, 23, 59)],
                              pa.timestamp("us", tz="UTC")),
        "event_type": ["page_view", "purchase"], "payload": ['{"p":4}', None]}), buf)
    put(root, "events", d4, "part-00000.snappy.parquet", buf.getvalue())
    # and as Hive or Impala write it: INT96 timestamps, one the open end 9999-12-31 (past 2262,
    # where Arrow's default nanoseconds wrap around to another instant)
    buf = io.BytesIO()
    pq.write_table(pa.table({
        "event_id": [eid(14), eid(15)], "user_id": ["C2", "C1"],
        "timestamp": pa.array([dt.datetime(2026, 5, 4, 9, 30), dt.datetime(9999, 12, 31, 23, 59, 59, 999000)],
                              pa.timestamp("ms")),
        "event_type": ["page_view", "add_to_cart"], "payload": [None, '{"p":5}']}), buf,
        use_deprecated_int96_timestamps=True)
    put(root, "events", d4, "part-00001.snappy.parquet", buf.getvalue())
    # Day 5: Latin-1 orders (a correction of O6 to customer C9, O7 re-sent), an NDJSON
    # with a malformed line, and a gzipped CSV of events re-sent from day 2.
    put(root, "orders", d5, "orders@café&co=1.csv", delimited(ORDER_HEADER, [
        ["O6", d(d2), "C9", "P2", "1", "3.99", "web"],                # correction: C9 now
        ["O7", d(d2), "C2", "P1", "5", "12.50", "mobile"],            # duplicate
        ["O10", d(d5), "C9", "P2", "2", "3.99", "store"],
        ["O11", "31/02/2026", "C1", "P1", "1", "1.00", "web"],       # no such date: quarantined
        ["O15", d(d5), "C1", "P2", "2", "3.99", "mobile"],
        ["O16", d(d5), "STRASSE7", "P1", "1", "12.50", "web"],        # customer 'Straße7': upper-cased, the same
    ]).encode("latin-1"))
    put(root, "customers", d5, "kunden_ä.csv", delimited(
        ["customer_id", "first_name", "last_name", "email", "phone", "region"],
        [["C2", "Bébé", "Ray", "bob@example.com", "555 0100 99", "South"],
         ["Straße7", "Ute", "Groß", "ute@example.de", "", "North"]]).encode("latin-1"))
    put(root, "events", d5, "events 'retry'.jsonl", ndjson([
        {"event_id": eid(3), "user_id": "C2", "timestamp": ms(d2, 8), "event_type": "add_to_cart", "payload": {"q": 2}},
        {"event_id": eid(4), "user_id": "C9", "timestamp": ms(d5, 12), "event_type": "checkout", "payload": {}},
        {"event_id": eid(7), "user_id": "C1", "timestamp": ms(d5, 13), "event_type": "purchase", "payload": {}},
        {"event_id": eid(6), "user_id": "C9", "timestamp": ms(d1, 12), "event_type": "purchase", "payload": None},
        # a payload with line separators, raw in the file (JSON allows them in strings: NDJSON's lines
        # end at line feeds only) and in silver; a Turkish dotted capital I,
        # which lower-cases to 'i' and a combining dot, so not an accepted type
        {"event_id": eid(8), "user_id": "straße7", "timestamp": ms(d5, 14), "event_type": "purchase",
         "payload": {"note": "a\u2028b\u0085c"}},
        {"event_id": eid(9), "user_id": "C1", "timestamp": ms(d5, 15), "event_type": "PAGE_V\u0130EW", "payload": {}},
        {"event_id": eid(10), "user_id": "STRASSE7", "timestamp": ms(d5, 16), "event_type": "page_view", "payload": {}},
        {"event_id": eid(11), "user_id": "C2", "timestamp": ms(d5, 17), "event_type": "page_view", "payload": {}},
    ], ascii=False) + b"{not json\n")  # 2 of 9 set aside: under the quarantine share that blocks (25%)


def random_zone(root: Path, seed: int, days: int = 3) -> None:
    """A small random landing zone: keys drawn from a narrow range so re-sends, corrections,
    unknown and late-arriving references, and bad values are frequent."""
    rng = random.Random(seed)
    start = START
    names = ["a b.csv", "x (1).csv", "ü+.csv", "plain.csv"]
    for i in range(days):
        day = start + dt.timedelta(days=i)
        if rng.random() < 0.6:
            rows = [[f"C{rng.randint(1, 6)}", "F", "L", "f@x.io", "+1555000111", rng.choice(["N", "S", "E"])]
                    for _ in range(rng.randint(1, 6))]
            put(root, "customers", day, rng.choice(names), delimited(
                ["customer_id", "first_name", "last_name", "email", "phone", "region"], rows).encode())
        if rng.random() < 0.5:
            rows = [[f"P{rng.randint(1, 4)}", "n", rng.choice(["A", "B"]), "1.00"] for _ in range(rng.randint(1, 4))]
            put(root, "products", day, rng.choice(names).replace(".csv", ".txt"),
                delimited(["product_id", "name", "category", "list_price"], rows, delimiter="|").encode())
        for f in range(rng.randint(0, 2)):
            rows = []
            for _ in range(rng.randint(1, 8)):
                order_day = day - dt.timedelta(days=rng.randint(0, 3))
                qty = rng.choice(["1", "2", "3", "0", "x"]) if rng.random() < 0.2 else rng.choice(["1", "2", "3"])
                rows.append([f"O{rng.randint(1, 12)}", d(order_day), f"C{rng.randint(1, 7)}", f"P{rng.randint(1, 5)}",
                             qty, rng.choice(["1.00", "2,50", "10.10"]), rng.choice(["web", "Store", "mobile"])])
            put(root, "orders", day, f"{f}-{rng.choice(names)}", delimited(ORDER_HEADER, rows).encode())
        if rng.random() < 0.7:
            events = [{"event_id": eid(rng.randint(1, 10)), "user_id": f"C{rng.randint(1, 7)}",
                       "timestamp": ms(day - dt.timedelta(days=rng.randint(0, 1)), rng.randint(0, 23)),
                       "event_type": rng.choice(["page_view", "purchase", "checkout", "bogus"]),
                       "payload": {"n": rng.randint(0, 2)}} for _ in range(rng.randint(1, 6))]
            put(root, "events", day, "e v.jsonl.gz", gzip.compress(ndjson(events), mtime=0))


def wild_zone(root: Path, seed: int, days: int = 3) -> None:
    """A random zone written more carelessly than `random_zone`: values padded with tabs and
    no-break spaces, header spellings and column orders, every delimiter, Latin-1 and BOMs,
    gzip, JSON numbers, typed Parquet, empty and header-only files, short lines, embedded
    line breaks, dates after their ingest day, events whose timestamp is a float, and keys
    that only Unicode's full case mapping makes equal ('straße' and 'STRASSE')."""
    rng = random.Random(seed)

    def pad(v):
        return rng.choice(["", " ", "  ", "\t", "\u00a0"]) + v + rng.choice(["", " ", "\t"]) if rng.random() < 0.25 else v

    def hdr(h):
        spelled = [h, h.upper(), h.replace("_", " ").title(), f" {h} ", h.replace("_", "-")]
        return rng.choice(spelled) if rng.random() < 0.3 else h

    def enc(text):
        r = rng.random()
        if r < 0.15:  # a Windows export now and then: its curly quotes and dashes are not Latin-1
            return text.encode("cp1252" if odd.random() < 0.5 else "latin-1", "replace")
        if r < 0.3:  # with a byte-order mark: UTF-8's, or UTF-16's (Excel's "Unicode text")
            return text.encode("utf-16" if odd.random() < 0.3 else "utf-8-sig")
        return text.encode()

    def maybe_gzip(data):
        return gzip.compress(data, mtime=0) if rng.random() < 0.2 else data

    def number(text, cast):
        try:
            return cast(text.strip().replace(",", "."))
        except ValueError:
            return None

    # Its own stream, so that the draws above and below stay what they were for every seed.
    odd = random.Random(f"{seed}-case")

    def cased(key):  # now and then a key that Unicode's full case mapping makes equal to another
        return odd.choice(["straße", "STRASSE", "ﬁ1", "FI1", "ǰ", "İd"]) if odd.random() < 0.1 else key

    def typed_date(text):
        try:
            return dt.datetime.strptime(text.strip(), "%d/%m/%Y").date()
        except ValueError:
            return None

    names = ["a b.csv", "x (1).csv", "ü+.csv", "plain.csv", "r%20.csv", "q'.csv"]
    for i in range(days):
        day = START + dt.timedelta(days=i)
        if rng.random() < 0.6:
            rows = [[pad(cased(rng.choice([f"C{rng.randint(1, 6)}", f"c{rng.randint(1, 6)}"]))),
                     rng.choice(["F", "Ann, Jr", "Zoë", 'Say "hi"', "two\nlines"]), "L",
                     rng.choice(["f@x.io", "F@X.IO", "bad", ""]), rng.choice(["+1555000111", "+1 (555) 000-111", "12", ""]),
                     pad(rng.choice(["N", "S", "E", ""]))] for _ in range(rng.randint(1, 6))]
            header = ["customer_id", "first_name", "last_name", "email", "phone", "region"]
            text = delimited([hdr(h) for h in header], rows, delimiter=rng.choice([",", ";", "\t"]),
                             newline=rng.choice(["\n", "\r\n"]))
            put(root, "customers", day, rng.choice(names), maybe_gzip(enc(text)))
        if rng.random() < 0.5:
            header = ["product_id", "name", "category", "list_price"]
            rows = [[pad(f"P{rng.randint(1, 4)}"), rng.choice(["n", "big, red", "a|b"]), rng.choice(["A", "B", " A"]),
                     rng.choice(["1.00", "2,5", "-1", "", "x", "3"])] for _ in range(rng.randint(1, 4))]
            if rng.random() < 0.3:
                buffer = io.BytesIO()
                pq.write_table(pa.table({h: [r[j] for r in rows] for j, h in enumerate(header)}), buffer)
                put(root, "products", day, "p.parquet", buffer.getvalue())
            else:
                put(root, "products", day, rng.choice(names).replace(".csv", ".txt"),
                    enc(delimited(header, rows, delimiter="|")))
        for f in range(rng.randint(0, 3)):
            rows = []
            for _ in range(rng.randint(0, 8)):
                order_day = day - dt.timedelta(days=rng.randint(-1, 3))  # -1: after its ingest day
                qty = rng.choice(["1", "2", "+3", "02", "0", "-1", "x", "1.0", " 2 ", "2e1", ""]) \
                    if rng.random() < 0.3 else rng.choice(["1", "2", "3"])
                price = rng.choice(["1.00", "2,50", "10.10", "1.005", "-1.00", "0", "1e2", "1 000,00", ".5", "5.", ""]) \
                    if rng.random() < 0.3 else rng.choice(["1.00", "2.50"])
                if odd.random() < 0.04:  # digits of other scripts: not digits to a strict pattern
                    qty = odd.choice(["\u0663", "\uff12"])
                if odd.random() < 0.04:  # as large as the types allow, or just past the bounds
                    qty, price = odd.choice([("999999999", "9999999999,99"), ("1000001", "1.00"), ("1", "1000000.01"),
                                             ("1000000", "1000000")])
                date = d(order_day) if rng.random() < 0.85 else \
                    rng.choice([order_day.isoformat(), "1/2/2026", "01/01/2019", "31/04/2026", ""])
                order_id = rng.choice([f"O{rng.randint(1, 12)}", f"o{rng.randint(1, 3)}"])
                order_id = odd.choice(["O\u20191", "O\u20131", "\u20ac1"]) if odd.random() < 0.05 else order_id
                rows.append([pad(order_id), pad(date),
                             pad(cased(rng.choice([f"C{rng.randint(1, 7)}", f"c{rng.randint(1, 7)}", ""]))),
                             pad(f"P{rng.randint(1, 5)}"),
                             qty, price, pad(rng.choice(["web", "Store", "MOBILE", "phone", ""]))])
            header = ["order_id", "order_date", rng.choice(["customer_id", "cust_id", "customer"]),
                      rng.choice(["product_id", "sku"]), "qty", "unit_price", "channel"]
            kind = rng.random()
            if kind < 0.12:  # typed Parquet: qty int64, unit_price double, the rest text
                columns = {h: [r[j] for r in rows] for j, h in enumerate(header)}
                columns["qty"] = pa.array([number(v, int) for v in columns["qty"]], pa.int64())
                columns["unit_price"] = pa.array([number(v, float) for v in columns["unit_price"]], pa.float64())
                if odd.random() < 0.5:  # a typed date (text that is no dd/MM/yyyy date: none), ids as bytes
                    columns["order_date"] = pa.array([typed_date(v) for v in columns["order_date"]], pa.date32())
                    columns["order_id"] = pa.array([v.encode() for v in columns["order_id"]], pa.binary())
                buffer = io.BytesIO()
                pq.write_table(pa.table(columns), buffer)
                put(root, "orders", day, f"{f}.parquet", buffer.getvalue())
                continue
            if kind < 0.18:
                put(root, "orders", day, f"{f}-empty.csv", rng.choice([b"", b"   \n", (",".join(header) + "\n").encode()]))
                continue
            if kind < 0.3:  # a JSON array, numbers where they parse, indented or not, with a BOM or not
                objects = []
                for r in rows:
                    o = dict(zip(header, r))
                    if rng.random() < 0.5 and o["qty"].strip().lstrip("+").isdigit():
                        o["qty"] = int(o["qty"])
                    if rng.random() < 0.5 and o["unit_price"] in ("1.00", "2.50", "10.10"):
                        o["unit_price"] = float(o["unit_price"])
                    objects.append(o)
                data = json.dumps(objects, indent=rng.choice([None, 1])).encode()
                data, name = (b"\xef\xbb\xbf" + data if rng.random() < 0.3 else data), f"{f}.json"
            elif kind < 0.4:  # NDJSON, perhaps with a line that is an array, not an object
                data = ndjson([dict(zip(header, r)) for r in rows]) + (b"[1,2]\n" if rng.random() < 0.5 else b"")
                name = f"{f}.jsonl"
            else:
                order = list(range(7))
                if rng.random() < 0.3:
                    rng.shuffle(order)
                delimiter = rng.choice([",", ",", ";", "|", "\t"])
                text = delimited([hdr(header[j]) for j in order], [[r[j] for j in order] for r in rows],
                                 delimiter=delimiter, newline=rng.choice(["\n", "\r\n"]))
                if rng.random() < 0.2:
                    text += "\n\n"  # trailing blank lines
                if rng.random() < 0.2 and rows:
                    text += delimiter.join(["O99", d(day)]) + "\n"  # a short line
                data, name = enc(text), f"{f}-{rng.choice(names)}"
            put(root, "orders", day, name, maybe_gzip(data))
        if rng.random() < 0.7:
            events = []
            for _ in range(rng.randint(1, 6)):
                stamp = ms(day - dt.timedelta(days=rng.randint(0, 1)), rng.randint(0, 23))
                e = {"event_id": rng.choice([eid(rng.randint(1, 10)), eid(rng.randint(1, 10)).upper(), "not-a-uuid"]),
                     "user_id": cased(rng.choice([f"C{rng.randint(1, 7)}", f"c{rng.randint(1, 7)}"])),
                     "timestamp": rng.choice([stamp] * 3 + [str(ms(day, 5)), "x", None, float(ms(day, 6)), ms(day, 7) + 0.5]),
                     "event_type": rng.choice(["page_view", "purchase", "checkout", "bogus", "PURCHASE", " checkout "]),
                     "payload": rng.choice([{"n": rng.randint(0, 2)}, None, {}, [1], "{}", {"ü": "é"}])}
                if odd.random() < 0.05 and isinstance(e["timestamp"], int):  # epoch seconds: 1970 as milliseconds
                    e["timestamp"] //= 1000
                if odd.random() < 0.03:  # fifteen digits: year 33658, no date to Python
                    e["timestamp"] = odd.choice(["999999999999999", "253402300800000"])
                if odd.random() < 0.1:  # a dotted capital I (not an accepted type once lower-cased), a line separator
                    e["event_type"], e["payload"] = odd.choice([("PAGE_V\u0130EW", {}), ("purchase", {"t": "a\u2028b"})])
                if rng.random() < 0.1:
                    del e["payload"]
                events.append(e)
            junk, bom = rng.random() < 0.2, rng.random() < 0.2
            name, zipped = rng.choice(["e v.jsonl.gz", "e.json"]), rng.random() < 0.6
            if odd.random() < 0.15:  # as Parquet, the timestamp typed (zoned or not), the payload as JSON text
                zone = odd.choice([None, "UTC", "America/New_York"])
                stamps = [dt.datetime.fromtimestamp(e["timestamp"] / 1000, dt.timezone.utc)
                          if isinstance(e["timestamp"], int) else None for e in events]
                table = pa.table({
                    "event_id": pa.array([e["event_id"] for e in events]),
                    "user_id": pa.array([e["user_id"] for e in events]),
                    "timestamp": pa.array([s if zone or s is None else s.replace(tzinfo=None) for s in stamps],
                                          pa.timestamp("ms", tz=zone)),
                    "event_type": pa.array([e["event_type"] for e in events]),
                    "payload": pa.array([json.dumps(e["payload"]) if "payload" in e else None for e in events])})
                int96 = odd.random() < 0.5  # as Hive, Impala and Spark before 3.0 write timestamps
                if int96 and odd.random() < 0.5:  # a valid event past 2262, where nanoseconds wrap around
                    far = dt.datetime(9999, 12, 31, 23, 59, 59, 999000, dt.timezone.utc)
                    table = pa.concat_tables([table, pa.table({
                        "event_id": [str(uuid.UUID(int=odd.getrandbits(128)))], "user_id": ["C1"],
                        "timestamp": pa.array([far if zone else far.replace(tzinfo=None)], pa.timestamp("ms", tz=zone)),
                        "event_type": ["purchase"], "payload": ["{}"]})], promote_options="default")
                buffer = io.BytesIO()
                pq.write_table(table, buffer, use_deprecated_int96_timestamps=int96)
                put(root, "events", day, "e.parquet", buffer.getvalue())
                continue
            # as JSON tools write it, or with U+2028 and accents raw (JSON.stringify, ensure_ascii=False)
            data = ndjson(events, ascii=odd.random() < 0.5) + (b"{not json\n" if junk else b"")
            data = b"\xef\xbb\xbf" + data if bom else data
            if odd.random() < 0.15:  # as Kinesis Firehose writes: no extension, records back to back
                data = "".join(json.dumps(e) for e in events).encode() + odd.choice([b"", b"\n", b"{not json"])
                name = f"stream-1-{day:%Y-%m-%d}-00-00-00-{seed}" + (".gz" if zipped else "")
            put(root, "events", day, name, gzip.compress(data, mtime=0) if zipped else data)
