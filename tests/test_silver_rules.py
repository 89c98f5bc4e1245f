"""Every quarantine rule, every flag and every outcome, with a failing and a passing case."""

import pytest

from lakehouse.contracts import CONTRACTS
from lakehouse.resources.engine import Engine
from lakehouse.transforms.silver import (
    OUTCOME,
    classify,
    latest_versions,
    quarantine_rows,
    silver_rows,
)
from silver_fixtures import bronze, good

# (source, rule, a landed row that breaks it)
BROKEN = [
    ("orders", "record.malformed", {"_parse_error": "expected 7 fields, got 3", "_raw_record": "O9,x,y"}),
    ("orders", "order_id.required", good("orders", order_id="   ")),
    ("orders", "order_id.required", good("orders", order_id="\t\u00a0\r\n")),  # whitespace of any kind is blank
    ("orders", "order_date.required", good("orders", order_date=None)),
    ("orders", "order_date.invalid", good("orders", order_date="31/02/2026")),
    ("orders", "order_date.invalid", good("orders", order_date="1/3/2026")),
    ("orders", "order_date.invalid", good("orders", order_date="2026-03-09")),
    ("orders", "order_date.out_of_range", good("orders", order_date="31/12/2019")),
    ("orders", "order_date.in_future", good("orders", order_date="11/03/2026")),
    ("orders", "customer_id.required", good("orders", customer_id="")),
    ("orders", "product_id.required", good("orders", product_id=None)),
    ("orders", "qty.required", good("orders", qty="")),
    ("orders", "qty.invalid", good("orders", qty="1.5")),
    ("orders", "qty.invalid", good("orders", qty="two")),
    ("orders", "qty.out_of_range", good("orders", qty="0")),
    ("orders", "qty.out_of_range", good("orders", qty="-3")),
    ("orders", "qty.out_of_range", good("orders", qty="1000001")),
    # as large as the types allow: their product overflowed sales_amount's decimal(18,2), and DuckDB failed the step
    ("orders", "qty.out_of_range", good("orders", qty="999999999", unit_price="9999999999.99")),
    ("orders", "unit_price.required", good("orders", unit_price=" ")),
    ("orders", "unit_price.invalid", good("orders", unit_price="1.234,56")),
    ("orders", "unit_price.invalid", good("orders", unit_price="9.999")),
    ("orders", "unit_price.out_of_range", good("orders", unit_price="-0,01")),
    ("orders", "unit_price.out_of_range", good("orders", unit_price="1000000,01")),
    ("orders", "channel.required", good("orders", channel="")),
    ("orders", "channel.not_accepted", good("orders", channel="fax")),
    ("customers", "record.malformed", {"_parse_error": "expected 6 fields, got 2", "_raw_record": "C9;x"}),
    ("customers", "customer_id.required", good("customers", customer_id="")),
    ("customers", "region.required", good("customers", region=None)),
    ("products", "record.malformed", {"_parse_error": "invalid JSON", "_raw_record": "{"}),
    ("products", "product_id.required", good("products", product_id="")),
    ("products", "category.required", good("products", category="")),
    ("products", "list_price.invalid", good("products", list_price="free")),
    ("products", "list_price.out_of_range", good("products", list_price="-1")),
    ("events", "record.malformed", {"_parse_error": "line is not a JSON object", "_raw_record": "42"}),
    ("events", "event_id.required", good("events", event_id=None)),
    ("events", "event_id.pattern", good("events", event_id="not-a-uuid")),
    ("events", "user_id.required", good("events", user_id="")),
    ("events", "timestamp.required", good("events", timestamp=None)),
    ("events", "timestamp.invalid", good("events", timestamp="2026-03-10T10:00:00Z")),
    ("events", "timestamp.out_of_range", good("events", timestamp="1773136800")),  # seconds, not milliseconds: 1970
    ("events", "timestamp.invalid", good("events", timestamp="253402300800000")),  # year 10000: no date to Python
    ("events", "event_type.required", good("events", event_type=" ")),
    ("events", "event_type.not_accepted", good("events", event_type="scroll")),
    ("events", "payload.pattern", good("events", payload="[1,2]")),
]


@pytest.fixture(scope="module")
def engine():
    with Engine("duckdb") as eng:
        yield eng


def run(engine, source, rows, previous=None, lookups=None):
    contract = CONTRACTS[source]
    if contract.lookups and lookups is None:
        lookups = {
            "customers": engine.from_arrow(bronze("customers", [good("customers", customer_id="C1")])).select(
                "customer_id", "region", "_ingest_date", "_row_number"),
            "products": engine.from_arrow(bronze("products", [good("products", product_id="P1")])).select(
                "product_id", "category", "_ingest_date", "_row_number"),
        }
    rows_df = engine.materialize(classify(engine.from_arrow(bronze(source, rows)), contract, previous, lookups))
    return (
        engine.to_arrow(rows_df).to_pylist(),
        engine.to_arrow(silver_rows(rows_df, contract)).to_pylist(),
        engine.to_arrow(quarantine_rows(rows_df)).to_pylist(),
    )


def test_every_quarantine_rule_of_every_contract_has_a_breaking_case():
    declared = {(s, r) for s, c in CONTRACTS.items() for r in c.quarantine_rules()}
    assert declared == {(s, r) for s, r, _ in BROKEN}


@pytest.fixture(scope="module")
def broken_batches(engine):
    """All breaking rows of a source in one batch (plus a good row): one query per source."""
    out = {}
    for source in CONTRACTS:
        cases = [row for s, _, row in BROKEN if s == source]
        out[source] = run(engine, source, [*cases, good(source)])
    return out


@pytest.mark.parametrize("case", range(len(BROKEN)), ids=[f"{s}:{r}:{i}" for i, (s, r, _) in enumerate(BROKEN)])
def test_rule_quarantines_the_row_and_names_itself(broken_batches, case):
    source, rule, row = BROKEN[case]
    position = [i for i, (s, _, _) in enumerate(BROKEN) if s == source].index(case) + 1
    _, silver, quarantine = broken_batches[source]
    assert len(silver) == 1  # the good row, and nothing else, gets through
    [quarantined] = [q for q in quarantine if q["_row_number"] == position]
    assert rule in quarantined["_rules"].split(",")
    landed = {k[len("_src_"):]: v for k, v in quarantined.items() if k.startswith("_src_") and v is not None}
    assert landed == {k: v for k, v in row.items() if not k.startswith("_") and v is not None}
    if "_parse_error" in row:
        assert quarantined["_parse_error"] == row["_parse_error"] and quarantined["_raw_record"] == row["_raw_record"]


@pytest.mark.parametrize("source", sorted(CONTRACTS))
def test_a_good_row_passes_every_rule_typed_and_normalised(engine, source):
    rows, silver, quarantine = run(engine, source, [good(source)])
    assert quarantine == [] and len(silver) == 1
    assert silver[0]["_flags"] == ""


def test_typed_values_are_exact(engine):
    _, [order], _ = run(engine, "orders", [good("orders")])
    assert str(order["order_date"]) == "2026-03-09" and order["qty"] == 2
    assert str(order["unit_price"]) == "147.43" and str(order["sales_amount"]) == "294.86"
    assert order["channel"] == "web" and order["customer_id"] == "C1" and order["product_id"] == "P1"
    assert order["region"] == "North" and order["category"] == "Home"
    _, [customer], _ = run(engine, "customers", [good("customers")])
    assert customer["email"] == "jose.muller@example.com" and customer["phone"] == "+442079460958"
    _, [event], _ = run(engine, "events", [good("events")])
    assert event["event_type"] == "page_view" and event["event_id"] == "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
    assert event["timestamp"].isoformat() == "2026-03-10T10:00:00.123000+00:00"
    assert str(event["event_date"]) == "2026-03-10"


def test_values_padded_with_any_whitespace_are_read_trimmed(engine):
    """Tabs, no-break spaces, line breaks and other Unicode spaces around a value are padding,
    as spaces are (SQL's TRIM removes only spaces)."""
    pad = "\t\u00a0\u2003\u3000\x0b\x1f\r\n "
    padded = {k: pad + v + pad for k, v in good("orders").items() if not k.startswith("_") and v}
    _, [order], _ = run(engine, "orders", [good("orders", **padded)])
    _, [plain], _ = run(engine, "orders", [good("orders")])
    assert order == plain
    _, _, [q] = run(engine, "orders", [good("orders", channel=pad, qty=pad + "2" + pad)])
    assert q["_rules"] == "channel.required"


def test_every_rule_a_row_breaks_is_listed(engine):
    _, _, [q] = run(engine, "orders", [good("orders", order_id="", qty="-1", channel="fax", order_date="x")])
    assert set(q["_rules"].split(",")) == {"order_id.required", "qty.out_of_range", "channel.not_accepted", "order_date.invalid"}


def test_renamed_header_is_read_through_its_alias(engine):
    row = good("orders", customer_id=None)
    row["cust_id"] = "c1"
    _, [order], _ = run(engine, "orders", [row])
    assert order["customer_id"] == "C1" and order["region"] == "North"


@pytest.mark.parametrize("field, value, flag", [("email", "jose at example.com", "email.pattern"),
                                                 ("phone", "call me", "phone.pattern")])
def test_flag_rules_keep_the_row_and_null_the_value(engine, field, value, flag):
    _, [customer], quarantine = run(engine, "customers", [good("customers", **{field: value})])
    assert quarantine == [] and customer[field] is None and customer["_flags"] == flag


def test_unknown_customer_and_product_are_kept_and_flagged(engine):
    _, silver, _ = run(engine, "orders", [good("orders", customer_id="C404"), good("orders", order_id="O2", product_id="P404")])
    flags = {o["order_id"]: o["_flags"] for o in silver}
    assert flags == {"O1": "unknown_customer", "O2": "unknown_product"}
    assert {o["order_id"]: (o["region"], o["category"]) for o in silver} == {"O1": (None, "Home"), "O2": ("North", None)}


def test_a_resent_record_is_a_duplicate_a_changed_one_a_correction(engine):
    rows, silver, _ = run(engine, "orders", [good("orders"), good("orders", unit_price="147.43", channel=" WEB ")])
    assert [r[OUTCOME] for r in sorted(rows, key=lambda r: r["_row_number"])] == ["silver", "duplicate"]
    assert silver[0]["_row_number"] == 1  # the first copy of the winning content is kept
    rows, silver, _ = run(engine, "orders", [good("orders"), good("orders", qty="9")])
    assert [r[OUTCOME] for r in sorted(rows, key=lambda r: r["_row_number"])] == ["superseded", "silver"]
    assert silver[0]["qty"] == 9  # the latest version wins
    # A-B-A: the last content wins, kept as its first row; B is superseded.
    rows, silver, _ = run(engine, "orders", [good("orders"), good("orders", qty="9"), good("orders")])
    assert [r[OUTCOME] for r in sorted(rows, key=lambda r: r["_row_number"])] == ["silver", "superseded", "duplicate"]
    rows, silver, _ = run(engine, "customers", [good("customers"), good("customers", region="South")])
    assert [c["region"] for c in silver] == ["South"]


def test_invalid_copy_of_a_key_does_not_shadow_the_valid_one(engine):
    rows, silver, quarantine = run(engine, "orders", [good("orders", qty="x"), good("orders")])
    assert len(silver) == 1 and len(quarantine) == 1


def test_snapshot_rows_identical_to_the_current_version_are_unchanged(engine):
    contract = CONTRACTS["customers"]
    first = engine.materialize(classify(engine.from_arrow(bronze("customers", [good("customers"), good("customers", customer_id="C2")])), contract))
    current = latest_versions(silver_rows(first, contract), contract.keys)
    rows, silver, _ = run(engine, "customers", [good("customers"), good("customers", customer_id="C2", region="East")],
                          previous=current)
    outcomes = {r["customer_id"]: r[OUTCOME] for r in rows}
    assert outcomes == {"C1": "unchanged", "C2": "silver"}
    assert [c["region"] for c in silver] == ["East"]
