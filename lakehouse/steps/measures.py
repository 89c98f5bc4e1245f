"""What the audits measure, computed by the engine: only counts and a few example rows reach
Python, whatever the table's size (on a cluster, the driver receives aggregates, never a table)."""

from __future__ import annotations

from dataclasses import dataclass

from lakehouse.checks.evaluate import SAMPLE
from lakehouse.resources.engine import Engine
from lakehouse.transforms.silver import api

WHOLE = None  # the group of a measure taken over the whole DataFrame


@dataclass(frozen=True)
class Keys:
    """The rows of one group and their key faults: rows with a null key, rows beyond the first
    of a repeated key, and a few examples of each. Measured without repeats (`keys_by`'s
    `repeats=False`), `repeated` is 0: not looked for, not found absent."""

    rows: int = 0
    null_rows: int = 0
    null_sample: tuple = ()
    repeated: int = 0
    repeated_sample: tuple = ()


def rows_by(engine: Engine, df, column: str) -> dict[str, int]:
    """Rows of `df` per value of `column` (a date), keyed by its ISO text."""
    grouped = engine.planned(("rows_by", column), {"df": df}, lambda given: _rows_by(given["df"], column), "arrow")
    return {row["_group"]: int(row["_rows"]) for row in grouped.to_pylist()}


def _rows_by(df, column: str):
    """`rows_by`'s query."""
    F, _ = api(df)
    return df.groupBy(F.col(column).cast("string").alias("_group")).agg(F.count(F.lit(1)).alias("_rows"))


def distinct_dates(engine: Engine, df, column: str) -> set[str]:
    """The distinct non-null dates of `column`, as ISO text."""
    return dates_of(engine, {column: (df, column)})[column]


def dates_of(engine: Engine, parts: dict) -> dict:
    """The distinct non-null dates of each part, a (DataFrame, date column), as ISO text, by part:
    one query for all of them (on Spark one job, not one each), its SQL built once per process
    for the same columns (`Engine.planned`)."""
    names = list(parts)
    if not names:
        return {}
    columns = tuple(column for _, column in parts.values())
    frames = {f"part{i}": df for i, (df, _) in enumerate(parts.values())}
    found = engine.planned(("dates_of", columns), frames, lambda given: _dates(list(given.values()), columns), "arrow")
    out: dict = {name: set() for name in names}
    for i, day in zip(found["_part"].to_pylist(), found["_day"].to_pylist()):
        out[names[i]].add(day)
    return out


def _dates(frames: list, columns: tuple):
    """`dates_of`'s query: (part number, date as text) of each frame's column, distinct and not null."""
    F, _ = api(frames[0])
    union = None
    for i, (df, column) in enumerate(zip(frames, columns)):
        one = df.select(F.lit(i).alias("_part"), F.col(column).cast("string").alias("_day"))
        union = one if union is None else union.union(one)  # by position: the same two columns
    return union.filter(F.col("_day").isNotNull()).distinct()


def totals(engine: Engine, df, *columns: str, dates: str | None = None) -> dict:
    """Row count ("rows") and the sum of each of `columns` (0 when there are no rows), in one
    aggregate; with `dates`, also that date column's distinct values ("dates", sorted ISO text)."""
    (row,) = engine.planned(("totals", columns, dates), {"df": df}, lambda given: _totals(given["df"], columns, dates),
                            "arrow").to_pylist()
    out = {"rows": int(row["_rows"] or 0), **{c: row[c] if row[c] is not None else 0 for c in columns}}
    return {**out, "dates": sorted(row["_dates"] or [])} if dates else out


def _totals(df, columns: tuple, dates: str | None):
    """`totals`' query."""
    F, _ = api(df)
    aggregates = [F.count(F.lit(1)).alias("_rows"), *[F.sum(c).alias(c) for c in columns]]
    if dates:
        aggregates.append(F.collect_set(F.col(dates).cast("string")).alias("_dates"))
    return df.agg(*aggregates)


def keys_by(engine: Engine, df, keys, by: str | None = None, repeats: bool = True) -> dict[str | None, Keys]:
    """Rows and null or repeated `keys` of `df`, per value of the date column `by` (ISO text),
    else for the whole of it (`WHOLE`); a group without rows is absent.

    One aggregate over the rows grouped by key (null keys group together); examples are read
    only for a group with faults (a failing audit), at most SAMPLE of each kind. Without
    `repeats` (where another measure holds the keys unique) the rows are not grouped by key,
    the costly part on millions of keys, and `repeated` is 0.
    """
    keys = list(keys)
    summed = engine.planned(("keys_by", tuple(keys), by, repeats), {"df": df},
                            lambda given: _per_key(given["df"], keys, by, repeats)[3], "arrow")
    out: dict[str | None, Keys] = {}
    for row in summed.to_pylist():
        day, found = row.pop("_group"), {k: int(v or 0) for k, v in row.items()}
        out[day] = Keys(**found, **_samples(engine, df, keys, by, repeats, day, found))
    return out


def _samples(engine: Engine, df, keys: list[str], by: str | None, repeats: bool, day, found: dict) -> dict:
    """Up to SAMPLE examples of the null and the repeated keys of one group, for those it has (a failing audit)."""
    if not (found["null_rows"] or found["repeated"]):
        return {}
    F, _ = api(df)
    per_key, any_null, repeated, _ = _per_key(df, keys, by, repeats)
    in_group = F.lit(True) if by is None else F.col("_group") == F.lit(day)
    samples = {}
    if found["null_rows"]:
        nulls = per_key.filter(in_group & any_null).select(*keys).distinct().limit(SAMPLE)
        samples["null_sample"] = tuple(engine.to_arrow(nulls).to_pylist())
    if found["repeated"]:
        examples = per_key.filter(in_group & repeated).select(*keys, "count_all").orderBy(*keys).limit(SAMPLE)
        samples["repeated_sample"] = tuple(engine.to_arrow(examples).to_pylist())
    return samples


def _per_key(df, keys: list[str], by: str | None, repeats: bool):
    """(rows per key and group, the null-key condition, the repeated-key condition, their sums per group)."""
    F, _ = api(df)
    group = F.col(by).cast("string") if by else F.lit(None).cast("string")
    if repeats:
        per_key = df.groupBy(group.alias("_group"), *keys).agg(F.count(F.lit(1)).alias("count_all"))
    else:  # every row its own group of one: the same sums below, without the hash table of keys
        per_key = df.select(group.alias("_group"), *keys, F.lit(1).alias("count_all"))
    any_null = F.lit(False)
    for key in keys:
        any_null = any_null | F.col(key).isNull()
    repeated = ~any_null & (F.col("count_all") > 1)
    summed = per_key.groupBy("_group").agg(
        F.sum("count_all").cast("bigint").alias("rows"),
        F.sum(F.when(any_null, F.col("count_all")).otherwise(0)).cast("bigint").alias("null_rows"),
        F.sum(F.when(repeated, F.col("count_all") - 1).otherwise(0)).cast("bigint").alias("repeated"))
    return per_key, any_null, repeated, summed


def missing_from(engine: Engine, wanted, present, key: str) -> tuple[int, tuple]:
    """Distinct non-null `key` values of `wanted` that `present` lacks: how many, and the first few."""
    F, _ = api(wanted)
    missing = (wanted.select(key).filter(F.col(key).isNotNull()).distinct()
               .join(present.select(key).distinct(), on=key, how="left_anti"))
    count = totals(engine, missing)["rows"]
    sample = engine.to_arrow(missing.orderBy(key).limit(SAMPLE)).to_pylist() if count else []
    return count, tuple(sample)
