"""Our small layer over PyIceberg: catalogs, tables from schemas, atomic partition writes.

Why not `dagster-iceberg`: it pins pyiceberg < 0.12 and commits schema changes and
data separately; here schema evolution and the data land in one Iceberg commit,
which carries the Dagster run id and partition key in its snapshot properties.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError, ValidationException
from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.transforms import DayTransform, IdentityTransform, MonthTransform, Transform, YearTransform

from lakehouse.arrowtools import conform, plain_strings, type_name
from lakehouse.settings import Settings

if TYPE_CHECKING:  # PyIceberg's catalog and table modules cost half a second to import, which a
    # code location loading its definitions does not need; `build_catalog` imports them.
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

log = logging.getLogger(__name__)

CATALOG_NAME = "lakehouse"
TRANSFORMS: dict[str, Transform] = {
    "identity": IdentityTransform(),
    "day": DayTransform(),
    "month": MonthTransform(),
    "year": YearTransform(),
}


class IncompatibleChange(ValueError):
    """A declaration changed a table in a way Iceberg cannot apply in place; names the field and the fix."""


def _same_type(a: pa.DataType, b: pa.DataType) -> bool:
    """Equal as Iceberg stores them (a list's element field is named differently on the two sides)."""
    if pa.types.is_list(a) or pa.types.is_large_list(a):
        return (pa.types.is_list(b) or pa.types.is_large_list(b)) and _same_type(a.value_type, b.value_type)
    if pa.types.is_large_string(a) or pa.types.is_large_string(b):
        return pa.types.is_string(a) or pa.types.is_string(b)
    return a == b


def _widens(old: pa.DataType, new: pa.DataType) -> bool:
    """Iceberg's allowed type promotions: int -> long, decimal(P, S) -> decimal(P', S) with P' > P."""
    if pa.types.is_int32(old) and pa.types.is_int64(new):
        return True
    return (pa.types.is_decimal(old) and pa.types.is_decimal(new) and old.scale == new.scale
            and new.precision > old.precision)


DECLARED = "lakehouse.declared."  # table properties holding the declaration facts its rows were written under
UNDECLARED = "lakehouse.undeclared"  # columns the declaration no longer has, kept in the table


def has_rows(table: Table) -> bool:
    snapshot = table.current_snapshot()
    summary = snapshot.summary.additional_properties if snapshot and snapshot.summary else {}
    return snapshot is not None and summary.get("total-records", "1") != "0"


def refusal(identifier: str, schema, table_schema: pa.Schema, properties: dict[str, str],
            declared: dict[str, str], rows: bool) -> str | None:
    """Why the table cannot follow the declaration (None: it can), naming the field and the fix.

    `declared` holds facts the rows already written depend on (a silver table's keys and
    history: its rows were de-duplicated and versioned by them), so they may change while
    the table has no `rows`; a type Iceberg cannot widen in place is the other refusal.
    """
    for fact, value in declared.items() if rows else ():
        was = properties.get(DECLARED + fact)
        if was is not None and was != value:
            return (f"{identifier}: its rows were written with {fact} {was!r}, and the declaration now says {value!r}. "
                    f"The rows already there were de-duplicated and versioned by the old {fact}, so the table "
                    f"cannot take the new one in place. Fix: declare {fact} {was!r} again in the source's defs.yaml, "
                    f"or declare the new {fact} as a new source (a new folder and name), whose tables start empty.")
    have = {f.name: f.type for f in plain_strings(table_schema)}
    for f in plain_strings(schema):
        if f.name in have and not _same_type(have[f.name], f.type) and not _widens(have[f.name], f.type):
            old, new = type_name(have[f.name]), type_name(f.type)
            return (f"{identifier}: column {f.name!r} is {old} in the table but is now declared {new}, which Iceberg "
                    f"cannot convert in place. Fix: declare it as {old} again (in the source's defs.yaml), or "
                    f"declare the new type under a new column name (the old column stays readable).")
    return None


def _spec_text(spec: list[tuple[str, str]]) -> str:
    return ", ".join(f"{transform}({column})" for column, transform in spec) or "nothing"
TABLE_PROPERTIES = {
    "write.parquet.compression-codec": "zstd",
    "commit.retry.num-retries": "8",
    "format-version": "2",
    # Every commit adds a manifest, and every scan opens each one: merged once a snapshot
    # has this many, so a table's scans (and the deletes of its rewrites) stay cheap for
    # years of daily commits instead of growing with them (Iceberg's default is 100).
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "8",
    # Spark's row-level DELETE (the spark engine's writes) rewrites files rather than adding
    # delete files, Iceberg's default made explicit: `lakehouse query` and the steps' direct
    # reads take the data files alone as the table.
    "write.delete.mode": "copy-on-write",
}


def build_catalog(*args, **kwargs) -> Catalog:
    """SQLite (or any SQL) catalog locally, the Glue Data Catalog in the aws profile; the arguments
    are `catalog_properties`'."""
    from pyiceberg.catalog import load_catalog

    from lakehouse import iceberg_patches

    iceberg_patches.apply()
    props: dict = catalog_properties(*args, **kwargs)
    if props["type"] != "glue":
        return load_catalog(CATALOG_NAME, **props)
    catalog = load_catalog(CATALOG_NAME, **props, botocore_session=_botocore_session())
    # Read by GlueCatalog's constructor only; left in its properties, it would ride along into
    # every FileIO the catalog makes (which could then no longer be pickled).
    catalog.properties.pop("botocore_session", None)
    # boto3 adds its data folder to its session's loader, the shared one: kept once, in order.
    paths = _botocore_loader.search_paths
    paths[:] = list(dict.fromkeys(paths))
    return catalog


_botocore_loader = None


def _botocore_session():
    """A new botocore session for a Glue catalog, sharing this process's loader of botocore's model files.

    PyIceberg's GlueCatalog makes a boto3 session of its own per catalog, and each new session
    parsed botocore's Glue and endpoint models again, for every catalog a step builds (figures
    in README, Benchmarks). Credentials, region and endpoint are still resolved by each session.
    """
    global _botocore_loader
    import botocore.session

    session = botocore.session.Session()
    if _botocore_loader is None:
        _botocore_loader = session.get_component("data_loader")
    else:
        session.register_component("data_loader", _botocore_loader)
    return session


def catalog_properties(
    profile: str,
    catalog_uri: str,
    warehouse_uri: str,
    aws_region: str | None = None,
    aws_endpoint_url: str | None = None,
    kms_key_arn: str | None = None,
) -> dict[str, str]:
    """PyIceberg's properties of the lakehouse catalog (also what Spark's catalog is set from).

    With a KMS key, every data and metadata file is written SSE-KMS with it. PyIceberg's
    fsspec FileIO is the one that sends the encryption headers.
    """
    props: dict[str, str] = {"warehouse": warehouse_uri}
    if warehouse_uri.startswith("s3://"):
        if aws_endpoint_url:
            props["s3.endpoint"] = aws_endpoint_url
        if aws_region:
            props["s3.region"] = aws_region
        if kms_key_arn:
            props.update({"py-io-impl": "pyiceberg.io.fsspec.FsspecFileIO",
                          "s3.server-side-encryption": "aws:kms", "s3.sse-kms-key-id": kms_key_arn})
    if profile == "aws":
        props["type"] = "glue"
        if aws_region:
            props["glue.region"] = aws_region
    else:
        props["type"] = "sql"
        props["uri"] = catalog_uri
    return props


def table_location(profile: str, warehouse_uri: str, identifier: str) -> str:
    """Where PyIceberg puts a new table: <warehouse>/<namespace>.db/<table> in Glue (Hive style),
    <warehouse>/<namespace>/<table> in a SQL catalog. Known without a catalog call, for the
    asset definitions; tests/test_definitions.py checks it against a created table."""
    namespace, table = identifier.split(".")[-2:]
    folder = f"{namespace}.db" if profile == "aws" else namespace
    return f"{warehouse_uri.rstrip('/')}/{folder}/{table}"


def catalog_from_settings(settings: Settings) -> Catalog:
    return build_catalog(*_catalog_settings(settings))


def catalog_properties_from_settings(settings: Settings) -> dict[str, str]:
    return catalog_properties(*_catalog_settings(settings))


def _catalog_settings(settings: Settings) -> tuple:
    return (settings.profile, settings.catalog_uri, settings.warehouse_uri, settings.aws_region,
            settings.aws_endpoint_url, settings.aws.kms_key_arn)


def physical_name(column: str) -> str:
    """The name PyIceberg gives `column` in the Parquet files it writes: Avro's rules, so a landed
    column named `1st` is `_1st` there (Spark's Iceberg writer keeps `1st`; Iceberg maps both by
    field id, a reader by name must map them itself)."""
    from pyiceberg.schema import make_compatible_name

    return make_compatible_name(column)


def select_by_name(column: str, found: list[str], absent: str | None = None) -> str:
    """`column` in a SELECT over data files read by name (DuckDB's read_parquet, `found` its
    columns), whichever name each file gave it; `absent` (SQL) stands for one no file holds."""
    from lakehouse.filters import quoted

    names = [n for n in dict.fromkeys((column, physical_name(column))) if n in found]
    if not names:
        return quoted(column, "duckdb") if absent is None else f"{absent} AS {quoted(column, 'duckdb')}"
    if names == [column]:
        return quoted(column, "duckdb")
    return f"coalesce({', '.join(quoted(n, 'duckdb') for n in names)}) AS {quoted(column, 'duckdb')}"


@dataclass(frozen=True)
class WriteResult:
    table: str
    snapshot_id: int | None
    rows: int
    added_columns: list[str] = field(default_factory=list)
    branch: str | None = None  # the audit branch, when the write was audited
    published: bool = True  # False: the audit failed and main was left untouched
    audit: list = field(default_factory=list)  # what the audit function returned

    @property
    def blocking_failures(self) -> list:
        return [o for o in self.audit if o.blocking and not o.passed]


COALESCE_ROWS = 1_000_000


def _coalesced(chunks, rows: int = COALESCE_ROWS):
    """Chunks joined (zero-copy) into tables of at least `rows` rows, the last one smaller.

    Every `append` in a transaction is a snapshot of its own; an engine hands out
    batches of ~100k rows and bronze a table per file, so a range run would otherwise
    leave hundreds of snapshots in one commit.
    """
    buffer, count = [], 0
    for chunk in chunks:
        buffer.append(chunk)
        count += chunk.num_rows
        if count >= rows:
            yield pa.concat_tables(buffer)
            buffer, count = [], 0
    if buffer:
        yield pa.concat_tables(buffer)


class BranchWriter:
    """Data an engine writes to an audit branch itself, replacing the rows `where` matches:
    `write(identifier, branch, where, snapshot_properties) -> WriteResult` (its rows and head)."""

    def write(self, identifier: str, branch: str, where: BooleanExpression, snapshot_properties: dict[str, str]):
        raise NotImplementedError


WRITE_BRANCH = "write-"  # the branch an engine writes an unaudited table to, named write-<UTC time>-<random>
WRITE_BRANCH_STALE = dt.timedelta(hours=6)  # no write takes this long: such a branch was left by a crash


def write_branch_made(ref: str) -> dt.datetime | None:
    """When a `write-` branch was made (from its name); None for any other branch."""
    if not ref.startswith(WRITE_BRANCH):
        return None
    try:
        return dt.datetime.strptime(ref[len(WRITE_BRANCH):].split("-", 1)[0], "%Y%m%dT%H%M%S").replace(
            tzinfo=dt.timezone.utc)
    except ValueError:
        return None


class MainMoved(Exception):
    """Another writer published to main while a write was being audited: redo the write."""


class TableStore:
    """Create, evolve, write and read the lakehouse's Iceberg tables.

    With `keep_loaded`, for a store that serves one step (or one sensor tick): each table is
    loaded from the catalog once and then kept as this store's own commits leave it
    (PyIceberg updates a table object in place when it commits through it). A step's reads
    then see one state of each table, and do not ask the catalog again and again: a small
    day's steps loaded tables 273 times, each a Glue GetTable on AWS. A write still starts
    from fresh metadata, a conflict reloads, and so does a write made outside PyIceberg
    (Spark's). Without it (a store that outlives a step: the CLI's, a test's) every call loads.
    `loads` counts the loads this store asked the catalog for, by table.
    """

    def __init__(self, catalog: Catalog, keep_loaded: bool = False):
        self.catalog = catalog
        self.keep_loaded = keep_loaded
        self.loads: Counter[str] = Counter()
        self._tables: dict[str, Table] = {}
        self._ensured: set[str] = set()  # tables known to exist: a step ensures the same ones often

    def ensure_table(
        self,
        identifier: str,
        schema: pa.Schema,
        partition_by: Iterable[tuple[str, str]] = (),
        properties: dict[str, str] | None = None,
        declared: dict[str, str] | None = None,
    ) -> None:
        """Create the table with the schema and partition spec asked for, unless it exists
        (then `evolve` it); `declared`: facts its rows depend on, see `refusal`.

        PyIceberg cannot create a partitioned table straight from an Arrow schema, so
        the spec is added in a second metadata commit right after creation.
        """
        if identifier in self._ensured:
            return
        namespace = identifier.split(".")[0]
        self.catalog.create_namespace_if_not_exists(namespace)
        declared = declared or {}
        if self.exists(identifier):
            self.evolve(identifier, schema, partition_by, declared)
            self._ensured.add(identifier)
            return
        try:
            self.catalog.create_table(
                identifier, schema=plain_strings(schema),
                properties={**TABLE_PROPERTIES, **(properties or {}), **{DECLARED + k: v for k, v in declared.items()}},
            )
        except Exception as exc:  # another process created it first
            if "already exists" not in str(exc).lower():
                raise
            self._ensured.add(identifier)
            return
        # The spec, as a change to the new table: `evolve` retries if another process that
        # found the table a moment ago has added it first.
        self.evolve(identifier, schema, partition_by, declared)
        self._ensured.add(identifier)

    def evolve(self, identifier: str, schema: pa.Schema, partition_by: Iterable[tuple[str, str]] = (),
               declared: dict[str, str] | None = None) -> str | None:
        """Bring an existing table to a changed declaration: new columns, widened types and a new
        partition spec are applied (old files stay readable under the spec they were written
        with) and recorded in the table property `lakehouse.evolution`; returns what changed.

        With `declared` facts (a silver table), columns the declaration dropped are kept (old
        rows keep their values, new rows have none) and recorded once. A change `refusal`
        names is refused with IncompatibleChange before anything is changed.
        """
        partition_by = list(partition_by)
        for attempt in range(1, 6):
            try:
                table = self.load(identifier, fresh=attempt > 1)
                return self._evolve_once(identifier, table, schema, partition_by, declared or {})
            except CommitFailedException:  # another process evolved (or just created) it: look again
                if attempt == 5:
                    raise
                log.warning("%s: another process changed the table while it was being evolved; looking again "
                            "(attempt %d of 5)", identifier, attempt + 1)
                time.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

    def _evolve_once(self, identifier: str, table: Table, schema: pa.Schema, partition_by,
                     declared: dict[str, str]) -> str | None:
        if why := refusal(identifier, schema, table.schema().as_arrow(), table.properties, declared, has_rows(table)):
            raise IncompatibleChange(why)
        have = {f.name: f.type for f in plain_strings(table.schema().as_arrow())}
        declared_schema = plain_strings(schema)
        added = [f.name for f in declared_schema if f.name not in have]
        widened = [(f.name, have[f.name], f.type) for f in declared_schema
                   if f.name in have and not _same_type(have[f.name], f.type)]
        spec_now = [(table.schema().find_column_name(f.source_id), str(f.transform)) for f in table.spec().fields]
        spec_wanted = [(column, transform) for column, transform in partition_by]
        changes = [f"+{name}" for name in added]
        changes += [f"{name} {type_name(old)} -> {type_name(new)}" for name, old, new in widened]
        if spec_now != spec_wanted:
            changes.append(f"partitioned by {_spec_text(spec_now)} -> {_spec_text(spec_wanted)}")
        properties = {DECLARED + k: v for k, v in declared.items() if table.properties.get(DECLARED + k) != v}
        # Tables made before a setting of ours existed get it (a user's own value is kept).
        if missing := {k: v for k, v in TABLE_PROPERTIES.items() if k != "format-version" and k not in table.properties}:
            log.info("%s: table properties set to the project's defaults: %s", identifier,
                     ", ".join(f"{k}={v}" for k, v in missing.items()))
            properties.update(missing)
        if declared:
            dropped = [name for name in have if name not in declared_schema.names]
            before = [n for n in table.properties.get(UNDECLARED, "").split(",") if n]
            if dropped != before:
                properties[UNDECLARED] = ",".join(dropped)
                if gone := [n for n in dropped if n not in before]:
                    changes.append(f"no longer declared, kept (null in new rows): {', '.join(gone)}")
                if back := [n for n in before if n not in dropped]:
                    changes.append(f"declared again: {', '.join(back)}")
        if not changes and not properties:
            return None
        if table.current_snapshot() is None and not table.metadata.snapshots:
            # Created a moment ago by another process, which is still adding its spec: nothing
            # to record (that process's own commit will conflict and find the table done).
            changes = []
        with table.transaction() as tx:
            if added or widened:
                with tx.update_schema() as update:
                    update.union_by_name(declared_schema)
            if spec_now != spec_wanted:
                with tx.update_spec() as spec:
                    for (column, transform), f in zip(spec_now, table.spec().fields):
                        if (column, transform) not in spec_wanted:
                            spec.remove_field(f.name)
                    for column, transform in spec_wanted:
                        if (column, transform) not in spec_now:
                            spec.add_field(column, TRANSFORMS[transform], f"{column}_{transform}")
            if changes:
                note = f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC: {'; '.join(changes)}"
                properties["lakehouse.evolution"] = note
            if properties:
                tx.set_properties(properties)
        if not changes:
            return None
        log.warning("%s evolved to its declaration: %s", identifier, "; ".join(changes))
        return note

    def load(self, identifier: str, fresh: bool = False) -> Table:
        """The table: as this store last saw it if it keeps tables loaded, else (or `fresh`) from the catalog."""
        table = None if fresh or not self.keep_loaded else self._tables.get(identifier)
        if table is None:
            table = self.catalog.load_table(identifier)
            self.loads[identifier] += 1
            if self.keep_loaded:
                self._tables[identifier] = table
        return table

    def exists(self, identifier: str) -> bool:
        """Whether the table exists; one load, which a store that keeps tables loaded keeps."""
        if identifier in self._tables:
            return True
        try:
            self.load(identifier)
        except NoSuchTableError:
            return False
        return True

    def replace_where(
        self,
        identifier: str,
        data,
        where: BooleanExpression,
        snapshot_properties: dict[str, str],
        evolve: bool = True,
        attempts: int = 5,
        branch: str = "main",
        fresh: bool | None = None,
    ) -> WriteResult:
        """Replace the rows matching `where` with `data`, evolving the schema, in one commit.

        `data` is an Arrow table or a callable returning an iterator of Arrow tables
        (chunks): the first replaces, the rest append, all inside one transaction, so
        memory is bounded by a chunk while the commit stays atomic. Or a `BranchWriter`:
        the engine writes a branch of its own (Spark's delete and append are two commits),
        which main then takes in one checked fast-forward, and the branch is dropped. (PyIceberg 0.12
        streams only into unpartitioned tables.) Idempotent by construction: a rerun
        deletes what the last run wrote for the same filter. PyIceberg retries plain
        conflicts itself; the loop here covers a concurrent schema change or a
        concurrent write where this one deletes, which need the transaction rebuilt.
        `fresh`: whether to load the table first; by default for a write to main (fewer conflicts
        with other runs), not for one to an audit branch, which starts from the table as
        creating the branch left it. A caller that has just loaded the table passes False.
        """
        if isinstance(data, BranchWriter):  # the engine writes a branch itself: main takes it in one step
            self._sweep_write_branches(identifier)
            branch = f"{WRITE_BRANCH}{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
            try:  # the publish drops the branch; a failed write must not leave it behind
                written = self.audited_replace(identifier, data, where, snapshot_properties, branch,
                                               lambda t, head: [], evolve, attempts)
            except Exception:
                if branch in self.load(identifier, fresh=True).metadata.refs:
                    self._update_refs(identifier, lambda t: t.manage_snapshots().remove_branch(branch).commit())
                raise
            return WriteResult(identifier, written.snapshot_id, written.rows, written.added_columns)
        fresh = branch == "main" if fresh is None else fresh
        for attempt in range(1, attempts + 1):
            table = self.load(identifier, fresh=fresh or attempt > 1)
            before = {f.name for f in table.schema().fields}
            rows = 0
            try:
                with table.transaction() as tx:
                    chunks = _coalesced(iter(data()) if callable(data) else iter([data]))
                    first = next(chunks, None)
                    if evolve and first is not None:
                        with tx.update_schema() as update:
                            update.union_by_name(plain_strings(first.schema))
                    target = plain_strings(tx.table_metadata.schema().as_arrow())
                    first = first if first is not None else target.empty_table()
                    with warnings.catch_warnings():
                        # An empty first write of a partition is normal, not worth a warning.
                        warnings.filterwarnings("ignore", "Delete operation did not match any records")
                        tx.overwrite(conform(first, target), overwrite_filter=where,
                                     snapshot_properties=snapshot_properties, branch=branch)
                    rows += first.num_rows
                    for chunk in chunks:
                        if chunk.num_rows:
                            tx.append(conform(chunk, target), snapshot_properties=snapshot_properties, branch=branch)
                            rows += chunk.num_rows
            except (CommitFailedException, ValidationException):
                # ValidationException: PyIceberg's own retry found a concurrent commit adding
                # files where this overwrite deletes; rebuilt from fresh metadata, `data` (if
                # a callable) re-reads and merges what the other writer added.
                if attempt == attempts:
                    raise
                log.warning("commit to %s conflicted; retrying (%s/%s)", identifier, attempt, attempts)
                time.sleep(0.2 * attempt)
                continue
            ref = table.metadata.refs.get(branch)
            added = [f.name for f in table.schema().fields if f.name not in before]
            return WriteResult(identifier, ref.snapshot_id if ref else None, rows, added)
        raise AssertionError("unreachable")

    def data_files(self, identifier: str, where: BooleanExpression, snapshot_id: int | None = None,
                   table: Table | None = None) -> list[str] | None:
        """Paths of the Parquet files holding rows that may match `where` (in main, or in `snapshot_id`).

        None when the files alone would not be the table (delete files present), in which
        case the caller must scan through PyIceberg. `table`: the table, if the caller loaded it.
        """
        table = table if table is not None else self.load(identifier)
        tasks = list(table.scan(row_filter=where, snapshot_id=snapshot_id).plan_files())
        if any(t.delete_files for t in tasks):
            return None
        return [t.file.file_path for t in tasks]

    def takes_whole_files(self, identifier: str, where: BooleanExpression, ref: str = "main") -> bool:
        """Whether every data file (at `ref`) that may hold rows `where` matches holds only such rows,
        by its column metrics: then an overwrite by that filter drops whole files, which is
        what Iceberg's overwrite by filter accepts. The check Iceberg and PyIceberg's own delete
        make; PyIceberg's evaluator is private, so a PyIceberg upgrade must keep this test green
        (tests/test_oracle.py, both outcomes)."""
        from pyiceberg.expressions.visitors import _StrictMetricsEvaluator

        from lakehouse.filters import uses_views

        if uses_views(where):  # a semi-join: which rows it matches is not known from the metrics
            return False
        table = self.load(identifier)
        head = table.metadata.refs.get(ref)
        strict = _StrictMetricsEvaluator(table.schema(), where, case_sensitive=True)
        for task in table.scan(row_filter=where, snapshot_id=head.snapshot_id if head else None).plan_files():
            if task.delete_files or not strict.eval(task.file):
                return False
        return True

    def audited_replace(
        self,
        identifier: str,
        data,
        where: BooleanExpression,
        snapshot_properties: dict[str, str],
        branch: str,
        audit,
        evolve: bool = True,
        attempts: int = 5,
    ) -> WriteResult:
        """Write-audit-publish: write to `branch`, audit it, fast-forward main only if it passes.

        `data` as for `replace_where`. `audit(table, snapshot_id)` looks at the branch head
        and returns outcomes; those with `.blocking and not .passed` stop the publish.
        Publishing is a checked fast-forward: main must still be at the head the branch
        was made from (an Iceberg commit requirement), so a concurrent commit to main is
        never discarded; if main moved, the write and audit are redone on a new branch
        from the new head. A failed audit leaves the branch and returns `published=False`.
        """
        for attempt in range(1, attempts + 1):
            table = self.load(identifier, fresh=True)  # the base: main as it is now
            if branch in table.metadata.refs:  # an earlier attempt of this same write
                self._update_refs(identifier, lambda t: t.manage_snapshots().remove_branch(branch).commit())
                table = self.load(identifier)
            if table.current_snapshot() is None:
                # Iceberg refuses branch writes to a table without snapshots: give main an
                # empty one to branch from (readers still see an empty table).
                with table.transaction() as tx:
                    with tx.update_snapshot().fast_append():
                        pass
                table = self.load(identifier)
            base = table.current_snapshot()
            self._update_refs(identifier, lambda t: t.manage_snapshots().create_branch(
                snapshot_id=base.snapshot_id, branch_name=branch).commit())
            if isinstance(data, BranchWriter):  # the engine writes the branch itself (Spark's Iceberg writer)
                written = data.write(identifier, branch, where, snapshot_properties)
            else:
                written = self.replace_where(identifier, data, where, snapshot_properties, evolve, branch=branch)
            table = self.load(identifier, fresh=isinstance(data, BranchWriter))  # Spark's commits are not ours
            head = table.metadata.refs[branch].snapshot_id
            outcomes = audit(table, head)
            if any(o.blocking and not o.passed for o in outcomes):
                return WriteResult(identifier, head, written.rows, written.added_columns, branch, False, outcomes)
            try:
                self._fast_forward(identifier, base.snapshot_id, head, branch)
            except MainMoved:
                if attempt == attempts:
                    raise
                log.warning("main of %s moved during the audit; redoing (%s/%s)", identifier, attempt, attempts)
                continue
            return WriteResult(identifier, head, written.rows, written.added_columns, branch, True, outcomes)
        raise AssertionError("unreachable")

    def _sweep_write_branches(self, identifier: str) -> None:
        """Drop the `write-` branches a process that died mid-write left (older than
        WRITE_BRANCH_STALE): main never took them. Logged; `lakehouse status` lists any left."""
        now = dt.datetime.now(dt.timezone.utc)
        for ref in list(self.load(identifier).metadata.refs):
            made = write_branch_made(ref)
            if made is not None and now - made > WRITE_BRANCH_STALE:
                log.warning("%s: dropping branch %s, left by a write that stopped midway (main never took it)",
                            identifier, ref)
                self._update_refs(identifier, lambda t, ref=ref: t.manage_snapshots().remove_branch(ref).commit()
                                  if ref in t.metadata.refs else None)

    def _update_refs(self, identifier: str, change, attempts: int = 10) -> None:
        """Commit `change(table)`, a branch-only update, on fresh metadata until no one else commits between.

        PyIceberg retries a conflicting commit only when it writes data; creating or
        dropping a branch fails outright when another run committed to the table
        meanwhile, which concurrent runs of different days do all the time.
        """
        for attempt in range(1, attempts + 1):
            try:
                change(self.load(identifier, fresh=attempt > 1))
                return
            except CommitFailedException:
                if attempt == attempts:
                    raise
                time.sleep(random.uniform(0.02, 0.1) * attempt)

    def _fast_forward(self, identifier: str, base: int | None, head: int, branch: str) -> None:
        """Move main to `head` only if main is still `base` and `base` is an ancestor of `head`.

        PyIceberg's own publish (set_current_snapshot) is not a checked fast-forward; the
        AssertRefSnapshotId requirement makes the catalog refuse it if main moved
        (MainMoved). A conflict with any other commit (another run's branch) is retried.
        """
        from pyiceberg.table.update import AssertRefSnapshotId, RemoveSnapshotRefUpdate, SetSnapshotRefUpdate

        def publish(table: Table) -> None:
            main = table.current_snapshot()
            if (main.snapshot_id if main else None) != base:
                raise MainMoved(f"main of {identifier} moved from {base}")
            ancestors, snapshot = set(), table.snapshot_by_id(head)
            while snapshot is not None:
                ancestors.add(snapshot.snapshot_id)
                snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
            if base is not None and base not in ancestors:
                raise MainMoved(f"main head {base} is not an ancestor of {branch} head {head}")
            with table.transaction() as tx:
                tx._apply(
                    (SetSnapshotRefUpdate(ref_name="main", type="branch", snapshot_id=head),
                     RemoveSnapshotRefUpdate(ref_name=branch)),
                    (AssertRefSnapshotId(ref="main", snapshot_id=base),),
                )

        self._update_refs(identifier, publish)

    def current_snapshot_id(self, identifier: str) -> int | None:
        snapshot = self.load(identifier).current_snapshot()
        return snapshot.snapshot_id if snapshot else None

    def has_snapshot(self, identifier: str, snapshot_id: int) -> bool:
        """False once maintenance has expired it."""
        return self.load(identifier).snapshot_by_id(snapshot_id) is not None

    def main_history(self, identifier: str, start: int | None = None):
        """Snapshots of main (or from `start` back), newest first (branch snapshots excluded)."""
        table = self.load(identifier)
        snapshot = table.snapshot_by_id(start) if start is not None else table.current_snapshot()
        while snapshot is not None:
            yield snapshot
            snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None

    def remove_branches(self, identifier: str, prefix: str) -> list[str]:
        """Drop the audit branches whose names start with `prefix` (after a successful publish)."""
        removed: list[str] = []

        def remove(table: Table) -> None:
            stale = [name for name in table.metadata.refs if name != "main" and name.startswith(prefix)]
            if stale:
                manage = table.manage_snapshots()
                for name in stale:
                    manage = manage.remove_branch(name)
                manage.commit()
            removed[:] = stale

        self._update_refs(identifier, remove)
        return removed

    def read(
        self,
        identifier: str,
        where: BooleanExpression = AlwaysTrue(),
        columns: tuple[str, ...] = ("*",),
        snapshot_id: int | None = None,
    ) -> pa.Table:
        table = self.load(identifier)
        return table.scan(row_filter=where, selected_fields=columns, snapshot_id=snapshot_id).to_arrow()
