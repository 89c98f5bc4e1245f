"""A commit's cost must not be dominated by the table's history: PyIceberg's metadata replays are
cached, and manifests are merged, so years of daily commits do not each copy and open all of it."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from pyiceberg.expressions import EqualTo, In
from pyiceberg.serializers import FromByteStream
from pyiceberg.table import update as table_update

import lakehouse.iceberg_patches as patches
from lakehouse.iceberg import TABLE_PROPERTIES, TableStore, catalog_from_settings

SCHEMA = pa.schema([("day", pa.string()), ("n", pa.int64())])


@pytest.fixture
def store(lakehouse_env):
    return TableStore(catalog_from_settings(lakehouse_env))


def _rows(day: str, n: int) -> pa.Table:
    return pa.table({"day": [day] * n, "n": list(range(n))}, schema=SCHEMA)


def test_a_commit_replays_the_staged_updates_a_fixed_number_of_times(store, monkeypatch):
    assert patches.applied()
    store.ensure_table("ops.t", SCHEMA)
    for i in range(30):
        store.replace_where("ops.t", _rows(f"d{i}", 3), EqualTo("day", f"d{i}"), {"i": str(i)})
    calls = []
    real = table_update.update_table_metadata
    monkeypatch.setattr(table_update, "update_table_metadata", lambda *a, **k: calls.append(1) or real(*a, **k))
    store.replace_where("ops.t", _rows("d3", 5), EqualTo("day", "d3"), {"i": "again"})
    # Without the cache, PyIceberg 0.12 replays (and deep-copies the metadata) on every read of
    # Transaction.table_metadata: 30+ times for this one overwrite.
    assert 0 < len(calls) <= 8, len(calls)
    table = store.load("ops.t")
    assert table.scan(row_filter=EqualTo("day", "d3")).to_arrow().num_rows == 5
    assert table.scan().to_arrow().num_rows == 29 * 3 + 5
    assert table.current_snapshot().summary["i"] == "again"


def test_the_cached_metadata_is_what_pyiceberg_computes_at_every_stage_of_a_transaction(store):
    """Staged changes, a commit and a refresh each give a new value, equal to PyIceberg's own replay."""
    store.ensure_table("ops.t", SCHEMA)
    table = store.load("ops.t")

    def same(tx):
        cached, replayed = tx.table_metadata, patches._UPDATE(tx._table.metadata, tx._updates)  # PyIceberg's own
        assert cached is tx.table_metadata  # cached while nothing changes
        assert cached.model_dump(exclude={"last_updated_ms"}) == replayed.model_dump(exclude={"last_updated_ms"})
        return cached

    tx = table.transaction()
    before = same(tx)
    tx.set_properties({"a": "1"})
    staged = same(tx)
    assert staged is not before and staged.properties["a"] == "1"
    tx.append(_rows("d1", 2))
    assert len(same(tx).snapshots) == len(staged.snapshots) + 1
    tx.commit_transaction()
    other = store.load("ops.t")
    other.append(_rows("d2", 1))  # another writer
    table.refresh()
    later = table.transaction()
    assert len(same(later).snapshots) == 2 and same(later).properties["a"] == "1"


def test_a_metadata_update_shares_what_it_did_not_change_and_leaves_what_it_was_given_as_it_was(store):
    """Change 4: no deep copy of an update's result. It equals PyIceberg's own (which copies), it shares
    the snapshots it did not change, and the metadata it was made from stays as it was through the commit."""
    store.ensure_table("ops.t", SCHEMA)
    assert all(m.update_table_metadata is patches._updated_metadata for m in patches._updater_modules())
    store.replace_where("ops.t", _rows("d1", 3), EqualTo("day", "d1"), {"i": "1"})
    table = store.load("ops.t")
    base, before = table.metadata, table.metadata.model_dump()
    tx = table.transaction()
    tx.set_properties({"a": "1"})
    tx.append(_rows("d2", 2))
    ours, theirs = patches._updated_metadata(base, tx._updates), patches._UPDATE(base, tx._updates)
    assert ours.model_dump(exclude={"last_updated_ms"}) == theirs.model_dump(exclude={"last_updated_ms"})
    assert ours.snapshots[0] is base.snapshots[0] and theirs.snapshots[0] is not base.snapshots[0]
    assert len(ours.snapshots) == 2 and ours.properties["a"] == "1" and "a" not in base.properties
    tx.commit_transaction()
    assert base.model_dump() == before
    committed = store.load("ops.t")
    with committed.io.new_input(committed.metadata_location).open() as stream:  # the file written, as PyIceberg parses it
        assert FromByteStream.table_metadata(stream) == committed.metadata
    assert committed.scan().to_arrow().num_rows == 5 and committed.properties["a"] == "1"


def test_a_metadata_file_is_parsed_once_and_every_load_still_sees_the_current_one(store, lakehouse_env, monkeypatch):
    assert patches.applied()
    parsed, read = [], patches._READ
    monkeypatch.setattr(patches, "_READ", lambda f, encoding: parsed.append(f.location) or read(f, encoding))
    monkeypatch.setattr(patches, "_parsed", {})
    store.ensure_table("ops.t", SCHEMA)
    store.ensure_table("ops.u", SCHEMA)
    parsed.clear()
    patches._parsed.clear()  # as in a new process
    first = [store.load("ops.t") for _ in range(5)]
    assert len(parsed) == 1 and len({id(t.metadata) for t in first}) == 1  # one parse for five loads
    shared, as_parsed = first[0].metadata, first[0].metadata.model_dump()
    other = TableStore(catalog_from_settings(lakehouse_env))  # another writer, with a catalog of its own
    other.replace_where("ops.t", _rows("d1", 4), EqualTo("day", "d1"), {"by": "other"})
    table = store.load("ops.t")  # the catalog names the new file: it is read, not the kept one
    assert len(parsed) == 2 and parsed[1] == table.metadata_location != first[0].metadata_location
    assert table.current_snapshot().summary["by"] == "other" and table.scan().to_arrow().num_rows == 4
    with table.io.new_input(table.metadata_location).open() as stream:  # PyIceberg's own parse, equal
        assert FromByteStream.table_metadata(stream) == table.metadata
    for i in range(5):  # one kept file per table, whatever the number of commits
        store.replace_where("ops.t", _rows("d1", 1), EqualTo("day", "d1"), {"i": str(i)})
        store.load("ops.u")
    assert store.load("ops.t").current_snapshot().summary["i"] == "4"
    assert sorted(key.rsplit("/", 1)[-1] for key in patches._parsed) == ["t", "u"]
    assert shared.model_dump() == as_parsed  # loads and commits left the shared metadata as parsed


def _values(entries) -> list[tuple]:
    """Manifest entries as comparable values."""
    return [(e.status, e.snapshot_id, e.sequence_number, e.file_sequence_number, e.data_file.file_path,
             e.data_file.record_count, e.data_file.spec_id, tuple(e.data_file.partition)) for e in entries]


@pytest.fixture
def decoded(monkeypatch) -> list[str]:
    """The paths of the manifests PyIceberg's own reader decodes, in order."""
    paths, fetch = [], patches._FETCH
    monkeypatch.setattr(patches, "_FETCH", lambda m, io, d=True: paths.append(m.manifest_path) or fetch(m, io, d))
    return paths


def test_a_manifest_is_decoded_once_and_scans_and_commits_still_see_the_current_files(store, decoded):
    assert patches.applied()
    patches._entries.clear()
    store.ensure_table("ops.t", SCHEMA)
    for i in range(12):  # enough commits for the manifests to be merged (a commit that reads them)
        store.replace_where("ops.t", _rows(f"d{i}", 2), EqualTo("day", f"d{i}"), {})
    assert decoded  # the merges read manifests, through the cache too
    decoded.clear()
    patches._entries.clear()  # as in a new process
    table = store.load("ops.t")
    first = table.scan().to_arrow()
    manifests = table.current_snapshot().manifests(table.io)
    assert sorted(decoded) == sorted(m.manifest_path for m in manifests)  # each once
    for _ in range(3):  # scans again, with and without a filter: nothing decoded again
        assert table.scan().to_arrow().sort_by("day").equals(first.sort_by("day"))
        assert table.scan(row_filter=EqualTo("day", "d3")).to_arrow().num_rows == 2
    assert len(decoded) == len(manifests)
    # A commit that deletes rows of some files and keeps others: the result is right, and every
    # entry kept for a manifest still equals PyIceberg's own reading of its file (nothing a
    # commit did changed a shared entry).
    store.replace_where("ops.t", _rows("d3", 5), EqualTo("day", "d3"), {})
    store.replace_where("ops.t", _rows("d20", 1), In("day", ["d4", "d20"]), {})
    table = store.load("ops.t")
    days = table.scan().to_arrow().column("day").to_pylist()
    assert sorted(days) == sorted([f"d{i}" for i in range(12) if i not in (3, 4) for _ in range(2)] + ["d3"] * 5 + ["d20"])
    for snapshot in table.snapshots():
        for manifest in snapshot.manifests(table.io):
            kept = manifest.fetch_manifest_entry(table.io)
            assert _values(kept) == _values(patches._FETCH(manifest, table.io, True))  # PyIceberg's own reading
    again = manifest.fetch_manifest_entry(table.io)
    assert again is not kept and again == kept  # a list of its own each call


def test_the_kept_entries_are_bounded_by_their_number_and_a_large_manifest_is_read_each_time(store, decoded,
                                                                                              monkeypatch):
    monkeypatch.setattr(patches, "ENTRIES_KEPT", 40)
    monkeypatch.setattr(patches, "_entries", patches.LRUCache(maxsize=40, getsizeof=lambda kept: max(1, len(kept))))
    store.ensure_table("ops.t", SCHEMA)
    for i in range(12):  # two rows per file, a file per day: merged manifests of 8 and more files
        store.replace_where("ops.t", _rows(f"d{i}", 2), EqualTo("day", f"d{i}"), {})
    assert patches._entries.currsize <= 40
    table = store.load("ops.t")
    large = [m for m in table.current_snapshot().manifests(table.io) if len(patches._FETCH(m, table.io, True)) > 4]
    assert large  # the merged one
    decoded.clear()
    for _ in range(2):
        assert table.scan().to_arrow().num_rows == 24
    assert all(decoded.count(m.manifest_path) == 2 for m in large), decoded  # not kept: read by each scan
    assert patches._entries.currsize <= 40


def test_manifests_are_merged_so_scans_open_a_bounded_number(store):
    store.ensure_table("ops.t", SCHEMA)
    for i in range(40):  # a new day each time: without merging, 40 manifests
        store.replace_where("ops.t", _rows(f"d{i}", 2), EqualTo("day", f"d{i}"), {})
    table = store.load("ops.t")
    manifests = table.current_snapshot().manifests(table.io)
    assert len(manifests) <= int(TABLE_PROPERTIES["commit.manifest.min-count-to-merge"]), len(manifests)
    assert sorted(table.scan().to_arrow().column("day").to_pylist()) == sorted(f"d{i}" for i in range(40) for _ in range(2))


def test_another_pyiceberg_is_left_uncached_with_a_warning_recorded_for_status(monkeypatch, caplog, lakehouse_env):
    import pyiceberg

    from lakehouse import checked_code
    from pyiceberg.table import Transaction

    monkeypatch.setattr(Transaction, "table_metadata", patches._UNCACHED)
    monkeypatch.setattr(patches.iceberg_arrow, "_determine_partitions", patches._SPLIT)
    monkeypatch.setattr(patches.FromInputFile, "table_metadata", staticmethod(patches._READ))
    for module in patches._updater_modules():
        monkeypatch.setattr(module, "update_table_metadata", patches._UPDATE)
    monkeypatch.setattr(pyiceberg, "__version__", "0.13.0")
    monkeypatch.setattr(checked_code, "_warned", set())  # said once per process: as if in a new one
    patches.apply()
    patches.apply()
    assert not patches.applied() and patches.iceberg_arrow._determine_partitions is patches._SPLIT
    assert patches.FromInputFile.table_metadata is patches._READ
    assert all(m.update_table_metadata is patches._UPDATE for m in patches._updater_modules())
    assert caplog.text.count("PyIceberg 0.13.0 is not 0.12.0") == 1
    recorded, = checked_code.fallbacks(lakehouse_env.home)
    assert recorded["message"].startswith("PyIceberg 0.13.0 is not 0.12.0")


def test_a_table_made_before_the_merge_setting_gets_it_and_a_users_own_value_is_kept(store):
    store.catalog.create_namespace_if_not_exists("ops")
    store.catalog.create_table("ops.old", SCHEMA, properties={"commit.manifest.min-count-to-merge": "50"})
    store.ensure_table("ops.old", SCHEMA)
    properties = store.load("ops.old").properties
    assert properties["commit.manifest-merge.enabled"] == "true"
    assert properties["write.delete.mode"] == "copy-on-write"
    assert properties["commit.manifest.min-count-to-merge"] == "50"
    assert "lakehouse.evolution" not in properties  # a setting, not a change of the table's shape


@pytest.mark.parametrize("transform", ["identity", "day", "month", "bucket"])
@pytest.mark.parametrize("rows", [
    {"ts": [dt.datetime(2026, 5, 1, h, tzinfo=dt.timezone.utc) for h in (1, 5, 23)], "k": ["a", "a", "a"]},
    {"ts": [dt.datetime(2026, 5, d, tzinfo=dt.timezone.utc) for d in (1, 2, 2)], "k": ["a", "b", "a"]},
    {"ts": [None, None], "k": [None, None]},
    {"ts": [None, dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc)], "k": ["a", None]},
])
def test_rows_of_one_partition_are_handed_on_under_the_key_pyiceberg_makes(transform, rows):
    """The shortcut's partitions (keys, rows) equal PyIceberg's own, for one partition or several."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import BucketTransform, DayTransform, IdentityTransform, MonthTransform
    from pyiceberg.types import NestedField, StringType, TimestamptzType

    assert patches.applied()
    schema = Schema(NestedField(1, "ts", TimestamptzType()), NestedField(2, "k", StringType()))
    made = {"identity": IdentityTransform(), "day": DayTransform(), "month": MonthTransform(),
            "bucket": BucketTransform(4)}[transform]
    spec = PartitionSpec(PartitionField(1, 1000, made, "p_ts"), PartitionField(2, 1001, IdentityTransform(), "p_k"))
    table = pa.table(rows, schema=pa.schema([("ts", pa.timestamp("us", tz="UTC")), ("k", pa.string())]))

    def parts(function):
        return sorted(((p.partition_key.partition, p.arrow_table_partition.to_pylist()) for p in
                       function(spec, schema, table)), key=str)

    assert parts(patches._one_partition) == parts(patches._SPLIT)
    one = {tuple(p.partition_key.partition) for p in patches._SPLIT(spec, schema, table)}
    if len(one) == 1:  # the shortcut is taken: the rows handed on as they are, not filtered into a copy
        assert patches._one_partition(spec, schema, table)[0].arrow_table_partition is table
    assert parts(patches._one_partition) and all(p.partition_key.partition_spec is spec for p in patches._one_partition(
        spec, schema, table))


def test_a_partitioned_write_of_one_day_and_of_several_reads_back_whole(store):
    """Through a real table partitioned by day: a write of one day (the shortcut) and one of
    three (PyIceberg's split) are each stored under their days, one data file per day."""
    schema = pa.schema([("day", pa.date32()), ("n", pa.int64())])
    store.ensure_table("ops.p", schema, [("day", "identity")])

    def rows(*days):
        return pa.table({"day": [d for d in days for _ in range(3)], "n": list(range(3 * len(days)))}, schema=schema)

    one, three = [dt.date(2026, 5, 1)], [dt.date(2026, 5, d) for d in (2, 3, 4)]
    store.replace_where("ops.p", rows(*one), EqualTo("day", "2026-05-01"), {})
    store.replace_where("ops.p", rows(*three), In("day", ["2026-05-02", "2026-05-03", "2026-05-04"]), {})
    table = store.load("ops.p")
    files = {f.file.partition[0]: f.file.record_count for f in table.scan().plan_files()}
    assert files == {(d - dt.date(1970, 1, 1)).days: 3 for d in one + three}, files
    for d in one + three:
        assert table.scan(row_filter=EqualTo("day", d.isoformat())).to_arrow().num_rows == 3


def test_glue_catalogs_share_the_parsed_botocore_models_and_each_resolves_its_own_credentials(monkeypatch):
    """Every step on AWS builds a Glue catalog; PyIceberg's own session per catalog parsed
    botocore's models each time (README, Benchmarks). The parsed models are shared; credentials
    and region are still each session's, so a changed environment is seen."""
    from lakehouse.iceberg import build_catalog

    catalogs = []
    for key, region in (("first-key", "us-east-1"), ("second-key", "eu-west-1"), ("third-key", "eu-west-1")):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
        catalogs.append(build_catalog("aws", "", "s3://bucket/warehouse", region))
        if key == "second-key":
            paths = list(catalogs[-1].glue._loader.search_paths)
    clients = [c.glue for c in catalogs]
    assert clients[0]._loader is clients[1]._loader is clients[2]._loader
    assert [c._request_signer._credentials.access_key for c in clients] == ["first-key", "second-key", "third-key"]
    assert [c.meta.region_name for c in clients] == ["us-east-1", "eu-west-1", "eu-west-1"]
    # boto3 adds its data folder to the loader per session: the shared search path does not grow.
    assert clients[2]._loader.search_paths == paths and len(set(paths)) == len(paths)
    # The session object is the constructor's only: not handed on to the catalog's FileIO.
    assert all("botocore_session" not in c.properties for c in catalogs)
    assert "botocore_session" not in catalogs[0]._load_file_io(location="s3://bucket/warehouse/t").properties
