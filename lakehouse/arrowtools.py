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
