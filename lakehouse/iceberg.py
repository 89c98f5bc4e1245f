"""Our small layer over PyIceberg: catalogs, tables from schemas, atomic partition writes.

Why not `dagster-iceberg`: it pins pyiceberg < 0.12 and commits schema changes and
data separately; here schema evolution and the data land in one Iceberg commit,
which carries the Dagster run id and partition key in its snapshot properties.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Iterable

import pyarrow as pa
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform, IdentityTransform, MonthTransform, Transform

from lakehouse.arrowtools import conform, plain_strings
from lakehouse.settings import Settings

log = logging.getLogger(__name__)

CATALOG_NAME = "lakehouse"
TRANSFORMS: dict[str, Transform] = {
    "identity": IdentityTransform(),
    "day": DayTransform(),
    "month": MonthTransform(),
}
TABLE_PROPERTIES = {
    "write.parquet.compression-codec": "zstd",
    "commit.retry.num-retries": "8",
    "format-version": "2",
}


def build_catalog(
    profile: str,
    catalog_uri: str,
    warehouse_uri: str,
    aws_region: str | None = None,
    aws_endpoint_url: str | None = None,
) -> Catalog:
    """SQLite (or any SQL) catalog locally, the Glue Data Catalog in the aws profile."""
    props: dict[str, str] = {"warehouse": warehouse_uri}
    if warehouse_uri.startswith("s3://"):
        if aws_endpoint_url:
            props["s3.endpoint"] = aws_endpoint_url
        if aws_region:
            props["s3.region"] = aws_region
    if profile == "aws":
        props["type"] = "glue"
        if aws_region:
            props["glue.region"] = aws_region
    else:
        props["type"] = "sql"
        props["uri"] = catalog_uri
    return load_catalog(CATALOG_NAME, **props)


def catalog_from_settings(settings: Settings) -> Catalog:
    return build_catalog(
        settings.profile,
        settings.catalog_uri,
        settings.warehouse_uri,
        settings.aws_region,
        settings.aws_endpoint_url,
    )


@dataclass(frozen=True)
class WriteResult:
    table: str
    snapshot_id: int | None
    rows: int
    added_columns: list[str] = field(default_factory=list)


class TableStore:
    """Create, evolve, write and read the lakehouse's Iceberg tables."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def ensure_table(
        self,
        identifier: str,
        schema: pa.Schema,
        partition_by: Iterable[tuple[str, str]] = (),
        properties: dict[str, str] | None = None,
    ) -> Table:
        """Load the table, or create it with the schema and partition spec asked for.

        PyIceberg cannot create a partitioned table straight from an Arrow schema, so
        the spec is added in a second metadata commit right after creation.
        """
        namespace = identifier.split(".")[0]
        self.catalog.create_namespace_if_not_exists(namespace)
        try:
            return self.catalog.load_table(identifier)
        except NoSuchTableError:
            pass
        try:
            table = self.catalog.create_table(
                identifier, schema=plain_strings(schema), properties={**TABLE_PROPERTIES, **(properties or {})}
            )
        except Exception as exc:  # another process created it first
            if "already exists" not in str(exc).lower():
                raise
            return self.catalog.load_table(identifier)
        partition_by = list(partition_by)
        if partition_by:
            with table.update_spec() as spec:
                for column, transform in partition_by:
                    spec.add_field(column, TRANSFORMS[transform], f"{column}_{transform}")
        return table

    def load(self, identifier: str) -> Table:
        return self.catalog.load_table(identifier)

    def exists(self, identifier: str) -> bool:
        return self.catalog.table_exists(identifier)

    def replace_where(
        self,
        identifier: str,
        data: pa.Table,
        where: BooleanExpression,
        snapshot_properties: dict[str, str],
        evolve: bool = True,
        attempts: int = 5,
    ) -> WriteResult:
        """Replace the rows matching `where` with `data`, evolving the schema, in one commit.

        Idempotent by construction: a rerun deletes what the last run wrote for the same
        filter. PyIceberg retries plain conflicts itself; the outer loop covers a
        concurrent schema change, which needs the transaction rebuilt from fresh metadata.
        """
        for attempt in range(1, attempts + 1):
            table = self.catalog.load_table(identifier)
            before = {f.name for f in table.schema().fields}
            try:
                with table.transaction() as tx:
                    if evolve:
                        with tx.update_schema() as update:
                            update.union_by_name(plain_strings(data.schema))
                    target = plain_strings(tx.table_metadata.schema().as_arrow())
                    with warnings.catch_warnings():
                        # An empty first write of a partition is normal, not worth a warning.
                        warnings.filterwarnings("ignore", "Delete operation did not match any records")
                        tx.overwrite(
                            conform(data, target),
                            overwrite_filter=where,
                            snapshot_properties=snapshot_properties,
                        )
            except CommitFailedException:
                if attempt == attempts:
                    raise
                log.warning("commit to %s conflicted; retrying (%s/%s)", identifier, attempt, attempts)
                time.sleep(0.2 * attempt)
                continue
            snapshot = table.current_snapshot()
            added = [f.name for f in table.schema().fields if f.name not in before]
            return WriteResult(identifier, snapshot.snapshot_id if snapshot else None, data.num_rows, added)
        raise AssertionError("unreachable")

    def read(
        self,
        identifier: str,
        where: BooleanExpression = AlwaysTrue(),
        columns: tuple[str, ...] = ("*",),
        snapshot_id: int | None = None,
    ) -> pa.Table:
        table = self.catalog.load_table(identifier)
        return table.scan(row_filter=where, selected_fields=columns, snapshot_id=snapshot_id).to_arrow()
