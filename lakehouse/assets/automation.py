"""When silver and gold refresh on their own: after their inputs, never past a failed blocking check."""

import warnings

import dagster as dg

AC = dg.AutomationCondition

# Dagster's eager() without its `in_latest_time_window()` clause: a late file for an old
# ingest date, or a week landing at once, must flow to gold too, not only today's partition.
FOLLOW_INPUTS = AC.eager().without(AC.in_latest_time_window()).with_label("eager, every partition")

# An input counts when its blocking checks passed, or when it is itself requested in this
# tick: then it runs in the same run, and a failed blocking check there fails its step
# and skips everything after it. So one tick chains silver and gold into one run per day.
# (Dagster's all_deps_blocking_checks_passed() wants the checks requested too; checks that
# run inside their asset's step never are, so it would split the chain into a run per layer.)
# An input whose blocking check failed, with nothing published, triggers nothing.
INPUTS_PASSED = AC.all_deps_match(
    AC.all_checks_match(AC.check_passed(), blocking_only=True) | AC.will_be_requested()
).with_label("inputs passed their blocking checks, or run first in the same run")
AUTOMATION = FOLLOW_INPUTS & INPUTS_PASSED

# The unpartitioned dimensions read whatever silver has published. `any_deps_missing` would
# hold them back while any day since LAKEHOUSE_START_DATE has no snapshot, so it is left out.
DIMENSION_AUTOMATION = AC.eager().without(~AC.any_deps_missing()).with_label("after any silver snapshot")

# A backfill over a range of days is one run: each step reads, transforms and writes the
# whole range at once (one engine session, one Iceberg commit per table). One run also
# keeps the days in order, which the snapshot sources' change detection relies on.
RANGE_IN_ONE_RUN = dg.BackfillPolicy.single_run()
# The parameter is marked beta in 1.13 and warns once per asset; the policy itself is
# what Dagster's own docs recommend for ranged backfills, so the warning is only noise.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

# Bronze, silver and gold steps run one at a time across runs (a Dagster concurrency pool;
# the instance config gives every pool a limit of 1). A silver write recomputes keys across
# ingest dates and the fact rewrites whatever drifted from silver, so each step must see
# the tables as the previous step left them. Bronze is in it too: automation orders work by
# when materializations were recorded, which is only sound if no input is published while
# a step reads it (a crash trial left silver older than a bronze retry that overlapped it).
TABLE_WRITERS = "lakehouse_tables"
