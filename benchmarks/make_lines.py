"""Synthetic transaction lines for the preparation benchmarks, as Parquet (seeded, DuckDB SQL).

One folder per size under ``--out`` (default ``/work/bench-data``): ``l<lines>/transactions.parquet``,
``l<lines>/customers.parquet`` and ``l<lines>/params.yml`` (a client params file that extends
``params/default.yml`` and reads them). Twenty lines per customer: every customer has five orders
of four lines, orders interleaved over two years (2023-01-01 .. 2024-12-31), the file in order
date order. Every random choice is DuckDB's ``hash`` of the line number and the seed, so the same
seed and DuckDB version give the same files (the version is recorded in ``meta.json``).

Planted dirt (shares of lines; each line has at most one kind) so that quarantine, identity
resolution and product-name cleaning do real work:

- exact duplicate lines (0.5 %): the line repeats the line before it, field for field;
- missing customer id (0.5 %), unparseable date (0.1 %), date after 2024-12-31 (0.1 %),
  unparseable price (0.1 %), zero price (0.1 %), negative price (0.1 %);
- returns (2 %, negative quantity, kept) and cancelled orders (0.5 % of orders: ``C`` + order id,
  negative quantities, kept);
- product-name spelling variants (1 %: case and spacing, collapsed by the preparation).

Customers: one row per customer (name, e-mail, phone, signup date, gender, region); 2 % share
another customer's e-mail written differently, 1 % that customer's phone in another format, so
identity resolution merges about 3 % of ids; 0.1 % exact duplicate rows.

    python benchmarks/make_lines.py [--lines 1000000 10000000 100000000] [--out DIR] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
OUT = Path("/work/bench-data")
LINES_PER_CUSTOMER = 20
LINES_PER_ORDER = 4
N_PRODUCTS = 2000
CATEGORIES = ["Home", "Garden", "Kitchen", "Toys", "Books", "Sport", "Beauty", "Food"]
CHANNELS = ["web", "store", "app", "phone"]


def _u(expr: str, salt: int, seed: int) -> str:
    """A uniform number in [0, 1) from the hash of ``expr`` (deterministic, per salt and seed)."""
    return f"(hash({expr}, {seed}, {salt}) % 1000000007) / 1000000007.0"


def transactions_sql(lines: int, seed: int) -> str:
    """SQL of ``lines`` transaction lines (all columns as the file holds them)."""
    customers = lines // LINES_PER_CUSTOMER
    orders = lines // LINES_PER_ORDER
    span = 731 * 86400  # 2023-01-01 .. 2024-12-31, in seconds
    cats = "[" + ", ".join(f"'{c}'" for c in CATEGORIES) + "]"
    chans = "[" + ", ".join(f"'{c}'" for c in CHANNELS) + "]"
    # d = the dirt kind of the content's line j (a duplicate line i copies line j = i - 1)
    u = _u("j", 1, seed)
    dirt = f"""CASE WHEN {u} < 0.005 THEN NULL
        WHEN {u} < 0.010 THEN 'no_customer' WHEN {u} < 0.011 THEN 'bad_date'
        WHEN {u} < 0.012 THEN 'future' WHEN {u} < 0.013 THEN 'bad_price'
        WHEN {u} < 0.014 THEN 'zero_price' WHEN {u} < 0.015 THEN 'neg_price'
        WHEN {u} < 0.035 THEN 'return' WHEN {u} < 0.045 THEN 'name_variant' END"""
    return f"""
WITH s AS (
  SELECT i, CASE WHEN i > 0 AND {_u("i", 1, seed)} < 0.005 THEN i - 1 ELSE i END AS j
  FROM range({lines}) r(i)
), v AS (
  SELECT i, j, {dirt} AS d, j // {LINES_PER_ORDER} AS o,
    (j // {LINES_PER_ORDER}) % {customers} AS c,
    {_u(f"j // {LINES_PER_ORDER}", 2, seed)} < 0.005 AS cancelled,
    1 + CAST(floor(pow({_u("j", 3, seed)}, 2) * {N_PRODUCTS}) AS BIGINT) AS p,
    1 + CAST(floor({_u("j", 4, seed)} * 5) AS BIGINT) AS q,
    TIMESTAMP '2023-01-01' + to_seconds(CAST((j // {LINES_PER_ORDER}) * {span} // {orders} AS BIGINT)) AS ts
  FROM s
)
SELECT
  CASE WHEN d = 'no_customer' THEN NULL
       ELSE 'C' || lpad(CAST((c * 7919 + 13) % {customers} AS VARCHAR), 9, '0') END AS customer_id,
  CASE WHEN cancelled THEN 'CO' ELSE 'O' END || lpad(CAST(o AS VARCHAR), 10, '0') AS order_id,
  CASE WHEN d = 'bad_date' THEN 'not a date'
       WHEN d = 'future' THEN strftime(ts + INTERVAL 7 YEAR, '%Y-%m-%d %H:%M:%S')
       ELSE strftime(ts, '%Y-%m-%d %H:%M:%S') END AS order_date,
  'P' || lpad(CAST(p AS VARCHAR), 5, '0') AS product_id,
  CASE WHEN d = 'name_variant' THEN upper('Product  ' || CAST(p AS VARCHAR))
       ELSE 'Product ' || CAST(p AS VARCHAR) END AS product_name,
  {cats}[1 + p % {len(CATEGORIES)}] AS category,
  {chans}[1 + CAST(hash(o, {seed}, 5) % {len(CHANNELS)} AS BIGINT)] AS channel,
  CASE WHEN cancelled OR d = 'return' THEN -q ELSE q END AS quantity,
  CASE WHEN d = 'bad_price' THEN 'n/a' WHEN d = 'zero_price' THEN '0.00'
       ELSE (CASE WHEN d = 'neg_price' THEN '-' ELSE '' END)
            || printf('%.2f', 0.5 + (p % 97) * 0.75) END AS unit_price
FROM v"""  # in range() order: preserve_insertion_order keeps it


def customers_sql(lines: int, seed: int) -> str:
    """SQL of the customers table: one row per customer id, some sharing an e-mail or phone."""
    customers = lines // LINES_PER_CUSTOMER
    u = _u("n", 11, seed)
    return f"""
WITH c AS (
  SELECT n, CASE WHEN {u} < 0.02 AND n > 0 THEN 'email' WHEN {u} < 0.03 AND n > 0 THEN 'phone'
                 WHEN {u} < 0.031 THEN 'dup' END AS k
  FROM range({customers}) r(n)
), r AS (
  SELECT n, k, CASE WHEN k IN ('email', 'phone') THEN n - 1 ELSE n END AS m FROM c
  UNION ALL SELECT n, NULL, n FROM c WHERE k = 'dup'
)
SELECT 'C' || lpad(CAST(n AS VARCHAR), 9, '0') AS customer_id,
  'Person ' || CAST(n AS VARCHAR) AS name,
  CASE WHEN k = 'email' THEN upper(' person' || CAST(m AS VARCHAR) || '@example.com ')
       WHEN k = 'phone' THEN NULL
       ELSE 'person' || CAST(n AS VARCHAR) || '@example.com' END AS email,
  CASE WHEN k = 'phone' THEN '0044 ' || CAST(7000000000 + m AS VARCHAR)
       WHEN k = 'email' THEN NULL
       ELSE '+44 ' || CAST(7000000000 + n AS VARCHAR) END AS phone,
  strftime(DATE '2020-01-01' + CAST(hash(n, {seed}, 12) % 1096 AS INTEGER), '%Y-%m-%d') AS signup_date,
  ['F', 'M', 'X'][1 + CAST(hash(n, {seed}, 13) % 3 AS BIGINT)] AS gender,
  ['North', 'South', 'East', 'West'][1 + CAST(hash(n, {seed}, 14) % 4 AS BIGINT)] AS region
FROM r ORDER BY n, k NULLS LAST"""


def params_text(folder: Path, lines: int) -> str:
    """The params file of one size (DuckDB's memory limit 4 GB at 100M lines, as issue 9 sets)."""
    limit = "\n  duckdb_memory_limit: 4GB" if lines >= 100_000_000 else ""
    return f"""# Generated by benchmarks/make_lines.py: {lines:,} synthetic lines (not committed).
extends: {ROOT / "params" / "default.yml"}
client: bench{lines}
data:
  source: files
  transactions:
    path: {folder / "transactions.parquet"}
  customers:
    path: {folder / "customers.parquet"}
cleaning:
  max_valid_date: 2024-12-31
report:
  renderer: pandoc
run:
  engine: duckdb{limit}
"""


def make(lines: int, out: Path, seed: int, force: bool = False) -> Path:
    """Write one size's files (skipped when ``meta.json`` says they exist with this seed)."""
    folder = out / f"l{lines}"
    meta_file = folder / "meta.json"
    meta = {"lines": lines, "seed": seed, "duckdb": duckdb.__version__}
    if not force and meta_file.is_file():
        old = json.loads(meta_file.read_text())
        if {k: old.get(k) for k in meta} == meta:
            # The params file names this checkout's params/default.yml: rewritten every time.
            (folder / "params.yml").write_text(params_text(folder, lines))
            return folder
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with duckdb.connect(":memory:") as con:
        con.execute("SET preserve_insertion_order = true")
        con.execute("SET memory_limit = '4GB'")
        con.execute(f"SET temp_directory = '{folder / 'tmp'}'")
        for name, sql in (
            ("transactions", transactions_sql(lines, seed)),
            ("customers", customers_sql(lines, seed)),
        ):
            con.execute(
                f"COPY ({sql}) TO '{folder / f'{name}.parquet'}' "
                "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)"
            )
        n = con.execute(f"SELECT count(*) FROM '{folder / 'transactions.parquet'}'").fetchone()[0]
    (folder / "params.yml").write_text(params_text(folder, lines))
    meta |= {"rows": int(n), "seconds": round(time.perf_counter() - t0, 1)}
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, nargs="+", default=[1_000_000, 10_000_000, 100_000_000])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--force", action="store_true", help="regenerate even when present")
    args = ap.parse_args()
    for lines in args.lines:
        folder = make(lines, args.out, args.seed, args.force)
        print(folder, json.loads((folder / "meta.json").read_text()), flush=True)


if __name__ == "__main__":
    main()
