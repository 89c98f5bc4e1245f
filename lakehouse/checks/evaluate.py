"""Evaluate checks: pure functions from counts and Arrow tables to outcomes.

Each returns a CheckOutcome with the observed value, whether it passed, a short
message and, when it failed, a few offending rows for the run's error message.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.checks.model import CheckOutcome, CheckSpec

SAMPLE = 3


def index(specs: list[CheckSpec]) -> dict[str, CheckSpec]:
    return {s.name: s for s in specs}


def equal(spec: CheckSpec, **values) -> CheckOutcome:
    """Passes when all the named values are equal; observed = largest difference."""
    numbers = list(values.values())
    diff = max(numbers) - min(numbers) if numbers else 0
    shown = ", ".join(f"{k}={v}" for k, v in values.items())
    return CheckOutcome(spec, diff == 0, float(diff), "ok" if diff == 0 else f"differ: {shown}",
                        details={k: str(v) for k, v in values.items()})


def accounting_law(spec: CheckSpec, day: str, counts: dict[str, int]) -> CheckOutcome:
    """bronze = silver + quarantine + duplicate + superseded + unchanged for one ingest date."""
    parts = ("silver", "quarantine", "duplicate", "superseded", "unchanged")
    accounted = sum(counts.get(p, 0) for p in parts)
    diff = counts.get("bronze", 0) - accounted
    shown = ", ".join(f"{p}={counts.get(p, 0)}" for p in parts)
    message = "ok" if diff == 0 else f"{day}: bronze={counts.get('bronze', 0)} but {shown} (off by {diff:+d})"
    return CheckOutcome(spec, diff == 0, float(abs(diff)), message, details={"ingest_date": day, **counts})


def matching(spec: CheckSpec, **groups: dict) -> CheckOutcome:
    """Passes when, within every group (e.g. sales, orders), all the named values are equal."""
    differing = {g: v for g, v in groups.items() if len(set(v.values())) > 1}
    shown = "; ".join(f"{g}: " + ", ".join(f"{k}={x}" for k, x in v.items()) for g, v in differing.items())
    details = {g: {k: str(x) for k, x in v.items()} for g, v in groups.items()}
    return CheckOutcome(spec, not differing, len(differing), "ok" if not differing else f"differ: {shown}",
                        details=details)


def non_empty(spec: CheckSpec, rows: int, nothing_landed: str | None = None) -> CheckOutcome:
    """Passes when there are rows, or when `nothing_landed` says why none were expected (the message)."""
    if not rows and nothing_landed:
        return CheckOutcome(spec, True, 0, nothing_landed)
    return CheckOutcome(spec, rows > 0, rows, "ok" if rows else "the partition has no rows")


def _null_mask(table: pa.Table, key_columns) -> pa.Array:
    mask = pa.array([False] * table.num_rows, pa.bool_())
    for k in key_columns:
        mask = pc.or_(mask, pc.is_null(table[k]))
    return mask


def null_keys(spec: CheckSpec, table: pa.Table, key_columns) -> CheckOutcome:
    """Rows of `table` (only the key columns are needed) with a null key."""
    rows = table.filter(_null_mask(table, key_columns))
    return null_keys_found(spec, rows.num_rows, tuple(rows.slice(0, SAMPLE).to_pylist()))


def null_keys_found(spec: CheckSpec, rows: int, sample: tuple = ()) -> CheckOutcome:
    """`rows` rows with a null key (counted by the engine; `sample`: a few of them)."""
    return CheckOutcome(spec, rows == 0, rows, "ok" if not rows else f"{rows:,} rows with a null key", sample)


def unique_keys(spec: CheckSpec, table: pa.Table, key_columns) -> CheckOutcome:
    """Rows beyond the first for every key value that repeats."""
    key_columns = list(key_columns)
    present = table.filter(pc.invert(_null_mask(table, key_columns))).select(key_columns)
    counted = present.group_by(key_columns).aggregate([([], "count_all")])
    repeated = counted.filter(pc.greater(counted["count_all"], 1))
    extra = int(pc.sum(repeated["count_all"]).as_py() or 0) - repeated.num_rows
    return repeated_keys_found(spec, extra, tuple(repeated.slice(0, SAMPLE).to_pylist()))


def repeated_keys_found(spec: CheckSpec, extra: int, sample: tuple = ()) -> CheckOutcome:
    """`extra` rows beyond the first of a repeated key (counted by the engine; `sample`: keys and their counts)."""
    return CheckOutcome(spec, extra == 0, extra, "ok" if not extra else f"{extra:,} repeated key values", sample)


def schema_drift(spec: CheckSpec, previous: dict[str, str] | None, current: dict[str, str]) -> CheckOutcome:
    """Columns added, removed or retyped since the previous materialization (None: first one)."""
    if previous is None:
        return CheckOutcome(spec, True, 0, "first materialization", details={"columns": current})
    added = sorted(set(current) - set(previous))
    removed = sorted(set(previous) - set(current))
    retyped = sorted(c for c in set(current) & set(previous) if current[c] != previous[c])
    diff = {"added": added, "removed": removed,
            "retyped": {c: f"{previous[c]} -> {current[c]}" for c in retyped}}
    changes = len(added) + len(removed) + len(retyped)
    parts = [f"{k}: {v if isinstance(v, list) else list(v.items())}" for k, v in diff.items() if v]
    return CheckOutcome(spec, changes == 0, changes, "ok" if not changes else "; ".join(parts), details=diff)


def counted(spec: CheckSpec, observed: int, total: int, sample: tuple = ()) -> CheckOutcome:
    """A count (and its share of `total`) against the spec's max_share, else its max_rows."""
    share = observed / total if total else 0.0
    if spec.max_share is not None:
        passed, shown = share <= spec.max_share, f"{observed:,} rows ({share:.2%}) > {spec.max_share:.2%}"
    else:
        limit = spec.max_rows or 0
        passed, shown = observed <= limit, f"{observed:,} rows > {limit:,}"
    return CheckOutcome(spec, passed, observed, "ok" if passed else shown, () if passed else sample,
                        {"share": round(share, 6)} if total else {})


def freshness(spec: CheckSpec, newest: dt.datetime | None, now: dt.datetime) -> CheckOutcome:
    limit = float(spec.options.get("max_age_hours", 36))
    if newest is None:
        return CheckOutcome(spec, False, None, "nothing has landed yet")
    age = (now - newest).total_seconds() / 3600
    return CheckOutcome(spec, age <= limit, round(age, 2),
                        "ok" if age <= limit else f"newest file is {age:.1f} h old (limit {limit:g} h)",
                        details={"newest_landed_at": newest.isoformat()})


def sample_quarantined(quarantined: pa.Table, rule: str = "") -> tuple:
    """A few quarantined rows (that broke `rule`, or any): file, row, rules and landed values."""
    if quarantined.num_rows == 0:
        return ()
    hits = quarantined.filter(pc.match_substring(quarantined["_rules"], rule)) if rule else quarantined
    out = []
    for row in hits.slice(0, SAMPLE).to_pylist():
        landed = {k[len("_src_"):]: v for k, v in row.items() if k.startswith("_src_") and v is not None}
        out.append({"file": row["_source_file"], "row": row["_row_number"], "rules": row["_rules"], "values": landed})
    return tuple(out)


def across_partitions(outcomes: list[CheckOutcome]) -> list[CheckOutcome]:
    """One outcome per check: a range run evaluates per day, but Dagster records its checks once.

    Dagster 1.13 has no per-partition result for a check of a range run (partitioned
    checks are a preview), so the days are summed up here: passed only if every day
    passed, the failing days named in the message, observed = the worst day. The
    per-day outcomes themselves are in ops.dq_results.
    """
    grouped: dict[str, list[CheckOutcome]] = {}
    for o in outcomes:
        grouped.setdefault(o.name, []).append(o)
    out = []
    for group in grouped.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        failed = [o for o in group if not o.passed]
        numbers = [o.observed for o in group if isinstance(o.observed, (int, float))]
        if failed:
            shown = "; ".join(f"{o.partition}: {o.message}" for o in failed[:SAMPLE])
            message = f"failed in {len(failed)} of {len(group)} partitions: {shown}" + (" ..." if len(failed) > SAMPLE else "")
        else:
            message = f"ok in all {len(group)} partitions"
        details = {"partitions": len(group), "failed_partitions": {o.partition: o.message for o in failed}}
        sample = tuple(row for o in failed for row in o.sample)[:SAMPLE]
        out.append(CheckOutcome(group[0].spec, not failed, max(numbers) if numbers else None, message, sample, details))
    return out
