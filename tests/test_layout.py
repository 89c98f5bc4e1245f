import dataclasses
import datetime as dt
import re
import unicodedata

import pytest

from lakehouse.layout import KeyOutsideLayout, check_key, parse_key, partition_prefix, shown, storable, whereabouts
from lakehouse.resources.landing import LocalLandingZone

PREFIX = "retail/orders/ingest_date=2026-03-01/"
NFC, NFD = unicodedata.normalize("NFC", "órdenes.csv"), unicodedata.normalize("NFD", "órdenes.csv")
NAMES = [
    "orders_web_20260301.csv.gz", "orders 2026 (copy).csv", "a+b.csv", "R&D.csv", "O'Brien.csv", "k=v.csv",
    "a;b.csv", "a,b.csv", "user@host.csv", "100% (final) [v2] {x} ~ ! $ * #.csv", NFC, NFD, "🛒 orders.csv",
    "a..b.csv", "-dash.csv", "x" * 251 + ".csv", "é" * 125 + "x.csv",  # 255 bytes in UTF-8
]


def test_parse_valid_key():
    key = parse_key("retail/orders/ingest_date=2026-03-01/orders_web_20260301.csv.gz")
    assert (key.source, key.ingest_date, key.file_name) == ("orders", dt.date(2026, 3, 1), "orders_web_20260301.csv.gz")
    assert key.key == "retail/orders/ingest_date=2026-03-01/orders_web_20260301.csv.gz"
    assert partition_prefix("events", dt.date(2026, 3, 1)) == "retail/events/ingest_date=2026-03-01/"


@pytest.mark.parametrize("name", NAMES)
def test_any_s3_key_segment_is_a_file_name_kept_exactly(name):
    key = parse_key(PREFIX + name)
    assert key.file_name == name and key.key == PREFIX + name  # never normalised
    assert NFC != NFD and parse_key(PREFIX + NFD).file_name != parse_key(PREFIX + NFC).file_name


@pytest.mark.parametrize(
    "key, why",
    [
        ("wholesale/orders/ingest_date=2026-03-01/a.csv", "outside retail/"),
        ("retail/invoices/ingest_date=2026-03-01/a.csv", "unknown source"),
        ("retail/orders/date=2026-03-01/a.csv", "ingest_date=YYYY-MM-DD"),
        ("retail/orders/ingest_date=2026-02-30/a.csv", "not a calendar date"),
        (PREFIX + "../../etc/passwd", "'..' path segment"),
        (PREFIX + "..", "'..' path segment"),
        ("retail/orders/./ingest_date=2026-03-01/a.csv", "'.' path segment"),
        ("retail/orders//ingest_date=2026-03-01/a.csv", "empty path segment"),
        (PREFIX, "empty path segment"),
        ("/" + PREFIX + "a.csv", "absolute"),
        (PREFIX + "a\\b.csv", "backslash"),
        (PREFIX + "..\\..\\x.csv", "backslash"),
        (PREFIX + "a\x00.csv", "control character U+0000"),
        (PREFIX + "a\tb.csv", "control character U+0009"),
        (PREFIX + "a\nb.csv", "control character U+000A"),
        (PREFIX + "a\x1f.csv", "control character U+001F"),
        (PREFIX + "a\x7f.csv", "control character U+007F"),
        (PREFIX + "x" * 256, "256 bytes in UTF-8; at most 255"),
        (PREFIX + "é" * 128, "256 bytes in UTF-8; at most 255"),
        ("retail/orders/" + "/".join(["d" * 210] * 5) + "/a.csv", "bytes in UTF-8; at most 1024"),
        (PREFIX + "a\udcff.csv", "not valid UTF-8"),  # a local file name that is not UTF-8
        (PREFIX + ".DS_Store", "hidden file"),
        (PREFIX + ".orders.csv.tmp", "hidden file"),
        (PREFIX + "..csv", "hidden file"),
        (PREFIX + "_SUCCESS", "marker file"),
        (PREFIX + "_committed_123", "marker file"),
        (PREFIX + "sub/a.csv", "wrong depth"),
        ("retail/orders/a.csv", "wrong depth"),
    ],
)
def test_keys_outside_layout_are_refused_with_a_reason(key, why):
    with pytest.raises(KeyOutsideLayout, match=re.escape(why)):
        parse_key(key)


def test_whereabouts_storable_and_shown():
    assert whereabouts("retail/returns/ingest_date=2026-03-01/x.csv") == ("returns", dt.date(2026, 3, 1))
    assert whereabouts("retail/orders/ingest_date=bad/x.csv") == ("orders", None)
    assert whereabouts("retail/orders/stray.csv") == ("orders", None)
    assert whereabouts("misc/x.csv") == (None, None) and whereabouts("retail/x.csv") == (None, None)
    assert whereabouts("retail/../ingest_date=2026-03-01/x") == (None, None)
    assert storable("a\udcff.csv") == "a\\xff.csv" and storable(NFD) == NFD
    assert shown("a\x01b\n.csv") == "a\\x01b\\x0a.csv" and shown("orders (1).csv") == "orders (1).csv"


def test_the_local_zone_maps_keys_to_paths_only_inside_its_root(tmp_path):
    zone = LocalLandingZone(f"file://{tmp_path / 'landing'}")
    for name in NAMES[:13]:
        zone.put(PREFIX + name, name.encode())
    listed = {o.key: o for o in zone.list(PREFIX)}
    assert set(listed) == {PREFIX + n for n in NAMES[:13]}  # NFC and NFD: two files
    assert all(zone.read(PREFIX + n) == n.encode() for n in NAMES[:13])
    folders, files = zone.list_level("retail/orders/")
    assert folders == ["ingest_date=2026-03-01"] and files == []

    (tmp_path / "secret.txt").write_text("not yours")
    (tmp_path / "landing" / PREFIX / "link.csv").symlink_to(tmp_path / "secret.txt")
    assert PREFIX + "link.csv" not in {o.key for o in zone.list(PREFIX)}  # a link out of the root is not listed
    for key in (PREFIX + "../../../../secret.txt", "/etc/passwd", PREFIX + "link.csv", "retail\\..\\x", ""):
        with pytest.raises(ValueError):
            zone.read(key)
    with pytest.raises(ValueError, match="'..' path segment"):
        zone.put("../outside.csv", b"x")
    assert not (tmp_path / "outside.csv").exists()
    assert list(zone.list("/")) == [] and zone.list_level("../") == ([], [])  # listings stay inside too
    assert check_key(PREFIX + NFD)[-1] == NFD


def test_declared_prefixes_of_any_depth_are_walked_and_everything_else_is_named(tmp_path, monkeypatch):
    """Sources may land under prefixes of their own (landing.prefix): each key maps to the source
    whose prefix it is under; keys anywhere else get the reason a person can act on."""
    import shutil

    import yaml

    from lakehouse import layout
    from lakehouse.contracts import CONTRACTS
    from lakehouse.contracts.declared import SOURCES_DIR, load_declarations
    from lakehouse.sensors.scan import Cursor, Folder, OddFolder, date_folders, scan

    prefixes = {"orders": "shop/eu/orders/", "customers": "crm/", "products": "shop/catalog/", "events": "retail/events/"}
    root = tmp_path / "sources"
    shutil.copytree(SOURCES_DIR, root)
    for source, prefix in prefixes.items():
        path = root / source / "defs.yaml"
        document = yaml.safe_load(path.read_text())
        document["attributes"]["landing"]["prefix"] = prefix
        path.write_text(yaml.safe_dump(document, sort_keys=False))
    for name, contract in load_declarations(root).items():
        monkeypatch.setitem(CONTRACTS, name, contract)
    monkeypatch.setattr(layout, "PREFIXES", layout._prefixes())
    monkeypatch.setattr(layout, "PARENTS", layout._parents())

    day = dt.date(2026, 3, 1)
    assert parse_key("shop/eu/orders/ingest_date=2026-03-01/a.csv") == layout.LandingKey("orders", day, "a.csv")
    assert parse_key("crm/ingest_date=2026-03-01/c.csv").source == "customers"
    assert partition_prefix("products", day) == "shop/catalog/ingest_date=2026-03-01/"
    refused = {
        "retail/orders/ingest_date=2026-03-01/a.csv": "retail/orders/ is not where orders lands: its files go under "
                                                      "shop/eu/orders/ (landing.prefix in its defs.yaml)",
        "shop/us/orders/ingest_date=2026-03-01/a.csv": "unknown source 'us': shop/us/ is no declared",
        "shop/eu/ingest_date=2026-03-01/a.csv": "a date folder directly under shop/eu/, which is no source's prefix",
        "shop/x.csv": "not in a source folder",
        "misc/x.csv": "outside crm/ and retail/ and shop/",
        "shop/eu/orders/a.csv": "wrong depth",
        "crm/ingest_date=2026-03-01/deep/c.csv": "wrong depth",
    }
    for key, why in refused.items():
        with pytest.raises(KeyOutsideLayout, match=re.escape(why)):
            parse_key(key)
    assert whereabouts("shop/us/orders/ingest_date=2026-03-01/a.csv") == ("us", None)
    assert whereabouts("shop/us/ingest_date=2026-03-01/a.csv") == ("us", day)
    assert whereabouts("shop/eu/ingest_date=2026-03-01/a.csv") == (None, None)
    assert whereabouts("retail/orders/ingest_date=2026-03-01/a.csv") == ("orders", day)  # an old place: the owner sees it
    assert whereabouts("shop/eu/orders/ingest_date=2026-03-01/x/a.csv") == ("orders", day)
    assert whereabouts("crm/stray.csv") == ("customers", None) and whereabouts("shop/x.csv") == (None, None)

    landed = ["shop/eu/orders/ingest_date=2026-03-01/a.csv", "crm/ingest_date=2026-03-01/c.csv",
              "shop/catalog/ingest_date=2026-03-01/p.csv", "retail/events/ingest_date=2026-03-01/e.csv"]
    odd = ["shop/us/ingest_date=2026-03-01/a.csv", "shop/x.csv", "misc/y.csv", "top.csv", "crm/ingest_date=bad/c.csv",
           "retail/orders/ingest_date=2026-03-01/old.csv", "shop/eu/orders/ingest_date=2026-03-01/_SUCCESS",
           "crm/ingest_date=2026-03-01/sub/deep.csv"]
    for key in landed + odd:
        (tmp_path / "landing" / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "landing" / key).write_text("a,b\n1,2\n")
    zone = LocalLandingZone(f"file://{tmp_path / 'landing'}")
    folders, _ = date_folders(zone, day, day)
    assert {f for f in folders if isinstance(f, Folder)} == {Folder(s, day) for s in prefixes}
    assert {f.prefix for f in folders if isinstance(f, OddFolder)} == {"shop/us/", "misc/", "crm/ingest_date=bad/",
                                                                        "retail/orders/"}
    # one tick that walks every folder: each file is loaded or ignored with its reason, none is lost
    found = scan(zone, day, day, lookback_days=1, sweep=100, cursor=Cursor())
    assert sorted(obj.key for _, obj in found.objects) == sorted(landed)
    ignored = {i.key: i.reason for i in found.ignored}
    assert sorted(ignored) == sorted(odd)
    assert "is not where orders lands" in ignored["retail/orders/ingest_date=2026-03-01/old.csv"]
    assert "marker file" in ignored["shop/eu/orders/ingest_date=2026-03-01/_SUCCESS"]
    assert "wrong depth" in ignored["crm/ingest_date=2026-03-01/sub/deep.csv"]
    assert ignored["top.csv"].startswith("outside crm/ and retail/ and shop/")
