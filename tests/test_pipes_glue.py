"""A silver step on "Glue" through Dagster Pipes: PipesGlueClient, context and messages in S3, the real job script.

The stand-in Glue client does what Glue does with a job run: it starts the job's
script (lakehouse/jobs/run_step.py) with the run's arguments and reports the run's
state. Everything else is real: PipesGlueClient, the S3 context injector and message
reader against the S3 server on 127.0.0.1, the script's Pipes session, the step.
"""

import datetime as dt
import os
import subprocess
import sys
import uuid
from types import SimpleNamespace

import dagster as dg

from lakehouse.contracts import CONTRACTS
from lakehouse.generate import generate
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.ingest import load_bronze
from lakehouse.resources.compute import Compute
from lakehouse.resources.landing import open_landing_zone
from lakehouse.runner import open_instance
from lakehouse.wiring import DAILY_JOB, build_definitions

DAY = dt.date(2026, 3, 2)


class StandInGlue:
    """The part of boto3's Glue client PipesGlueClient uses; a run is the job script as a subprocess."""

    meta = SimpleNamespace(region_name="us-east-1")

    def __init__(self, log_dir, env):
        self.log_dir, self.env, self.runs = log_dir, env, {}

    def start_job_run(self, JobName, Arguments):  # noqa: N803 (boto3's parameter names)
        run_id = f"jr_{uuid.uuid4().hex}"
        argv = [sys.executable, "-m", "lakehouse.jobs.run_step"]
        for name, value in Arguments.items():
            argv += [name, value]
        log = open(self.log_dir / f"{run_id}.log", "wb")
        self.runs[run_id] = (JobName, subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT), log)
        return {"JobRunId": run_id}

    def get_job_run(self, JobName, RunId):  # noqa: N803
        name, proc, log = self.runs[RunId]
        state = "RUNNING" if proc.poll() is None else "SUCCEEDED" if proc.returncode == 0 else "FAILED"
        run = {"Id": RunId, "JobName": name, "JobRunState": state}
        if state == "FAILED":
            log.flush()
            run["ErrorMessage"] = (self.log_dir / f"{RunId}.log").read_text()[-3000:]
        return {"JobRun": run}

    def batch_stop_job_run(self, JobName, JobRunIds):  # noqa: N803
        for run_id in JobRunIds:
            self.runs[run_id][1].kill()
        return {"SuccessfulSubmissions": [{"JobName": JobName, "JobRunId": r} for r in JobRunIds], "Errors": []}


def glue_compute(settings, bucket, tmp_path, engine: str, extra_env=None) -> Compute:
    env = {**os.environ, **(extra_env or {})}
    remote = {"LAKEHOUSE_HOME": str(settings.home), "LAKEHOUSE_ENGINE": engine,
              "LAKEHOUSE_START_DATE": settings.start_date.isoformat()}
    return Compute(kind="glue", pipes_bucket=bucket, glue_client=StandInGlue(tmp_path, env), remote_settings=remote)


def load_day(settings):
    generate(open_landing_zone(settings.landing_uri), days=1, start=DAY, seed=4, scale=0.05, dirty=True)
    store = TableStore(catalog_from_settings(settings))
    for source in ("customers", "products", "orders"):
        load_bronze(open_landing_zone(settings.landing_uri), store, CONTRACTS[source], DAY, "test")
    return store


def materialize(settings, compute, keys):
    defs = build_definitions(settings, compute=compute)
    with open_instance(settings) as instance:
        result = defs.resolve_job_def(DAILY_JOB).execute_in_process(
            instance=instance, partition_key=DAY.isoformat(), raise_on_error=False,
            asset_selection=[dg.AssetKey(k.split("/")) for k in keys])
        events = list(result.all_events)
        return result, events, instance.fetch_materializations(dg.AssetKey(["silver", "customers"]), limit=5).records


def test_a_silver_step_runs_on_glue_through_pipes_and_reports_back(lakehouse_env, s3_bucket, tmp_path):
    store = load_day(lakehouse_env)
    compute = glue_compute(lakehouse_env, s3_bucket, tmp_path, engine="spark")
    result, events, records = materialize(lakehouse_env, compute, ["silver/customers"])
    assert result.success, [e.message for e in events if e.is_failure]

    silver = store.read("silver.customers")
    assert silver.num_rows > 0 and set(silver["_ingest_date"].to_pylist()) == {DAY}
    (record,) = records
    meta = record.asset_materialization.metadata
    assert meta["dagster/row_count"].value == silver.num_rows
    assert int(meta["snapshot_id"].value) == store.load("silver.customers").current_snapshot().snapshot_id
    assert meta["columns"].value["customer_id"] == "string"
    checks = [e.event_specific_data for e in events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert {c.check_name for c in checks} >= {"accounting", "keys_unique", "rule__customer_id_required"}
    assert all(c.passed for c in checks if c.check_name == "accounting")


def test_a_failed_remote_step_fails_the_dagster_step_with_the_remote_error(lakehouse_env, s3_bucket, tmp_path):
    load_day(lakehouse_env)
    strict = tmp_path / "quality.yaml"  # any quarantined customer blocks the publish
    strict.write_text("assets:\n  silver/customers:\n    quarantine_share: {severity: error, max_share: 0}\n")
    compute = glue_compute(lakehouse_env, s3_bucket, tmp_path, engine="duckdb",
                           extra_env={"LAKEHOUSE_DQ_CONFIG": str(strict)})
    result, events, records = materialize(lakehouse_env, compute, ["silver/customers"])
    assert not result.success and not records
    failure = next(e for e in events if e.event_type_value == "STEP_FAILURE")
    text = str(failure.step_failure_data.error.to_string())
    assert "FAILED" in text and "blocking check(s) failed" in text and "quarantine_share" in text
