"""One function per silver and gold step: read from Iceberg, run the pure transform, write.

context.py: what a step works with; reads.py: filtered reads; audit.py: write-audit-publish
and check results; dates.py: the dates a write touched; silver.py and gold.py: the steps.

The Dagster assets call these, and so can a Glue/EMR job, so a step's I/O lives in
one place whatever runs it. Reads are always filtered (by ingest date, or by the
dates a partition touched); only the small dimensions are read whole.

Every write is write-audit-publish: the data goes to an audit branch, the asset's
checks run against that branch, and main is fast-forwarded only when no ERROR check
failed (see `audited_write`). Every evaluation is appended to ops.dq_results.

Late data: an order ingested on day D may be for any earlier order_date. Every write
of a date-partitioned table records, in its snapshot properties, the dates it
touched (before and after), so the marts recompute exactly those days.

Ranges: every partitioned step takes one day or a contiguous range of days (a
backfill run). A range is read, transformed and written as one batch, in one engine
session and one Iceberg commit per table; the checks are still evaluated per day.
"""

from lakehouse.steps.audit import audited_write, branch_name, per_day, previous_value, record_results
from lakehouse.steps.context import AFFECTED, BUILT_FROM_SILVER, COLUMNS, NO_DATES, StepContext, StepResult
from lakehouse.steps.dates import affected_dates
from lakehouse.steps.gold import run_customer_activity, run_daily_sales, run_dimension, run_fact_orders
from lakehouse.steps.reads import frame, keyed, within
from lakehouse.steps.silver import run_silver

__all__ = [
    "AFFECTED", "BUILT_FROM_SILVER", "COLUMNS", "NO_DATES", "STEPS", "StepContext", "StepResult", "affected_dates",
    "audited_write", "branch_name", "frame", "keyed", "per_day", "previous_value", "record_results",
    "run_customer_activity", "run_daily_sales", "run_dimension", "run_fact_orders", "run_silver", "within",
]

# Every silver and gold step by the name the cluster entry point (lakehouse/cluster/run_step.py) takes.
STEPS = {"silver": run_silver, "dimension": run_dimension, "fact_orders": run_fact_orders,
         "mart_daily_sales": run_daily_sales, "mart_customer_activity": run_customer_activity}
