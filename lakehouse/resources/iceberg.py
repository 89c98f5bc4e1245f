"""The Iceberg catalog and our table layer as a Dagster resource."""

from __future__ import annotations

from typing import Optional

import dagster as dg

from lakehouse.iceberg import TableStore, build_catalog
from lakehouse.settings import Settings


class IcebergResource(dg.ConfigurableResource):
    """Iceberg catalog `lakehouse`: a SQL catalog locally, Glue in the aws profile."""

    profile: str
    catalog_uri: str
    warehouse_uri: str
    aws_region: Optional[str] = None
    aws_endpoint_url: Optional[str] = None
    kms_key_arn: Optional[str] = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "IcebergResource":
        return cls(
            profile=settings.profile,
            catalog_uri=settings.catalog_uri,
            warehouse_uri=settings.warehouse_uri,
            aws_region=settings.aws_region,
            aws_endpoint_url=settings.aws_endpoint_url,
            kms_key_arn=settings.aws.kms_key_arn,
        )

    def store(self) -> TableStore:
        """A store for one step or one sensor tick: it keeps the tables it loads (see `TableStore`)."""
        return TableStore(
            build_catalog(
                self.profile, self.catalog_uri, self.warehouse_uri, self.aws_region, self.aws_endpoint_url,
                self.kms_key_arn,
            ),
            keep_loaded=True,
        )
