"""How the project's Definitions are assembled from the settings (no side effects on import)."""

from __future__ import annotations

import dagster as dg

from lakehouse.assets.bronze import bronze_assets
from lakehouse.assets.gold import gold_assets
from lakehouse.assets.raw import raw_specs
from lakehouse.assets.silver import silver_assets
from lakehouse.partitions import daily_partitions
from lakehouse.resources import EngineResource, IcebergResource, LandingZoneResource
from lakehouse.settings import Settings

DAILY_JOB = "daily_job"
DIMENSIONS_JOB = "dimensions_job"


def build_definitions(settings: Settings) -> dg.Definitions:
    partitions = daily_partitions(settings.start_date)
    partitioned_gold, dimensions = gold_assets(partitions, settings.engine)
    daily = [*bronze_assets(partitions), *silver_assets(partitions, settings.engine), *partitioned_gold]
    return dg.Definitions(
        assets=[*raw_specs(settings.landing_uri), *daily, *dimensions],
        jobs=[
            dg.define_asset_job(
                DAILY_JOB,
                selection=dg.AssetSelection.assets(*daily),
                description="One ingest date through bronze, silver, the order fact and the marts.",
            ),
            dg.define_asset_job(
                DIMENSIONS_JOB,
                selection=dg.AssetSelection.assets(*dimensions),
                description="Rebuild the customer and product dimensions from silver.",
            ),
        ],
        resources={
            "landing": LandingZoneResource(uri=settings.landing_uri),
            "iceberg": IcebergResource.from_settings(settings),
            "engine": EngineResource(name=settings.engine),
        },
    )
