"""The sample generator: deterministic, quirky, and honest about the defects it injects."""

import datetime as dt
import hashlib

import pyarrow.compute as pc

from lakehouse.generate import WRITTEN_HERE, generate
from lakehouse.layout import source_prefix
from lakehouse.readers import read_file
from lakehouse.resources.landing import LocalLandingZone

START = dt.date(2026, 3, 1)


def fingerprint(zone):
    return {o.key: o.etag for o in zone.list("retail/")}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = (LocalLandingZone(f"file://{tmp_path / n}") for n in "abc")
    generate(a, days=3, start=START, seed=7, dirty=True)
    generate(b, days=3, start=START, seed=7, dirty=True)
    generate(c, days=3, start=START, seed=8, dirty=True)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(c)


def test_clean_data_has_the_real_world_quirks(tmp_path):
    zone = LocalLandingZone(f"file://{tmp_path}")
    report = generate(zone, days=7, start=START, seed=1)
    keys = report.files
    assert {k.rsplit("/", 2)[0] + "/" for k in keys} == {source_prefix(s) for s in WRITTEN_HERE}
    assert len({k.rsplit("/", 2)[1] for k in keys}) == 7
    assert report.defects == []
    exts = {k.rsplit("/", 1)[1].split(".", 1)[1] for k in keys}
    assert {"csv", "csv.gz", "txt", "parquet", "ndjson.gz", "json"} <= exts
    orders = [read_file(k, zone.read(k)).table for k in keys if "/orders/" in k]
    channels = set().union(*(set(t.column("channel").to_pylist()) for t in orders))
    assert any(c != c.strip() for c in channels) and any(c.strip().isupper() for c in channels)
    prices = set().union(*(set(t.column("unit_price").to_pylist()) for t in orders))
    assert any("," in p for p in prices) and any("." in p for p in prices)
    dates = [d for t in orders for d in t.column("order_date").to_pylist()]
    assert all(len(d) == 10 and d[2] == "/" for d in dates)
    assert 1150 * 7 <= report.rows["orders"] <= 1350 * 7
    assert report.rows["customers"] == 500 * 7 and report.rows["products"] == 200 * 7
    first_customers = zone.read(next(k for k in keys if "/customers/" in k))
    assert first_customers.startswith(b"\xef\xbb\xbf") and b"\r\n" in first_customers


def test_dirty_defects_are_injected_in_the_reported_counts(tmp_path):
    zone = LocalLandingZone(f"file://{tmp_path}")
    report = generate(zone, days=7, start=START, seed=3, dirty=True)
    counts = report.defect_counts()
    for file_defect in ("extra_column", "renamed_header", "empty_file", "truncated_gzip", "unsupported_format"):
        assert counts[file_defect] == 1
    for row_defect in ("unparseable_order_date", "null_order_id", "duplicate_order_id", "unknown_customer_id",
                       "unknown_product_id", "negative_qty", "bad_email", "null_customer_id",
                       "duplicate_customer_id"):
        assert counts[row_defect] > 0
    # Check a few counts against the files themselves.
    readable = [k for k in report.files if "/orders/" in k and not k.endswith((".xlsx", "_retry.csv", "_SUCCESS"))]
    tables = [read_file(k, zone.read(k)).table for k in readable]
    null_ids = sum(pc.sum(pc.equal(t["order_id"], "")).as_py() or 0 for t in tables)
    negative = sum(pc.sum(pc.starts_with(t["qty"], "-")).as_py() or 0 for t in tables)
    ids = [i for t in tables for i in t["order_id"].to_pylist() if i]
    assert null_ids == counts["null_order_id"]
    assert negative == counts["negative_qty"]
    assert len(ids) - len(set(ids)) == counts["duplicate_order_id"] + counts["resent_order"] + counts["corrected_order"]
    # Upstream retries and fixes on later days, odd names, a day with no reference data, stray keys.
    for cross_day in ("resent_order", "corrected_order", "resent_event", "odd_file_name", "ignored_key"):
        assert counts[cross_day] > 0, cross_day
    assert counts["day_without_reference_files"] == 1 and counts["late_customer_order"] == 2
    no_reference = next(d.ingest_date for d in report.defects if d.defect == "day_without_reference_files")
    assert not [k for k in report.files if f"ingest_date={no_reference}" in k and "/customers/" in k]
    emails = [e for k in report.files if "/customers/" in k for e in read_file(k, zone.read(k)).table["email"].to_pylist()]
    assert sum(" at " in e for e in emails) == counts["bad_email"]
    assert zone.read(next(d.key for d in report.defects if d.defect == "empty_file")) == b""
    digest = hashlib.md5(zone.read(report.files[0])).hexdigest()
    assert next(zone.list(report.files[0])).etag == digest
