"""Bronze on real Iceberg tables (SQLite catalog, local warehouse) from a local landing zone."""

import contextlib
import datetime as dt
import gzip
import os

import dagster as dg
import pytest
from pyiceberg.expressions import EqualTo

from lakehouse.contracts import contract_for
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.ingest import load_bronze
from lakehouse.resources.landing import LocalLandingZone
from lakehouse.wiring import build_definitions

DAY1, DAY2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
HEADER = "order_id,order_date,customer_id,product_id,qty,unit_price,channel\n"


def orders_key(day, name):
    return f"retail/orders/ingest_date={day}/{name}"


@pytest.fixture
def lake(lakehouse_env):
    return LocalLandingZone(lakehouse_env.landing_uri), TableStore(catalog_from_settings(lakehouse_env))


def rows(store, table, day=None):
    where = EqualTo("_ingest_date", day.isoformat()) if day else None
    data = store.read(table, where) if where is not None else store.read(table)
    return sorted(data.to_pylist(), key=lambda r: (str(r.get("_ingest_date")), r.get("_source_file") or "", r.get("_row_number") or 0))


def test_partition_loads_every_readable_file_and_rejects_the_rest(lake):
    zone, store = lake
    zone.put(orders_key(DAY1, "a.csv"), (HEADER + "O1,01/03/2026,C1,P1,2,\"9,99\", Web \n").encode())
    zone.put(orders_key(DAY1, "b.txt.gz"), gzip.compress((HEADER.replace(",", ";") + "O2;28/02/2026;C2;P2;1;5,00;store\n").encode()))
    zone.put(orders_key(DAY1, "broken.csv.gz"), gzip.compress(HEADER.encode() * 200)[:-40])
    zone.put(orders_key(DAY1, "c.xlsx"), b"PK\x03\x04" + bytes(10))
    zone.put(orders_key(DAY1, ".DS_Store"), b"junk")

    load = load_bronze(zone, store, contract_for("orders"), DAY1, "run-1")

    bronze = rows(store, "bronze.orders")
    assert [(r["order_id"], r["unit_price"], r["channel"]) for r in bronze] == [("O1", "9,99", " Web "), ("O2", "5,00", "store")]
    assert {r["_source_file"] for r in bronze} == {orders_key(DAY1, "a.csv"), orders_key(DAY1, "b.txt.gz")}
    assert all(r["_ingest_date"] == DAY1 and r["_row_number"] == 1 and r["_ingested_at"] for r in bronze)

    rejected = {r["key"]: r["reason"] for r in store.read("bronze.rejected_files").to_pylist()}
    assert set(rejected) == {orders_key(DAY1, "broken.csv.gz"), orders_key(DAY1, "c.xlsx")}
    assert rejected[orders_key(DAY1, "broken.csv.gz")].startswith("truncated gzip")

    log = {r["key"]: r for r in store.read("ops.ingestion_log").to_pylist()}
    assert {k: r["status"] for k, r in log.items()} == {
        orders_key(DAY1, "a.csv"): "INGESTED", orders_key(DAY1, "b.txt.gz"): "INGESTED",
        orders_key(DAY1, "broken.csv.gz"): "REJECTED", orders_key(DAY1, "c.xlsx"): "REJECTED",
    }
    assert log[orders_key(DAY1, "a.csv")]["rows"] == 1 and log[orders_key(DAY1, "a.csv")]["run_id"] == "run-1"
    assert log[orders_key(DAY1, "c.xlsx")]["reason"].startswith("unsupported format")
    assert all(len(r["etag"]) == 32 and r["size"] > 0 for r in log.values())
    assert load.ignored and load.ignored[0][0].endswith(".DS_Store")


def test_new_columns_evolve_the_schema_and_missing_ones_stay_null(lake):
    zone, store = lake
    zone.put(orders_key(DAY1, "a.csv"), (HEADER + "O1,01/03/2026,C1,P1,2,9.99,web\n").encode())
    load_bronze(zone, store, contract_for("orders"), DAY1, "run-1")
    renamed = HEADER.replace("customer_id", "Cust ID").rstrip("\n") + ",Coupon Code\n"
    zone.put(orders_key(DAY2, "b.csv"), (renamed + "O2,02/03/2026,C2,P2,1,5.00,web,SAVE10\n").encode())

    load = load_bronze(zone, store, contract_for("orders"), DAY2, "run-2")

    assert load.bronze.added_columns == ["cust_id", "coupon_code"]
    assert load.batch.missing_columns() == {"customer_id": [orders_key(DAY2, "b.csv")]}
    assert load.batch.extra_columns() == {"cust_id": [orders_key(DAY2, "b.csv")], "coupon_code": [orders_key(DAY2, "b.csv")]}
    columns = [f.name for f in store.load("bronze.orders").schema().fields]
    assert {"coupon_code", "cust_id", "_source_file", "_row_number"} <= set(columns)
    day1, day2 = rows(store, "bronze.orders", DAY1)[0], rows(store, "bronze.orders", DAY2)[0]
    assert day1["coupon_code"] is None and day1["customer_id"] == "C1"
    assert day2["coupon_code"] == "SAVE10" and day2["customer_id"] is None and day2["cust_id"] == "C2"


def test_rerun_replaces_only_its_partition_atomically(lake):
    zone, store = lake
    zone.put(orders_key(DAY1, "a.csv"), (HEADER + "O1,01/03/2026,C1,P1,2,9.99,web\n").encode())
    zone.put(orders_key(DAY2, "b.csv"), (HEADER + "O2,02/03/2026,C2,P2,1,5.00,web\nO3,02/03/2026,C3,P3,1,5.00,web\n").encode())
    orders = contract_for("orders")
    load_bronze(zone, store, orders, DAY1, "run-1")
    load_bronze(zone, store, orders, DAY2, "run-2")
    day1_before = rows(store, "bronze.orders", DAY1)
    first_seen = {r["key"]: r["first_seen"] for r in store.read("ops.ingestion_log").to_pylist()}
    snapshots_before = len(store.load("bronze.orders").snapshots())

    for run in ("run-3", "run-4"):
        load = load_bronze(zone, store, orders, DAY2, run)

    assert [r["order_id"] for r in rows(store, "bronze.orders", DAY2)] == ["O2", "O3"]  # no duplicates
    assert rows(store, "bronze.orders", DAY1) == day1_before  # other partition untouched
    table = store.load("bronze.orders")
    new = table.snapshots()[snapshots_before:]
    assert new and all(s.summary["dagster.run_id"] in ("run-3", "run-4") for s in new)
    assert all(s.summary["dagster.partition_key"] == "2026-03-02" for s in new)
    assert table.current_snapshot().snapshot_id == load.bronze.snapshot_id
    log = store.read("ops.ingestion_log").to_pylist()
    assert len(log) == 2 and {r["key"]: r["first_seen"] for r in log} == first_seen
    assert {r["run_id"] for r in log} == {"run-1", "run-4"}

    # A file withdrawn from the landing zone disappears from its partition on rerun.
    (zone.root / orders_key(DAY2, "b.csv")).unlink()
    zone.put(orders_key(DAY2, "c.csv"), (HEADER + "O9,02/03/2026,C9,P9,1,1.00,web\n").encode())
    load_bronze(zone, store, orders, DAY2, "run-5")
    assert [r["order_id"] for r in rows(store, "bronze.orders", DAY2)] == ["O9"]


def test_empty_partition_writes_nothing_and_fails_nothing(lake):
    zone, store = lake
    load = load_bronze(zone, store, contract_for("events"), DAY1, "run-1")
    assert load.batch.table.num_rows == 0 and load.batch.files == []
    assert store.read("bronze.events").num_rows == 0


def test_file_without_any_contract_column_is_rejected(lake):
    zone, store = lake
    zone.put(f"retail/products/ingest_date={DAY1}/p.csv", b"sku,title\nX,Y\n")
    load = load_bronze(zone, store, contract_for("products"), DAY1, "run-1")
    assert load.batch.rejected[0].reason.startswith("none of the products columns")


def test_a_file_whose_header_has_only_aliases_of_contract_columns_is_read(lake):
    """An alias is a contract column's other name: a file with no other column is read (its rows
    then lack the required order id, which silver quarantines), not rejected as foreign."""
    zone, store = lake
    zone.put(orders_key(DAY2, "aliases.csv"), b"cust_id,sku\nC1,P1\n")
    load = load_bronze(zone, store, contract_for("orders"), DAY2, "run-1")
    assert load.batch.rejected == [] and load.batch.table.num_rows == 1


def test_bronze_asset_reports_metadata_through_dagster(lakehouse_env):
    zone = LocalLandingZone(lakehouse_env.landing_uri)
    renamed = HEADER.replace("customer_id", "cust_id")
    zone.put(orders_key(DAY1, "a.csv"), (renamed + "O1,01/03/2026,C1,P1,2,9.99,web\n1,2\n").encode())
    zone.put(orders_key(DAY1, "empty.csv"), b"")
    zone.put(orders_key(DAY1, "b.csv"), (HEADER + "O2,01/03/2026,C1,P1,1,9.99,Müller\n").encode("latin-1"))
    defs = build_definitions(lakehouse_env)
    asset = defs.resolve_assets_def(dg.AssetKey(["bronze", "orders"]))
    result = dg.materialize([asset], partition_key=DAY1.isoformat())
    meta = next(m for m in result.asset_materializations_for_node("bronze") if m.asset_key.path == ["bronze", "orders"]).metadata
    assert meta["dagster/row_count"].value == 3
    assert meta["files_rejected"].value == 1 and meta["malformed_rows"].value == 1
    # Each file's outcome, with the encoding it was read in: Latin-1 undeclared is said to be a guess.
    outcomes = {line.split(" | ")[0].strip("| `"): line.split(" | ")[1:]
                for line in meta["file_outcomes"].value.splitlines()[2:]}
    assert outcomes[orders_key(DAY1, "a.csv")][:5] == ["INGESTED", "2", "1", "csv", "utf-8"]
    assert outcomes[orders_key(DAY1, "b.csv")][:5] == ["INGESTED", "1", "0", "csv", "windows-1252 (guessed: not UTF-8)"]
    assert outcomes[orders_key(DAY1, "empty.csv")][:5] == ["REJECTED", "0", "0", "", ""]
    assert meta["missing_columns"].value == {"customer_id": [orders_key(DAY1, "a.csv")]}
    assert meta["dagster/table_name"].value == "lakehouse.bronze.orders"
    assert "cust_id" in [c.name for c in meta["dagster/column_schema"].schema.columns]
    table = TableStore(catalog_from_settings(lakehouse_env)).load("bronze.orders")
    assert table.current_snapshot().summary["dagster.run_id"] == result.run_id


def test_a_file_whose_lineage_text_passes_two_gib_is_read_whole(tmp_path):
    """50M rows of a 48-byte file key are 2.4 GB of `_source_file` text, more than one Arrow string
    array holds (it failed with negative offsets): here 2.2M rows of a 1,000-byte key (a long S3
    key), read whole and valid."""
    import pyarrow as pa

    from lakehouse.layout import LandingObject
    from lakehouse.transforms.bronze import ingest_partition

    rows = 2_200_000
    key = orders_key(DAY1, "x" * 950 + ".csv")
    data = ("order_id\n" + "".join(f"{i}\n" for i in range(rows))).encode()
    obj = LandingObject(key, len(data), "etag", dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc))
    landed = tmp_path / "landed.csv"
    landed.write_bytes(data)
    batch = ingest_partition(contract_for("orders"), DAY1, [obj], lambda _: contextlib.nullcontext(str(landed)),
                             obj.last_modified)
    text, seen, last = 0, 0, None
    for piece in batch.slices(250_000):  # as the write takes them (a slice at a time: little memory)
        piece.validate(full=True)
        assert piece["_source_file"].unique().to_pylist() == [key]
        text += pa.compute.sum(pa.compute.binary_length(piece["_source_file"])).as_py()
        seen, last = seen + piece.num_rows, piece.slice(piece.num_rows - 1).to_pylist()[0]
    assert seen == batch.num_rows == rows and text > 2**31
    assert last["order_id"] == str(rows - 1) and last["_row_number"] == rows


def test_a_range_of_spilled_files_loads_every_row_with_its_lineage_and_leaves_no_spill(lake, monkeypatch):
    """Every file spilled to local Parquet (as a file of 64 MB or more is) and written in slices of
    2 rows: the rows equal the files' text read with the csv module, file by file, with lineage."""
    import csv
    import io

    from lakehouse import ingest

    zone, store = lake
    texts = {
        orders_key(DAY1, "a.csv"): HEADER + "".join(f"A{i},01/03/2026,C{i},P1,{i},9.99,web\n" for i in range(5)),
        orders_key(DAY1, "b.csv"): HEADER.rstrip("\n") + ",coupon\n" + "B1,01/03/2026,C1,P2,1,5.00,store,SAVE\n",
        orders_key(DAY2, "c.csv"): HEADER + "C1,02/03/2026,C9,P3,2,1.00,web\nbroken,line\nC2,02/03/2026,C8,P3,3,2.00,web\n",
    }
    for key, text in texts.items():
        zone.put(key, text.encode())
    spilled = []
    spiller = ingest._spiller

    def watched(folder):
        keep = spiller(folder)
        return lambda result: spilled.append(keep(result)) or spilled[-1]
    monkeypatch.setattr(ingest, "SPILL_BYTES", 0)
    monkeypatch.setattr(ingest, "SLICE_ROWS", 2)
    monkeypatch.setattr(ingest, "_spiller", watched)

    load = load_bronze(zone, store, contract_for("orders"), [DAY1, DAY2], "run-1")

    assert len(spilled) == 3 and all(isinstance(p, str) for p in spilled)
    assert not any(os.path.exists(p) for p in spilled)  # the spill went with the load
    assert load.batch.num_rows == 9 and load.bronze.published
    expected = []
    for key, text in texts.items():
        day = DAY1 if "2026-03-01" in key else DAY2
        records = list(csv.reader(io.StringIO(text)))
        header = records[0]
        for number, record in enumerate(records[1:], start=1):
            good = len(record) == len(header)
            values = dict(zip(header, record)) if good else {}
            expected.append({"_source_file": key, "_ingest_date": day, "_row_number": number,
                             "order_id": values.get("order_id"), "qty": values.get("qty"),
                             "coupon": values.get("coupon"), "_raw_record": None if good else ",".join(record)})
    got = [{k: r[k] for k in ("_source_file", "_ingest_date", "_row_number", "order_id", "qty", "coupon",
                              "_raw_record")} for r in rows(store, "bronze.orders")]
    assert got == sorted(expected, key=lambda r: (str(r["_ingest_date"]), r["_source_file"], r["_row_number"]))
    assert all(r["_ingested_at"] for r in rows(store, "bronze.orders"))


def test_read_rows_stay_in_memory_up_to_the_spill_limit_in_all_then_wait_in_parquet(tmp_path, monkeypatch):
    """The limit counts every file kept so far: a day of many files under the limit each is still
    held one file at a time once their sum passes it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lakehouse import ingest

    from lakehouse.readers import read_file

    text = ("order_id\n" + "".join(f"O{i}\n" for i in range(1000))).encode()
    table = read_file("o.csv", text).table
    monkeypatch.setattr(ingest, "SPILL_BYTES", int(table.nbytes * 2.5))
    keep = ingest._spiller(str(tmp_path))
    kept = [keep(read_file("o.csv", text)) for _ in range(4)]
    assert kept[0].equals(table) and kept[1].equals(table) and all(isinstance(k, str) for k in kept[2:])
    assert pq.read_table(kept[2]).equals(table) and kept[2] != kept[3]


def test_a_file_found_unreadable_part_way_leaves_no_rows_and_no_spill(tmp_path, monkeypatch):
    """Its slices so far (in memory or spilled) are dropped, the file is rejected with the reason,
    and the limit still counts only what was kept."""
    import pyarrow as pa

    from lakehouse import ingest
    from lakehouse.readers import ReadResult, UnreadableFile, read_file

    good = read_file("o.csv", ("order_id\n" + "".join(f"O{i}\n" for i in range(1000))).encode())

    def breaking(result):
        def slices():
            yield from result.batches()
            raise UnreadableFile("not readable as delimited text: broken at byte 9000")
        return ReadResult(result.data_columns, "csv", "utf-8", ",", slices())

    monkeypatch.setattr(ingest, "SPILL_BYTES", int(good.table.nbytes * 1.5))
    folder = tmp_path / "spill"
    folder.mkdir()
    keep = ingest._spiller(str(folder))
    for spilling in (False, True):  # the first fits the limit; with two slices the second spills
        result = read_file("o.csv", ("order_id\n" + "".join(f"O{i}\n" for i in range(1000))).encode())
        twice = ReadResult(result.data_columns, "csv", "utf-8", ",", iter([result.table, result.table]))
        with pytest.raises(UnreadableFile, match="broken at byte 9000"):
            keep(breaking(twice if spilling else result))
        assert list(folder.iterdir()) == []
    assert isinstance(keep(good), pa.Table)  # nothing of the broken files counted against the limit

    zone = LocalLandingZone(f"file://{tmp_path / 'landing'}")
    zone.put(orders_key(DAY1, "a.csv"), HEADER.encode() + b"A1,01/03/2026,C1,P1,1,9.99,web\n")
    zone.put(orders_key(DAY1, "b.csv"), HEADER.encode() + b"B1,01/03/2026,C1,P1,1,9.99,web\n")
    from lakehouse.transforms.bronze import REJECTED, ingest_partition

    objects = list(zone.list(orders_key(DAY1, "")))
    real, calls = ingest._spiller(str(folder)), []

    def keep(result):  # the second file (b.csv, in key order) breaks part-way
        calls.append(result)
        return real(breaking(result) if len(calls) == 2 else result)
    batch = ingest_partition(contract_for("orders"), DAY1, objects, lambda key: zone.fetch(key, str(folder)),
                             dt.datetime.now(dt.timezone.utc), keep)
    assert [(f.obj.key.rsplit("/", 1)[1], f.status, f.reason) for f in batch.files] == [
        ("a.csv", "INGESTED", None), ("b.csv", REJECTED, "not readable as delimited text: broken at byte 9000")]
    assert batch.table["order_id"].to_pylist() == ["A1"] and list(folder.iterdir()) == []
