"""Landing keys as they come: any file name loads; unsafe or off-layout keys are recorded as IGNORED.

Real parts only: a local landing directory and moto's S3 server (tests/conftest.py).
"""

import datetime as dt
import os
import unicodedata

import boto3
import dagster as dg
import pytest

from lakehouse.contracts import CONTRACTS
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.ingest import load_bronze
from lakehouse.resources.landing import LocalLandingZone, S3LandingZone, open_landing_zone
from lakehouse.sensors.landing import evaluate
from lakehouse.sensors.scan import Cursor
from lakehouse.settings import load_settings
from lakehouse.summary import bronze_summary, ignored_files, render_ignored, render_summary
from lakehouse.tables import INGESTION_LOG

NOW = dt.datetime(2026, 3, 20, 12, tzinfo=dt.timezone.utc)
DAY = dt.date(2026, 3, 19)
PREFIX = f"retail/orders/ingest_date={DAY}/"
HEADER = "order_id,order_date,customer_id,product_id,qty,unit_price,channel\n"
NFC, NFD = unicodedata.normalize("NFC", "órdenes.csv"), unicodedata.normalize("NFD", "órdenes.csv")
NAMES = ["orders 2026 (copy).csv", "a+b.csv", "R&D.csv", "O'Brien.csv", "k=v.csv", "a;b.csv", "x,y.csv",
         "user@host.csv", NFC, NFD, "🛒 cart.csv", "Zürich – ventes (été).csv"]


def orders(first: int, n: int = 2) -> bytes:
    rows = "".join(f"O{i:05d},18/03/2026,C000001,P00001,1,9.99,web\n" for i in range(first, first + n))
    return (HEADER + rows).encode()


def store_of(settings) -> TableStore:
    return TableStore(catalog_from_settings(settings))


def tick(settings, cursor=None, now=NOW):
    return evaluate(open_landing_zone(settings.landing_uri), store_of(settings), settings, cursor or Cursor(), now)


def log(settings, status=None) -> list[dict]:
    rows = [r for r in store_of(settings).read(INGESTION_LOG.identifier).to_pylist()
            if status is None or r["status"] == status]
    return sorted(rows, key=lambda r: (r["key"], r["first_seen"]))


@pytest.fixture(params=["local", "s3"])
def landing(request, lakehouse_env, monkeypatch):
    """Settings whose landing zone is a local directory, or a bucket on the moto server."""
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        monkeypatch.setenv("LAKEHOUSE_LANDING_URI", f"s3://{bucket}/landing")
    settings = load_settings()
    zone = open_landing_zone(settings.landing_uri)
    assert isinstance(zone, S3LandingZone if request.param == "s3" else LocalLandingZone)
    return settings, zone


def test_any_file_name_lands_loads_and_is_traced_to_its_exact_key(landing):
    settings, zone = landing
    keys = [PREFIX + name for name in NAMES]
    for i, key in enumerate(keys):
        zone.put(key, orders(first=i * 10))
    assert {o.key for o in zone.list(PREFIX)} == set(keys)  # NFC and NFD are two objects
    assert all(zone.read(k) == orders(first=i * 10) for i, k in enumerate(keys))

    first = tick(settings)
    (request,) = first.requests
    assert request.tags["lakehouse/files"] == str(len(keys)) and first.ignored == []
    assert len(request.run_key) < 64 and request.run_key.startswith(f"landing:{DAY}:")
    assert all(len(v) < 64 for v in request.tags.values())
    assert sorted(o.metadata["key"].value for o in first.observations) == sorted(keys)
    assert [r["key"] for r in log(settings, "LANDED")] == sorted(keys)

    store = store_of(settings)
    load = load_bronze(zone, store, CONTRACTS["orders"], DAY, "run-1")
    assert load.ignored == [] and load.bronze.rows == 2 * len(keys)
    bronze = store.read("bronze.orders").to_pylist()
    assert {r["_source_file"] for r in bronze} == set(keys)
    by_file = {k: sorted(r["order_id"] for r in bronze if r["_source_file"] == k) for k in keys}
    assert by_file[PREFIX + NFC] == ["O00080", "O00081"] and by_file[PREFIX + NFD] == ["O00090", "O00091"]
    assert {r["key"]: (r["status"], r["rows"]) for r in log(settings)} == {k: ("INGESTED", 2) for k in keys}
    assert [(p.source, p.files, p.bronze_rows) for p in bronze_summary(store)] == [("orders", len(keys), 2 * len(keys))]
    assert tick(settings, first.cursor, NOW + dt.timedelta(minutes=1)).requests == []  # unchanged: no rerun


# key under the landing root -> (reason fragment, source, ingest date) recorded for it
REFUSED = {
    PREFIX + "../../../etc/passwd": ("'..' path segment", "orders", DAY),
    PREFIX + "./x.csv": ("'.' path segment", "orders", DAY),
    PREFIX + "bad\x01name.csv": ("control character U+0001", "orders", DAY),
    PREFIX + "tab\there.csv": ("control character U+0009", "orders", DAY),
    PREFIX + "a\\b.csv": ("backslash", "orders", DAY),
    PREFIX + "sub/deep.csv": ("wrong depth", "orders", DAY),
    PREFIX + ".DS_Store": ("hidden file", "orders", DAY),
    PREFIX + "_SUCCESS": ("marker file", "orders", DAY),
    "retail/orders//x.csv": ("empty path segment", "orders", None),
    "retail/orders/ingest_date=2026-02-30/x.csv": ("not a calendar date", "orders", None),
    "retail/orders/ingest_date=yesterday/x.csv": ("is not ingest_date=YYYY-MM-DD", "orders", None),
    "retail/orders/ingest_date=2019-05-01/x.csv": ("LAKEHOUSE_START_DATE", "orders", dt.date(2019, 5, 1)),
    "retail/orders/ingest_date=2099-01-01/x.csv": ("after today", "orders", dt.date(2099, 1, 1)),
    "retail/returns/ingest_date=2026-03-19/x.csv": ("unknown source 'returns'", "returns", DAY),
    "retail/orders/stray.csv": ("not in an ingest_date=YYYY-MM-DD folder", "orders", None),
    "retail/x.csv": ("not in a source folder", None, None),
    "misc/x.csv": ("outside retail/", None, None),
    "x.csv": ("outside retail/", None, None),
}


def test_refused_and_off_layout_keys_are_recorded_ignored_once_with_the_reason(lakehouse_env, s3_bucket, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_LANDING_URI", f"s3://{s3_bucket}/landing")
    settings = load_settings()
    s3, good = boto3.client("s3"), PREFIX + "good.csv"
    for i, key in enumerate([good, *REFUSED]):
        s3.put_object(Bucket=s3_bucket, Key=f"landing/{key}", Body=orders(first=i))

    first = tick(settings)
    (request,) = first.requests
    assert request.partition_key == DAY.isoformat() and request.tags["lakehouse/files"] == "1"
    assert [r["key"] for r in log(settings, "LANDED")] == [good]
    recorded = {r["key"]: r for r in log(settings, "IGNORED")}
    assert set(recorded) == set(REFUSED) == {i.key for i in first.ignored}
    for key, (why, source, day) in REFUSED.items():
        row = recorded[key]
        assert why in row["reason"], (key, row["reason"])
        assert (row["source"], row["ingest_date"]) == (source, day), key
        assert row["etag"] and row["size"] > 0 and row["first_seen"] == NOW

    # In the UI: an observation on the raw asset of the source, when the key names a known one.
    ignored_obs = {o.metadata["key"].value: o for o in first.observations if o.metadata["status"].value == "IGNORED"}
    assert set(ignored_obs) == {k for k, (_, source, _) in REFUSED.items() if source == "orders"}
    dot_dot = ignored_obs[PREFIX + "../../../etc/passwd"]
    assert dot_dot.asset_key == dg.AssetKey(["raw", "orders"]) and dot_dot.partition == DAY.isoformat()
    assert "'..' path segment" in dot_dot.metadata["reason"].value
    assert ignored_obs["retail/orders/ingest_date=2099-01-01/x.csv"].partition is None  # not a partition

    # Counted in the summary `lakehouse run` and `lakehouse status` print, control characters escaped.
    store = store_of(settings)
    assert len(ignored_files(store)) == len(REFUSED)
    text = render_ignored(store)
    assert text.startswith(f"Ignored keys ({len(REFUSED)}), not loaded") and "bad\\x01name.csv" in text
    assert "\x01" not in text and "\t" not in text
    assert text in render_summary(store, dg.DagsterInstance.ephemeral())

    # Not recorded again on later ticks; a new version (ETag) of an ignored key is, once.
    again = tick(settings, first.cursor, NOW + dt.timedelta(minutes=1))
    assert again.ignored == [] and not [o for o in again.observations if o.metadata["status"].value == "IGNORED"]
    s3.put_object(Bucket=s3_bucket, Key=f"landing/{PREFIX}_SUCCESS", Body=b"changed")
    changed = tick(settings, again.cursor, NOW + dt.timedelta(minutes=2))
    assert [i.key for i in changed.ignored] == [PREFIX + "_SUCCESS"]
    assert tick(settings, changed.cursor, NOW + dt.timedelta(minutes=3)).ignored == []
    assert len(log(settings, "IGNORED")) == len(REFUSED) + 1

    # Bronze loads the good file and leaves the sensor's IGNORED rows as they are.
    load = load_bronze(open_landing_zone(settings.landing_uri), store, CONTRACTS["orders"], DAY, "run-1")
    assert load.bronze.rows == 2 and {r["_source_file"] for r in store.read("bronze.orders").to_pylist()} == {good}
    assert {k for k, _ in load.ignored} == {k for k, (_, _, d) in REFUSED.items() if k.startswith(PREFIX)}
    assert [(r["key"], r["status"]) for r in log(settings) if r["status"] != "IGNORED"] == [(good, "INGESTED")]
    assert len(log(settings, "IGNORED")) == len(REFUSED) + 1


def test_odd_local_file_names_are_refused_not_crashed_on(lakehouse_env):
    """Names a local file system allows but a key must not carry: control characters, a
    backslash, bytes that are not UTF-8. They are recorded like any ignored key."""
    zone = LocalLandingZone(lakehouse_env.landing_uri)
    zone.put(PREFIX + "good one.csv", orders(1))
    folder = os.fsencode(zone.root / PREFIX)
    for name in (b"new\nline.csv", b"back\\slash.csv", b"latin-1 \xe9t\xe9.csv", b"_SUCCESS"):
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(orders(5))

    first = tick(lakehouse_env)
    assert first.requests[0].tags["lakehouse/files"] == "1"
    recorded = {r["key"]: r["reason"] for r in log(lakehouse_env, "IGNORED")}
    assert recorded == {
        PREFIX + "new\nline.csv": "control character U+000A in the key",
        PREFIX + "back\\slash.csv": "backslash in the key",
        PREFIX + "latin-1 \\xe9t\\xe9.csv": "the key is not valid UTF-8",
        PREFIX + "_SUCCESS": "marker file '_SUCCESS' (name starts with '_', like _SUCCESS): not data",
    }
    assert tick(lakehouse_env, first.cursor, NOW + dt.timedelta(minutes=1)).ignored == []
    load = load_bronze(zone, store_of(lakehouse_env), CONTRACTS["orders"], DAY, "run-1")
    assert load.bronze.rows == 2 and len(load.ignored) == 4
    assert "new\\x0aline.csv" in render_ignored(store_of(lakehouse_env))


def test_a_fetched_file_is_the_objects_bytes_on_local_disk_and_a_download_is_removed_after(landing, tmp_path):
    """Bronze reads a landed file from local disk a block at a time: a local zone's own file, an S3
    object downloaded as a stream into the load's scratch folder, removed after, even on an error."""
    _, zone = landing
    key, scratch = PREFIX + NFD, tmp_path / "scratch"
    scratch.mkdir()
    zone.put(key, orders(first=0, n=500))
    with zone.fetch(key, str(scratch)) as path:
        assert open(path, "rb").read() == orders(first=0, n=500)
    with pytest.raises(RuntimeError), zone.fetch(key, str(scratch)) as path:
        raise RuntimeError("the read failed")
    assert os.path.exists(path) == isinstance(zone, LocalLandingZone) and list(scratch.iterdir()) == []
