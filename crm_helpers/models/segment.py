"""Segmentation: named RFM segments, clusters, stability, cluster names and value tiers.

k-means with k chosen by silhouette, checked against a Gaussian mixture with the same k.

Functions take data frames or arrays and return data frames, arrays or fitted objects; plotting
helpers at the end take ``ax=None`` and return the Axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler

from ..i18n import tr

RFM_COLUMNS = ("recency_days", "frequency", "monetary")


# ----------------------------------------------------------------------------------- RFM map
def rfm_segments(rfm: pd.DataFrame, rules: Sequence[Any], other: str = "Other") -> pd.Series:
    """Name each customer's RFM segment: the first rule whose ranges hold wins.

    Parameters
    ----------
    rfm
        Columns ``r_score``, ``f_score``, ``m_score`` (1-5).
    rules
        Objects or dicts with ``name``, ``r`` (inclusive score range) and ``fm`` (inclusive range
        of the mean of the F and M scores).
    other
        Name for customers no rule matches.

    Returns
    -------
    pandas.Series
        Segment names, index aligned with ``rfm``.
    """
    r = rfm["r_score"].to_numpy()
    fm = (rfm["f_score"].to_numpy() + rfm["m_score"].to_numpy()) / 2
    conds, names = [], []
    for rule in rules:
        get = rule.get if isinstance(rule, dict) else lambda k, _r=rule: getattr(_r, k)
        (r_lo, r_hi), (fm_lo, fm_hi) = get("r"), get("fm")
        conds.append((r >= r_lo) & (r <= r_hi) & (fm >= fm_lo) & (fm <= fm_hi))
        names.append(get("name"))
    return pd.Series(np.select(conds, names, default=other), index=rfm.index, name="segment")


def group_summary(frame: pd.DataFrame, by: str, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Customers, share, revenue share and mean recency / frequency / monetary per group."""
    total = frame["monetary"].clip(lower=0).sum()
    g = frame.groupby(by, observed=True)
    out = pd.DataFrame(
        {
            "customers": g.size(),
            "share": g.size() / len(frame),
            "revenue_share": g["monetary"].apply(lambda m: m.clip(lower=0).sum()) / total
            if total
            else 0.0,
            "mean_recency_days": g["recency_days"].mean(),
            "mean_frequency": g["frequency"].mean(),
            "mean_monetary": g["monetary"].mean(),
        }
    )
    if order is not None:
        out = out.reindex([o for o in order if o in out.index])
    else:
        out = out.sort_values("revenue_share", ascending=False)
    return out


# -------------------------------------------------------------------------------- clustering
def clustering_matrix(rfm: pd.DataFrame, extra: pd.DataFrame | None = None) -> np.ndarray:
    """log1p of recency, frequency and (non-negative) monetary, plus extras, standardised."""
    cols = {
        "recency": np.log1p(rfm["recency_days"].clip(lower=0)),
        "frequency": np.log1p(rfm["frequency"].clip(lower=0)),
        "monetary": np.log1p(rfm["monetary"].clip(lower=0)),
    }
    frame = pd.DataFrame(cols)
    if extra is not None and extra.shape[1]:
        frame = pd.concat([frame, extra.reset_index(drop=True).fillna(extra.median())], axis=1)
    return StandardScaler().fit_transform(frame.to_numpy(dtype=float))


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False)) if n > size else np.arange(n)


def choose_k(
    x: np.ndarray, k_min: int, k_max: int, *, seed: int, sample: int = 5000
) -> pd.DataFrame:
    """Silhouette (on a seeded sample) and inertia of k-means for each k in ``k_min..k_max``."""
    n = len(x)
    k_max = min(k_max, n - 1)
    if k_max < k_min:
        raise ValueError(f"n_samples={n} is too few for k_min={k_min} clusters")
    idx = _sample(n, sample, seed)
    rows = []
    for k in range(k_min, k_max + 1):
        km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)
        rows.append(
            {
                "k": k,
                "silhouette": float(silhouette_score(x[idx], km.labels_[idx])),
                "inertia": float(km.inertia_),
            }
        )
    return pd.DataFrame(rows)


@dataclass
class ClusterResult:
    """A fitted clustering: labels per customer and how well they separate."""

    method: str
    k: int
    labels: np.ndarray
    silhouette: float
    model: Any


def fit_clusters(x: np.ndarray, k: int, *, seed: int, sample: int = 5000) -> list[ClusterResult]:
    """k-means and a Gaussian mixture with the same k, each with its silhouette (same sample)."""
    idx = _sample(len(x), sample, seed)
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)
    gm = GaussianMixture(n_components=k, covariance_type="full", n_init=3, random_state=seed).fit(x)
    gm_labels = gm.predict(x)
    out = [
        ClusterResult(
            "k-means", k, km.labels_, float(silhouette_score(x[idx], km.labels_[idx])), km
        )
    ]
    if len(np.unique(gm_labels[idx])) > 1:
        out.append(
            ClusterResult(
                "Gaussian mixture",
                k,
                gm_labels,
                float(silhouette_score(x[idx], gm_labels[idx])),
                gm,
            )
        )
    return out


def bootstrap_stability(x: np.ndarray, k: int, *, rounds: int, seed: int) -> np.ndarray:
    """ARI between the full-data k-means labels and k-means refitted on bootstrap resamples."""
    base = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rounds):
        idx = rng.integers(0, len(x), len(x))
        km = KMeans(n_clusters=k, n_init=3, random_state=int(rng.integers(1 << 31))).fit(x[idx])
        out.append(adjusted_rand_score(base.labels_, km.predict(x)))
    return np.asarray(out)


def name_clusters(profile: pd.DataFrame) -> dict[Any, str]:
    """Readable names from cluster profiles: value level by mean monetary, activity by recency.

    Parameters
    ----------
    profile
        One row per cluster label with ``mean_monetary``, ``mean_frequency`` and
        ``mean_recency_days``.

    Returns
    -------
    dict
        Cluster label -> unique name such as ``"High value, active"``.
    """
    n = len(profile)
    value_rank = profile["mean_monetary"].rank(method="first", ascending=False)
    recency_rank = profile["mean_recency_days"].rank(method="first")
    levels = ["Top value", "High value", "Mid value", "Low value", "Lowest value"]
    names = {}
    for label in profile.index:
        v = int(value_rank[label]) - 1
        value = levels[min(v * 5 // n, 4)] if n > 1 else "All"
        recent = recency_rank[label] <= (n + 1) / 2
        activity = "active" if recent else "lapsing"
        if profile.loc[label, "mean_frequency"] < 1.5:
            activity = "one-time" if not recent else "new / one-time"
        names[label] = f"{value}, {activity}"
    seen: dict[str, int] = {}
    for label in sorted(names, key=lambda lab: value_rank[lab]):
        nm = names[label]
        seen[nm] = seen.get(nm, 0) + 1
        if seen[nm] > 1:
            names[label] = f"{nm} ({seen[nm]})"
    return names


def value_tiers(monetary: pd.Series, cuts: Sequence[float]) -> pd.Series:
    """Tiers by the z-score of log1p(monetary): ``len(cuts) + 1`` ordered tiers, lowest first."""
    logm = np.log1p(monetary.clip(lower=0))
    z = (logm - logm.mean()) / (logm.std(ddof=0) or 1.0)
    labels = tier_labels(len(cuts))
    codes = np.searchsorted(np.asarray(cuts, dtype=float), z.to_numpy(), side="right")
    return pd.Series(
        pd.Categorical.from_codes(codes, labels, ordered=True), index=monetary.index, name="tier"
    )


def tier_labels(n_cuts: int) -> list[str]:
    """Names of the value tiers, lowest first."""
    base = {
        3: ["Low", "Standard", "High", "Top"],
        2: ["Low", "Standard", "High"],
        1: ["Low", "High"],
    }
    return base.get(n_cuts, [f"Tier {i + 1}" for i in range(n_cuts + 1)])


def customer_table(rfm: pd.DataFrame, tags: pd.DataFrame | None) -> pd.DataFrame:
    """One row per customer: RFM values and scores, segment, cluster, tier, and chapter 01's tags."""
    cols = [
        "customer_key",
        "recency_days",
        "frequency",
        "monetary",
        "r_score",
        "f_score",
        "m_score",
        "segment",
        "cluster",
        "tier",
    ]
    out = rfm[cols].astype({"tier": str})
    if tags is not None and "tags" in tags.columns:
        out = out.merge(tags[["customer_key", "tags"]], on="customer_key", how="left")
        out["tags"] = out["tags"].fillna("")
    return out


# ------------------------------------------------------------------------------------ plots
def plot_k_choice(scores: pd.DataFrame, best_k: int, ax: Axes | None = None) -> Axes:
    """Silhouette (left axis) and inertia (right axis, the elbow) by number of clusters."""
    import matplotlib.pyplot as plt

    from ..plots import PALETTE

    ax = ax if ax is not None else plt.subplots()[1]
    ax.plot(scores["k"], scores["silhouette"], marker="o", color=PALETTE[0], label=tr("silhouette"))
    ax.axvline(best_k, color=PALETTE[3], linestyle="--", linewidth=1)
    ax.set_xlabel(tr("number of clusters k"))
    ax.set_ylabel(tr("silhouette (higher is better)"), color=PALETTE[0])
    ax2 = ax.twinx()
    ax2.plot(scores["k"], scores["inertia"], marker="s", color=PALETTE[1], label=tr("inertia"))
    ax2.set_ylabel(tr("inertia (elbow)"), color=PALETTE[1])
    ax2.grid(False)
    ax.set_title(tr("Choosing k: silhouette peaks at k = {best_k}", best_k=best_k))
    return ax


def plot_segments(summary: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Share of customers and share of revenue per segment, side by side."""
    import matplotlib.pyplot as plt

    from ..plots import PALETTE
    from ..privacy import hidden_groups

    ax = ax if ax is not None else plt.subplots()[1]
    s = summary[["share", "revenue_share"]].iloc[::-1] * 100
    if "customers" in summary:
        # A segment of fewer than k customers is not drawn (privacy), nor, when it is the only
        # one, the next smallest: 100 % minus the other bars would give the small one away.
        small, complement = hidden_groups(summary["customers"], labels=summary.index)
        s.loc[(small | complement)[::-1], :] = np.nan
    s.columns = [tr("% of customers"), tr("% of revenue")]
    s.plot.barh(ax=ax, color=[PALETTE[0], PALETTE[1]], width=0.8)
    ax.set_xlabel("%")
    ax.set_ylabel("")
    ax.legend(frameon=False, loc="lower right")
    return ax


def plot_profile_heatmap(profile: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Cluster profiles: mean recency, frequency, monetary as z-scores across clusters."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from ..plots import DIVERGING
    from ..privacy import min_group_size

    ax = ax if ax is not None else plt.subplots()[1]
    if "customers" in profile:  # a cluster of fewer than k customers is not shown (privacy)
        profile = profile.loc[profile["customers"] >= min_group_size()]
    cols = ["mean_recency_days", "mean_frequency", "mean_monetary"]
    z = (profile[cols] - profile[cols].mean()) / profile[cols].std(ddof=0).replace(0, 1)
    z.columns = [tr("recency (days)"), tr("frequency"), tr("monetary")]
    annot = profile[cols].map(lambda v: f"{v:,.0f}" if abs(v) >= 10 else f"{v:.1f}").to_numpy()
    lim = max(float(np.nanmax(np.abs(z.to_numpy()))), 1e-9)  # centred at 0 (seaborn's center=
    # would rebuild the colour map under another name)
    sns.heatmap(z, annot=annot, fmt="", cmap=DIVERGING, vmin=-lim, vmax=lim, cbar=False, ax=ax)
    ax.set_ylabel("")
    return ax
