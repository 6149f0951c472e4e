"""Personalised recommendations from implicit purchases: popularity, item-kNN and matrix factorisation.

The data are implicit: a customer bought an item (on some days) or did not. Every model works on a
customer x item matrix (:class:`InteractionMatrix`: rows are the sorted customer keys, columns the
sorted items, a cell holds the customer's purchase days of the item) and scores items for any
customer from that customer's row, so a customer unseen at fitting time is scored the same way:

- :class:`Popularity`: distinct buyers per item, the same list for everybody (the baseline);
- :class:`GroupPopularity`: popularity within a group (region, channel, segment), shrunk towards
  the overall popularity; the fallback for customers without history;
- :class:`ItemKNN`: item-based collaborative filtering (Sarwar et al. 2001; Deshpande and Karypis
  2004) on the binary matrix: cosine (or asymmetric cosine) similarity shrunk by the number of
  co-buyers, optionally discounting heavy buyers, the ``neighbours`` most similar items kept per
  item; score(u, i) = sum over u's items j of sim(j, i);
- :class:`ImplicitALS`: weighted matrix factorisation for implicit feedback (Hu, Koren and Volinsky
  2008), confidence 1 + alpha x purchase days, solved by alternating least squares with a
  conjugate-gradient step vectorised over all customers (Takacs, Pilaszy and Tikk 2011);
- :class:`PureSVD`: truncated SVD of the binary matrix (Cremonesi, Koren and Turrin 2010).

:func:`recommend` turns scores into a top-N list with deterministic ties (score, then train
popularity, then item) and fills lists the model cannot fill from a fallback. The holdout is a time
split (:func:`time_split`): the models see purchases up to a cutoff and are judged on the items each
customer bought afterwards; :func:`evaluate` and :func:`scorecard` give precision, recall, NDCG and
success at k and catalogue coverage. Hyperparameters are chosen by :func:`tune` on a validation
split inside the training period, never on the test period.

Purchases are the lines of :data:`crm_helpers.models.clv.PURCHASE` (returns, cancellations and
non-product lines are not purchases); the per-day table comes from the engine
(:func:`purchase_days_sql`), everything after it works on small frames and sparse matrices.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

from crm_helpers.errors import CRMError, DataError, ParamsError
from crm_helpers.models.basket import item_column
from crm_helpers.models.clv import PURCHASE

__all__ = [
    "BASELINE",
    "MODELS",
    "Comparison",
    "beats_baseline",
    "cold_start",
    "compare_models",
    "fallback_column",
    "fallback_groups",
    "describe",
    "new_customer_lists",
    "final_recommendations",
    "first_contact_sql",
    "gains",
    "GRIDS",
    "GroupPopularity",
    "ImplicitALS",
    "InteractionMatrix",
    "ItemKNN",
    "NotFittedError",
    "Popularity",
    "PureSVD",
    "Split",
    "cutoff_date",
    "evaluate",
    "interaction_matrix",
    "interactions",
    "interactions_sql",
    "item_column",
    "purchase_days_sql",
    "recommend",
    "scorecard",
    "time_split",
    "tune",
    "validation_split",
]

#: Dense work arrays (score batches, similarity blocks) hold at most this many cells (32 MB).
BLOCK_CELLS = 1 << 22
#: Conjugate gradient stops once every row's residual is below this share of its right-hand side.
CG_TOLERANCE = 1e-8
METRICS = ("precision_at_k", "recall_at_k", "ndcg_at_k", "success_at_k", "coverage")
#: Small tuning grids (model class name -> settings for :func:`tune`). They hold the settings
#: chosen on the validation splits of the demo and of Online Retail, whose best values differ
#: (a 220-item demo catalogue wants P(i | j) over many neighbours, Online Retail's long tail the
#: shrunk cosine over few), so a client's data choose among them.
GRIDS: dict[str, list[dict[str, Any]]] = {
    "ItemKNN": [
        {"neighbours": k, "shrinkage": s, "alpha": a, "customer_weight": w}
        for k in (20, 50, 200)
        for s in (0.0, 5.0)
        for a in (0.5, 1.0)
        for w in (0.0, 1.0)
    ],
    "PureSVD": [{"factors": f} for f in (2, 4, 8, 16, 32, 64)],
    "ImplicitALS": [
        {"factors": f, "regularization": r, "alpha": a}
        for f in (32, 64)
        for r in (10.0, 100.0)
        for a in (0.3, 10.0)
    ],
}
INTERACTION_COLUMNS = [
    "customer_key",
    "item",
    "first_date",
    "last_date",
    "purchase_days",
    "quantity",
]


class NotFittedError(CRMError, _SklearnNotFittedError):
    """A recommender was used before ``fit`` (also a scikit-learn ``NotFittedError``)."""


# ------------------------------------------------------------------------------------ engine SQL
def purchase_days_sql(transactions: str | Path, item: str) -> str:
    """SQL: one row per customer, item and purchase day, from purchase lines only.

    Columns ``customer_key``, ``item``, ``order_date``, ``quantity`` (units that day); sorted by
    customer, item and day. Lines without a customer or an item are left out.
    """
    path = str(transactions).replace("'", "''")
    return f"""
    SELECT customer_key, CAST({item} AS VARCHAR) AS item, order_date, sum(quantity) AS quantity
    FROM read_parquet('{path}')
    WHERE {PURCHASE} AND {item} IS NOT NULL AND customer_key IS NOT NULL
    GROUP BY ALL
    ORDER BY customer_key, item, order_date
    """


def interactions_sql(transactions: str | Path, item: str) -> str:
    """SQL: one row per customer and item bought, over the whole period.

    Columns ``customer_key``, ``item``, ``first_date``, ``last_date``, ``purchase_days`` (distinct
    purchase days), ``quantity`` (units); sorted by customer and item. The same summary as
    :func:`interactions` applied to :func:`purchase_days_sql`.
    """
    return f"""
    WITH days AS ({purchase_days_sql(transactions, item)})
    SELECT customer_key, item, min(order_date) AS first_date, max(order_date) AS last_date,
        count(*) AS purchase_days, sum(quantity) AS quantity
    FROM days
    GROUP BY customer_key, item
    ORDER BY customer_key, item
    """


def interactions(days: pd.DataFrame) -> pd.DataFrame:
    """Summarise purchase days (``customer_key``, ``item``, ``order_date``, ``quantity``) per pair.

    Returns the columns of :func:`interactions_sql`, sorted by customer and item.
    """
    _require(days, ("customer_key", "item", "order_date"), "purchase days")
    qty = days["quantity"] if "quantity" in days else pd.Series(1.0, index=days.index)
    out = (
        days.assign(quantity=qty)
        .groupby(["customer_key", "item"], sort=True)
        .agg(
            first_date=("order_date", "min"),
            last_date=("order_date", "max"),
            purchase_days=("order_date", "nunique"),
            quantity=("quantity", "sum"),
        )
        .reset_index()
    )
    return out[INTERACTION_COLUMNS]


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"Required column {missing[0]} missing from the {what} table")


# ------------------------------------------------------------------------------------ time split
@dataclass(frozen=True)
class Split:
    """A time split of purchases into training history and what customers bought afterwards.

    Attributes
    ----------
    cutoff
        Last day of the training period (inclusive); the test period starts the day after.
    train
        Interactions (:func:`interactions` columns) of purchases on or before ``cutoff``.
    test
        ``customer_key``, ``item``: for customers with training history, the items bought after
        the cutoff that count as relevant (sorted).
    cold
        ``customer_key``, ``item``: the same for customers whose first purchase is after the
        cutoff (no history: only a fallback can serve them).
    repeat_purchases
        Whether an item bought in training counts as relevant again (else it is excluded).
    new_items
        Items first bought after the cutoff: no model trained on ``train`` can recommend them, so
        they are not relevant (the count of customer-item pairs left out is ``new_item_pairs``).
    new_item_pairs
        Test and cold pairs left out because their item is new.
    """

    cutoff: dt.date
    train: pd.DataFrame
    test: pd.DataFrame
    cold: pd.DataFrame
    repeat_purchases: bool
    new_items: int
    new_item_pairs: int


def cutoff_date(days: pd.DataFrame, test_share: float = 0.25) -> dt.date:
    """The cutoff that leaves the last ``test_share`` of the days from first to last purchase.

    cutoff = first + round((last - first) x (1 - test_share)) days, the rule of
    :func:`crm_helpers.models.clv.time_frame`.
    """
    if not 0 < test_share < 1:
        raise ParamsError(f"test_share={test_share} should be between 0 and 1 (exclusive)")
    _require(days, ("order_date",), "purchase days")
    if len(days) == 0:
        raise DataError(
            "no purchases: the purchase-days table is empty, so there is nothing to split"
        )
    first, last = (
        pd.Timestamp(d).date() for d in (days["order_date"].min(), days["order_date"].max())
    )
    return first + dt.timedelta(days=round((last - first).days * (1 - test_share)))


def time_split(
    days: pd.DataFrame,
    cutoff: dt.date,
    *,
    end: dt.date | None = None,
    repeat_purchases: bool = False,
) -> Split:
    """Split purchase days at ``cutoff``: history up to it, relevant items after it.

    Parameters
    ----------
    days
        Purchase days: ``customer_key``, ``item``, ``order_date`` (+ ``quantity``), as from
        :func:`purchase_days_sql`.
    cutoff
        Last training day (inclusive). Test purchases are those after it (exclusive).
    end
        Last test day (inclusive; None = all later purchases).
    repeat_purchases
        False (default): an item counts as relevant only if the customer did not buy it in
        training (discovery: the list should show something new). True: any item bought after the
        cutoff is relevant, and recommendations may repeat bought items (``exclude_seen=False``).

    Returns
    -------
    Split
        Customers whose test set becomes empty (they only re-bought known items) are not test
        customers. Relevant items are limited to the training catalogue (see ``Split.new_items``).
    """
    _require(days, ("customer_key", "item", "order_date"), "purchase days")
    date = pd.to_datetime(days["order_date"])
    cut = pd.Timestamp(cutoff)
    before = date <= cut
    after = date > cut
    if end is not None:
        after &= date <= pd.Timestamp(end)
    train = interactions(days[before])
    later = days.loc[after, ["customer_key", "item"]].drop_duplicates()
    catalogue = set(train["item"])
    known = later["item"].isin(catalogue)
    new_items = int(later.loc[~known, "item"].nunique())
    new_pairs = int((~known).sum())
    later = later[known]
    warm = later["customer_key"].isin(set(train["customer_key"]))
    test = later[warm]
    if not repeat_purchases:
        seen = test.merge(train[["customer_key", "item"]], how="left", indicator=True)
        test = seen.loc[seen["_merge"] == "left_only", ["customer_key", "item"]]

    def tidy(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values(["customer_key", "item"]).reset_index(drop=True)

    return Split(
        cutoff=cutoff,
        train=train,
        test=tidy(test),
        cold=tidy(later[~warm]),
        repeat_purchases=repeat_purchases,
        new_items=new_items,
        new_item_pairs=new_pairs,
    )


def validation_split(
    days: pd.DataFrame, cutoff: dt.date, test_share: float = 0.25, **options: Any
) -> Split:
    """A split inside the training period (purchases up to ``cutoff`` only), for tuning.

    The validation cutoff leaves the last ``test_share`` of the training days; ``options`` go to
    :func:`time_split`. Nothing after ``cutoff`` is read.
    """
    _require(days, ("order_date",), "purchase days")
    history = days[pd.to_datetime(days["order_date"]) <= pd.Timestamp(cutoff)]
    return time_split(history, cutoff_date(history, test_share), **options)


# ------------------------------------------------------------------------------------ the matrix
@dataclass(frozen=True)
class InteractionMatrix:
    """A customer x item matrix with its labels.

    Attributes
    ----------
    matrix
        CSR, shape (customers, items), float64: purchase days of the item (0 = not bought).
    customers
        Row labels: the sorted customer keys.
    items
        Column labels: the sorted items (the catalogue the models recommend from).
    """

    matrix: sparse.csr_matrix
    customers: np.ndarray
    items: np.ndarray

    @property
    def buyers(self) -> np.ndarray:
        """Distinct buyers per item, shape (items,)."""
        return np.diff(self.matrix.tocsc().indptr)

    def rows(self, customers: Sequence[str]) -> sparse.csr_matrix:
        """The rows of ``customers`` (an empty row for a customer not in the matrix)."""
        keys = np.asarray(customers, dtype=object)
        pos = np.searchsorted(self.customers, keys)
        pos = np.minimum(pos, max(len(self.customers) - 1, 0))
        found = self.customers[pos] == keys if len(self.customers) else np.zeros(len(keys), bool)
        pick = sparse.csr_matrix(
            (np.ones(int(found.sum())), (np.flatnonzero(found), pos[found])),
            shape=(len(keys), len(self.customers)),
        )
        return (pick @ self.matrix).tocsr()


def interaction_matrix(train: pd.DataFrame, value: str = "purchase_days") -> InteractionMatrix:
    """Build the customer x item matrix from interactions (one row per customer and item).

    ``value`` names the column that fills the cells (``purchase_days`` by default; the
    similarity models binarise it, ALS uses it as its confidence count).
    """
    _require(train, ("customer_key", "item", value), "interactions")
    customers = np.asarray(sorted(train["customer_key"].unique()), dtype=object)
    items = np.asarray(sorted(train["item"].unique()), dtype=object)
    rows = np.searchsorted(customers, train["customer_key"].to_numpy(object))
    cols = np.searchsorted(items, train["item"].to_numpy(object))
    mat = sparse.csr_matrix(
        (train[value].to_numpy(float), (rows, cols)), shape=(len(customers), len(items))
    )
    mat.sum_duplicates()
    mat.sort_indices()
    return InteractionMatrix(matrix=mat, customers=customers, items=items)


def _check_matrix(X: Any, n_items: int | None = None) -> sparse.csr_matrix:
    """``X`` as CSR float64; a clear error when it is empty or has the wrong number of items."""
    X = sparse.csr_matrix(X, dtype=np.float64, copy=True)
    if X.shape[0] == 0 or X.shape[1] == 0 or X.nnz == 0 or not np.any(X.data > 0):
        raise DataError(
            f"the customer x item matrix is empty (shape {X.shape[0]} x {X.shape[1]}, "
            f"{X.nnz} purchases): there are no purchases to learn from; check the "
            "transactions or choose a later cutoff"
        )
    if n_items is not None and X.shape[1] != n_items:
        raise DataError(f"the matrix has {X.shape[1]} items, the model was fitted on {n_items}")
    return X


def _rows_matrix(X: Any, n_items: int) -> sparse.csr_matrix:
    """Rows to score: CSR float64 with ``n_items`` columns (empty rows allowed)."""
    X = sparse.csr_matrix(X, dtype=np.float64, copy=True)
    if X.shape[1] != n_items:
        raise DataError(f"the rows have {X.shape[1]} items, the model was fitted on {n_items}")
    return X


def _binary(X: sparse.csr_matrix) -> sparse.csr_matrix:
    B = X.copy()
    B.data = (B.data > 0).astype(np.float64)
    B.eliminate_zeros()
    return B


# ------------------------------------------------------------------------------------ models
class _Recommender(BaseEstimator):
    """Shared checks: parameter constraints and the fitted state."""

    #: parameter -> (type(s), lower bound, lower bound inclusive?)
    _constraints: dict[str, tuple[tuple[type, ...], float, bool]] = {}

    def _check_params(self) -> None:
        for name, (types, low, inclusive) in self._constraints.items():
            value = getattr(self, name)
            ok = isinstance(value, types) and not isinstance(value, bool)
            ok = ok and (value >= low if inclusive else value > low)
            if not ok:
                sign = ">=" if inclusive else ">"
                raise ParamsError(
                    f"{type(self).__name__}: {name}={value!r} should be a number {sign} {low}"
                )

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet: call fit(X) before scoring"
            )

    def predict_scores(self, X: Any) -> np.ndarray:
        """Scores of every item for each row of ``X``, shape (rows, items); higher = better."""
        raise NotImplementedError


class Popularity(_Recommender):
    """Items ranked by their number of distinct buyers: the same list for every customer."""

    def fit(self, X: Any, y: None = None) -> Popularity:
        """Count distinct buyers per item of ``X`` (customers x items)."""
        X = _check_matrix(X)
        self.n_items_ = X.shape[1]
        self.buyers_ = np.diff(_binary(X).tocsc().indptr).astype(np.float64)
        return self

    def predict_scores(self, X: Any) -> np.ndarray:
        """Buyers per item, repeated for each row of ``X``."""
        self._check_fitted()
        X = _rows_matrix(X, self.n_items_)
        return np.broadcast_to(self.buyers_, (X.shape[0], self.n_items_)).copy()


class GroupPopularity(_Recommender):
    """Popularity within a customer group, shrunk towards the overall popularity.

    score(g, i) = (buyers of i in g + prior x share of all buyers who bought i) / (customers in g
    + prior): a group of few customers borrows from the whole base, and a customer whose group is
    unknown (or was not seen at fitting) gets the overall shares.

    Parameters
    ----------
    prior
        Pseudo-customers of the overall popularity added to every group (0 = raw group counts).
    """

    _constraints = {"prior": ((int, float), 0, True)}

    def __init__(self, prior: float = 10.0):
        self.prior = prior

    def fit(self, X: Any, groups: Sequence[Any] | None = None) -> GroupPopularity:
        """Count buyers per item overall and per group (``groups``: one label per row of X)."""
        self._check_params()
        X = _check_matrix(X)
        B = _binary(X)
        labels = _group_labels([None] * X.shape[0] if groups is None else groups)
        if len(labels) != X.shape[0]:
            raise DataError(f"groups has {len(labels)} labels for {X.shape[0]} customers")
        codes, names = pd.factorize(labels, sort=True)
        member = sparse.csr_matrix(
            (np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(len(names), len(codes))
        )
        self.n_items_ = X.shape[1]
        self.groups_ = np.asarray(names, dtype=object)
        self.group_buyers_ = (member @ B).toarray()
        self.group_sizes_ = np.bincount(codes, minlength=len(names)).astype(np.float64)
        self.share_ = np.diff(B.tocsc().indptr) / X.shape[0]
        return self

    def predict_scores(self, X: Any, groups: Sequence[Any] | None = None) -> np.ndarray:
        """Group popularity for each row of ``X`` (``groups``: their labels; None = overall)."""
        self._check_fitted()
        X = _rows_matrix(X, self.n_items_)
        out = np.broadcast_to(self.share_, (X.shape[0], self.n_items_)).copy()
        if groups is None:
            return out
        labels = _group_labels(groups).to_numpy(object)
        if len(labels) != X.shape[0]:
            raise DataError(f"groups has {len(labels)} labels for {X.shape[0]} rows")
        pos = np.minimum(np.searchsorted(self.groups_, labels), len(self.groups_) - 1)
        known = self.groups_[pos] == labels
        rows, g = np.flatnonzero(known), pos[known]
        out[rows] = (self.group_buyers_[g] + self.prior * self.share_) / (
            self.group_sizes_[g, None] + self.prior
        )
        return out


def _group_labels(groups: Sequence[Any]) -> pd.Series:
    """Group labels as text; a missing label is the group ``(unknown)``."""
    return pd.Series(list(groups), dtype=object).fillna("(unknown)").astype(str)


class ItemKNN(_Recommender):
    """Item-based collaborative filtering on the binary customer x item matrix.

    sim(j, i) = n_ji / (n_j^alpha n_i^(1 - alpha)) x c_ji / (c_ji + shrinkage), where c_ji is the
    number of customers who bought both items, n_ji the same count with each customer weighted by
    m_u^-customer_weight (m_u = items the customer bought) and n_j the weighted buyers of j.

    - ``alpha`` = 0.5 and ``customer_weight`` = 0 give the cosine of the two items' buyer vectors,
      the classic choice (Sarwar et al. 2001); other ``alpha`` give Aiolli's (2013) asymmetric
      cosine, at 1 the conditional probability P(i | j), which leans towards popular items i.
    - The shrinkage (Koren 2008, eq. 2) damps similarities resting on one or two common buyers,
      which the long tail of a catalogue is full of: two items bought once each, by the same
      customer, have cosine 1.
    - ``customer_weight`` > 0 lets a customer who buys half the catalogue count less as evidence
      that two items go together (inverse user frequency, Breese et al. 1998; at 1 the
      co-occurrence is that of a random walk item -> customer -> item, Cooper et al. 2014).

    Each item j keeps its ``neighbours`` most similar items i (ties: lower item index); a
    customer's score of item i is the sum of sim(j, i) over the items j the customer bought. The
    similarity is computed in blocks of items (never a dense items x items matrix), so memory
    grows with items x ``neighbours``.

    The defaults (cosine, 50 neighbours, shrinkage 5) are the textbook model with the shrinkage
    that suits a long-tailed catalogue; :func:`tune` chooses the values for a client's data on a
    validation split.

    Parameters
    ----------
    neighbours
        Similar items kept per item.
    shrinkage
        Pseudo-count of common buyers (0 = no shrinkage).
    alpha
        Asymmetry of the normalisation, in [0, 1] (0.5 = cosine).
    customer_weight
        Exponent of the down-weighting of heavy buyers (0 = every customer counts 1).
    """

    _constraints = {
        "neighbours": ((int, np.integer), 1, True),
        "shrinkage": ((int, float), 0, True),
        "alpha": ((int, float), 0, True),
        "customer_weight": ((int, float), 0, True),
    }

    def __init__(
        self,
        neighbours: int = 50,
        shrinkage: float = 5.0,
        alpha: float = 0.5,
        customer_weight: float = 0.0,
    ):
        self.neighbours = neighbours
        self.shrinkage = shrinkage
        self.alpha = alpha
        self.customer_weight = customer_weight

    def fit(self, X: Any, y: None = None) -> ItemKNN:
        """Learn the pruned item x item similarity ``similarity_`` (CSR, items x items)."""
        self._check_params()
        if self.alpha > 1:
            raise ParamsError(f"ItemKNN: alpha={self.alpha!r} should be between 0 and 1")
        B = _binary(_check_matrix(X))
        n = B.shape[1]
        k = min(int(self.neighbours), n - 1)
        Bt = B.T.tocsr()
        W = B
        if self.customer_weight:
            per = np.diff(B.indptr).astype(np.float64)
            w = np.divide(1.0, per**self.customer_weight, out=np.zeros_like(per), where=per > 0)
            W = sparse.diags(w) @ B
        weighted = np.asarray(W.sum(axis=0)).ravel()
        has = weighted > 0
        left = np.divide(1.0, weighted**self.alpha, out=np.zeros(n), where=has)
        right = np.divide(1.0, weighted ** (1.0 - self.alpha), out=np.zeros(n), where=has)
        step = max(1, BLOCK_CELLS // n)
        rows, cols, vals = [], [], []
        for start in range(0, n if k > 0 else 0, step):
            stop = min(n, start + step)
            co = (Bt[start:stop] @ W).toarray()  # weighted common buyers, (block, items)
            sim = co * left[start:stop, None] * right[None, :]
            if self.shrinkage:
                count = co if W is B else (Bt[start:stop] @ B).toarray()
                sim *= count / (count + self.shrinkage)
            sim[np.arange(stop - start), np.arange(start, stop)] = 0.0
            r, c = _top_k_per_row(sim, k)
            rows.append(r + start)
            cols.append(c)
            vals.append(sim[r, c])
        self.n_items_ = n
        self.similarity_ = sparse.csr_matrix(
            (
                np.concatenate(vals) if vals else np.empty(0),
                (
                    np.concatenate(rows) if rows else np.empty(0, int),
                    np.concatenate(cols) if cols else np.empty(0, int),
                ),
            ),
            shape=(n, n),
        )
        return self

    def predict_scores(self, X: Any) -> np.ndarray:
        """Sum of similarities of each item to the row's items, shape (rows, items)."""
        self._check_fitted()
        B = _binary(_rows_matrix(X, self.n_items_))
        return (B @ self.similarity_).toarray()


def _top_k_per_row(a: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of the ``k`` largest positive entries per row; ties go to the lower column."""
    if k <= 0 or a.size == 0:
        return np.empty(0, int), np.empty(0, int)
    m = a.shape[1]
    if k >= m:
        keep = a > 0
    else:
        kth = -np.partition(-a, k - 1, axis=1)[:, k - 1 : k]
        above = a > kth
        at = a == kth
        room = k - above.sum(axis=1, keepdims=True)
        keep = above | (at & (np.cumsum(at, axis=1) <= room))
        keep &= a > 0
    return np.nonzero(keep)


class PureSVD(_Recommender):
    """Truncated SVD of the binary matrix; an item's score is the row projected on the factors.

    scores = X V^T V with V the top ``factors`` right singular vectors (scikit-learn's
    randomized ``TruncatedSVD``, seeded). Cremonesi, Koren and Turrin (2010) found this simple
    projection strong for top-N lists.

    Parameters
    ----------
    factors
        Number of singular vectors (at most items - 1).
    n_iter
        Power iterations of the randomized solver.
    seed
        Seed of the randomized solver.
    """

    _constraints = {"factors": ((int, np.integer), 1, True), "n_iter": ((int, np.integer), 1, True)}

    def __init__(self, factors: int = 64, n_iter: int = 7, seed: int = 0):
        self.factors = factors
        self.n_iter = n_iter
        self.seed = seed

    def fit(self, X: Any, y: None = None) -> PureSVD:
        """Learn ``components_`` (factors x items)."""
        from sklearn.decomposition import TruncatedSVD

        self._check_params()
        B = _binary(_check_matrix(X))
        f = min(int(self.factors), B.shape[1] - 1, B.shape[0])
        if f < 1:
            raise DataError(f"PureSVD needs at least 2 items (found {B.shape[1]})")
        svd = TruncatedSVD(n_components=f, n_iter=self.n_iter, random_state=self.seed).fit(B)
        self.n_items_ = B.shape[1]
        self.components_ = svd.components_
        return self

    def predict_scores(self, X: Any) -> np.ndarray:
        """Row projected onto the item factors and back, shape (rows, items)."""
        self._check_fitted()
        B = _binary(_rows_matrix(X, self.n_items_))
        return np.asarray(B @ self.components_.T) @ self.components_


class ImplicitALS(_Recommender):
    """Matrix factorisation for implicit feedback (Hu, Koren and Volinsky 2008).

    Minimises sum over all customer-item cells of c_ui (p_ui - x_u . y_i)^2 + reg (|x|^2 + |y|^2),
    with preference p_ui = 1 if bought, else 0, and confidence c_ui = 1 + alpha x r_ui (r_ui =
    purchase days). Alternating least squares; each half-step takes ``cg_steps`` conjugate-
    gradient steps from the previous factors (Takacs et al. 2011), vectorised over all rows with
    sparse products, so no n_items^2 or per-customer Python loop is needed. Scores for any row are
    obtained by solving its least-squares problem against the fitted item factors ("folding in").

    Parameters
    ----------
    factors
        Latent dimensions.
    regularization
        L2 penalty ``reg``.
    alpha
        Confidence per purchase day.
    iterations
        Alternating sweeps.
    cg_steps
        Conjugate-gradient steps per half-sweep.
    seed
        Seed of the initial factors (normal, sd 0.01).

    The defaults (64 factors, strong regularisation 100, alpha 10) were close to the best setting
    on the validation splits of both the demo and Online Retail; the best values depend on the
    data's size and density, so :func:`tune` chooses them for a client (see :data:`GRIDS`).
    """

    _constraints = {
        "factors": ((int, np.integer), 1, True),
        "regularization": ((int, float), 0, False),
        "alpha": ((int, float), 0, True),
        "iterations": ((int, np.integer), 1, True),
        "cg_steps": ((int, np.integer), 1, True),
    }

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 100.0,
        alpha: float = 10.0,
        iterations: int = 15,
        cg_steps: int = 3,
        seed: int = 0,
    ):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.cg_steps = cg_steps
        self.seed = seed

    def fit(self, X: Any, y: None = None) -> ImplicitALS:
        """Learn ``user_factors_`` (customers x factors) and ``item_factors_`` (items x factors)."""
        self._check_params()
        X = _check_matrix(X)
        X.data = np.maximum(X.data, 0.0)
        X.eliminate_zeros()
        rng = np.random.default_rng(self.seed)
        f = int(self.factors)
        users = rng.standard_normal((X.shape[0], f)) * 0.01
        items = rng.standard_normal((X.shape[1], f)) * 0.01
        Xt = X.T.tocsr()
        for _ in range(int(self.iterations)):
            users = _als_step(X, items, users, self.alpha, self.regularization, self.cg_steps)
            items = _als_step(Xt, users, items, self.alpha, self.regularization, self.cg_steps)
        self.n_items_ = X.shape[1]
        self.user_factors_ = users
        self.item_factors_ = items
        return self

    def predict_scores(self, X: Any) -> np.ndarray:
        """Fold each row in against the item factors, then score every item, shape (rows, items)."""
        self._check_fitted()
        X = _rows_matrix(X, self.n_items_)
        X.data = np.maximum(X.data, 0.0)
        X.eliminate_zeros()
        start = np.zeros((X.shape[0], self.item_factors_.shape[1]))
        # CG solves a factors-dimensional system in at most factors steps (exact arithmetic);
        # it stops earlier once every row's residual is below CG_TOLERANCE
        steps = max(int(self.factors), 2 * int(self.cg_steps))
        users = _als_step(X, self.item_factors_, start, self.alpha, self.regularization, steps)
        return users @ self.item_factors_.T


def _als_step(
    R: sparse.csr_matrix, Y: np.ndarray, X0: np.ndarray, alpha: float, reg: float, steps: int
) -> np.ndarray:
    """Conjugate-gradient solve of every row's weighted least squares, warm-started at ``X0``.

    For row u: (Y^T C_u Y + reg I) x_u = Y^T C_u p_u, with C_u = I + diag(alpha r_u) and p_u the
    indicator of r_u > 0. Y^T C_u Y is never formed: A x = x (Y^T Y + reg I) + Y^T diag(alpha r_u)
    Y x is applied with one sparse-dense product.
    """
    gram = Y.T @ Y + reg * np.eye(Y.shape[1])
    W = R.copy()
    W.data = alpha * W.data  # c_ui - 1 on the bought cells
    b = (W @ Y) + (_binary(R) @ Y)  # sum over bought items of c_ui y_i

    def apply(x: np.ndarray) -> np.ndarray:
        M = sparse.csr_matrix((W.data * _rowdot(x, Y, R), W.indices, W.indptr), W.shape)
        return x @ gram + M @ Y

    x = X0.copy()
    r = b - apply(x)
    p = r.copy()
    rs = np.einsum("ij,ij->i", r, r)
    done = CG_TOLERANCE**2 * np.einsum("ij,ij->i", b, b)
    for _ in range(int(steps)):
        if np.all(rs <= done):
            break
        Ap = apply(p)
        pAp = np.einsum("ij,ij->i", p, Ap)
        a = np.divide(rs, pAp, out=np.zeros_like(rs), where=pAp > 0)
        x += a[:, None] * p
        r -= a[:, None] * Ap
        rs_new = np.einsum("ij,ij->i", r, r)
        beta = np.divide(rs_new, rs, out=np.zeros_like(rs), where=rs > 1e-20)
        p = r + beta[:, None] * p
        rs = rs_new
    return x


def _rowdot(x: np.ndarray, y: np.ndarray, R: sparse.csr_matrix) -> np.ndarray:
    """x[u] . y[i] for each stored cell (u, i) of ``R``, in row blocks of bounded size."""
    out = np.empty(R.nnz)
    budget = max(1, BLOCK_CELLS // max(x.shape[1], 1))
    indptr, s = R.indptr, 0
    while s < R.shape[0]:
        e = max(s + 1, int(np.searchsorted(indptr, indptr[s] + budget, side="right")) - 1)
        e = min(e, R.shape[0])
        lo, hi = indptr[s], indptr[e]
        # rows of a CSR block are contiguous: repeating them is cheaper than gathering
        xs = np.repeat(x[s:e], np.diff(indptr[s : e + 1]), axis=0)
        out[lo:hi] = np.einsum("ij,ij->i", xs, y[R.indices[lo:hi]])
        s = e
    return out


# ------------------------------------------------------------------------------------ top-N
def recommend(
    model: _Recommender,
    data: InteractionMatrix,
    customers: Sequence[str] | None = None,
    n: int = 10,
    *,
    exclude_seen: bool = True,
    fallback: _Recommender | None = None,
    groups: Mapping[str, Any] | pd.Series | None = None,
    name: str | None = None,
) -> pd.DataFrame:
    """Top-``n`` items per customer, filled from a fallback where the model has too few.

    Parameters
    ----------
    model
        A fitted recommender (fitted on ``data.matrix``).
    data
        The training matrix: histories, item labels and the train popularity used to break ties.
    customers
        Customer keys to recommend for (None = every row of ``data``); a key not in ``data`` has
        no history and gets the fallback list.
    n
        List length.
    exclude_seen
        Leave out items the customer bought in training (False with repeat purchases).
    fallback
        A fitted :class:`Popularity` or :class:`GroupPopularity` (None = popularity of ``data``)
        that fills the places the model leaves: the model contributes only items with a positive
        score.
    groups
        Customer key -> group label, for a :class:`GroupPopularity` model or fallback.
    name
        The ``source`` of the model's rows (None = the model's class name).

    Returns
    -------
    pandas.DataFrame
        ``customer_key``, ``rank`` (1..n), ``item``, ``score`` (of the row's source), ``source``
        (``name`` or ``fallback``); sorted by customer and rank. Ties in score go to the item with
        more training buyers, then to the item that sorts first. A list is shorter than ``n``
        only when the catalogue minus the customer's items is.
    """
    if n < 1:
        raise ParamsError(f"n={n} should be >= 1")
    model._check_fitted()
    keys = data.customers if customers is None else np.asarray(sorted(set(customers)), object)
    name = name or type(model).__name__
    if fallback is None:
        fallback = Popularity().fit(data.matrix)
    fallback._check_fitted()
    buyers = data.buyers
    # tie order: more buyers first, then item label (columns are sorted labels)
    tie = np.empty(len(buyers), dtype=np.int64)
    tie[np.lexsort((np.arange(len(buyers)), -buyers))] = np.arange(len(buyers))
    label = None
    if groups is not None:
        label = pd.Series(groups) if not isinstance(groups, pd.Series) else groups
    step = max(1, BLOCK_CELLS // max(len(data.items), 1))
    parts = []
    for s in range(0, len(keys), step):
        batch = keys[s : s + step]
        X = data.rows(batch)
        seen = X.nonzero()
        scores = _scores(model, X, batch, label)
        if exclude_seen:
            scores[seen] = -np.inf
        scores[~(scores > 0)] = -np.inf
        r, c, pos = _top_n(scores, n, tie)
        got = np.bincount(r, minlength=len(batch))
        parts.append(_frame(batch[r], pos + 1, data.items[c], scores[r, c], name))
        short = np.flatnonzero(got < n)
        if len(short) == 0:
            continue
        Xs = X[short]
        fb = _scores(fallback, Xs, batch[short], label)
        if exclude_seen:
            fb[Xs.nonzero()] = -np.inf
        where = np.searchsorted(short, r)
        chosen = np.isin(r, short)
        fb[where[chosen], c[chosen]] = -np.inf
        fb[~(fb > 0)] = -np.inf
        fr, fc, fpos = _top_n(fb, n, tie)
        rank = got[short[fr]] + fpos + 1
        keep = rank <= n
        fr, fc, rank = fr[keep], fc[keep], rank[keep]
        parts.append(_frame(batch[short[fr]], rank, data.items[fc], fb[fr, fc], "fallback"))
    out = pd.concat(parts, ignore_index=True) if parts else _frame([], [], [], [], name)
    return out.sort_values(["customer_key", "rank"], kind="stable").reset_index(drop=True)


def _scores(
    model: _Recommender, X: sparse.csr_matrix, keys: np.ndarray, groups: pd.Series | None
) -> np.ndarray:
    """The model's scores of the rows ``X`` (customers ``keys``), with their groups if it needs them."""
    if isinstance(model, GroupPopularity):
        labels = None if groups is None else groups.reindex(keys).to_numpy(object)
        return np.asarray(model.predict_scores(X, groups=labels), dtype=np.float64)
    return np.asarray(model.predict_scores(X), dtype=np.float64)


def _frame(customers, rank, items, score, source) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_key": np.asarray(customers, dtype=object),
            "rank": np.asarray(rank, dtype=np.int64),
            "item": np.asarray(items, dtype=object),
            "score": np.asarray(score, dtype=np.float64),
            "source": source,
        }
    )


def _top_n(
    scores: np.ndarray, n: int, tie: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, position 0..n-1) of each row's best finite scores, ties by ``tie`` order."""
    if scores.size == 0:
        return (np.empty(0, int),) * 3
    m = min(n, scores.shape[1])
    kth = -np.partition(-scores, m - 1, axis=1)[:, m - 1]
    r, c = np.nonzero((scores >= kth[:, None]) & np.isfinite(scores))
    order = np.lexsort((tie[c], -scores[r, c], r))
    r, c = r[order], c[order]
    pos = np.arange(len(r)) - np.searchsorted(r, r)
    keep = pos < n
    return r[keep], c[keep], pos[keep]


# ------------------------------------------------------------------------------------ evaluation
def _relevant_frame(relevant: pd.DataFrame | Mapping[str, Any]) -> pd.DataFrame:
    if isinstance(relevant, pd.DataFrame):
        _require(relevant, ("customer_key", "item"), "relevant items")
        rel = relevant[["customer_key", "item"]]
    else:
        rel = pd.DataFrame(
            [(c, i) for c, items in relevant.items() for i in items],
            columns=["customer_key", "item"],
        )
    return rel.drop_duplicates()


def evaluate(
    recs: pd.DataFrame, relevant: pd.DataFrame | Mapping[str, Any], k: int, n_items: int
) -> dict[str, float]:
    """Top-k accuracy of recommendation lists against the items customers went on to buy.

    Means are over the test customers (those with at least one relevant item); a test customer
    without a list counts with zero hits. With hits_u the relevant items among u's first k:

    - precision@k = hits_u / k; recall@k = hits_u / |relevant_u|;
    - NDCG@k = DCG / IDCG, DCG = sum over hits of 1 / log2(rank + 1), IDCG the DCG of a perfect
      list: min(|relevant_u|, k) hits in the first places (binary relevance);
    - success@k = 1 if hits_u >= 1 (hit rate);
    - coverage = distinct items in the test customers' first k places / ``n_items``.

    Parameters
    ----------
    recs
        ``customer_key``, ``rank`` (1 = best), ``item``, as from :func:`recommend`.
    relevant
        ``customer_key``, ``item`` rows, or customer key -> iterable of items.
    k
        List length evaluated (>= 1).
    n_items
        Catalogue size (the items a model could recommend).

    Returns
    -------
    dict
        The five metrics and ``customers`` (test customers evaluated); metrics are NaN when
        there is no test customer.
    """
    if not isinstance(k, int | np.integer) or k < 1:
        raise ParamsError(f"k={k!r} should be an integer >= 1")
    if n_items < 1:
        raise ParamsError(f"n_items={n_items!r} should be >= 1")
    _require(recs, ("customer_key", "rank", "item"), "recommendations")
    rel = _relevant_frame(relevant)
    n_rel = rel.groupby("customer_key").size()
    if len(n_rel) == 0:
        return {**dict.fromkeys(METRICS, math.nan), "customers": 0}
    top = recs.loc[(recs["rank"] <= k) & recs["customer_key"].isin(n_rel.index)]
    hits = top.merge(rel, on=["customer_key", "item"])
    gain = 1.0 / np.log2(hits["rank"].to_numpy(float) + 1.0)
    per = pd.DataFrame({"customer_key": hits["customer_key"], "hit": 1.0, "dcg": gain})
    per = per.groupby("customer_key")[["hit", "dcg"]].sum().reindex(n_rel.index, fill_value=0.0)
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    idcg = ideal[np.minimum(n_rel.to_numpy(), k) - 1]
    return {
        "precision_at_k": float(np.mean(per["hit"] / k)),
        "recall_at_k": float(np.mean(per["hit"].to_numpy() / n_rel.to_numpy())),
        "ndcg_at_k": float(np.mean(per["dcg"].to_numpy() / idcg)),
        "success_at_k": float(np.mean(per["hit"] > 0)),
        "coverage": top["item"].nunique() / n_items,
        "customers": len(n_rel),
    }


def scorecard(
    recs: Mapping[str, pd.DataFrame],
    relevant: pd.DataFrame | Mapping[str, Any],
    k: int,
    n_items: int,
) -> pd.DataFrame:
    """Evaluate several models' lists on the same relevant items: one row per model.

    Columns ``model``, ``precision_at_k``, ``recall_at_k``, ``ndcg_at_k``, ``success_at_k``,
    ``coverage``, ``customers``, in the order of ``recs``. ``card.to_dict("records")`` is the
    ``metrics`` list of ``recommendations.json``.
    """
    rows = [{"model": name, **evaluate(r, relevant, k, n_items)} for name, r in recs.items()]
    return pd.DataFrame(rows, columns=["model", *METRICS, "customers"])


def tune(
    estimator: _Recommender,
    grid: Sequence[Mapping[str, Any]],
    split: Split,
    *,
    k: int = 10,
    metric: str = "ndcg_at_k",
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Choose parameters on a (validation) split: fit each setting, score its top-k.

    ``split`` should come from :func:`validation_split`, which reads only the training period.
    Ties on ``metric`` go to the setting listed first.

    Returns
    -------
    (best, table)
        ``best``: the winning parameters; ``table``: one row per setting with its parameters and
        the :func:`evaluate` metrics, in grid order.
    """
    if metric not in METRICS:
        raise ParamsError(f"metric={metric!r} should be one of {', '.join(METRICS)}")
    data = interaction_matrix(split.train)
    fallback = Popularity().fit(data.matrix)
    users = np.asarray(sorted(split.test["customer_key"].unique()), dtype=object)
    rows = []
    for params in grid:
        model = clone(estimator).set_params(**params).fit(data.matrix)
        recs = recommend(
            model, data, users, k, exclude_seen=not split.repeat_purchases, fallback=fallback
        )
        rows.append({**params, **evaluate(recs, split.test, k, len(data.items))})
    table = pd.DataFrame(rows)
    best = int(np.argmax(table[metric].to_numpy()))
    return dict(grid[best]), table


# ------------------------------------------------------------------------------ the comparison
#: Model keys of the chapter's params -> estimator class and the name shown in the report.
MODELS: dict[str, tuple[type[_Recommender], str]] = {
    "item_knn": (ItemKNN, "item-based CF"),
    "svd": (PureSVD, "truncated SVD"),
    "als": (ImplicitALS, "implicit ALS"),
}
BASELINE = "popularity"


@dataclass(frozen=True)
class Comparison:
    """Models compared with the popularity baseline on a time split.

    Attributes
    ----------
    split
        The holdout split (train up to the cutoff, test after it).
    validation
        The split inside the training period used to choose settings and the model.
    settings
        Model key -> the settings used (chosen on ``validation`` when tuned).
    tuning
        Model key -> one row per setting tried, with its validation metrics.
    validation_scores
        Model key -> its validation metrics (the chosen settings).
    best
        The model key with the highest validation ``metric`` (chosen before the test is read).
    scorecard
        Test metrics, one row per model (display names) and the baseline first.
    recs
        Display name -> the test top-k lists.
    """

    split: Split
    validation: Split
    settings: dict[str, dict[str, Any]]
    tuning: dict[str, pd.DataFrame]
    validation_scores: dict[str, dict[str, float]]
    best: str
    scorecard: pd.DataFrame
    recs: dict[str, pd.DataFrame]

    @property
    def validated(self) -> bool:
        """Whether the validation split had customers to judge (else: defaults, first model)."""
        return bool(len(self.validation.test))

    @property
    def best_name(self) -> str:
        """Display name of the chosen model."""
        return MODELS[self.best][1]


def _estimator(key: str, seed: int, settings: Mapping[str, Any] | None = None) -> _Recommender:
    cls = MODELS[key][0]
    est = cls()
    if "seed" in est.get_params():
        est.set_params(seed=seed)
    return est.set_params(**(settings or {}))


def _score(estimator: _Recommender, split: Split, k: int) -> tuple[dict[str, float], pd.DataFrame]:
    data = interaction_matrix(split.train)
    model = clone(estimator).fit(data.matrix)
    users = np.asarray(sorted(split.test["customer_key"].unique()), dtype=object)
    recs = recommend(
        model,
        data,
        users,
        k,
        exclude_seen=not split.repeat_purchases,
        fallback=Popularity().fit(data.matrix),
    )
    return evaluate(recs, split.test, k, len(data.items)), recs


def compare_models(
    days: pd.DataFrame,
    cutoff: dt.date,
    models: Sequence[str],
    *,
    k: int = 10,
    tune_settings: bool = True,
    repeat_purchases: bool = False,
    seed: int = 0,
    metric: str = "ndcg_at_k",
    validation_share: float = 0.25,
) -> Comparison:
    """Tune and choose on a validation split inside the training period, then test every model.

    Each model's settings come from :data:`GRIDS` by :func:`tune` on :func:`validation_split`
    (or are its defaults with ``tune_settings=False``); the model with the best validation
    ``metric`` is chosen; only then is every model (and :class:`Popularity`) fitted on the whole
    training period and scored on the test period.
    """
    unknown = sorted(set(models) - set(MODELS))
    if unknown or not models:
        raise ParamsError(f"models={list(models)!r}: choose from {', '.join(MODELS)}")
    split = time_split(days, cutoff, repeat_purchases=repeat_purchases)
    validation = validation_split(days, cutoff, validation_share, repeat_purchases=repeat_purchases)
    settings, tuning, val_scores = {}, {}, {}
    for key in models:
        est = _estimator(key, seed)
        if tune_settings and len(validation.test):
            chosen, table = tune(
                est, GRIDS[MODELS[key][0].__name__], validation, k=k, metric=metric
            )
        else:
            chosen, table = {}, pd.DataFrame()
        settings[key], tuning[key] = chosen, table
        val_scores[key] = (
            _score(_estimator(key, seed, chosen), validation, k)[0] if len(validation.test) else {}
        )
    best = max(models, key=lambda m: (val_scores[m].get(metric, -1.0), -list(models).index(m)))
    recs = {BASELINE: _score(Popularity(), split, k)[1]}
    for key in models:
        recs[MODELS[key][1]] = _score(_estimator(key, seed, settings[key]), split, k)[1]
    card = scorecard(recs, split.test, k, split.train["item"].nunique())
    return Comparison(split, validation, settings, tuning, val_scores, best, card, recs)


def describe(key: str, settings: Mapping[str, Any]) -> str:
    """The model with its chosen settings in words, for the report (in the report's language)."""
    from ..i18n import tr

    est = _estimator(key, 0, settings)
    p = est.get_params()
    if key == "item_knn":
        a, shrink, weight = p["alpha"], p["shrinkage"], p["customer_weight"]
        sim = (
            tr("cosine similarity to")
            if a == 0.5
            else tr("conditional probability of being bought with")
            if a == 1.0
            else tr("asymmetric cosine similarity (alpha {a:g}) to", a=a)
        )
        return tr(
            "Item-based CF scores a product by its {sim} the products the customer bought"
            "{shrunk}{weighted}; each product keeps its {neighbours} closest products.",
            sim=sim,
            shrunk=tr(
                ", shrunk when it rests on few shared buyers (shrinkage {shrink:g})", shrink=shrink
            )
            if shrink
            else "",
            weighted=tr(", heavy buyers counting less as evidence") if weight else "",
            neighbours=p["neighbours"],
        )
    if key == "svd":
        return tr(
            "Truncated SVD scores by {factors} latent factors of the whole purchase matrix.",
            factors=p["factors"],
        )
    return tr(
        "Implicit ALS scores by {factors} latent factors fitted to purchases weighted by how often "
        "they were made (alpha {alpha:g}, regularisation {regularization:g}).",
        factors=p["factors"],
        alpha=p["alpha"],
        regularization=p["regularization"],
    )


def new_customer_lists(
    days: pd.DataFrame, groups: pd.Series | None, n: int
) -> dict[str, list[str]]:
    """The lists for customers without history: overall, and per group (group popularity).

    Fitted on every purchase; a group's list is its popularity shrunk towards the overall one
    (:class:`GroupPopularity`), so a small group's list leans on the whole base.
    """
    data = interaction_matrix(interactions(days))
    out = {"(overall)": list(data.items[np.argsort(-data.buyers, kind="stable")[:n]])}
    if groups is None or groups.empty:
        return out
    labels = groups.reindex(data.customers).to_numpy(object)
    model = GroupPopularity().fit(data.matrix, labels)
    names = [g for g in model.groups_ if g is not None and not pd.isna(g)]
    scores = model.predict_scores(sparse.csr_matrix((len(names), len(data.items))), groups=names)
    tie = np.lexsort((np.arange(len(data.items)), -data.buyers))
    rank = np.empty(len(tie), dtype=np.int64)
    rank[tie] = np.arange(len(tie))
    for name, row in zip(names, scores, strict=True):
        order = np.lexsort((rank, -row))[:n]
        out[str(name)] = list(data.items[order])
    return out


def gains(scorecard_: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Each model's metrics relative to the baseline, in per cent (+10 = 10 % higher)."""
    card = scorecard_.set_index("model")
    cols = [c for c in METRICS if c in card]
    base = card.loc[baseline, cols]
    return (100 * (card[cols] / base.where(base > 0) - 1)).drop(index=baseline)


def beats_baseline(
    scorecard_: pd.DataFrame, model: str, *, min_success_gain: float = 10.0
) -> dict[str, bool]:
    """The chapter's test: higher precision@k and NDCG@k, success@k at least +10 % (relative)."""
    g = gains(scorecard_).loc[model]
    return {
        "precision_at_k": bool(g["precision_at_k"] > 0),
        "ndcg_at_k": bool(g["ndcg_at_k"] > 0),
        "success_at_k": bool(g["success_at_k"] >= min_success_gain),
    }


def first_contact_sql(transactions: str | Path, column: str) -> str:
    """SQL: each customer's ``column`` on their first purchase (ties: the smallest value)."""
    path = str(transactions).replace("'", "''")
    return f"""
    SELECT customer_key, arg_min({column}, (order_ts, {column})) AS grp
    FROM read_parquet('{path}')
    WHERE {PURCHASE} AND {column} IS NOT NULL
    GROUP BY customer_key ORDER BY customer_key
    """


class _NoHistory(_Recommender):
    """Scores nothing: with it, :func:`recommend` fills every place from the fallback."""

    def fit(self, X: Any, y: None = None) -> _NoHistory:
        """Remember the number of items."""
        self.n_items_ = _check_matrix(X).shape[1]
        return self

    def predict_scores(self, X: Any) -> np.ndarray:
        """Zeros, shape (rows, items)."""
        self._check_fitted()
        return np.zeros((_rows_matrix(X, self.n_items_).shape[0], self.n_items_))


def cold_start(split: Split, groups: pd.Series | None, k: int) -> pd.DataFrame:
    """New customers (first purchase after the cutoff): overall vs group popularity at k.

    ``groups`` maps customer keys (training and new customers) to a group known at first
    contact; None evaluates overall popularity only. Returns :func:`scorecard` rows.
    """
    data = interaction_matrix(split.train)
    users = np.asarray(sorted(split.cold["customer_key"].unique()), dtype=object)
    nothing = _NoHistory().fit(data.matrix)  # new customers: the fallback decides every place
    recs = {BASELINE: recommend(nothing, data, users, k, fallback=Popularity().fit(data.matrix))}
    if groups is not None:
        g = GroupPopularity().fit(data.matrix, groups.reindex(data.customers).to_numpy(object))
        recs["popularity in their group"] = recommend(
            nothing, data, users, k, fallback=g, groups=groups
        )
    return scorecard(recs, split.cold, k, len(data.items))


def final_recommendations(
    days: pd.DataFrame,
    key: str,
    settings: Mapping[str, Any],
    *,
    n: int,
    repeat_purchases: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """The chosen model refitted on every purchase: the top-``n`` list of every customer."""
    data = interaction_matrix(interactions(days))
    model = _estimator(key, seed, settings).fit(data.matrix)
    return recommend(model, data, None, n, exclude_seen=not repeat_purchases, name=MODELS[key][1])


def _columns(con: Any, path: str | Path) -> list[str]:
    p = str(path).replace("'", "''")
    return [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{p}')").fetchall()]


def fallback_column(
    con: Any, transactions: str | Path, customers: str | Path, choice: str = "auto"
) -> str | None:
    """The group the new-customer fallback uses: ``choice`` if the data have it (any value).

    ``auto`` = region (customer data), else country, else channel (transactions); None when
    the chosen group is absent or ``choice`` is ``none``.
    """
    if choice == "none":
        return None
    options = ("region", "country", "channel") if choice == "auto" else (choice,)
    for col in options:
        path = customers if col == "region" else transactions
        if not Path(path).is_file() or col not in _columns(con, path):
            continue
        p = str(path).replace("'", "''")
        if con.execute(f"SELECT count({col}) FROM read_parquet('{p}')").fetchone()[0]:
            return col
    return None


def fallback_groups(
    con: Any, transactions: str | Path, customers: str | Path, column: str
) -> pd.Series:
    """Customer key -> group known at first contact (region, or the first purchase's column)."""
    if column == "region":
        p = str(customers).replace("'", "''")
        sql = (
            f"SELECT customer_key, region AS grp FROM read_parquet('{p}') "
            "WHERE region IS NOT NULL ORDER BY customer_key"
        )
    else:
        sql = first_contact_sql(transactions, column)
    frame = con.execute(sql).df()
    return frame.set_index("customer_key")["grp"].rename("group")
