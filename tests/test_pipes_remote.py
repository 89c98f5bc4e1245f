"""Silver steps on "Glue", "EMR Serverless" and "EMR" through Dagster Pipes, with the real job script.

Each stand-in client does what its service does with a job: it starts the job's script
(lakehouse/cluster/run_step.py; on EMR the copy in S3 the job names) with the bootstrap
where the service would put it (Glue: job arguments; EMR Serverless: driver
environment from `spark.emr-serverless.driverEnv.*`; EMR: `spark.yarn.appMasterEnv.*`
from the cluster configuration), and reports the run's state the way the service does.
Everything else is real: the dagster-aws Pipes clients, the S3 context injector and
message reader against the S3 server on 127.0.0.1, the script's Pipes session, the step.

Where a cluster runs spark-submit, the stand-in plays it the way PySpark allows:
PYSPARK_SUBMIT_ARGS names the master, and `./environment` is the unpacked
`spark.archives` Python environment.
"""

import datetime as dt
import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import boto3
import dagster as dg
import pytest
from botocore.exceptions import WaiterError
from dagster_pipes import decode_param

from lakehouse.contracts import CONTRACTS
from lakehouse.generate import generate
from lakehouse.iceberg import TableStore, catalog_from_settings
from lakehouse.ingest import load_bronze
from lakehouse.resources.compute import ENTRY_SCRIPT, Compute
from lakehouse.resources.landing import open_landing_zone
from lakehouse.resources.spark_iceberg import EXTENSIONS, local_jars
from lakehouse.runner import open_instance
from lakehouse.settings import SPARK_JAVA_OPTIONS, AwsSettings, load_settings
from lakehouse.wiring import DAILY_JOB, build_definitions

DAY = dt.date(2026, 3, 2)
SCRIPT = Path(__file__).parents[1] / "lakehouse" / "cluster" / "run_step.py"


class Job:
    """One job run: the script as a subprocess in its own working directory, output to a log."""

    def __init__(self, workdir: Path, argv: list[str], env: dict, spark_submit: bool):
        workdir.mkdir(parents=True)
        if spark_submit:  # spark.archives=...#environment, unpacked
            python = workdir / "environment" / "bin" / "python"
            python.parent.mkdir(parents=True)
            python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # a symlink would lose the venv
            python.chmod(0o755)
            # The cluster's Iceberg runtime (Glue's --datalake-formats iceberg, EMR's classification),
            # and the driver of the local catalog the tests share with the cluster; the quick-starting
            # JVM a local session gets (a cluster's is its own business).
            jars = ",".join(local_jars())
            env = {**env, "PYSPARK_SUBMIT_ARGS": f"--master local[2] --driver-memory 2g --jars {jars} "
                                                 f"--driver-java-options {shlex.quote(SPARK_JAVA_OPTIONS)} "
                                                 f"--conf spark.sql.extensions={EXTENSIONS} pyspark-shell"}
        self.log_path = workdir / "job.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, env=env, cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT)

    def state(self) -> str:
        return "RUNNING" if self.proc.poll() is None else "SUCCEEDED" if self.proc.returncode == 0 else "FAILED"

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text()


def _script_from_s3(uri: str, workdir: Path) -> str:
    """The job's entry point as the service fetches it: from S3."""
    bucket, key = uri[len("s3://"):].split("/", 1)
    workdir.mkdir(parents=True, exist_ok=True)
    local = workdir / Path(key).name
    boto3.client("s3").download_file(bucket, key, str(local))
    return str(local)


class StandInGlue:
    """The part of boto3's Glue client PipesGlueClient uses."""

    meta = SimpleNamespace(region_name="us-east-1")

    def __init__(self, workdir, env):
        self.workdir, self.env, self.runs = workdir, env, {}

    def start_job_run(self, JobName, Arguments):  # noqa: N803 (boto3's parameter names)
        run_id = f"jr_{uuid.uuid4().hex}"
        argv = [sys.executable, "-m", "lakehouse.cluster.run_step"]
        for name, value in Arguments.items():
            argv += [name, value]
        self.runs[run_id] = (JobName, Job(self.workdir / run_id, argv, self.env, spark_submit=False))
        return {"JobRunId": run_id}

    def get_job_run(self, JobName, RunId):  # noqa: N803
        name, job = self.runs[RunId]
        run = {"Id": RunId, "JobName": name, "JobRunState": job.state()}
        if run["JobRunState"] == "FAILED":
            run["ErrorMessage"] = job.output()[-3000:]
        return {"JobRun": run}

    def batch_stop_job_run(self, JobName, JobRunIds):  # noqa: N803
        for run_id in JobRunIds:
            self.runs[run_id][1].proc.kill()
        return {"SuccessfulSubmissions": [{"JobName": JobName, "JobRunId": r} for r in JobRunIds], "Errors": []}


class StandInEMRServerless:
    """The part of boto3's emr-serverless client PipesEMRServerlessClient uses."""

    meta = SimpleNamespace(region_name="us-east-1")
    STATES = {"RUNNING": "RUNNING", "SUCCEEDED": "SUCCESS", "FAILED": "FAILED"}

    def __init__(self, workdir, env):
        self.workdir, self.env, self.runs, self.submitted = workdir, env, {}, []

    def start_job_run(self, **params):
        self.submitted.append(params)
        run_id = uuid.uuid4().hex[:16]
        submit = params["jobDriver"]["sparkSubmit"]
        env = dict(self.env)
        words = shlex.split(submit.get("sparkSubmitParameters", ""))
        for flag, conf in zip(words[::2], words[1::2]):
            assert flag == "--conf", words
            key, _, value = conf.partition("=")
            if key.startswith("spark.emr-serverless.driverEnv."):
                env[key[len("spark.emr-serverless.driverEnv."):]] = value
        script = _script_from_s3(submit["entryPoint"], self.workdir / run_id)
        self.runs[run_id] = Job(self.workdir / run_id / "driver", [sys.executable, script], env, spark_submit=True)
        return {"applicationId": params["applicationId"], "jobRunId": run_id, "arn": f"arn:aws:emr-serverless:{run_id}"}

    def get_job_run(self, applicationId, jobRunId):  # noqa: N803
        job = self.runs[jobRunId]
        state = self.STATES[job.state()]
        run = {"applicationId": applicationId, "jobRunId": jobRunId, "state": state}
        if state == "FAILED":
            run["stateDetails"] = job.output()[-3000:]
        return {"jobRun": run}

    def get_dashboard_for_job_run(self, applicationId, jobRunId):  # noqa: N803
        return {"url": f"https://emr-serverless.example/{applicationId}/{jobRunId}"}

    def cancel_job_run(self, applicationId, jobRunId):  # noqa: N803
        self.runs[jobRunId].proc.kill()
        return {"applicationId": applicationId, "jobRunId": jobRunId}


class StandInEMR:
    """The part of boto3's EMR client PipesEMRClient uses; the cluster runs its one step and ends."""

    meta = SimpleNamespace(region_name="us-east-1")

    def __init__(self, workdir, env):
        self.workdir, self.env, self.clusters, self.submitted = workdir, env, {}, []

    def run_job_flow(self, **params):
        self.submitted.append(params)
        cluster_id = f"j-{uuid.uuid4().hex[:13].upper()}"
        env = dict(self.env)
        for conf in params.get("Configurations", []):
            # Cluster deploy mode: the driver gets spark.yarn.appMasterEnv.* as its environment.
            if conf["Classification"] == "spark-defaults":
                for key, value in conf.get("Properties", {}).items():
                    if key.startswith("spark.yarn.appMasterEnv."):
                        env[key[len("spark.yarn.appMasterEnv."):]] = value
        (step,) = params["Steps"]
        args = step["HadoopJarStep"]["Args"]
        assert args[0] == "spark-submit", args
        script = _script_from_s3(args[-1], self.workdir / cluster_id)
        job = Job(self.workdir / cluster_id / "driver", [sys.executable, script], env, spark_submit=True)
        self.clusters[cluster_id] = (params, job)
        return {"JobFlowId": cluster_id, "ClusterArn": f"arn:aws:elasticmapreduce:cluster/{cluster_id}"}

    def describe_cluster(self, ClusterId):  # noqa: N803
        params, job = self.clusters[ClusterId]
        state = {"RUNNING": "RUNNING", "SUCCEEDED": "TERMINATED", "FAILED": "TERMINATED_WITH_ERRORS"}[job.state()]
        return {"Cluster": {"Id": ClusterId, "Name": params["Name"], "Status": {"State": state}}}

    def get_waiter(self, name):
        stand_in = self

        class Waiter:
            def wait(self, ClusterId, **_):  # noqa: N803
                if name == "cluster_terminated":
                    stand_in.clusters[ClusterId][1].proc.wait()
                    response = stand_in.describe_cluster(ClusterId)
                    if response["Cluster"]["Status"]["State"] == "TERMINATED_WITH_ERRORS":
                        raise WaiterError("ClusterTerminated", "Waiter encountered a terminal failure state: "
                                          "TERMINATED_WITH_ERRORS", response)

        return Waiter()

    def terminate_job_flows(self, JobFlowIds):  # noqa: N803
        for cluster_id in JobFlowIds:
            self.clusters[cluster_id][1].proc.kill()


def remote_compute(kind, client_class, bucket, tmp_path, settings, engine: str, extra_env=None):
    client = client_class(tmp_path / "jobs", {**os.environ, **(extra_env or {})})
    remote = {"LAKEHOUSE_HOME": str(settings.home), "LAKEHOUSE_ENGINE": engine,
              "LAKEHOUSE_START_DATE": settings.start_date.isoformat()}
    aws = AwsSettings(pipes_uri=f"s3://{bucket}/pipes", artifacts_uri=f"s3://{bucket}/artifacts",
                      emr_serverless_app="00fabc123", emr_role_arn="arn:aws:iam::123456789012:role/lakehouse-job",
                      emr_instance_type="m6g.xlarge", emr_instances=3)
    boto3.client("s3").upload_file(str(SCRIPT), bucket, f"artifacts/{ENTRY_SCRIPT}")
    return Compute(kind=kind, pipes_bucket=bucket, pipes_prefix="pipes", aws=aws, remote_settings=remote,
                   client=client, poll_interval=0.5)


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


def assert_reported_back(store, result, events, records):
    assert result.success, [e.message for e in events if e.is_failure]
    silver = store.read("silver.customers")
    assert silver.num_rows > 0 and set(silver["_ingest_date"].to_pylist()) == {DAY}
    (record,) = records
    meta = record.asset_materialization.metadata
    assert meta["dagster/row_count"].value == silver.num_rows
    assert int(meta["snapshot_id"].value) == store.load("silver.customers").current_snapshot().snapshot_id
    columns = {c.name: c for c in meta["dagster/column_schema"].value.columns}
    assert columns["customer_id"].type == "string" and columns["customer_id"].description
    lineage = meta["dagster/column_lineage"].value.deps_by_column
    assert [(d.asset_key, d.column_name) for d in lineage["region"]] == [(dg.AssetKey(["bronze", "customers"]), "region")]
    assert f"lakehouse query --as-of {meta['snapshot_id'].value}" in meta["time_travel"].value
    checks = [e.event_specific_data for e in events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert {c.check_name for c in checks} >= {"accounting", "keys_unique", "rule__customer_id_required"}
    assert all(c.passed for c in checks if c.check_name == "accounting")


def failure_text(events) -> str:
    failure = next(e for e in events if e.event_type_value == "STEP_FAILURE")
    return str(failure.step_failure_data.error.to_string())


FALLBACK_SAID = "fallback to a slower path on the cluster: a stand-in fallback, taken on the cluster"


def fallback_at_start(tmp_path) -> dict:
    """The environment of a job whose process takes a fallback to a slower path as it starts
    (through checked_code, as every fallback does): the cluster's machine ends with the job, so
    the run's log must say it."""
    started = tmp_path / "job_start"
    started.mkdir()
    (started / "sitecustomize.py").write_text(
        "import logging\nfrom lakehouse import checked_code\n"
        "checked_code.warn_once(logging.getLogger('job'), 'a stand-in fallback, taken on the cluster')\n")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(started), os.environ.get("PYTHONPATH")) if p)}


def fallbacks_said(settings, result) -> list[str]:
    with open_instance(settings) as instance:
        return [e.user_message for e in instance.all_logs(result.run_id) if "slower path" in e.user_message]


def strict_quality(tmp_path) -> dict:
    """A quality config under which any quarantined customer blocks the publish."""
    strict = tmp_path / "quality.yaml"
    strict.write_text("assets:\n  silver/customers:\n    quarantine_share: {severity: error, max_share: 0}\n")
    return {"LAKEHOUSE_DQ_CONFIG": str(strict)}


def test_a_silver_step_runs_on_glue_through_pipes_and_reports_back(lakehouse_env, s3_bucket, tmp_path):
    store = load_day(lakehouse_env)
    compute = remote_compute("glue", StandInGlue, s3_bucket, tmp_path, lakehouse_env, engine="spark")
    assert_reported_back(store, *materialize(lakehouse_env, compute, ["silver/customers"]))


def test_a_silver_step_runs_on_emr_serverless_under_spark_submit(lakehouse_env, s3_bucket, tmp_path):
    store = load_day(lakehouse_env)
    compute = remote_compute("emr-serverless", StandInEMRServerless, s3_bucket, tmp_path, lakehouse_env,
                             engine="spark")
    assert_reported_back(store, *materialize(lakehouse_env, compute, ["silver/customers"]))

    (job,) = compute.client.submitted
    assert job["applicationId"] == "00fabc123"
    assert job["executionRoleArn"] == "arn:aws:iam::123456789012:role/lakehouse-job"
    assert job["jobDriver"]["sparkSubmit"]["entryPoint"] == f"s3://{s3_bucket}/artifacts/run_step.py"
    params = job["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"]
    assert f"spark.archives=s3://{s3_bucket}/artifacts/lakehouse-venv.tar.gz#environment" in params
    context = decode_param(params.split("spark.emr-serverless.driverEnv.DAGSTER_PIPES_CONTEXT=")[1].split()[0])
    assert context["bucket"] == s3_bucket and context["key"].startswith("pipes/") and context["key"].endswith("/context.json")
    assert "spark.emr-serverless.driverEnv.DAGSTER_PIPES_MESSAGES=" in params
    # Iceberg's runtime, which the image has but does not load, and its extensions
    assert "--conf spark.jars=/usr/share/aws/iceberg/lib/iceberg-spark3-runtime.jar" in params
    assert "--conf spark.sql.extensions=org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions" in params
    assert job["name"] == f"lakehouse silver customers {DAY}..{DAY}"


def test_a_silver_step_runs_on_its_own_emr_cluster(lakehouse_env, s3_bucket, tmp_path):
    store = load_day(lakehouse_env)
    compute = remote_compute("emr", StandInEMR, s3_bucket, tmp_path, lakehouse_env, engine="duckdb",
                             extra_env=fallback_at_start(tmp_path))
    result, events, records = materialize(lakehouse_env, compute, ["silver/customers"])
    assert_reported_back(store, result, events, records)
    assert fallbacks_said(lakehouse_env, result) == [FALLBACK_SAID]

    (flow,) = compute.client.submitted
    assert flow["ReleaseLabel"] == "emr-7.5.0" and flow["Applications"] == [{"Name": "Spark"}]
    assert flow["Instances"]["KeepJobFlowAliveWhenNoSteps"] is False  # the cluster ends with the step
    groups = {g["InstanceRole"]: (g["InstanceType"], g["InstanceCount"]) for g in flow["Instances"]["InstanceGroups"]}
    assert groups == {"MASTER": ("m6g.xlarge", 1), "CORE": ("m6g.xlarge", 2)}
    (step,) = flow["Steps"]
    args = step["HadoopJarStep"]["Args"]
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
    assert args[-1] == f"s3://{s3_bucket}/artifacts/run_step.py"
    assert "spark.yarn.appMasterEnv.PYSPARK_PYTHON=./environment/bin/python" in args
    assert "spark.sql.extensions=org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions" in args
    assert {"Classification": "iceberg-defaults", "Properties": {"iceberg.enabled": "true"}} in flow["Configurations"]
    assert step["ActionOnFailure"] == "TERMINATE_CLUSTER"
    by_class = {c["Classification"]: c for c in flow["Configurations"]}
    # The Pipes bootstrap, where cluster-mode drivers (appMasterEnv) and spark-env both see it.
    defaults = by_class["spark-defaults"]["Properties"]
    context = decode_param(defaults["spark.yarn.appMasterEnv.DAGSTER_PIPES_CONTEXT"])
    assert context["bucket"] == s3_bucket and context["key"].startswith("pipes/") and context["key"].endswith("/context.json")
    messages = decode_param(defaults["spark.yarn.appMasterEnv.DAGSTER_PIPES_MESSAGES"])
    assert messages["bucket"] == s3_bucket and messages["include_stdio_in_messages"] is True
    assert messages["key_prefix"].startswith("pipes/messages/")  # inside LAKEHOUSE_PIPES_URI, for IAM
    (export,) = by_class["spark-env"]["Configurations"]
    assert export["Classification"] == "export" and set(export["Properties"]) == {
        "DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"}
    assert by_class["iceberg-defaults"]["Properties"] == {"iceberg.enabled": "true"}
    tags = {t["Key"]: t["Value"] for t in flow["Tags"]}
    assert tags["lakehouse:step"] == f"silver customers {DAY}..{DAY}"
    assert any(k.startswith("dagster/") for k in tags)  # the run that launched it


@pytest.mark.parametrize("kind, client", [("glue", StandInGlue), ("emr", StandInEMR)])
def test_a_failed_remote_step_fails_the_dagster_step_with_the_scripts_error(lakehouse_env, s3_bucket, tmp_path,
                                                                           kind, client):
    """The services only say the job or cluster failed; the message carries the script's exception."""
    load_day(lakehouse_env)
    compute = remote_compute(kind, client, s3_bucket, tmp_path, lakehouse_env, engine="duckdb",
                             extra_env=strict_quality(tmp_path))
    result, events, records = materialize(lakehouse_env, compute, ["silver/customers"])
    assert not result.success and not records
    text = failure_text(events)
    assert f"{kind} job for silver customers" in text and "blocking check(s) failed" in text
    assert "quarantine_share" in text


def test_a_remote_step_that_raises_still_sends_its_fallbacks_to_the_runs_log(lakehouse_env, s3_bucket, tmp_path):
    """The job's catalog is not a database: the step raises on the cluster, after the job took a fallback."""
    (not_a_database := tmp_path / "catalog.db").write_text("not a database\n")
    compute = remote_compute("emr", StandInEMR, s3_bucket, tmp_path, lakehouse_env, engine="duckdb",
                             extra_env={**fallback_at_start(tmp_path),
                                        "LAKEHOUSE_CATALOG_URI": f"sqlite:///{not_a_database}"})
    result, events, records = materialize(lakehouse_env, compute, ["silver/customers"])
    assert not result.success and not records
    text = failure_text(events)
    assert "emr job for silver customers" in text and "not a database" in text, text
    assert fallbacks_said(lakehouse_env, result) == [FALLBACK_SAID]


@pytest.mark.parametrize("kind", ["emr-serverless", "emr"])
def test_an_undeployed_entry_script_is_named_with_the_fix(lakehouse_env, s3_bucket, tmp_path, kind):
    """Before `lakehouse deploy`, the step fails before any cluster starts, naming the object and the fix."""
    load_day(lakehouse_env)
    client = {"emr-serverless": StandInEMRServerless, "emr": StandInEMR}[kind]
    compute = remote_compute(kind, client, s3_bucket, tmp_path, lakehouse_env, engine="duckdb")
    boto3.client("s3").delete_object(Bucket=s3_bucket, Key=f"artifacts/{ENTRY_SCRIPT}")
    result, events, _ = materialize(lakehouse_env, compute, ["silver/customers"])
    assert not result.success and not compute.client.submitted
    text = failure_text(events)
    assert f"s3://{s3_bucket}/artifacts/run_step.py" in text
    assert "lakehouse deploy --apply" in text and "LAKEHOUSE_ARTIFACTS_URI" in text


def _reported(events, records) -> tuple[dict, dict]:
    """(materialization metadata, check name -> (passed, severity, metadata)) of one silver step."""
    def ours(metadata) -> dict:  # dagster-aws's Glue client adds the job's name, run id and console link
        return {k: v for k, v in metadata.items() if not k.startswith("AWS Glue Job")}

    (record,) = records
    checks = {c.check_name: (c.passed, c.severity, ours(c.metadata))
              for c in (e.event_specific_data for e in events if e.event_type_value == "ASSET_CHECK_EVALUATION")}
    return ours(record.asset_materialization.metadata), checks


def test_a_step_reports_the_same_metadata_and_checks_here_and_through_pipes(lakehouse_env, s3_bucket, tmp_path):
    """One function builds what a step reports, so a Glue run and a local run of the same data agree."""
    remote_home = load_settings({"LAKEHOUSE_HOME": str(tmp_path / "remote-home")})
    for settings in (lakehouse_env, remote_home):
        load_day(settings)
    local, remote = (_reported(*materialize(lakehouse_env, None, ["silver/customers"])[1:]),
                     _reported(*materialize(remote_home, remote_compute(
                         "glue", StandInGlue, s3_bucket, tmp_path, remote_home, engine="duckdb"),
                         ["silver/customers"])[1:]))
    (local_meta, local_checks), (remote_meta, remote_checks) = local, remote
    # The snapshot differs (two tables); every other key and value is the same.
    for meta in (local_meta, remote_meta):
        assert int(meta.pop("snapshot_id").value) and meta.pop("time_travel")
    assert remote_meta == local_meta
    assert any(k.startswith("flagged/") and v.value > 0 for k, v in remote_meta.items())  # what `lakehouse status` sums
    assert any(k.startswith("quarantined_by/") for k in remote_meta)
    assert set(remote_checks) == set(local_checks) and len(local_checks) > 5
    for name, (passed, severity, meta) in local_checks.items():
        got = remote_checks[name]
        assert got[:2] == (passed, severity), name
        assert {k: v for k, v in got[2].items() if meta.get(k) != v} == {}, (name, meta)
