"""Run one silver or gold step on a Spark cluster (Glue, EMR Serverless, EMR), driven by Dagster Pipes.

The cluster runs this file with the Pipes bootstrap parameters: as job arguments on
Glue (it cannot set environment variables), as environment variables on EMR. The
Dagster side puts in the Pipes extras which step to run, its arguments, the partition
keys (Pipes does not forward a range) and the catalog and warehouse settings. The step
is the same function the local engine runs (`lakehouse.steps`); its materialization,
metadata and every check result go back through Pipes messages in S3. A blocking check
that failed reports its results, then fails the job with the message, which is what
the Dagster step then fails with.
"""

from __future__ import annotations

import datetime as dt
import os
import sys

from dagster_pipes import (
    DAGSTER_PIPES_CONTEXT_CLI_ARGUMENT,
    PipesCliArgsParamsLoader,
    PipesEnvVarParamsLoader,
    PipesS3ContextLoader,
    PipesS3MessageWriter,
    open_dagster_pipes,
)

def run(pipes, env: dict[str, str]) -> None:
    """Run the step named in the extras and report it through `pipes`."""
    from lakehouse import checked_code, reporting
    from lakehouse.assets.checks import blocked_message, dagster_name
    from lakehouse.checks.evaluate import across_partitions
    from lakehouse.iceberg import TableStore, catalog_from_settings
    from lakehouse.partitions import label
    from lakehouse.resources.engine import Engine
    from lakehouse.settings import load_settings
    from lakehouse.steps import STEPS, StepContext

    extras = pipes.extras
    name = extras["step"]
    if name not in STEPS:
        raise ValueError(f"unknown step {name!r}; one of {', '.join(STEPS)}")
    settings = load_settings({**env, **extras.get("settings", {})})
    keys = list(extras.get("partition_keys") or [])
    args = list(extras.get("args") or []) + ([[dt.date.fromisoformat(k) for k in keys]] if keys else [])
    pipes.log.info(f"{name} {' '.join(map(str, extras.get('args') or []))} {label(keys) if keys else ''} "
                   f"on {settings.engine}")
    try:
        store = TableStore(catalog_from_settings(settings), keep_loaded=True)  # one step
        with Engine(settings.engine, store.catalog, memory_limit=settings.duckdb_memory_limit) as engine:
            result = STEPS[name](StepContext(store, engine, pipes.run_id), *args)
    finally:  # also when the step raises: this machine's home ends with the job, the run's log keeps them
        for fallback in checked_code.said():
            pipes.log.warning(f"fallback to a slower path on the cluster: {fallback}")
    write = result.write
    if write is not None and write.published:
        pipes.report_asset_materialization(metadata=reporting.step_metadata(result))
    for outcome in across_partitions(write.audit if write else []):
        pipes.report_asset_check(
            dagster_name(outcome.name), outcome.passed, "ERROR" if outcome.blocking else "WARN",
            metadata=reporting.check_metadata(outcome),
        )
    if write is not None and not write.published:
        raise RuntimeError(blocked_message(result.table.identifier, label(keys) if keys else None, write.branch,
                                           write.blocking_failures))


def main() -> None:
    import boto3

    loader = PipesCliArgsParamsLoader() if DAGSTER_PIPES_CONTEXT_CLI_ARGUMENT in sys.argv else PipesEnvVarParamsLoader()
    s3 = boto3.client("s3")
    with open_dagster_pipes(params_loader=loader, context_loader=PipesS3ContextLoader(s3),
                           message_writer=PipesS3MessageWriter(s3, interval=1)) as pipes:
        run(pipes, dict(os.environ))


if __name__ == "__main__":
    main()
