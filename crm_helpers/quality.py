"""Chapter 00's computations: reconciliation, issues, profiles, identity audit, the unified view.

These read the prepared tables of a run (never raw client files) and return data frames.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from . import privacy
from .i18n import tr

REASON_TEXT: dict[str, str] = {
    "exact_duplicate": "the whole line repeats an earlier line (first copy kept)",
    "missing_customer_id": "no customer id: cannot be linked to a customer",
    "missing_order_id": "no order id",
    "missing_product": "a basket line without its item",
    "missing_event_type": "no event type",
    "unparseable_date": "the date cannot be read",
    "future_date": "dated after the latest plausible date",
    "unparseable_quantity": "quantity is not a number",
    "unparseable_price": "unit price is not a number",
    "unparseable_score": "score is not a number",
    "zero_quantity": "quantity is 0",
    "zero_price": "unit price is 0 (free line or adjustment)",
    "negative_price": "unit price below 0 (accounting adjustment)",
    "non_finite_amount": "quantity x unit price overflows (not a finite amount)",
    "score_out_of_range": "score outside the valid scale",
    "conflicting_customer_id": "the same customer id with different attributes (first kept)",
}


@dataclass
class Prepared:
    """The prepared tables of a run and the preparation summary."""

    run_dir: Path
    summary: dict[str, Any]
    transactions: pd.DataFrame
    customers: pd.DataFrame
    merges: pd.DataFrame

    @property
    def reference_date(self) -> pd.Timestamp:
        """The day after the last kept transaction."""
        return pd.Timestamp(self.summary["reference_date"])

    @property
    def basket_only(self) -> bool:
        """The transactions are baskets only: no customers, dates, quantities or prices."""
        return bool(self.summary.get("basket_only", False))


#: What the customer chapters need that basket-only data lacks (for their 'not available' page).
BASKET_ONLY_NEEDS = (
    "customer ids, order dates and prices; this data holds baskets only (an order and its "
    "products), which the market basket chapter analyses"
)


def is_basket_only(run_dir: str | Path) -> bool:
    """Whether a run's prepared transactions are baskets only (from ``prepared/prepare.json``)."""
    summary = json.loads((Path(run_dir) / "prepared" / "prepare.json").read_text())
    return bool(summary.get("basket_only", False))


def load_prepared(run_dir: str | Path) -> Prepared:
    """Read ``prepared/*.parquet`` and ``prepared/prepare.json`` of a run.

    Also puts the run's ``privacy.min_group_size`` in force for the tables the chapter shows.
    """
    privacy.configure(run_dir)
    folder = Path(run_dir) / "prepared"
    return Prepared(
        run_dir=Path(run_dir),
        summary=json.loads((folder / "prepare.json").read_text()),
        transactions=pd.read_parquet(folder / "transactions.parquet"),
        customers=pd.read_parquet(folder / "customers.parquet"),
        merges=pd.read_parquet(folder / "identity_merges.parquet"),
    )


def reconciliation_table(summary: dict[str, Any]) -> pd.DataFrame:
    """Input, kept and quarantined rows per table, with a ``balanced`` check."""
    rows = []
    for table, r in summary["reconciliation"].items():
        q = sum(r["quarantined"].values())
        rows.append(
            {
                "table": table,
                "input rows": r["input"],
                "kept": r["kept"],
                "quarantined": q,
                "quarantined %": 100 * q / r["input"] if r["input"] else 0.0,
                "balanced": "yes" if r["input"] == r["kept"] + q else "NO",
            }
        )
    return pd.DataFrame(rows)


def reasons_table(summary: dict[str, Any]) -> pd.DataFrame:
    """One row per (table, reason): rows quarantined, share of the table, what it means."""
    rows = []
    for table, r in summary["reconciliation"].items():
        for reason, n in r["quarantined"].items():
            rows.append(
                {
                    "table": table,
                    "reason": reason,
                    "rows": n,
                    "% of table": 100 * n / r["input"],
                    "meaning": tr(REASON_TEXT[reason]) if reason in REASON_TEXT else "",
                }
            )
    df = pd.DataFrame(rows, columns=["table", "reason", "rows", "% of table", "meaning"])
    return df.sort_values(
        ["table", "rows", "reason"], ascending=[True, False, True], ignore_index=True
    )


def quarantine_examples(run_dir: str | Path, table: str, per_reason: int) -> pd.DataFrame:
    """The first ``per_reason`` quarantined rows of each reason (ids pseudonymised, no PII)."""
    path = Path(run_dir) / "quarantine" / f"{table}.parquet"
    if per_reason <= 0 or not path.is_file():
        return pd.DataFrame()
    q = pd.read_parquet(path)
    if q.empty:
        return q
    ex = q.sort_values("source_row").groupby("reason", sort=True).head(per_reason)
    ex = ex.sort_values(["reason", "source_row"], ignore_index=True)
    # Only the columns that explain a reason, so the table fits a page.
    keep = [
        "source_row",
        "reason",
        "customer_key",
        "order_id",
        "order_date",
        "date",
        "timestamp",
        "quantity",
        "unit_price",
        "score",
        "event_type",
    ]
    return ex[[c for c in keep if c in ex.columns]].rename(columns={"source_row": "row"})


def column_profile(df: pd.DataFrame) -> pd.DataFrame:
    """Per column: type, share filled, distinct values, and min / max for numbers and dates."""
    rows = []
    for col in df.columns:
        s = df[col]
        numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
        dated = pd.api.types.is_datetime64_any_dtype(s) or (
            s.dtype == object and len(s.dropna()) and hasattr(s.dropna().iloc[0], "isoformat")
        )
        lo = hi = ""
        if (numeric or dated) and s.notna().any():
            lo, hi = s.min(), s.max()
            if numeric:
                lo, hi = f"{lo:,.2f}", f"{hi:,.2f}"
            else:
                lo, hi = str(lo)[:10], str(hi)[:10]
        rows.append(
            {
                "column": col,
                "type": str(s.dtype),
                "filled %": 100 * s.notna().mean() if len(s) else 0.0,
                "distinct": int(s.nunique(dropna=True)),
                "min": lo,
                "max": hi,
            }
        )
    return pd.DataFrame(rows)


def monthly_activity(tx: pd.DataFrame) -> pd.DataFrame:
    """Lines, orders and net revenue per calendar month (returns net out)."""
    month = tx["order_date"].astype("datetime64[ns]").dt.to_period("M").dt.to_timestamp()
    g = tx.assign(month=month).groupby("month")
    out = pd.DataFrame(
        {
            "lines": g.size(),
            "orders": g["order_id"].nunique(),
            "net revenue": g["amount"].sum(),
        }
    )
    return out.sort_index()


def identity_summary(merges: pd.DataFrame) -> pd.DataFrame:
    """Merged ids per kind of evidence."""
    if merges.empty:
        return pd.DataFrame({"evidence": [], "merged ids": [], "customers affected": []})
    g = merges.groupby("evidence")
    return pd.DataFrame(
        {"merged ids": g.size(), "customers affected": g["canonical_key"].nunique()}
    ).reset_index()


def unified_view_summary(customers: pd.DataFrame) -> pd.DataFrame:
    """How the unified customer table is made up."""
    buyers = customers["orders"].fillna(0) > 0
    rows = [
        (tr("customers in the unified view"), len(customers)),
        (tr("with at least one purchase"), int(buyers.sum())),
        (tr("in the customer master data"), int(customers["in_customer_table"].sum())),
        (tr("known only from transactions"), int((~customers["in_customer_table"]).sum())),
        (tr("without any kept transaction"), int(customers["lines"].isna().sum())),
        (tr("recorded under several ids (merged)"), int((customers["source_ids"] > 1).sum())),
        (tr("with at least one return"), int((customers["return_lines"].fillna(0) > 0).sum())),
    ]
    return pd.DataFrame(rows, columns=["customers", "count"])


def base_kpis(prep: Prepared) -> dict[str, Any]:
    """Headline figures of the unified view, the base of the executive summary."""
    tx, cust = prep.transactions, prep.customers
    sales = tx[~tx["is_return"]]
    buyers = cust[cust["orders"].fillna(0) > 0]
    orders = int(sales["order_id"].nunique())
    if prep.basket_only:
        # no prices: revenue is unknown (not zero); the baskets are what there is to count
        item = "product_name" if "product_name" in tx else "product_id"
        return {
            "basket_only": True,
            "customers": 0,
            "orders": orders,
            "products": int(tx[item].nunique()),
            "items_per_basket": float(tx.groupby("order_id")[item].nunique().mean())
            if orders
            else None,
            "gross_revenue": None,
            "returns_value": None,
            "net_revenue": None,
            "average_order_value": None,
            "repeat_rate": None,
            "return_line_share": None,
            "reference_date": None,
            "period": prep.summary["period"],
        }
    gross = float(sales["amount"].sum())
    return {
        "customers": int(len(buyers)),
        "orders": orders,
        "gross_revenue": gross,
        "returns_value": float(-tx.loc[tx["is_return"], "amount"].sum()),
        "net_revenue": float(tx["amount"].sum()),
        "average_order_value": gross / orders if orders else None,
        "repeat_rate": float((buyers["orders"] >= 2).mean()) if len(buyers) else None,
        "return_line_share": float(tx["is_return"].mean()) if len(tx) else None,
        "reference_date": prep.summary["reference_date"],
        "period": prep.summary["period"],
    }


def customer_table(prep: Prepared) -> pd.DataFrame:
    """The unified customer view as a per-customer artifact (pseudonymised keys, no PII)."""
    cols = [
        "customer_key",
        "first_purchase",
        "last_purchase",
        "orders",
        "gross_revenue",
        "returns_value",
        "revenue",
        "recency_days",
        "tenure_days",
        "source_ids",
    ]
    return prep.customers[[c for c in cols if c in prep.customers.columns]].copy()
