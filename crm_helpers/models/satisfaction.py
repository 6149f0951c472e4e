"""Satisfaction and feedback: CSAT, NPS, trends, drivers, complaints and frequent terms.

Definitions (one place; the chapter and its tests quote them):

- **Scales** (:class:`Scale`). A score column is either CSAT (whole numbers, default 1-5,
  *satisfied* from ``satisfied_min``, default 4) or NPS (whole numbers 0-10). The chapter's
  ``scale`` parameter says which: ``csat``, ``nps`` or ``auto`` (:func:`resolve_scale`: NPS when
  any score lies outside the CSAT range, e.g. above 5 or 0, else CSAT). ``auto`` cannot tell an NPS
  survey whose answers all happen to be 1-5 from a CSAT survey: name the scale when it is known.
  A score outside its scale, or not a whole number, raises :class:`ScoreScaleError` (a
  ``ValueError``) naming the value and the scale.
- **CSAT** = the mean score; **share satisfied** = share of scores >= ``satisfied_min``.
- **NPS** = 100 x (share of promoters, 9-10, minus share of detractors, 0-6): points in
  -100..100; scores 7-8 are passives.
- **Bands** (:func:`band`): CSAT ``low`` (below ``satisfied_min - 1``: 1-2 on 1-5), ``neutral``
  (``satisfied_min - 1``: 3) and ``high`` (``satisfied_min`` and up: 4-5); NPS ``detractor``
  (0-6), ``passive`` (7-8) and ``promoter`` (9-10). A customer's *mean* score is banded by the
  same half-open thresholds (a CSAT mean of 2.5 is low, 3.5 neutral, 4.0 high).
- **Small groups** (privacy): a table row describing fewer than ``min_customers`` distinct
  customers keeps its counts but has every score figure blanked (NaN) and ``suppressed = True``;
  frequent terms used by fewer than ``min_customers`` customers are not shown at all.
- **Drivers** (:func:`drivers`): a proportional-odds (ordered logit) model of the score on
  dummies of the categorical columns (type, channel, ...), each against a reference level, with
  standard errors clustered by customer (a customer's answers are not independent). A positive
  coefficient raises the odds of a higher score; the odds ratio exp(coef) multiplies the odds of
  scoring above any cut point. When the ordered model fails, a binary logit of *satisfied*
  (CSAT) or *promoter* (NPS) takes its place and the result says so.
- **Complaints** (:func:`complaint_rate`): feedback rows of type ``complaint_type`` per feedback
  row, and per 1,000 purchase orders when order counts are given (:func:`orders_sql`).
- **Free text** never leaves :func:`frequent_terms` except as aggregated terms: e-mail addresses
  and web addresses are removed, only runs of two or more letters are terms (no digits: phone
  numbers, order and card numbers are dropped) and a term must be used by at least
  ``min_customers`` distinct customers, so a name or an identifier written by one customer cannot
  appear.

Models know nothing of files, params or papermill beyond the path the SQL reads: they take data
frames (the prepared feedback table: ``customer_key``, ``date``, ``score`` and optionally
``channel``, ``type``, ``text``) and return data frames, fitted results or Axes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from scipy import sparse

from ..errors import DataError
from ..i18n import tr
from .clv import PURCHASE

#: Columns never used as a driver (identifiers, free text, dates, the score band itself).
NOT_FACTORS = ("customer_key", "customer_id", "text", "date", "source_row", "period", "band")
#: Level name of a missing value, and of the levels pooled because they are rare.
MISSING_LEVEL = "(missing)"
OTHER_LEVEL = "(other)"
ORDERED = "ordered logit"
BINARY = "binary logit"
#: Pandas period aliases and their DuckDB ``date_trunc`` parts.
PERIODS = {"W": "week", "M": "month", "Q": "quarter", "Y": "year"}

_EMAIL = re.compile(r"\S+@\S+")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
#: Punctuation that ends a clause: two-word terms never span it ("late delivery, poor quality").
_CLAUSE = re.compile(r"[.,;:!?()\[\]\n\r]+")
#: Terms are runs of two or more letters: no digits, so no phone or order numbers.
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"


class ScoreScaleError(DataError, ValueError):
    """A score is outside its scale or not a whole number."""


# ------------------------------------------------------------------------------------- scales
@dataclass(frozen=True)
class Scale:
    """A score scale: its range and where its bands start.

    Use :meth:`csat` or :meth:`nps` (or :func:`resolve_scale`) rather than the constructor.

    Attributes
    ----------
    kind
        ``"csat"`` or ``"nps"``.
    low, high
        The lowest and highest valid score (whole numbers).
    neutral_min, satisfied_min
        The middle band starts at ``neutral_min``, the top band (satisfied, promoters) at
        ``satisfied_min``; scores below ``neutral_min`` form the bottom band.
    """

    kind: Literal["csat", "nps"]
    low: int
    high: int
    neutral_min: int
    satisfied_min: int

    @classmethod
    def csat(cls, low: int = 1, high: int = 5, satisfied_min: int = 4) -> Scale:
        """A CSAT scale ``low``-``high``; satisfied from ``satisfied_min``, neutral just below."""
        if not low < satisfied_min - 1 < satisfied_min <= high:
            raise ValueError(
                f"CSAT scale {low}-{high} with satisfied_min={satisfied_min}: need "
                f"{low} < satisfied_min - 1 and satisfied_min <= {high}, so that each of the "
                "low, neutral and high bands holds at least one score"
            )
        return cls("csat", int(low), int(high), int(satisfied_min) - 1, int(satisfied_min))

    @classmethod
    def nps(cls) -> Scale:
        """The Net Promoter scale 0-10: detractors 0-6, passives 7-8, promoters 9-10."""
        return cls("nps", 0, 10, 7, 9)

    @property
    def bands(self) -> tuple[str, str, str]:
        """Names of the bottom, middle and top bands."""
        return ("low", "neutral", "high") if self.kind == "csat" else NPS_BANDS

    @property
    def band_ranges(self) -> dict[str, str]:
        """Each band's scores in words (``{"low": "1-2", ...}``)."""
        edges = [(self.low, self.neutral_min - 1), (self.neutral_min, self.satisfied_min - 1)]
        edges.append((self.satisfied_min, self.high))
        return {
            b: f"{a}" if a == z else f"{a}-{z}" for b, (a, z) in zip(self.bands, edges, strict=True)
        }

    def describe(self) -> str:
        """The scale in words, e.g. ``CSAT 1-5 (satisfied: 4-5)``."""
        if self.kind == "nps":
            return "NPS 0-10 (detractors 0-6, passives 7-8, promoters 9-10)"
        return f"CSAT {self.low}-{self.high} (satisfied: {self.satisfied_min}-{self.high})"


NPS_BANDS = ("detractor", "passive", "promoter")
CSAT_1_5 = Scale.csat()
NPS_0_10 = Scale.nps()


#: ``scale: auto`` reads a score column as NPS when at least this share lies outside CSAT.
AUTO_NPS_SHARE = 0.05


def resolve_scale(
    scores: Any,
    scale: Literal["auto", "csat", "nps"] = "auto",
    *,
    csat_range: tuple[int, int] = (1, 5),
    satisfied_min: int = 4,
) -> Scale:
    """The scale of a score column, named or inferred, after checking every score against it.

    Parameters
    ----------
    scores
        The scores (NaN ignored).
    scale
        ``csat``, ``nps`` or ``auto``: NPS 0-10 when at least :data:`AUTO_NPS_SHARE` of the
        scores lie outside ``csat_range`` (above 5 or 0 on the default 1-5), CSAT when none do;
        a few stray scores outside (a "0 = no answer" export, a typo) are refused with a
        :class:`ScoreScaleError` rather than turning a CSAT survey into an NPS of about -100.
    csat_range, satisfied_min
        The CSAT scale and its first satisfied score.

    Raises
    ------
    ScoreScaleError
        When a score lies outside the resolved scale or is not a whole number.
    """
    if scale not in ("auto", "csat", "nps"):
        raise ValueError(f"scale={scale!r}: expected 'csat', 'nps' or 'auto'")
    s = _finite(scores)
    kind = scale
    if kind == "auto":
        outside = (s < csat_range[0]) | (s > csat_range[1])
        share = float(outside.mean()) if len(s) else 0.0
        if 0 < share < AUTO_NPS_SHARE:
            raise ScoreScaleError(
                f"{int(outside.sum())} of {len(s)} scores ({share:.1%}) lie outside the CSAT "
                f"scale {csat_range[0]}-{csat_range[1]}, e.g. {_num(s[outside][0])}: too few "
                f"for an NPS survey (at least {AUTO_NPS_SHARE:.0%}), too many to ignore; name "
                "the chapter's scale (csat or nps) or clean those scores"
            )
        kind = "nps" if share else "csat"
    out = Scale.nps() if kind == "nps" else Scale.csat(*csat_range, satisfied_min=satisfied_min)
    check_scores(s, out)
    return out


def _finite(scores: Any) -> np.ndarray:
    s = pd.to_numeric(pd.Series(scores, dtype=object), errors="coerce").to_numpy(dtype=float)
    return s[~np.isnan(s)]


def check_scores(scores: Any, scale: Scale) -> None:
    """Raise :class:`ScoreScaleError` unless every score is a whole number on ``scale``."""
    s = _finite(scores)
    bad = s[(s < scale.low) | (s > scale.high)]
    if len(bad):
        hint = (
            " (set the chapter's scale to nps)" if scale.kind == "csat" and bad.max() <= 10 else ""
        )
        raise ScoreScaleError(
            f"score {_num(bad[0])} is outside the {scale.kind.upper()} scale {scale.low}-"
            f"{scale.high}: {len(bad)} score(s) outside, from {_num(bad.min())} to "
            f"{_num(bad.max())}{hint}"
        )
    frac = s[s != np.round(s)]
    if len(frac):
        raise ScoreScaleError(
            f"score {_num(frac[0])} is not a whole number on the {scale.kind.upper()} scale "
            f"{scale.low}-{scale.high} ({len(frac)} such score(s))"
        )


def _num(x: float) -> str:
    return f"{x:g}"


# ------------------------------------------------------------------------------ key figures
def distribution(scores: Any, scale: Scale) -> pd.DataFrame:
    """Responses per score, every point of the scale listed (``score``, ``responses``, ``share``)."""
    s = _finite(scores)
    check_scores(s, scale)
    points = np.arange(scale.low, scale.high + 1)
    counts = np.array([(s == p).sum() for p in points], dtype=np.int64)
    share = counts / counts.sum() if counts.sum() else np.full(len(points), np.nan)
    return pd.DataFrame({"score": points, "responses": counts, "share": share})


def csat(scores: Any, *, scale: tuple[int, int] = (1, 5), satisfied_min: int = 4) -> dict[str, Any]:
    """CSAT of a set of scores.

    Returns
    -------
    dict
        ``n`` (scores, NaN left out), ``mean``, ``share_satisfied`` (scores >= ``satisfied_min``,
        0-1) and ``distribution`` ({score: responses} over the whole scale). Mean and share are
        NaN without scores.
    """
    sc = Scale.csat(*scale, satisfied_min=satisfied_min)
    s = _finite(scores)
    check_scores(s, sc)
    dist = distribution(s, sc)
    return {
        "n": len(s),
        "mean": float(s.mean()) if len(s) else math.nan,
        "share_satisfied": float((s >= sc.satisfied_min).mean()) if len(s) else math.nan,
        "distribution": dict(zip(dist["score"].tolist(), dist["responses"].tolist(), strict=True)),
    }


def nps(scores: Any) -> dict[str, Any]:
    """Net Promoter Score of a set of 0-10 scores.

    Returns
    -------
    dict
        ``n``, ``promoters`` (share 9-10), ``passives`` (7-8), ``detractors`` (0-6), ``nps``
        (100 x (promoters - detractors), points in -100..100) and ``distribution``.
    """
    sc = Scale.nps()
    s = _finite(scores)
    check_scores(s, sc)
    dist = distribution(s, sc)
    if not len(s):
        pro = pas = det = math.nan
    else:
        pro = float((s >= sc.satisfied_min).mean())
        det = float((s < sc.neutral_min).mean())
        pas = 1.0 - pro - det
    return {
        "n": len(s),
        "promoters": pro,
        "passives": pas,
        "detractors": det,
        "nps": 100.0 * (pro - det),
        "distribution": dict(zip(dist["score"].tolist(), dist["responses"].tolist(), strict=True)),
    }


def key_figures(scores: Any, scale: Scale) -> dict[str, Any]:
    """The fixed keys of ``satisfaction.json``: ``csat_mean``, ``csat_share_satisfied``, ``nps``.

    The figures of the other scale are None (an NPS survey has no CSAT, and the other way round);
    ``scale`` (``csat``/``nps``) and ``responses`` say what was measured.
    """
    if scale.kind == "csat":
        c = csat(scores, scale=(scale.low, scale.high), satisfied_min=scale.satisfied_min)
        return {
            "scale": "csat",
            "responses": c["n"],
            "csat_mean": c["mean"],
            "csat_share_satisfied": c["share_satisfied"],
            "nps": None,
        }
    n = nps(scores)
    return {
        "scale": "nps",
        "responses": n["n"],
        "csat_mean": None,
        "csat_share_satisfied": None,
        "nps": n["nps"],
    }


def band(scores: Any, scale: Scale) -> pd.Series:
    """The band of each score (or mean score) as an ordered categorical (NaN stays missing).

    CSAT: ``low`` below ``neutral_min``, ``neutral`` up to ``satisfied_min``, ``high`` from
    ``satisfied_min``; NPS: ``detractor`` / ``passive`` / ``promoter`` likewise (7 and 9).
    """
    s = pd.to_numeric(pd.Series(scores), errors="coerce").astype(float)
    idx = np.where(s < scale.neutral_min, 0, np.where(s < scale.satisfied_min, 1, 2))
    cat = pd.Categorical.from_codes(
        np.where(s.isna(), -1, idx), categories=list(scale.bands), ordered=True
    )
    return pd.Series(cat, index=s.index, name="band")


# --------------------------------------------------------------------------- grouped tables
def _require(frame: pd.DataFrame, columns: Sequence[str], what: str = "feedback") -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{what}: required column(s) {', '.join(missing)} missing "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )


def _period(dates: pd.Series, period: str) -> pd.Series:
    if period not in PERIODS:
        raise ValueError(f"period={period!r}: expected one of {', '.join(PERIODS)}")
    return pd.to_datetime(dates).dt.to_period(period).dt.start_time.astype("datetime64[us]")


def _levels(values: pd.Series) -> pd.Series:
    """A column as text levels, missing values as :data:`MISSING_LEVEL`."""
    out = values.astype(object).where(values.notna(), MISSING_LEVEL)
    return out.map(str).astype(object)


def _score_frame(frame: pd.DataFrame, scale: Scale) -> pd.DataFrame:
    _require(frame, ["customer_key", "score"])
    d = frame[frame["score"].notna()].copy()
    check_scores(d["score"], scale)
    s = d["score"].astype(float)
    d["_top"] = (s >= scale.satisfied_min).astype(float)
    d["_bottom"] = (s < scale.neutral_min).astype(float)
    return d


_CSAT_COLS = ["mean_score", "share_satisfied"]
_NPS_COLS = ["mean_score", "promoters", "passives", "detractors", "nps"]


def _score_table(d: pd.DataFrame, keys: list[str], scale: Scale) -> pd.DataFrame:
    g = d.groupby(keys, sort=True, observed=True, dropna=False)
    out = g.agg(
        responses=("score", "size"),
        customers=("customer_key", "nunique"),
        mean_score=("score", "mean"),
        _top=("_top", "mean"),
        _bottom=("_bottom", "mean"),
    )
    if scale.kind == "csat":
        out = out.rename(columns={"_top": "share_satisfied"}).drop(columns="_bottom")
    else:
        out["promoters"], out["detractors"] = out.pop("_top"), out.pop("_bottom")
        out["passives"] = 1.0 - out["promoters"] - out["detractors"]
        out["nps"] = 100.0 * (out["promoters"] - out["detractors"])
        out = out[["responses", "customers", *_NPS_COLS]]
    return out


def _suppress(out: pd.DataFrame, min_customers: int, figures: Sequence[str]) -> pd.DataFrame:
    small = (out["customers"] > 0) & (out["customers"] < min_customers)
    out.loc[small, list(figures)] = np.nan
    out["suppressed"] = small
    return out


def by_period(
    frame: pd.DataFrame, scale: Scale, *, period: str = "M", min_customers: int = 5
) -> pd.DataFrame:
    """Scores per calendar period (default month), every period between the first and last listed.

    Parameters
    ----------
    frame
        Feedback rows: ``customer_key``, ``date``, ``score``.
    scale
        The score scale.
    period
        ``W``, ``M``, ``Q`` or ``Y`` (weeks start on Monday).
    min_customers
        Periods with fewer responding customers have their score figures blanked.

    Returns
    -------
    pandas.DataFrame
        ``period`` (first day), ``responses``, ``customers``, ``mean_score`` and
        ``share_satisfied`` (CSAT) or ``promoters``, ``passives``, ``detractors``, ``nps`` (NPS),
        ``suppressed``. A period without feedback has 0 responses and NaN figures.
    """
    _require(frame, ["date"])
    d = _score_frame(frame, scale)
    d["period"] = _period(d["date"], period)
    out = _score_table(d, ["period"], scale)
    if len(out):
        full = pd.period_range(out.index.min(), out.index.max(), freq=period).start_time
        out = out.reindex(full.astype("datetime64[us]").rename("period"))
        out[["responses", "customers"]] = out[["responses", "customers"]].fillna(0).astype("int64")
    figures = _CSAT_COLS if scale.kind == "csat" else _NPS_COLS
    return _suppress(out.reset_index(), min_customers, figures)


def by_group(
    frame: pd.DataFrame, column: str | Sequence[str], scale: Scale, *, min_customers: int = 5
) -> pd.DataFrame:
    """Scores per group of one or more columns (channel, type, segment, ...).

    Missing values form their own group, :data:`MISSING_LEVEL`. Groups with fewer than
    ``min_customers`` customers keep their counts but have their score figures blanked
    (``suppressed``). Columns as :func:`by_period`; groups in sorted order.
    """
    keys = [column] if isinstance(column, str) else list(column)
    _require(frame, keys)
    d = _score_frame(frame, scale)
    for k in keys:
        d[k] = _levels(d[k])
    out = _score_table(d, keys, scale).reset_index()
    figures = _CSAT_COLS if scale.kind == "csat" else _NPS_COLS
    return _suppress(out, min_customers, figures)


# ------------------------------------------------------------------------------------ drivers
@dataclass(frozen=True)
class Drivers:
    """The fitted drivers model and its tidy table of effects.

    Attributes
    ----------
    table
        One row per non-reference level: ``factor``, ``level``, ``reference``, ``rows`` and
        ``customers`` at that level, ``coef`` (log odds of a higher score / of being satisfied),
        ``se`` (clustered by customer), ``z``, ``p_value``, ``odds_ratio`` and its 95 % interval
        ``or_low``, ``or_high``. Sorted by factor, then level.
    method
        :data:`ORDERED` or :data:`BINARY` (``satisfied`` / ``promoter`` against the rest).
    notes
        What was done that a reader should know: the fallback and why, levels pooled into
        :data:`OTHER_LEVEL`, factors left out.
    rows, customers
        Feedback rows and distinct customers in the fit.
    result
        The statsmodels results object.
    """

    table: pd.DataFrame
    method: str
    notes: tuple[str, ...]
    rows: int
    customers: int
    result: Any


def _factor_columns(frame: pd.DataFrame, max_levels: int, notes: list[str]) -> list[str]:
    out = []
    for c in frame.columns:
        if c in NOT_FACTORS or c == "score" or str(c).startswith("_"):
            continue
        col = frame[c]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            continue
        if pd.api.types.is_datetime64_any_dtype(col):
            continue
        if col.nunique(dropna=False) > max_levels:
            notes.append(tr("{c} left out: more than {n} levels.", c=c, n=max_levels))
            continue
        out.append(c)
    return out


def _design(
    d: pd.DataFrame,
    factors: Sequence[str],
    reference: Mapping[str, str],
    min_level_rows: int,
    min_customers: int,
    notes: list[str],
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Dummy columns (one per non-reference level), the description of each, and the rows kept.

    Rare levels are pooled into :data:`OTHER_LEVEL`; when the pool is still rare its rows are
    left out of the fit (no estimate rests on a handful of answers).
    """

    def small(lv: pd.Series) -> pd.Index:
        g = pd.DataFrame({"lv": lv, "c": d["customer_key"]}).groupby("lv", sort=True)
        rows, custs = g.size(), g["c"].nunique()
        return rows.index[(rows < min_level_rows) | (custs < min_customers)]

    levels: dict[str, pd.Series] = {}
    keep = np.ones(len(d), dtype=bool)
    for f in factors:
        lv = _levels(d[f])
        rare = sorted(small(lv))
        if rare:
            lv = lv.where(~lv.isin(rare), OTHER_LEVEL)
            fields = dict(f=f, n=len(rare), rows=min_level_rows, customers=min_customers)
            if OTHER_LEVEL in small(lv):
                keep &= (lv != OTHER_LEVEL).to_numpy()
                notes.append(
                    tr(
                        "{f}: {n} level(s) with fewer than {rows} rows or {customers} customers "
                        "left out of the fit ({left} rows).",
                        left=int((lv == OTHER_LEVEL).sum()),
                        **fields,
                    )
                )
            else:
                notes.append(
                    tr(
                        "{f}: {n} level(s) with fewer than {rows} rows or {customers} customers "
                        "pooled into {other}.",
                        other=OTHER_LEVEL,
                        **fields,
                    )
                )
        levels[f] = lv
    cols: dict[str, np.ndarray] = {}
    info = []
    for f in factors:
        lv = levels[f][keep]
        counts = lv.value_counts()
        if len(counts) < 2:
            notes.append(tr("{f} left out: a single level.", f=f))
            continue
        if f in reference:
            ref = str(reference[f])
            if ref not in counts.index:
                raise ValueError(
                    f"reference level {ref!r} of {f} not found among its levels "
                    f"({', '.join(sorted(counts.index))})"
                )
        else:  # the most frequent level; ties alphabetically
            ref = sorted(counts.index[counts == counts.max()])[0]
        custs = d.loc[keep, "customer_key"]
        for level in sorted(set(counts.index) - {ref}):
            mask = (lv == level).to_numpy()
            name = f"{f}[{level}]"
            cols[name] = mask.astype(float)
            info.append(
                {
                    "name": name,
                    "factor": f,
                    "level": level,
                    "reference": ref,
                    "rows": int(mask.sum()),
                    "customers": int(custs[mask].nunique()),
                }
            )
    return pd.DataFrame(cols, index=d.index[keep]), pd.DataFrame(info), keep


def _fit_ordered(y: pd.Series, X: pd.DataFrame, groups: np.ndarray, maxiter: int) -> Any:
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    cats = sorted(y.unique())
    endog = pd.Series(pd.Categorical(y, categories=cats, ordered=True), index=y.index)
    model = OrderedModel(endog, X, distr="logit")
    res = model.fit(
        method="bfgs",
        maxiter=maxiter,
        disp=False,
        cov_type="cluster",
        cov_kwds={"groups": groups},
    )
    if not res.mle_retvals.get("converged", False):
        raise RuntimeError(f"the optimiser did not converge in {maxiter} iterations")
    k = X.shape[1]
    if not np.all(np.isfinite(np.asarray(res.bse)[:k])):
        raise RuntimeError("standard errors are not finite (a level perfectly predicts the score)")
    return res


def _fit_binary(y: pd.Series, X: pd.DataFrame, groups: np.ndarray, maxiter: int) -> Any:
    import statsmodels.api as sm

    exog = sm.add_constant(X, has_constant="add")
    res = sm.Logit(y.astype(float), exog).fit(
        method="newton",
        maxiter=maxiter,
        disp=False,
        cov_type="cluster",
        cov_kwds={"groups": groups},
    )
    if not res.mle_retvals.get("converged", False):
        raise RuntimeError(f"the binary logit did not converge in {maxiter} iterations")
    return res


def drivers(
    frame: pd.DataFrame,
    scale: Scale,
    *,
    factors: Sequence[str] | None = None,
    reference: Mapping[str, str] | None = None,
    method: Literal["auto", "ordered", "binary"] = "auto",
    min_level_rows: int = 30,
    min_customers: int = 5,
    max_levels: int = 12,
    maxiter: int = 1000,
) -> Drivers:
    """What drives the score: an ordered logit on categorical columns, effects as a tidy table.

    Parameters
    ----------
    frame
        Feedback rows: ``customer_key``, ``score`` and the categorical columns to explain it by.
    scale
        The score scale (its ``satisfied_min`` defines the binary fallback's outcome).
    factors
        Columns to use; None = every text, categorical or boolean column with at most
        ``max_levels`` levels, apart from identifiers, dates and free text (:data:`NOT_FACTORS`).
    reference
        Reference level per factor; by default the most frequent level (ties alphabetically).
    method
        ``auto`` = ordered logit, falling back to the binary logit when it fails; ``ordered`` or
        ``binary`` to force one (``ordered`` raises when it fails).
    min_level_rows, min_customers
        Levels with fewer rows or customers are pooled into :data:`OTHER_LEVEL`, whose rows
        are left out of the fit when the pool is still that small (no estimate rests on a
        handful of answers, and no level shown describes a few customers).
    max_levels
        Automatically chosen factors have at most this many levels.
    maxiter
        Iterations of the optimiser.

    Returns
    -------
    Drivers
        The table of effects, the method used and notes. Deterministic: the optimisers start
        from fixed values and use no random numbers.

    Raises
    ------
    DataError
        When no factor varies, the scores do not vary, or neither model can be fitted.
    """
    if method not in ("auto", "ordered", "binary"):
        raise ValueError(f"method={method!r}: expected 'auto', 'ordered' or 'binary'")
    d = _score_frame(frame, scale).reset_index(drop=True)
    notes: list[str] = []
    if factors is None:
        factors = _factor_columns(d, max_levels, notes)
    else:
        _require(d, list(factors))
    X, info, keep = _design(d, factors, reference or {}, min_level_rows, min_customers, notes)
    d = d[keep]
    if X.shape[1] == 0:
        raise DataError(
            "feedback: no categorical column with two or more levels to explain the score by "
            f"(looked at: {', '.join(factors) or 'none'})"
        )
    y = d["score"].astype(float)
    if y.nunique() < 2:
        raise DataError(f"feedback: every score is {_num(y.iloc[0])}; there is nothing to explain")
    groups = pd.factorize(d["customer_key"], sort=True)[0]
    res, used = None, method
    if method in ("auto", "ordered"):
        try:
            res, used = _fit_ordered(y, X, groups, maxiter), ORDERED
        except (np.linalg.LinAlgError, ValueError, RuntimeError) as err:
            if method == "ordered":
                raise DataError(f"feedback: the ordered logit failed: {err}") from None
            notes.append(
                tr("The ordered logit failed ({err}); a binary logit is shown instead.", err=err)
            )
    if res is None:
        top = "promoter" if scale.kind == "nps" else "satisfied"
        outcome = (y >= scale.satisfied_min).astype(float)
        if outcome.nunique() < 2:
            raise DataError(f"feedback: no variation in {top} (score >= {scale.satisfied_min})")
        try:
            res = _fit_binary(outcome, X, groups, maxiter)
        except (np.linalg.LinAlgError, ValueError, RuntimeError) as err:
            raise DataError(f"feedback: the drivers model could not be fitted: {err}") from None
        used = f"{BINARY} ({top}: score >= {scale.satisfied_min})"
    names = list(X.columns)
    params = pd.Series(np.asarray(res.params), index=res.model.exog_names)[names]
    bse = pd.Series(np.asarray(res.bse), index=res.model.exog_names)[names]
    pv = pd.Series(np.asarray(res.pvalues), index=res.model.exog_names)[names]
    ci = np.asarray(res.conf_int(alpha=0.05))
    ci = pd.DataFrame(ci, index=res.model.exog_names, columns=["lo", "hi"]).loc[names]
    table = info.assign(
        coef=params.to_numpy(),
        se=bse.to_numpy(),
        z=(params / bse).to_numpy(),
        p_value=pv.to_numpy(),
        odds_ratio=np.exp(params.to_numpy()),
        or_low=np.exp(ci["lo"].to_numpy()),
        or_high=np.exp(ci["hi"].to_numpy()),
    ).drop(columns="name")
    table = table.sort_values(["factor", "level"], kind="stable").reset_index(drop=True)
    return Drivers(
        table=table,
        method=used,
        notes=tuple(notes),
        rows=len(d),
        customers=int(d["customer_key"].nunique()),
        result=res,
    )


# ------------------------------------------------------------------------ churn by band
def customer_scores(
    frame: pd.DataFrame, scale: Scale, *, use: Literal["latest", "mean"] = "latest"
) -> pd.DataFrame:
    """One score per customer: the latest (the lower on a same-time tie) or the mean, with its band.

    Returns ``customer_key``, ``score``, ``responses``, ``band``; sorted by customer.
    """
    if use not in ("latest", "mean"):
        raise ValueError(f"use={use!r}: expected 'latest' or 'mean'")
    d = _score_frame(frame, scale)
    if use == "latest":
        _require(d, ["date"])
        last = d.sort_values(["customer_key", "date", "score"], ascending=[True, False, True])
        score = last.groupby("customer_key", sort=True)["score"].first()
    else:
        score = d.groupby("customer_key", sort=True)["score"].mean()
    out = pd.DataFrame(
        {
            "score": score.astype(float),
            "responses": d.groupby("customer_key", sort=True).size(),
        }
    ).reset_index()
    out["band"] = band(out["score"], scale).to_numpy()
    return out


#: Band of the customers in the churn table without any feedback.
NO_FEEDBACK = "no feedback"


def churn_by_band(
    feedback: pd.DataFrame,
    churn_table: pd.DataFrame,
    scale: Scale,
    *,
    use: Literal["latest", "mean"] = "latest",
    min_customers: int = 5,
) -> pd.DataFrame:
    """Churn per satisfaction band: mean churn probability and/or observed churn rate.

    Parameters
    ----------
    feedback
        Feedback rows (``customer_key``, ``date``, ``score``).
    churn_table
        One row per customer: ``customer_key`` and ``churn_probability`` (chapter 06's artifact)
        and/or ``churned`` (observed, 0/1).
    scale
        The score scale; bands as :func:`band`.
    use
        Each customer's ``latest`` or ``mean`` score (:func:`customer_scores`).
    min_customers
        Bands with fewer customers have their figures blanked (``suppressed``).

    Returns
    -------
    pandas.DataFrame
        One row per band, bottom to top, then :data:`NO_FEEDBACK` (customers of the churn table
        without feedback): ``band``, ``customers``, ``mean_score``, ``mean_churn_probability``
        and ``churn_rate`` (NaN where the churn table lacks that column), ``suppressed``.
        Customers with feedback but absent from the churn table are left out.
    """
    _require(churn_table, ["customer_key"], "churn table")
    has_p, has_y = "churn_probability" in churn_table, "churned" in churn_table
    if not (has_p or has_y):
        raise DataError("churn table: needs a churn_probability or a churned column")
    cs = customer_scores(feedback, scale, use=use)
    keep = ["customer_key"] + [c for c in ("churn_probability", "churned") if c in churn_table]
    m = churn_table[keep].merge(cs, on="customer_key", how="left")
    order = [*scale.bands, NO_FEEDBACK]
    m["band"] = pd.Categorical(
        m["band"].astype(object).where(m["band"].notna(), NO_FEEDBACK), categories=order
    )
    g = m.groupby("band", observed=False, sort=True)
    out = pd.DataFrame(
        {
            "customers": g.size(),
            "mean_score": g["score"].mean(),
            "mean_churn_probability": g["churn_probability"].mean() if has_p else np.nan,
            "churn_rate": g["churned"].mean() if has_y else np.nan,
        }
    )
    out.index = out.index.astype(object)
    out = out.rename_axis("band").reset_index()
    return _suppress(out, min_customers, ["mean_score", "mean_churn_probability", "churn_rate"])


# --------------------------------------------------------------------------------- complaints
def orders_sql(transactions: str | Path, *, period: str = "M", by: str | None = None) -> str:
    """DuckDB SQL of purchase orders per period (and per ``by`` column, e.g. channel).

    Columns ``period`` (first day, as :func:`by_period`), ``by`` when given, ``orders``.
    """
    if period not in PERIODS:
        raise ValueError(f"period={period!r}: expected one of {', '.join(PERIODS)}")
    path = "'" + str(transactions).replace("'", "''") + "'"
    key = ', "' + by.replace('"', '""') + '"' if by else ""
    return (
        f"SELECT CAST(date_trunc('{PERIODS[period]}', order_date) AS TIMESTAMP) AS period{key}, "
        f"count(DISTINCT order_id) AS orders FROM read_parquet({path}) "
        f"WHERE {PURCHASE} AND customer_key IS NOT NULL GROUP BY ALL ORDER BY ALL"
    )


def complaint_rate(
    frame: pd.DataFrame,
    *,
    period: str | None = "M",
    by: str | None = None,
    complaint_type: str = "complaint",
    orders: pd.DataFrame | None = None,
    min_customers: int = 5,
) -> pd.DataFrame:
    """Complaints per feedback row (and per 1,000 orders) over time and/or by a column.

    Parameters
    ----------
    frame
        Feedback rows: ``customer_key``, ``type`` and ``date`` (with a period).
    period
        ``W``, ``M``, ``Q``, ``Y``, or None for no time split.
    by
        Optional column (e.g. ``channel``) to split by.
    complaint_type
        The ``type`` value that marks a complaint.
    orders
        Optional purchase orders with the same keys (``period`` and/or ``by``) and ``orders``,
        from :func:`orders_sql`; adds ``orders`` and ``complaints_per_1000_orders``.
    min_customers
        Rows whose feedback comes from fewer customers have their shares blanked.

    Returns
    -------
    pandas.DataFrame
        Keys, ``responses``, ``customers``, ``complaints``, ``complaint_share`` (0-1),
        [``orders``, ``complaints_per_1000_orders``], ``suppressed``; sorted by the keys. With a
        period, every period between the first and last is listed (for each ``by`` level).
    """
    _require(frame, ["customer_key", "type"] + (["date"] if period else []) + ([by] if by else []))
    d = pd.DataFrame(
        {
            "customer_key": frame["customer_key"].to_numpy(),
            "complaint": (frame["type"] == complaint_type).fillna(False).to_numpy(dtype=float),
        }
    )
    keys: list[str] = []
    if period:
        d["period"] = _period(frame["date"], period).to_numpy()
        keys.append("period")
    if by:
        d[by] = _levels(frame[by]).to_numpy()
        keys.append(by)
    if not keys:
        d["all"] = "all"
        keys = ["all"]
    out = d.groupby(keys, sort=True).agg(
        responses=("complaint", "size"),
        customers=("customer_key", "nunique"),
        complaints=("complaint", "sum"),
    )
    if period and len(out):
        ps = out.index.get_level_values("period")
        full = pd.period_range(ps.min(), ps.max(), freq=period).start_time.astype("datetime64[us]")
        levels = [full] + ([sorted(d[by].unique())] if by else [])
        out = out.reindex(
            pd.MultiIndex.from_product(levels, names=keys) if by else full.rename("period")
        )
        out = out.fillna(0)
    out = out.astype({"responses": "int64", "customers": "int64", "complaints": "int64"})
    out["complaint_share"] = out["complaints"] / out["responses"].where(out["responses"] > 0)
    out = out.reset_index()
    if keys == ["all"]:
        out = out.drop(columns="all")
    if orders is not None:
        on = [k for k in keys if k != "all"]
        _require(orders, [*on, "orders"], "orders")
        o = orders[[*on, "orders"]].copy()
        if "period" in on:
            o["period"] = pd.to_datetime(o["period"]).astype("datetime64[us]")
        if by:
            o[by] = _levels(o[by])
        out = out.merge(o, on=on, how="left") if on else out.assign(orders=o["orders"].sum())
        out["orders"] = out["orders"].fillna(0).astype("int64")
        out["complaints_per_1000_orders"] = (
            1000 * out["complaints"] / out["orders"].where(out["orders"] > 0)
        )
    figures = ["complaint_share"] + (["complaints_per_1000_orders"] if orders is not None else [])
    return _suppress(out, min_customers, figures)


def type_mix(frame: pd.DataFrame, *, period: str | None = "M") -> pd.DataFrame:
    """Feedback rows per type (complaint, inquiry, review, ...) and their share, per period.

    Returns ``period`` (when given), ``type``, ``responses``, ``share`` (of the period's rows);
    every type listed in every period.
    """
    _require(frame, ["type"] + (["date"] if period else []))
    d = pd.DataFrame({"type": _levels(frame["type"]).to_numpy()})
    keys = ["type"]
    if period:
        d["period"] = _period(frame["date"], period).to_numpy()
        keys = ["period", "type"]
    counts = d.groupby(keys, sort=True).size()
    if period and len(counts):
        ps = counts.index.get_level_values("period")
        full = pd.period_range(ps.min(), ps.max(), freq=period).start_time.astype("datetime64[us]")
        idx = pd.MultiIndex.from_product([full, sorted(d["type"].unique())], names=keys)
        counts = counts.reindex(idx, fill_value=0)
    out = counts.rename("responses").reset_index()
    total = (
        out.groupby("period")["responses"].transform("sum") if period else out["responses"].sum()
    )
    out["share"] = out["responses"] / pd.Series(total, index=out.index).where(lambda t: t > 0)
    return out


# ------------------------------------------------------------------------------ frequent terms
def clean_text(text: pd.Series) -> pd.Series:
    """Free text with e-mail and web addresses removed (the vectoriser drops digits)."""
    t = text.astype(object).where(text.notna(), "").map(str)
    return t.str.replace(_URL, " ", regex=True).str.replace(_EMAIL, " ", regex=True)


def frequent_terms(
    frame: pd.DataFrame,
    band_column: str = "band",
    *,
    text_column: str = "text",
    top: int = 10,
    ngram_range: tuple[int, int] = (1, 2),
    stop_words: str | Sequence[str] | None = "english",
    min_customers: int = 5,
    collapse: bool = True,
) -> pd.DataFrame:
    """The most frequent terms (words and two-word phrases) of the feedback text in each band.

    Parameters
    ----------
    frame
        Feedback rows: ``customer_key``, ``band_column`` and ``text_column``.
    band_column
        The grouping (a score band from :func:`band`, or ``type``, ``channel``, ...).
    text_column
        The free text; rows without text are left out.
    top
        Terms listed per band.
    ngram_range, stop_words
        As scikit-learn's ``CountVectorizer`` (terms are lower-cased runs of 2+ letters, and
        n-grams are formed within a clause: never across ``, . ; : ! ?`` or brackets).
    min_customers
        A term must be used by at least this many distinct customers within the band.
    collapse
        Leave out a term that, within the band, only ever occurs inside a longer phrase of
        the same count (``staff`` when every use is ``rude staff``): same count, no new information.

    Returns
    -------
    pandas.DataFrame
        ``band``, ``rank`` (1 = most frequent), ``term``, ``responses`` (rows of the band
        using the term), ``customers`` (distinct customers using it), ``share`` (of the band's
        rows with text) and ``lift`` (share in the band / share in all rows: above 1 = typical of
        the band). Ranked by responses, ties alphabetically; bands in their order (a categorical's
        order, else sorted).
    """
    from sklearn.feature_extraction.text import CountVectorizer

    _require(frame, ["customer_key", band_column, text_column])
    text = clean_text(frame[text_column])
    has = (text.str.strip() != "").to_numpy() & frame[band_column].notna().to_numpy()
    cols = ["band", "rank", "term", "responses", "customers", "share", "lift"]
    if not has.any():
        return pd.DataFrame(columns=cols)
    bands = frame.loc[has, band_column]
    if isinstance(bands.dtype, pd.CategoricalDtype):
        order = [b for b in bands.cat.categories if (bands == b).any()]
    else:
        order = sorted(bands.astype(object).map(str).unique())
        bands = bands.astype(object).map(str)
    words = CountVectorizer(
        lowercase=True,
        ngram_range=ngram_range,
        stop_words=list(stop_words) if isinstance(stop_words, list | tuple) else stop_words,
        token_pattern=TOKEN_PATTERN,
    ).build_analyzer()

    def clauses(doc: str) -> list[str]:  # phrases never run across punctuation
        return [term for part in _CLAUSE.split(doc) for term in words(part)]

    vec = CountVectorizer(analyzer=clauses, binary=True, dtype=np.int64)
    try:
        X = vec.fit_transform(text[has].tolist()).tocsr()
    except ValueError:  # only stop words: an empty vocabulary
        return pd.DataFrame(columns=cols)
    terms = vec.get_feature_names_out()
    band_code = pd.Categorical(bands.astype(object), categories=order).codes.astype(np.int64)
    n = X.shape[0]
    B = sparse.csr_matrix((np.ones(n), (band_code, np.arange(n))), shape=(len(order), n))
    responses = np.asarray((B @ X).todense())
    # distinct customers per (band, term): collapse rows to (band, customer) pairs first
    pairs = pd.MultiIndex.from_arrays(
        [band_code, frame.loc[has, "customer_key"].astype(object).map(str).to_numpy()]
    )
    pair, uniq = pd.factorize(pairs, sort=True)
    P = sparse.csr_matrix((np.ones(n), (pair, np.arange(n))), shape=(len(uniq), n)) @ X
    P.data[:] = 1
    pair_band = np.asarray(uniq.get_level_values(0), dtype=np.int64)
    PB = sparse.csr_matrix(
        (np.ones(len(uniq)), (pair_band, np.arange(len(uniq)))), shape=(len(order), len(uniq))
    )
    customers = np.asarray((PB @ P).todense())
    band_rows = np.bincount(band_code, minlength=len(order))
    overall = responses.sum(axis=0) / n
    out = []
    for b, name in enumerate(order):
        ok = np.flatnonzero((customers[b] >= min_customers) & (responses[b] > 0))
        # rank: responses descending, then the term alphabetically (vocabulary is sorted)
        ranked = ok[np.lexsort((terms[ok], -responses[b, ok]))]
        ranked = _collapse(ranked, terms, responses[b], top) if collapse else ranked[:top]
        share = responses[b, ranked] / band_rows[b]
        out.append(
            pd.DataFrame(
                {
                    "band": name,
                    "rank": np.arange(1, len(ranked) + 1),
                    "term": terms[ranked],
                    "responses": responses[b, ranked].astype(np.int64),
                    "customers": customers[b, ranked].astype(np.int64),
                    "share": share,
                    "lift": share / overall[ranked],
                }
            )
        )
    return pd.concat(out, ignore_index=True)[cols]


def _collapse(ranked: np.ndarray, terms: np.ndarray, counts: np.ndarray, top: int) -> np.ndarray:
    """The first ``top`` ranked terms that are not part of a longer term with the same count.

    With binary counts, a term whose count equals that of a longer term containing it never
    occurs without that longer term. Terms of equal count are adjacent in the ranking.
    """
    kept: list[int] = []
    parts: dict[int, set[str]] = {}  # count -> every sub-phrase of the longer terms with it
    for i in ranked:
        c = int(counts[i])
        if c not in parts:
            same = ranked[counts[ranked] == c]
            subs: set[str] = set()
            for j in same:
                w = str(terms[j]).split()
                subs |= {
                    " ".join(w[a:z]) for a in range(len(w)) for z in range(a + 1, len(w) + 1)
                } - {str(terms[j])}
            parts[c] = subs
        if str(terms[i]) not in parts[c]:
            kept.append(int(i))
            if len(kept) == top:
                break
    return np.asarray(kept, dtype=np.int64)


# ------------------------------------------------------------------------------------ plots
def _new_ax(ax: Axes | None) -> Axes:
    import matplotlib.pyplot as plt

    return ax if ax is not None else plt.subplots(figsize=(6, 3.6))[1]


def plot_distribution(dist: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Bars of the share of responses per score (from :func:`distribution`)."""
    from ..plots import PALETTE

    ax = _new_ax(ax)
    ax.bar(dist["score"].astype(str), dist["share"], color=PALETTE[0])
    ax.set_xlabel(tr("score"))
    ax.set_ylabel(tr("share of responses"))
    return ax


def plot_trend(trend: pd.DataFrame, scale: Scale, ax: Axes | None = None) -> Axes:
    """CSAT (mean score) or NPS per period, from :func:`by_period` (suppressed periods left out)."""
    from ..plots import NEUTRAL, PALETTE

    ax = _new_ax(ax)
    col, label = ("mean_score", tr("mean score (CSAT)")) if scale.kind == "csat" else ("nps", "NPS")
    ax.plot(trend["period"], trend[col], marker="o", ms=3, color=PALETTE[0])
    ax.set_ylabel(label)
    if scale.kind == "csat":
        ax.set_ylim(scale.low, scale.high)
    else:
        ax.set_ylim(-100, 100)
        ax.axhline(0, color=NEUTRAL, lw=0.6)
    ax.figure.autofmt_xdate()
    return ax


def plot_drivers(table: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Odds ratios with their 95 % intervals, one line per level against its reference (log axis)."""
    from ..plots import NEUTRAL, PALETTE

    ax = _new_ax(ax)
    t = table.iloc[::-1]
    labels = [
        f"{f}: {lv} (vs {r})"
        for f, lv, r in zip(t["factor"], t["level"], t["reference"], strict=True)
    ]
    y = np.arange(len(t))
    err = [t["odds_ratio"] - t["or_low"], t["or_high"] - t["odds_ratio"]]
    colors = [PALETTE[3] if v < 1 else PALETTE[2] for v in t["odds_ratio"]]
    ax.errorbar(t["odds_ratio"], y, xerr=err, fmt="none", ecolor=NEUTRAL, lw=1)
    ax.scatter(t["odds_ratio"], y, color=colors, zorder=3)
    ax.axvline(1, color=NEUTRAL, lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_yticks(y, labels)
    ax.set_xlabel(tr("odds ratio of a higher score (log scale)"))
    return ax
