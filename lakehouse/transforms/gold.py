"""Gold: dimensions, the order fact and the marts, as pure PySpark-API functions.

The marts are computed for a given set of days only: the caller passes the fact and
event rows of the days a new ingest partition touched, so refreshing one partition
never recomputes the whole history.
"""

from __future__ import annotations

from lakehouse.contracts import CONTRACTS
from lakehouse.transforms.bronze import INGEST_DATE
from lakehouse.transforms.silver import FLAGS, api, latest_versions

UNKNOWN = "Unknown"
EVENT_COUNTS = {"page_view": "page_views", "add_to_cart": "add_to_carts", "checkout": "checkouts", "purchase": "purchases"}

FACT_COLUMNS = (
    "order_id", "order_date", "customer_id", "product_id", "channel", "region", "category",
    "qty", "unit_price", "sales_amount", "customer_known", "product_known", INGEST_DATE,
)


def dimension(versions, source: str):
    """Current version of every key (latest ingest wins), with when it was first seen."""
    F, Window = api(versions)
    contract = CONTRACTS[source]
    first_seen = F.min(F.col(INGEST_DATE)).over(Window.partitionBy(*contract.keys))
    with_first = versions.select("*", first_seen.alias("first_seen"))
    current = latest_versions(with_first, contract.keys)
    return current.select(
        *contract.column_names, F.col(INGEST_DATE).alias("valid_from"), F.col("first_seen")
    )


def fact_orders(silver_orders):
    """One row per valid order line, conformed to the dimensions."""
    F, _ = api(silver_orders)
    flags = F.split(F.col(FLAGS), ",")
    return silver_orders.select(
        *[F.col(c) for c in FACT_COLUMNS[:10]],
        (~F.array_contains(flags, F.lit("unknown_customer"))).alias("customer_known"),
        (~F.array_contains(flags, F.lit("unknown_product"))).alias("product_known"),
        F.col(INGEST_DATE),
    )


def daily_sales(fact):
    """Orders, units and sales by order_date, channel, region and category."""
    F, _ = api(fact)
    return (
        fact.select(
            "order_date", "channel",
            F.coalesce(F.col("region"), F.lit(UNKNOWN)).alias("region"),
            F.coalesce(F.col("category"), F.lit(UNKNOWN)).alias("category"),
            "qty", "sales_amount",
        )
        .groupBy("order_date", "channel", "region", "category")
        .agg(
            F.count(F.lit(1)).cast("bigint").alias("orders"),
            F.sum(F.col("qty")).cast("bigint").alias("units"),
            F.sum(F.col("sales_amount")).cast("decimal(18,2)").alias("sales"),
        )
    )


def customer_activity(events, fact):
    """Per customer and day: events by type, orders, units and sales.

    Built as a union of two aggregates rather than a full outer join: simpler, and
    identical on both engines.
    """
    F, _ = api(events)
    zero_sales = F.lit(0).cast("decimal(18,2)")
    by_type = [
        F.sum(F.when(F.col("event_type") == kind, 1).otherwise(0)).cast("bigint").alias(name)
        for kind, name in EVENT_COUNTS.items()
    ]
    from_events = (
        events.groupBy(F.col("user_id").alias("customer_id"), F.col("event_date").alias("activity_date"))
        .agg(*by_type, F.count(F.lit(1)).cast("bigint").alias("events"))
        .select("customer_id", "activity_date", *EVENT_COUNTS.values(), "events",
                F.lit(0).cast("bigint").alias("orders"), F.lit(0).cast("bigint").alias("units"),
                zero_sales.alias("sales"))
    )
    from_orders = (
        fact.groupBy(F.col("customer_id"), F.col("order_date").alias("activity_date"))
        .agg(
            F.count(F.lit(1)).cast("bigint").alias("orders"),
            F.sum(F.col("qty")).cast("bigint").alias("units"),
            F.sum(F.col("sales_amount")).cast("decimal(18,2)").alias("sales"),
        )
        .select("customer_id", "activity_date",
                *[F.lit(0).cast("bigint").alias(n) for n in EVENT_COUNTS.values()],
                F.lit(0).cast("bigint").alias("events"), "orders", "units", "sales")
    )
    measures = [*EVENT_COUNTS.values(), "events", "orders", "units"]
    return (
        from_events.unionByName(from_orders)
        .groupBy("customer_id", "activity_date")
        .agg(*[F.sum(F.col(m)).cast("bigint").alias(m) for m in measures],
             F.sum(F.col("sales")).cast("decimal(18,2)").alias("sales"))
    )
