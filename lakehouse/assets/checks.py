"""Check results as Dagster sees them: specs on the assets, results, and the failure message."""

import json
import re

import dagster as dg

from lakehouse import reporting
from lakehouse.assets.metadata import to_dagster
from lakehouse.checks import evaluate as ev
from lakehouse.checks.catalog import specs_for
from lakehouse.checks.model import CheckOutcome


def dagster_name(name: str) -> str:
    """Dagster check names are identifiers: rule:qty.out_of_range -> rule__qty_out_of_range."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name.replace(":", "__"))


def check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    key = dg.AssetKey(asset.split("/"))
    return [
        dg.AssetCheckSpec(
            dagster_name(s.name), asset=key, blocking=s.blocking,
            description=f"{s.description} [{s.severity}; {s.name}"
            + (f"; max_rows {s.max_rows}" if s.max_rows is not None else "")
            + (f"; max_share {s.max_share}" if s.max_share is not None else "") + "]",
        )
        for s in specs_for(asset)
    ]


def check_result(outcome: CheckOutcome, asset_key: dg.AssetKey | None = None) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(check_name=dagster_name(outcome.name), passed=outcome.passed, asset_key=asset_key,
                               severity=severity, metadata=to_dagster(reporting.check_metadata(outcome)))


def audit_events(write, metadata: dict, table: str, partition: str | None, asset_key: dg.AssetKey | None = None):
    """(materialization or None, check results, failure or None) for an audited write.

    When a blocking check failed there is no materialization: main was not moved, and
    the failure (to raise after reporting the checks) stops everything downstream.
    """
    checks = [check_result(o, asset_key) for o in ev.across_partitions(write.audit)]
    if not write.published:
        failure = dg.Failure(
            description=blocked_message(table, partition, write.branch, write.blocking_failures),
            metadata={"audit_branch": write.branch, "table": table},
        )
        return None, checks, failure
    return dg.MaterializeResult(asset_key=asset_key, metadata=metadata), checks, None


def report(write, metadata: dict, table: str, partition: str | None, asset_key: dg.AssetKey | None = None):
    """Yield an audited write to Dagster: the materialization and its check results, or fail."""
    materialization, checks, failure = audit_events(write, metadata, table, partition, asset_key)
    if materialization is not None:
        yield materialization
    yield from checks
    if failure is not None:
        raise failure


def blocked_message(table: str, partition: str | None, branch: str, failures: list[CheckOutcome]) -> str:
    """What a person needs: which rule, a few offending rows, and where the data went."""
    lines = [f"{table}{' ' + partition if partition else ''}: blocking check(s) failed, nothing was published."]
    for f in failures:
        lines.append(f"- {f.name}{f' [{f.partition}]' if f.partition and f.partition != partition else ''}: {f.message}")
        for row in f.sample:
            lines.append(f"    e.g. {json.dumps(row, default=str)}")
    lines.append(
        f"Readers still see the previous snapshot. The rejected data is on audit branch '{branch}' of {table}: "
        f"lakehouse query --branch {branch} \"select * from {table}\""
    )
    return "\n".join(lines)
