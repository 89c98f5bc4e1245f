"""Benchmark: silver + gold for one day of orders, per engine, against a hand-written DuckDB baseline.

    python bench/pipeline.py                 # 1M rows, both engines, 3 repeats, 10M-row memory run
    python bench/pipeline.py --rows 200000 --memory-rows 0 --engines duckdb

Prints one JSON document:
- transform: the orders transform (type, validate, de-duplicate, enrich, fact, daily
  sales mart) on in-memory bronze rows, per engine, and the same transform written by
  hand as DuckDB SQL, run in this process; medians of --repeat runs and the ratios.
- pipeline: landing CSV -> bronze -> silver -> gold with Iceberg writes, per engine, next to
  the same written by hand in DuckDB (CSV -> Parquet -> SQL -> Parquet) on the same file.
- memory: peak RSS of the whole process tree for the pipeline on --memory-rows rows (in
  --memory-files CSV files) with the duckdb engine (a child process, sampled every 50 ms), and
  the process's own peak after each stage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lakehouse.contracts import CONTRACTS  # noqa: E402
from lakehouse.generate import master_data  # noqa: E402
from lakehouse.resources.engine import Engine  # noqa: E402
from lakehouse.settings import duckdb_memory_limit  # noqa: E402
from lakehouse.transforms import gold  # noqa: E402
from lakehouse.transforms.bronze import LINEAGE_TYPES  # noqa: E402
from lakehouse.transforms.casing import define_duckdb_macros  # noqa: E402
from lakehouse.transforms.silver import WHITESPACE, classify, outcome_counts, quarantine_rows, silver_rows  # noqa: E402

DAY = dt.date(2026, 3, 10)
PREPARE_ROWS = 10_000_000
ORDERS_SCHEMA = pa.schema([(name, pa.string()) for name in
                           ("order_id", "order_date", "customer_id", "product_id", "qty", "unit_price", "channel")])
CHANNELS = np.array(["web", " Web ", "STORE", "store ", "Mobile", "mobile", "fax"])  # 'fax' is invalid


def orders_columns(rows: int, seed: int = 7, first: int = 0) -> dict[str, np.ndarray]:
    """Landed order columns as strings, vectorised; about 1% dirty, 4% late; order ids from B-<first>."""
    rng = np.random.default_rng(seed)
    customers, products = master_data(seed, 1.0)
    cust = np.array([c.customer_id for c in customers] + ["C9999999"])  # one unknown id
    prod_ids = np.array([p.product_id for p in products])
    prices = np.array([f"{p.list_price:.2f}" for p in products])
    commas = np.char.replace(prices, ".", ",")
    days_back = np.where(rng.random(rows) < 0.04, rng.integers(1, 6, rows), 0)
    date_strings = np.array([(DAY - dt.timedelta(days=int(d))).strftime("%d/%m/%Y") for d in range(6)])
    order_date = date_strings[days_back]
    order_date[rng.random(rows) < 0.003] = "31/02/2026"
    product = rng.integers(0, len(prod_ids), rows)
    qty = rng.integers(1, 6, rows).astype(str)
    qty[rng.random(rows) < 0.003] = "-1"
    numbers = np.arange(first, first + rows)
    order_id = np.char.add("B-", numbers.astype(str))
    dup = rng.random(rows) < 0.002
    order_id[dup] = np.char.add("B-", np.maximum(numbers[dup] - 1, 0).astype(str))
    return {
        "order_id": order_id,
        "order_date": order_date,
        "customer_id": cust[rng.integers(0, len(cust), rows)],
        "product_id": prod_ids[product],
        "qty": qty,
        "unit_price": np.where(rng.random(rows) < 0.5, prices[product], commas[product]),
        "channel": CHANNELS[rng.choice(len(CHANNELS), rows, p=[.3, .1, .2, .1, .15, .149, .001])],
    }


def bronze_table(columns: dict[str, np.ndarray], source_file: str) -> pa.Table:
    n = len(next(iter(columns.values())))
    data = {k: pa.array(v, pa.string()) for k, v in columns.items()}
    data["_source_file"] = pa.array([source_file] * n, pa.string())
    data["_ingest_date"] = pa.array([DAY] * n, pa.date32())
    data["_ingested_at"] = pa.array([dt.datetime(2026, 3, 10, tzinfo=dt.timezone.utc)] * n, LINEAGE_TYPES["_ingested_at"])
    data["_row_number"] = pa.array(np.arange(1, n + 1), pa.int64())
    data["_parse_error"] = pa.nulls(n, pa.string())
    data["_raw_record"] = pa.nulls(n, pa.string())
    return pa.table(data)


def lookup_tables(seed: int = 7) -> tuple[pa.Table, pa.Table]:
    """Customer and product versions current on DAY (the lookups take versions with their ingest date)."""
    customers, products = master_data(seed, 1.0)

    def versions(columns: dict) -> pa.Table:
        n = len(next(iter(columns.values())))
        return pa.table({**columns, "_ingest_date": pa.array([DAY] * n, pa.date32()),
                         "_row_number": pa.array(range(1, n + 1), pa.int64())})

    return (
        versions({"customer_id": [c.customer_id for c in customers], "region": [c.region for c in customers]}),
        versions({"product_id": [p.product_id for p in products], "category": [p.category for p in products]}),
    )


def engine_transform(engine_name: str, bronze: pa.Table, customers: pa.Table, products: pa.Table) -> dict:
    """The orders transform through our PySpark-API code; returns output sizes and total."""
    contract = CONTRACTS["orders"]
    with Engine(engine_name, memory_limit=duckdb_memory_limit()) as eng:
        lookups = {"customers": eng.from_arrow(customers), "products": eng.from_arrow(products)}
        rows = eng.materialize(classify(eng.from_arrow(bronze), contract, None, lookups, eng.cut))
        counts_df, labels = outcome_counts(rows, contract)  # one row: the bench has one ingest date
        counts = {labels[k]: v for k, v in eng.to_arrow(counts_df).to_pylist()[0].items() if k in labels}
        silver = eng.to_arrow(silver_rows(rows, contract))
        quarantined = eng.to_arrow(quarantine_rows(rows))
        fact = gold.fact_orders(eng.from_arrow(silver))
        mart = eng.to_arrow(gold.daily_sales(fact))
    return {"silver": silver.num_rows, "set_aside": quarantined.num_rows, "duplicates": counts["duplicate"],
            "superseded": counts["superseded"], "mart_rows": mart.num_rows, "sales": str(sum(mart["sales"].to_pylist()))}


# Whitespace of any kind trimmed, and upper and lower case as Python's, as silver does (the same
# regular expressions, the fastest way found in DuckDB, transforms/silver.py `trimmed`; the same
# macros, transforms/casing.py).
BASELINE_SQL = r"""
CREATE OR REPLACE TEMP MACRO wtrim(s) AS regexp_replace(regexp_replace(s, '^SPACE+', ''), 'SPACE+$', '');
CREATE TABLE typed AS
WITH src AS (
  SELECT *, NULLIF(wtrim(order_id), '') AS r_id, NULLIF(wtrim(order_date), '') AS r_date,
         lakehouse_upper(NULLIF(wtrim(customer_id), '')) AS r_cust, lakehouse_upper(NULLIF(wtrim(product_id), '')) AS r_prod,
         NULLIF(wtrim(qty), '') AS r_qty, REPLACE(NULLIF(wtrim(unit_price), ''), ',', '.') AS r_price,
         lakehouse_lower(NULLIF(wtrim(channel), '')) AS r_channel
  FROM bronze
), parsed AS (
  SELECT *,
    CASE WHEN regexp_matches(r_date, '^\d{2}/\d{2}/\d{4}$') THEN CAST(try_strptime(r_date, '%d/%m/%Y') AS DATE) END AS v_date,
    CASE WHEN regexp_matches(r_qty, '^[+-]?[0-9]{1,9}$') THEN CAST(r_qty AS INTEGER) END AS v_qty,
    CASE WHEN regexp_matches(r_price, '^[+-]?[0-9]{1,10}(\.[0-9]{1,2})?$') THEN CAST(r_price AS DECIMAL(12,2)) END AS v_price
  FROM src
), ruled AS (
  SELECT *, concat_ws(',',
      CASE WHEN _parse_error IS NOT NULL THEN 'record.malformed' END,
      CASE WHEN r_id IS NULL THEN 'order_id.required' END,
      CASE WHEN r_date IS NULL THEN 'order_date.required' END,
      CASE WHEN r_date IS NOT NULL AND v_date IS NULL THEN 'order_date.invalid' END,
      CASE WHEN r_cust IS NULL THEN 'customer_id.required' END,
      CASE WHEN r_prod IS NULL THEN 'product_id.required' END,
      CASE WHEN r_qty IS NULL THEN 'qty.required' END,
      CASE WHEN r_qty IS NOT NULL AND v_qty IS NULL THEN 'qty.invalid' END,
      CASE WHEN v_qty IS NOT NULL AND (v_qty <= 0 OR v_qty > 1000000) THEN 'qty.out_of_range' END,
      CASE WHEN r_price IS NULL THEN 'unit_price.required' END,
      CASE WHEN r_price IS NOT NULL AND v_price IS NULL THEN 'unit_price.invalid' END,
      CASE WHEN v_price IS NOT NULL AND (v_price < 0 OR v_price > 1000000) THEN 'unit_price.out_of_range' END,
      CASE WHEN r_channel IS NULL THEN 'channel.required' END,
      CASE WHEN r_channel IS NOT NULL AND r_channel NOT IN ('web', 'store', 'mobile') THEN 'channel.not_accepted' END
    ) AS rules,
    concat_ws('|', r_id, v_date, r_cust, r_prod, v_qty, v_price, r_channel) AS content
  FROM parsed
)
SELECT r.*, c.region, p.category,
  concat_ws(',', CASE WHEN r.r_cust IS NOT NULL AND c.customer_id IS NULL THEN 'unknown_customer' END,
                 CASE WHEN r.r_prod IS NOT NULL AND p.product_id IS NULL THEN 'unknown_product' END) AS flags,
  CASE WHEN r.rules <> '' THEN 'quarantine'
       -- the content of a key's last record wins (a correction); the first record holding it is kept
       WHEN r.content <> first_value(r.content) OVER (PARTITION BY r.rules = '', r.r_id
            ORDER BY r._ingest_date DESC, r._source_file DESC, r._row_number DESC) THEN 'superseded'
       WHEN row_number() OVER (PARTITION BY r.rules = '', r.r_id, r.content
            ORDER BY r._ingest_date, r._source_file, r._row_number) > 1 THEN 'duplicate'
       ELSE 'silver' END AS outcome
FROM ruled r
LEFT JOIN customers c ON r.r_cust = c.customer_id
LEFT JOIN products p ON r.r_prod = p.product_id
""".replace("SPACE", WHITESPACE)


def baseline_transform(bronze: pa.Table, customers: pa.Table, products: pa.Table) -> dict:
    """The same transform, written by hand as DuckDB SQL, under the engine's memory limit."""
    conn = duckdb.connect()
    try:
        conn.execute(f"SET memory_limit = '{duckdb_memory_limit()}'")
        conn.register("bronze", bronze)
        conn.register("customers", customers)
        conn.register("products", products)
        define_duckdb_macros(conn)
        conn.execute(BASELINE_SQL)
        counts = conn.execute("SELECT outcome, count(*) FROM typed GROUP BY 1").fetchall()
        silver = conn.sql(SILVER_SQL).to_arrow_table()
        quarantined = conn.sql(  # set aside: broke a rule, or a duplicate or superseded record
            "SELECT * EXCLUDE (r_id, r_date, r_cust, r_prod, r_qty, r_price, r_channel, v_date, v_qty, v_price, region, "
            "category, flags, content, outcome) FROM typed WHERE outcome <> 'silver'").to_arrow_table()
        conn.register("silver", silver)
        mart = conn.sql(MART_SQL.format(silver="silver")).to_arrow_table()
    finally:
        conn.close()
    by = dict(counts)
    return {"silver": silver.num_rows, "set_aside": quarantined.num_rows, "duplicates": by.get("duplicate", 0),
            "superseded": by.get("superseded", 0), "mart_rows": mart.num_rows,
            "sales": str(sum(mart["sales"].to_pylist()))}


SILVER_SQL = ("SELECT r_id AS order_id, v_date AS order_date, r_cust AS customer_id, r_prod AS product_id, "
              "v_qty AS qty, v_price AS unit_price, r_channel AS channel, region, category, "
              "CAST(v_qty * v_price AS DECIMAL(18,2)) AS sales_amount, _source_file, _ingest_date, _ingested_at, "
              "_row_number, flags AS _flags FROM typed WHERE outcome = 'silver'")
MART_SQL = ("SELECT order_date, channel, COALESCE(region, 'Unknown') AS region, "
            "COALESCE(category, 'Unknown') AS category, count(*) AS orders, sum(qty) AS units, "
            "CAST(sum(sales_amount) AS DECIMAL(18,2)) AS sales FROM {silver} GROUP BY ALL")  # a relation


def baseline_pipeline(home: Path, customers: pa.Table, products: pa.Table) -> dict:
    """The pipeline's baseline, written by hand in DuckDB: landing CSV -> Parquet -> SQL -> Parquet.

    What a data engineer would write without the lakehouse: the orders file read as text
    (bronze, with the same lineage columns), the transform above over it, and silver,
    quarantine and the daily sales mart written as Parquet files. DuckDB under the same
    memory limit as the engine (LAKEHOUSE_DUCKDB_MEMORY), spilling to disk beyond it.
    """
    root = home / "landing" / f"retail/orders/ingest_date={DAY}"
    out = home / "baseline"
    out.mkdir(parents=True, exist_ok=True)
    csv = next(root.glob("*.csv"))
    stages, start = {}, time.perf_counter()
    conn = duckdb.connect()
    try:
        conn.execute(f"SET memory_limit = '{duckdb_memory_limit()}'")
        conn.execute(f"SET temp_directory = '{out / 'spill'}'")
        conn.execute("SET preserve_insertion_order = false")
        conn.register("customers", customers)
        conn.register("products", products)
        conn.execute(
            f"COPY (SELECT *, '{csv.relative_to(home / 'landing')}' AS _source_file, DATE '{DAY}' AS _ingest_date, "
            "now() AS _ingested_at, row_number() OVER () AS _row_number, NULL::VARCHAR AS _parse_error "
            f"FROM read_csv('{csv}', all_varchar = true, header = true)) TO '{out / 'bronze.parquet'}' (FORMAT parquet)")
        stages["bronze"] = time.perf_counter() - start
        start = time.perf_counter()
        conn.execute(f"CREATE VIEW bronze AS SELECT * FROM read_parquet('{out / 'bronze.parquet'}')")
        define_duckdb_macros(conn)
        conn.execute(BASELINE_SQL)
        conn.execute(f"COPY ({SILVER_SQL}) TO '{out / 'silver.parquet'}' (FORMAT parquet)")
        conn.execute(f"COPY (SELECT * FROM typed WHERE outcome <> 'silver') TO '{out / 'set_aside.parquet'}' "
                     "(FORMAT parquet)")
        stages["silver"] = time.perf_counter() - start
        start = time.perf_counter()
        mart = MART_SQL.format(silver=f"read_parquet('{out / 'silver.parquet'}')")
        conn.execute(f"COPY ({mart}) TO '{out / 'mart.parquet'}' "
                     "(FORMAT parquet)")
        stages["mart"] = time.perf_counter() - start
    finally:
        conn.close()
    stages["total"] = sum(stages.values())
    return {k: round(v, 2) for k, v in stages.items()}


def timed(fn, repeat: int) -> tuple[float, dict]:
    seconds, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def prepare_landing(rows: int, home: Path, files: int = 1) -> None:
    """A landing zone with one day: the customers and products snapshots and `rows` orders in
    `files` CSV files (a large day often lands as parts)."""
    from lakehouse.generate import generate
    from lakehouse.resources.landing import open_landing_zone
    from lakehouse.settings import load_settings

    settings = load_settings({"LAKEHOUSE_HOME": str(home)})
    zone = open_landing_zone(settings.landing_uri)
    generate(zone, days=1, start=DAY, seed=7)
    root = Path(settings.landing_uri[len("file://"):])
    for key in [o.key for o in zone.list("retail/orders/")]:
        (root / key).unlink()
    # Made in parts of at most PREPARE_ROWS (numpy's fixed-width strings take about 2 GB per 10M
    # rows), each with a seed of its own; in one file, up to PREPARE_ROWS, the file is as before.
    per_file, part = -(-rows // files), 0
    for number, start in enumerate(range(0, rows, per_file)):
        name = "orders_bench.csv" if files == 1 else f"orders_bench_{number:03d}.csv"
        end = min(rows, start + per_file)
        with pacsv.CSVWriter(root / f"retail/orders/ingest_date={DAY}/{name}", ORDERS_SCHEMA) as writer:
            for first in range(start, end, PREPARE_ROWS):
                columns = orders_columns(min(PREPARE_ROWS, end - first), seed=7 + part, first=first)
                writer.write_table(pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()}, ORDERS_SCHEMA))
                part += 1
                del columns


def whole_pipeline(engine_name: str, home: Path, peaks: dict | None = None) -> dict:
    """Landing CSV -> bronze -> silver (customers, products, orders) -> fact -> mart, with Iceberg.

    `peaks`: filled with this process's peak resident memory (GB) after each stage, which shows
    the stage that set the peak."""
    import resource

    def peak(stage: str) -> None:
        if peaks is not None:
            peaks[stage] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)  # KiB on Linux

    from lakehouse.iceberg import TableStore, catalog_from_settings
    from lakehouse.ingest import load_bronze
    from lakehouse.resources.landing import open_landing_zone
    from lakehouse.settings import load_settings
    from lakehouse.steps import StepContext, run_daily_sales, run_fact_orders, run_silver

    settings = load_settings({"LAKEHOUSE_HOME": str(home)})
    zone = open_landing_zone(settings.landing_uri)
    store = TableStore(catalog_from_settings(settings))
    stages = {}
    start = time.perf_counter()
    for source in ("customers", "products", "orders"):
        load_bronze(zone, store, CONTRACTS[source], DAY, "bench")
    stages["bronze"] = time.perf_counter() - start
    peak("bronze")
    steps = [("silver", lambda c: [run_silver(c, s, DAY) for s in ("customers", "products", "orders")]),
             ("fact", lambda c: run_fact_orders(c, DAY)), ("mart", lambda c: run_daily_sales(c, DAY))]
    for name, step in steps:
        start = time.perf_counter()
        # Spark reads and writes through its Iceberg catalog
        with Engine(engine_name, store.catalog, memory_limit=duckdb_memory_limit()) as eng:
            step(StepContext(store, eng, "bench"))
        stages[name] = time.perf_counter() - start
        peak(name)
    stages["total"] = sum(stages.values())
    return {k: round(v, 2) for k, v in stages.items()}


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
        stack.extend(children.get(p, []))
    return total


def peak_memory(rows: int, files: int = 1) -> dict:
    """Run the whole pipeline on `rows` rows landed in `files` files in a child process; sample its tree's RSS."""
    with tempfile.TemporaryDirectory() as home:
        # The sample file is made by another process first: only the pipeline is measured.
        subprocess.run([sys.executable, __file__, "--child-prepare", str(rows), "--memory-files", str(files),
                        "--home", home], check=True)
        proc = subprocess.Popen([sys.executable, __file__, "--child-pipeline", "--home", home],
                                stdout=subprocess.PIPE, text=True)
        peak, stop = 0, threading.Event()

        def sample():
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _tree_rss(proc.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, _ = proc.communicate()
        stop.set()
        sampler.join()
        if proc.returncode:
            raise SystemExit(f"memory run failed with exit code {proc.returncode}")
    stages = json.loads(out.strip().splitlines()[-1])
    return {"rows": rows, "files": files, "engine": "duckdb", "peak_rss_gb": round(peak / 2**30, 2), "target_gb": 4,
            "peak_rss_gb_after": stages.pop("peak_rss_gb_after"), "stages_seconds": stages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engines", default="duckdb,spark")
    parser.add_argument("--memory-rows", type=int, default=10_000_000, help="0 to skip the memory run")
    parser.add_argument("--memory-files", type=int, default=1, help="the memory run's orders in this many CSV files")
    parser.add_argument("--child-prepare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-pipeline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_prepare:
        prepare_landing(args.child_prepare, Path(args.home), args.memory_files)
        return
    if args.child_pipeline:
        stages = whole_pipeline("duckdb", Path(args.home), peaks := {})
        print(json.dumps({**stages, "peak_rss_gb_after": peaks}))
        return

    engines = [e for e in args.engines.split(",") if e]
    bronze = bronze_table(orders_columns(args.rows), f"retail/orders/ingest_date={DAY}/orders.csv")
    customers, products = lookup_tables()
    report: dict = {"rows": args.rows, "repeat": args.repeat, "cpus": os.cpu_count(), "transform": {}, "pipeline": {}}
    base_s, base = timed(lambda: baseline_transform(bronze, customers, products), args.repeat)
    report["transform"]["duckdb_sql_baseline"] = {"median_seconds": round(base_s, 3), "outputs": base}
    for engine in engines:
        engine_transform(engine, bronze.slice(0, 1000), customers, products)  # warm-up (JIT, sessions)
        secs, out = timed(lambda: engine_transform(engine, bronze, customers, products), args.repeat)
        report["transform"][engine] = {
            "median_seconds": round(secs, 3), "ratio_to_baseline": round(secs / base_s, 2),
            "outputs": out, "outputs_match_baseline": out == base,
        }
        with tempfile.TemporaryDirectory() as home:
            prepare_landing(args.rows, Path(home))
            baseline = baseline_pipeline(Path(home), customers, products)
            ours = whole_pipeline(engine, Path(home))
            report["pipeline"][engine] = {"seconds": ours, "duckdb_baseline_seconds": baseline,
                                          "ratio_to_baseline": round(ours["total"] / baseline["total"], 2)}
    report["target"] = ("duckdb transform, and the whole pipeline, within 1.5x of the same written by hand "
                        "in DuckDB (SQL; CSV -> Parquet -> SQL -> Parquet)")
    if args.memory_rows:
        report["memory"] = peak_memory(args.memory_rows, args.memory_files)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
