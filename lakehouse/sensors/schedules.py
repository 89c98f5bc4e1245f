"""The 01:15 UTC fallback for the daily customer and product snapshots."""

import datetime as dt

import dagster as dg

from lakehouse.contracts import CONTRACTS
from lakehouse.contracts.model import SNAPSHOT

SNAPSHOT_SOURCES = tuple(c.name for c in CONTRACTS.values() if c.history == SNAPSHOT)
SCHEDULE_NAME = "daily_snapshots"


def snapshot_keys() -> list[dg.AssetKey]:
    return [dg.AssetKey([layer, s]) for s in SNAPSHOT_SOURCES for layer in ("bronze", "silver")]


def build_snapshot_schedule(job) -> dg.ScheduleDefinition:
    """Loads yesterday's (UTC) snapshots even if no sensor tick did; the dimensions follow by automation.

    Rerunning a loaded day is idempotent (the partition is replaced), so the fallback is
    safe when the landing sensor already did the work.
    """

    @dg.schedule(
        name=SCHEDULE_NAME,
        job=job,
        cron_schedule="15 1 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="01:15 UTC: bronze and silver customers and products for the day before.",
    )
    def daily_snapshots(context: dg.ScheduleEvaluationContext):
        day = (context.scheduled_execution_time.astimezone(dt.timezone.utc) - dt.timedelta(days=1)).date()
        return dg.RunRequest(run_key=f"snapshots:{day.isoformat()}", partition_key=day.isoformat(),
                             tags={"lakehouse/trigger": SCHEDULE_NAME})

    return daily_snapshots
