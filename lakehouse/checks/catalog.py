"""Which checks each asset has, derived from the contracts and the quality config.

The same list declares the Dagster check specs (definition time) and drives the
evaluation (run time), so a check cannot be declared without being evaluated.
"""

from __future__ import annotations

from lakehouse.checks.config import spec
from lakehouse.checks.model import CheckSpec
from lakehouse.contracts import CONTRACTS
from lakehouse.contracts.model import FLAG, SNAPSHOT

COMMON = {
    "schema_drift": "A column appeared, disappeared or changed type since the previous materialization.",
    "non_empty": "The partition has rows.",
}


def bronze_specs(source: str) -> list[CheckSpec]:
    asset = f"bronze/{source}"
    return [
        spec(asset, "matches_files", "Bronze rows equal the rows of the ingested files (ops.ingestion_log)."),
        spec(asset, "rejected_files", "Landed files that could not be read (bronze.rejected_files)."),
        spec(asset, "missing_columns", "Contract columns missing from a landed file (left null)."),
        spec(asset, "freshness", f"The newest {source} file landed recently enough."),
        spec(asset, "schema_drift", COMMON["schema_drift"]),
        spec(asset, "non_empty", COMMON["non_empty"]),
    ]


def silver_specs(source: str) -> list[CheckSpec]:
    contract = CONTRACTS[source]
    asset = f"silver/{source}"
    specs = [
        spec(asset, "accounting", "Per ingest date, counted in the tables: bronze rows = silver + quarantined + "
             "duplicates + superseded + unchanged."),
        spec(asset, "keys_not_null", f"Key {', '.join(contract.keys)} is never null in silver."),
        spec(asset, "keys_unique", f"Key {', '.join(contract.keys)} is unique "
             + ("per ingest date (one row per version)." if contract.history == SNAPSHOT else "across the whole table.")),
        spec(asset, "quarantine_share", "Share of bronze rows quarantined."),
        spec(asset, "duplicates", "Rows repeating a key with the same content (re-sent records)."),
        spec(asset, "superseded", "Older versions of a key replaced by a later, corrected record."),
        spec(asset, "schema_drift", COMMON["schema_drift"]),
        spec(asset, "non_empty", COMMON["non_empty"]),
    ]
    specs += [spec(asset, f"rule:{r}", f"Rows quarantined by contract rule {r}.") for r in contract.quarantine_rules()]
    specs += [
        spec(asset, f"flag:{name}", f"Rows kept with {name.split('.')[0]} nulled: it broke {name}.")
        for name, action in contract.rules() if action == FLAG
    ]
    specs += [
        spec(asset, f"references:{lk.source}", f"Share of rows whose {lk.column} is not in {lk.source}.")
        for lk in contract.lookups
    ]
    return specs


GOLD_CHECKS = {
    "gold/fact_orders": [
        ("matches_silver", "Fact rows equal the silver orders rows of the partition."),
        ("keys_unique", "order_id is unique within the partition."),
    ],
    "gold/mart_daily_sales": [
        ("totals_match", "Orders and sales of the refreshed days equal the fact and a recompute from the silver it was built from."),
    ],
    "gold/mart_customer_activity": [
        ("totals_match", "Sales and events of the refreshed days equal the fact and silver events."),
    ],
    "gold/dim_customer": [
        ("keys_unique", "customer_id is unique."),
        ("covers_facts", "Every known customer of the fact is in the dimension."),
    ],
    "gold/dim_product": [
        ("keys_unique", "product_id is unique."),
        ("covers_facts", "Every known product of the fact is in the dimension."),
    ],
}


def gold_specs(asset: str) -> list[CheckSpec]:
    checks = GOLD_CHECKS[asset] + [("schema_drift", COMMON["schema_drift"]), ("non_empty", COMMON["non_empty"])]
    return [spec(asset, name, description) for name, description in checks]


def specs_for(asset: str) -> list[CheckSpec]:
    layer, name = asset.split("/", 1)
    if layer == "bronze":
        return bronze_specs(name)
    if layer == "silver":
        return silver_specs(name)
    return gold_specs(asset)
