"""Where a silver or gold step runs: in this process, or on AWS Glue through Dagster Pipes.

The asset code is the same either way (`lakehouse.assets.step.run_step`); only this
resource differs. On Glue, the job runs `lakehouse/jobs/run_step.py` with the Pipes
bootstrap as job arguments; the context goes to S3 and the messages come back through
S3 (`LAKEHOUSE_PIPES_URI`). Pipes does not forward a partition range, so the keys are
passed in the extras, with the step's name, its arguments and the catalog settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg

LOCAL, GLUE = "local", "glue"


@dataclass
class Compute:
    kind: str = LOCAL
    pipes_bucket: str | None = None  # context and messages, s3://bucket/prefix
    pipes_prefix: str = "dagster-pipes"
    glue_job_name: str = "lakehouse-step"
    remote_settings: dict | None = None  # LAKEHOUSE_* the job reads (catalog, warehouse, engine)
    glue_client: Any = None  # default: boto3's
    s3_client: Any = None  # default: boto3's

    @classmethod
    def from_settings(cls, settings) -> "Compute":
        """Local, or the Glue job of LAKEHOUSE_GLUE_JOB reading the same Glue catalog and warehouse."""
        if settings.compute == LOCAL:
            return cls()
        bucket, _, prefix = settings.pipes_uri[len("s3://"):].partition("/")
        remote = {"LAKEHOUSE_PROFILE": settings.profile, "LAKEHOUSE_WAREHOUSE_URI": settings.warehouse_uri,
                  "LAKEHOUSE_START_DATE": settings.start_date.isoformat(), "LAKEHOUSE_ENGINE": "spark",
                  "LAKEHOUSE_HOME": "/tmp/lakehouse"}
        if settings.catalog_uri:
            remote["LAKEHOUSE_CATALOG_URI"] = settings.catalog_uri
        return cls(kind=settings.compute, pipes_bucket=bucket, pipes_prefix=prefix or "dagster-pipes",
                   glue_job_name=settings.glue_job, remote_settings=remote)

    @property
    def local(self) -> bool:
        return self.kind == LOCAL

    def run(self, context: dg.AssetExecutionContext, step: str, args: list, keys: list[str] | None):
        """Run `step` on the cluster; yields the materialization and check results it reported."""
        import boto3
        from dagster_aws.pipes import PipesGlueClient, PipesS3ContextInjector, PipesS3MessageReader

        s3 = self.s3_client or boto3.client("s3")
        client = PipesGlueClient(
            client=self.glue_client or boto3.client("glue"),
            context_injector=PipesS3ContextInjector(bucket=self.pipes_bucket, client=s3, key_prefix=self.pipes_prefix),
            message_reader=PipesS3MessageReader(bucket=self.pipes_bucket, client=s3, interval=1),
        )
        extras = {"step": step, "args": list(args), "partition_keys": list(keys or []),
                  "settings": dict(self.remote_settings or {})}
        invocation = client.run(context=context, start_job_run_params={"JobName": self.glue_job_name},
                                extras=extras)
        yield from invocation.get_results()
