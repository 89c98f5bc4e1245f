"""How the project's Definitions are assembled from the settings (no side effects on import)."""

from __future__ import annotations

import dagster as dg

from lakehouse.assets.bronze import bronze_assets
from lakehouse.assets.raw import raw_specs
from lakehouse.partitions import daily_partitions
from lakehouse.resources import EngineResource, IcebergResource, LandingZoneResource
from lakehouse.settings import Settings

BRONZE_JOB = "bronze_job"


def build_definitions(settings: Settings) -> dg.Definitions:
    partitions = daily_partitions(settings.start_date)
    bronze = bronze_assets(partitions)
    return dg.Definitions(
        assets=[*raw_specs(settings.landing_uri), *bronze],
        jobs=[
            dg.define_asset_job(
                BRONZE_JOB,
                selection=dg.AssetSelection.groups("bronze"),
                description="Load one ingest date of every source into bronze.",
            )
        ],
        resources={
            "landing": LandingZoneResource(uri=settings.landing_uri),
            "iceberg": IcebergResource.from_settings(settings),
            "engine": EngineResource(name=settings.engine),
        },
    )

