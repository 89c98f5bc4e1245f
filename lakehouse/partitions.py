"""The daily ingest-date partitions, and how a write records the partitions it covers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import dagster as dg

PARTITION_KEY = "dagster.partition_key"  # snapshot property: the one partition a write replaced
PARTITION_RANGE = "lakehouse.partition_range"  # snapshot property: first..last, for a range run

Days = dt.date | Sequence[dt.date]


def daily_partitions(start: dt.date) -> dg.DailyPartitionsDefinition:
    """UTC days from `start` through today: files landing today are processed today."""
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC", end_offset=1)


def day_keys(days: Days) -> list[str]:
    """ISO keys of one day or of a contiguous range of days (what a Dagster run covers)."""
    ordered = sorted({days} if isinstance(days, dt.date) else set(days))
    if not ordered:
        raise ValueError("no days given")
    if (ordered[-1] - ordered[0]).days != len(ordered) - 1:
        raise ValueError(f"days must be contiguous: {ordered[0]}..{ordered[-1]} has gaps")
    return [d.isoformat() for d in ordered]


def label(keys: Sequence[str]) -> str:
    """'2026-03-01' for one partition, '2026-03-01..2026-03-30' for a range."""
    return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"


def partition_props(keys: Sequence[str] | None) -> dict[str, str]:
    if not keys:
        return {}
    if len(keys) == 1:
        return {PARTITION_KEY: keys[0]}
    return {PARTITION_RANGE: label(keys)}


def covered(summary: dict[str, str]) -> tuple[str, str] | None:
    """(first, last) partition a snapshot's write replaced, or None when it names none."""
    if PARTITION_KEY in summary:
        return summary[PARTITION_KEY], summary[PARTITION_KEY]
    if PARTITION_RANGE in summary:
        first, _, last = summary[PARTITION_RANGE].partition("..")
        return first, last
    return None
