"""Sales forecast: period series in the engine, baselines, ETS and SARIMAX, backtest, STL.

Definitions (one place; the chapter and its tests quote them):

- **Period**: ``'D'`` (calendar day), ``'W'`` (week starting on Monday) or ``'M'`` (calendar
  month); a period is labelled by its first day.
- **Series** (:func:`series_sql`, computed in the engine over the prepared transactions):
  ``revenue`` is net revenue of product lines dated in the period, purchases minus returns and
  cancellations (those are negative lines dated when they were booked, as the data layer keeps
  them; postage and fees are left out); ``orders`` counts distinct purchase orders and
  ``customers`` distinct customers with a purchase (:data:`~crm_helpers.models.clv.PURCHASE`).
  Only complete periods are kept: a period that starts before the first or ends after the last
  day of data is dropped (:class:`SalesSeries` says how many), and a period without sales inside
  the span is 0, not missing.
- **Season length** *m* (:func:`season_length`): 7 days, 52 weeks, 12 months. A model that
  learns a free seasonal shape (seasonal ETS, seasonal ARIMA orders, STL) needs two full seasons
  of data; the seasonal naive forecast needs one season and a period; SARIMAX with Fourier terms
  (used for the 52-week season, see :class:`Sarimax`) needs a season and a half, since it
  estimates only two coefficients per harmonic. :func:`candidate_models` drops the season of a
  model the data cannot support and says why.
- **Models** (:class:`Naive`, :class:`SeasonalNaive`, :class:`Ets`, :class:`Sarimax`) follow
  scikit-learn manners: ``fit(y)`` on a series with a regular ``DatetimeIndex`` returns self,
  ``predict(horizon)`` returns the point forecast and 80 % and 95 % prediction intervals
  (columns ``mean, lower_80, upper_80, lower_95, upper_95``, indexed by period start), ``spec_``
  names the fitted specification and ``pinned()`` gives an unfitted copy restricted to it.
- **Backtest** (:func:`backtest`): rolling origin. For each of the last ``origins`` cut points
  (``step`` periods apart, the last one ``horizon`` periods before the end) a model is fitted on
  everything before the cut and forecasts ``horizon`` periods. By default the whole procedure
  runs at every origin (the AIC search of the ETS form or ARIMA orders, then the fit), as the
  final forecast runs it on all the data, so the table scores what is forecast;
  ``reselect=False`` keeps the first origin's choice and only re-estimates (faster, for daily
  series). **MASE** divides each absolute error by the in-sample MAE of
  the seasonal naive forecast on that origin's training part (of the naive forecast when the
  training part is not longer than a season); **MAPE** (in %) ignores periods whose actual is 0
  and counts them in ``zero_actuals``. The table has one row per model with the means over all
  origins and steps; :func:`choose` takes the lowest MASE.
- **Decomposition** (:func:`decompose`): STL (robust LOESS) into trend, seasonal and remainder;
  :func:`seasonal_peak` names the weekday, ISO week or month where the seasonal part peaks.

Models know nothing of files, params or papermill beyond the path the SQL reads: they take
series and return data frames, fitted objects or Axes. Everything is deterministic (no random
draws: ETS intervals are the analytic ones of the all-additive models).
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from scipy import stats
from sklearn.base import BaseEstimator, clone
from statsmodels.tools.sm_exceptions import ConvergenceWarning, InterpolationWarning

from ..i18n import tr
from .clv import PURCHASE

#: period code -> (DuckDB date_trunc unit, pandas frequency, singular, plural).
PERIODS: dict[str, tuple[str, str, str, str]] = {
    "D": ("day", "D", "day", "days"),
    "W": ("week", "W-MON", "week", "weeks"),
    "M": ("month", "MS", "month", "months"),
}
#: period code -> season length m (weekday cycle of days, yearly cycle of weeks and months).
SEASON = {"D": 7, "W": 52, "M": 12}
#: Exact cycle length for Fourier terms where m rounds it (a year is 365.25 / 7 weeks).
CYCLE = {52: 365.25 / 7}
#: Prediction-interval levels (%) of every forecast.
LEVELS = (80, 95)
INTERVAL_COLUMNS = ("mean", "lower_80", "upper_80", "lower_95", "upper_95")
#: Full seasons a free seasonal shape needs (seasonal ETS and ARIMA orders, STL).
SEASONAL_MIN_CYCLES = 2.0
#: Seasons SARIMAX with Fourier terms needs (2 coefficients per harmonic, not m states).
FOURIER_MIN_CYCLES = 1.5
#: Longest season ETS states and seasonal ARIMA orders are used for (as R's forecast::ets, which
#: refuses m > 24); longer seasons (52 weeks) go to Fourier terms in SARIMAX.
MAX_STATE_SEASON = 24
#: Seasonal differencing (D = 1) when the STL seasonal strength reaches this (Hyndman's rule).
SEASONAL_STRENGTH_DIFF = 0.64
NAIVE = "Naive"
SEASONAL_NAIVE = "Seasonal naive"
ETS = "ETS"
SARIMAX = "SARIMAX"
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _lit(text: str | Path) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _period(period: str) -> tuple[str, str, str, str]:
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(map(repr, PERIODS))} (got {period!r})")
    return PERIODS[period]


def season_length(period: str) -> int:
    """Season length m of a period: 7 for days (weekday), 52 for weeks, 12 for months (year)."""
    _period(period)
    return SEASON[period]


def season_note(
    n: int, period: str, *, cycles: float = SEASONAL_MIN_CYCLES, lang: str | None = None
) -> str | None:
    """Why ``n`` periods cannot support the period's season (None when they cover ``cycles``).

    Use it before :func:`decompose` (two seasons) or to explain a model's fallback. In ``lang``
    (the report's language when None).
    """
    m, many = season_length(period), tr(PERIODS[period][3], lang)
    need = math.ceil(cycles * m)
    if n >= need:
        return None
    return tr(
        "{cycles:g} seasons of {m} {many} ({need} {many}) are needed; the data have {n}",
        lang,
        cycles=cycles,
        m=m,
        many=many,
        need=need,
        n=n,
    )


# ---------------------------------------------------------------------------- series (SQL)
def series_sql(
    transactions: str | Path,
    period: str = "W",
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> str:
    """SQL of the sales series: one row per period touched by the data span, zero-filled.

    Columns: ``period_start`` (DATE), ``revenue`` (net, product lines), ``orders`` and
    ``customers`` (purchases), ``complete`` (the period lies wholly inside the span) and the
    span's ``first_day`` and ``last_day`` (the same on every row). The span runs from ``start``
    (default: the first ``order_date`` of any line) to ``end`` (default: the last); lines outside
    it are ignored. Weeks start on Monday. Returns and cancellations count on the day they were
    booked, not on their original order's day.
    """
    unit = _period(period)[0]
    tx = _lit(transactions)
    first = f"DATE '{start.isoformat()}'" if start else "CAST(NULL AS DATE)"
    last = f"DATE '{end.isoformat()}'" if end else "CAST(NULL AS DATE)"
    trunc = f"CAST(date_trunc('{unit}', {{}}) AS DATE)"
    return f"""
    WITH lines AS (
        SELECT order_date, order_id, customer_key, amount, is_return, is_product
        FROM read_parquet({tx})
    ), span AS (
        SELECT coalesce({first}, min(order_date)) AS first_day,
            coalesce({last}, max(order_date)) AS last_day
        FROM lines
    ), bounds AS (
        SELECT first_day, last_day,
            {trunc.format("first_day")} AS touched_first,
            {trunc.format("last_day")} AS touched_last,
            -- a period [s, s + 1 unit) is complete when s >= first_day and s + 1 unit <= last_day + 1
            CAST({trunc.format("first_day - INTERVAL 1 DAY")} + INTERVAL 1 {unit} AS DATE)
                AS first_complete,
            CAST({trunc.format("last_day + INTERVAL 1 DAY")} - INTERVAL 1 {unit} AS DATE)
                AS last_complete
        FROM span
    ), periods AS (
        SELECT CAST(s.generate_series AS DATE) AS period_start
        FROM bounds, generate_series(touched_first, touched_last, INTERVAL 1 {unit}) AS s
    ), sales AS (
        SELECT {trunc.format("order_date")} AS period_start,
            -- exact sums: identical in any thread order
            CAST(sum(CAST(amount AS DECIMAL(38, 6))) FILTER (WHERE is_product) AS DOUBLE)
                AS revenue,
            count(DISTINCT order_id) FILTER (WHERE {PURCHASE}) AS orders,
            count(DISTINCT customer_key) FILTER (WHERE {PURCHASE}) AS customers
        FROM lines, bounds
        WHERE order_date BETWEEN first_day AND last_day
        GROUP BY ALL
    )
    SELECT p.period_start,
        coalesce(revenue, 0.0) AS revenue,
        coalesce(orders, 0) AS orders,
        coalesce(customers, 0) AS customers,
        p.period_start BETWEEN first_complete AND last_complete AS complete,
        first_day, last_day
    FROM periods p CROSS JOIN bounds LEFT JOIN sales USING (period_start)
    ORDER BY p.period_start
    """


@dataclass(frozen=True)
class SalesSeries:
    """Complete-period sales series and what was dropped to get it.

    ``frame`` is indexed by ``period_start`` (a ``DatetimeIndex`` with the period's frequency)
    with columns ``revenue``, ``orders`` and ``customers``; ``dropped_start`` and
    ``dropped_end`` count the partial periods left out at each end (0 or 1).
    """

    frame: pd.DataFrame
    period: str
    first_day: dt.date
    last_day: dt.date
    dropped_start: int
    dropped_end: int

    @property
    def note(self) -> str:
        """One sentence on the periods kept and the partial ones dropped (report's language)."""
        _, _, one, many = PERIODS[self.period]
        one, many = tr(one), tr(many)
        n = len(self.frame)
        kept = tr("{n} complete {unit}", n=n, unit=one if n == 1 else many)
        if n:
            last_end = self.frame.index[-1] + self.frame.index.freq - pd.Timedelta(days=1)
            kept += tr(
                " from {start} to {end}", start=self.frame.index[0].date(), end=last_end.date()
            )
        parts = []
        # the whole phrase per unit: Chinese counts a week, a day and a month differently
        partial = {
            "day": tr("a partial day"),
            "week": tr("a partial week"),
            "month": tr("a partial month"),
        }[PERIODS[self.period][2]]
        if self.dropped_start:
            parts.append(
                tr("{partial} at the start (data from {day})", partial=partial, day=self.first_day)
            )
        if self.dropped_end:
            parts.append(
                tr("{partial} at the end (data to {day})", partial=partial, day=self.last_day)
            )
        dropped = (
            tr("; dropped {parts}", parts=tr(" and ").join(parts))
            if parts
            else tr("; no partial period dropped")
        )
        return kept + dropped + tr(".")


def series(
    con: Any,
    transactions: str | Path,
    period: str = "W",
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> SalesSeries:
    """Run :func:`series_sql` and keep the complete periods.

    Raises
    ------
    ValueError
        When the transactions file has no lines in the span.
    """
    _, freq, _, many = _period(period)
    raw = con.execute(series_sql(transactions, period, start=start, end=end)).df()
    if raw.empty:
        raise ValueError(f"no transaction lines in {transactions}: cannot build a {many} series")
    complete = raw["complete"].to_numpy(dtype=bool)
    kept = raw.loc[complete]
    if complete.any():
        first, last = np.flatnonzero(complete)[[0, -1]]
        dropped_start, dropped_end = int(first), int(len(raw) - 1 - last)
    else:
        dropped_start, dropped_end = len(raw), 0
    index = pd.DatetimeIndex(pd.to_datetime(kept["period_start"]), name="period_start", freq=freq)
    frame = pd.DataFrame(
        {
            "revenue": kept["revenue"].to_numpy(dtype=float),
            "orders": kept["orders"].to_numpy(dtype=np.int64),
            "customers": kept["customers"].to_numpy(dtype=np.int64),
        },
        index=index,
    )
    first_day, last_day = (pd.Timestamp(raw[c].iloc[0]).date() for c in ("first_day", "last_day"))
    return SalesSeries(frame, period, first_day, last_day, dropped_start, dropped_end)


# ------------------------------------------------------------------------------- helpers
def _check_series(y: Any, what: str = "y") -> pd.Series:
    """A float series with a regular DatetimeIndex and no missing values."""
    if not isinstance(y, pd.Series) or not isinstance(y.index, pd.DatetimeIndex):
        raise ValueError(f"{what} must be a pandas Series indexed by period start (DatetimeIndex)")
    if y.index.freq is None:
        freq = pd.infer_freq(y.index) if len(y) >= 3 else None
        if freq is None:
            raise ValueError(
                f"{what} needs a regular DatetimeIndex with a frequency (use SalesSeries.frame)"
            )
        y = y.copy()
        y.index = pd.DatetimeIndex(y.index, freq=freq)
    values = y.to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise ValueError(f"{what} has missing or infinite values: a period without sales is 0")
    return pd.Series(values, index=y.index, name=y.name)


def _future_index(y: pd.Series, horizon: int) -> pd.DatetimeIndex:
    idx = pd.date_range(y.index[-1], periods=int(horizon) + 1, freq=y.index.freq)[1:]
    return pd.DatetimeIndex(idx, name=y.index.name or "period_start")


def _check_horizon(horizon: int) -> int:
    if int(horizon) < 1:
        raise ValueError(f"horizon={horizon} must be at least 1 period")
    return int(horizon)


def _too_short(model: str, n: int, need: int, why: str) -> ValueError:
    return ValueError(f"{model} needs at least {need} periods ({why}); the series has {n}")


def _normal_intervals(index: pd.DatetimeIndex, mean: np.ndarray, sd: np.ndarray) -> pd.DataFrame:
    """Mean and symmetric normal intervals at :data:`LEVELS`."""
    out = {"mean": mean}
    for level in LEVELS:
        z = stats.norm.ppf(0.5 + level / 200)
        out[f"lower_{level}"] = mean - z * sd
        out[f"upper_{level}"] = mean + z * sd
    return pd.DataFrame(out, index=index)


def _check_fitted(est: Any) -> None:
    if not hasattr(est, "spec_"):
        raise RuntimeError(
            f"this {type(est).__name__} is not fitted yet: call fit(y) before predict(horizon)"
        )


def mase_scale(y: pd.Series, m: int | None) -> tuple[float, str]:
    """In-sample MAE of the seasonal naive forecast (lag m) or, without a full season, the naive.

    Returns
    -------
    (scale, scaled_by)
        The MAE and the words naming the forecast it comes from.

    Raises
    ------
    ValueError
        When the series has fewer than 2 periods or the MAE is 0 (a constant series).
    """
    v = np.asarray(y, dtype=float)
    lag = m if m and len(v) > m else 1
    if len(v) <= lag:
        raise _too_short("MASE", len(v), lag + 1, "one lagged difference to scale by")
    scale = float(np.mean(np.abs(v[lag:] - v[:-lag])))
    if scale == 0:
        raise ValueError(
            f"the training series has no change at lag {lag}: MASE is undefined (constant series)"
        )
    return scale, f"seasonal naive (lag {lag})" if lag > 1 else "naive (lag 1)"


# ------------------------------------------------------------------------------ baselines
class Naive(BaseEstimator):
    """Last value carried forward.

    Intervals from the one-step residuals e_t = y_t - y_{t-1}: sd_h = sigma * sqrt(h), with sigma
    their root mean square (no parameters are fitted, so no degrees-of-freedom correction).
    """

    def min_length(self) -> int:
        """Periods ``fit`` needs."""
        return 2

    def fit(self, y: pd.Series) -> Naive:
        """Store the last value and the residual scale; returns self."""
        y = _check_series(y)
        if len(y) < self.min_length():
            raise _too_short(NAIVE, len(y), self.min_length(), "one residual for the intervals")
        v = y.to_numpy()
        self.y_ = y
        self.sigma_ = float(np.sqrt(np.mean(np.diff(v) ** 2)))
        self.spec_ = "y[t-1]"
        return self

    def predict(self, horizon: int) -> pd.DataFrame:
        """Forecast and intervals for ``horizon`` periods after the training data."""
        _check_fitted(self)
        h = np.arange(1, _check_horizon(horizon) + 1)
        mean = np.full(len(h), self.y_.iloc[-1])
        return _normal_intervals(_future_index(self.y_, len(h)), mean, self.sigma_ * np.sqrt(h))

    def pinned(self) -> Naive:
        """An unfitted copy (nothing to choose)."""
        return clone(self)


class SeasonalNaive(BaseEstimator):
    """The value one season earlier: y_{T+h} = y_{T+h-m(k+1)}, k = floor((h-1)/m).

    Intervals from the residuals e_t = y_t - y_{t-m}: sd_h = sigma * sqrt(k + 1), sigma their root
    mean square.

    Parameters
    ----------
    m
        Season length in periods.
    """

    def __init__(self, m: int):
        self.m = m

    def min_length(self) -> int:
        """Periods ``fit`` needs: a season and one more (for one residual)."""
        return int(self.m) + 1

    def fit(self, y: pd.Series) -> SeasonalNaive:
        """Store the last season and the residual scale; returns self."""
        y = _check_series(y)
        m = int(self.m)
        if m < 1:
            raise ValueError(f"m={self.m} must be a positive season length")
        if len(y) < self.min_length():
            raise _too_short(SEASONAL_NAIVE, len(y), m + 1, f"a season of {m} and one residual")
        v = y.to_numpy()
        self.y_ = y
        self.sigma_ = float(np.sqrt(np.mean((v[m:] - v[:-m]) ** 2)))
        self.spec_ = f"y[t-{m}]"
        return self

    def predict(self, horizon: int) -> pd.DataFrame:
        """Forecast and intervals for ``horizon`` periods after the training data."""
        _check_fitted(self)
        m = int(self.m)
        h = np.arange(1, _check_horizon(horizon) + 1)
        last = self.y_.to_numpy()[-m:]
        k = (h - 1) // m
        mean = last[(h - 1) % m]
        return _normal_intervals(_future_index(self.y_, len(h)), mean, self.sigma_ * np.sqrt(k + 1))

    def pinned(self) -> SeasonalNaive:
        """An unfitted copy (nothing to choose)."""
        return clone(self)


# ------------------------------------------------------------------------------------ ETS
@dataclass(frozen=True)
class EtsSpec:
    """An additive-error ETS form: trend ``'N'``, ``'A'`` or ``'Ad'`` (damped); season ``'N'``/``'A'``."""

    trend: str = "N"
    seasonal: str = "N"

    def __str__(self) -> str:
        return f"ETS(A,{self.trend},{self.seasonal})"


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the optimiser chatter of statsmodels fits inside a candidate search.

    Non-convergence is not lost: candidates whose fit did not converge are skipped (see
    :func:`_converged`), and the search fails loudly when none is left.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)  # start-parameter notes of SARIMAX
        yield


def _converged(result: Any) -> bool:
    retvals = getattr(result, "mle_retvals", None) or {}
    return bool(retvals.get("converged", True)) and math.isfinite(float(result.aic))


def _best(fits: list[tuple[Any, Any]], model: str, n: int) -> tuple[Any, Any]:
    """The (spec, result) with the lowest AIC; the first on a tie (deterministic)."""
    ok = [(s, r) for s, r in fits if r is not None and _converged(r)]
    if not ok:
        raise RuntimeError(f"no {model} candidate converged on the {n} periods given")
    return min(ok, key=lambda sr: float(sr[1].aic))


class Ets(BaseEstimator):
    """Exponential smoothing (statsmodels ``ETSModel``), additive errors, form chosen by AIC.

    The grid is trend None / additive / additive damped, times season None / additive when ``m``
    is given (and ``m`` <= :data:`MAX_STATE_SEASON`, which needs two full seasons of data).
    All-additive forms have exact (analytic) prediction intervals, so nothing is simulated.

    Parameters
    ----------
    m
        Season length, or None for non-seasonal forms only.
    spec
        Fit this form only (no search), e.g. from :meth:`pinned`.
    """

    def __init__(self, m: int | None = None, spec: EtsSpec | None = None):
        self.m = m
        self.spec = spec

    def min_length(self) -> int:
        """Periods ``fit`` needs (10 for the states, two seasons for a seasonal form)."""
        seasonal = self.m and (self.spec is None or self.spec.seasonal != "N")
        return max(10, math.ceil(SEASONAL_MIN_CYCLES * self.m)) if seasonal else 10

    def _grid(self) -> list[EtsSpec]:
        if self.spec is not None:
            return [self.spec]
        seasons = ["N", "A"] if self.m else ["N"]
        return [EtsSpec(t, s) for s in seasons for t in ("N", "A", "Ad")]

    def _fit_one(self, v: np.ndarray, spec: EtsSpec) -> Any:
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        seasonal = spec.seasonal == "A"
        model = ETSModel(
            pd.Series(v),  # a RangeIndex: out-of-sample prediction needs an index
            error="add",
            trend=None if spec.trend == "N" else "add",
            damped_trend=spec.trend == "Ad",
            seasonal="add" if seasonal else None,
            seasonal_periods=int(self.m) if seasonal else None,
        )
        try:
            return model.fit(disp=False)
        except (ValueError, np.linalg.LinAlgError):
            return None

    def fit(self, y: pd.Series) -> Ets:
        """Choose the form by AIC and fit it; returns self."""
        y = _check_series(y)
        if self.m is not None and int(self.m) > MAX_STATE_SEASON:
            raise ValueError(
                f"m={self.m}: ETS states hold seasons of at most {MAX_STATE_SEASON} periods; "
                "use m=None (and SARIMAX with Fourier terms for the season)"
            )
        if len(y) < self.min_length():
            why = f"two seasons of {self.m}" if self.min_length() > 10 else "the initial states"
            raise _too_short(ETS, len(y), self.min_length(), why)
        v = y.to_numpy()
        with _quiet():
            fits = [(s, self._fit_one(v, s)) for s in self._grid()]
        self.chosen_, self.result_ = _best(fits, ETS, len(v))
        self.aic_ = float(self.result_.aic)
        self.y_ = y
        self.spec_ = str(self.chosen_)
        return self

    def predict(self, horizon: int) -> pd.DataFrame:
        """Forecast and exact intervals for ``horizon`` periods after the training data."""
        _check_fitted(self)
        h = _check_horizon(horizon)
        n = len(self.y_)
        pred = self.result_.get_prediction(start=n, end=n + h - 1)
        out = {"mean": np.asarray(pred.predicted_mean, dtype=float)}
        for level in LEVELS:
            frame = pred.summary_frame(alpha=1 - level / 100)
            out[f"lower_{level}"] = frame["pi_lower"].to_numpy(dtype=float)
            out[f"upper_{level}"] = frame["pi_upper"].to_numpy(dtype=float)
        return pd.DataFrame(out, index=_future_index(self.y_, h))

    def pinned(self) -> Ets:
        """An unfitted copy restricted to the chosen form."""
        _check_fitted(self)
        return Ets(m=self.m, spec=self.chosen_)


# -------------------------------------------------------------------------------- SARIMAX
@dataclass(frozen=True)
class ArimaBounds:
    """Largest orders the SARIMAX search may choose (from params), and Fourier harmonics.

    ``p, d, q``: non-seasonal AR, differencing, MA; ``P, D, Q``: seasonal ones (seasons up to
    :data:`MAX_STATE_SEASON`); ``fourier``: harmonics K for longer seasons.
    """

    p: int = 2
    d: int = 1
    q: int = 2
    P: int = 1
    D: int = 1
    Q: int = 1
    fourier: int = 3

    def __post_init__(self) -> None:
        bad = {k: v for k, v in vars(self).items() if not isinstance(v, int) or v < 0}
        if bad:
            raise ValueError(f"ARIMA bounds must be non-negative integers (got {bad})")


@dataclass(frozen=True)
class ArimaSpec:
    """A SARIMAX form: orders, trend (``'n'``, ``'c'``, ``'ct'``) and Fourier harmonics."""

    order: tuple[int, int, int] = (0, 0, 0)
    seasonal_order: tuple[int, int, int, int] = (0, 0, 0, 0)
    trend: str = "c"
    fourier: int = 0
    cycle: float = 0.0

    def __str__(self) -> str:
        p, d, q = self.order
        text = f"ARIMA({p},{d},{q})"
        P, D, Q, s = self.seasonal_order
        if s:
            text += f"({P},{D},{Q})[{s}]"
        terms = {"n": "", "c": " + drift" if d + self.seasonal_order[1] else " + constant"}
        terms["ct"] = " + linear trend"
        text += terms[self.trend]
        if self.fourier:
            text += f" + Fourier(period {self.cycle:g}, K={self.fourier})"
        return text


def fourier_terms(start: int, length: int, cycle: float, k: int) -> np.ndarray:
    """Sine and cosine of harmonics 1..k of ``cycle`` at time points start .. start + length - 1.

    Columns sin(2 pi j t / cycle), cos(2 pi j t / cycle) for j = 1..k (statsmodels ``Fourier``),
    shape (length, 2k).
    """
    from statsmodels.tsa.deterministic import Fourier

    index = pd.RangeIndex(start + length)
    return Fourier(cycle, k).in_sample(index).to_numpy()[start:]


def seasonal_strength(y: pd.Series, m: int) -> float:
    """Strength of the season, max(0, 1 - var(remainder) / var(season + remainder)), by STL."""
    d = decompose(y, m)
    return float(max(0.0, 1 - np.var(d["resid"]) / np.var(d["seasonal"] + d["resid"])))


def _ndiffs(v: np.ndarray, max_d: int) -> int:
    """Differences until the KPSS test (level stationarity, 5 %) no longer rejects."""
    from statsmodels.tsa.stattools import kpss

    d = 0
    while d < max_d and len(v) > 10:
        with warnings.catch_warnings():
            # p-values outside KPSS's table are clipped to 0.01 / 0.1: the decision is unchanged
            warnings.simplefilter("ignore", InterpolationWarning)
            # statsmodels 0.15 announces a result object in place of the tuple: read either
            warnings.simplefilter("ignore", FutureWarning)
            res = kpss(v, regression="c", nlags="auto")
        p_value = float(getattr(res, "pvalue", None) or res[1])
        if p_value >= 0.05:
            break
        v = np.diff(v)
        d += 1
    return d


class Sarimax(BaseEstimator):
    """SARIMAX (statsmodels) with orders chosen by AIC inside ``bounds``.

    Differencing is decided by tests, as AIC cannot compare models with different differencing:
    seasonal D = 1 when the STL seasonal strength is at least 0.64, then d by KPSS. The rest is
    chosen by AIC in two stages (the full grid is too slow for a backtest): first the trend and
    the season with ARMA(1, 1), then p and q with that trend and season. The trend is a
    constant or linear trend without differencing and a drift (or nothing) with one difference.

    The season: seasonal orders (P, D, Q) for seasons up to :data:`MAX_STATE_SEASON` periods
    (days of the week, months of the year); for the 52-week year, K harmonics of the exact
    365.25 / 7-week cycle as regressors (dynamic harmonic regression), which is far faster than a
    52-lag seasonal ARMA, needs fewer data (2K coefficients, not a free shape) and follows the
    calendar year, which is not a whole number of weeks.

    Parameters
    ----------
    m
        Season length, or None for a non-seasonal model.
    bounds
        Largest orders and harmonics the search may choose.
    spec
        Fit this form only (no search), e.g. from :meth:`pinned`.
    """

    def __init__(
        self, m: int | None = None, bounds: ArimaBounds | None = None, spec: ArimaSpec | None = None
    ):
        self.m = m
        self.bounds = bounds
        self.spec = spec

    @property
    def _fourier(self) -> bool:
        return bool(self.m) and int(self.m) > MAX_STATE_SEASON

    def min_length(self) -> int:
        """Periods ``fit`` needs (a season and a half with Fourier terms, else two seasons)."""
        if not self.m:
            return 10
        cycles = FOURIER_MIN_CYCLES if self._fourier else SEASONAL_MIN_CYCLES
        return max(10, math.ceil(cycles * int(self.m)))

    def _search_spec(
        self, v: np.ndarray, y: pd.Series
    ) -> tuple[list[ArimaSpec], list[tuple[int, int, int]]]:
        """Stage-1 candidate specs and the stage-2 (p, d, q) orders (used with the stage-1 winner)."""
        b = self.bounds or ArimaBounds()
        m = int(self.m) if self.m else 0
        D = 0
        if m and not self._fourier and b.D > 0:
            D = int(seasonal_strength(y, m) >= SEASONAL_STRENGTH_DIFF)
        w = v[m:] - v[:-m] if D else v
        d = _ndiffs(w, b.d)
        trends = {0: ["c", "ct"], 1: ["n", "c"]}.get(d + D, ["n"])
        p0, q0 = min(1, b.p), min(1, b.q)
        if self._fourier:
            kmax = min(b.fourier, (m - 1) // 2)
            seasons = [(0, (0, 0, 0, 0))] + [(k, (0, 0, 0, 0)) for k in range(1, kmax + 1)]
        elif m:
            seasons = [(0, (P, D, Q, m)) for P in range(b.P + 1) for Q in range(b.Q + 1)]
        else:
            seasons = [(0, (0, 0, 0, 0))]
        cycle = CYCLE.get(m, float(m)) if self._fourier else 0.0
        return (
            [ArimaSpec((p0, d, q0), so, t, k, cycle) for t in trends for k, so in seasons],
            [(p, d, q) for p in range(b.p + 1) for q in range(b.q + 1)],
        )

    def _fit_one(self, v: np.ndarray, spec: ArimaSpec) -> Any:
        from statsmodels.tsa.statespace.sarimax import SARIMAX as _SARIMAX

        exog = fourier_terms(0, len(v), spec.cycle, spec.fourier) if spec.fourier else None
        try:
            model = _SARIMAX(
                v, exog=exog, order=spec.order, seasonal_order=spec.seasonal_order, trend=spec.trend
            )
            # lbfgs's default 50 iterations leave seasonal fits unconverged
            return model.fit(disp=False, maxiter=200)
        except (ValueError, np.linalg.LinAlgError):
            return None

    def fit(self, y: pd.Series) -> Sarimax:
        """Choose the form by AIC (unless ``spec`` is given) and fit it; returns self."""
        y = _check_series(y)
        if len(y) < self.min_length():
            why = (
                f"{FOURIER_MIN_CYCLES:g} seasons of {self.m} for Fourier terms"
                if self._fourier
                else f"two seasons of {self.m}"
                if self.m
                else "the ARMA estimates"
            )
            raise _too_short(SARIMAX, len(y), self.min_length(), why)
        v = y.to_numpy()
        with _quiet():
            if self.spec is not None:
                fits = [(self.spec, self._fit_one(v, self.spec))]
            else:
                stage1, orders = self._search_spec(v, y)
                fits = [(s, self._fit_one(v, s)) for s in stage1]
                best, _ = _best(fits, SARIMAX, len(v))
                for order in orders:
                    if order == best.order:
                        continue
                    s = ArimaSpec(order, best.seasonal_order, best.trend, best.fourier, best.cycle)
                    fits.append((s, self._fit_one(v, s)))
            self.chosen_, self.result_ = _best(fits, SARIMAX, len(v))
        self.aic_ = float(self.result_.aic)
        self.candidates_ = len(fits)
        self.y_ = y
        self.spec_ = str(self.chosen_)
        return self

    def predict(self, horizon: int) -> pd.DataFrame:
        """Forecast and intervals for ``horizon`` periods after the training data."""
        _check_fitted(self)
        h = _check_horizon(horizon)
        s = self.chosen_
        exog = fourier_terms(len(self.y_), h, s.cycle, s.fourier) if s.fourier else None
        pred = self.result_.get_forecast(h, exog=exog)
        out = {"mean": np.asarray(pred.predicted_mean, dtype=float)}
        for level in LEVELS:
            ci = np.asarray(pred.conf_int(alpha=1 - level / 100), dtype=float)
            out[f"lower_{level}"], out[f"upper_{level}"] = ci[:, 0], ci[:, 1]
        return pd.DataFrame(out, index=_future_index(self.y_, h))

    def pinned(self) -> Sarimax:
        """An unfitted copy restricted to the chosen form."""
        _check_fitted(self)
        return Sarimax(m=self.m, bounds=self.bounds, spec=self.chosen_)


# ------------------------------------------------------------------------ model selection
def candidate_models(
    period: str, n: int, *, bounds: ArimaBounds | None = None, lang: str | None = None
) -> tuple[dict[str, BaseEstimator], list[str]]:
    """The chapter's models for a training series of ``n`` periods, and what falls back and why.

    ``n`` is the shortest training part the models will see (in a backtest, the one before the
    first origin: :func:`train_length`), so a model has the same form in the backtest and in the
    final forecast.

    Returns
    -------
    (models, notes)
        Name -> unfitted model, in the order naive, seasonal naive, ETS, SARIMAX; one sentence per
        model that lost its season (or was left out), naming what it needs, in ``lang`` (the
        report's language when None; the artifact records them in English).
    """
    m = season_length(period)
    many = tr(PERIODS[period][3], lang)
    notes: list[str] = []
    models: dict[str, BaseEstimator] = {NAIVE: Naive()}
    snaive = SeasonalNaive(m)
    if n >= snaive.min_length():
        models[SEASONAL_NAIVE] = snaive
    else:
        notes.append(
            tr(
                "{model} left out: it needs a season and a period ({need} {many}); the training "
                "data have {n}.",
                lang,
                model=SEASONAL_NAIVE,
                need=m + 1,
                many=many,
                n=n,
            )
        )
    without = "{model} without season: {why}."
    ets_m: int | None = m
    if m > MAX_STATE_SEASON:
        notes.append(
            tr(
                "{ets} without season: its states hold seasons of at most {most} periods, not "
                "{m} {many} (the season is left to {sarimax}'s Fourier terms).",
                lang,
                ets=ETS,
                most=MAX_STATE_SEASON,
                m=m,
                many=many,
                sarimax=SARIMAX,
            )
        )
        ets_m = None
    elif why := season_note(n, period, lang=lang):
        notes.append(tr(without, lang, model=ETS, why=why))
        ets_m = None
    models[ETS] = Ets(m=ets_m)
    sarimax = Sarimax(m=m, bounds=bounds)
    cycles = FOURIER_MIN_CYCLES if sarimax._fourier else SEASONAL_MIN_CYCLES
    if why := season_note(n, period, cycles=cycles, lang=lang):
        notes.append(tr(without, lang, model=SARIMAX, why=why))
        sarimax = Sarimax(m=None, bounds=bounds)
    models[SARIMAX] = sarimax
    return models, notes


# ------------------------------------------------------------------------------- backtest
def train_length(n: int, *, origins: int, horizon: int, step: int = 1) -> int:
    """Length of the training part before the first of ``origins`` rolling origins."""
    return int(n) - int(horizon) - (int(origins) - 1) * int(step)


def backtest_forecasts(
    y: pd.Series,
    models: Mapping[str, BaseEstimator],
    *,
    origins: int,
    horizon: int,
    step: int = 1,
    m: int | None = None,
    reselect: bool = True,
) -> pd.DataFrame:
    """Every backtest forecast: one row per model, origin and step.

    Columns ``model``, ``spec``, ``origin`` (first forecast period), ``step`` (1..horizon),
    ``period_start``, ``actual``, the :data:`INTERVAL_COLUMNS`, ``scale`` (the origin's MASE
    denominator, :func:`mase_scale` with season ``m``) and ``scaled_by``. With ``reselect`` the
    specification is searched anew at every origin on the data before it (the procedure the
    final :func:`forecast` runs); without, the first origin's choice is kept and only its
    parameters are re-estimated (faster; the first choice still sees no test window).

    Raises
    ------
    ValueError
        When the series is too short for the first origin (the message names the model that
        needs the most data and how many periods it needs).
    """
    y = _check_series(y)
    h, origins, step = _check_horizon(horizon), int(origins), int(step)
    if origins < 1 or step < 1:
        raise ValueError(f"origins={origins} and step={step} must be at least 1")
    n0 = train_length(len(y), origins=origins, horizon=h, step=step)
    needs = {name: model.min_length() for name, model in models.items()}
    name = max(needs, key=lambda k: needs[k]) if needs else None
    if name is None:
        raise ValueError("no models to backtest")
    if n0 < max(needs[name], 2):
        raise ValueError(
            f"the series has {len(y)} periods: {origins} origins {step} apart with horizon {h} "
            f"leave {n0} for training before the first origin, but {name} needs "
            f"{needs[name]}; need at least {needs[name] + len(y) - n0} periods"
        )
    parts, failed = [], {}
    for name, model in models.items():
        current = model
        mine = []
        for i in range(origins):
            cut = n0 + i * step
            train, test = y.iloc[:cut], y.iloc[cut : cut + h]
            try:
                fitted = _fit_at_origin(model, current, train)
                scale, scaled_by = mase_scale(train, m)
            except (RuntimeError, ValueError, np.linalg.LinAlgError) as err:
                failed[name] = f"{name} failed at the origin {test.index[0].date()}: {err}"
                mine = []
                break
            if i == 0 and not reselect:
                current = fitted.pinned()
            fc = fitted.predict(h)
            part = fc.reset_index(names="period_start")
            part.insert(0, "model", name)
            part.insert(1, "spec", fitted.spec_)
            part.insert(2, "origin", test.index[0])
            part.insert(3, "step", np.arange(1, h + 1))
            part.insert(5, "actual", test.to_numpy())
            part["scale"], part["scaled_by"] = scale, scaled_by
            mine.append(part)
        parts += mine
    if not parts:
        raise RuntimeError("every model failed in the backtest: " + "; ".join(failed.values()))
    out = pd.concat(parts, ignore_index=True)
    out.attrs["failed"] = failed
    return out


def _fit_at_origin(model: BaseEstimator, current: BaseEstimator, train: pd.Series) -> Any:
    """Fit ``current`` (a pinned specification or the full search) on one origin's training part.

    A pinned specification that fails to converge on a later origin falls back to the full
    search there (what the final forecast would run), so one awkward window does not end the
    model's backtest.
    """
    try:
        return clone(current).fit(train)
    except (RuntimeError, ValueError, np.linalg.LinAlgError):
        if current is model:
            raise
        return clone(model).fit(train)


def score(forecasts: pd.DataFrame) -> pd.DataFrame:
    """The backtest table: one row per model, best MASE first.

    Columns ``model``, ``spec`` (the distinct specifications fitted, joined by "; "), ``mase``,
    ``mape`` (%), ``mae``, ``rmse``, ``coverage_80`` and ``coverage_95`` (share of actuals inside
    the intervals), ``zero_actuals`` (ignored by MAPE), ``origins``, ``horizon``, ``scaled_by``
    and ``rank`` (1 = lowest MASE; ties keep the input order). ``table.attrs["failed"]`` maps a
    model left out (it failed at an origin even after a fresh search there) to the reason.
    """
    f = forecasts
    err = (f["actual"] - f["mean"]).abs()
    nonzero = f["actual"] != 0
    g = f.assign(
        ase=err / f["scale"],
        ape=(100 * err / f["actual"].abs()).where(nonzero),
        ae=err,
        se=err**2,
        zero=~nonzero,
        in80=(f["lower_80"] <= f["actual"]) & (f["actual"] <= f["upper_80"]),
        in95=(f["lower_95"] <= f["actual"]) & (f["actual"] <= f["upper_95"]),
    ).groupby("model", sort=False)
    table = pd.DataFrame(
        {
            "spec": g["spec"].agg(lambda s: "; ".join(dict.fromkeys(s))),
            "mase": g["ase"].mean(),
            "mape": g["ape"].mean(),
            "mae": g["ae"].mean(),
            "rmse": np.sqrt(g["se"].mean()),
            "coverage_80": g["in80"].mean(),
            "coverage_95": g["in95"].mean(),
            "zero_actuals": g["zero"].sum().astype(int),
            "origins": g["origin"].nunique(),
            "horizon": g["step"].max(),
            "scaled_by": g["scaled_by"].agg(lambda s: "; ".join(dict.fromkeys(s))),
        }
    ).reset_index()
    table = table.sort_values("mase", kind="stable", na_position="last").reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    table.attrs["failed"] = dict(forecasts.attrs.get("failed", {}))
    return table


def backtest(
    y: pd.Series,
    models: Mapping[str, BaseEstimator],
    *,
    origins: int,
    horizon: int,
    step: int = 1,
    m: int | None = None,
    reselect: bool = True,
) -> pd.DataFrame:
    """Rolling-origin backtest table (:func:`score` of :func:`backtest_forecasts`)."""
    return score(
        backtest_forecasts(
            y, models, origins=origins, horizon=horizon, step=step, m=m, reselect=reselect
        )
    )


def choose(table: pd.DataFrame, by: str = "mase") -> str:
    """The model with the lowest ``by`` in a backtest table (the first on a tie)."""
    ok = table.dropna(subset=[by])
    if ok.empty:
        raise ValueError(f"no model in the backtest table has a {by}")
    return str(ok.sort_values(by, kind="stable").iloc[0]["model"])


def forecast(y: pd.Series, model: BaseEstimator, horizon: int) -> pd.DataFrame:
    """Fit a fresh copy of ``model`` on all of ``y`` and forecast ``horizon`` periods.

    Returns the :data:`INTERVAL_COLUMNS` indexed by period start, and ``spec``.
    """
    fitted = clone(model).fit(y)
    return fitted.predict(horizon).assign(spec=fitted.spec_)


# -------------------------------------------------------------------------- decomposition
def decompose(y: pd.Series, m: int, *, robust: bool = True) -> pd.DataFrame:
    """STL decomposition: columns ``observed``, ``trend``, ``seasonal``, ``resid`` (y's index).

    Raises
    ------
    ValueError
        When the series is shorter than two seasons.
    """
    from statsmodels.tsa.seasonal import STL

    y = _check_series(y)
    m = int(m)
    need = math.ceil(SEASONAL_MIN_CYCLES * m)
    if m < 2 or len(y) < need:
        raise _too_short("STL", len(y), max(need, 4), f"two seasons of {m}")
    res = STL(y.to_numpy(), period=m, robust=robust).fit()
    return pd.DataFrame(
        {
            "observed": y.to_numpy(),
            "trend": res.trend,
            "seasonal": res.seasonal,
            "resid": res.resid,
        },
        index=y.index,
    )


def seasonal_profile(seasonal: pd.Series, by: str) -> pd.Series:
    """Mean seasonal component per weekday, ISO week or month of each period's start.

    ``by`` is ``'weekday'`` (Mon..Sun, in that order), ``'week'`` (ISO week 1..53) or ``'month'``
    (1..12).
    """
    idx = pd.DatetimeIndex(seasonal.index)
    keys = {
        "weekday": lambda: pd.Categorical(
            np.asarray(_WEEKDAYS)[idx.day_of_week], categories=_WEEKDAYS, ordered=True
        ),
        "week": lambda: idx.isocalendar().week.to_numpy(dtype=int),
        "month": lambda: idx.month.to_numpy(),
    }
    if by not in keys:
        raise ValueError(f"by must be one of {', '.join(map(repr, keys))} (got {by!r})")
    s = pd.Series(np.asarray(seasonal, dtype=float), index=idx)
    return s.groupby(keys[by](), observed=True).mean().rename_axis(by)


def seasonal_peak(seasonal: pd.Series, by: str) -> Any:
    """The weekday name, ISO week or month where the mean seasonal component is highest."""
    return seasonal_profile(seasonal, by).idxmax()


@dataclass(frozen=True)
class YearlyCycle:
    """The annual sinusoid closest to a seasonal component.

    ``peak_day``: day of the year (1 = 1 January) where it peaks; ``amplitude``: its height above
    the mean (series units); ``relative_amplitude``: amplitude / mean trend level.
    """

    peak_day: float
    amplitude: float
    relative_amplitude: float

    @property
    def peak_date(self) -> str:
        """The peak day as a date in a non-leap year, e.g. ``'26 Nov'``."""
        day = dt.date(2023, 1, 1) + dt.timedelta(days=round(self.peak_day) % 365 - 1)
        return f"{day.day} {day:%b}"


def yearly_cycle(decomposition: pd.DataFrame) -> YearlyCycle:
    """Least-squares fit of c + a cos(2 pi u / 365.25) + b sin(2 pi u / 365.25) to the seasonal part.

    u is the day of the year of each period's midpoint (so a weekly or monthly series is placed
    where its days lie). A smooth yearly season is read from the fitted phase rather than from
    the single highest period, which is noisy with only two years of data.

    Parameters
    ----------
    decomposition
        A :func:`decompose` frame (``seasonal`` and ``trend`` columns) of a daily, weekly or
        monthly series.
    """
    idx = pd.DatetimeIndex(decomposition.index)
    if idx.freq is None or len(idx) < 4:
        raise ValueError("yearly_cycle needs a decomposition indexed by a regular DatetimeIndex")
    ends = idx + idx.freq
    mid = idx + (ends - idx) / 2
    u = 2 * np.pi * (mid.day_of_year.to_numpy() - 1 + mid.hour.to_numpy() / 24) / 365.25
    design = np.column_stack([np.ones(len(u)), np.cos(u), np.sin(u)])
    coef = np.linalg.lstsq(design, decomposition["seasonal"].to_numpy(dtype=float), rcond=None)[0]
    amplitude = float(np.hypot(coef[1], coef[2]))
    peak = float(np.arctan2(coef[2], coef[1]) % (2 * np.pi) * 365.25 / (2 * np.pi)) + 1
    level = float(np.mean(decomposition["trend"]))
    return YearlyCycle(peak, amplitude, amplitude / level if level else float("nan"))


# ---------------------------------------------------------------------------------- plots
def plot_forecast(
    history: pd.Series, fc: pd.DataFrame, *, ax: Axes | None = None, last: int | None = None
) -> Axes:
    """History (the last ``last`` periods), the forecast and its 80 % and 95 % bands."""
    import matplotlib.pyplot as plt

    from ..plots import PALETTE

    ax = ax if ax is not None else plt.subplots()[1]
    h = history.iloc[-last:] if last else history
    ax.plot(h.index, h.to_numpy(), color=PALETTE[0], label=tr("actual"))
    ax.fill_between(fc.index, fc["lower_95"], fc["upper_95"], color=PALETTE[1], alpha=0.2,
                    label=tr("95 % interval"))  # fmt: skip
    ax.fill_between(fc.index, fc["lower_80"], fc["upper_80"], color=PALETTE[1], alpha=0.35,
                    label=tr("80 % interval"))  # fmt: skip
    ax.plot(fc.index, fc["mean"], color=PALETTE[3], ls="--", label=tr("forecast"))
    ax.legend(frameon=False, loc="upper left", fontsize=8)
    return ax


def plot_profile(profile: pd.Series, *, ax: Axes | None = None) -> Axes:
    """Bars of a :func:`seasonal_profile` (mean seasonal effect per weekday, week or month)."""
    import matplotlib.pyplot as plt

    from ..plots import NEUTRAL, PALETTE

    ax = ax if ax is not None else plt.subplots()[1]
    ax.bar([tr(str(k)) for k in profile.index], profile.to_numpy(), color=PALETTE[0])
    ax.axhline(0, color=NEUTRAL, lw=0.8)
    ax.set_xlabel(tr(profile.index.name) if profile.index.name else "")
    ax.set_ylabel(tr("seasonal effect"))
    return ax
