"""The pandas baseline of the preparation: the same work as ``crm_helpers.data.prepare``.

Written the way the seed tutorials prepare transaction data (read the file into a data frame,
``duplicated``, ``to_datetime`` / ``to_numeric`` with ``errors="coerce"``, boolean masks,
``groupby``), for a transactions table with a customers table (the shape of
``benchmarks/make_lines.py``): exact duplicates, one quarantine reason per bad row (first that
applies, in ``REASONS`` order), identity resolution (connected components over normalised e-mail
and phone, by iterated group minimum), pseudonymised ids, product-name spellings collapsed, the
per-customer features and the unified customer view, and the same Parquet outputs (prepared
tables and quarantine). ``tests/test_bench_baseline.py`` checks its counts per reason and its
customer table against ``prepare``'s, so the benchmark compares the same work.

    python benchmarks/pandas_prepare.py PARAMS.yml OUT_DIR
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

TX_REASONS = [
    "exact_duplicate",
    "missing_customer_id",
    "missing_order_id",
    "unparseable_date",
    "future_date",
    "unparseable_quantity",
    "unparseable_price",
    "zero_quantity",
    "zero_price",
    "negative_price",
    "non_finite_amount",
]
PII = ["name", "email", "phone", "address", "birth_date"]
TX_OPTIONAL = ["product_id", "category", "channel", "country", "store"]


def _text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column as trimmed text, empty text as missing (what the SQL's NULLIF(TRIM()) does)."""
    out = {}
    for c in frame.columns:
        s = frame[c].astype("str")
        s = s.where(frame[c].notna()).str.strip(" ")
        out[c] = s.mask(s == "")
    return pd.DataFrame(out)


def _number(s: pd.Series) -> pd.Series:
    x = pd.to_numeric(s, errors="coerce").astype("float64")
    return x.where(np.isfinite(x))


def _pseudo(ids: pd.Series, key: str) -> pd.Series:
    """``c_`` + 16 hex digits of sha256(key | id), hashed once per distinct id."""
    uniq = ids.dropna().unique()
    codes = {u: "c_" + hashlib.sha256(f"{key}|{u}".encode()).hexdigest()[:16] for u in uniq}
    return ids.map(codes)


def _first_reason(checks: list[tuple[str, pd.Series]], index: pd.Index) -> pd.Series:
    conds = [c.fillna(False).to_numpy(dtype=bool) for _, c in checks]
    names = [n for n, _ in checks]
    return pd.Series(np.select(conds, names, default=None), index=index, dtype="object")


def _transactions(tx: pd.DataFrame, max_date: dt.date, prefix: str, zero_price: str):
    cols = list(tx.columns)
    tx["_row"] = np.arange(1, len(tx) + 1)
    ts = pd.to_datetime(tx["order_date"], format="ISO8601", errors="coerce")
    q, p = _number(tx["quantity"]), _number(tx["unit_price"])
    with np.errstate(over="ignore", invalid="ignore"):
        amount = q * p
    checks = [
        ("exact_duplicate", pd.Series(tx.duplicated(subset=cols, keep="first"))),
        ("missing_customer_id", tx["customer_id"].isna()),
        ("missing_order_id", tx["order_id"].isna()),
        ("unparseable_date", ts.isna()),
        ("future_date", ts >= pd.Timestamp(max_date + dt.timedelta(1))),
        ("unparseable_quantity", q.isna()),
        ("unparseable_price", p.isna()),
        ("zero_quantity", q == 0),
    ]
    if zero_price == "quarantine":
        checks.append(("zero_price", p == 0))
    checks += [
        ("negative_price", p < 0),
        ("non_finite_amount", ~np.isfinite(amount) & q.notna() & p.notna()),
    ]
    tx["_reason"] = _first_reason(checks, tx.index)
    tx["order_ts"], tx["qty"], tx["price"], tx["amount"] = ts, q, p, amount
    return tx


def _customers(cu: pd.DataFrame) -> pd.DataFrame:
    cols = list(cu.columns)
    cu["_row"] = np.arange(1, len(cu) + 1)
    repeat = cu.groupby("customer_id", dropna=True).cumcount() > 0
    checks = [
        ("exact_duplicate", pd.Series(cu.duplicated(subset=cols, keep="first"))),
        ("missing_customer_id", cu["customer_id"].isna()),
        ("conflicting_customer_id", repeat.reindex(cu.index, fill_value=False)),
    ]
    cu["_reason"] = _first_reason(checks, cu.index)
    if "signup_date" in cu:
        cu["signup_date_d"] = pd.to_datetime(
            cu["signup_date"], format="ISO8601", errors="coerce"
        ).dt.normalize()
    return cu


def resolve_identities(kept: pd.DataFrame, key: str) -> tuple[pd.Series, pd.DataFrame, int]:
    """Connected components of ids sharing a normalised e-mail or phone.

    Returns the canonical id per customer id, the merges table and the iterations it took.
    """
    ids = kept[["customer_id"]].copy()
    ids["k_email"] = kept["email"].str.strip(" ").str.lower() if "email" in kept else None
    if "phone" in kept:
        digits = kept["phone"].str.replace(r"[^0-9]", "", regex=True)
        ids["k_phone"] = digits.str[-10:].where(digits.str.len() >= 10)
    else:
        ids["k_phone"] = None
    ids["label"] = ids["customer_id"]
    iterations = 0
    while iterations < 50:
        iterations += 1
        # Jacobi steps, as the SQL: both group minima are taken over the previous labels.
        label = ids["label"]
        for k in ("k_email", "k_phone"):
            low = ids.groupby(k, dropna=True)["label"].transform("min")
            label = label.where(low.isna() | (label <= low), low)
        changed = int((label != ids["label"]).sum())
        ids["label"] = label
        if changed == 0:
            break
    merged = ids[ids["customer_id"] != ids["label"]]
    shares = {
        k: ids[k].map(ids[k].value_counts()).fillna(0).loc[merged.index] > 1
        for k in ("k_email", "k_phone")
    }
    evidence = np.select(
        [shares["k_email"] & shares["k_phone"], shares["k_email"]],
        ["email+phone", "email"],
        "phone",
    )
    merges = pd.DataFrame(
        {
            "merged_key": _pseudo(merged["customer_id"], key).to_numpy(),
            "canonical_key": _pseudo(merged["label"], key).to_numpy(),
            "evidence": evidence,
        }
    ).sort_values(["canonical_key", "merged_key"], ignore_index=True)
    return ids.set_index("customer_id")["label"], merges, iterations


def customer_features(t: pd.DataFrame, reference: pd.Timestamp) -> pd.DataFrame:
    """The per-customer features of ``crm_helpers.features.CUSTOMER_FEATURES``."""
    t = t[t["customer_key"].notna()]
    buy = t[~t["is_return"]]
    ret = t[t["is_return"]]
    g = t.groupby("customer_key")
    f = pd.DataFrame({"lines": g.size(), "revenue": g["amount"].sum()})
    gb = buy.groupby("customer_key")
    f["first_purchase"] = gb["order_date"].min()
    f["last_purchase"] = gb["order_date"].max()
    f["orders"] = gb["order_id"].nunique()
    f["items"] = gb["quantity"].sum()
    f["gross_revenue"] = gb["amount"].sum()
    f["returns_value"] = -ret.groupby("customer_key")["amount"].sum()
    f["return_lines"] = ret.groupby("customer_key").size()
    f = f.fillna({"orders": 0, "gross_revenue": 0.0, "returns_value": 0.0, "return_lines": 0})
    f["tenure_days"] = (reference - f["first_purchase"]).dt.days
    f["recency_days"] = (reference - f["last_purchase"]).dt.days
    order = [
        "first_purchase",
        "last_purchase",
        "orders",
        "lines",
        "items",
        "gross_revenue",
        "returns_value",
        "return_lines",
        "revenue",
        "tenure_days",
        "recency_days",
    ]
    return f[order].astype({"orders": "int64", "return_lines": "int64"}).sort_index()


def _product_names(kept: pd.DataFrame) -> pd.Series:
    """Each line's display name: the most frequent spelling of its normalised name."""
    spelling = kept["product_name"].str.replace(r"\s+", " ", regex=True)
    norm = spelling.str.lower()
    n = pd.DataFrame({"norm": norm, "spelling": spelling}).value_counts().reset_index(name="n")
    best = n.sort_values(["norm", "n", "spelling"], ascending=[True, False, True]).drop_duplicates(
        "norm"
    )
    return norm.map(best.set_index("norm")["spelling"])


def prepare_pandas(
    transactions: Path,
    customers: Path,
    out: Path,
    *,
    key: str,
    max_valid_date: dt.date,
    cancellation_prefix: str = "C",
    zero_price: str = "quarantine",
) -> dict:
    """Prepare the two tables with pandas; write Parquet to ``out``; return counts and timings."""
    seconds: dict[str, float] = {}
    (out / "prepared").mkdir(parents=True, exist_ok=True)
    (out / "quarantine").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tx = _transactions(
        _text(pd.read_parquet(transactions)), max_valid_date, cancellation_prefix, zero_price
    )
    cu = _customers(_text(pd.read_parquet(customers)))
    recon = {
        name: {
            "input": len(frame),
            "kept": int(frame["_reason"].isna().sum()),
            "quarantined": {
                str(r): int(n) for r, n in frame["_reason"].value_counts().sort_index().items()
            },
        }
        for name, frame in (("transactions", tx), ("customers", cu))
    }
    seconds["load_validate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ck = cu[cu["_reason"].isna()]
    canonical, merges, iterations = resolve_identities(ck, key)
    seconds["identity"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    k = tx[tx["_reason"].isna()]
    t = pd.DataFrame(
        {"customer_key": _pseudo(k["customer_id"].map(canonical).fillna(k["customer_id"]), key)}
    )
    t["order_id"] = k["order_id"]
    t["order_ts"] = k["order_ts"]
    t["order_date"] = k["order_ts"].dt.normalize()
    for c in TX_OPTIONAL:
        if c in k:
            t[c] = k[c]
    t["quantity"], t["unit_price"], t["amount"] = k["qty"], k["price"], k["amount"]
    t["is_return"] = k["qty"] < 0
    t["is_cancellation"] = (
        k["order_id"].str.startswith(cancellation_prefix) if cancellation_prefix else False
    )
    t["is_product"] = True
    t["source_row"] = k["_row"]
    if "product_name" in k:
        t["product_name"] = _product_names(k)
    reference = t["order_date"].max() + pd.Timedelta(days=1)
    feats = customer_features(t, reference)
    attrs = (
        ck.assign(canonical=ck["customer_id"].map(canonical))
        .sort_values("_row")
        .groupby("canonical")
    )
    a = pd.DataFrame({"source_ids": attrs.size()})
    if "signup_date" in ck:
        a["signup_date"] = attrs["signup_date_d"].min()
    for c in ("gender", "region"):
        if c in ck:
            a[c] = attrs[c].first()  # first non-missing value in file order
    a.index = _pseudo(pd.Series(a.index, index=a.index), key)
    view = a.join(feats, how="outer")
    view.insert(0, "in_customer_table", view.index.isin(a.index))
    view["source_ids"] = view["source_ids"].fillna(1).astype("int64")
    view = view.rename_axis("customer_key").sort_index().reset_index()
    seconds["transform"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    t.to_parquet(out / "prepared" / "transactions.parquet", index=False)
    view.to_parquet(out / "prepared" / "customers.parquet", index=False)
    merges.to_parquet(out / "prepared" / "identity_merges.parquet", index=False)
    for name, frame in (("transactions", tx), ("customers", cu)):
        derived = ("order_ts", "qty", "price", "amount", "signup_date_d")
        raw_cols = sorted(
            c
            for c in frame.columns
            if not c.startswith("_") and c not in PII and c != "customer_id" and c not in derived
        )
        bad = frame[frame["_reason"].notna()]
        q = pd.DataFrame(
            {
                "source_row": bad["_row"],
                "reason": bad["_reason"],
                "customer_key": _pseudo(bad["customer_id"], key),
            }
        )
        q[raw_cols] = bad[raw_cols]
        q.to_parquet(out / "quarantine" / f"{name}.parquet", index=False)
    seconds["write"] = time.perf_counter() - t0
    return {
        "reconciliation": recon,
        "reference_date": str(reference.date()),
        "identity": {"merged_ids": len(merges), "iterations": iterations},
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }


def main() -> None:
    """Prepare a params file's transactions and customers with pandas."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from crm_helpers.config import load_params

    params = load_params(Path(sys.argv[1]))
    result = prepare_pandas(
        Path(params.data.transactions.path),
        Path(params.data.customers.path),
        Path(sys.argv[2]),
        key=os.environ.get(params.privacy.key_env, "benchmark-key"),
        max_valid_date=params.max_valid_date(),
        cancellation_prefix=params.cleaning.cancellation_prefix,
        zero_price=params.cleaning.zero_price,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
