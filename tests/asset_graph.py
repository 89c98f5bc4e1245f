"""The asset graph the definitions must have: every asset and its parents, from the declarations."""

from lakehouse.contracts import CONTRACTS
from lakehouse.layout import SOURCES
from lakehouse.tables import DIMENSION_SOURCES, dimension_table

# Written by other steps, shown in the `ops` group as external assets.
OPS = ("ops/ingestion_log", "ops/dq_results", "bronze/rejected_files", "silver/quarantine")

PARENTS = {
    **{f"raw/{s}": set() for s in SOURCES},
    **{f"bronze/{s}": {f"raw/{s}"} for s in SOURCES},
    # a source's silver reads its bronze and the silver of each source it looks up
    **{f"silver/{s}": {f"bronze/{s}", *(f"silver/{lk.source}" for lk in CONTRACTS[s].lookups)} for s in SOURCES},
    # gold is Python (transforms/gold.py): its inputs are written here
    "gold/fact_orders": {"silver/orders"},
    "gold/mart_daily_sales": {"gold/fact_orders"},
    "gold/mart_customer_activity": {"gold/fact_orders", "silver/events"},
    **{dimension_table(s).identifier.replace(".", "/"): {f"silver/{s}"} for s in DIMENSION_SOURCES},
    "ops/ingestion_log": {f"raw/{s}" for s in SOURCES},
    "bronze/rejected_files": {f"raw/{s}" for s in SOURCES},
    "silver/quarantine": {f"bronze/{s}" for s in SOURCES},
    "ops/dq_results": set(),
}
# Bronze, silver and gold: materialized by Dagster, with checks.
MATERIALIZED = [k for k in PARENTS if not k.startswith("raw/") and k not in OPS]
