"""Benchmark: CPU of the bookkeeping around the steps, Dagster's and PyIceberg's own way against ours, in one run.

    python bench/bookkeeping.py --repeat 20

- a Dagster instance on SQLite storage, made as a code server makes one per sensor tick:
  Dagster's own alembic check, then with `lakehouse/dagster_patches.py` installed;
- a Glue catalog, as every step on AWS builds one: PyIceberg's own boto3 session, then
  `lakehouse.iceberg.build_catalog` (botocore's parsed models shared); no AWS call is made;
- one overwrite commit on a table already 300 snapshots long (a year of daily writes, unexpired):
  PyIceberg's own metadata update, which deep-copies the whole metadata, then ours
  (`lakehouse/iceberg_patches.py`, change 4);
- one event stored in Dagster's SQLite event log (a log line, an asset materialization; a
  two-day run stores about 430): Dagster's own engine per write, then the shard's engine kept
  (`lakehouse/dagster_patches.py`, 2.);
- the code location's definitions built (`build_definitions`, which tests call again and again):
  each declaration parsed by PyYAML's pure-Python loader and resolved again, and the UI's docs
  of the component made again, every time; then ours, first in a process (libyaml,
  `lakehouse/yamltext.py`) and again (the components resolved once per process for the same
  declarations and their docs made once, `lakehouse/components.py`).
Prints one JSON document: milliseconds of CPU (process time) per operation, medians of
--rounds rounds of --repeat operations each, and the ratios. Each side's rounds run in one
block, theirs first (ours replaces their function in place for the rest of the process).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time


def cpu_ms(operation, repeat: int, rounds: int) -> float:
    operation()  # the first call may import and parse what later ones reuse
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(repeat):
            operation()
        samples.append((time.process_time() - started) / repeat * 1000)
    return round(statistics.median(samples), 2)


def commit_ms(home: str, repeat: int, rounds: int, history: int = 300) -> dict:
    """CPU of one overwrite commit at `history` snapshots, PyIceberg's metadata update against ours."""
    import pyarrow as pa
    from pyiceberg.expressions import EqualTo

    from lakehouse import iceberg_patches
    from lakehouse.iceberg import TableStore, catalog_from_settings
    from lakehouse.settings import load_settings

    settings = load_settings({"LAKEHOUSE_HOME": os.path.join(home, "lake"), "LAKEHOUSE_LANDING_URI": f"file://{home}/landing"})
    store = TableStore(catalog_from_settings(settings))  # installs the PyIceberg changes
    schema = pa.schema([("day", pa.string()), ("n", pa.int64())])
    store.ensure_table("ops.history", schema)
    days = iter(range(10**9))

    def commit():
        day = f"d{next(days)}"
        store.replace_where("ops.history", pa.table({"day": [day] * 3, "n": [1, 2, 3]}, schema=schema),
                            EqualTo("day", day), {})

    def use(update):  # where PyIceberg and change 1 look it up
        for module in iceberg_patches._updater_modules():
            module.update_table_metadata = update

    for _ in range(history):
        commit()
    use(iceberg_patches._UPDATE)
    pyicebergs = cpu_ms(commit, repeat, rounds)  # first: ours then runs on a longer history, not a shorter one
    use(iceberg_patches._updated_metadata)
    mine = cpu_ms(commit, repeat, rounds)
    return {"snapshots": history, "pyiceberg": pyicebergs, "ours": mine, "ratio": round(mine / pyicebergs, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="lakehouse-bookkeeping-")
    os.environ.update(DAGSTER_HOME=home, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1")
    with open(os.path.join(home, "dagster.yaml"), "w") as f:
        f.write("telemetry:\n  enabled: false\n")

    import dagster as dg
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.events.log import EventLogEntry
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
    from pyiceberg.catalog import load_catalog

    from lakehouse import dagster_patches, run_workers
    from lakehouse.iceberg import CATALOG_NAME, build_catalog, catalog_properties

    def instance():
        dg.DagsterInstance.get().dispose()

    out: dict = {"repeat": args.repeat, "rounds": args.rounds}
    dagsters = cpu_ms(instance, args.repeat, args.rounds)
    run_workers.in_code_server = lambda: True  # as in a code server, where it is installed
    if not dagster_patches.install():
        raise SystemExit("lakehouse/dagster_patches.py did not install on this Dagster: nothing to compare")
    ours = cpu_ms(instance, args.repeat, args.rounds)
    out["instance_ms"] = {"dagster": dagsters, "ours": ours, "ratio": round(ours / dagsters, 2)}

    glue = ("aws", "", "s3://bench/warehouse", "us-east-1")
    pyicebergs = cpu_ms(lambda: load_catalog(CATALOG_NAME, **catalog_properties(*glue)), args.repeat, args.rounds)
    ours = cpu_ms(lambda: build_catalog(*glue), args.repeat, args.rounds)
    out["glue_catalog_ms"] = {"pyiceberg": pyicebergs, "ours": ours, "ratio": round(ours / pyicebergs, 2)}

    out["commit_ms"] = commit_ms(home, args.repeat, args.rounds)

    storage = SqliteEventLogStorage(os.path.join(home, "events"))

    def log_line():
        storage.store_event(EventLogEntry(error_info=None, level=20, user_message="a line", run_id="r",
                                          timestamp=time.time()))

    def materialization():
        event = DagsterEvent(event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value, job_name="j",
                             event_specific_data=StepMaterializationData(
                                 dg.AssetMaterialization(asset_key="a", partition="2026-03-10")))
        storage.store_event(EventLogEntry(error_info=None, level=20, user_message="", run_id="r",
                                          timestamp=time.time(), dagster_event=event, job_name="j"))

    def events() -> dict:
        return {"log line": cpu_ms(log_line, args.repeat * 5, args.rounds),
                "asset materialization": cpu_ms(materialization, args.repeat * 5, args.rounds)}

    dagsters = events()
    if not dagster_patches.keep_event_log_engines():
        raise SystemExit("lakehouse/dagster_patches.py did not install on this Dagster's event log: nothing to compare")
    ours = events()
    out["event_store_ms"] = {"dagster": dagsters, "ours": ours,
                             "ratio": {kind: round(ours[kind] / dagsters[kind], 2) for kind in ours}}
    import yaml

    from lakehouse import components, yamltext
    from lakehouse.settings import load_settings
    from lakehouse.wiring import build_definitions

    settings = load_settings({"LAKEHOUSE_HOME": home})

    def nothing_cached():  # each time as the first time in a process (a code server, a run worker)
        components._resolved.cache_clear()
        components._component_docs.cache_clear()
        build_definitions(settings)

    ours_load, yamltext.load = yamltext.load, yaml.safe_load
    try:
        before = cpu_ms(nothing_cached, args.repeat, args.rounds)  # and the pure-Python loader: as before
    finally:
        yamltext.load = ours_load
    first = cpu_ms(nothing_cached, args.repeat, args.rounds)
    ours = cpu_ms(lambda: build_definitions(settings), args.repeat, args.rounds)
    out["definitions_ms"] = {"pure_python_yaml_each_time": before, "ours_first_in_a_process": first,
                             "ours_again": ours, "ratio_first": round(first / before, 2),
                             "ratio_again": round(ours / before, 2)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
