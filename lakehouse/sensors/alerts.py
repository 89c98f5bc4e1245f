"""Run-failure notifications: a short message to SNS when a topic is set, the log otherwise."""

# No `from __future__ import annotations`: Dagster reads the context annotation at runtime.
import dagster as dg

from lakehouse.settings import Settings

SENSOR_NAME = "failure_alerts"
MAX_ERROR = 600  # characters of each failing step's error; the link has the rest


def failure_message(run: dg.DagsterRun, failures: list[tuple[str, str]], ui_url: str) -> tuple[str, str]:
    """(subject, body) for a failed run: assets, partition, failing steps or checks, a link."""
    assets = sorted(k.to_user_string() for k in (run.asset_selection or []))
    partition = run.tags.get("dagster/partition") or (
        f"{run.tags['dagster/asset_partition_range_start']}...{run.tags['dagster/asset_partition_range_end']}"
        if "dagster/asset_partition_range_start" in run.tags else "-"
    )
    failed = ", ".join(step for step, _ in failures) or run.job_name
    subject = f"[lakehouse] run failed: {partition} {failed}"
    lines = [
        f"Run {run.run_id} of {run.job_name} failed.",
        f"Assets: {', '.join(assets) or '(whole job)'}",
        f"Partition: {partition}",
    ]
    if trigger := run.tags.get("dagster/sensor_name") or run.tags.get("dagster/schedule_name"):
        lines.append(f"Triggered by: {trigger}")
    for step, error in failures or [("(run)", "failed before any step ran; see the run's logs")]:
        text = " ".join(error.split())
        lines.append(f"Failed step {step}: {text[:MAX_ERROR]}{'...' if len(text) > MAX_ERROR else ''}")
    lines.append(f"Run: {ui_url}/runs/{run.run_id}")
    return subject[:100], "\n".join(lines)  # SNS subjects stop at 100 characters


def step_failures(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    out = []
    for record in records:
        event = record.event_log_entry.dagster_event
        error = event.step_failure_data.error if event and event.step_failure_data else None
        out.append((event.step_key if event else "?", _root_message(error) if error else "failed"))
    return out


def interrupted(error: str) -> bool:
    """Whether a step's error (from `step_failures`) is Dagster's for a step stopped from outside
    (the run terminated, its process signalled), not one of the step's own."""
    return error.strip().endswith("DagsterExecutionInterruptedError")


def _root_message(error) -> str:
    """The error a person can act on: Dagster wraps an exception from our code in its own."""
    root = error
    while root.cause is not None:
        root = root.cause
    return error.message if root is error else root.message.strip()


def publish(topic_arn: str, subject: str, body: str) -> str:
    """Send to SNS (boto3 honours AWS_ENDPOINT_URL for a test server); returns the message id."""
    import boto3  # here: a code location loading its definitions need not import it

    return boto3.client("sns").publish(TopicArn=topic_arn, Subject=subject, Message=body)["MessageId"]


def build_failure_sensor(settings: Settings) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name=SENSOR_NAME,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        description="Sends failed runs (asset, partition, failing step or check, link) to "
        "LAKEHOUSE_ALERT_TOPIC_ARN, or logs them when no topic is set.",
    )
    def failure_alerts(context: dg.RunFailureSensorContext):
        run = context.dagster_run
        subject, body = failure_message(run, step_failures(context.instance, run.run_id), settings.ui_url)
        if settings.alert_topic_arn:
            message_id = publish(settings.alert_topic_arn, subject, body)
            context.log.info(f"sent to {settings.alert_topic_arn} (message {message_id}): {subject}")
        else:
            context.log.warning(f"{subject}\n{body}\n(set LAKEHOUSE_ALERT_TOPIC_ARN to send this to SNS)")

    return failure_alerts
