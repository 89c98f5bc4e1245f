"""Sample data for the landing zone: the four retail sources, quirks and all, and plain rows for
any other declared source (built from its declaration, `_declared_file`).

Deterministic for a seed and start date (every random choice comes from a
`random.Random` seeded per day). `dirty=True` injects defects in known counts and
returns them in the report, so tests and checks can assert exact numbers.
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
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse.contracts import CONTRACTS
from lakehouse.contracts.model import SourceContract
from lakehouse.layout import partition_prefix
from lakehouse.resources.landing import LandingZone

REGIONS = ("North", "South", "East", "West", "Central")
CATEGORIES = ("Electronics", "Home", "Garden", "Toys", "Books", "Sports", "Beauty", "Grocery")
CHANNELS = ("web", "store", "mobile")
EVENT_TYPES = ("page_view", "add_to_cart", "checkout", "purchase")
FIRST = ("Anna", "José", "Zoë", "Liam", "Noah", "Émile", "Sofia", "Ava", "Jürgen", "Mia", "Lucas", "Chloé", "Ethan", "Inès", "Oliver", "Björn")
LAST = ("Smith", "García", "Müller", "Dubois", "Rossi", "Nowak", "Silva", "Kim", "Brown", "Lefèvre", "Jensen", "Novák", "Taylor", "Costa")
ADJECTIVES = ("Smart", "Classic", "Eco", "Ultra", "Compact", "Deluxe", "Basic", "Pro")
NOUNS = ("Lamp", "Kettle", "Drone", "Chair", "Novel", "Racket", "Serum", "Coffee", "Speaker", "Planter")

ORDER_COLUMNS = ("order_id", "order_date", "customer_id", "product_id", "qty", "unit_price", "channel")
CUSTOMER_COLUMNS = ("customer_id", "first_name", "last_name", "email", "phone", "region")
PRODUCT_COLUMNS = ("product_id", "name", "category", "list_price")

@dataclass
class Defect:
    defect: str
    source: str
    ingest_date: str
    key: str
    count: int


@dataclass
class GenerationReport:
    start: dt.date
    days: int
    seed: int
    scale: float
    dirty: bool
    files: list[str] = field(default_factory=list)
    rows: Counter = field(default_factory=Counter)  # source -> data rows written (readable files)
    defects: list[Defect] = field(default_factory=list)

    def defect_counts(self) -> dict[str, int]:
        totals: Counter = Counter()
        for d in self.defects:
            totals[d.defect] += d.count
        return dict(sorted(totals.items()))

    def as_dict(self) -> dict:
        return {
            "start": self.start.isoformat(),
            "days": self.days,
            "seed": self.seed,
            "scale": self.scale,
            "dirty": self.dirty,
            "files": self.files,
            "rows": dict(self.rows),
            "defect_counts": self.defect_counts(),
            "defects": [d.__dict__ for d in self.defects],
        }


@dataclass(frozen=True)
class Customer:
    customer_id: str
    first_name: str
    last_name: str
    email: str
    phone: str
    region: str


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    category: str
    list_price: float


def _ascii(text: str) -> str:
    """José -> Jose: mailbox names are ASCII in the CRM even when the name is not."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _phone(rng: random.Random) -> str:
    digits = "".join(str(rng.randrange(10)) for _ in range(9))
    style = rng.randrange(3)
    if style == 0:
        return f"+44 {digits[:4]} {digits[4:]}"
    if style == 1:
        return f"0{digits[:3]}-{digits[3:6]}-{digits[6:]}"
    return f"(0{digits[:2]}) {digits[2:]}"


def master_data(seed: int, scale: float) -> tuple[list[Customer], list[Product]]:
    rng = random.Random(f"{seed}:master")
    customers = []
    for n in range(1, max(1, round(500 * scale)) + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{_ascii(first)}.{_ascii(last)}{n}@example.com".lower()
        customers.append(Customer(f"C{n:06d}", first, last, email, _phone(rng), rng.choice(REGIONS)))
    products = []
    for n in range(1, max(1, round(200 * scale)) + 1):
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {n}"
        price = round(rng.uniform(2, 400), 2)
        products.append(Product(f"P{n:05d}", name, rng.choice(CATEGORIES), price))
    return customers, products


def _csv_bytes(header, rows, delimiter=",", encoding="utf-8", bom=False, crlf=False) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(header)
    writer.writerows(rows)
    data = buffer.getvalue().encode(encoding, errors="replace")
    return (b"\xef\xbb\xbf" + data) if bom else data


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)  # mtime=0: same bytes for the same seed


def _channel(rng: random.Random) -> str:
    value = rng.choice(CHANNELS)
    value = rng.choice((value, value.upper(), value.capitalize()))
    return rng.choice(("", " ", "  ")) + value + rng.choice(("", " "))


def _price(value: float, comma: bool) -> str:
    text = f"{value:.2f}"
    return text.replace(".", ",") if comma else text


class _Writer:
    def __init__(self, zone: LandingZone, report: GenerationReport):
        self.zone, self.report = zone, report

    def put(self, source: str, day: dt.date, name: str, data: bytes, rows: int = 0) -> str:
        key = partition_prefix(source, day) + name
        self.zone.put(key, data)
        self.report.files.append(key)
        self.report.rows[source] += rows
        return key

    def defect(self, defect: str, source: str, day: dt.date, key: str, count: int = 1) -> None:
        if count:
            self.report.defects.append(Defect(defect, source, day.isoformat(), key, count))


def generate(
    zone: LandingZone,
    days: int = 7,
    start: dt.date | None = None,
    seed: int = 42,
    scale: float = 1.0,
    dirty: bool = False,
) -> GenerationReport:
    """Write `days` ingest dates of every declared source into `zone`, starting at `start`.

    Without `start`, the last `days` days up to today (UTC), so the demo looks live.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    if scale <= 0:
        raise ValueError("scale must be positive")
    today = dt.datetime.now(dt.timezone.utc).date()
    start = start or today - dt.timedelta(days=days - 1)
    report = GenerationReport(start, days, seed, scale, dirty)
    writer = _Writer(zone, report)
    customers, products = master_data(seed, scale)
    previous: dict = {}
    for index in range(days):
        day = start + dt.timedelta(days=index)
        rng = random.Random(f"{seed}:{day.isoformat()}")
        if dirty and index == NO_REFERENCE_DAY and days > NO_REFERENCE_DAY + 1:
            # Reference data does not come every day: orders must not wait for it.
            writer.defect("day_without_reference_files", "customers", day, "", 1)
        else:
            late = [LATE_CUSTOMER] if dirty and index >= LATE_CUSTOMER_DAY else []
            _customers_file(writer, rng, day, index, customers + late, dirty)
            _products_file(writer, rng, day, index, products)
        today = {"orders": _orders_files(writer, rng, day, index, customers, products, scale, dirty),
                 "events": _events_files(writer, rng, day, index, customers, products, scale, dirty)}
        if dirty and index >= 1:
            _cross_day_defects(writer, rng, day, index, previous)
        previous = today
        references = {"customers": [c.customer_id for c in customers], "products": [p.product_id for p in products]}
        for contract in CONTRACTS.values():
            if contract.name not in WRITTEN_HERE:
                _declared_file(writer, rng, day, contract, max(1, round(200 * scale)), references)
    return report


WRITTEN_HERE = ("orders", "customers", "products", "events")  # the sources with a hand-written generator
_FORMATS = {"dd/MM/yyyy": "%d/%m/%Y", "MM/dd/yyyy": "%m/%d/%Y", "yyyy-MM-dd": "%Y-%m-%d", None: "%Y-%m-%d"}


def _declared_file(writer, rng, day: dt.date, contract: SourceContract, n: int, references: dict) -> None:
    """One clean CSV of `n` rows for a source with no generator of its own, from its declaration.

    Keys are unique per day, looked-up columns take keys the looked-up source has (when it
    is one of the retail sources), values respect the declared accepted values and bounds;
    a column with a pattern this cannot know how to meet is left empty unless required.
    """
    lookups = {lk.column: references.get(lk.source, []) for lk in contract.lookups}
    rows = []
    for i in range(n):
        row = []
        for column in contract.columns:
            low = float(column.min_value) if isinstance(column.min_value, (int, float)) else 0.0
            low += 1 if column.min_exclusive else 0
            high = float(column.max_value) if isinstance(column.max_value, (int, float)) else low + 9
            if column.name in contract.keys and column.type in ("int", "long"):
                value = str((day - dt.date(2000, 1, 1)).days * 10_000 + i)  # unique across days while n < 10,000
            elif column.name in contract.keys:
                value = f"{contract.name[:3].upper()}-{day:%Y%m%d}-{i:05d}"
            elif lookups.get(column.name):
                value = rng.choice(lookups[column.name])
            elif column.accepted:
                value = rng.choice(column.accepted)
            elif column.type in ("int", "long"):
                value = str(rng.randint(int(low), int(high)))
            elif column.type.startswith("decimal"):
                scale = int(column.type.split(",")[1].rstrip(")"))
                value = f"{rng.uniform(low, high):.{scale}f}"
            elif column.type == "date":
                value = (day - dt.timedelta(days=rng.randint(0, 3))).strftime(_FORMATS.get(column.parse, "%Y-%m-%d"))
            elif column.type == "timestamp":
                moment = dt.datetime.combine(day, dt.time(), dt.timezone.utc) + dt.timedelta(seconds=rng.randint(0, 86399))
                value = str(int(moment.timestamp() * 1000))  # epoch_ms, the one timestamp format declared
            elif column.pattern and not column.required:
                value = ""
            else:
                value = f"{column.name}-{rng.randint(1, 999)}"
            row.append(value)
        rows.append(row)
    extension, data = _declared_format(contract, rows)
    writer.put(contract.name, day, f"{contract.name}_{day:%Y%m%d}.{extension}", data, n)


def _declared_format(contract: SourceContract, rows: list[list[str]]) -> tuple[str, bytes]:
    """(extension, bytes) in the first of the source's declared formats, with its declared options."""
    landing = contract.landing
    if landing.formats[0] == "csv":
        return "csv", _csv_bytes(contract.column_names, rows, delimiter=landing.delimiter or ",",
                                 encoding=landing.encoding or "utf-8")
    records = [dict(zip(contract.column_names, row)) for row in rows]
    if landing.formats[0] == "json":
        return "ndjson", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    schema = pa.schema([(c, pa.string()) for c in contract.column_names])
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records, schema), buffer)
    return "parquet", buffer.getvalue()


NO_REFERENCE_DAY = 3
LATE_CUSTOMER_DAY = 2  # the CRM sends this customer a day after its first orders
LATE_CUSTOMER = Customer("C8000001", "Maëlle", "Nguyễn", "maelle.nguyen@example.com", "+33612345678", "West")
CROSS_DAY = {"resent_order": 3, "corrected_order": 2, "resent_event": 4}


def _cross_day_defects(writer, rng, day: dt.date, index: int, previous: dict) -> None:
    """What upstream retries and fixes look like: yesterday's records again, some changed, in a
    file whose name is ordinary but unusual (spaces, parentheses, '+', an accent)."""
    picked = rng.sample(previous["orders"], k=min(len(previous["orders"]), sum(CROSS_DAY[k] for k in
                                                                                 ("resent_order", "corrected_order"))))
    resent, corrected = picked[: CROSS_DAY["resent_order"]], picked[CROSS_DAY["resent_order"]:]
    rows = [r[:5] + [_price(r[5], False)] + r[6:] for r in resent]  # same content, other decimal separator
    rows += [r[:4] + [int(r[4]) + 1] + [_price(r[5], False)] + r[6:] for r in corrected]  # the shop fixed the qty
    if index == LATE_CUSTOMER_DAY - 1:
        rows += [[f"L-{day:%Y%m%d}-{n}", day.strftime("%d/%m/%Y"), LATE_CUSTOMER.customer_id, r[3], 1,
                  _price(r[5], False), "web"] for n, r in enumerate(previous["orders"][:2], start=1)]
    key = writer.put("orders", day, f"orders resent (copy) +é {day:%Y%m%d}.csv", _csv_bytes(ORDER_COLUMNS, rows),
                     len(rows))
    writer.defect("resent_order", "orders", day, key, len(resent))
    writer.defect("corrected_order", "orders", day, key, len(corrected))
    writer.defect("odd_file_name", "orders", day, key, 1)
    if index == LATE_CUSTOMER_DAY - 1:
        writer.defect("late_customer_order", "orders", day, key, 2)
    events = rng.sample(previous["events"], k=min(len(previous["events"]), CROSS_DAY["resent_event"]))
    key = writer.put("events", day, f"events retry (1) {day:%Y%m%d}.ndjson",
                     "".join(json.dumps(e) + "\n" for e in events).encode(), len(events))
    writer.defect("resent_event", "events", day, key, len(events))
    if index == 1:  # what else lands in a shared bucket: a job's marker, a source nobody declared
        stray = next(name for name in ("returns", "refunds", "undeclared") if name not in CONTRACTS)
        for source, name in (("orders", "_SUCCESS"), (stray, f"{stray}_{day:%Y%m%d}.csv")):
            key = writer.put(source, day, name, b"" if name == "_SUCCESS" else b"return_id,order_id\nR1,X\n")
            writer.defect("ignored_key", source, day, key, 1)


def _customers_file(writer, rng, day, index, customers, dirty) -> None:
    rows = [[c.customer_id, c.first_name, c.last_name, c.email, c.phone, c.region] for c in customers]
    # A few profile updates a day: latest snapshot wins in silver.
    for row in rng.sample(rows, k=min(5, len(rows))):
        row[4] = _phone(rng)
    counts = Counter()
    if dirty:
        picks = rng.sample(range(len(rows)), k=min(len(rows), 6))
        for i in picks[:3]:
            rows[i][3] = rows[i][3].replace("@", " at ")  # not an e-mail address
            counts["bad_email"] += 1
        junk = list(rows[picks[3]])
        junk[0] = ""  # a half-filled CRM record without its id, next to the real one
        rows.append(junk)
        counts["null_customer_id"] += 1
        for i in picks[4:6]:
            rows.append(list(rows[i]))  # the CRM exported the row twice
            counts["duplicate_customer_id"] += 1
    latin1 = index % 2 == 1  # the CRM's Windows export on alternate days
    name = f"customers_{day:%Y%m%d}.csv"
    data = _csv_bytes(CUSTOMER_COLUMNS, rows, encoding="latin-1" if latin1 else "utf-8", bom=not latin1, crlf=True)
    key = writer.put("customers", day, name, data, len(rows))
    for defect, count in counts.items():
        writer.defect(defect, "customers", day, key, count)


def _products_file(writer, rng, day, index, products) -> None:
    rows = [[p.product_id, p.name, p.category, f"{p.list_price:.2f}"] for p in products]
    if index % 3 == 2:
        table = pa.table(
            {
                "Product ID": [p.product_id for p in products],
                "Name": [p.name for p in products],
                "Category": [p.category for p in products],
                "List Price": pa.array([p.list_price for p in products], pa.float64()),
            }
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        writer.put("products", day, f"products_{day:%Y%m%d}.parquet", buffer.getvalue(), len(rows))
    elif index % 3 == 1:
        data = _csv_bytes(("Product Id", "Name", "Category", "List Price"), rows, delimiter="|")
        writer.put("products", day, f"products_{day:%Y%m%d}.txt", data, len(rows))
    else:
        writer.put("products", day, f"products_{day:%Y%m%d}.csv", _csv_bytes(PRODUCT_COLUMNS, rows), len(rows))


def _order_rows(rng, day, count, customers, products, prefix) -> list[list]:
    rows = []
    for n in range(1, count + 1):
        product = rng.choice(products)
        late = rng.random() < 0.04  # arrives 1-5 days after it was placed
        order_day = day - dt.timedelta(days=rng.randint(1, 5)) if late else day
        price = product.list_price if rng.random() < 0.8 else round(product.list_price * 0.9, 2)
        rows.append(
            [
                f"{prefix}-{day:%Y%m%d}-{n:06d}",
                order_day.strftime("%d/%m/%Y"),
                rng.choice(customers).customer_id,
                product.product_id,
                rng.randint(1, 5),
                price,
                _channel(rng),
            ]
        )
    return rows


def _orders_files(writer, rng, day, index, customers, products, scale, dirty) -> None:
    total = max(3, round(rng.randint(1150, 1350) * scale))
    web = _order_rows(rng, day, total // 2, customers, products, "W")
    store = _order_rows(rng, day, total // 3, customers, products, "S")
    mobile = _order_rows(rng, day, total - len(web) - len(store), customers, products, "M")
    counts = Counter()
    if dirty:
        counts = _dirty_orders(rng, web)
    # web: comma CSV with decimal points (gzipped on alternate days)
    web_rows = [r[:5] + [_price(r[5], False)] + r[6:] for r in web]
    header = list(ORDER_COLUMNS)
    if dirty and index == 1:
        header.append("coupon_code")  # the shop added a column without telling anyone
        web_rows = [r + [rng.choice(("", "SAVE10", "WELCOME"))] for r in web_rows]
    data = _csv_bytes(header, web_rows)
    name = f"orders_web_{day:%Y%m%d}.csv"
    if index % 2 == 1:
        data, name = _gz(data), name + ".gz"
    key = writer.put("orders", day, name, data, len(web_rows))
    for defect, count in counts.items():
        writer.defect(defect, "orders", day, key, count)
    if dirty and index == 1:
        writer.defect("extra_column", "orders", day, key)
    # store: semicolon .txt with comma decimals, CRLF, from the till system
    store_rows = [r[:5] + [_price(r[5], True)] + r[6:] for r in store]
    store_header = list(ORDER_COLUMNS)
    if dirty and index == 2:
        store_header[2] = "Cust ID"  # renamed header: customer_id is missing from this file
    key = writer.put(
        "orders", day, f"orders_store_{day:%Y%m%d}.txt",
        _csv_bytes(store_header, store_rows, delimiter=";", crlf=True), len(store_rows),
    )
    if dirty and index == 2:
        writer.defect("renamed_header", "orders", day, key)
    # mobile: Parquet with typed columns and display-style header names
    table = pa.table(
        {
            "Order ID": [r[0] for r in mobile],
            "Order Date": [r[1] for r in mobile],
            "Customer ID": [r[2] for r in mobile],
            "Product ID": [r[3] for r in mobile],
            "Qty": pa.array([r[4] for r in mobile], pa.int32()),
            "Unit Price": pa.array([r[5] for r in mobile], pa.float64()),
            "Channel": [r[6] for r in mobile],
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    writer.put("orders", day, f"orders_mobile_{day:%Y%m%d}.parquet", buffer.getvalue(), len(mobile))
    if dirty and index == 3:
        key = writer.put("orders", day, f"orders_web_{day:%Y%m%d}_retry.csv", b"")
        writer.defect("empty_file", "orders", day, key)
    if dirty and index == 4:
        fake_xlsx = b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(512))
        key = writer.put("orders", day, f"orders_finance_{day:%Y%m%d}.xlsx", fake_xlsx)
        writer.defect("unsupported_format", "orders", day, key)
    return [r for r in store if r[1] == day.strftime("%d/%m/%Y")]  # clean, placed that day: what a retry resends


def _dirty_orders(rng: random.Random, rows: list[list]) -> Counter:
    """Damage distinct rows of `rows` in place, one defect each; return the counts."""
    counts = Counter()
    per_defect = {
        "unparseable_order_date": 4,
        "null_order_id": 2,
        "duplicate_order_id": 3,
        "unknown_customer_id": 3,
        "unknown_product_id": 2,
        "negative_qty": 3,
    }
    picks = iter(rng.sample(range(len(rows)), k=min(len(rows), sum(per_defect.values()))))
    bad_dates = ("31/02/2026", "2026-13-45", "yesterday", "00/00/0000", "32/01/2026")
    duplicates = []
    for defect, count in per_defect.items():
        for _ in range(count):
            i = next(picks, None)
            if i is None:
                break
            row = rows[i]
            if defect == "unparseable_order_date":
                row[1] = rng.choice(bad_dates)
            elif defect == "null_order_id":
                row[0] = ""
            elif defect == "duplicate_order_id":
                duplicates.append(list(row))  # the export sent this line twice
            elif defect == "unknown_customer_id":
                row[2] = f"C9{rng.randrange(10**5):05d}"
            elif defect == "unknown_product_id":
                row[3] = f"P9{rng.randrange(10**4):04d}"
            elif defect == "negative_qty":
                row[4] = -rng.randint(1, 3)
            counts[defect] += 1
    rows.extend(duplicates)
    return counts


def _event(rng, day, customers, products) -> dict:
    moment = dt.datetime.combine(day, dt.time(), dt.timezone.utc) + dt.timedelta(
        seconds=rng.randrange(86400), milliseconds=rng.randrange(1000)
    )
    kind = rng.choices(EVENT_TYPES, weights=(70, 15, 8, 7))[0]
    payload = {"page": rng.choice(("/", "/search", "/product", "/cart"))}
    if kind != "page_view":
        payload["product_id"] = rng.choice(products).product_id
    if kind == "purchase":
        payload["value"] = round(rng.uniform(5, 500), 2)
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "user_id": rng.choice(customers).customer_id,
        "timestamp": int(moment.timestamp() * 1000),
        "event_type": kind,
        "payload": payload,
    }


def _events_files(writer, rng, day, index, customers, products, scale, dirty) -> None:
    count = max(1, round(rng.randint(1800, 2200) * scale))
    events = [_event(rng, day, customers, products) for _ in range(count)]
    if index % 4 == 3:  # the mobile SDK's batch upload: a JSON array, not NDJSON
        data = json.dumps(events).encode()
        writer.put("events", day, f"events_{day:%Y%m%d}.json", data, len(events))
    else:
        data = "".join(json.dumps(e) + "\n" for e in events).encode()
        writer.put("events", day, f"events_{day:%Y%m%d}.ndjson.gz", _gz(data), len(events))
    if dirty and index == 5:
        more = [_event(rng, day, customers, products) for _ in range(200)]
        data = _gz("".join(json.dumps(e) + "\n" for e in more).encode())
        key = writer.put("events", day, f"events_{day:%Y%m%d}_late.ndjson.gz", data[: len(data) // 2])
        writer.defect("truncated_gzip", "events", day, key)
    return events
