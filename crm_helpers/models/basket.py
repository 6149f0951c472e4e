"""Market basket analysis: frequent itemsets (mlxtend), association rules with R arules' conventions.

Conventions (those of R's arules, so that counts can be checked against it):

- an itemset is frequent when its basket count is at least ``ceil(min_support * n)``;
- a rule has one item on its right-hand side by default (``max_consequent`` allows more);
- rules with an empty left-hand side (``{} => item``) are kept when they pass the thresholds;
- confidence = count(X and Y) / count(X); lift = confidence / support(Y);
  leverage = support(X and Y) - support(X) support(Y); conviction = (1 - support(Y)) / (1 - conf).

Beyond those metrics every rule gets a one-sided Fisher exact test (is Y more frequent with X than
without?) with a multiple-testing correction, and the top rules a bootstrap stability check.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse, stats


# ----------------------------------------------------------------------------------- baskets
def item_column(columns: Iterable[str], choice: str = "auto") -> str | None:
    """The prepared-transactions column that names an item (None when there is none)."""
    cols = set(columns)
    if choice != "auto":
        return choice if choice in cols else None
    return next((c for c in ("product_name", "product_id") if c in cols), None)


def baskets_sql(transactions: str, item: str) -> str:
    """SQL: one row per order with its distinct items (sorted), from purchase lines only.

    Returns, cancellations and non-product lines (postage, fees) are not part of a basket.
    """
    path = str(transactions).replace("'", "''")
    return f"""
    SELECT order_id, list(DISTINCT {item} ORDER BY {item}) AS items
    FROM read_parquet('{path}')
    WHERE NOT is_return AND NOT is_cancellation AND is_product AND {item} IS NOT NULL
    GROUP BY order_id ORDER BY order_id
    """


# ----------------------------------------------------------------------------------- encoding
def read_basket_file(path: str, sep: str = ",") -> list[list[str]]:
    """One basket per line, items separated by ``sep`` (the Groceries format); empty items dropped."""
    with open(path, encoding="utf-8") as fh:
        return [[i.strip() for i in line.rstrip("\n").split(sep) if i.strip()] for line in fh]


def encode(
    baskets: Sequence[Iterable[str]], min_support: float
) -> tuple[pd.DataFrame, pd.Series, int]:
    """Sparse boolean basket x item matrix, keeping only items that can be frequent.

    Items below ``ceil(min_support * n)`` baskets cannot be part of a frequent itemset, so they are
    pruned before encoding; memory then grows with the frequent items, not the catalogue.

    Returns
    -------
    (onehot, item_counts, n)
        ``onehot``: a pandas DataFrame with sparse boolean columns (one per kept item, sorted);
        ``item_counts``: baskets per item for every item (pruned ones included), descending;
        ``n``: number of baskets.
    """
    sets = [sorted(set(b)) for b in baskets]
    n = len(sets)
    counts = pd.Series([i for b in sets for i in b], dtype="string").value_counts()
    counts = counts.sort_index().sort_values(ascending=False, kind="stable")
    need = min_count(min_support, n)
    items = sorted(counts.index[counts >= need])
    col = {item: j for j, item in enumerate(items)}
    rows, cols = [], []
    for r, b in enumerate(sets):
        for i in b:
            j = col.get(i)
            if j is not None:
                rows.append(r)
                cols.append(j)
    mat = sparse.csc_matrix(
        (np.ones(len(rows), dtype=bool), (rows, cols)), shape=(n, len(items)), dtype=bool
    )
    onehot = pd.DataFrame.sparse.from_spmatrix(mat, columns=items)
    return onehot, counts.astype(int), n


def min_count(min_support: float, n: int) -> int:
    """The smallest basket count that is frequent: ceil(min_support * n) (arules' rule)."""
    return max(1, math.ceil(min_support * n - 1e-9))


# ----------------------------------------------------------------------------------- itemsets
def frequent_itemsets(
    onehot: pd.DataFrame,
    n: int,
    min_support: float,
    max_len: int | None = 10,
    algorithm: str = "fpgrowth",
) -> pd.DataFrame:
    """Frequent itemsets with mlxtend: columns ``itemset`` (frozenset), ``count``, ``support``.

    The threshold passed to mlxtend is placed halfway between two counts so that floating-point
    rounding cannot move an itemset across it. Sorted by descending count, then itemset text.
    """
    from mlxtend.frequent_patterns import apriori, fpgrowth

    need = min_count(min_support, n)
    if onehot.shape[1] == 0:
        return pd.DataFrame({"itemset": [], "count": [], "support": []})
    fn = {"fpgrowth": fpgrowth, "apriori": apriori}[algorithm]
    found = fn(onehot, min_support=(need - 0.5) / n, use_colnames=True, max_len=max_len)
    out = pd.DataFrame(
        {
            "itemset": found["itemsets"].map(frozenset),
            "count": np.rint(found["support"].to_numpy() * n).astype(int),
        }
    )
    out = out[out["count"] >= need]
    out["support"] = out["count"] / n
    out["key"] = out["itemset"].map(lambda s: " | ".join(sorted(s)))
    out = out.sort_values(["count", "key"], ascending=[False, True]).drop(columns="key")
    return out.reset_index(drop=True)


def frequent_itemsets_spark(
    spark, baskets: Sequence[Iterable[str]], min_support: float, max_len: int | None = 10
) -> pd.DataFrame:
    """Frequent itemsets with Spark ML's FP-growth, in the same form as :func:`frequent_itemsets`.

    Spark keeps an itemset when its count is at least ``ceil(minSupport * n)``; ``minSupport`` is
    placed halfway between two counts, as for mlxtend, so the threshold is arules'. Spark's
    FP-growth has no length cap: longer itemsets are dropped after mining.

    Parameters
    ----------
    spark
        A SparkSession (:func:`crm_helpers.engine.spark_session`).
    baskets
        One sequence of items per basket (repeats within a basket count once).
    min_support
        Share of baskets.
    max_len
        Longest itemset kept (None = no cap).

    """
    import pyarrow as pa
    from pyspark.ml.fpm import FPGrowth
    from pyspark.sql import functions as F

    sets = [sorted(set(b)) for b in baskets]
    n = len(sets)
    need = min_count(min_support, n)
    frame = spark.createDataFrame(pa.table({"items": pa.array(sets, type=pa.list_(pa.string()))}))
    found = FPGrowth(itemsCol="items", minSupport=(need - 0.5) / n).fit(frame).freqItemsets
    if max_len:
        found = found.where(F.size("items") <= max_len)
    rows = found.toArrow().to_pylist()
    out = pd.DataFrame(
        {
            "itemset": [frozenset(r["items"]) for r in rows],
            "count": np.array([r["freq"] for r in rows], dtype=int),
        }
    )
    out = out[out["count"] >= need]
    out["support"] = out["count"] / n
    out["key"] = out["itemset"].map(lambda s: " | ".join(sorted(s)))
    out = out.sort_values(["count", "key"], ascending=[False, True]).drop(columns="key")
    return out.reset_index(drop=True)


# ------------------------------------------------------------------------------------- rules
def association_rules(
    itemsets: pd.DataFrame,
    n: int,
    min_confidence: float,
    max_consequent: int = 1,
    empty_antecedent: bool = True,
) -> pd.DataFrame:
    """Rules X => Y from the frequent itemsets, with arules' conventions (see the module docstring).

    Returns
    -------
    pandas.DataFrame
        ``antecedent``, ``consequent`` (tuples of sorted items), ``n_xy``, ``n_x``, ``n_y``,
        ``support``, ``confidence``, ``lift``, ``leverage``, ``conviction``; sorted by lift, then
        confidence, support and the rule text (deterministic).
    """
    count = dict(zip(itemsets["itemset"], itemsets["count"], strict=True))
    count[frozenset()] = n
    rows = []
    for itemset, n_xy in count.items():
        k = len(itemset)
        if k == 0:
            continue
        for size in range(1, min(max_consequent, k) + 1):
            for cons in combinations(sorted(itemset), size):
                y = frozenset(cons)
                x = itemset - y
                if not x and not empty_antecedent:
                    continue
                n_x, n_y = count[x], count[y]  # subsets of a frequent itemset are frequent
                if n_xy < min_confidence * n_x - 1e-9 * n_x:
                    continue
                rows.append((tuple(sorted(x)), cons, n_xy, n_x, n_y))
    out = pd.DataFrame(rows, columns=["antecedent", "consequent", "n_xy", "n_x", "n_y"])
    s_xy, s_x, s_y = out["n_xy"] / n, out["n_x"] / n, out["n_y"] / n
    out["support"] = s_xy
    out["confidence"] = out["n_xy"] / out["n_x"]
    out["lift"] = out["confidence"] / s_y
    out["leverage"] = s_xy - s_x * s_y
    with np.errstate(divide="ignore"):
        out["conviction"] = np.where(
            out["confidence"] < 1, (1 - s_y) / (1 - out["confidence"]), np.inf
        )
    out["rule"] = out["antecedent"].map(_fmt) + " => " + out["consequent"].map(_fmt)
    out = out.sort_values(
        ["lift", "confidence", "support", "rule"], ascending=[False, False, False, True]
    )
    return out.reset_index(drop=True)


def _fmt(items: Sequence[str]) -> str:
    return "{" + ", ".join(items) + "}"


def fisher_test(rules: pd.DataFrame, n: int, method: str = "fdr_bh") -> pd.DataFrame:
    """One-sided Fisher exact test per rule, with a multiple-testing correction.

    H0: Y is no more frequent in baskets with X than in the others. The p-value is the
    hypergeometric tail P(N_xy >= n_xy) with margins n_x, n_y of ``n`` baskets. Rules with an
    empty left-hand side get no test (NaN). ``method`` is a statsmodels ``multipletests`` method
    (``fdr_bh`` controls the false discovery rate, ``holm`` the family-wise error).
    """
    from statsmodels.stats.multitest import multipletests

    out = rules.copy()
    has_x = out["antecedent"].map(len) > 0
    p = np.full(len(out), np.nan)
    p[has_x] = stats.hypergeom.sf(
        out.loc[has_x, "n_xy"] - 1, n, out.loc[has_x, "n_x"], out.loc[has_x, "n_y"]
    )
    out["p_value"] = p
    adj = np.full(len(out), np.nan)
    if has_x.any():
        adj[has_x] = multipletests(p[has_x], method=method)[1]
    out["p_adjusted"] = adj
    return out


def bootstrap_stability(
    onehot: pd.DataFrame,
    rules: pd.DataFrame,
    *,
    min_support: float,
    min_confidence: float,
    rounds: int,
    seed: int,
    level: float = 0.9,
) -> pd.DataFrame:
    """Resample baskets with replacement; per rule, how often it still passes both thresholds.

    Each round draws n baskets with replacement (seeded; multinomial weights) and recounts every rule's X and X-and-Y
    baskets; mining is not redone (the question is whether these rules hold, not which others
    appear). Returns the input rules with ``stability`` (share of rounds passing) and a
    ``level`` interval of the lift (``lift_low``, ``lift_high``).
    """
    n = len(onehot)
    mat = onehot.sparse.to_coo().tocsc().astype(np.int8) if len(onehot.columns) else None
    col = {c: j for j, c in enumerate(onehot.columns)}

    def indicator(items: Sequence[str]) -> np.ndarray:
        if not items:
            return np.ones(n, dtype=bool)
        v = np.ones(n, dtype=bool)
        for i in items:
            v &= mat[:, col[i]].toarray().ravel().astype(bool)
        return v

    ind_x = np.array([indicator(a) for a in rules["antecedent"]]).reshape(len(rules), n)
    ind_y = np.array([indicator(c) for c in rules["consequent"]]).reshape(len(rules), n)
    # sparse rows: a round costs the baskets that hold the rules' items, not every basket
    ind_x, ind_y, ind_xy = (
        sparse.csr_matrix(m, dtype=np.float64) for m in (ind_x, ind_y, ind_x & ind_y)
    )
    rng = np.random.default_rng(seed)
    passed = np.zeros(len(rules))
    lifts = np.empty((rounds, len(rules)))
    for b in range(rounds):
        # n draws with replacement: each basket's multiplicity (multinomial(n, 1/n) weights)
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        n_x, n_y, n_xy = ind_x @ w, ind_y @ w, ind_xy @ w
        with np.errstate(divide="ignore", invalid="ignore"):
            conf = n_xy / n_x
            lifts[b] = conf / (n_y / n)
        passed += (n_xy >= min_count(min_support, n)) & (conf >= min_confidence - 1e-9)
    out = rules.copy()
    out["stability"] = passed / rounds if rounds else np.nan
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    out["lift_low"] = np.nanquantile(lifts, lo, axis=0) if rounds else np.nan
    out["lift_high"] = np.nanquantile(lifts, hi, axis=0) if rounds else np.nan
    return out


def mine(
    baskets: Sequence[Iterable[str]],
    *,
    min_support: float,
    min_confidence: float,
    max_len: int | None = 10,
    algorithm: str = "fpgrowth",
    max_consequent: int = 1,
    empty_antecedent: bool = True,
    spark=None,
) -> dict[str, Any]:
    """Encode, mine and build rules in one call.

    With a SparkSession as ``spark`` the frequent itemsets come from Spark's FP-growth
    (:func:`frequent_itemsets_spark`, the same itemsets and counts), else from mlxtend's
    ``algorithm``.

    Returns a dict with ``onehot``, ``item_counts``, ``n``, ``itemsets`` and ``rules``.
    """
    onehot, item_counts, n = encode(baskets, min_support)
    if spark is not None:
        itemsets = frequent_itemsets_spark(spark, baskets, min_support, max_len)
    else:
        itemsets = frequent_itemsets(onehot, n, min_support, max_len, algorithm)
    rules = association_rules(itemsets, n, min_confidence, max_consequent, empty_antecedent)
    return {
        "onehot": onehot,
        "item_counts": item_counts,
        "n": n,
        "itemsets": itemsets,
        "rules": rules,
    }


# ------------------------------------------------------------------------------ report helpers
def cross_sell(
    rules: pd.DataFrame, alpha: float, min_stability: float, limit: int = 10
) -> pd.DataFrame:
    """Cross-sell suggestions: one-item rules that are significant and stable, best lift first.

    Needs the columns added by :func:`fisher_test` and :func:`bootstrap_stability`.
    """
    ok = (
        (rules["antecedent"].map(len) == 1)
        & (rules["consequent"].map(len) == 1)
        & (rules["p_adjusted"] < alpha)
        & (rules["stability"] >= min_stability)
    )
    out = rules[ok].head(limit)
    return pd.DataFrame(
        {
            "customers who buy": out["antecedent"].map(lambda a: a[0]),
            "offer": out["consequent"].map(lambda c: c[0]),
            "confidence": out["confidence"],
            "lift": out["lift"],
            "baskets": out["n_xy"],
        }
    ).reset_index(drop=True)


def lift_matrix(itemsets: pd.DataFrame, n: int, items: Sequence[str]) -> pd.DataFrame:
    """Pairwise lift of the given items (NaN where the pair is not a frequent itemset)."""
    count = dict(zip(itemsets["itemset"], itemsets["count"], strict=True))
    out = pd.DataFrame(np.nan, index=list(items), columns=list(items))
    for a in items:
        for b in items:
            both = count.get(frozenset((a, b))) if a != b else None
            if both:
                out.loc[a, b] = both * n / (count[frozenset((a,))] * count[frozenset((b,))])
    return out


def planted_check(rules: pd.DataFrame, pairs: Sequence[dict[str, Any]], item: str) -> pd.DataFrame:
    """Each planted pair A => B: found among the rules? Its lift against the planted lift."""
    key = "name" if item == "product_name" else "id"
    index = rules.set_index("rule")
    rows = []
    for p in pairs:
        a, b = p[f"antecedent_{key}"], p[f"consequent_{key}"]
        rule = f"{{{a}}} => {{{b}}}"
        found = rule in index.index
        lift = float(index.loc[rule, "lift"]) if found else math.nan
        rows.append(
            {
                "rule": rule,
                "found": found,
                "planted lift": p["lift"],
                "mined lift": lift,
                "difference %": 100 * (lift - p["lift"]) / p["lift"] if found else math.nan,
            }
        )
    return pd.DataFrame(rows)
