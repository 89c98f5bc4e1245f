"""Dagster resources: landing zone, Iceberg tables, compute engine."""

from lakehouse.resources.engine import EngineResource
from lakehouse.resources.iceberg import IcebergResource
from lakehouse.resources.landing import LandingZoneResource

__all__ = ["EngineResource", "IcebergResource", "LandingZoneResource"]
