"""Contracts for the retail sources of the landing zone."""

from lakehouse.contracts.model import Column, SourceContract

ORDERS = SourceContract(
    name="orders",
    description="Order lines exported daily by the shop systems (web, store, mobile).",
    landed_as="CSV with header; dd/MM/yyyy dates; decimal point or comma",
    keys=("order_id",),
    columns=(
        Column("order_id", "string", "Order line identifier from the shop system.", required=True),
        Column("order_date", "date", "Day the order was placed (lands as dd/MM/yyyy).", required=True),
        Column("customer_id", "string", "Customer who ordered; joins customers.customer_id.", required=True),
        Column("product_id", "string", "Product ordered; joins products.product_id.", required=True),
        Column("qty", "int", "Units ordered; must be positive.", required=True),
        Column("unit_price", "decimal(12,2)", "Price per unit (lands with '.' or ',' decimals).", required=True),
        Column("channel", "string", "Sales channel: web, store or mobile (any case, padded).", required=True),
    ),
)

CUSTOMERS = SourceContract(
    name="customers",
    description="Daily snapshot of the customer master data from the CRM.",
    landed_as="CSV with header",
    keys=("customer_id",),
    columns=(
        Column("customer_id", "string", "Customer identifier from the CRM.", required=True),
        Column("first_name", "string", "Given name."),
        Column("last_name", "string", "Family name."),
        Column("email", "string", "Contact e-mail, lower-cased and validated in silver."),
        Column("phone", "string", "Contact phone, standardised in silver."),
        Column("region", "string", "Sales region the customer belongs to.", required=True),
    ),
)

PRODUCTS = SourceContract(
    name="products",
    description="Daily snapshot of the product catalogue from the PIM.",
    landed_as="CSV with header",
    keys=("product_id",),
    columns=(
        Column("product_id", "string", "Product identifier from the PIM.", required=True),
        Column("name", "string", "Product name."),
        Column("category", "string", "Product category.", required=True),
        Column("list_price", "decimal(12,2)", "Catalogue price."),
    ),
)

EVENTS = SourceContract(
    name="events",
    description="Clickstream events from the web and mobile apps.",
    landed_as="NDJSON, often gzipped",
    keys=("event_id",),
    columns=(
        Column("event_id", "string", "Event UUID.", required=True),
        Column("user_id", "string", "Customer id of the signed-in user.", required=True),
        Column("timestamp", "timestamp", "Event time (lands as epoch milliseconds).", required=True),
        Column("event_type", "string", "page_view, add_to_cart, checkout or purchase.", required=True),
        Column("payload", "string", "Event details as a JSON object."),
    ),
)

CONTRACTS = {c.name: c for c in (ORDERS, CUSTOMERS, PRODUCTS, EVENTS)}
