"""Arrow helpers shared by the transforms and the table layer."""

from __future__ import annotations

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
