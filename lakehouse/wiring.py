"""How the project's Definitions are assembled from the settings (no side effects on import)."""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

from lakehouse.assets.bronze import build_bronze_assets
from lakehouse.assets.gold import gold_assets
from lakehouse.assets.ops import ops_specs
from lakehouse.components import component_docs, declared_sources
from lakehouse.iceberg import table_location
from lakehouse.partitions import daily_partitions
from lakehouse.resources import EngineResource, IcebergResource, LandingZoneResource
from lakehouse.resources.compute import Compute
from lakehouse.resources.engine import spark_config
from lakehouse.sensors.alerts import build_failure_sensor
from lakehouse.sensors.landing import build_landing_sensor
from lakehouse.sensors.schedules import SNAPSHOT_SOURCES, build_snapshot_schedule, snapshot_keys
from lakehouse.settings import Settings

# Code references (the UI's "open source" links) are beta in 1.13 and warn on every load.
warnings.filterwarnings("ignore", message="(Function `with_source_code_references`|Class `(CodeReferencesMetadataValue"
                                          "|LocalFileCodeReference)`|Function `link_code_references_to_git`|Class `(AnchorBasedFilePathMapping|UrlCodeReference)`)",
                        category=dg.BetaWarning)

PACKAGE_DIR = Path(__file__).resolve().parent
DAILY_JOB = "daily_job"
DIMENSIONS_JOB = "dimensions_job"
SNAPSHOTS_JOB = "snapshots_job"
AUTOMATION_SENSOR = "automation_sensor"


def _located(assets: list, settings: Settings) -> list:
    """Each table asset with `dagster/uri`: the table's folder in the warehouse."""
    def locate(spec: dg.AssetSpec) -> dg.AssetSpec:
        name = spec.metadata.get("dagster/table_name")
        if not name or "dagster/uri" in spec.metadata:
            return spec
        uri = table_location(settings.profile, settings.warehouse_uri, str(name))
        return spec.merge_attributes(metadata={"dagster/uri": uri})

    return dg.map_asset_specs(locate, assets)


def _linked_to_git(assets: list, git_url: str, branch: str) -> list:
    """Code references as URLs into the repository at `branch`.

    Dagster's `link_code_references_to_git` leaves asset specs alone (1.13), and the raw
    prefixes and ops tables are specs: they are linked here with the same file mapping.
    """
    mapping = dg.AnchorBasedFilePathMapping(local_file_anchor=PACKAGE_DIR, file_anchor_path_in_repository="lakehouse/")
    linked = dg.link_code_references_to_git(assets, git_url=git_url, git_branch=branch, file_path_mapping=mapping)
    base = f"{git_url}/-/tree/{branch}" if "gitlab" in git_url else f"{git_url}/tree/{branch}"

    def url(reference):
        if not isinstance(reference, dg.LocalFileCodeReference):
            return reference
        line = f"#L{reference.line_number}" if reference.line_number else ""
        path = mapping.convert_to_source_control_path(Path(reference.file_path))
        return dg.UrlCodeReference(url=f"{base}/{path}{line}", label=reference.label)

    def link(spec: dg.AssetSpec) -> dg.AssetSpec:
        references = spec.metadata.get("dagster/code_references")
        if references is None:
            return spec
        value = dg.CodeReferencesMetadataValue(code_references=[url(r) for r in references.code_references])
        return spec.replace_attributes(metadata={**spec.metadata, "dagster/code_references": value})

    return [link(a) if isinstance(a, dg.AssetSpec) else a for a in linked]


def _pyspark() -> dg.ConfigurableResource:
    """The spark engine's session, dagster-pyspark's resource, with the engine's own settings."""
    from dagster_pyspark import PySparkResource

    return PySparkResource(spark_config=spark_config())


def project_resources(settings: Settings, compute: Compute | None = None) -> dict:
    """The resources every step uses, shared by the sources' components and the Python definitions.

    The Spark session resource only where steps run here on the spark engine: it starts
    Spark in every step's process, which a step sent to Glue or EMR does not use.
    """
    compute = compute or Compute.from_settings(settings)
    local_spark = settings.engine == "spark" and compute.local
    return {
        "landing": LandingZoneResource(uri=settings.landing_uri),
        "iceberg": IcebergResource.from_settings(settings),
        "engine": EngineResource(name=settings.engine, duckdb_memory_limit=settings.duckdb_memory_limit,
                                 pyspark=_pyspark() if local_spark else None),
        "compute": compute,
    }


def build_definitions(settings: Settings, compute: Compute | None = None) -> dg.Definitions:
    """The project's definitions; `compute` runs silver and gold elsewhere (default: in process)."""
    partitions = daily_partitions(settings.start_date)
    partitioned_gold, dimensions = gold_assets(partitions, settings.engine)
    sources = declared_sources()
    bronze = build_bronze_assets(partitions, [s.contract() for s in sources])
    daily = [bronze, *(s.silver_asset(settings, partitions) for s in sources), *partitioned_gold]
    snapshots = dg.define_asset_job(
        SNAPSHOTS_JOB,
        selection=dg.AssetSelection.assets(*snapshot_keys()),
        description=f"One day's snapshots of {', '.join(SNAPSHOT_SOURCES)} through bronze and silver.",
    )
    assets = dg.with_source_code_references(_located(
        [*(s.raw_spec(settings, partitions) for s in sources), *daily, *dimensions, *ops_specs()], settings))
    if settings.git_url:  # deployed: the UI links to the repository, not to files on the server
        assets = _linked_to_git(assets, settings.git_url, settings.git_branch)
    return dg.Definitions(
        assets=assets,
        jobs=[
            dg.define_asset_job(
                DAILY_JOB,
                selection=dg.AssetSelection.assets(*daily),
                description="One ingest date through bronze, silver, the order fact and the marts.",
            ),
            dg.define_asset_job(
                DIMENSIONS_JOB,
                selection=dg.AssetSelection.assets(*dimensions),
                description=f"Rebuild the dimensions ({', '.join(k.to_user_string() for a in dimensions for k in a.keys)}) "
                            "from silver.",
            ),
            snapshots,
        ],
        sensors=[
            build_landing_sensor(settings, list(bronze.keys), [k for a in [*daily, *dimensions] for k in a.keys]),
            # Silver and gold follow bronze through their automation conditions (eager,
            # gated on blocking checks). Running by default: a fresh instance would
            # otherwise leave it stopped and nothing past bronze would ever run.
            dg.AutomationConditionSensorDefinition(
                AUTOMATION_SENSOR,
                target=dg.AssetSelection.all(),
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=settings.sensor_interval_seconds,
                description="Materializes silver and gold partitions as their inputs update.",
                # Evaluated in the code location: the conditions hold a condition of ours
                # (assets/automation.py), which Dagster's own daemon process cannot import.
                use_user_code_server=True,
            ),
            build_failure_sensor(settings),
        ],
        schedules=[build_snapshot_schedule(snapshots)],
        metadata=component_docs(),
        # Steps run one after another in the run's process: a process per step would pay
        # the imports and the engine session again for every asset (seconds each).
        executor=dg.in_process_executor,
        resources=project_resources(settings, compute),
    )
