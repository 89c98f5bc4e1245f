"""What is in the lakehouse: per table and partition, files and row counts."""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.iceberg import WRITE_BRANCH_STALE, TableStore, write_branch_made
from lakehouse.layout import SOURCES, shown
from lakehouse.tables import INGESTION_LOG, REJECTED_FILES, bronze_table
from lakehouse.transforms.bronze import IGNORED, INGEST_DATE, INGESTED, LIVE, REJECTED


@dataclass(frozen=True)
class PartitionSummary:
    source: str
    ingest_date: str
    files: int
    rejected_files: int
    bronze_rows: int
    malformed_rows: int


def _counts(table: pa.Table, keys: list[str]) -> dict[tuple, int]:
    if table.num_rows == 0:
        return {}
    grouped = table.group_by(keys).aggregate([([], "count_all")])
    return {tuple(str(row[k]) for k in keys): row["count_all"] for row in grouped.to_pylist()}


def bronze_summary(store: TableStore) -> list[PartitionSummary]:
    """One line per (source, ingest date) that has landed files or bronze rows."""
    log = (
        store.read(INGESTION_LOG.identifier, columns=("source", "ingest_date", "status", "malformed_rows"))
        if store.exists(INGESTION_LOG.identifier)
        else INGESTION_LOG.schema.empty_table()
    )
    log = log.filter(pc.is_in(log["status"], pa.array([INGESTED, REJECTED])))  # the current, loaded files
    files = _counts(log, ["source", "ingest_date"])
    rejected = _counts(log.filter(pc.equal(log["status"], REJECTED)), ["source", "ingest_date"])
    malformed: dict[tuple, int] = {}
    if log.num_rows:
        sums = log.group_by(["source", "ingest_date"]).aggregate([("malformed_rows", "sum")])
        malformed = {(r["source"], str(r["ingest_date"])): r["malformed_rows_sum"] or 0 for r in sums.to_pylist()}
    rows: dict[tuple, int] = {}
    for source in SOURCES:
        ident = bronze_table(source).identifier
        if store.exists(ident):
            counted = _counts(store.read(ident, columns=(INGEST_DATE,)), [INGEST_DATE])
            rows.update({(source, day): n for (day,), n in counted.items()})
    keys = sorted(set(files) | set(rows), key=lambda k: (SOURCES.index(k[0]), k[1]))
    return [
        PartitionSummary(
            source, day, files.get((source, day), 0), rejected.get((source, day), 0),
            rows.get((source, day), 0), malformed.get((source, day), 0),
        )
        for source, day in keys
    ]


def rejected_files(store: TableStore) -> list[dict]:
    if not store.exists(REJECTED_FILES.identifier):
        return []
    table = store.read(REJECTED_FILES.identifier, columns=("source", "ingest_date", "key", "reason"))
    return sorted(table.to_pylist(), key=lambda r: (r["ingest_date"], r["key"]))


def ignored_files(store: TableStore) -> list[dict]:
    """Every version the landing sensor ignored, with the reason (ops.ingestion_log, IGNORED).

    A version loaded since (a file in a future date folder, once that day came) is left
    out. The one source of the "ignored" count and list that `lakehouse run` and
    `lakehouse status` print.
    """
    if not store.exists(INGESTION_LOG.identifier):
        return []
    log = store.read(INGESTION_LOG.identifier,
                     columns=("source", "ingest_date", "key", "etag", "status", "reason", "first_seen")).to_pylist()
    loaded = {(r["key"], r["etag"]) for r in log if r["status"] in LIVE}
    ignored = [r for r in log if r["status"] == IGNORED and (r["key"], r["etag"]) not in loaded]
    return sorted(ignored, key=lambda r: (r["first_seen"], r["key"]))


IGNORED_SHOWN = 50


def render_ignored(store: TableStore) -> str:
    ignored = ignored_files(store)
    if not ignored:
        return "Ignored keys: none."
    rows = [[r["source"] or "-", r["ingest_date"] or "-", shown(r["key"]), r["reason"]]
            for r in ignored[:IGNORED_SHOWN]]
    more = len(ignored) - len(rows)
    return "\n".join(
        [f"Ignored keys ({len(ignored)}), not loaded; recorded in ops.ingestion_log with status IGNORED:",
         format_table(["source", "ingest_date", "key", "reason"], rows)]
        + ([f"... and {more} more (lakehouse query \"select * from ops.ingestion_log where status = 'IGNORED'\")"]
           if more > 0 else [])
    )


_NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?$")


def format_table(headers: list[str], rows: list[list]) -> str:
    """Plain fixed-width text table (stdlib only; the CLI must read well in CI logs)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [bool(rows) and all(_NUMBER.match(str(r[i])) for r in rows) for i in range(len(headers))]
    def line(r):
        padded = (c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
        return "  ".join(padded).rstrip()
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def render_bronze_summary(store: TableStore) -> str:
    parts = bronze_summary(store)
    rows = [[p.source, p.ingest_date, p.files, p.rejected_files, p.bronze_rows, p.malformed_rows] for p in parts]
    totals: dict[str, int] = {}
    for p in parts:
        totals[p.source] = totals.get(p.source, 0) + p.bronze_rows
    out = ["Bronze, per source and ingest date:", format_table(
        ["source", "ingest_date", "files", "rejected", "bronze_rows", "malformed_rows"], rows
    )]
    out.append("")
    out.append("Totals: " + ", ".join(f"bronze.{s} {n:,} rows" for s, n in totals.items()))
    rejected = rejected_files(store)
    if rejected:
        out.append("")
        out.append(f"Rejected files ({len(rejected)}), kept in bronze.rejected_files:")
        out.append(format_table(["ingest_date", "key", "reason"], [[r["ingest_date"], r["key"], r["reason"]] for r in rejected]))
    return "\n".join(out)


def latest_metadata(instance, asset_key: list[str]) -> dict[str, dict]:
    """Partition key -> metadata (plain values) of the latest materialization of an asset."""
    import dagster as dg

    records_filter = dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset_key))
    out: dict[str, dict] = {}
    cursor = None
    while True:  # Dagster returns at most 10,000 records per call
        page = instance.fetch_materializations(records_filter, limit=10_000, cursor=cursor)
        for record in page.records:  # newest first
            materialization = record.asset_materialization
            key = materialization.partition if materialization else None
            if materialization is not None and key not in out:
                out[key] = {k: v.value for k, v in materialization.metadata.items()}
        if not page.has_more:
            return out
        cursor = page.cursor


def silver_accounting(store: TableStore, instance=None) -> list[dict]:
    """Per source and ingest date, counted in the tables: bronze = silver + quarantined + duplicates +
    superseded (+ unchanged), so a later day that superseded an earlier day's rows shows on that day."""
    from lakehouse.accounting import accounting, balanced, unchanged_by_day
    from lakehouse.contracts import CONTRACTS
    from lakehouse.tables import silver_table

    rows = []
    for source in SOURCES:
        if not (store.exists(bronze_table(source).identifier) and store.exists(silver_table(source).identifier)):
            continue
        days = {d.isoformat() for d in pc.unique(store.read(bronze_table(source).identifier,
                                                            columns=(INGEST_DATE,))[INGEST_DATE]).to_pylist()}
        unchanged = unchanged_by_day(store, source) if CONTRACTS[source].history == "snapshot" else {}
        flagged = _flagged(instance, source) if instance is not None else {}
        for day, counts in accounting(store, source, days, unchanged=unchanged).items():
            rows.append({"source": source, "ingest_date": day, **counts, "flagged": flagged.get(day, 0),
                         "balanced": balanced(counts)})
    return rows


def _flagged(instance, source: str) -> dict[str, int]:
    """Rows kept with a flag, per partition, from the latest silver materializations' metadata."""
    return {partition: sum(int(v) for k, v in meta.items() if k.startswith("flagged/"))
            for partition, meta in latest_metadata(instance, ["silver", source]).items() if partition}


def render_accounting(store: TableStore, instance=None) -> str:
    rows = silver_accounting(store, instance)
    if not rows:
        return "Silver: nothing materialized yet."
    table = format_table(
        ["source", "ingest_date", "bronze", "silver", "quarantined", "duplicates", "superseded", "unchanged", "flagged",
         "balanced"],
        [[r["source"], r["ingest_date"], r["bronze"], r["silver"], r["quarantine"], r["duplicate"], r["superseded"],
          r["unchanged"], r["flagged"], "yes" if r["balanced"] else "NO"] for r in rows],
    )
    note = ("Counted in the tables. duplicates = records re-sent with the same key and content; superseded = older "
            "versions a later record corrected (both in silver.quarantine, rules duplicate/superseded); unchanged = "
            "snapshot rows identical to the current version (customers, products); flagged rows are in silver.")
    return ("Silver accounting (bronze = silver + quarantined + duplicates + superseded + unchanged):\n" + table
            + "\n" + note)


def _money(value) -> str:
    return f"{value:,.2f}"


def render_business(store: TableStore) -> str:
    """Sales by day, channel, region and category, from gold.mart_daily_sales."""
    from lakehouse.tables import MART_DAILY_SALES

    if not store.exists(MART_DAILY_SALES.identifier):
        return "Gold: nothing materialized yet."
    mart = store.read(MART_DAILY_SALES.identifier)
    if mart.num_rows == 0:
        return "Gold: gold.mart_daily_sales is empty."
    out = []
    for dim, title in (("order_date", "Sales by order date"), ("channel", "Sales by channel"),
                       ("region", "Sales by region"), ("category", "Sales by category")):
        grouped = mart.group_by(dim).aggregate([("orders", "sum"), ("units", "sum"), ("sales", "sum")])
        ordered = grouped.sort_by([(dim, "ascending")] if dim == "order_date" else [("sales_sum", "descending")])
        rows = [[r[dim], r["orders_sum"], r["units_sum"], _money(r["sales_sum"])] for r in ordered.to_pylist()]
        out.append(f"{title} (gold.mart_daily_sales):\n" + format_table([dim, "orders", "units", "sales"], rows))
    total = pc.sum(mart["sales"]).as_py()
    out.append(f"Total sales {_money(total)} over {pc.sum(mart['orders']).as_py():,} order lines.")
    return "\n\n".join(out)


def render_tables(store: TableStore) -> str:
    """Every table in the catalog: rows and files of its current snapshot, partition spec."""
    rows = []
    for (namespace,) in sorted(store.catalog.list_namespaces()):
        for _, name in sorted(store.catalog.list_tables(namespace)):
            table = store.load(f"{namespace}.{name}")
            snapshot = table.current_snapshot()
            summary = snapshot.summary.additional_properties if snapshot and snapshot.summary else {}
            spec = ", ".join(f"{f.transform}({table.schema().find_column_name(f.source_id)})" for f in table.spec().fields)
            rows.append([f"{namespace}.{name}", int(summary.get("total-records", 0)),
                         int(summary.get("total-data-files", 0)), snapshot.snapshot_id if snapshot else "-",
                         spec or "unpartitioned", table.properties.get("lakehouse.evolution", "-")])
    return "Tables:\n" + format_table(["table", "rows", "files", "snapshot", "partitioned by",
                                       "last evolved to its declaration"], rows)


def branches(store: TableStore) -> list[dict]:
    """Every table's branches other than main, with why they are there: an audit branch is
    kept when its write failed a blocking check (or its run is still auditing); a `write-`
    branch lives only while the spark engine writes an unaudited table (the quarantine), so
    one that stays was left by a write that stopped midway."""
    out = []
    for (namespace,) in sorted(store.catalog.list_namespaces()):
        for _, name in sorted(store.catalog.list_tables(namespace)):
            table = store.load(f"{namespace}.{name}")
            for ref, target in sorted(table.metadata.refs.items()):
                if ref == "main":
                    continue
                snapshot = table.snapshot_by_id(target.snapshot_id)
                head = dt.datetime.fromtimestamp(snapshot.timestamp_ms / 1000, dt.timezone.utc) if snapshot else None
                why = ("a write in progress, or one that stopped midway (main never took it; the table's next "
                       f"write drops it once {WRITE_BRANCH_STALE} old)" if write_branch_made(ref) else
                       "a write that failed a blocking check (see Checks; the next successful write of its asset "
                       "and partition removes it), or a run still auditing")
                out.append({"table": f"{namespace}.{name}", "branch": ref, "head": head, "why": why})
    return out


def render_branches(store: TableStore) -> str:
    found = branches(store)
    if not found:
        return "Branches: none besides main."
    rows = [[b["table"], b["branch"], b["head"].strftime("%Y-%m-%d %H:%M") if b["head"] else "-", b["why"]]
            for b in found]
    return ("Branches (readers see main; look at one with `lakehouse query --branch <branch>`):\n"
            + format_table(["table", "branch", "head snapshot (UTC)", "why it is there"], rows))


def last_check_results(store: TableStore) -> list[dict]:
    """The latest evaluation of every check, per asset and partition, from ops.dq_results."""
    from lakehouse.tables import DQ_RESULTS

    if not store.exists(DQ_RESULTS.identifier):
        return []
    results = store.read(DQ_RESULTS.identifier).to_pylist()
    latest: dict[tuple, dict] = {}
    for r in sorted(results, key=lambda r: r["evaluated_at"]):
        latest[(r["asset"], r["partition"] or "", r["check_name"])] = r
    return [latest[k] for k in sorted(latest)]


def render_checks(store: TableStore) -> str:
    """One line per asset and partition: how many checks passed, and every failed one."""
    rows: dict[tuple, list[dict]] = {}
    for r in last_check_results(store):
        rows.setdefault((r["asset"], r["partition"] or "-"), []).append(r)
    if not rows:
        return "Checks: none evaluated yet."
    lines = []
    for (asset, partition), results in rows.items():
        failed = [r for r in results if not r["passed"]]
        shown = ", ".join(
            f"{r['severity']} {r['check_name']}" + (f"={r['observed']:g}" if r["observed"] is not None else "")
            for r in failed
        )
        state = "BLOCKED" if any(not r["published"] for r in results) else "published"
        lines.append([asset, partition, len(results) - len(failed), len(failed), state, shown])
    return ("Last check results per asset and partition (ops.dq_results):\n"
            + format_table(["asset", "partition", "passed", "failed", "state", "failed checks (observed)"], lines))


def render_all_checks(store: TableStore) -> str:
    """Every check's last result, one line each (`lakehouse status --checks`)."""
    rows = [
        [r["asset"], r["partition"] or "-", r["check_name"], r["severity"], "pass" if r["passed"] else "FAIL",
         "" if r["observed"] is None else f"{r['observed']:g}", "" if r["threshold"] is None else f"{r['threshold']:g}",
         r["message"] if not r["passed"] else ""]
        for r in last_check_results(store)
    ]
    if not rows:
        return "Checks: none evaluated yet."
    return "Last result of every check (ops.dq_results):\n" + format_table(
        ["asset", "partition", "check", "severity", "result", "observed", "threshold", "message"], rows)


def render_summary(store: TableStore, instance) -> str:
    """What `lakehouse run` and `lakehouse status` print."""
    return "\n\n".join(
        [render_tables(store), render_bronze_summary(store), render_ignored(store), render_accounting(store, instance),
         render_checks(store), render_branches(store), render_business(store)]
    )


# Stuck work: what landed but is not in silver yet, and why. One function for `lakehouse
# status` and the end of `lakehouse run`; it reads ops.ingestion_log, ops.dq_results and
# the Dagster instance (planned and recorded materializations, runs), nothing else.

STUCK_AFTER_SECONDS = 600  # a run queued or in progress for longer than this is listed


@dataclass(frozen=True)
class Stuck:
    subject: str  # a source's landed files ("orders"), an asset ("silver/orders") or a run ("run 1a2b3c4d")
    partition: str  # ingest date, or "-"
    state: str  # what is stuck
    why: str  # why, and what to do about it


def stuck_work(store: TableStore, instance, now=None, stuck_after: float = STUCK_AFTER_SECONDS) -> list[Stuck]:
    """Everything landed but not yet in silver, and why; runs queued or in progress for long.

    - files LANDED in ops.ingestion_log, not loaded: no bronze run asked for since they
      landed, the run is queued or in progress, or it failed (which step, which check);
    - bronze partitions whose latest materialization silver has not followed: waiting for
      automation or for the day's lookups, a run in progress, or the run failed, named by
      its failed blocking check and audit branch from ops.dq_results when that was why;
    - runs queued or in progress for more than `stuck_after` seconds.
    """
    import datetime as dt

    import dagster as dg
    from pyiceberg.expressions import EqualTo

    from lakehouse.assets.automation import unfinished_runs
    from lakehouse.contracts import CONTRACTS
    from lakehouse.runner import ACTIVE, describe, first_error, retry_pending
    from lakehouse.tables import DQ_RESULTS
    from lakehouse.transforms.bronze import LANDED

    now = now or dt.datetime.now(dt.timezone.utc)
    runs: dict[str, object] = {}

    def run_record(run_id: str):
        if run_id not in runs:
            runs[run_id] = instance.get_run_record_by_id(run_id)
        return runs[run_id]

    def covers(run, day: str) -> bool:
        tags = run.tags
        if tags.get("dagster/partition") == day:
            return True
        first = tags.get("dagster/asset_partition_range_start")
        last = tags.get("dagster/asset_partition_range_end")
        return bool(first and last and first <= day <= last)

    def latest_attempt(key, day: str):
        """(planned storage id, run record) of the newest run that planned `key` for `day`."""
        found = []
        for info in (instance.get_latest_planned_materialization_info(key, day),
                     instance.get_latest_planned_materialization_info(key)):  # a range plans no single day
            record = run_record(info.run_id) if info else None
            if record is not None and covers(record.dagster_run, day):
                found.append((info.storage_id, record))
        return max(found, key=lambda f: f[0]) if found else (None, None)

    queued = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED)

    def age(record) -> str:
        return _duration(now.timestamp() - (record.start_time or record.create_timestamp.timestamp()))

    def waiting(record, what: str) -> str:
        run = record.dagster_run
        hint = "; queued runs start while a daemon runs" if run.status in queued else ""
        return f"waiting for {what}run {run.run_id[:8]} ({run.status.value} for {age(record)}{hint})"

    failed_checks: dict[tuple[str, str], list[dict]] = {}  # (run id, asset) -> failed blocking checks
    if store.exists(DQ_RESULTS.identifier):
        for r in store.read(DQ_RESULTS.identifier, EqualTo("passed", False)).to_pylist():
            if str(r["severity"]).upper() == "ERROR":
                failed_checks.setdefault((r["run_id"], r["asset"]), []).append(r)

    def why_failed(record, asset: str, day: str) -> str:
        run = record.dagster_run
        checks = sorted(failed_checks.get((run.run_id, asset), []), key=lambda r: r["partition"] != day)
        if checks:
            c = checks[0]
            table = asset.replace("/", ".")
            message = (c["message"] or "").splitlines()[0] if c["message"] else ""
            return (f"blocked by failed check {c['check_name']} of {asset} in run {run.run_id[:8]}"
                    + (f" ({message})" if message else "")
                    + f"; the data is on audit branch {c['branch']}: "
                      f"lakehouse query --branch {c['branch']} \"select * from {table}\"")
        return f"run {run.run_id[:8]} {run.status.value}: {first_error(instance, run.run_id).splitlines()[0]}"

    def retrying(record) -> str | None:
        """Why, for a failed run Dagster will run again (its worker died), else None."""
        if not retry_pending(record.dagster_run, instance):
            return None
        run = record.dagster_run
        return (f"run {run.run_id[:8]} died ({first_error(instance, run.run_id).splitlines()[0]}); Dagster runs it "
                "again (automatic retry) while a daemon runs (`lakehouse run` or `make ui`)")

    out: list[Stuck] = []

    # 1. Files landed but not loaded into bronze.
    landed = []
    if store.exists(INGESTION_LOG.identifier):
        landed = store.read(INGESTION_LOG.identifier, EqualTo("status", LANDED),
                            ("source", "ingest_date", "key", "first_seen")).to_pylist()
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in landed:
        groups.setdefault((r["source"], str(r["ingest_date"])), []).append(r)
    for (source, day), files in sorted(groups.items()):
        first_seen = min(f["first_seen"] for f in files)
        _, record = latest_attempt(dg.AssetKey(["bronze", source]), day)
        if record is not None and record.create_timestamp < first_seen:
            record = None  # planned before these files landed: not their run
        state = f"{len(files)} file(s) landed, not in bronze"
        backfill = f"lakehouse backfill --start {day} --end {day} --select 'key:bronze/{source}+'"
        if record is None:
            why = ("no bronze run asked for since they landed: the landing sensor asks on its next tick "
                   "while a daemon runs (`lakehouse run` or `make ui`)")
        elif record.dagster_run.status in ACTIVE:
            why = waiting(record, "bronze ")
        elif record.dagster_run.status == dg.DagsterRunStatus.SUCCESS:
            why = (f"bronze run {record.dagster_run.run_id[:8]} succeeded without them (they landed while it ran): "
                   "the landing sensor asks again on its next tick")
        else:
            why = retrying(record) or (why_failed(record, f"bronze/{source}", day)
                   + f"; the landing sensor does not ask again for files whose run failed: fix the cause, then "
                     f"{backfill} (or upload the files again)")
        out.append(Stuck(source, day, state, why))

    # 2. Bronze partitions that silver has not followed.
    for source in SOURCES:
        bronze_key, silver_key = dg.AssetKey(["bronze", source]), dg.AssetKey(["silver", source])
        mat = dg.DagsterEventType.ASSET_MATERIALIZATION
        bronze_ids = instance.get_latest_storage_id_by_partition(bronze_key, mat)
        silver_ids = instance.get_latest_storage_id_by_partition(silver_key, mat)
        for day, bronze_id in sorted(bronze_ids.items()):
            if silver_ids.get(day, -1) > bronze_id:
                continue
            bronze_run = next(iter(instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=bronze_key, asset_partitions=[day]), limit=1).records), None)
            planned, record = latest_attempt(silver_key, day)
            same_run = bronze_run is not None and record is not None and record.dagster_run.run_id == bronze_run.run_id
            if record is not None and not (planned > bronze_id or same_run):
                record = None  # an attempt at an older bronze version
            state = "in bronze, not in silver" if day not in silver_ids else "bronze changed, silver not updated"
            if record is not None and record.dagster_run.status in ACTIVE:
                why = waiting(record, "")
            elif record is not None and record.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
                why = retrying(record) or (why_failed(record, f"silver/{source}", day)
                       + "; automation tries again only when its inputs change: fix the data or the rule, then "
                         f"lakehouse backfill --start {day} --end {day} --select 'key:silver/{source}+'")
            else:
                def has(layer: str, name: str) -> bool:
                    return day in instance.get_latest_storage_id_by_partition(dg.AssetKey([layer, name]), mat)

                missing = [lk.source for lk in CONTRACTS[source].lookups if not has("silver", lk.source)]
                unlanded = [s for s in missing if not has("bronze", s)]
                if unlanded:
                    why = (f"waiting for {' and '.join(unlanded)} files of {day} to land: {source} are enriched with "
                           "that day's versions")
                elif missing:
                    why = f"waiting for silver/{' and silver/'.join(missing)} of {day} first (it enriches from them)"
                else:
                    why = ("waiting for the automation sensor: it starts silver on its next tick while a daemon runs "
                           "(`lakehouse run` or `make ui`)")
            out.append(Stuck(f"silver/{source}", day, state, why))

    # 3. Dimensions built before their silver input last changed.
    for lag in lagging_dimensions(instance):
        record = lag.run
        if record is not None and record.dagster_run.status in ACTIVE:
            why = waiting(record, "")
        elif record is not None:
            why = retrying(record) or (f"run {record.dagster_run.run_id[:8]} {record.dagster_run.status.value}: "
                                       f"{first_error(instance, record.dagster_run.run_id).splitlines()[0]}")
        elif (writer := instance.get_run_by_id(lag.writer) if lag.writer else None) is not None and \
                dg.AssetKey.from_user_string(lag.asset) in (writer.asset_selection or ()):
            # A landed day's run writes silver, then the dimensions after the fact (assets/gold.py).
            if writer.status in ACTIVE - {dg.DagsterRunStatus.CANCELING}:
                why = f"run {lag.writer[:8]}, which wrote {lag.input}, rebuilds it after the fact"
            elif retry_pending(writer, instance):
                why = (f"run {lag.writer[:8]} wrote {lag.input} and ended {writer.status.value} before rebuilding it; "
                       "its automatic retry does")
            else:
                why = (f"run {lag.writer[:8]} wrote {lag.input} and ended {writer.status.value} before rebuilding it: "
                       "automation does not ask for it again (the run targeted it); `lakehouse run` asks for it when "
                       "it ends (with a daemon of its own), or materialize it in the UI")
        elif unfinished_runs(instance, {lag.writer} - {None}):
            why = (f"waiting for run {lag.writer[:8]}, which wrote {lag.input}, to end: automation then rebuilds "
                   "the dimensions in one run (InputsRunEnded)")
        else:
            why = ("not rebuilt since: automation rebuilds it on its next tick while a daemon runs (`lakehouse "
                   "run` or `make ui`); once `lakehouse run` has ended, its request was lost (a crash at the "
                   "wrong moment) and `lakehouse run` asks for it")
        out.append(Stuck(lag.asset, "-", f"older than {lag.input}", why))

    # 4. Runs queued or in progress for long.
    for record in instance.get_run_records(dg.RunsFilter(statuses=list(ACTIVE))):
        run = record.dagster_run
        started = record.start_time or record.create_timestamp.timestamp()
        if now.timestamp() - started < stuck_after:
            continue
        tags = run.tags
        partition = tags.get("dagster/partition") or (
            f"{tags['dagster/asset_partition_range_start']}..{tags['dagster/asset_partition_range_end']}"
            if "dagster/asset_partition_range_start" in tags else "-")
        if run.status in queued:
            why = ("queued: runs start while a daemon runs (`lakehouse run` or `make ui`), two at a time and one "
                   "per partition")
        else:
            why = ("in progress: if its process is gone, run monitoring marks it failed and Dagster runs it "
                   "again once a daemon runs (`lakehouse run` or `make ui`)")
        state = f"{run.status.value} for {age(record)}"
        out.append(Stuck(f"run {run.run_id[:8]} ({describe(run)})", partition, state, why))
    return out


@dataclass(frozen=True)
class Lag:
    asset: str  # e.g. gold/dim_customer
    input: str  # the silver asset materialized after it
    # The latest run record that targets `asset`, made after that input changed; else the run that
    # wrote the input, when it ran `asset`'s step to its own end (a landed day's run, `_reached`).
    run: object | None
    writer: str | None = None  # the run that wrote that input (none for a runless write)


def lagging_dimensions(instance) -> list[Lag]:
    """Dimensions whose latest materialization is older than their silver input's latest one.

    A landed day's run rebuilds a dimension after the silver it wrote, automation after any
    other silver change; one still older once nothing runs had its request lost (seen once
    after crash trials), its run failed, or the day's run ended before its step. `run`: the
    run made for it since, or the day's run that reached its step; None when none did.
    """
    import datetime as dt

    import dagster as dg

    from lakehouse.tables import DIMENSION_SOURCES, dimension_table

    out = []
    for source in DIMENSION_SOURCES:
        dim_key = dg.AssetKey(dimension_table(source).identifier.split("."))
        input_key = dg.AssetKey(["silver", source])
        changed, built = (next(iter(instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=k), limit=1)
                                    .records), None) for k in (input_key, dim_key))
        if changed is None or (built is not None and built.storage_id > changed.storage_id):
            continue
        since = dt.datetime.fromtimestamp(changed.timestamp, dt.timezone.utc)
        runs = instance.get_run_records(dg.RunsFilter(created_after=since), limit=200)
        run = next((r for r in runs if dim_key in (r.dagster_run.asset_selection or ())), None)
        if run is None and changed.run_id and _reached(instance, changed.run_id, dim_key):
            run = next(iter(instance.get_run_records(dg.RunsFilter(run_ids=[changed.run_id]), limit=1)), None)
        out.append(Lag(dim_key.to_user_string(), input_key.to_user_string(), run, changed.run_id or None))
    return out


def _reached(instance, run_id: str, key) -> bool:
    """Whether run `run_id` ran the step of asset `key` to its own end (a landed day's run writes
    silver, then the dimensions): it succeeded, or failed by itself (a failed check, an error),
    not stopped (cancelled, its process killed). Then that run is the dimension's own, its outcome
    to report and not to ask again; a step stopped midway is asked for again, as one never reached."""
    import dagster as dg

    from lakehouse.sensors.alerts import interrupted, step_failures

    step = "__".join(key.path)
    done = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS, limit=1000).records
    return (any(r.event_log_entry.step_key == step for r in done)
            or any(failed == step and not interrupted(error) for failed, error in step_failures(instance, run_id)))


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def recovered_runs(instance, limit: int = 500) -> list[str]:
    """Automatic retries among the latest `limit` runs: which run died, why, and how its retry ended."""
    from lakehouse.runner import describe, first_error, retry_of

    lines = []
    for record in instance.get_run_records(limit=limit):
        run = record.dagster_run
        parent_id = retry_of(run)
        if parent_id is None:
            continue
        when = record.create_timestamp.strftime("%Y-%m-%d %H:%M UTC")
        cause = first_error(instance, parent_id).splitlines()[0]
        lines.append(f"- {when} run {parent_id[:8]} {describe(run)} failed ({cause}); run again as {run.run_id[:8]}: "
                     f"{run.status.value}")
    return lines


def render_recovered(instance) -> str:
    """The recovery part of `lakehouse status`: runs whose work was redone after their worker died."""
    lines = recovered_runs(instance)
    if not lines:
        return "Recovered runs: none (no run had to be run again)."
    return "\n".join([f"Recovered runs ({len(lines)}): run again automatically after their worker died:", *lines])


def render_scratch(root: str | None = None, last: int = 5) -> str:
    """The scratch part of `lakehouse status`: local scratch folders that processes which ended without
    removing them (killed, out of memory) left behind, found by a later process: every one it could
    not remove that is still there, and the last few removed."""
    from lakehouse.scratch import removals

    found = removals(root)
    if not found:
        return "Scratch folders: none left behind by an ended process."
    freed = sum(e["bytes"] for e in found if e["removed"])
    left = [e for e in found if not e["removed"] and os.path.isdir(e["folder"])]
    shown = left + [e for e in found if e["removed"]][-last:]
    rows = [[e["at"].replace("T", " ")[:16], e["folder"], e["pid"], _bytes(e["bytes"]),
             "removed" if e["removed"] else "could not be removed: remove it by hand"] for e in shown]
    return (f"Scratch folders left behind by processes that ended without removing them: {len(found)} found, "
            f"{_bytes(freed)} freed; {len(left)} still there:\n"
            + format_table(["found (UTC)", "folder", "process", "size", "outcome"], rows))


def render_fallbacks(home, since: float | None = None) -> str:
    """The fallbacks part of `lakehouse status` (those of the last RECENT_DAYS) and of `lakehouse run`
    (`since` it began; "" when none): library code our replacements were not applied to, run workers
    spawned instead of forked, what a step's end could not undo. Slower, or holding disk space until
    the process ends, never wrong; each message says why."""
    from lakehouse.checked_code import FALLBACKS, RECENT_DAYS, fallbacks

    recent = since is None
    try:
        found = fallbacks(home, time.time() - RECENT_DAYS * 86400 if recent else since)
    except OSError as error:
        return f"Fallbacks to slower paths: could not read {home / FALLBACKS}: {error}"
    if not found:
        return f"Fallbacks to slower paths: none recorded in the last {RECENT_DAYS} days." if recent else ""
    rows = [[dt.datetime.fromtimestamp(e["at"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M"), e["times"],
             e["process"], e["message"]] for e in found]
    when = f"in the last {RECENT_DAYS} days" if recent else "since this command began"
    return (f"Fallbacks to slower paths (results the same) {when}, {len(found)} kind(s), each with why:\n"
            + format_table(["last (UTC)", "processes", "last taken by", "what"], rows))


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def render_stuck_work(store: TableStore, instance, items: list[Stuck] | None = None) -> str:
    """The stuck-work part of `lakehouse status` and `lakehouse run` (`items`: stuck_work's, if at hand)."""
    items = stuck_work(store, instance) if items is None else items
    if not items:
        return "Stuck work: nothing stuck (everything landed is in silver, no run waits for long)."
    lines = [f"Stuck work ({len(items)}): landed but not yet in silver, or runs waiting for long:"]
    lines += [f"- {s.subject} {s.partition}: {s.state}: {s.why}" for s in items]
    return "\n".join(lines)

