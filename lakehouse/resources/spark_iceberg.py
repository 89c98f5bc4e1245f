"""Spark's own Iceberg catalog over the catalog PyIceberg uses (DESIGN.md §9).

The spark engine reads the lakehouse tables through Spark's Iceberg runtime, so on a
cluster the executors read the data files and the driver only plans. Both sides must see
one catalog: locally the SQLite file of PyIceberg's `SqlCatalog`, opened by Iceberg's JDBC
catalog; on AWS the Glue Data Catalog with S3FileIO. Spark's catalog is named like
PyIceberg's (`lakehouse`): the JDBC catalog keys its rows by that name.

Pure settings here; the session is made in `lakehouse.resources.engine`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from lakehouse.filters import quoted, single_view, sql_condition
from lakehouse.iceberg import CATALOG_NAME, BranchWriter

SQLITE_JDBC = Path("/usr/share/java/sqlite-jdbc.jar")  # Debian's libxerial-sqlite-jdbc-java (`make test` installs it)
EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
# Iceberg's refusal of an overwrite by filter that would delete part of a data file.
PARTIAL_FILES = "Cannot delete file where some, but not all, rows match filter"
log = logging.getLogger(__name__)


class SparkCatalogError(RuntimeError):
    """The spark engine cannot open the lakehouse catalog; the message names the fix."""


def runtime_jar() -> Path:
    """Iceberg's Spark runtime for Spark 3.5 / Scala 2.12, from the PyPI package in the `local` extra."""
    try:
        from snowpark_connect_deps_iceberg import get_jars_dir
    except ImportError:
        raise SparkCatalogError("the spark engine needs Iceberg's Spark runtime: install the `local` extra "
                                "(make install), which brings snowpark-connect-deps-iceberg") from None
    return get_jars_dir() / "iceberg-spark-runtime-3.5_2.12-1.10.2.jar"


def local_jars() -> list[str]:
    """The jars a session started here needs (on Glue and EMR the cluster provides them)."""
    if not SQLITE_JDBC.exists():
        raise SparkCatalogError(f"the spark engine opens the SQLite catalog through {SQLITE_JDBC}, which is missing: "
                                "apt-get install libxerial-sqlite-jdbc-java (make test installs it)")
    return [str(runtime_jar()), str(SQLITE_JDBC)]


def catalog_conf(properties: dict[str, str]) -> dict[str, str]:
    """Spark settings of an Iceberg catalog named `lakehouse` over the one PyIceberg `properties` describe."""
    prefix = f"spark.sql.catalog.{CATALOG_NAME}"
    conf = {prefix: "org.apache.iceberg.spark.SparkCatalog", f"{prefix}.warehouse": properties["warehouse"],
            # PyIceberg commits too: Spark must not serve a table's metadata from a cache.
            f"{prefix}.cache-enabled": "false"}
    kind = properties.get("type")
    if kind == "sql":
        uri = urlparse(properties["uri"])
        if uri.scheme != "sqlite":
            raise SparkCatalogError(f"the spark engine opens SQLite catalogs here, not {uri.scheme!r} "
                                    f"({properties['uri']}); use the default LAKEHOUSE_CATALOG_URI")
        # SQLAlchemy's form: sqlite:////abs/path, or sqlite:///relative/path (to the working
        # directory, made absolute here: the JVM must open the very same file); its ?options
        # are SQLAlchemy's or the Python driver's, not the JDBC driver's.
        path = os.path.abspath(unquote(properties["uri"].split("sqlite:///", 1)[-1].split("?", 1)[0]))
        conf.update({
            f"{prefix}.type": "jdbc",
            f"{prefix}.uri": f"jdbc:sqlite:{path}",
            # Without it the JDBC catalog keeps a result set open and holds SQLite's read lock,
            # and PyIceberg's commits fail with "database is locked" (DESIGN.md §9).
            f"{prefix}.jdbc.init-catalog-tables": "false",
        })
    elif kind == "glue":
        conf[f"{prefix}.catalog-impl"] = "org.apache.iceberg.aws.glue.GlueCatalog"
    else:
        raise SparkCatalogError(f"the spark engine cannot open a {kind!r} catalog; the lakehouse uses sql or glue")
    if kind == "glue" or properties["warehouse"].startswith("s3://"):  # a local catalog may keep its files in S3
        conf[f"{prefix}.io-impl"] = "org.apache.iceberg.aws.s3.S3FileIO"
        if region := properties.get("glue.region") or properties.get("s3.region"):
            conf[f"{prefix}.client.region"] = region
        if endpoint := properties.get("s3.endpoint"):
            conf[f"{prefix}.s3.endpoint"] = endpoint
            conf[f"{prefix}.s3.path-style-access"] = "true"
        if key := properties.get("s3.sse-kms-key-id"):
            conf.update({f"{prefix}.s3.sse.type": "kms", f"{prefix}.s3.sse.key": key})
    return conf


def _quoted(name: str) -> str:
    return quoted(name, "spark")


class SparkBranchWriter(BranchWriter):
    """A step's output written by Spark's own Iceberg writer to the audit branch: the executors
    write the data files, the driver commits (no row of the table passes through it).

    One commit where it can: `overwrite(where)` replaces the files the filter matches whole,
    which it does when the filter follows the files (a write of whole days, the usual case).
    Iceberg refuses it, committing nothing, when a file holds rows on both sides of the
    filter (a mart rewriting some days of a month, silver's rows of recomputed keys on
    other days); that is checked first (`TableStore.takes_whole_files`), and then the rows
    `where` matches are deleted (row-level, copy-on-write) and the output appended, two commits.
    Either way the commits are on the audit branch, which main takes only after the audit
    passes, and the one holding the output carries the step's snapshot properties.
    """

    def __init__(self, store, df, schema):
        self.store, self.df, self.schema = store, df, schema

    def write(self, identifier: str, branch: str, where, snapshot_properties: dict[str, str]):
        from pyspark.sql import functions as F

        from lakehouse.iceberg import WriteResult

        session = self.df.sparkSession
        target = ".".join(_quoted(part) for part in (CATALOG_NAME, *identifier.split("."), f"branch_{branch}"))
        condition = sql_condition(where, {f.name: f.type for f in self.schema}, "spark")
        # By name, in the table's order; no casts of ours: Spark's store assignment (ANSI for
        # table writes) widens safely and refuses a narrowing, where a cast would null or round.
        # A column the output lacks (kept after the declaration dropped it) is written null.
        columns = [F.col(_quoted(f.name)) if f.name in self.df.columns else F.lit(None).cast(f.dataType).alias(f.name)
                   for f in session.table(target).schema]
        writer = self.df.select(*columns).writeTo(target)
        for key, value in snapshot_properties.items():
            writer = writer.option(f"snapshot-property.{key}", value)
        # Decided before writing (PyIceberg's plan, the same metrics test as Iceberg's), so the
        # output is not computed twice; Iceberg's own refusal remains the safety net.
        whole = self.store.takes_whole_files(identifier, where, branch)
        try:
            if whole:
                writer.overwrite(F.expr(condition))
        except Exception as exc:  # py4j wraps Iceberg's ValidationException
            if PARTIAL_FILES not in str(exc):
                raise
            whole = False
        if not whole:
            log.info("%s: the filter splits data files; deleting the rows, then appending", identifier)
            self._delete(session, target, where)
            writer.append()
        table = self.store.load(identifier, fresh=True)  # Spark committed, not this store
        head = table.snapshot_by_id(table.metadata.refs[branch].snapshot_id)
        summary = head.summary.additional_properties if head.summary else {}
        added = int(summary.get("added-records", 0))  # an empty append still commits, with the properties
        return WriteResult(identifier, head.snapshot_id, added, [])

    def _delete(self, session, target: str, where) -> None:
        """Delete the rows `where` matches (copy-on-write). Spark pushes no part of a condition holding
        a subquery down to the scan, so with a view of values (`filters.single_view`) the rows are
        deleted in two statements whose table filters are pushed down: those `where` matches
        whatever the view holds, then, by MERGE, those of the view's values among the rest it may
        match (a target-only condition in MERGE's ON clause prunes the files it reads)."""
        types = {f.name: f.type for f in self.schema}
        view = single_view(where)
        if view is None:
            session.sql(f"DELETE FROM {target} WHERE {sql_condition(where, types, 'spark')}")
            return
        without = sql_condition(where, types, "spark", view_as=False)
        if without != "false":
            session.sql(f"DELETE FROM {target} WHERE {without}")
        session.sql(f"MERGE INTO {target} AS t USING (SELECT DISTINCT {_quoted(view.values)} AS _lakehouse_member "
                    f"FROM {_quoted(view.view)}) AS s ON t.{_quoted(view.column)} = s._lakehouse_member AND "
                    f"{sql_condition(where, types, 'spark', view_as=True)} WHEN MATCHED THEN DELETE")
