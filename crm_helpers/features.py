"""Per-customer features, defined once as SQL over the canonical ``transactions`` table.

The definitions are plain SQL (DuckDB dialect, portable to Spark SQL through SQLGlot): each feature
is written here once and nowhere else. Recency and tenure are measured to the reference date, the
day after the last kept transaction.
"""

from __future__ import annotations

import datetime as dt

import duckdb

#: feature name -> SQL aggregate over one customer's kept transaction lines.
CUSTOMER_FEATURES: dict[str, str] = {
    "first_purchase": "min(order_date) FILTER (WHERE NOT is_return)",
    "last_purchase": "max(order_date) FILTER (WHERE NOT is_return)",
    "orders": "count(DISTINCT order_id) FILTER (WHERE NOT is_return)",
    "lines": "count(*)",
    "items": "sum(quantity) FILTER (WHERE NOT is_return)",
    "gross_revenue": "coalesce(sum(amount) FILTER (WHERE NOT is_return), 0)",
    "returns_value": "coalesce(-sum(amount) FILTER (WHERE is_return), 0)",
    "return_lines": "count(*) FILTER (WHERE is_return)",
    "revenue": "sum(amount)",
}


def customer_features_sql(reference_date: dt.date | None) -> str:
    """SQL of the per-customer feature table (one row per ``customer_key``)."""
    ref = f"DATE '{reference_date}'" if reference_date else "current_date"
    aggs = ",\n  ".join(f"{expr} AS {name}" for name, expr in CUSTOMER_FEATURES.items())
    return f"""
SELECT customer_key,
  {aggs},
  date_diff('day', min(order_date) FILTER (WHERE NOT is_return), {ref}) AS tenure_days,
  date_diff('day', max(order_date) FILTER (WHERE NOT is_return), {ref}) AS recency_days
FROM transactions
GROUP BY customer_key
ORDER BY customer_key"""


def create_customer_features(
    con: duckdb.DuckDBPyConnection, reference_date: dt.date | None
) -> None:
    """Create the table ``customer_features`` from ``transactions`` in the engine."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE customer_features AS " + customer_features_sql(reference_date)
    )
