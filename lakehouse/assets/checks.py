"""Check results as Dagster sees them: specs on the assets, results, and the failure message."""

import json
import re

import dagster as dg

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


def check_result(outcome: CheckOutcome) -> dg.AssetCheckResult:
    metadata = {"check": outcome.name, "message": outcome.message}
    if isinstance(outcome.observed, (int, float)):
        metadata["observed"] = dg.MetadataValue.float(float(outcome.observed))
    if outcome.spec.threshold is not None:
        metadata["threshold"] = dg.MetadataValue.float(float(outcome.spec.threshold))
    if outcome.sample:
        metadata["offending_rows"] = dg.MetadataValue.json(json.loads(json.dumps(list(outcome.sample), default=str)))
    if outcome.details:
        metadata["details"] = dg.MetadataValue.json(json.loads(json.dumps(outcome.details, default=str)))
    severity = dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(check_name=dagster_name(outcome.name), passed=outcome.passed,
                               severity=severity, metadata=metadata)


def report(write, metadata: dict, table: str, partition: str | None):
    """Yield an audited write to Dagster: check results, then the materialization.

    When a blocking check failed, the results are reported and the step fails without a
    materialization: main was not moved, and nothing downstream runs.
    """
    checks = [check_result(o) for o in write.audit]
    if not write.published:
        yield from checks
        raise dg.Failure(
            description=blocked_message(table, partition, write.branch, write.blocking_failures),
            metadata={"audit_branch": write.branch, "table": table},
        )
    yield dg.MaterializeResult(metadata=metadata, check_results=checks)


def blocked_message(table: str, partition: str | None, branch: str, failures: list[CheckOutcome]) -> str:
    """What a person needs: which rule, a few offending rows, and where the data went."""
    lines = [f"{table}{' ' + partition if partition else ''}: blocking check(s) failed, nothing was published."]
    for f in failures:
        lines.append(f"- {f.name}: {f.message}")
        for row in f.sample:
            lines.append(f"    e.g. {json.dumps(row, default=str)}")
    lines.append(
        f"Readers still see the previous snapshot. The rejected data is on audit branch '{branch}' of {table}: "
        f"lakehouse query --branch {branch} \"select * from {table}\""
    )
    return "\n".join(lines)
