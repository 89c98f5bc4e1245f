"""Silver: bronze strings -> typed, normalised, validated, de-duplicated, enriched rows.

Pure functions over the PySpark DataFrame API; they run unchanged on DuckDB (via
sqlframe) and on Spark. Everything is derived from the source's contract.

Every bronze row gets exactly one `_outcome`:
  silver      typed and valid, written to silver.<source>
  quarantine  broke at least one quarantine rule (all of them are listed in `_rules`)
  duplicate   the same key and the same content as a row that is kept
  superseded  transactional sources: an older version of a key that a later record corrected
  unchanged   snapshot sources only: identical to the current version of that key

Transactional sources (orders, events) are unique on their key across the whole table.
The rows of one key are ordered by (ingest date, file key, row number); the content of
the last one wins, and the first row holding that content is the one kept (so a record
re-sent later is a duplicate, a changed one a correction). The outcome of a row depends
only on the rows of its key, never on which days were processed first, so day-by-day
runs in any order and range runs give the same tables.

Portability notes (verified on both engines): values are checked with a strict
regular expression before any cast, because DuckDB and Spark disagree on lenient
inputs ('1/3/2026' as dd/MM/yyyy, '1.5' as int); dates parse with try_to_timestamp;
epoch milliseconds become timestamps through an exact decimal division.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pyarrow as pa
from lakehouse.contracts import CONTRACTS, SourceContract
from lakehouse.contracts.declared import DeclarationError, declaration_file
from lakehouse.contracts.model import (
    FLAG,
    IN_FUTURE,
    INVALID,
    MALFORMED,
    NOT_ACCEPTED,
    OUT_OF_RANGE,
    PATTERN,
    QUARANTINE,
    REQUIRED,
    SNAPSHOT,
    Column,
)
from lakehouse.readers import PARSE_ERROR, RAW_RECORD, ROW_NUMBER
from lakehouse.transforms import casing, on_duckdb
from lakehouse.transforms.bronze import INGEST_DATE, INGESTED_AT, LINEAGE_DESCRIPTIONS, SOURCE_FILE

OUTCOME, RULES, FLAGS, ROW_HASH = "_outcome", "_rules", "_flags", "_row_hash"
RECORD_KEY, CONTENT = "_record_key", "_content"
SILVER, QUARANTINED, DUPLICATE, SUPERSEDED, UNCHANGED = "silver", "quarantine", "duplicate", "superseded", "unchanged"
OUTCOMES = (SILVER, QUARANTINED, DUPLICATE, SUPERSEDED, UNCHANGED)
KEY_SEPARATOR = "|"  # between the parts of a composite business key in `_record_key`
SOURCE_PREFIX = "_src_"  # bronze columns as landed, kept for the quarantine record
LINEAGE = (SOURCE_FILE, INGEST_DATE, INGESTED_AT, ROW_NUMBER)
_BRONZE_ONLY = (PARSE_ERROR, RAW_RECORD)

YEAR_10000_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z in epoch milliseconds
_CAST = {"string": "string", "int": "int", "long": "bigint", "date": "date", "timestamp": "timestamp"}


def api(df):
    """The `functions` and `Window` modules of the engine behind `df` (same PySpark API)."""
    if type(df).__module__.startswith("sqlframe"):
        from sqlframe.duckdb import Window
        from sqlframe.duckdb import functions as F
    else:
        from pyspark.sql import Window
        from pyspark.sql import functions as F
    return F, Window


def format_regex(fmt: str) -> str:
    """A strict regex for a Java date format such as dd/MM/yyyy (digits only)."""
    tokens = {"yyyy": r"\d{4}", "MM": r"\d{2}", "dd": r"\d{2}", "HH": r"\d{2}", "mm": r"\d{2}", "ss": r"\d{2}"}
    out, i = "", 0
    while i < len(fmt):
        for token, rx in tokens.items():
            if fmt.startswith(token, i):
                out, i = out + rx, i + len(token)
                break
        else:
            out, i = out + re.escape(fmt[i]), i + 1
    return f"^{out}$"


def _decimal_digits(kind: str) -> tuple[int, int]:
    precision, scale = (int(x) for x in kind[len("decimal(") : -1].split(","))
    return precision, scale


def _normalise(F, value, column: Column):
    if column.normalize == "lower":
        return casing.lower(F, value)
    if column.normalize == "upper":
        return casing.upper(F, value)
    if column.normalize == "phone":
        plus = F.when(value.startswith("+"), F.lit("+")).otherwise(F.lit(""))
        return F.when(value.isNotNull(), F.concat(plus, F.regexp_replace(value, "[^0-9]", "")))
    return value


def _parse(F, value, column: Column):
    """The typed value, or null when `value` does not strictly fit the column's type."""
    kind = column.type
    if kind == "string":
        return value
    if kind in ("int", "long"):
        digits = 9 if kind == "int" else 18
        return F.when(value.rlike(rf"^[+-]?[0-9]{{1,{digits}}}$"), value.cast(_CAST[kind]))
    if kind.startswith("decimal("):
        precision, scale = _decimal_digits(kind)
        dotted = F.regexp_replace(value, ",", ".")
        shape = rf"^[+-]?[0-9]{{1,{precision - scale}}}(\.[0-9]{{1,{scale}}})?$"
        return F.when(dotted.rlike(shape), dotted.cast(kind))
    if kind == "date":
        fmt = column.parse or "yyyy-MM-dd"
        return F.when(value.rlike(format_regex(fmt)), F.to_date(F.try_to_timestamp(value, F.lit(fmt))))
    if kind == "timestamp" and column.parse == "epoch_ms":
        # Before year 10000: a later one (15 digits allow year 33658) is a valid timestamp to both
        # engines, but not a date to Python, and PyIceberg's partitioned write failed the step.
        millis = value.cast("decimal(20,0)")
        # Whole milliseconds on DuckDB (epoch_ms, a UTC wall time, made an instant in UTC whatever
        # the session's zone): its division of a decimal is a double, whose instant was
        # microseconds off far from 1970 (9999-12-31 23:59:59.999 as .999008), where Spark
        # divides decimals exactly.
        moment = (F.call_function("timezone", F.lit("UTC"), F.call_function("epoch_ms", value.cast("bigint")))
                  .cast("timestamp") if on_duckdb(F) else F.timestamp_seconds(millis / 1000))
        return F.when(value.rlike(r"^[0-9]{1,15}$") & (millis < F.lit(YEAR_10000_MS)), moment)
    raise ValueError(f"contract column {column.name}: type {kind!r} with parse {column.parse!r} is not supported")


# Every character Python's str.isspace() calls whitespace (tabs, no-break spaces, line breaks
# a file's mixed line endings leave, ideographic spaces), where SQL's one-argument TRIM removes
# only spaces. One class both regex engines read alike: RE2 (DuckDB) and java.util.regex (Spark).
WHITESPACE = r"[\t\n\x0B\f\r \x{1C}-\x{1F}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]"


def trimmed(F, text):
    """`text` without the whitespace around it (WHITESPACE). Two regular expressions: DuckDB's
    trim(text, characters) with these 29 characters took 2.7 s for 7M values against 0.53 s
    (and TRIM's spaces 0.20 s). java.util.regex backtracks, so on Spark the trailing run starts
    only where no whitespace precedes it: without that, a long run inside a value costs time
    quadratic in its length (RE2, linear, has no lookbehind)."""
    tail = f"{WHITESPACE}+$" if on_duckdb(F) else f"(?<!{WHITESPACE}){WHITESPACE}+$"
    return F.regexp_replace(F.regexp_replace(text, f"^{WHITESPACE}+", ""), tail, "")


def _raw(F, columns: list[str], column: Column, prefix: str = SOURCE_PREFIX):
    """The landed text for a contract column: trimmed of any whitespace, blank as null, aliases
    as fallback."""
    present = [n for n in (column.name, *column.aliases) if n in columns]
    texts = [F.when(t != "", t) for t in (trimmed(F, F.col(prefix + n)) for n in present)]
    if not texts:
        return F.lit(None).cast("string")
    return texts[0] if len(texts) == 1 else F.coalesce(*texts)


def whole_value(pattern: str) -> str:
    """A declared pattern as both engines must read it: `.` matches any character. A value is one
    value, not lines; without the flag, `.` stops at a line break inside a quoted CSV field, and on
    Spark (java.util.regex) also at U+0085, U+2028 and U+2029, which JSON keeps unescaped."""
    return "(?s)" + pattern


def _rule_conditions(F, column: Column, raw, value) -> list[tuple[str, str, object]]:
    """(rule, action, condition that breaks it) for one column."""
    out = []
    if column.required:
        out.append((column.rule(REQUIRED), QUARANTINE, raw.isNull()))
    if column.type != "string":
        out.append((column.rule(INVALID), QUARANTINE, raw.isNotNull() & value.isNull()))
    if column.accepted:
        out.append((column.rule(NOT_ACCEPTED), QUARANTINE, value.isNotNull() & ~value.isin(*column.accepted)))
    if column.pattern:
        out.append((column.rule(PATTERN), column.pattern_action, value.isNotNull() & ~value.rlike(whole_value(column.pattern))))
    if column.min_value is not None or column.max_value is not None:
        def bound(v):  # dates are declared as ISO strings; a timestamp's bound is that day's midnight, UTC
            return F.lit(v).cast(column.type) if column.type in ("date", "timestamp") else F.lit(v)

        low = F.lit(False)
        if column.min_value is not None:
            low = value <= bound(column.min_value) if column.min_exclusive else value < bound(column.min_value)
        high = value > bound(column.max_value) if column.max_value is not None else F.lit(False)
        out.append((column.rule(OUT_OF_RANGE), QUARANTINE, value.isNotNull() & (low | high)))
    if column.not_after_ingest:
        out.append((column.rule(IN_FUTURE), QUARANTINE, value.isNotNull() & (value > F.col(INGEST_DATE))))
    return out


def _joined(F, parts: list[tuple[str, object]]):
    """Comma-separated names of the parts whose condition holds ('' when none)."""
    if not parts:
        return F.lit("")
    return F.concat_ws(",", *[F.when(cond, F.lit(name)) for name, cond in parts])


def _hash(F, columns: list[str]):
    """md5 over the typed values; U+241F separates, U+2400 stands for null (neither is expected in data)."""
    return F.md5(F.concat_ws("\u241f", *[F.coalesce(F.col(a).cast("string"), F.lit("\u2400")) for a in columns]))


def _key_value(F, contract: SourceContract, values: dict):
    parts = [values[k].cast("string") for k in contract.keys]
    return parts[0] if len(parts) == 1 else F.concat_ws(KEY_SEPARATOR, *parts)


def record_keys(bronze, contract: SourceContract):
    """Bronze rows with `_record_key`: the business key as classify computes it (null if absent or invalid).

    Lets a step find the rows of other days that share a key with the batch without
    classifying them all.
    """
    F, _ = api(bronze)
    landed = [c for c in bronze.columns if c not in LINEAGE and c not in _BRONZE_ONLY]
    values = {}
    for name in contract.keys:
        c = contract.column(name)
        raw = _raw(F, [c for c in landed], c, prefix="")
        values[name] = _parse(F, _normalise(F, raw, c), c)
    return bronze.select("*", _key_value(F, contract, values).alias(RECORD_KEY))


def silver_columns(contract: SourceContract) -> list[tuple[str, str, str]]:
    """(name, type, description) of silver.<source>, in order."""
    cols = [(c.name, c.type, c.description) for c in contract.columns]
    for lookup in contract.lookups:
        other = CONTRACTS[lookup.source]
        for name in lookup.bring:
            col = other.column(name)
            cols.append((name, col.type, f"{col.description} (from {lookup.source}, as of the ingest date)"))
    cols += [(c.name, c.type, c.description) for c in contract.derived]
    cols += [
        (SOURCE_FILE, "string", LINEAGE_DESCRIPTIONS[SOURCE_FILE]),
        (INGEST_DATE, "date", LINEAGE_DESCRIPTIONS[INGEST_DATE]),
        (INGESTED_AT, "timestamp", LINEAGE_DESCRIPTIONS[INGESTED_AT]),
        (ROW_NUMBER, "long", LINEAGE_DESCRIPTIONS[ROW_NUMBER]),
        (FLAGS, "string", "Comma-separated data-quality flags; the row was kept."),
    ]
    if contract.history == SNAPSHOT:
        cols.append((ROW_HASH, "string", "Hash of the attributes, to detect changed versions."))
    return cols


def classify(bronze, contract: SourceContract, previous=None, lookups: dict | None = None,
             cut=lambda df, reused=False: df):
    """Type, validate, de-duplicate and enrich one batch of bronze rows.

    Returns every row with `_outcome`, `_rules` and `_flags`; `silver_rows` and
    `quarantine_rows` cut the two outputs from it.

    The batch may hold several ingest dates (a backfill range): each date is handled as
    if it were processed alone, in date order, so a range run equals day-by-day runs.

    previous: snapshot sources only; the current version (key columns, `_ingest_date`,
      `_row_hash`) of each key before the batch's first date, to tell changed rows from
      unchanged ones.
    lookups: source name -> DataFrame of that source's versions (key, brought columns,
      `_ingest_date`); each row is enriched with the version current on its ingest date.
    cut: called on intermediate results (`reused=True` for one the next step reads twice);
      `Engine.cut` puts them behind a view on DuckDB (a table when reused), where
      sqlframe's planning cost grows with the square of a plan's depth.
    """
    F, Window = api(bronze)
    landed = [c for c in bronze.columns if c not in LINEAGE and c not in _BRONZE_ONLY]
    src = bronze.select(
        *[F.col(c).alias(SOURCE_PREFIX + c) for c in landed],
        *[F.col(c) for c in LINEAGE],
        F.col(PARSE_ERROR),
        F.col(RAW_RECORD),
    )
    raws = {c.name: _raw(F, landed, c) for c in contract.columns}
    values = {c.name: _parse(F, _normalise(F, raws[c.name], c), c) for c in contract.columns}

    rules, flags = [(MALFORMED, F.col(PARSE_ERROR).isNotNull())], []
    outputs = {}
    for c in contract.columns:
        conditions = _rule_conditions(F, c, raws[c.name], values[c.name])
        rules += [(name, cond) for name, action, cond in conditions if action == QUARANTINE]
        flagged = [(name, cond) for name, action, cond in conditions if action == FLAG]
        flags += flagged
        value = values[c.name]
        for _, cond in flagged:  # a flagged value is not trusted: keep the row, null the value
            value = F.when(cond, F.lit(None).cast(_CAST.get(c.type, c.type))).otherwise(value)
        outputs[c.name] = value

    typed = cut(src.select(
        "*",
        *[outputs[c.name].alias(c.name) for c in contract.columns],
        _joined(F, rules).alias(RULES),
        _joined(F, flags).alias("_value_flags"),
    ))

    typed, lookup_flags = enrich(typed, contract, lookups)

    valid = F.col(RULES) == ""
    all_flags = F.concat_ws(",", F.when(F.col("_value_flags") != "", F.col("_value_flags")),
                            *[F.when(cond, F.lit(name)) for name, cond in lookup_flags])
    attributes = [c.name for c in contract.columns]
    ranked = cut(typed.select("*", valid.alias("_valid"), all_flags.alias(FLAGS),
                              _key_value(F, contract, {k: F.col(k) for k in contract.keys}).alias(RECORD_KEY),
                              _hash(F, attributes).alias(CONTENT)))

    if contract.history == SNAPSHOT:
        # The latest row of a key within a day is that day's snapshot of it.
        window = Window.partitionBy("_valid", INGEST_DATE, *contract.keys).orderBy(
            F.col(SOURCE_FILE).desc(), F.col(ROW_NUMBER).desc())
        ranked = cut(ranked.select("*", F.row_number().over(window).alias("_rank"),
                                   F.col(CONTENT).alias(ROW_HASH)), reused=True)  # joined with itself below
        ranked = ranked.join(_prior_hashes(ranked, contract.keys, previous), on=_same_version(F, contract.keys),
                             how="left")
        same = F.col("_prior_hash").isNotNull() & (F.col("_prior_hash") == F.col(ROW_HASH))
        outcome = (
            F.when(~F.col("_valid"), F.lit(QUARANTINED))
            .when(F.col("_rank") > 1, F.lit(DUPLICATE))
            .when(same, F.lit(UNCHANGED))
            .otherwise(F.lit(SILVER))
        )
    else:
        # Over all rows of a key: the content of the last one wins; its first row is kept.
        latest_first = Window.partitionBy("_valid", *contract.keys).orderBy(
            F.col(INGEST_DATE).desc(), F.col(SOURCE_FILE).desc(), F.col(ROW_NUMBER).desc())
        per_content = Window.partitionBy("_valid", *contract.keys, CONTENT).orderBy(
            F.col(INGEST_DATE), F.col(SOURCE_FILE), F.col(ROW_NUMBER))
        ranked = cut(ranked.select("*", F.first(F.col(CONTENT)).over(latest_first).alias("_winning"),
                                   F.row_number().over(per_content).alias("_rank")))
        outcome = (
            F.when(~F.col("_valid"), F.lit(QUARANTINED))
            .when(F.col(CONTENT) != F.col("_winning"), F.lit(SUPERSEDED))
            .when(F.col("_rank") > 1, F.lit(DUPLICATE))
            .otherwise(F.lit(SILVER))
        )

    rows = ranked.select("*", outcome.alias(OUTCOME))
    return derive(rows, contract)


def enrich(typed, contract: SourceContract, lookups: dict):
    """Bring the looked-up columns onto `typed`; returns it with [(flag, condition for an unknown key)].

    Each row takes the other source's version current on its ingest date, or, for a key
    that first arrived later, that key's first version (a late-arriving reference: the
    row is enriched as soon as the key is known). A key with no version is flagged.
    """
    F, _ = api(typed)
    lookup_flags = []
    for lookup in contract.lookups:
        # Distinct key names on the two sides: with join(on=[name]) sqlframe resolves the
        # unqualified name to the right side, which is null exactly when nothing matched.
        found, since, until, first = (f"_lookup_{lookup.source}", f"_from_{lookup.source}", f"_to_{lookup.source}",
                                      f"_first_{lookup.source}")
        table = validity(lookups[lookup.source], (lookup.key,)).select(
            F.col(lookup.key).alias(found), *[F.col(b) for b in lookup.bring],
            F.col(VALID_FROM).alias(since), F.col(VALID_TO).alias(until), F.col(FIRST_VERSION).alias(first),
        )
        as_of = (F.col(since) <= F.col(INGEST_DATE)) & (F.col(until).isNull() | (F.col(INGEST_DATE) < F.col(until)))
        earliest = F.col(first) & (F.col(INGEST_DATE) < F.col(since))
        typed = typed.join(table, on=(F.col(lookup.column) == F.col(found)) & (as_of | earliest), how="left")
        typed = typed.drop(since, until, first)
        lookup_flags.append((lookup.flag, F.col(lookup.column).isNotNull() & F.col(found).isNull()))
    return typed, lookup_flags


def stale_enrichment(silver, contract: SourceContract, lookups: dict):
    """Keys (`_record_key`) of silver rows whose enrichment differs from what the lookups give now.

    A reference key that arrived late, or a version that landed for an earlier day, changes
    what rows already in silver should carry; the step recomputes those keys.
    """
    F, _ = api(silver)
    brought = [b for lookup in contract.lookups for b in lookup.bring]
    old = silver.select(*contract.keys, *[lk.column for lk in contract.lookups], INGEST_DATE, FLAGS,
                        *[F.col(b).alias(f"_old_{b}") for b in brought])
    now, lookup_flags = enrich(old, contract, lookups)
    flags = F.split(F.coalesce(F.col(FLAGS), F.lit("")), ",")
    differs = F.lit(False)
    for b in brought:
        differs = differs | ~F.col(b).eqNullSafe(F.col(f"_old_{b}"))
    for flag, unknown in lookup_flags:
        differs = differs | (unknown != F.array_contains(flags, F.lit(flag)))
    return now.filter(differs).select(_key_value(F, contract, {k: F.col(k) for k in contract.keys}).alias(RECORD_KEY))


def _prior_hashes(ranked, keys: tuple[str, ...], previous):
    """Per key and ingest date of the batch: the hash of the version current the day before.

    The version current before day D is the newest kept row of any earlier day, whether
    that row was itself new or unchanged (an unchanged row has the current hash). So a
    lag over the batch's kept rows, seeded with `previous`, gives every day's answer at
    once, without processing the days one after another.
    """
    F, Window = api(ranked)
    kept = ranked.filter(F.col("_valid") & (F.col("_rank") == 1)).select(
        *keys, INGEST_DATE, ROW_HASH, F.lit(1).alias("_in_batch"))
    if previous is not None:
        seed = previous.select(*keys, INGEST_DATE, ROW_HASH, F.lit(0).alias("_in_batch"))
        kept = seed.unionByName(kept)
    window = Window.partitionBy(*keys).orderBy(F.col(INGEST_DATE), F.col("_in_batch"))
    lagged = kept.select("*", F.lag(F.col(ROW_HASH)).over(window).alias("_prior_hash"))
    return lagged.filter(F.col("_in_batch") == 1).select(
        *[F.col(k).alias(f"_prior_{k}") for k in keys], F.col(INGEST_DATE).alias("_prior_day"), "_prior_hash")


def _same_version(F, keys: tuple[str, ...]):
    match = F.col(INGEST_DATE) == F.col("_prior_day")
    for k in keys:
        match = match & (F.col(k) == F.col(f"_prior_{k}"))
    return match


def silver_rows(rows, contract: SourceContract):
    """The rows for silver.<source>, in its column order."""
    F, _ = api(rows)
    names = [name for name, _, _ in silver_columns(contract)]
    return rows.filter(F.col(OUTCOME) == SILVER).select(*names)


SET_ASIDE = (QUARANTINED, DUPLICATE, SUPERSEDED)  # outcomes recorded in silver.quarantine


def quarantine_rows(rows):
    """Rows for silver.quarantine: lineage, why (the rules broken, or duplicate/superseded), values as landed.

    Every row whose key parsed carries it (`_record_key`): a later run that touches the key
    recomputes all its rows, wherever they landed, and replaces them here by that key.
    """
    F, _ = api(rows)
    landed = [c for c in rows.columns if c.startswith(SOURCE_PREFIX)]
    broken = F.col(OUTCOME) == QUARANTINED
    return rows.filter(F.col(OUTCOME).isin(*SET_ASIDE)).select(
        *LINEAGE, F.when(broken, F.col(RULES)).otherwise(F.col(OUTCOME)).alias(RULES),
        F.col(PARSE_ERROR), F.col(RAW_RECORD),
        F.col(RECORD_KEY).cast("string").alias(RECORD_KEY), *landed,
    )


def quarantine_records(rows: pa.Table, source: str, run_id: str, now: dt.datetime) -> pa.Table:
    """Rows for silver.quarantine from `quarantine_rows` output (Arrow)."""
    landed = [c for c in rows.column_names if c.startswith(SOURCE_PREFIX)]
    originals = [
        json.dumps({c[len(SOURCE_PREFIX):]: v for c, v in record.items() if v is not None}, ensure_ascii=False)
        for record in rows.select(landed).to_pylist()
    ]
    n = rows.num_rows
    return pa.table(
        {
            "source": pa.array([source] * n, pa.string()),
            "ingest_date": rows[INGEST_DATE],
            "source_file": rows[SOURCE_FILE],
            "row_number": rows[ROW_NUMBER],
            "rules": pa.array([r.split(",") for r in rows[RULES].to_pylist()], pa.list_(pa.string())),
            "parse_error": rows[PARSE_ERROR],
            "raw_record": rows[RAW_RECORD],
            "original": pa.array(originals, pa.string()),
            "record_key": rows[RECORD_KEY],
            "run_id": pa.array([run_id] * n, pa.string()),
            "quarantined_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def _derivations(F) -> dict:
    """The code behind a declaration's `derived` columns, by column name (custom transform logic):
    (the declared columns it reads, the computation)."""
    return {
        "sales_amount": (("qty", "unit_price"), lambda: _sales_amount(F)),
        "event_date": (("timestamp",), lambda: F.to_date(F.col("timestamp"))),
    }


def _sales_amount(F):
    """qty * unit_price as decimal(18,2), multiplied wide first. Derived columns are computed for
    every row, and a quarantined row's qty and price may be as large as their types allow: their
    product overflows decimal(18,2), which DuckDB refuses (the step failed) and Spark makes null.
    Such a product is null on both; a valid row's bounds (max_value) keep it far below."""
    wide = F.col("qty").cast("decimal(20,0)") * F.col("unit_price")  # over 18 digits: DuckDB keeps 18 else
    return F.when(F.abs(wide) < F.lit(10 ** 16), wide.cast("decimal(18,2)"))


DERIVATIONS = {name: inputs for name, (inputs, _) in _derivations(None).items()}  # the names a declaration may use


def derive(df, contract: SourceContract):
    """The contract's declared `derived` columns, computed."""
    if not contract.derived:
        return df
    F, _ = api(df)
    code = _derivations(F)
    return df.select("*", *[code[c.name][1]().alias(c.name) for c in contract.derived])


_unknown = [f"{c.name} ({contract.name})" for contract in CONTRACTS.values() for c in contract.derived
            if c.name not in DERIVATIONS]
if _unknown:
    raise DeclarationError(f"derived column(s) with no code: {', '.join(_unknown)}; declare only "
                           f"{', '.join(sorted(DERIVATIONS))}, or add the computation to _derivations in "
                           "lakehouse/transforms/silver.py")
for _contract in CONTRACTS.values():  # a name means one computation: it needs the columns that computation reads
    for _column in _contract.derived:
        _missing = [c for c in DERIVATIONS[_column.name] if c not in _contract.column_names]
        if _missing:
            raise DeclarationError(
                f"{declaration_file(_contract.name)}: derived column {_column.name} is computed from {', '.join(DERIVATIONS[_column.name])}"
                f", and {_contract.name} declares no {', '.join(_missing)}; declare them, or add a computation of "
                "your own under a new name to _derivations in lakehouse/transforms/silver.py")


def outcome_counts(rows, contract: SourceContract) -> tuple[object, dict[str, str]]:
    """A DataFrame of counts per ingest date: rows per outcome, per quarantine rule, per flag.

    Returns it with a map from its (plain) column names to labels such as
    `rule:qty.out_of_range` or `flag:unknown_customer`; rule names hold dots, which
    engines treat as struct access in column names.
    """
    F, _ = api(rows)
    sums = [F.count(F.lit(1)).cast("bigint").alias("rows_in")]
    sums += [F.sum(F.when(F.col(OUTCOME) == o, 1).otherwise(0)).cast("bigint").alias(o) for o in OUTCOMES]
    for i, rule in enumerate(contract.quarantine_rules()):
        hit = F.array_contains(F.split(F.col(RULES), ","), F.lit(rule))
        sums.append(F.sum(F.when(hit, 1).otherwise(0)).cast("bigint").alias(f"r{i}"))
    for i, flag in enumerate(contract.flags()):
        hit = (F.col(OUTCOME) == SILVER) & F.array_contains(F.split(F.col(FLAGS), ","), F.lit(flag))
        sums.append(F.sum(F.when(hit, 1).otherwise(0)).cast("bigint").alias(f"f{i}"))
    return rows.groupBy(INGEST_DATE).agg(*sums), outcome_labels(contract)


def outcome_labels(contract: SourceContract) -> dict[str, str]:
    """`outcome_counts`' column names -> their labels."""
    return {"rows_in": "rows_in", **{o: o for o in OUTCOMES},
            **{f"r{i}": f"rule:{rule}" for i, rule in enumerate(contract.quarantine_rules())},
            **{f"f{i}": f"flag:{flag}" for i, flag in enumerate(contract.flags())}}


VALID_FROM, VALID_TO, FIRST_VERSION = "_valid_from", "_valid_to", "_first_version"


def validity(versions, keys: tuple[str, ...]):
    """Versions of a snapshot source with the ingest dates they were current over.

    `_valid_from` is the version's ingest date, `_valid_to` the next version's (null for
    the current one); a row ingested on D takes the version with from <= D < to.
    `_first_version` marks each key's earliest version.
    """
    F, Window = api(versions)
    per_day = Window.partitionBy(*keys, INGEST_DATE).orderBy(F.col(ROW_NUMBER).desc())
    daily = versions.select("*", F.row_number().over(per_day).alias("_day_rank")).filter(F.col("_day_rank") == 1)
    following = Window.partitionBy(*keys).orderBy(F.col(INGEST_DATE))
    return daily.drop("_day_rank").select(
        "*", F.col(INGEST_DATE).alias(VALID_FROM), F.lead(F.col(INGEST_DATE)).over(following).alias(VALID_TO),
        (F.row_number().over(following) == 1).alias(FIRST_VERSION))


def latest_versions(versions, keys: tuple[str, ...]):
    """The newest version (by `_ingest_date`) of each key of a snapshot source."""
    F, Window = api(versions)
    window = Window.partitionBy(*keys).orderBy(F.col(INGEST_DATE).desc(), F.col(ROW_NUMBER).desc())
    ranked = versions.select("*", F.row_number().over(window).alias("_latest"))
    return ranked.filter(F.col("_latest") == 1).drop("_latest")
