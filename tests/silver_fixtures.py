"""Small bronze-shaped Arrow tables for the silver tests (all values are strings, as landed)."""

import datetime as dt

import pyarrow as pa

from lakehouse.contracts import CONTRACTS
from lakehouse.transforms.bronze import LINEAGE_TYPES

DAY = dt.date(2026, 3, 10)
INGESTED = dt.datetime(2026, 3, 10, 6, tzinfo=dt.timezone.utc)

GOOD = {
    "orders": {"order_id": "O1", "order_date": "09/03/2026", "customer_id": "c1", "product_id": "p1",
               "qty": "2", "unit_price": "147,43", "channel": "  Web "},
    "customers": {"customer_id": "C1", "first_name": "José", "last_name": "Müller", "email": " Jose.Muller@Example.com ",
                  "phone": "+44 (20) 7946-0958", "region": "North"},
    "products": {"product_id": "P1", "name": "Smart Lamp", "category": "Home", "list_price": "19.99"},
    "events": {"event_id": "3F2504E0-4F89-41D3-9A0C-0305E82C3301", "user_id": "c1", "timestamp": "1773136800123",
               "event_type": " Page_View ", "payload": '{"page":"/"}'},
}


def bronze(source: str, rows: list[dict], day: dt.date = DAY, source_file: str | None = None) -> pa.Table:
    """Rows (dicts of landed strings, missing keys = null) as a bronze table."""
    columns = list(CONTRACTS[source].column_names)
    for row in rows:
        columns += [k for k in row if k not in columns and not k.startswith("_")]
    n = len(rows)
    data = {c: pa.array([r.get(c) for r in rows], pa.string()) for c in columns}
    data["_source_file"] = pa.array([source_file or f"retail/{source}/ingest_date={day}/f.csv"] * n)
    data["_ingest_date"] = pa.array([day] * n, pa.date32())
    data["_ingested_at"] = pa.array([INGESTED] * n, LINEAGE_TYPES["_ingested_at"])
    data["_row_number"] = pa.array([r.get("_row_number", i + 1) for i, r in enumerate(rows)], pa.int64())
    data["_parse_error"] = pa.array([r.get("_parse_error") for r in rows], pa.string())
    data["_raw_record"] = pa.array([r.get("_raw_record") for r in rows], pa.string())
    return pa.table(data)


def good(source: str, **changes) -> dict:
    return {**GOOD[source], **changes}
