"""`lakehouse run`: materialize every landed ingest date through the Dagster instance.

Runs are recorded in the instance under DAGSTER_HOME, so `make ui` shows them with
their logs and metadata, exactly as runs launched from the UI would be.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import dagster as dg

from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.layout import DOMAIN, KeyOutsideLayout, parse_key
from lakehouse.resources.landing import open_landing_zone
from lakehouse.settings import Settings
from lakehouse.summary import render_summary
from lakehouse.wiring import DAILY_JOB, DIMENSIONS_JOB, build_definitions

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class RunRecord:
    partition: str
    run_id: str
    ok: bool
    seconds: float
    error: str | None = None


@dataclass
class RunOutcome:
    runs: list[RunRecord] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    summary: str = ""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.runs)

    def render(self) -> str:
        lines = []
        for key, reason in self.skipped:
            lines.append(f"skipped {key}: {reason}")
        for r in self.runs:
            state = "ok" if r.ok else f"FAILED: {r.error}"
            lines.append(f"run {r.run_id[:8]} {r.partition}: {state} ({r.seconds:.1f}s)")
        if not self.runs:
            lines.append("nothing landed: run `lakehouse generate` or upload files first")
        lines += ["", self.summary]
        return "\n".join(lines)


def landed_partitions(settings: Settings) -> tuple[list[str], list[tuple[str, str]]]:
    """Ingest dates with at least one file, plus keys set aside with the reason."""
    zone = open_landing_zone(settings.landing_uri)
    days, skipped = set(), []
    today = dt.datetime.now(dt.timezone.utc).date()
    for obj in zone.list(f"{DOMAIN}/"):
        try:
            key = parse_key(obj.key)
        except KeyOutsideLayout as exc:
            skipped.append((obj.key, str(exc)))
            continue
        if not settings.start_date <= key.ingest_date <= today:
            skipped.append(
                (obj.key, f"ingest date outside the partitions {settings.start_date}..{today} "
                          "(see LAKEHOUSE_START_DATE)")
            )
            continue
        days.add(key.ingest_date.isoformat())
    return sorted(days), skipped


def _error(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            err = event.step_failure_data.error
            return f"{event.step_key}: {err.message.strip()}"
    return "run failed"


INSTANCE_YAML = """\
# Written by `lakehouse run`; edit freely, it is not overwritten.
telemetry:
  enabled: false
"""


def open_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent instance under DAGSTER_HOME that `make ui` shows."""
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    config = settings.dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML)
    return dg.DagsterInstance.from_config(str(settings.dagster_home))


def run_pending(settings: Settings) -> RunOutcome:
    instance = open_instance(settings)
    defs = build_definitions(settings)
    daily, dimensions = defs.resolve_job_def(DAILY_JOB), defs.resolve_job_def(DIMENSIONS_JOB)
    partitions, skipped = landed_partitions(settings)
    outcome = RunOutcome(skipped=skipped)
    for key in partitions:
        outcome.runs.append(_execute(daily, instance, key))
    if partitions:
        outcome.runs.append(_execute(dimensions, instance, None))
    store = TableStore(catalog_from_settings(settings))
    outcome.summary = render_summary(store, instance)
    return outcome


def _execute(job, instance, partition: str | None) -> RunRecord:
    started = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        partition_key=partition,
        raise_on_error=False,
        run_config=QUIET,
        tags={"lakehouse/trigger": "lakehouse run"},
    )
    return RunRecord(
        f"{job.name} {partition or ''}".strip(), result.run_id, result.success,
        time.perf_counter() - started, None if result.success else _error(result),
    )
