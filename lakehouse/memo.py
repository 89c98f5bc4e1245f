"""A value made once per object, for caches keyed by `id()`: sqlglot's dialects, DuckDB and
Spark sessions, py4j's JVM views."""

from __future__ import annotations

MEMO_LIMIT = 10_000  # entries of a `remembered` table; beyond it the table starts again (names come from data)


def remembered(table: dict, key: tuple, owner, make):
    """`make()` once for `key` (which ends with `id(owner)`) while `owner` is the object it was made
    for: kept beside the value, so its id cannot be reused for another. Hand-written rather than
    `functools.lru_cache`, which would key by the owner's own equality: sqlglot's dialects are
    equal by class, whatever their settings."""
    found = table.get(key)
    if found is None or found[0] is not owner:
        if len(table) >= MEMO_LIMIT:
            table.clear()
        found = table[key] = (owner, make())
    return found[1]
