"""Customer profile: attributes, buying behaviour, revenue concentration, cohorts and tags.

Functions take the prepared transactions (``tx``) and the unified customer view (``customers``)
as data frames and return data frames, series or plain numbers. A *purchase* is a kept line that
is not a return; a *buyer* is a customer with at least one purchase. Plot helpers at the end take
``ax=None`` and return the Axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import StrMethodFormatter

from ..i18n import tr

#: Age bands: lower bound inclusive, upper bound exclusive.
AGE_BINS = [-np.inf, 25, 35, 45, 55, 65, np.inf]
AGE_LABELS = ["<25", "25-34", "35-44", "45-54", "55-64", "65+"]
UNKNOWN = "unknown"

#: Tag column -> label used in the ``tags`` string and in the report.
TAGS: dict[str, str] = {
    "new": "new",
    "loyal": "loyal",
    "lapsing": "lapsing",
    "high_value": "high value",
    "returns_heavy": "returns-heavy",
    "multi_channel": "multi-channel",
}


def purchases(tx: pd.DataFrame) -> pd.DataFrame:
    """The purchase lines (returns and cancellations left out)."""
    return tx.loc[~tx["is_return"].astype(bool)]


def buyers(customers: pd.DataFrame) -> pd.DataFrame:
    """Customers of the unified view with at least one purchase, sorted by ``customer_key``."""
    out = customers.loc[customers["orders"].fillna(0) > 0]
    return out.sort_values("customer_key", ignore_index=True)


# ------------------------------------------------------------------------------ attributes
def age_band(age: pd.Series) -> pd.Series:
    """Age bands ``<25, 25-34, 35-44, 45-54, 55-64, 65+``; missing ages are ``unknown``."""
    bands = pd.cut(pd.to_numeric(age, errors="coerce"), AGE_BINS, right=False, labels=AGE_LABELS)
    return bands.astype(object).where(bands.notna(), UNKNOWN).astype(str)


def main_channel(tx: pd.DataFrame) -> pd.Series:
    """Each buyer's main channel: the one with most purchase orders (ties: alphabetical first).

    Returns
    -------
    pandas.Series
        Channel per ``customer_key`` (only buyers with a recorded channel).

    """
    p = purchases(tx).dropna(subset=["channel"])
    n = p.groupby(["customer_key", "channel"])["order_id"].nunique().rename("n").reset_index()
    n = n.sort_values(["customer_key", "n", "channel"], ascending=[True, False, True])
    return n.drop_duplicates("customer_key").set_index("customer_key")["channel"]


def attribute_distribution(values: pd.Series, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Customers and share per value of one attribute; missing values count as ``unknown``.

    Parameters
    ----------
    values
        One value per customer.
    order
        Display order of the values (e.g. age bands); None = most frequent first, ties by name.
        ``unknown`` always comes last.

    Returns
    -------
    pandas.DataFrame
        Columns ``value``, ``customers``, ``share`` (of all customers given, 0-1).

    """
    v = values.astype(object).where(values.notna(), UNKNOWN).astype(str)
    counts = v.value_counts().rename_axis("value").rename("customers").reset_index()
    if order is not None:
        rank = {name: i for i, name in enumerate(order)}
        counts["_o"] = counts["value"].map(rank).fillna(len(rank))
        counts = counts.sort_values(["_o", "value"]).drop(columns="_o")
    else:
        counts["_u"] = counts["value"] == UNKNOWN
        counts = counts.sort_values(["_u", "customers", "value"], ascending=[True, False, True])
        counts = counts.drop(columns="_u")
    counts["share"] = counts["customers"] / len(v) if len(v) else np.nan
    return counts.reset_index(drop=True)


def attribute_distributions(customers: pd.DataFrame, tx: pd.DataFrame) -> pd.DataFrame:
    """Distributions of the attributes present among buyers: age band, gender, region, channel.

    Parameters
    ----------
    customers
        The unified customer view (attributes ``age``, ``gender``, ``region`` where recorded).
    tx
        Prepared transactions (``channel`` where recorded: each buyer's main channel).

    Returns
    -------
    pandas.DataFrame
        Long form: ``attribute``, ``value``, ``customers``, ``share`` (of buyers). Attributes
        absent from the data, or missing for every buyer, are left out.

    """
    b = buyers(customers).set_index("customer_key")
    cols: dict[str, tuple[pd.Series, Sequence[str] | None]] = {}
    if "age" in b and b["age"].notna().any():
        cols["age band"] = (age_band(b["age"]), AGE_LABELS)
    for name in ("gender", "region"):
        if name in b and b[name].notna().any():
            cols[name] = (b[name], None)
    if "channel" in tx and tx["channel"].notna().any():
        cols["main channel"] = (main_channel(tx).reindex(b.index), None)
    frames = [
        attribute_distribution(s, order).assign(attribute=name) for name, (s, order) in cols.items()
    ]
    if not frames:
        return pd.DataFrame(columns=["attribute", "value", "customers", "share"])
    out = pd.concat(frames, ignore_index=True)
    return out[["attribute", "value", "customers", "share"]]


def most_common(distributions: pd.DataFrame) -> pd.DataFrame:
    """The most common known value of each attribute (ties: the first in display order)."""
    known = distributions.loc[distributions["value"] != UNKNOWN]
    top = known.sort_values("share", ascending=False, kind="stable")
    return (
        top.drop_duplicates("attribute")
        .set_index("attribute")
        .reindex(list(dict.fromkeys(known["attribute"])))
    )


def absent_attributes(customers: pd.DataFrame, tx: pd.DataFrame) -> list[str]:
    """The profile attributes this data does not record (so the chapter can say so)."""
    present = {
        "age": "age" in customers and customers["age"].notna().any(),
        "gender": "gender" in customers and customers["gender"].notna().any(),
        "region": "region" in customers and customers["region"].notna().any(),
        "channel": "channel" in tx and tx["channel"].notna().any(),
    }
    return [name for name, ok in present.items() if not ok]


# ------------------------------------------------------------------------- buying behaviour
def orders_per_customer(tx: pd.DataFrame) -> pd.Series:
    """Distinct purchase orders per buyer, indexed by ``customer_key`` (sorted)."""
    return purchases(tx).groupby("customer_key")["order_id"].nunique().rename("orders")


def count_distribution(counts: pd.Series, cap: int = 10) -> pd.Series:
    """How many customers have 1, 2, ... counts, with ``cap`` and above pooled as ``"cap+"``.

    Returns
    -------
    pandas.Series
        Customers per label ``"1"``, ``"2"``, ..., ``f"{cap}+"`` (every label, zeros kept).

    """
    c = counts.astype(int).clip(upper=cap)
    labels = [str(i) for i in range(1, cap)] + [f"{cap}+"]
    out = c.value_counts().reindex(range(1, cap + 1), fill_value=0)
    out.index = labels
    return out.rename("customers")


def days_between_purchases(tx: pd.DataFrame) -> pd.Series:
    """Days between consecutive distinct purchase days of each customer.

    Several orders on the same day count as one purchase day, so a gap is at least one day.
    Customers with one purchase day contribute no gap.

    Returns
    -------
    pandas.Series
        One gap per row (integer days), ``customer_key`` as index, in customer then date order.

    """
    p = purchases(tx)
    days = pd.DataFrame(
        {"customer_key": p["customer_key"], "day": pd.to_datetime(p["order_date"])}
    ).drop_duplicates()
    days = days.sort_values(["customer_key", "day"])
    gap = days.groupby("customer_key")["day"].diff().dt.days
    out = pd.Series(gap.to_numpy(), index=days["customer_key"].to_numpy(), name="days")
    return out.dropna().astype(int).rename_axis("customer_key")


def order_values(tx: pd.DataFrame) -> pd.Series:
    """Value of each purchase order (sum of its purchase lines), indexed by ``order_id``."""
    return purchases(tx).groupby("order_id")["amount"].sum().rename("order_value")


def average_order_value(tx: pd.DataFrame) -> float | None:
    """Purchase value per order: gross purchases / distinct purchase orders; None without orders."""
    values = order_values(tx)
    return float(values.mean()) if len(values) else None


def buying_summary(tx: pd.DataFrame) -> pd.DataFrame:
    """Median, mean and quartiles of orders per customer, days between purchases, order value."""
    series = {
        "orders per customer": orders_per_customer(tx),
        "days between purchases": days_between_purchases(tx),
        "order value": order_values(tx),
    }
    rows = [
        {
            "measure": name,
            "n": int(s.count()),
            "mean": s.mean(),
            "25 %": s.quantile(0.25),
            "median": s.median(),
            "75 %": s.quantile(0.75),
            "90 %": s.quantile(0.90),
        }
        for name, s in series.items()
    ]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------- revenue concentration
def lorenz_curve(revenue: pd.Series) -> pd.DataFrame:
    """The Lorenz curve of revenue over customers (negative revenue counted as 0).

    Returns
    -------
    pandas.DataFrame
        ``customer_share`` and ``revenue_share`` (both 0-1) from (0, 0) to (1, 1), customers
        ordered from the smallest to the largest revenue.

    """
    r = np.sort(pd.to_numeric(revenue, errors="coerce").dropna().clip(lower=0).to_numpy())
    n, total = len(r), float(r.sum())
    if n == 0:
        return pd.DataFrame({"customer_share": [0.0, 1.0], "revenue_share": [0.0, 1.0]})
    cum = np.concatenate([[0.0], np.cumsum(r)])
    # Without any positive revenue there is nothing to concentrate: the line of equality.
    rev_share = cum / total if total > 0 else np.linspace(0, 1, n + 1)
    return pd.DataFrame({"customer_share": np.arange(n + 1) / n, "revenue_share": rev_share})


def revenue_concentration(revenue: pd.Series, shares: Sequence[float]) -> dict[str, float]:
    """Share of revenue from the top ``x`` of customers, for each ``x`` in ``shares``.

    The share is read off the Lorenz curve, linear between customers: when ``x * n`` is a whole
    number it is exactly the revenue of the top ``x * n`` customers over the total.

    Parameters
    ----------
    revenue
        Revenue per customer (negative values count as 0).
    shares
        Shares of customers (0-1), e.g. ``[0.01, 0.1, 0.2]``.

    Returns
    -------
    dict
        ``{"1%": 0.23, "10%": ...}``: label (percent of customers) -> share of revenue (0-1).

    """
    lc = lorenz_curve(revenue)
    out = {}
    for x in shares:
        below = np.interp(1 - x, lc["customer_share"], lc["revenue_share"])
        out[f"{100 * x:g}%"] = float(1 - below)
    return out


def concentration_table(revenue: pd.Series, shares: Sequence[float]) -> pd.DataFrame:
    """The revenue concentration as a table: top share of customers, how many, share of revenue."""
    n = int(pd.to_numeric(revenue, errors="coerce").notna().sum())
    conc = revenue_concentration(revenue, shares)
    return pd.DataFrame(
        {
            "top customers": [f"{100 * x:g} %" for x in shares],
            "customers": [x * n for x in shares],
            "% of net revenue": [100 * v for v in conc.values()],
        }
    )


def gini(revenue: pd.Series) -> float:
    """Gini coefficient of revenue over customers: 1 - 2 x area under the Lorenz curve.

    0 = everyone spends the same; close to 1 = one customer brings all the revenue. Equals
    ``2 * sum(i * r_i) / (n * sum(r)) - (n + 1) / n`` with ``r`` sorted ascending, ``i = 1..n``.
    """
    lc = lorenz_curve(revenue)
    x, y = lc["customer_share"].to_numpy(), lc["revenue_share"].to_numpy()
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))
    return 1 - 2 * area


# ---------------------------------------------------------------------------------- cohorts
def _month_index(dates: pd.Series) -> pd.Series:
    d = pd.to_datetime(dates)
    return d.dt.year * 12 + d.dt.month - 1


def _month_label(index: pd.Series | pd.Index) -> list[str]:
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in index]


def cohort_membership(tx: pd.DataFrame) -> pd.DataFrame:
    """Each buyer's acquisition cohort: the calendar month of their first purchase.

    Returns
    -------
    pandas.DataFrame
        ``customer_key`` and ``cohort`` (months since year 0, an integer), sorted by key.

    """
    p = purchases(tx)
    first = pd.DataFrame({"customer_key": p["customer_key"], "m": _month_index(p["order_date"])})
    return first.groupby("customer_key", as_index=False)["m"].min().rename(columns={"m": "cohort"})


def cohort_retention(tx: pd.DataFrame, months: int) -> pd.DataFrame:
    """Retention matrix: share of each monthly acquisition cohort buying N months later.

    A customer belongs to the cohort of the calendar month of their first purchase and is
    *active* in month N when they made a purchase (not a return) in the N-th calendar month after
    it. Month 0 is 1 by definition. Months after the last month in the data are not observed
    and left empty (NaN).

    Parameters
    ----------
    tx
        Prepared transactions (``customer_key``, ``order_date``, ``is_return``).
    months
        Last month after acquisition shown (columns ``0..months``).

    Returns
    -------
    pandas.DataFrame
        Index ``cohort`` (``"YYYY-MM"``, ascending); column ``customers`` (cohort size) then
        integer columns ``0..months`` with shares 0-1.

    """
    p = purchases(tx)
    member = cohort_membership(tx)
    active = pd.DataFrame(
        {"customer_key": p["customer_key"], "m": _month_index(p["order_date"])}
    ).drop_duplicates()
    active = active.merge(member, on="customer_key")
    active["k"] = active["m"] - active["cohort"]
    counts = (
        active.loc[active["k"] <= months]
        .groupby(["cohort", "k"])["customer_key"]
        .nunique()
        .unstack("k")
        .reindex(columns=range(months + 1))
    )
    size = member.groupby("cohort").size()
    counts = counts.reindex(size.index).fillna(0)
    share = counts.div(size, axis=0)
    last = int(_month_index(tx["order_date"]).max()) if len(tx) else 0
    observed = (size.index.to_numpy()[:, None] + np.arange(months + 1)[None, :]) <= last
    share = share.where(observed)
    share.insert(0, "customers", size)
    share.index = pd.Index(_month_label(share.index), name="cohort")
    share.columns.name = None
    return share


def mean_retention(retention: pd.DataFrame, month: int) -> float | None:
    """Retention ``month`` months after acquisition, over the cohorts in which it is observed.

    The mean is weighted by cohort size, i.e. active customers / customers over those cohorts.
    None when no cohort has reached that month.
    """
    if month not in retention.columns:
        return None
    seen = retention[month].notna()
    size = retention.loc[seen, "customers"]
    if size.sum() == 0:
        return None
    return float((retention.loc[seen, month] * size).sum() / size.sum())


def cohort_revenue(tx: pd.DataFrame) -> pd.DataFrame:
    """Customers, net revenue (purchases minus returns) and revenue per customer per cohort.

    Returns of customers who never bought (in the data) belong to no cohort and are left out.

    Returns
    -------
    pandas.DataFrame
        Index ``cohort`` (``"YYYY-MM"``); columns ``customers``, ``revenue``,
        ``revenue_per_customer``.

    """
    member = cohort_membership(tx)
    rev = tx.groupby("customer_key")["amount"].sum()
    member["revenue"] = member["customer_key"].map(rev)
    g = member.groupby("cohort")
    out = pd.DataFrame({"customers": g.size(), "revenue": g["revenue"].sum()})
    out["revenue_per_customer"] = out["revenue"] / out["customers"]
    out.index = pd.Index(_month_label(out.index), name="cohort")
    return out


# ------------------------------------------------------------------------------------- tags
def tag_rules(
    *,
    new_days: int,
    loyal_min_orders: int,
    lapsing_days: int,
    high_value_share: float,
    returns_heavy_share: float,
    multi_channel_min: int,
) -> dict[str, str]:
    """The rule of each tag in words, with its thresholds (for the report's tag table)."""
    return {
        "new": tr("first purchase at most {days} days before the reference date", days=new_days),
        "loyal": tr("at least {n} orders", n=loyal_min_orders),
        "lapsing": tr("at least 2 orders, but none in the last {days} days", days=lapsing_days),
        "high_value": tr(
            "net revenue ranks in the top {pct:g} % of buyers", pct=100 * high_value_share
        ),
        "returns_heavy": tr(
            "returns worth at least {pct:g} % of purchases", pct=100 * returns_heavy_share
        ),
        "multi_channel": tr("purchases through at least {n} channels", n=multi_channel_min),
    }


def customer_tags(
    customers: pd.DataFrame,
    tx: pd.DataFrame,
    *,
    new_days: int,
    loyal_min_orders: int,
    lapsing_days: int,
    high_value_share: float,
    returns_heavy_share: float,
    multi_channel_min: int,
) -> pd.DataFrame:
    """Tag each buyer by documented rules (a customer can carry several tags or none).

    Rules, with days measured to the reference date (the day after the last transaction), as in
    the unified view's ``tenure_days`` and ``recency_days``:

    - ``new``: first purchase at most ``new_days`` days ago (``tenure_days <= new_days``).
    - ``loyal``: ``orders >= loyal_min_orders``.
    - ``lapsing``: ``orders >= 2`` and no purchase in the last ``lapsing_days`` days
      (``recency_days > lapsing_days``).
    - ``high_value``: net ``revenue > 0`` and its rank among buyers (1 = highest, tied values share
      the best rank) is at most ``high_value_share * buyers``.
    - ``returns_heavy``: ``returns_value > 0`` and ``returns_value >= returns_heavy_share *
      gross_revenue``.
    - ``multi_channel``: purchases through at least ``multi_channel_min`` distinct channels; the
      column is absent when the transactions record no channel.

    Parameters
    ----------
    customers
        The unified customer view: ``customer_key``, ``orders``, ``tenure_days``,
        ``recency_days``, ``revenue``, ``gross_revenue``, ``returns_value``.
    tx
        Prepared transactions (``channel``, when recorded).
    new_days, loyal_min_orders, lapsing_days, high_value_share, returns_heavy_share, multi_channel_min
        The thresholds (``chapters.profile.tag_*`` in the params).

    Returns
    -------
    pandas.DataFrame
        One row per buyer, sorted by ``customer_key``: a boolean column per tag and ``tags``, the
        labels of the customer's tags joined by ``", "`` (empty when none).

    """
    b = buyers(customers)
    orders = b["orders"].fillna(0)
    revenue = b["revenue"].fillna(0)
    rank = revenue.rank(method="min", ascending=False)
    out = pd.DataFrame(
        {
            "customer_key": b["customer_key"],
            "new": b["tenure_days"] <= new_days,
            "loyal": orders >= loyal_min_orders,
            "lapsing": (orders >= 2) & (b["recency_days"] > lapsing_days),
            # A small tolerance so that e.g. 0.29 * 100 customers is 29, not 28.999...
            "high_value": (revenue > 0) & (rank <= high_value_share * len(b) + 1e-9),
            "returns_heavy": (b["returns_value"] > 0)
            & (b["returns_value"] >= returns_heavy_share * b["gross_revenue"]),
        }
    )
    if "channel" in tx and tx["channel"].notna().any():
        p = purchases(tx)
        channels = p.groupby("customer_key")["channel"].nunique()
        n = out["customer_key"].map(channels).fillna(0)
        out["multi_channel"] = n >= multi_channel_min
    tag_cols = [c for c in TAGS if c in out]
    out[tag_cols] = out[tag_cols].fillna(False).astype(bool)
    text = pd.Series("", index=out.index)
    for col in tag_cols:  # over the six tags, not over customers
        text = text + np.where(out[col], TAGS[col] + ", ", "")
    out["tags"] = text.str.removesuffix(", ")
    return out.reset_index(drop=True)


def tag_summary(tags: pd.DataFrame, rules: dict[str, str]) -> pd.DataFrame:
    """Customers and share of buyers per tag, with the tag's rule."""
    cols = [c for c in TAGS if c in tags]
    n = len(tags)
    return pd.DataFrame(
        {
            "tag": [TAGS[c] for c in cols],
            "rule": [rules[c] for c in cols],
            "customers": [int(tags[c].sum()) for c in cols],
            "% of buyers": [100 * tags[c].mean() if n else np.nan for c in cols],
        }
    )


def tag_counts(tags: pd.DataFrame) -> dict[str, int]:
    """Customers per tag, ``{tag column: n}`` (only tags that could be computed)."""
    return {c: int(tags[c].sum()) for c in TAGS if c in tags}


# ------------------------------------------------------------------------------------ plots
def _ax(ax: Axes | None, figsize: tuple[float, float] | None = None) -> Axes:
    import matplotlib.pyplot as plt

    return ax if ax is not None else plt.subplots(figsize=figsize)[1]


def plot_attributes(distributions: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Share of buyers per attribute value, one colour per attribute, as horizontal bars.

    Values held by fewer than ``privacy.min_group_size`` buyers are pooled per attribute
    (:func:`crm_helpers.privacy.merge_small`).
    """
    from ..plots import PALETTE
    from ..privacy import merge_small

    d = pd.concat(
        [
            merge_small(g, "value", "customers", sums=["share"]).assign(attribute=a)
            for a, g in distributions.groupby("attribute", sort=False)
        ],
        ignore_index=True,
    )
    ax = _ax(ax, (7.5, max(2.5, 0.22 * len(d) + 1)))
    attrs = list(dict.fromkeys(d["attribute"]))
    colour = d["attribute"].map({a: PALETTE[i % len(PALETTE)] for i, a in enumerate(attrs)})
    y = np.arange(len(d))[::-1]
    ax.barh(y, 100 * d["share"], color=colour.tolist())
    ax.set_yticks(y, [f"{tr(a)}: {v}" for a, v in zip(d["attribute"], d["value"], strict=True)])
    ax.set_xlabel(tr("% of buyers"))
    ax.grid(axis="y", visible=False)
    return ax


def plot_counts(
    counts: pd.Series, ax: Axes | None = None, *, title: str = "", xlabel: str = ""
) -> Axes:
    """Vertical bars of customers per count label (e.g. orders per customer)."""
    from ..plots import PALETTE

    ax = _ax(ax)
    ax.bar(counts.index.astype(str), counts.to_numpy(), color=PALETTE[0])
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(tr("customers"))
    return ax


def plot_histogram(
    values: pd.Series,
    ax: Axes | None = None,
    *,
    title: str = "",
    xlabel: str = "",
    clip_quantile: float = 0.99,
    bins: int = 40,
) -> Axes:
    """Histogram with the median marked; values above ``clip_quantile`` are pooled in the last bin."""
    from ..plots import PALETTE

    ax = _ax(ax)
    v = pd.to_numeric(values, errors="coerce").dropna()
    if len(v):
        top = float(v.quantile(clip_quantile))
        ax.hist(v.clip(upper=top), bins=bins, color=PALETTE[0])
        med = float(v.median())
        ax.axvline(med, color=PALETTE[3], lw=1.5, label=tr("median {med:,.0f}", med=med))
        ax.legend(frameon=False)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(tr("count"))
    return ax


def plot_lorenz(lorenz: pd.DataFrame, ax: Axes | None = None, *, gini: float | None = None) -> Axes:
    """The Lorenz curve of revenue against the line of equal spending."""
    from ..plots import NEUTRAL, PALETTE

    ax = _ax(ax, (7.5, 3.4))
    ax.plot([0, 100], [0, 100], color=NEUTRAL, lw=1, ls="--", label=tr("equal spending"))
    label = tr("customers") if gini is None else tr("customers (Gini {gini:.2f})", gini=gini)
    x, y = 100 * lorenz["customer_share"], 100 * lorenz["revenue_share"]
    ax.plot(x, y, color=PALETTE[0], lw=2, label=label)
    ax.fill_between(x, y, x, color=PALETTE[0], alpha=0.12)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel(tr("% of customers (smallest revenue first)"))
    ax.set_ylabel(tr("% of revenue"))
    ax.legend(frameon=False, loc="upper left")
    return ax


def plot_retention(
    retention: pd.DataFrame, ax: Axes | None = None, *, months: int | None = None
) -> Axes:
    """Heatmap of a retention matrix (rows = cohorts with their size, columns = months after).

    The colour scale runs from 0 to the largest retention after month 0, so month 0 (always
    100 %) does not wash out the rest. A cohort of fewer than ``privacy.min_group_size`` customers
    is not shown; the cohort the revenue chart hides beside it keeps its shares but not its size
    (``n ≥ k``), which would give the small one away.
    """
    import seaborn as sns

    from ..plots import SEQUENTIAL
    from ..privacy import hidden_groups, min_group_size

    k = min_group_size()
    cols = [c for c in retention.columns if c != "customers"]
    if months is not None:
        cols = [c for c in cols if c <= months]
    data = 100 * retention[cols].astype(float)
    small, complement = hidden_groups(retention["customers"], k, labels=retention.index)
    data.loc[small, :] = np.nan  # a cohort of fewer than k customers is not shown (privacy)
    data.index = [
        f"{c} (n < {k})" if s else f"{c} (n ≥ {k})" if h else f"{c} (n={n:,})"
        for c, n, s, h in zip(
            retention.index, retention["customers"], small, complement, strict=True
        )
    ]
    later = data.drop(columns=[0], errors="ignore")
    vmax = float(np.nanmax(later.to_numpy())) if later.notna().any().any() else 100.0
    ax = _ax(ax, (7.5, min(8.0, 1.3 + 0.2 * len(data))))
    sns.heatmap(
        data,
        ax=ax,
        annot=True,
        fmt=".0f",
        annot_kws={"fontsize": 6.5},
        cmap=SEQUENTIAL,
        vmin=0,
        vmax=max(vmax, 1.0),
        cbar_kws={"label": "% of cohort buying"},
        linewidths=0.3,
        linecolor="white",
    )
    ax.grid(False)
    ax.set_xlabel(tr("months after the first purchase"))
    ax.set_ylabel(tr("cohort (month of first purchase)"))
    ax.tick_params(axis="y", labelsize=7)
    return ax


def plot_cohort_revenue(revenue: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Net revenue per cohort (bars) with revenue per customer (line, right axis).

    Cohorts of fewer than ``privacy.min_group_size`` customers are left blank, and so are those
    :func:`crm_helpers.privacy.hidden_groups` hides beside them (the revenue total would otherwise
    give the small ones away).
    """
    from ..plots import PALETTE
    from ..privacy import hidden_groups

    revenue = revenue.copy()
    small, complement = hidden_groups(revenue["customers"], labels=revenue.index)
    revenue.loc[small | complement, ["revenue", "revenue_per_customer"]] = np.nan
    ax = _ax(ax)
    x = np.arange(len(revenue))
    ax.bar(x, revenue["revenue"], color=PALETTE[0], label=tr("net revenue"))
    ax.set_ylabel(tr("net revenue"))
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_xticks(x, revenue.index, rotation=90, fontsize=7)
    ax.set_xlabel(tr("cohort (month of first purchase)"))
    right = ax.twinx()
    right.plot(x, revenue["revenue_per_customer"], color=PALETTE[1], marker="o", ms=3)
    right.set_ylabel(tr("per customer"), color=PALETTE[1])
    right.grid(False)
    right.set_ylim(bottom=0)
    right.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    return ax
