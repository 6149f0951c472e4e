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
WHERE customer_key IS NOT NULL  -- basket-only data has no customers
GROUP BY customer_key
ORDER BY customer_key"""


def create_customer_features(
    con: duckdb.DuckDBPyConnection, reference_date: dt.date | None
) -> None:
    """Create the table ``customer_features`` from ``transactions`` in the engine."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE customer_features AS " + customer_features_sql(reference_date)
    )


def rfm_sql(source: str, reference_date: dt.date, bins: int = 5) -> str:
    """SQL of recency, frequency, monetary and their 1..``bins`` scores, one row per customer.

    Recency is the days from the last purchase (not a return) to ``reference_date``; frequency is
    the number of distinct purchase orders; monetary is net revenue (purchases minus returns).
    Only lines dated before the reference date count, and only customers with a purchase appear.

    Score rule (quantile scores, ties share the lower score): a value's score is
    ``1 + floor(bins * (rank - 1) / n)`` where ``rank`` is 1 + the number of customers with a
    strictly worse value (SQL ``rank()``), so equal values always get equal scores. For recency a
    more recent purchase is better, so the oldest purchase has rank 1.
    """
    ref = f"DATE '{reference_date}'"

    def score(order: str) -> str:
        return f"CAST(1 + floor({bins} * (rank() OVER (ORDER BY {order}) - 1) / count(*) OVER ()) AS INTEGER)"

    return f"""
WITH c AS (
  SELECT customer_key,
    date_diff('day', max(order_date) FILTER (WHERE NOT is_return), {ref}) AS recency_days,
    count(DISTINCT order_id) FILTER (WHERE NOT is_return) AS frequency,
    sum(amount) AS monetary
  FROM {source}
  WHERE order_date < {ref}
  GROUP BY customer_key
  HAVING count(*) FILTER (WHERE NOT is_return) > 0
)
SELECT customer_key, recency_days, frequency, monetary,
  {score("recency_days DESC")} AS r_score,
  {score("frequency")} AS f_score,
  {score("monetary")} AS m_score
FROM c
ORDER BY customer_key"""


def rfm(con: duckdb.DuckDBPyConnection, transactions: str, reference_date: dt.date):
    """Run :func:`rfm_sql` on a prepared transactions Parquet file; return a pandas frame."""
    source = f"read_parquet('{transactions}')"
    return con.execute(rfm_sql(source, reference_date)).df()
