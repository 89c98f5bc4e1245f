"""Arrow helpers shared by the transforms and the table layer."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa


def plain_strings(schema: pa.Schema) -> pa.Schema:
    """Nullable fields, `large_string` as `string` (PyIceberg hands out large strings)."""
    return pa.schema(
        [
            pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) else f.type, nullable=True)
            for f in schema
        ]
    )


def conform(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast `data` to `schema`: columns in schema order, missing ones as nulls, extras dropped.

    PyIceberg's type rules are strict (int64 into int32 fails, string_view breaks
    later reads), so every write is conformed to the table schema first.
    """
    columns = [
        data.column(f.name).cast(f.type) if f.name in data.column_names else pa.nulls(data.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def split_by_day(table: pa.Table, column: str, keys: list[str]) -> dict[str, pa.Table]:
    """The rows of each ISO day in `keys` (by date `column`), as zero-copy slices of one sort.

    Per-day checks of a range run use this rather than a filter per day, which would
    scan the whole range once for every day.
    """
    import numpy as np

    if table.num_rows == 0:
        return {k: table for k in keys}
    table = table.sort_by(column)
    values = table[column].cast(pa.int32()).to_numpy(zero_copy_only=False)
    epoch = dt.date(1970, 1, 1)
    out = {}
    for key in keys:
        day = (dt.date.fromisoformat(key) - epoch).days
        lo, hi = np.searchsorted(values, day, "left"), np.searchsorted(values, day, "right")
        out[key] = table.slice(int(lo), int(hi - lo))
    return out


UTC_TS = pa.timestamp("us", tz="UTC")
# Declared column type -> Arrow type (Iceberg: string, int, long, decimal, date, timestamptz).
_SIMPLE = {"string": pa.string(), "int": pa.int32(), "long": pa.int64(), "date": pa.date32(),
           "timestamp": UTC_TS, "boolean": pa.bool_()}


def arrow_type(kind: str) -> pa.DataType:
    """A declared type name (int, long, decimal(p,s), ...) as an Arrow type."""
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    if kind.startswith("decimal("):
        precision, scale = (int(x) for x in kind[len("decimal("):-1].split(","))
        return pa.decimal128(precision, scale)
    raise ValueError(f"unknown column type {kind!r}")


def type_name(t: pa.DataType) -> str:
    """The inverse of `arrow_type`: an Arrow type as a declaration writes it."""
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    if pa.types.is_timestamp(t):
        return "timestamp"
    names = {v: k for k, v in _SIMPLE.items()}
    return names.get(pa.string() if pa.types.is_large_string(t) else t, str(t))
