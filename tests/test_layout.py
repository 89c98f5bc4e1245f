import datetime as dt

import pytest

from lakehouse.layout import KeyOutsideLayout, parse_key, partition_prefix


def test_parse_valid_key():
    key = parse_key("retail/orders/ingest_date=2026-03-01/orders_web_20260301.csv.gz")
    assert (key.source, key.ingest_date, key.file_name) == ("orders", dt.date(2026, 3, 1), "orders_web_20260301.csv.gz")
    assert key.key == "retail/orders/ingest_date=2026-03-01/orders_web_20260301.csv.gz"
    assert partition_prefix("events", dt.date(2026, 3, 1)) == "retail/events/ingest_date=2026-03-01/"


@pytest.mark.parametrize(
    "key, why",
    [
        ("wholesale/orders/ingest_date=2026-03-01/a.csv", "top-level"),
        ("retail/invoices/ingest_date=2026-03-01/a.csv", "unknown source"),
        ("retail/orders/date=2026-03-01/a.csv", "ingest_date=YYYY-MM-DD"),
        ("retail/orders/ingest_date=2026-02-30/a.csv", "not a calendar date"),
        ("retail/orders/ingest_date=2026-03-01/../../etc/passwd", "path parts"),
        ("retail/orders/ingest_date=2026-03-01/..", "file name"),
        ("retail/orders/ingest_date=2026-03-01/.hidden.csv", "file name"),
        ("retail/orders/ingest_date=2026-03-01/_SUCCESS", "file name"),
        ("retail/orders/ingest_date=2026-03-01/a b;rm -rf.csv", "file name"),
        ("retail/orders/ingest_date=2026-03-01/sub/a.csv", "path parts"),
        ("retail/orders/ingest_date=2026-03-01/", "file name"),
    ],
)
def test_keys_outside_layout_are_refused_with_a_reason(key, why):
    with pytest.raises(KeyOutsideLayout, match=why):
        parse_key(key)
