"""What the audits measure, computed by the engine: only counts and a few example rows reach
Python, whatever the table's size (on a cluster, the driver receives aggregates, never a table)."""

from __future__ import annotations

from dataclasses import dataclass

from lakehouse.checks.evaluate import SAMPLE
from lakehouse.resources.engine import Engine
from lakehouse.transforms.silver import api

WHOLE = None  # the group of a measure taken over the whole DataFrame


@dataclass(frozen=True)
class KeyFaults:
    """Key problems of one group: rows with a null key, rows beyond the first of a repeated key, examples."""

    null_rows: int = 0
    null_sample: tuple = ()
    repeated: int = 0
    repeated_sample: tuple = ()


def rows_by(engine: Engine, df, column: str) -> dict[str, int]:
    """Rows of `df` per value of `column` (a date), keyed by its ISO text."""
    F, _ = api(df)
    grouped = df.groupBy(F.col(column).cast("string").alias("_group")).agg(F.count(F.lit(1)).alias("_rows"))
    return {row["_group"]: int(row["_rows"]) for row in engine.to_arrow(grouped).to_pylist()}


def totals(engine: Engine, df, *columns: str) -> dict:
    """Row count ("rows") and the sum of each of `columns` (0 when there are no rows), in one aggregate."""
    F, _ = api(df)
    (row,) = engine.to_arrow(df.agg(F.count(F.lit(1)).alias("_rows"), *[F.sum(c).alias(c) for c in columns])).to_pylist()
    return {"rows": int(row["_rows"] or 0), **{c: row[c] if row[c] is not None else 0 for c in columns}}


def key_faults(engine: Engine, df, keys, by: str | None = None, nulls: bool = True) -> dict[str | None, KeyFaults]:
    """Null and repeated `keys` of `df`, per value of the date column `by` (else for the whole of it).

    Groups with no fault are absent. Two aggregates; the examples are read only for a group
    that has faults (a failing audit), at most SAMPLE rows each.
    """
    F, _ = api(df)
    keys = list(keys)
    group = [F.col(by).cast("string").alias("_group")] if by else [F.lit(None).cast("string").alias("_group")]
    any_null = F.lit(False)
    for key in keys:
        any_null = any_null | F.col(key).isNull()
    faults: dict[str | None, dict] = {}
    if nulls:
        counted = (df.filter(any_null).groupBy(*group).agg(F.count(F.lit(1)).alias("_rows")))
        for row in engine.to_arrow(counted).to_pylist():
            day = row["_group"]
            sample = df.filter(any_null & _in_group(F, by, day)).select(*keys).limit(SAMPLE)
            faults.setdefault(day, {}).update(null_rows=int(row["_rows"]),
                                              null_sample=tuple(engine.to_arrow(sample).to_pylist()))
    present = df.filter(~any_null)
    per_key = present.groupBy(*group, *keys).agg(F.count(F.lit(1)).alias("count_all")).filter(F.col("count_all") > 1)
    extra = per_key.groupBy("_group").agg((F.sum("count_all") - F.count(F.lit(1))).cast("bigint").alias("_extra"))
    repeated = engine.to_arrow(extra).to_pylist()
    if repeated:
        per_key = engine.materialize(per_key)
        for row in repeated:
            day = row["_group"]
            sample = (per_key.filter(_in_group(F, "_group", day) if by else F.lit(True)).select(*keys, "count_all")
                      .orderBy(*keys).limit(SAMPLE))
            faults.setdefault(day, {}).update(repeated=int(row["_extra"]),
                                              repeated_sample=tuple(engine.to_arrow(sample).to_pylist()))
    return {day: KeyFaults(**found) for day, found in faults.items()}


def _in_group(F, column: str | None, value: str | None):
    return F.lit(True) if column is None else F.col(column).cast("string") == F.lit(value)


def missing_from(engine: Engine, wanted, present, key: str) -> tuple[int, tuple]:
    """Distinct non-null `key` values of `wanted` that `present` lacks: how many, and the first few."""
    F, _ = api(wanted)
    missing = engine.materialize(wanted.select(key).filter(F.col(key).isNotNull()).distinct()
                                 .join(present.select(key).distinct(), on=key, how="left_anti"))
    count = missing.count()
    sample = engine.to_arrow(missing.orderBy(key).limit(SAMPLE)).to_pylist() if count else []
    return count, tuple(sample)
