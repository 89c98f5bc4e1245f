"""When silver and gold refresh on their own: after their inputs, never past a failed blocking check."""

import dagster as dg

# eager(): as soon as an input partition updates. all_deps_blocking_checks_passed(): an
# input whose blocking check failed (nothing was published) does not trigger anything,
# in this run or later through the automation sensor.
AUTOMATION = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
