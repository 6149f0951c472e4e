"""Churn and risk: an inactivity label, time-split models, calibration, explanation and anomalies.

Definitions (one place; the chapter and its tests quote them):

- **Purchase**: a transaction line that is not a return or cancellation and is a product
  (:data:`crm_helpers.models.clv.PURCHASE`).
- **Population at a cutoff** *c*: customers with at least one purchase on or before *c*
  (optionally only those whose last purchase is fewer than ``active_days`` days before *c*).
- **Churn label**: ``churned = 1`` when the customer makes no purchase in the ``horizon_days``
  days after the cutoff, i.e. none dated in ``(c, c + horizon_days]``.
- **Features** use only rows dated on or before *c* (transactions by ``order_date``, feedback and
  events by the calendar day of their timestamp), so changing or deleting anything later leaves
  them unchanged. They are computed in the engine: :func:`features_sql` is DuckDB SQL over the
  prepared Parquet files (see :data:`FEATURE_TEXT` for each feature in plain words).
- **Time split** (:func:`time_split`): cutoffs ``horizon_days`` apart, so each label window ends
  on the next cutoff. The models are fitted on the earliest ones (stacked), probabilities are
  calibrated on the next and everything is graded on the last (the test cutoff), so nothing is
  fitted, calibrated or chosen on the test cutoff's outcomes.
- **Baseline**: customers ranked by days since their last purchase (a one-feature logistic curve
  turns the ranking into probabilities without changing it).
- **Time to churn** (survival view, :func:`lifetimes_sql`): days from a customer's first to their
  last purchase; observed (churned) when the data end is more than ``horizon_days`` days after
  the last purchase, else censored at the last purchase (the customer is still active).

Models know nothing of files, params or papermill beyond the paths the SQL reads: they take data
frames and return data frames, fitted objects or Axes.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from scipy import stats
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest
from sklearn.inspection import permutation_importance
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from ..i18n import tr
from .clv import PURCHASE

#: Name of the recency-only baseline in metric tables.
BASELINE = "Baseline: recency"
LOGIT = "Logistic regression"
BOOSTING = "Gradient boosting"
#: RFM segment names (chapter 02's default rules) that mean "at risk of leaving".
AT_RISK_SEGMENTS = ("At risk", "Cannot lose them", "Hibernating", "Lost", "About to sleep")
#: Relative gain in churners caught in the top decile a model needs to "beat the baseline".
CLEAR_MARGIN = 0.10
#: Features the logistic model takes as log1p (counts, money, days: long right tails).
LOG_FEATURES = (
    "recency_days",
    "tenure_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "days_between_purchases",
    "orders_recent",
    "orders_previous",
    "categories",
    "feedback_count",
    "returns_recent",
    "complaints_recent",
    "events_recent",
    "days_since_last_event",
)
#: feature -> (what it is, words when it is high, words when it is low).
FEATURE_TEXT: dict[str, tuple[str, str, str]] = {
    "recency_days": (
        "days since the last purchase",
        "long time since the last purchase",
        "bought recently",
    ),
    "tenure_days": ("days since the first purchase", "long-standing customer", "new customer"),
    "frequency": ("purchase orders in the last year", "many orders", "few orders"),
    "monetary": ("purchase spend in the last year", "high spend", "low spend"),
    "avg_order_value": ("mean order value", "large orders", "small orders"),
    "days_between_purchases": (
        "mean days between purchase days",
        "long gaps between purchases",
        "short gaps between purchases",
    ),
    "orders_recent": ("orders in the last period", "many recent orders", "few recent orders"),
    "orders_previous": (
        "orders in the period before the last",
        "many orders in the period before",
        "few orders in the period before",
    ),
    "order_trend": (
        "trend of orders: (last - previous) / (last + previous) period",
        "orders rising",
        "orders falling",
    ),
    "returns_share": (
        "returned lines per purchase line",
        "returns much of what they buy",
        "rarely returns",
    ),
    "returns_recent": (
        "returned lines in the last period",
        "returned goods lately",
        "no recent returns",
    ),
    "categories": ("product categories bought", "buys across many categories", "few categories"),
    "mean_score": (
        "mean feedback score (where feedback exists)",
        "high satisfaction scores",
        "low satisfaction scores",
    ),
    "last_score": (
        "score of the latest feedback",
        "last feedback was happy",
        "last feedback was unhappy",
    ),
    "feedback_count": ("feedback given", "gives much feedback", "gives little feedback"),
    "complaint_share": ("share of feedback that is complaints", "complains", "seldom complains"),
    "complaints_recent": (
        "complaints in the last period",
        "complained lately",
        "no recent complaints",
    ),
    "events_recent": (
        "events in the last period",
        "active online lately",
        "inactive online lately",
    ),
    "days_since_last_event": (
        "days since the last event",
        "no online activity for long",
        "online activity lately",
    ),
    # indicators: only their "missing" state is a reason (the low words are empty)
    "mean_score_missing": ("no feedback given", "no feedback given", ""),
    "last_score_missing": ("no feedback given", "no feedback given", ""),
    "days_between_purchases_missing": ("a single purchase day", "bought on one day only", ""),
    "complaint_share_missing": ("no feedback given", "no feedback given", ""),
    "avg_order_value_missing": ("no orders in the last year", "no orders in the last year", ""),
    "days_since_last_event_missing": ("no events", "no recorded online activity", ""),
}


def _lit(text: str | Path) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _date(d: dt.date) -> str:
    return f"DATE '{d.isoformat()}'"


def feature_text(name: str) -> tuple[str, str, str]:
    """What a feature is, and its words when high and when low (channel shares included)."""
    if name in FEATURE_TEXT:
        return FEATURE_TEXT[name]
    if name.startswith("channel_share_"):
        ch = name.removeprefix("channel_share_")
        return (
            f"share of orders through {ch}",
            f"buys mostly through {ch}",
            f"seldom buys through {ch}",
        )
    if name.endswith("_missing"):
        base = feature_text(name.removesuffix("_missing"))[0]
        return (f"{base}: not available", f"{base} not available", "")
    return (name, f"high {name}", f"low {name}")


# ------------------------------------------------------------------------------ sources (SQL)
@dataclass(frozen=True)
class Sources:
    """Where the prepared tables are and which optional columns the features can use.

    ``channels`` fixes the channel-share features (the same columns on every cutoff).
    """

    transactions: str
    feedback: str | None = None
    events: str | None = None
    channels: tuple[str, ...] = ()
    has_category: bool = False
    has_complaints: bool = False
    complaint_type: str = "complaint"


def _columns(con: Any, path: str | Path) -> set[str]:
    return {
        r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({_lit(path)})").fetchall()
    }


def inspect_sources(
    con: Any,
    transactions: str | Path,
    *,
    as_of: dt.date,
    feedback: str | Path | None = None,
    events: str | Path | None = None,
    max_channels: int = 6,
    complaint_type: str = "complaint",
) -> Sources:
    """Describe the prepared tables the churn features read.

    Parameters
    ----------
    con
        A DuckDB connection.
    transactions, feedback, events
        Paths of the prepared Parquet files (feedback and events optional: None or missing file).
    as_of
        Only data on or before this day decide the channel columns (use the earliest cutoff, so
        later data cannot change the feature set).
    max_channels
        At most this many channels (by purchase orders) get a share feature.
    complaint_type
        The feedback ``type`` that marks a complaint.
    """
    tx_cols = _columns(con, transactions)
    channels: tuple[str, ...] = ()
    if "channel" in tx_cols:
        rows = con.execute(
            f"""SELECT channel FROM read_parquet({_lit(transactions)})
            WHERE {PURCHASE} AND channel IS NOT NULL AND order_date <= {_date(as_of)}
            GROUP BY channel ORDER BY count(DISTINCT order_id) DESC, channel LIMIT {int(max_channels)}"""
        ).fetchall()
        channels = tuple(sorted(r[0] for r in rows))
    fb = str(feedback) if feedback is not None and Path(feedback).is_file() else None
    ev = str(events) if events is not None and Path(events).is_file() else None
    has_complaints = False
    if fb is not None and "type" in _columns(con, fb):
        has_complaints = bool(
            con.execute(
                f"SELECT count(*) FROM read_parquet({_lit(fb)}) WHERE type = {_lit(complaint_type)} "
                f"AND CAST(date AS DATE) <= {_date(as_of)}"
            ).fetchone()[0]
        )
    return Sources(
        transactions=str(transactions),
        feedback=fb,
        events=ev,
        channels=channels,
        has_category="category" in tx_cols,
        has_complaints=has_complaints,
        complaint_type=complaint_type,
    )


def _ident(text: str) -> str:
    """A column-name-safe slug of a channel value."""
    slug = "".join(ch if ch.isalnum() else "_" for ch in text.lower()).strip("_")
    return slug or "blank"


def features_sql(
    src: Sources,
    cutoff: dt.date,
    *,
    period_days: int = 90,
    active_days: int | None = None,
    lookback_days: int | None = 365,
    complaint_type: str = "complaint",
) -> str:
    """SQL of the churn features at ``cutoff``: one row per customer with a purchase by then.

    Only rows dated on or before ``cutoff`` are read. Columns (days and counts as of the cutoff):

    - ``recency_days``: days from the last purchase to the cutoff (0 = bought on the cutoff day);
    - ``tenure_days``: days from the first purchase to the cutoff;
    - ``frequency``: distinct purchase orders and ``monetary``: purchase spend (gross, before
      returns), both in the ``lookback_days`` days up to the cutoff (None = all history: a fixed
      window keeps them comparable between cutoffs with more or less history);
      ``avg_order_value`` = monetary / frequency (NULL without orders in the window);
    - ``days_between_purchases``: (last - first purchase day) / (purchase days - 1), NULL with a
      single purchase day;
    - ``orders_recent``, ``orders_previous``: orders in the last ``period_days`` days up to the
      cutoff and in the ``period_days`` before that; ``order_trend`` = (recent - previous) /
      (recent + previous), 0 when both are 0;
    - ``returns_share``: return and cancellation lines / purchase lines; ``returns_recent``:
      return and cancellation lines dated in the last ``period_days`` days;
    - ``channel_share_<channel>``: share of purchase orders through each of ``src.channels``;
    - ``categories``: distinct categories bought (when the data have categories);
    - with feedback: ``feedback_count`` (0 without), ``mean_score`` and ``last_score`` (the latest
      feedback's score, the lower on a tie; both NULL without feedback) and, when the feedback has
      complaints, ``complaint_share`` and ``complaints_recent`` (in the last ``period_days`` days);
    - with events: ``events_recent`` (events in the last ``period_days`` days) and
      ``days_since_last_event`` (NULL without events).

    ``active_days`` keeps only customers whose last purchase is fewer than that many days before
    the cutoff (None = everyone with a purchase). With ``active_days`` equal to the label's
    horizon the population is the customers active by the churn definition itself, and the
    question is which of them lapse next.
    """
    c = _date(cutoff)
    p = int(period_days)
    tx = _lit(src.transactions)
    money = "CAST(amount AS DECIMAL(38, 6))"  # exact sums: identical in any thread order
    window = f"order_date > {c} - INTERVAL {int(lookback_days)} DAY" if lookback_days else "TRUE"
    chan_cols = "".join(
        f",\n        count(DISTINCT order_id) FILTER (WHERE channel = {_lit(ch)}) / count(DISTINCT order_id)"
        f" AS channel_share_{_ident(ch)}"
        for ch in src.channels
    )
    cat_col = ",\n        count(DISTINCT category) AS categories" if src.has_category else ""
    ctes = [
        f"""lines AS (
        SELECT * FROM read_parquet({tx})
        WHERE customer_key IS NOT NULL AND order_date <= {c}
    )""",
        f"""buy AS (
        SELECT customer_key,
            date_diff('day', max(order_date), {c}) AS recency_days,
            date_diff('day', min(order_date), {c}) AS tenure_days,
            count(DISTINCT order_id) FILTER ({window}) AS frequency,
            CAST(coalesce(sum({money}) FILTER ({window}), 0) AS DOUBLE) AS monetary,
            CAST(sum({money}) FILTER ({window}) AS DOUBLE)
                / nullif(count(DISTINCT order_id) FILTER ({window}), 0) AS avg_order_value,
            CASE WHEN count(DISTINCT order_date) > 1
                THEN date_diff('day', min(order_date), max(order_date))
                    / (count(DISTINCT order_date) - 1) END AS days_between_purchases,
            count(DISTINCT order_id) FILTER (WHERE order_date > {c} - INTERVAL {p} DAY)
                AS orders_recent,
            count(DISTINCT order_id) FILTER (
                WHERE order_date > {c} - INTERVAL {2 * p} DAY AND order_date <= {c} - INTERVAL {p} DAY
            ) AS orders_previous,
            count(*) AS purchase_lines{chan_cols}{cat_col}
        FROM lines WHERE {PURCHASE}
        GROUP BY customer_key
    )""",
        f"""ret AS (
        SELECT customer_key, count(*) AS return_lines,
            count(*) FILTER (WHERE order_date > {c} - INTERVAL {p} DAY) AS returns_recent
        FROM lines WHERE is_return GROUP BY ALL
    )""",
    ]
    joins = ["LEFT JOIN ret USING (customer_key)"]
    cols = [
        "b.customer_key",
        "recency_days",
        "tenure_days",
        "frequency",
        "monetary",
        "avg_order_value",
        "days_between_purchases",
        "orders_recent",
        "orders_previous",
        "CASE WHEN orders_recent + orders_previous = 0 THEN 0.0 ELSE "
        "(orders_recent - orders_previous) / (orders_recent + orders_previous) END AS order_trend",
        "coalesce(return_lines, 0) / purchase_lines AS returns_share",
        "coalesce(returns_recent, 0) AS returns_recent",
    ]
    cols += [f"channel_share_{_ident(ch)}" for ch in src.channels]
    if src.has_category:
        cols.append("categories")
    if src.feedback:
        recent_fb = f"CAST(date AS DATE) > {c} - INTERVAL {p} DAY"
        is_complaint = f"type = {_lit(complaint_type)}"
        complaint = (
            f",\n            avg(CAST({is_complaint} AS DOUBLE)) AS complaint_share,"
            f"\n            count(*) FILTER ({is_complaint} AND {recent_fb}) AS complaints_recent"
            if src.has_complaints
            else ""
        )
        ctes.append(
            f"""fb AS (
        SELECT customer_key, count(score) AS feedback_count,
            CAST(sum(CAST(score AS DECIMAL(38, 6))) AS DOUBLE) / count(score) AS mean_score,
            CAST(arg_max(score, (date, -score)) AS DOUBLE) AS last_score{complaint}
        FROM read_parquet({_lit(src.feedback)})
        WHERE customer_key IS NOT NULL AND score IS NOT NULL AND CAST(date AS DATE) <= {c}
        GROUP BY ALL
    )"""
        )
        joins.append("LEFT JOIN fb USING (customer_key)")
        cols += ["coalesce(feedback_count, 0) AS feedback_count", "mean_score", "last_score"]
        if src.has_complaints:
            cols += ["complaint_share", "coalesce(complaints_recent, 0) AS complaints_recent"]
    if src.events:
        ctes.append(
            f"""ev AS (
        SELECT customer_key,
            count(*) FILTER (WHERE CAST(timestamp AS DATE) > {c} - INTERVAL {p} DAY) AS events_recent,
            date_diff('day', max(CAST(timestamp AS DATE)), {c}) AS days_since_last_event
        FROM read_parquet({_lit(src.events)})
        WHERE customer_key IS NOT NULL AND CAST(timestamp AS DATE) <= {c}
        GROUP BY ALL
    )"""
        )
        joins.append("LEFT JOIN ev USING (customer_key)")
        cols += ["coalesce(events_recent, 0) AS events_recent", "days_since_last_event"]
    where = f"WHERE recency_days < {int(active_days)}" if active_days is not None else ""
    return (
        "WITH "
        + ",\n    ".join(ctes)
        + "\nSELECT "
        + ",\n    ".join(cols)
        + "\nFROM buy b "
        + " ".join(joins)
        + f"\n{where}\nORDER BY b.customer_key"
    )


def label_sql(transactions: str | Path, cutoff: dt.date, horizon_days: int) -> str:
    """SQL: ``customer_key``, ``churned`` (1 = no purchase in ``(cutoff, cutoff + horizon_days]``).

    One row per customer with a purchase on or before ``cutoff``.
    """
    c = _date(cutoff)
    h = int(horizon_days)
    return f"""
    SELECT customer_key,
        CAST(count(*) FILTER (WHERE order_date > {c}) = 0 AS INTEGER) AS churned
    FROM read_parquet({_lit(transactions)})
    WHERE {PURCHASE} AND customer_key IS NOT NULL AND order_date <= {c} + INTERVAL {h} DAY
    GROUP BY customer_key
    HAVING count(*) FILTER (WHERE order_date <= {c}) > 0
    ORDER BY customer_key
    """


def snapshot(
    con: Any,
    src: Sources,
    cutoff: dt.date,
    *,
    horizon_days: int | None,
    period_days: int | None = None,
    active_days: int | None = None,
    lookback_days: int | None = 365,
) -> pd.DataFrame:
    """Features at ``cutoff`` (and the label when ``horizon_days`` is given), sorted by customer.

    ``period_days`` (the trend window) defaults to ``horizon_days`` (or 90 days without one).
    The label needs data up to ``cutoff + horizon_days``: choose cutoffs with :func:`cutoffs`.
    """
    period = period_days or horizon_days or 90
    frame = con.execute(
        features_sql(
            src,
            cutoff,
            period_days=period,
            active_days=active_days,
            lookback_days=lookback_days,
            complaint_type=src.complaint_type,
        )
    ).df()
    if horizon_days is not None:
        label = con.execute(label_sql(src.transactions, cutoff, horizon_days)).df()
        frame = frame.merge(label, on="customer_key", how="left", validate="one_to_one")
        frame["churned"] = frame["churned"].astype(int)
    return frame.sort_values("customer_key", kind="stable").reset_index(drop=True)


def data_span(con: Any, transactions: str | Path) -> tuple[dt.date, dt.date] | None:
    """First and last purchase day in the prepared transactions (None without purchases)."""
    first, last = con.execute(
        f"SELECT min(order_date), max(order_date) FROM read_parquet({_lit(transactions)}) "
        f"WHERE {PURCHASE}"
    ).fetchone()
    return None if first is None else (first, last)


def cutoffs(
    first: dt.date,
    last: dt.date,
    horizon_days: int,
    *,
    slices: int = 3,
    min_history_days: int = 90,
) -> list[dt.date]:
    """``slices`` cutoffs ``horizon_days`` apart, the last one ``horizon_days`` before ``last``.

    Each label window ``(c, c + horizon_days]`` ends on or before the next cutoff, so a later
    slice's label never feeds an earlier slice's fit.

    Raises
    ------
    ValueError
        When the data span is too short for ``min_history_days`` of history before the first
        cutoff (the message says how many days are needed).
    """
    h = int(horizon_days)
    out = [last - dt.timedelta(days=h * (slices - i)) for i in range(slices)]
    if (out[0] - first).days < min_history_days:
        need = min_history_days + h * slices
        raise ValueError(
            f"{(last - first).days + 1} days of purchases from {first} to {last} are too few for "
            f"{slices} cutoffs {h} days apart with {min_history_days} days of history before the "
            f"first (need at least {need + 1}): shorten horizon_days or min_history_days"
        )
    return out


@dataclass(frozen=True)
class TimeSplit:
    """Cutoffs in time order: stacked training cutoffs, then calibration, then test."""

    train: tuple[dt.date, ...]
    calibration: dt.date
    test: dt.date
    horizon_days: int

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the artifact."""
        return {
            "train": [str(c) for c in self.train],
            "calibration": str(self.calibration),
            "test": str(self.test),
            "horizon_days": self.horizon_days,
        }


def time_split(
    first: dt.date,
    last: dt.date,
    horizon_days: int,
    *,
    train_cutoffs: int = 3,
    min_history_days: int = 90,
) -> TimeSplit:
    """Cutoffs ``horizon_days`` apart ending ``horizon_days`` before ``last``: fit, calibrate, test.

    The test cutoff is the latest whose label window ends by ``last``; the calibration cutoff is
    one horizon earlier; up to ``train_cutoffs`` earlier ones (as many as leave
    ``min_history_days`` of history) are stacked for fitting. Nothing after the calibration
    cutoff's label window, which ends on the test cutoff, reaches the fit or the calibration.

    Raises
    ------
    ValueError
        When not even one training cutoff fits (see :func:`cutoffs`).
    """
    for k in range(max(int(train_cutoffs), 1), 0, -1):
        try:
            cuts = cutoffs(
                first, last, horizon_days, slices=k + 2, min_history_days=min_history_days
            )
        except ValueError:
            if k == 1:
                raise
            continue
        return TimeSplit(tuple(cuts[:k]), cuts[k], cuts[k + 1], int(horizon_days))
    raise AssertionError("unreachable")


def training_frame(con: Any, src: Sources, split: TimeSplit, **options: Any) -> pd.DataFrame:
    """The stacked :func:`snapshot` frames of the training cutoffs, with a ``cutoff`` column.

    ``options`` go to :func:`snapshot` (``active_days``, ``period_days``, ``lookback_days``).
    """
    parts = [
        snapshot(con, src, c, horizon_days=split.horizon_days, **options).assign(cutoff=c)
        for c in split.train
    ]
    return pd.concat(parts, ignore_index=True)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The model inputs of a :func:`snapshot` frame (all but the key, the label and the cutoff)."""
    return [c for c in frame.columns if c not in ("customer_key", "churned", "cutoff")]


def sufficiency(
    frames: Mapping[str, pd.DataFrame], *, min_customers: int = 200, min_churners: int = 20
) -> list[str]:
    """What the slices lack for a reliable model (empty = enough), each item naming the threshold."""
    missing = []
    for name, f in frames.items():
        n = len(f)
        churners = int(f["churned"].sum()) if "churned" in f else 0
        stayers = n - churners
        if n < min_customers:
            missing.append(
                f"at least {min_customers:,} customers at the {name} cutoff (found {n:,})"
            )
        if min(churners, stayers) < min_churners:
            missing.append(
                f"at least {min_churners:,} churners and {min_churners:,} staying customers at "
                f"the {name} cutoff (found {churners:,} and {stayers:,})"
            )
    return missing


# ---------------------------------------------------------------------------------- models
def _check_fitted(est: Any, attr: str) -> None:
    if not hasattr(est, attr):
        raise RuntimeError(
            f"this {type(est).__name__} is not fitted yet: call fit(X, y) before using it"
        )


def _y(y: Any) -> np.ndarray:
    arr = np.asarray(y).astype(int)
    if set(np.unique(arr)) - {0, 1}:
        raise ValueError("y must hold 0 (stayed) and 1 (churned) only")
    if len(np.unique(arr)) < 2:
        raise ValueError(
            f"y holds only {int(arr[0]) if len(arr) else 'no'} labels: a churn model needs "
            "both churners and staying customers"
        )
    return arr


class RecencyBaseline(ClassifierMixin, BaseEstimator):
    """Churn ranked by days since the last purchase.

    The ranking is recency itself (``decision_function``); a one-feature logistic curve on
    log1p(recency), fitted on the training cutoff, turns it into probabilities (for the Brier
    score) with the same order as long as its slope ``slope_`` is positive (longer since the last
    purchase = more churn), as it is wherever recency carries any signal.

    Parameters
    ----------
    column
        The recency column of the feature frame.
    """

    def __init__(self, column: str = "recency_days"):
        self.column = column

    def _x(self, X: pd.DataFrame) -> np.ndarray:
        if self.column not in X:
            raise ValueError(f"Required column {self.column} missing from the feature frame")
        return np.log1p(np.asarray(X[self.column], dtype=float).clip(min=0)).reshape(-1, 1)

    def fit(self, X: pd.DataFrame, y: Any) -> RecencyBaseline:
        """Fit the probability curve on recency; returns self."""
        yy = _y(y)
        self.model_ = LogisticRegression(C=1e6, max_iter=1000).fit(self._x(X), yy)
        self.slope_ = float(self.model_.coef_[0, 0])
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Days since the last purchase (higher = more at risk)."""
        _check_fitted(self, "model_")
        return np.asarray(X[self.column], dtype=float)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities of (stay, churn), shape (n, 2)."""
        _check_fitted(self, "model_")
        return self.model_.predict_proba(self._x(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 where the churn probability is at least 0.5."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


class ChurnLogit(ClassifierMixin, BaseEstimator):
    """Regularised (L2) logistic regression on standardised features, readable as odds ratios.

    Preprocessing, learned on the training frame: features in ``log_features`` are taken as
    log1p (money, counts, days); a feature with missing values gets a ``<name>_missing``
    indicator (e.g. no feedback yet) and its missing values the training median; every input is
    then standardised, so an odds ratio is per standard deviation of the (log1p-)feature, and the
    coefficients are comparable with one another.

    Parameters
    ----------
    C
        Inverse regularisation strength of scikit-learn's ``LogisticRegression``.
    log_features
        Columns taken as log1p before standardising (those present are used).
    max_iter
        Iterations of the lbfgs solver.
    """

    def __init__(
        self, C: float = 1.0, log_features: Sequence[str] = LOG_FEATURES, max_iter: int = 2000
    ):
        self.C = C
        self.log_features = log_features
        self.max_iter = max_iter

    def _design(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.features_ if c not in X]
        if missing:
            raise ValueError(f"Required column {missing[0]} missing from the feature frame")
        out = {}
        for c in self.features_:
            v = np.asarray(X[c], dtype=float)
            if c in self.logged_:
                v = np.log1p(np.clip(v, 0, None))
            gap = np.isnan(v)
            if c in self.indicators_:
                out[f"{c}_missing"] = gap.astype(float)
            # a gap unseen in training gets the training median too (no indicator to carry it)
            out[c] = np.where(gap, self.medians_[c], v)
        return pd.DataFrame(out, index=X.index)[self.inputs_]

    def fit(self, X: pd.DataFrame, y: Any) -> ChurnLogit:
        """Learn the preprocessing and the coefficients; returns self."""
        yy = _y(y)
        self.features_ = list(X.columns)
        self.logged_ = [c for c in self.features_ if c in set(self.log_features)]
        raw = {
            c: np.log1p(np.clip(np.asarray(X[c], dtype=float), 0, None))
            if c in self.logged_
            else np.asarray(X[c], dtype=float)
            for c in self.features_
        }
        self.indicators_ = [c for c, v in raw.items() if np.isnan(v).any()]
        self.medians_ = {
            c: float(np.nanmedian(v)) if np.isfinite(v).any() else 0.0 for c, v in raw.items()
        }
        inputs = []
        for c in self.features_:
            inputs.append(c)
            if c in self.indicators_:
                inputs.append(f"{c}_missing")
        self.inputs_ = inputs
        design = self._design(X)
        self.means_ = design.mean().to_numpy()
        sd = design.std(ddof=0).to_numpy()
        self.scales_ = np.where(sd > 0, sd, 1.0)
        z = (design.to_numpy() - self.means_) / self.scales_
        self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(z, yy)
        self.coef_ = self.model_.coef_[0]
        self.intercept_ = float(self.model_.intercept_[0])
        self.classes_ = np.array([0, 1])
        return self

    def standardised(self, X: pd.DataFrame) -> pd.DataFrame:
        """The model inputs after log1p, imputation and standardisation (one column per input)."""
        _check_fitted(self, "model_")
        z = (self._design(X).to_numpy() - self.means_) / self.scales_
        return pd.DataFrame(z, columns=self.inputs_, index=X.index)

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Log-odds of churn."""
        return self.standardised(X).to_numpy() @ self.coef_ + self.intercept_

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities of (stay, churn), shape (n, 2)."""
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 where the churn probability is at least 0.5."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each input's share of each customer's log-odds: coefficient x standardised value."""
        return self.standardised(X) * self.coef_

    def odds_ratios(self) -> pd.DataFrame:
        """Odds ratio per standard deviation of each input, largest effect first.

        Columns: ``feature``, ``description``, ``scale`` (``log1p`` or ``as is``), ``sd`` (one
        standard deviation, in the scale's unit), ``coef`` (log-odds per SD) and ``odds_ratio``.
        """
        _check_fitted(self, "model_")
        rows = []
        for name, coef, sd in zip(self.inputs_, self.coef_, self.scales_, strict=True):
            base = name.removesuffix("_missing") if name.endswith("_missing") else name
            logged = base in self.logged_ and not name.endswith("_missing")
            rows.append(
                {
                    "feature": name,
                    "description": feature_text(name)[0],
                    "scale": "log1p" if logged else "as is",
                    "sd": float(sd),
                    "coef": float(coef),
                    "odds_ratio": float(np.exp(coef)),
                }
            )
        out = pd.DataFrame(rows)
        order = np.lexsort((out["feature"].to_numpy(), -np.abs(out["coef"].to_numpy())))
        return out.iloc[order].reset_index(drop=True)


class ChurnBoosting(ClassifierMixin, BaseEstimator):
    """scikit-learn's HistGradientBoostingClassifier with fixed, moderate settings (seeded).

    No early stopping (it would hold out a random part of the training cutoff) and nothing tuned
    on the test cutoff; missing values are handled natively. Fitting and prediction run on
    ``n_threads`` OpenMP threads (default 1): on a shared machine more threads spin against
    other work and run many times slower, and the results do not depend on it.

    Parameters
    ----------
    seed
        Random state of the booster.
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization
        Passed to ``HistGradientBoostingClassifier``.
    n_threads
        OpenMP threads while fitting and predicting.
    """

    def __init__(
        self,
        seed: int = 0,
        max_iter: int = 200,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 40,
        l2_regularization: float = 1.0,
        n_threads: int = 1,
    ):
        self.seed = seed
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.n_threads = n_threads

    def fit(self, X: pd.DataFrame, y: Any) -> ChurnBoosting:
        """Fit the booster; returns self."""
        yy = _y(y)
        model = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            early_stopping=False,
            random_state=self.seed,
        )
        with threadpool_limits(self.n_threads):
            self.model_ = model.fit(X, yy)
        self.features_ = list(X.columns)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities of (stay, churn), shape (n, 2)."""
        _check_fitted(self, "model_")
        with threadpool_limits(self.n_threads):
            return self.model_.predict_proba(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 where the churn probability is at least 0.5."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


@dataclass
class FittedModels:
    """The three fitted models of the chapter, by name (baseline first)."""

    models: dict[str, Any]
    features: list[str]

    def predict(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Churn probability of each customer of ``frame`` under each model."""
        X = frame[self.features]
        return {name: m.predict_proba(X)[:, 1] for name, m in self.models.items()}


def fit_models(train: pd.DataFrame, *, seed: int, C: float = 1.0) -> FittedModels:
    """Fit the recency baseline, the logistic regression and gradient boosting on ``train``.

    ``train`` is a :func:`snapshot` or :func:`training_frame` (several cutoffs stacked).
    """
    feats = feature_columns(train)
    X, y = train[feats], train["churned"].to_numpy(int)
    return FittedModels(
        models={
            BASELINE: RecencyBaseline().fit(X, y),
            LOGIT: ChurnLogit(C=C).fit(X, y),
            BOOSTING: ChurnBoosting(seed=seed).fit(X, y),
        },
        features=feats,
    )


# ----------------------------------------------------------------------------- calibration
def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


class _Mapping:
    """A monotone map of raw probabilities to calibrated ones (sigmoid or isotonic)."""

    def __init__(self, method: str):
        if method not in ("sigmoid", "isotonic"):
            raise ValueError(f"method={method!r} should be 'sigmoid' or 'isotonic'")
        self.method = method

    def fit(self, p: np.ndarray, y: np.ndarray) -> _Mapping:
        if self.method == "sigmoid":
            self.m = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(p).reshape(-1, 1), y)
        else:
            self.m = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return self

    def __call__(self, p: np.ndarray) -> np.ndarray:
        if self.method == "sigmoid":
            return self.m.predict_proba(_logit(p).reshape(-1, 1))[:, 1]
        return self.m.predict(np.asarray(p, dtype=float))


class CalibratedChurn(ClassifierMixin, BaseEstimator):
    """A fitted churn model whose probabilities are re-mapped on a later (validation) cutoff.

    ``fit`` learns only the map (sigmoid: Platt scaling on the log-odds; isotonic: a monotone
    step function); the wrapped estimator is used as fitted and never refitted.

    Parameters
    ----------
    estimator
        A fitted model with ``predict_proba``.
    method
        ``sigmoid`` or ``isotonic``.
    """

    def __init__(self, estimator: Any, method: str = "sigmoid"):
        self.estimator = estimator
        self.method = method

    def fit(self, X: pd.DataFrame, y: Any) -> CalibratedChurn:
        """Learn the map from the estimator's probabilities on ``X`` to the outcomes ``y``."""
        yy = _y(y)
        self.map_ = _Mapping(self.method).fit(self.estimator.predict_proba(X)[:, 1], yy)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities of (stay, churn), shape (n, 2)."""
        _check_fitted(self, "map_")
        p = self.map_(self.estimator.predict_proba(X)[:, 1])
        return np.column_stack([1 - p, p])


def calibration_check(
    estimator: Any,
    X_val: pd.DataFrame,
    y_val: Any,
    *,
    seed: int,
    methods: Sequence[str] = ("sigmoid", "isotonic"),
    folds: int = 5,
) -> pd.DataFrame:
    """Does calibration help? Cross-validated Brier score of each map on the validation cutoff.

    Each map is fitted on ``folds - 1`` folds of the validation customers (stratified, seeded)
    and scored on the held-out fold; ``none`` is the raw probabilities. The test cutoff is not
    used, so choosing the best row is not tuning on the test.

    Returns
    -------
    pandas.DataFrame
        ``method``, ``brier`` (out-of-fold) and ``chosen`` (True on the lowest Brier; ``none``
        wins ties).
    """
    y = _y(y_val)
    p = estimator.predict_proba(X_val)[:, 1]
    rows = [{"method": "none", "brier": float(brier_score_loss(y, p))}]
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for method in methods:
        oof = np.empty_like(p)
        for fit_rows, te in skf.split(p.reshape(-1, 1), y):
            oof[te] = _Mapping(method).fit(p[fit_rows], y[fit_rows])(p[te])
        rows.append({"method": method, "brier": float(brier_score_loss(y, oof))})
    out = pd.DataFrame(rows)
    out["chosen"] = False
    out.loc[int(np.argmin(out["brier"].to_numpy())), "chosen"] = True
    return out


# ---------------------------------------------------------------------------------- metrics
def _order(score: np.ndarray) -> np.ndarray:
    """Indices from highest to lowest score; ties keep the frame order (sorted by customer)."""
    return np.argsort(-np.asarray(score, dtype=float), kind="stable")


def top_decile(y: Any, score: Any, share: float = 0.1) -> dict[str, float]:
    """Churners caught among the ``ceil(share x n)`` highest scores, and the lift.

    Returns
    -------
    dict
        ``k`` (customers in the top group), ``caught`` (churners among them), ``capture`` (caught
        / all churners), ``lift`` ((caught / k) / base rate).
    """
    yy = np.asarray(y, dtype=int)
    n = len(yy)
    k = max(1, math.ceil(share * n - 1e-9))
    caught = int(yy[_order(score)[:k]].sum())
    total = int(yy.sum())
    rate = total / n if n else math.nan
    return {
        "k": k,
        "caught": caught,
        "capture": caught / total if total else math.nan,
        "lift": (caught / k) / rate if rate else math.nan,
    }


def gains_curve(y: Any, score: Any) -> pd.DataFrame:
    """Cumulative gains: share of customers contacted (by score) vs share of churners caught."""
    yy = np.asarray(y, dtype=int)[_order(score)]
    n, total = len(yy), max(int(yy.sum()), 1)
    return pd.DataFrame(
        {
            "contacted": np.arange(0, n + 1) / n,
            "caught": np.concatenate([[0], np.cumsum(yy)]) / total,
        }
    )


def metrics_table(y: Any, probabilities: Mapping[str, Any], share: float = 0.1) -> pd.DataFrame:
    """One row per model: ROC-AUC, PR-AUC, Brier score and top-decile lift on one test cutoff.

    Columns: ``model``, ``customers``, ``churners``, ``base_rate``, ``roc_auc``, ``pr_auc``
    (average precision), ``brier``, ``top_decile_lift``, ``top_decile_churners`` (churners caught
    in the top ``share``) and ``top_decile_capture`` (their share of all churners).
    """
    yy = np.asarray(y, dtype=int)
    rows = []
    for name, p in probabilities.items():
        p = np.asarray(p, dtype=float)
        td = top_decile(yy, p, share)
        rows.append(
            {
                "model": name,
                "customers": len(yy),
                "churners": int(yy.sum()),
                "base_rate": float(yy.mean()),
                "roc_auc": float(roc_auc_score(yy, p)),
                "pr_auc": float(average_precision_score(yy, p)),
                "brier": float(brier_score_loss(yy, p)),
                "top_decile_lift": float(td["lift"]),
                "top_decile_churners": td["caught"],
                "top_decile_capture": float(td["capture"]),
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Verdict:
    """Whether a model beats the baseline by a clear margin in churners caught in the top decile."""

    model: str
    baseline: str
    caught: int
    baseline_caught: int
    margin: float
    beats: bool

    @property
    def gain(self) -> float:
        """Relative gain in churners caught (0.12 = 12 % more than the baseline)."""
        return self.caught / self.baseline_caught - 1 if self.baseline_caught else math.inf

    @property
    def text(self) -> str:
        """The verdict in one plain sentence."""
        more = (
            f"{abs(self.gain):.0%} {'more' if self.gain >= 0 else 'fewer'}"
            if self.baseline_caught
            else "more"
        )
        head = (
            f"{self.model} catches {self.caught:,} churners in its top decile, {more} than "
            f"{self.baseline.lower().removeprefix('baseline: ')} ranking ({self.baseline_caught:,})"
        )
        if self.beats:
            return f"{head}: it beats the baseline by a clear margin."
        return (
            f"{head}: it does not beat the baseline by a clear margin "
            f"(at least {self.margin:.0%} more needed), so the simpler recency ranking will do."
        )


def verdict(
    metrics: pd.DataFrame, model: str, baseline: str = BASELINE, margin: float = CLEAR_MARGIN
) -> Verdict:
    """Grade ``model`` against ``baseline`` in a :func:`metrics_table`.

    The model beats the baseline when it catches at least ``(1 + margin)`` times as many churners
    in its top decile (exactly 10 % more counts as beating it with the default margin).
    """
    idx = metrics.set_index("model")
    for name in (model, baseline):
        if name not in idx.index:
            raise ValueError(f"model {name!r} not in the metrics table ({', '.join(idx.index)})")
    caught = int(idx.loc[model, "top_decile_churners"])
    base = int(idx.loc[baseline, "top_decile_churners"])
    # integers: compare caught >= base x (1 + margin) without rounding trouble at the boundary
    beats = caught > 0 and caught * 10**6 >= base * round((1 + margin) * 10**6)
    return Verdict(model, baseline, caught, base, margin, bool(beats))


def calibration_table(y: Any, p: Any, bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed churn per quantile bin of the prediction (reliability)."""
    frame = pd.DataFrame({"y": np.asarray(y, dtype=int), "p": np.asarray(p, dtype=float)})
    ranks = frame["p"].rank(method="first")
    frame["bin"] = np.ceil(ranks * bins / len(frame)).astype(int)
    out = frame.groupby("bin").agg(
        customers=("y", "size"), predicted=("p", "mean"), observed=("y", "mean")
    )
    return out.reset_index()


# ------------------------------------------------------------------------------- explanation
def importance(
    model: Any,
    frame: pd.DataFrame,
    *,
    seed: int,
    n_repeats: int = 5,
    features: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Permutation importance: drop in ROC-AUC when a feature's values are shuffled (seeded).

    Computed on the given (test) frame, single-threaded. Returns ``feature``, ``description``,
    ``importance`` (mean drop), ``std`` and ``rank`` (1 = most important), most important first.
    """
    feats = list(features) if features is not None else feature_columns(frame)
    res = permutation_importance(
        model,
        frame[feats],
        frame["churned"].to_numpy(int),
        scoring="roc_auc",
        n_repeats=n_repeats,
        random_state=seed,
    )
    out = pd.DataFrame(
        {
            "feature": feats,
            "description": [feature_text(f)[0] for f in feats],
            "importance": res.importances_mean,
            "std": res.importances_std,
        }
    )
    order = np.lexsort((out["feature"].to_numpy(), -out["importance"].to_numpy()))
    out = out.iloc[order].reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    return out


#: The demo's planted churn drivers (crm_helpers.demo, churn block) -> the features that show them.
PLANTED_DRIVER_FEATURES: dict[str, tuple[str, ...]] = {
    "returns": ("returns_recent", "returns_share"),
    "low_satisfaction": ("complaints_recent", "complaint_share", "last_score", "mean_score"),
}


def planted_driver_ranks(table: pd.DataFrame, drivers: Iterable[str]) -> pd.DataFrame:
    """Where each planted driver shows in an :func:`importance` table: its best-ranked feature.

    Returns ``driver``, ``feature`` (None when no feature of the driver was used), ``rank`` and
    ``of`` (the number of features ranked).
    """
    ranked = table.set_index("feature")["rank"]
    rows = []
    for d in drivers:
        feats = [f for f in PLANTED_DRIVER_FEATURES.get(d, ()) if f in ranked.index]
        best = min(feats, key=lambda f: ranked[f]) if feats else None
        rows.append(
            {
                "driver": d,
                "feature": best,
                "rank": int(ranked[best]) if best else None,
                "of": len(ranked),
            }
        )
    return pd.DataFrame(rows, columns=["driver", "feature", "rank", "of"])


def reasons(
    model: ChurnLogit, frame: pd.DataFrame, *, top: int = 3, min_contribution: float = 0.05
) -> pd.DataFrame:
    """The top reasons behind each customer's churn risk under the logistic model, in plain words.

    A reason is an input with a positive contribution (coefficient x standardised value) of at
    least ``min_contribution`` log-odds, largest first; its words say whether the feature is high
    or low for the customer (e.g. "returns much of what they buy").

    Returns
    -------
    pandas.DataFrame
        ``customer_key``, ``churn_probability``, ``reason_1`` .. ``reason_<top>`` (empty when
        fewer reasons qualify) and ``contribution_1`` .. (log-odds), in ``frame`` order.
    """
    X = frame[model.features_]
    z = model.standardised(X).to_numpy()
    c = z * model.coef_
    high = z > 0
    text = [feature_text(n) for n in model.inputs_]
    words = np.where(high, [[t[1] for t in text]], [[t[2] for t in text]])
    # an input whose words are empty in this state (an indicator that is not missing) is no reason
    usable = np.where(words != "", c, -np.inf)
    order = np.argsort(-usable, axis=1, kind="stable")[:, :top]
    rows = np.arange(len(frame))
    out: dict[str, Any] = {
        "customer_key": frame["customer_key"].to_numpy(),
        "churn_probability": model.predict_proba(X)[:, 1],
    }
    for j in range(top):
        idx = order[:, j]
        val = usable[rows, idx]
        ok = val >= min_contribution
        out[f"reason_{j + 1}"] = np.where(ok, words[rows, idx], "")
        out[f"contribution_{j + 1}"] = np.where(ok, val, np.nan)
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------- survival view
def lifetimes_sql(transactions: str | Path, horizon_days: int, end: dt.date) -> str:
    """SQL of each customer's time to churn (days) and whether churn was observed by ``end``.

    A customer's lifetime runs from their first to their last purchase day (``duration_days``).
    It ended (``churned`` = 1) when more than ``horizon_days`` days pass from the last purchase to
    ``end`` (the label's definition of churn); otherwise the customer is still active and the
    lifetime is censored at the last purchase (``churned`` = 0: it lasts at least that long).
    A gap longer than the horizon followed by a return is not churn: the customer came back.
    """
    e = _date(end)
    return f"""
    SELECT customer_key,
        date_diff('day', min(order_date), max(order_date)) AS duration_days,
        CAST(date_diff('day', max(order_date), {e}) > {int(horizon_days)} AS INTEGER) AS churned
    FROM read_parquet({_lit(transactions)})
    WHERE {PURCHASE} AND customer_key IS NOT NULL AND order_date <= {e}
    GROUP BY customer_key ORDER BY customer_key
    """


def km_curves(lifetimes: pd.DataFrame, by: str | None = None, level: float = 0.95) -> pd.DataFrame:
    """Kaplan-Meier survival (still active) by group, with pointwise log-log confidence bands.

    Parameters
    ----------
    lifetimes
        ``duration_days``, ``churned`` (from :func:`lifetimes_sql`) and the ``by`` column.
    by
        Group column (e.g. the RFM ``segment``); None = all customers as one group.
    level
        Coverage of the pointwise bands.

    Returns
    -------
    pandas.DataFrame
        ``group``, ``days``, ``survival``, ``lower``, ``upper``, ``at_risk``, one row per event
        time, starting at (0 days, 1.0) for each group.
    """
    from statsmodels.duration.survfunc import SurvfuncRight

    z = stats.norm.ppf(0.5 + level / 2)
    groups = [("all", lifetimes)] if by is None else lifetimes.groupby(by, sort=True)
    parts = []
    for name, g in groups:
        sf = SurvfuncRight(g["duration_days"].to_numpy(float), g["churned"].to_numpy(int))
        s, se = np.asarray(sf.surv_prob), np.asarray(sf.surv_prob_se)
        with np.errstate(divide="ignore", invalid="ignore"):
            # log(-log S) interval: stays inside (0, 1)
            w = z * se / (s * np.abs(np.log(s)))
            lower, upper = s ** np.exp(w), s ** np.exp(-w)
        t = np.asarray(sf.surv_times, dtype=float)
        start = pd.DataFrame(
            {"days": [0.0], "survival": [1.0], "lower": [1.0], "upper": [1.0], "at_risk": [len(g)]}
        )
        curve = pd.DataFrame(
            {"days": t, "survival": s, "lower": lower, "upper": upper, "at_risk": sf.n_risk}
        )
        if len(t) and t[0] == 0:
            start = start.iloc[0:0]
        part = pd.concat([start, curve], ignore_index=True)
        part.insert(0, "group", str(name))
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def survival_at(curves: pd.DataFrame, days: Iterable[int]) -> pd.DataFrame:
    """Share still active at each of ``days`` per group (read off the step curves)."""
    rows = []
    for name, g in curves.groupby("group", sort=True):
        row: dict[str, Any] = {"group": name, "customers": int(g["at_risk"].iloc[0])}
        t, s = g["days"].to_numpy(), g["survival"].to_numpy()
        for d in days:
            i = np.searchsorted(t, d, side="right") - 1
            row[f"active_{d}d"] = float(s[i]) if i >= 0 else 1.0
        below = np.nonzero(s <= 0.5)[0]
        row["median_days"] = float(t[below[0]]) if len(below) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- anomalies
def orders_sql(transactions: str | Path, *, has_country: bool = False) -> str:
    """SQL: one row per purchase order with the inputs of the order anomaly flags.

    ``amount`` (purchase value), ``items`` (units), ``lines``, ``return_share`` (return lines
    booked on the same order id / purchase lines), ``hour`` (of ``order_ts``) and, when present,
    ``country``.
    """
    country = ", arg_min(country, source_row) AS country" if has_country else ""
    return f"""
    WITH t AS (
        SELECT * FROM read_parquet({_lit(transactions)})
        WHERE customer_key IS NOT NULL AND is_product
    )
    SELECT customer_key, order_id, min(order_ts) FILTER (WHERE NOT is_return) AS order_ts,
        CAST(sum(CAST(amount AS DECIMAL(38, 6))) FILTER (WHERE NOT is_return) AS DOUBLE) AS amount,
        sum(quantity) FILTER (WHERE NOT is_return) AS items,
        count(*) FILTER (WHERE NOT is_return) AS lines,
        count(*) FILTER (WHERE is_return) / count(*) FILTER (WHERE NOT is_return) AS return_share,
        hour(min(order_ts) FILTER (WHERE NOT is_return)) AS hour{country}
    FROM t GROUP BY customer_key, order_id
    HAVING count(*) FILTER (WHERE NOT is_return) > 0
    ORDER BY order_id, customer_key
    """


def customers_risk_sql(transactions: str | Path, end: dt.date, *, has_country: bool = False) -> str:
    """SQL: one row per customer with a purchase by ``end``, inputs of the customer anomaly flags.

    ``orders``, ``spend`` (purchase value), ``avg_order_value``, ``items_per_order``,
    ``returns_share`` (return and cancellation lines / purchase lines), ``night_share`` (share
    of orders placed between midnight and 6 a.m.) and, when present, ``countries`` (distinct
    countries ordered from).
    """
    country = ",\n        count(DISTINCT country) AS countries" if has_country else ""
    return f"""
    WITH t AS (
        SELECT * FROM read_parquet({_lit(transactions)})
        WHERE customer_key IS NOT NULL AND is_product AND order_date <= {_date(end)}
    ), o AS (
        SELECT customer_key, order_id, min(order_ts) AS ts FROM t WHERE NOT is_return GROUP BY ALL
    ), n AS (
        SELECT customer_key, avg(CAST(hour(ts) < 6 AS DOUBLE)) AS night_share FROM o GROUP BY ALL
    )
    SELECT customer_key,
        count(DISTINCT order_id) FILTER (WHERE NOT is_return) AS orders,
        CAST(sum(CAST(amount AS DECIMAL(38, 6))) FILTER (WHERE NOT is_return) AS DOUBLE) AS spend,
        CAST(sum(CAST(amount AS DECIMAL(38, 6))) FILTER (WHERE NOT is_return) AS DOUBLE)
            / count(DISTINCT order_id) FILTER (WHERE NOT is_return) AS avg_order_value,
        sum(quantity) FILTER (WHERE NOT is_return)
            / count(DISTINCT order_id) FILTER (WHERE NOT is_return) AS items_per_order,
        count(*) FILTER (WHERE is_return) / count(*) FILTER (WHERE NOT is_return) AS returns_share,
        any_value(n.night_share) AS night_share{country}
    FROM t JOIN n USING (customer_key)
    GROUP BY customer_key
    HAVING count(*) FILTER (WHERE NOT is_return) > 0
    ORDER BY customer_key
    """


def _rarity(values: pd.Series) -> np.ndarray:
    """1 - the share of rows holding each row's value (rare countries or hours score high)."""
    share = values.map(values.value_counts(normalize=True, dropna=False))
    return 1.0 - share.to_numpy(float)


def anomaly_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The numeric inputs of the anomaly flags: log1p of money and counts, rarity of categories.

    ``amount``, ``items``, ``lines``, ``orders``, ``spend``, ``avg_order_value``,
    ``items_per_order``, ``frequency`` and ``monetary`` are taken as log1p
    (negative values as 0); ``hour`` and ``country`` become the rarity of their value; other
    numeric columns are used as they are. Constant columns are left out.
    """
    logged = {
        "amount",
        "items",
        "lines",
        "orders",
        "spend",
        "avg_order_value",
        "items_per_order",
        "frequency",
        "monetary",
    }
    out = {}
    for c in frame.columns:
        if c in ("customer_key", "order_id", "order_ts"):
            continue
        if c in ("hour", "country"):
            out[f"{c}_rarity"] = _rarity(frame[c])
        elif pd.api.types.is_numeric_dtype(frame[c]):
            v = frame[c].to_numpy(float)
            out[c] = np.log1p(np.clip(v, 0, None)) if c in logged else v
    x = pd.DataFrame(out, index=frame.index).fillna(0.0)
    return x.loc[:, x.nunique() > 1]


def flag_anomalies(
    frame: pd.DataFrame, *, seed: int, contamination: float = 0.01, n_estimators: int = 200
) -> pd.DataFrame:
    """Isolation-forest anomaly flags (seeded) on the rows of ``frame``.

    Parameters
    ----------
    frame
        Orders (:func:`orders_sql`) or customers (:func:`customers_risk_sql`), one row each.
    seed
        Random state of the forest.
    contamination
        Share of rows flagged.
    n_estimators
        Trees in the forest.

    Returns
    -------
    pandas.DataFrame
        ``frame`` with ``anomaly_score`` (higher = more unusual), ``flagged`` and ``why`` (the
        input furthest from its median, in interquartile ranges, e.g. "amount high").
    """
    x = anomaly_inputs(frame)
    out = frame.copy()
    if x.empty or len(x) < 10:
        out["anomaly_score"], out["flagged"], out["why"] = 0.0, False, ""
        return out
    forest = IsolationForest(
        n_estimators=n_estimators, contamination=contamination, random_state=seed
    ).fit(x.to_numpy())
    out["anomaly_score"] = -forest.score_samples(x.to_numpy())
    out["flagged"] = forest.predict(x.to_numpy()) == -1
    med = x.median()
    iqr = (x.quantile(0.75) - x.quantile(0.25)).replace(0, np.nan)
    iqr = iqr.fillna(x.std(ddof=0).replace(0, 1.0))
    dev = (x - med) / iqr
    col = dev.abs().to_numpy().argmax(axis=1)
    sign = np.sign(dev.to_numpy()[np.arange(len(x)), col])
    names = x.columns.to_numpy()[col]
    out["why"] = [f"{n} {'high' if s > 0 else 'low'}" for n, s in zip(names, sign, strict=True)]
    return out


def anomaly_summary(
    flagged: pd.DataFrame, examples: int = 5
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Share flagged and the most unusual examples (highest score; ties by frame order)."""
    n = len(flagged)
    k = int(flagged["flagged"].sum())
    info = {"rows": n, "flagged": k, "share_flagged": k / n if n else math.nan}
    top = flagged.iloc[_order(flagged["anomaly_score"].to_numpy())[:examples]]
    return info, top.reset_index(drop=True)


# ------------------------------------------------------------------------ cross-model agreement
def rank_agreement(churn: pd.DataFrame, clv_table: pd.DataFrame) -> dict[str, float]:
    """Spearman rank correlation of churn probability and 1 - P(alive) (chapter 03).

    ``churn`` has ``customer_key``, ``churn_probability``; ``clv_table`` ``customer_key``,
    ``p_alive``. Customers in both count.
    """
    m = churn.merge(clv_table[["customer_key", "p_alive"]], on="customer_key")
    if len(m) < 3:
        return {"customers": len(m), "spearman": math.nan, "p_value": math.nan}
    res = stats.spearmanr(m["churn_probability"], 1 - m["p_alive"])
    return {"customers": len(m), "spearman": float(res.statistic), "p_value": float(res.pvalue)}


def churn_by_segment(
    churn: pd.DataFrame, segments: pd.DataFrame, at_risk: Sequence[str] = AT_RISK_SEGMENTS
) -> pd.DataFrame:
    """Mean churn probability (and observed churn where ``churned`` is present) per RFM segment.

    Returns ``segment``, ``customers``, ``mean_churn_probability``, ``churn_rate`` (observed; NaN
    without labels) and ``at_risk_segment``, highest mean probability first.
    """
    m = churn.merge(segments[["customer_key", "segment"]], on="customer_key")
    g = m.groupby("segment", sort=True)
    out = pd.DataFrame(
        {
            "customers": g.size(),
            "mean_churn_probability": g["churn_probability"].mean(),
            "churn_rate": g["churned"].mean() if "churned" in m else np.nan,
        }
    ).reset_index()
    out["at_risk_segment"] = out["segment"].isin(list(at_risk))
    order = np.lexsort((out["segment"].to_numpy(), -out["mean_churn_probability"].to_numpy()))
    return out.iloc[order].reset_index(drop=True)


def disagreements(churn: pd.DataFrame, clv_table: pd.DataFrame, top: int = 20) -> pd.DataFrame:
    """Customers the churn model and BG/NBD disagree on most (percentile ranks furthest apart).

    Both risks are ranked as percentiles (0-1, average ranks for ties): churn probability and
    1 - P(alive). ``gap`` = churn percentile - BG/NBD percentile (positive: the churn model sees
    more risk). Largest absolute gap first; ties by customer.
    """
    m = churn[["customer_key", "churn_probability"]].merge(
        clv_table[["customer_key", "p_alive"]], on="customer_key"
    )
    m = m.sort_values("customer_key", kind="stable").reset_index(drop=True)
    m["churn_percentile"] = m["churn_probability"].rank(pct=True)
    m["bgnbd_percentile"] = (1 - m["p_alive"]).rank(pct=True)
    m["gap"] = m["churn_percentile"] - m["bgnbd_percentile"]
    order = np.argsort(-m["gap"].abs().to_numpy(), kind="stable")[:top]
    return m.iloc[order].reset_index(drop=True)


def value_at_risk(
    churn: pd.DataFrame,
    clv_table: pd.DataFrame | None = None,
    *,
    recent_spend: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The win-back list: churn probability x value, highest first.

    Value is the customer's CLV (``clv_table``: ``customer_key``, ``clv``) where available, else
    their recent spend (``recent_spend``: ``customer_key``, ``spend``), else 0.

    Returns
    -------
    pandas.DataFrame
        ``rank``, ``customer_key``, ``churn_probability``, ``value``, ``value_source`` (``clv``,
        ``recent spend`` or ``none``), ``value_at_risk``; ties by customer.
    """
    out = churn[["customer_key", "churn_probability"]].copy()
    out["value"], out["value_source"] = np.nan, "none"
    if recent_spend is not None:
        s = out["customer_key"].map(recent_spend.set_index("customer_key")["spend"])
        out.loc[s.notna(), "value_source"] = "recent spend"
        out["value"] = s
    if clv_table is not None:
        v = out["customer_key"].map(clv_table.set_index("customer_key")["clv"])
        has = v.notna()
        out.loc[has, "value"] = v[has]
        out.loc[has, "value_source"] = "clv"
    out["value"] = out["value"].fillna(0.0).clip(lower=0)
    out["value_at_risk"] = out["churn_probability"] * out["value"]
    out = out.sort_values("customer_key", kind="stable").reset_index(drop=True)
    out = out.iloc[_order(out["value_at_risk"].to_numpy())].reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


# ------------------------------------------------------------------------------------ plots
def _style(i: int) -> dict[str, str]:
    """Colour (and, past the palette's length, line style) of the i-th series."""
    from ..plots import PALETTE

    return {"color": PALETTE[i % len(PALETTE)], "ls": ("-", "--", ":")[i // len(PALETTE) % 3]}


def _new_ax(ax: Axes | None) -> Axes:
    import matplotlib.pyplot as plt

    return ax if ax is not None else plt.subplots(figsize=(5.5, 4))[1]


def plot_roc(y: Any, probabilities: Mapping[str, Any], ax: Axes | None = None) -> Axes:
    """ROC curves of each model on one test cutoff, AUC in the legend."""
    from sklearn.metrics import roc_curve

    from ..plots import NEUTRAL

    ax = _new_ax(ax)
    for i, (name, p) in enumerate(probabilities.items()):
        fpr, tpr, _ = roc_curve(y, p)
        auc = roc_auc_score(y, p)
        ax.plot(fpr, tpr, label=tr("{name} (AUC {auc:.2f})", name=name, auc=auc), **_style(i))
    ax.plot([0, 1], [0, 1], color=NEUTRAL, lw=0.8, ls=":")
    ax.set_xlabel(tr("false positive rate (stayers flagged)"))
    ax.set_ylabel(tr("true positive rate (churners caught)"))
    ax.legend(frameon=False, loc="lower right", fontsize=8)
    return ax


def plot_calibration(
    y: Any, probabilities: Mapping[str, Any], bins: int = 10, ax: Axes | None = None
) -> Axes:
    """Reliability curves: mean predicted vs observed churn per decile of the prediction."""
    from ..plots import NEUTRAL

    ax = _new_ax(ax)
    for i, (name, p) in enumerate(probabilities.items()):
        t = calibration_table(y, p, bins)
        ax.plot(t["predicted"], t["observed"], marker="o", label=name, **_style(i))
    ax.plot([0, 1], [0, 1], color=NEUTRAL, lw=0.8, ls=":")
    ax.set_xlabel(tr("predicted churn probability"))
    ax.set_ylabel(tr("observed churn rate"))
    ax.legend(frameon=False, loc="upper left", fontsize=8)
    return ax


def plot_gains(y: Any, probabilities: Mapping[str, Any], ax: Axes | None = None) -> Axes:
    """Cumulative gains: share of churners caught by contacting the top share of customers."""
    from ..plots import NEUTRAL

    ax = _new_ax(ax)
    for i, (name, p) in enumerate(probabilities.items()):
        g = gains_curve(y, p)
        ax.plot(g["contacted"], g["caught"], label=name, **_style(i))
    ax.plot([0, 1], [0, 1], color=NEUTRAL, lw=0.8, ls=":", label=tr("random"))
    ax.axvline(0.1, color=NEUTRAL, lw=0.6, ls="--")
    ax.set_xlabel(tr("share of customers contacted (highest risk first)"))
    ax.set_ylabel(tr("share of churners caught"))
    ax.legend(frameon=False, loc="lower right", fontsize=8)
    return ax


def plot_importance(table: pd.DataFrame, top: int = 12, ax: Axes | None = None) -> Axes:
    """Permutation importance (drop in ROC-AUC), most important at the top."""
    ax = _new_ax(ax)
    t = table.head(top).iloc[::-1]
    ax.barh(t["description"], t["importance"], xerr=t["std"], color=_style(0)["color"])
    ax.set_xlabel(tr("drop in ROC-AUC when shuffled"))
    return ax


def plot_survival(curves: pd.DataFrame, ax: Axes | None = None, bands: bool = True) -> Axes:
    """Kaplan-Meier curves: share of customers still active by days since the first purchase.

    Groups of fewer than ``privacy.min_group_size`` customers (``at_risk`` at day 0) are not drawn.
    """
    from ..privacy import min_group_size

    if "at_risk" in curves:
        size = curves.groupby("group")["at_risk"].transform("max")
        curves = curves.loc[size >= min_group_size()]
    ax = _new_ax(ax)
    for i, (name, g) in enumerate(curves.groupby("group", sort=True)):
        style = _style(i)
        ax.step(g["days"], g["survival"], where="post", label=str(name), **style)
        if bands:
            ax.fill_between(
                g["days"],
                g["lower"],
                g["upper"],
                step="post",
                color=style["color"],
                alpha=0.15,
                lw=0,
            )
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(tr("days since the first purchase"))
    ax.set_ylabel(tr("share still active"))
    if ax.get_legend_handles_labels()[0]:  # every group may be too small to draw
        ax.legend(frameon=False, fontsize=8)
    return ax
