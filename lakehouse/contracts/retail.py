"""Contracts for the retail sources of the landing zone."""

from lakehouse.contracts.model import FLAG, SNAPSHOT, Column, Lookup, SourceContract

EMAIL = r"^[a-z0-9._%+\-]+@[a-z0-9.\-]+\.[a-z]{2,}$"
ORDER_DATE_FLOOR = "2020-01-01"  # the shop opened; earlier order dates are typos
UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

ORDERS = SourceContract(
    name="orders",
    description="Order lines exported daily by the shop systems (web, store, mobile).",
    landed_as="CSV with header; dd/MM/yyyy dates; decimal point or comma",
    keys=("order_id",),
    columns=(
        Column("order_id", "string", "Order line identifier from the shop system.", required=True),
        Column("order_date", "date", "Day the order was placed (lands as dd/MM/yyyy); not after its ingest date.",
               required=True, parse="dd/MM/yyyy", min_value=ORDER_DATE_FLOOR, not_after_ingest=True),
        Column("customer_id", "string", "Customer who ordered; joins customers.customer_id.", required=True,
               aliases=("cust_id", "customer", "customer_no"), normalize="upper"),
        Column("product_id", "string", "Product ordered; joins products.product_id.", required=True,
               aliases=("prod_id", "sku"), normalize="upper"),
        Column("qty", "int", "Units ordered; must be positive.", required=True, min_value=0, min_exclusive=True),
        Column("unit_price", "decimal(12,2)", "Price per unit (lands with '.' or ',' decimals).", required=True,
               min_value=0),
        Column("channel", "string", "Sales channel: web, store or mobile (any case, padded).", required=True,
               normalize="lower", accepted=("web", "store", "mobile")),
    ),
    lookups=(
        Lookup("customer_id", "customers", "customer_id", ("region",), "unknown_customer"),
        Lookup("product_id", "products", "product_id", ("category",), "unknown_product"),
    ),
)

CUSTOMERS = SourceContract(
    name="customers",
    description="Daily snapshot of the customer master data from the CRM.",
    landed_as="CSV with header, full snapshot every day",
    keys=("customer_id",),
    history=SNAPSHOT,
    columns=(
        Column("customer_id", "string", "Customer identifier from the CRM.", required=True, normalize="upper"),
        Column("first_name", "string", "Given name."),
        Column("last_name", "string", "Family name."),
        Column("email", "string", "Contact e-mail, lower-cased; an invalid one is nulled and flagged.",
               normalize="lower", pattern=EMAIL, pattern_action=FLAG),
        Column("phone", "string", "Contact phone: digits with an optional leading +; else nulled and flagged.",
               normalize="phone", pattern=r"^\+?[0-9]{6,15}$", pattern_action=FLAG),
        Column("region", "string", "Sales region the customer belongs to.", required=True),
    ),
)

PRODUCTS = SourceContract(
    name="products",
    description="Daily snapshot of the product catalogue from the PIM.",
    landed_as="CSV, pipe-delimited text or Parquet, full snapshot every day",
    keys=("product_id",),
    history=SNAPSHOT,
    columns=(
        Column("product_id", "string", "Product identifier from the PIM.", required=True, normalize="upper"),
        Column("name", "string", "Product name."),
        Column("category", "string", "Product category.", required=True),
        Column("list_price", "decimal(12,2)", "Catalogue price.", min_value=0),
    ),
)

EVENTS = SourceContract(
    name="events",
    description="Clickstream events from the web and mobile apps.",
    landed_as="NDJSON, often gzipped, sometimes a JSON array",
    keys=("event_id",),
    columns=(
        Column("event_id", "string", "Event UUID.", required=True, normalize="lower", pattern=UUID),
        Column("user_id", "string", "Customer id of the signed-in user.", required=True, normalize="upper"),
        Column("timestamp", "timestamp", "Event time, UTC (lands as epoch milliseconds).", required=True,
               parse="epoch_ms"),
        Column("event_type", "string", "page_view, add_to_cart, checkout or purchase.", required=True,
               normalize="lower", accepted=("page_view", "add_to_cart", "checkout", "purchase")),
        Column("payload", "string", "Event details as a JSON object.", pattern=r"^\{.*\}$"),
    ),
)

CONTRACTS = {c.name: c for c in (ORDERS, CUSTOMERS, PRODUCTS, EVENTS)}
