"""Raw: the landing prefixes as external assets (Dagster does not materialize them)."""

from __future__ import annotations

import dagster as dg

from lakehouse.assets.metadata import code_reference
from lakehouse.contracts import SourceContract
from lakehouse.contracts.declared import declaration_file
from lakehouse.layout import source_prefix


def raw_key(source: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", source])


def raw_spec(contract: SourceContract, landing_uri: str, partitions: dg.PartitionsDefinition) -> dg.AssetSpec:
    """Partitioned like bronze: the landing sensor observes each file on its ingest date."""
    uri = f"{landing_uri.rstrip('/')}/{source_prefix(contract.name)}"
    return dg.AssetSpec(
        key=raw_key(contract.name),
        partitions_def=partitions,
        description=f"{contract.description} Lands as: {contract.landed_as}.",
        group_name="raw",
        kinds={"s3"} if landing_uri.startswith("s3://") else {"file"},
        owners=[contract.owner],
        metadata={"dagster/uri": uri, "landing_layout": f"{uri}ingest_date=YYYY-MM-DD/<file>",
                  **code_reference(declaration_file(contract.name), "name:", "declaration")},
    )
