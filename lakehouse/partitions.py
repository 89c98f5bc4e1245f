"""The daily ingest-date partitions shared by bronze (and later silver and gold)."""

from __future__ import annotations

import datetime as dt

import dagster as dg


def daily_partitions(start: dt.date) -> dg.DailyPartitionsDefinition:
    """UTC days from `start` through today: files landing today are processed today."""
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC", end_offset=1)
