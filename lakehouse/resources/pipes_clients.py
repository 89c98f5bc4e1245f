"""Dagster Pipes clients for the remote steps, adapted to S3 messages under a prefix.

Apart from `lakehouse.resources.compute` so that the code location loads without
dagster_aws.pipes (half a second); only a step that runs on AWS imports it.
"""

from __future__ import annotations

from contextlib import contextmanager

from dagster_aws.pipes import PipesEMRServerlessClient, PipesS3MessageReader


class PrefixedS3MessageReader(PipesS3MessageReader):
    """Messages under LAKEHOUSE_PIPES_URI's prefix; the base class writes them at the bucket's root.

    So the jobs' IAM policy can be scoped to the prefix (see `lakehouse policy`).
    """

    def __init__(self, *, prefix: str, **kwargs):
        super().__init__(**kwargs)
        self.prefix = prefix.strip("/")

    @contextmanager
    def get_params(self):
        with super().get_params() as params:
            yield {**params, "key_prefix": f"{self.prefix}/messages/{params['key_prefix']}"}


class EMRServerlessWithS3Messages(PipesEMRServerlessClient):
    """Messages come through S3 while the job runs; the base class only knows CloudWatch.

    Unchanged, it warns after every run that Dagster cannot receive the job's messages,
    which is not true with the S3 reader.
    """

    def _read_messages(self, context, session, response):
        if not isinstance(self.message_reader, PipesS3MessageReader):
            super()._read_messages(context, session, response)
