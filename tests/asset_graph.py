"""The asset graph the definitions must have: every asset and its parents."""

from lakehouse.layout import SOURCES

# Written by other steps, shown in the `ops` group as external assets.
OPS = ("ops/ingestion_log", "ops/dq_results", "bronze/rejected_files", "silver/quarantine")

PARENTS = {
    **{f"raw/{s}": set() for s in SOURCES},
    **{f"bronze/{s}": {f"raw/{s}"} for s in SOURCES},
    "silver/customers": {"bronze/customers"},
    "silver/products": {"bronze/products"},
    "silver/events": {"bronze/events"},
    "silver/orders": {"bronze/orders", "silver/customers", "silver/products"},
    "gold/fact_orders": {"silver/orders"},
    "gold/mart_daily_sales": {"gold/fact_orders"},
    "gold/mart_customer_activity": {"gold/fact_orders", "silver/events"},
    "gold/dim_customer": {"silver/customers"},
    "gold/dim_product": {"silver/products"},
    "ops/ingestion_log": {f"raw/{s}" for s in SOURCES},
    "bronze/rejected_files": {f"raw/{s}" for s in SOURCES},
    "silver/quarantine": {f"bronze/{s}" for s in SOURCES},
    "ops/dq_results": set(),
}
# Bronze, silver and gold: materialized by Dagster, with checks.
MATERIALIZED = [k for k in PARENTS if not k.startswith("raw/") and k not in OPS]
