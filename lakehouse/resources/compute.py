"""Where a silver or gold step runs: in this process, or on AWS Glue, EMR Serverless or EMR through Dagster Pipes.

The asset code is the same everywhere (`lakehouse.assets.step.run_step`); only this
resource differs. A remote step runs `lakehouse/cluster/run_step.py` on the cluster. The
Pipes context goes to S3 and the messages come back through S3 (`LAKEHOUSE_PIPES_URI`)
on all three, so one job script serves them all. Pipes does not forward a partition
range, so the keys are passed in the extras, with the step's name, its arguments and
the catalog settings the job needs.

How the bootstrap reaches the script differs, and the Pipes clients handle it: Glue
passes it as job arguments, EMR Serverless as driver environment variables
(`spark.emr-serverless.driverEnv.*`), EMR as `spark-env`/`spark-defaults` configuration
of the cluster it starts for the step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from lakehouse.resources.spark_iceberg import EXTENSIONS, catalog_conf
from lakehouse.settings import AwsSettings, s3_parts

LOCAL, GLUE, EMR_SERVERLESS, EMR = "local", "glue", "emr-serverless", "emr"
ENTRY_SCRIPT = "run_step.py"  # `lakehouse deploy` uploads lakehouse/cluster/run_step.py under this name
PYTHON_ARCHIVE = "lakehouse-venv.tar.gz"  # the Python environment EMR runs the script in (README)
PIPES_CLOSED_WITH_ERROR = "[pipes] external process pipes closed with exception"
EMR_SERVERLESS_ICEBERG_JAR = "/usr/share/aws/iceberg/lib/iceberg-spark3-runtime.jar"  # in EMR Serverless images


def spark_catalog(settings) -> dict[str, str]:
    """The Spark settings of the lakehouse's Iceberg catalog (Glue, with S3FileIO) that a cluster
    job is submitted with, so Spark opens the catalog PyIceberg uses from its first statement
    (the step script sets the same at run time, `lakehouse.resources.engine.get_session`)."""
    from lakehouse.iceberg import catalog_properties_from_settings

    properties = catalog_properties_from_settings(settings)
    return catalog_conf(properties) if properties.get("type") == "glue" else {}


@dataclass
class Compute:
    kind: str = LOCAL
    pipes_bucket: str | None = None  # context and messages: s3://<pipes_bucket>/<pipes_prefix>
    pipes_prefix: str = "dagster-pipes"
    aws: AwsSettings = field(default_factory=AwsSettings)
    remote_settings: dict | None = None  # LAKEHOUSE_* the job reads (catalog, warehouse, engine)
    spark_catalog: dict = field(default_factory=dict)  # Spark settings of the Iceberg catalog (`spark_catalog`)
    client: Any = None  # the service's boto3 client (glue, emr-serverless or emr); default: boto3's
    s3_client: Any = None  # default: boto3's
    poll_interval: float = 5.0  # EMR Serverless status polls (Glue's client polls every 5 s, fixed)

    @classmethod
    def from_settings(cls, settings) -> "Compute":
        """Local, or the cluster LAKEHOUSE_COMPUTE names, reading the same Glue catalog and warehouse."""
        if settings.compute == LOCAL:
            return cls()
        bucket, prefix = s3_parts(settings.aws.pipes_uri)
        remote = {"LAKEHOUSE_PROFILE": settings.profile, "LAKEHOUSE_WAREHOUSE_URI": settings.warehouse_uri,
                  "LAKEHOUSE_START_DATE": settings.start_date.isoformat(), "LAKEHOUSE_ENGINE": "spark",
                  "LAKEHOUSE_HOME": "/tmp/lakehouse"}
        if settings.catalog_uri:
            remote["LAKEHOUSE_CATALOG_URI"] = settings.catalog_uri
        if settings.aws.kms_key_arn:
            remote["LAKEHOUSE_KMS_KEY_ARN"] = settings.aws.kms_key_arn
        return cls(kind=settings.compute, pipes_bucket=bucket, pipes_prefix=prefix or "dagster-pipes",
                   aws=settings.aws, remote_settings=remote, spark_catalog=spark_catalog(settings))

    @property
    def local(self) -> bool:
        return self.kind == LOCAL

    def run(self, context: dg.AssetExecutionContext, step: str, args: list, keys: list[str] | None):
        """Run `step` on the cluster; yields the materialization and check results it reported.

        A failed job fails the step with the job's own error (the exception the script
        reported through Pipes), not only the service's "job failed".
        """
        extras = {"step": step, "args": list(args), "partition_keys": list(keys or []),
                  "settings": dict(self.remote_settings or {})}
        name = " ".join([step, *args, *([f"{keys[0]}..{keys[-1]}"] if keys else [])])
        try:
            invocation = self._launch(context, name, extras)
        except dg.DagsterExecutionInterruptedError:
            raise
        except Exception as exc:
            remote = _remote_error(context)
            if remote is None:
                raise
            raise dg.Failure(description=f"{self.kind} job for {name} failed: {remote}") from exc
        yield from invocation.get_results()

    def _launch(self, context, name: str, extras: dict):
        import boto3
        from dagster_aws.pipes import PipesEMRClient, PipesGlueClient, PipesS3ContextInjector

        from lakehouse.resources.pipes_clients import EMRServerlessWithS3Messages

        s3 = self.s3_client or boto3.client("s3")
        # The injector appends a random name to the prefix as it is: the slash keeps it a folder.
        injector = PipesS3ContextInjector(bucket=self.pipes_bucket, client=s3, key_prefix=f"{self.pipes_prefix}/")
        if self.kind == GLUE:
            client = PipesGlueClient(client=self.client or boto3.client("glue"), context_injector=injector,
                                     message_reader=self._messages(s3))
            return client.run(context=context, start_job_run_params={"JobName": self.aws.glue_job}, extras=extras)
        if self.kind in (EMR_SERVERLESS, EMR):
            self._check_deployed(s3)
        if self.kind == EMR_SERVERLESS:
            client = EMRServerlessWithS3Messages(
                client=self.client or boto3.client("emr-serverless"), context_injector=injector,
                message_reader=self._messages(s3), poll_interval=self.poll_interval)
            return client.run(context=context, start_job_run_params=self.emr_serverless_job(name), extras=extras)
        if self.kind == EMR:
            # The driver's output comes back as Pipes messages: no waiting for EMR to ship logs to S3.
            client = PipesEMRClient(
                client=self.client or boto3.client("emr"), context_injector=injector,
                message_reader=self._messages(s3, include_stdio_in_messages=True))
            return client.run(context=context, run_job_flow_params=self.emr_job_flow(name), extras=extras)
        raise ValueError(f"compute {self.kind!r} is not one of {LOCAL}, {GLUE}, {EMR_SERVERLESS}, {EMR}")

    def _messages(self, s3, include_stdio_in_messages: bool = False):
        from lakehouse.resources.pipes_clients import PrefixedS3MessageReader

        return PrefixedS3MessageReader(prefix=self.pipes_prefix, bucket=self.pipes_bucket, client=s3, interval=1,
                                       include_stdio_in_messages=include_stdio_in_messages)

    def _check_deployed(self, s3) -> None:
        """The entry script is where the job will look for it; else say how to put it there."""
        from botocore.exceptions import ClientError

        uri = self._artifact(ENTRY_SCRIPT)
        bucket, key = s3_parts(uri)
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            raise dg.Failure(description=(
                f"the job's entry script {uri} cannot be read ({exc.response['Error'].get('Code')}): run "
                "`lakehouse deploy --apply`, or point LAKEHOUSE_ARTIFACTS_URI at where it was deployed")) from None

    def _artifact(self, name: str) -> str:
        return f"{self.aws.artifacts_uri}/{name}"

    def _python_conf(self, driver_env: str) -> list[str]:
        """Spark settings that run the driver and executors in the packed Python environment."""
        python = "./environment/bin/python"
        return [f"spark.archives={self._artifact(PYTHON_ARCHIVE)}#environment",
                f"{driver_env}PYSPARK_PYTHON={python}", f"spark.executorEnv.PYSPARK_PYTHON={python}"]

    def emr_serverless_job(self, name: str) -> dict:
        """`start_job_run` parameters; PipesEMRServerlessClient adds the Pipes bootstrap as driver env."""
        conf = self._python_conf("spark.emr-serverless.driverEnv.")
        conf.append("spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON=./environment/bin/python")
        # Iceberg's Spark runtime, which EMR Serverless ships but does not load by itself.
        conf += [f"spark.jars={EMR_SERVERLESS_ICEBERG_JAR}", f"spark.sql.extensions={EXTENSIONS}",
                 *(f"{k}={v}" for k, v in self.spark_catalog.items())]
        return {
            "applicationId": self.aws.emr_serverless_app,
            "executionRoleArn": self.aws.emr_role_arn,
            "name": f"lakehouse {name}"[:256],
            "jobDriver": {"sparkSubmit": {
                "entryPoint": self._artifact(ENTRY_SCRIPT),
                "sparkSubmitParameters": " ".join(f"--conf {c}" for c in conf),
            }},
            "configurationOverrides": {"monitoringConfiguration": {"s3MonitoringConfiguration": {
                "logUri": f"s3://{self.pipes_bucket}/{self.pipes_prefix}/emr-serverless-logs/"}}},
            "tags": {"lakehouse:step": name[:256]},
        }

    def emr_job_flow(self, name: str) -> dict:
        """`run_job_flow` parameters: a cluster for this step that ends with it.

        Cluster deploy mode: the driver runs in a YARN container, where the packed Python
        environment is unpacked and `spark.yarn.appMasterEnv.*` (which PipesEMRClient
        adds to spark-defaults) carries the Pipes bootstrap. Our own Spark settings go on
        the spark-submit line, not in a spark-defaults classification: PipesEMRClient
        would drop its bootstrap when merging into one we pass.
        """
        submit = ["spark-submit", "--deploy-mode", "cluster"]
        # The iceberg-defaults classification below puts Iceberg's runtime on the classpath.
        for conf in [*self._python_conf("spark.yarn.appMasterEnv."), f"spark.sql.extensions={EXTENSIONS}",
                     *(f"{k}={v}" for k, v in self.spark_catalog.items())]:
            submit += ["--conf", conf]
        submit.append(self._artifact(ENTRY_SCRIPT))
        core = max(self.aws.emr_instances - 1, 0)
        groups = [{"Name": "primary", "InstanceRole": "MASTER", "Market": "ON_DEMAND",
                   "InstanceType": self.aws.emr_instance_type, "InstanceCount": 1}]
        if core:
            groups.append({"Name": "core", "InstanceRole": "CORE", "Market": "ON_DEMAND",
                           "InstanceType": self.aws.emr_instance_type, "InstanceCount": core})
        return {
            "Name": f"lakehouse {name}"[:256],
            "ReleaseLabel": self.aws.emr_release,
            "LogUri": f"s3://{self.pipes_bucket}/{self.pipes_prefix}/emr-logs/",
            "Applications": [{"Name": "Spark"}],
            "Instances": {"InstanceGroups": groups, "KeepJobFlowAliveWhenNoSteps": False},
            "Steps": [{"Name": name, "ActionOnFailure": "TERMINATE_CLUSTER",
                       "HadoopJarStep": {"Jar": "command-runner.jar", "Args": submit}}],
            "Configurations": [{"Classification": "iceberg-defaults", "Properties": {"iceberg.enabled": "true"}}],
            "JobFlowRole": self.aws.emr_instance_profile,
            "ServiceRole": self.aws.emr_service_role,
            "VisibleToAllUsers": True,
            "Tags": [{"Key": "lakehouse:step", "Value": name[:256]}],
        }


def _remote_error(context) -> str | None:
    """The exception the job script reported when its Pipes session closed, if it did."""
    step_key = context.get_step_execution_context().step.key
    records = context.instance.get_records_for_run(
        context.run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, ascending=False).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event.step_key == step_key and record.event_log_entry.user_message.startswith(PIPES_CLOSED_WITH_ERROR):
            error = event.engine_event_data.error
            return error.message.strip() if error else None
    return None
