"""`lakehouse backfill`: a range of ingest dates as a Dagster backfill, exactly as the UI makes one.

The backfill is launched through Dagster's GraphQL API, with the `launchPartitionBackfill`
mutation that the UI's "Materialize selected" dialog sends, executed in process against
the workspace, so no webserver needs to be running. The daemon's backfill loop then runs
it: the partitioned assets as one run for the whole range (their BackfillPolicy is
single-run), the dimensions after them. The UI's Backfills page shows it like any other.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from lakehouse.settings import Settings
from lakehouse.tags import TRIGGER_TAG
from lakehouse.wiring import build_definitions

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""


class BackfillError(ValueError):
    """A backfill request that cannot be launched, with what to change."""


@dataclass(frozen=True)
class BackfillRequest:
    first: dt.date
    last: dt.date
    assets: tuple[dg.AssetKey, ...]

    @property
    def partition_keys(self) -> list[str]:
        return [(self.first + dt.timedelta(days=i)).isoformat() for i in range((self.last - self.first).days + 1)]

    @property
    def title(self) -> str:
        return f"{self.first}..{self.last} ({len(self.partition_keys)} days, {len(self.assets)} assets)"


def plan_backfill(settings: Settings, first: dt.date, last: dt.date, select: str | None,
                  today: dt.date | None = None) -> BackfillRequest:
    """Check the range and resolve the selection; every mistake is a BackfillError naming the fix.

    Without `select`, every partitioned asset. The dimensions are left out: automation
    rebuilds them as soon as silver changes, whereas the backfill daemon, which looks
    at a backfill every 30 seconds, would only launch them on its next pass.
    """
    today = today or dt.datetime.now(dt.timezone.utc).date()
    if first > last:
        raise BackfillError(f"--start {first} is after --end {last}")
    if first < settings.start_date:
        raise BackfillError(f"--start {first} is before the first partition, LAKEHOUSE_START_DATE={settings.start_date}; "
                            "start later or set LAKEHOUSE_START_DATE earlier")
    if last > today:
        raise BackfillError(f"--end {last} is in the future; the last partition is today, {today} (UTC)")
    graph = build_definitions(settings).resolve_asset_graph()
    try:
        selection = dg.AssetSelection.from_string(select) if select else dg.AssetSelection.all()
        keys = selection.resolve(graph)
    except Exception as exc:  # Dagster raises several types for a bad selection string
        raise BackfillError(f"--select {select!r}: {exc}; e.g. --select 'group:silver or group:gold', "
                            "--select 'key:silver/orders+' (and everything downstream)") from None
    runnable = tuple(sorted((k for k in keys if graph.get(k).is_materializable
                             and (select or graph.get(k).is_partitioned)), key=lambda k: k.to_user_string()))
    if not runnable:
        raise BackfillError(f"--select {select!r} matches no asset that can be materialized; "
                            "see the asset keys with `dagster asset list -m lakehouse.definitions`")
    if not any(graph.get(k).is_partitioned for k in runnable):
        raise BackfillError(f"--select {select!r} matches only unpartitioned assets; a backfill is over dates")
    return BackfillRequest(first, last, runnable)


def launch_backfill(settings: Settings, request: BackfillRequest) -> str:
    """Send the UI's mutation for `request`; returns the backfill id."""
    from lakehouse.runner import prepare_instance

    workspace = prepare_instance(settings)
    params = {
        "partitionNames": request.partition_keys,
        "assetSelection": [{"path": list(k.path)} for k in request.assets],
        "title": request.title,
        "description": "launched by `lakehouse backfill`",
        "tags": [{"key": TRIGGER_TAG, "value": "lakehouse backfill"}],
    }
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        launched = _send(instance, workspace, LAUNCH, params, "launchPartitionBackfill", "LaunchBackfillSuccess",
                         "backfill")
    return launched["backfillId"]


def _send(instance: dg.DagsterInstance, workspace, mutation: str, params: dict, field: str, success: str,
          what: str) -> dict:
    """Execute one of the UI's GraphQL mutations in process; its result, or a BackfillError saying why not."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster_graphql.cli import execute_query

    with WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace)])) as context:
        result = execute_query(context, mutation, {"params": params})
    if result.get("errors"):
        raise BackfillError(f"Dagster refused the {what}: " + "; ".join(e["message"] for e in result["errors"]))
    launched = result["data"][field]
    if launched["__typename"] != success:
        raise BackfillError(f"Dagster refused the {what} ({launched['__typename']}): {launched.get('message')}")
    return launched


LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on Error { message }
  }
}
"""


def launch_materialization(instance: dg.DagsterInstance, workspace, assets: list[str], reason: str) -> str:
    """Ask for one run of the unpartitioned `assets` (user strings), as the UI's Materialize button does.

    Through the same in-process GraphQL as a backfill: the run is queued, and the daemon's
    run queue launches it. Returns the run id.
    """

    params = {
        "selector": {"repositoryLocationName": "lakehouse", "repositoryName": "__repository__",
                     "jobName": "__ASSET_JOB",
                     "assetSelection": [{"path": dg.AssetKey.from_user_string(a).path} for a in assets]},
        "mode": "default",
        "executionMetadata": {"tags": [{"key": TRIGGER_TAG, "value": reason}]},
    }
    return _send(instance, workspace, LAUNCH_RUN, params, "launchRun", "LaunchRunSuccess", "run")["run"]["runId"]
