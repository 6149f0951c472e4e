"""Customer lifetime value: BG/NBD purchase counts and Gamma-Gamma spend, by maximum likelihood.

The models (Fader, Hardie and Lee 2005, "Counting Your Customers the Easy Way"; Fader, Hardie and
Lee 2005, "RFM and CLV: Using Iso-Value Curves"; Hardie's note "The Gamma-Gamma Model of Monetary
Value", 2013) work on one row per customer:

- ``frequency`` x: repeat transactions (purchase days after the first) up to the calibration end;
- ``recency`` t_x: time from the first to the last purchase day, in the time unit;
- ``T``: time from the first purchase day to the calibration end;
- ``monetary_value``: mean value of the repeat transactions (the first purchase excluded).

A transaction is a purchase day: a customer's sale lines of one day are merged into one, as in the
published protocol. Returns and non-product lines are not purchases; spend is gross sales.

The per-customer summary is computed in the engine (DuckDB SQL over the prepared Parquet);
fitting, prediction and the holdout scorecard work on that small frame with numpy / scipy.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from scipy import optimize, special

from ..i18n import tr

UNIT_DAYS = {"days": 1.0, "weeks": 7.0}
DAYS_PER_MONTH = 365.25 / 12
BGNBD_PARAMS = ("r", "alpha", "a", "b")
GG_PARAMS = ("p", "q", "gamma")
#: A purchase line: not a return or cancellation, and a product (not postage or a fee).
PURCHASE = "NOT is_return AND is_product"
LOG_BOUND = math.log(1e6)  # parameters live in [1e-6, 1e6]; closer than 1e-3 (log) = "at bound"


class ClvFitError(RuntimeError):
    """A model could not be fitted (no convergence, degenerate data)."""


# ------------------------------------------------------------------------------- summary (SQL)
def summary_sql(
    transactions: str | Path,
    calibration_end: dt.date,
    observation_end: dt.date,
    unit: str = "weeks",
) -> str:
    """SQL giving one row per customer whose first purchase is on or before ``calibration_end``.

    Columns: ``customer_id``, ``first_purchase``, ``frequency``, ``recency``, ``T``,
    ``monetary_value`` (mean repeat-transaction value; NULL without repeats), ``calibration_spend``
    (all calibration transactions, first included), ``holdout_transactions`` and
    ``holdout_spend`` (after ``calibration_end`` up to ``observation_end``).
    """
    u = UNIT_DAYS[unit]
    cal, obs = f"DATE '{calibration_end}'", f"DATE '{observation_end}'"
    path = str(transactions).replace("'", "''")
    return f"""
    WITH days AS (
        SELECT customer_key AS customer_id, order_date AS d,
            sum(CAST(amount AS DECIMAL(38, 6))) AS value  -- exact: same sum in any thread order
        FROM read_parquet('{path}')
        WHERE {PURCHASE} AND order_date <= {obs}
        GROUP BY ALL
    ), firsts AS (
        SELECT customer_id, min(d) AS first_purchase FROM days GROUP BY ALL
    )
    SELECT customer_id, first_purchase,
        count(*) FILTER (WHERE d <= {cal}) - 1 AS frequency,
        date_diff('day', first_purchase, max(d) FILTER (WHERE d <= {cal})) / {u} AS recency,
        date_diff('day', first_purchase, {cal}) / {u} AS "T",
        CAST(avg(value) FILTER (WHERE d <= {cal} AND d > first_purchase) AS DOUBLE)
            AS monetary_value,
        CAST(sum(value) FILTER (WHERE d <= {cal}) AS DOUBLE) AS calibration_spend,
        count(*) FILTER (WHERE d > {cal}) AS holdout_transactions,
        CAST(coalesce(sum(value) FILTER (WHERE d > {cal}), 0) AS DOUBLE) AS holdout_spend
    FROM days JOIN firsts USING (customer_id)
    WHERE first_purchase <= {cal}
    GROUP BY customer_id, first_purchase
    ORDER BY customer_id
    """


def repeat_curve_sql(
    transactions: str | Path, calibration_end: dt.date, observation_end: dt.date, unit: str
) -> str:
    """SQL: repeat transactions per period index (0 = the first ``unit`` after the data start).

    Only customers whose first purchase is on or before ``calibration_end`` count (the cohort the
    model was fitted on).
    """
    u = UNIT_DAYS[unit]
    cal, obs = f"DATE '{calibration_end}'", f"DATE '{observation_end}'"
    path = str(transactions).replace("'", "''")
    return f"""
    WITH days AS (
        SELECT DISTINCT customer_key AS customer_id, order_date AS d
        FROM read_parquet('{path}')
        WHERE {PURCHASE} AND order_date <= {obs}
    ), ranked AS (
        SELECT *, min(d) OVER (PARTITION BY customer_id) AS first_purchase FROM days
    ), start AS (SELECT min(d) AS d0 FROM days)
    SELECT CAST(floor(date_diff('day', d0, d) / {u}) AS INTEGER) AS period, count(*) AS repeats
    FROM ranked, start
    WHERE d > first_purchase AND first_purchase <= {cal}
    GROUP BY ALL ORDER BY period
    """


# ----------------------------------------------------------------------------------- BG/NBD
def bgnbd_loglik_terms(
    params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood (Fader, Hardie and Lee 2005, equation 6)."""
    r, alpha, a, b = params
    ln_a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    ln_a2 = (
        special.gammaln(a + b)
        + special.gammaln(b + x)
        - special.gammaln(b)
        - special.gammaln(a + b + x)
    )
    ln_a3 = -(r + x) * np.log(alpha + T)
    has = x > 0
    ln_a4 = np.full_like(ln_a3, -np.inf)
    xm = np.where(has, x, 1.0)
    ln_a4[has] = (np.log(a) - np.log(b + xm - 1) - (r + xm) * np.log(alpha + t_x))[has]
    return ln_a1 + ln_a2 + np.logaddexp(ln_a3, ln_a4)


def gg_loglik_terms(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per-customer Gamma-Gamma log-likelihood of the mean repeat value ``m`` of ``x`` values."""
    p, q, v = params
    px = p * x
    return (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(v + x * m)
    )


@dataclass
class Fit:
    """A maximum-likelihood fit: estimates, standard errors, covariance and diagnostics."""

    model: str
    names: tuple[str, ...]
    params: dict[str, float]
    se: dict[str, float]
    loglik: float
    n: int
    cov_log: np.ndarray  # covariance of the log-parameters (for parameter draws)
    iterations: int
    at_bound: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # in English, as the artifact records them
    warnings_shown: list[str] = field(default_factory=list)  # the same in the report's language

    @property
    def values(self) -> np.ndarray:
        """The estimates as an array in ``names`` order."""
        return np.array([self.params[k] for k in self.names])

    def table(self) -> pd.DataFrame:
        """Estimates with standard errors and 95 % Wald intervals (on the log scale, so positive)."""
        rows = []
        for i, k in enumerate(self.names):
            est, se = self.params[k], self.se[k]
            fixed = k in self.at_bound or not np.isfinite(self.cov_log[i, i])
            sd_log = np.nan if fixed else math.sqrt(self.cov_log[i, i])
            rows.append(
                {
                    "parameter": k,
                    "estimate": est,
                    "std_error": se,
                    "ci95_low": est * math.exp(-1.96 * sd_log),
                    "ci95_high": est * math.exp(1.96 * sd_log),
                }
            )
        return pd.DataFrame(rows)

    def draws(self, n: int, seed: int) -> np.ndarray:
        """``n`` parameter vectors drawn from the asymptotic normal of the log-parameters."""
        rng = np.random.default_rng(seed)
        mean = np.log(self.values)
        if not np.all(np.isfinite(self.cov_log)):
            return np.tile(self.values, (n, 1))
        return np.exp(rng.multivariate_normal(mean, self.cov_log, size=n, method="eigh"))

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the artifact: estimates, ``loglik``, ``n`` and ``se``."""
        out: dict[str, Any] = dict(self.params)
        out.update(
            loglik=self.loglik,
            n=self.n,
            se=dict(self.se),
            at_bound=list(self.at_bound),
            warnings=list(self.warnings),
        )
        return out


def _hessian(grad, theta: np.ndarray) -> np.ndarray:
    """Hessian from central differences of the analytic gradient (symmetrised)."""
    k = len(theta)
    h = 1e-5 * np.maximum(np.abs(theta), 1.0)
    hess = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = h[i]
        hess[i] = (grad(theta + e) - grad(theta - e)) / (2 * h[i])
    return (hess + hess.T) / 2


def _fit(model: str, names: tuple[str, ...], fun, n: int, starts: list[np.ndarray]) -> Fit:
    """Minimise the negative log-likelihood over the log-parameters.

    ``fun(theta)`` returns the value and its analytic gradient. L-BFGS-B runs from the first
    start; further starts (and a Nelder-Mead polish) are tried only when it does not converge.
    """
    bounds = [(-LOG_BOUND, LOG_BOUND)] * len(names)

    def value(theta: np.ndarray) -> float:
        return fun(theta)[0]

    best = None
    with np.errstate(all="ignore"):
        for start in starts:
            res = optimize.minimize(
                fun,
                np.log(start),
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-10},
            )
            # L-BFGS-B may stop on a line-search failure at the optimum (the likelihood is flat to
            # machine precision there): a vanishing gradient counts as converged.
            grad_max = float(np.max(np.abs(fun(res.x)[1]))) if np.isfinite(res.fun) else np.inf
            res.converged = bool(res.success or grad_max < 1e-2)
            if not res.converged:
                polish = optimize.minimize(
                    value,
                    np.clip(res.x, -LOG_BOUND, LOG_BOUND),
                    method="Nelder-Mead",
                    options={"maxiter": 400 * len(names), "xatol": 1e-8, "fatol": 1e-10},
                )
                if polish.fun <= res.fun:
                    polish.converged = bool(polish.success)
                    res = polish
            if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
                best = res
            if best is not None and best.converged:
                break
    if best is None:
        raise ClvFitError(
            f"{model}: the likelihood could not be evaluated at any starting point "
            "(degenerate data: check that customers have positive purchase histories)"
        )
    theta = np.clip(best.x, -LOG_BOUND, LOG_BOUND)
    warnings: list[tuple[str, dict[str, Any]]] = []  # (template, fields)
    if not best.converged:
        warnings.append(
            ("the optimiser did not report convergence ({message})", {"message": best.message})
        )
    with np.errstate(all="ignore"):
        hess = _hessian(lambda t: fun(t)[1], theta)
    # A parameter at the bound of the search range is not estimated (the likelihood keeps
    # improving towards the bound): it is held fixed, and the covariance of the others is the
    # inverse of their block of the information matrix (conditional on the bound).
    at_bound = [k for k, t in zip(names, theta, strict=True) if abs(abs(t) - LOG_BOUND) < 1e-3]
    free = np.array([k not in at_bound for k in names])
    cov_log = np.zeros((len(names), len(names)))
    try:
        if not free.any():
            raise np.linalg.LinAlgError
        block = np.linalg.inv(hess[np.ix_(free, free)])
        if not np.all(np.isfinite(block)) or np.any(np.diag(block) <= 0):
            raise np.linalg.LinAlgError
        cov_log[np.ix_(free, free)] = block
    except np.linalg.LinAlgError:
        cov_log = np.full((len(names), len(names)), np.nan)
        warnings.append(
            ("the information matrix is singular at the optimum: standard errors not available", {})
        )
    if at_bound and np.all(np.isfinite(cov_log)):
        warnings.append(
            (
                "{params} at the bound of the search range: held fixed there, the standard errors "
                "of the other parameters are conditional on it",
                {"params": ", ".join(at_bound)},
            )
        )
    est = np.exp(theta)
    se = est * np.sqrt(np.diag(cov_log))  # delta method: se(exp t) = exp(t) se(t)
    se[~free] = np.nan
    return Fit(
        model=model,
        names=names,
        params={k: float(v) for k, v in zip(names, est, strict=True)},
        se={k: float(v) for k, v in zip(names, se, strict=True)},
        loglik=float(-best.fun),
        n=n,
        cov_log=cov_log,
        iterations=int(getattr(best, "nit", 0) or 0),
        at_bound=at_bound,
        warnings=[tr(t, "en", **f) for t, f in warnings],
        warnings_shown=[tr(t, **f) for t, f in warnings],
    )


def _compress(*cols: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Unique rows of the columns and their counts (the likelihood only needs each pattern once)."""
    stacked = np.column_stack(cols)
    uniq, counts = np.unique(stacked, axis=0, return_counts=True)
    return tuple(uniq[:, i] for i in range(uniq.shape[1])), counts.astype(float)


def bgnbd_objective(x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray, w: np.ndarray):
    """Negative BG/NBD log-likelihood and its analytic gradient, in the log-parameters.

    ``w`` weighs each (x, t_x, T) pattern by the number of customers sharing it.
    """
    has = x > 0
    xm1 = np.where(has, x - 1, 0.0)

    def negll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        r, alpha, a, b = np.exp(theta)
        dg = special.digamma
        ln_a3 = -(r + x) * np.log(alpha + big_t)
        ln_a4 = np.where(has, np.log(a) - np.log(b + xm1) - (r + x) * np.log(alpha + t_x), -np.inf)
        ll = bgnbd_loglik_terms((r, alpha, a, b), x, t_x, big_t)
        val = -np.sum(w * ll)
        if not np.isfinite(val):
            return 1e300, np.zeros(4)
        top = np.logaddexp(ln_a3, ln_a4)
        w3, w4 = np.exp(ln_a3 - top), np.where(has, np.exp(ln_a4 - top), 0.0)
        d_r = dg(r + x) - dg(r) + np.log(alpha) - w3 * np.log(alpha + big_t)
        d_r -= np.where(has, w4 * np.log(alpha + t_x), 0.0)
        d_alpha = r / alpha - w3 * (r + x) / (alpha + big_t)
        d_alpha -= np.where(has, w4 * (r + x) / (alpha + t_x), 0.0)
        common = dg(a + b) - dg(a + b + x)
        d_a = common + w4 / a
        d_b = common + dg(b + x) - dg(b) - np.where(has, w4 / (b + xm1), 0.0)
        grad = np.array([np.sum(w * g) for g in (d_r, d_alpha, d_a, d_b)])
        return float(val), -grad * np.array([r, alpha, a, b])

    return negll


def gg_objective(x: np.ndarray, m: np.ndarray, w: np.ndarray):
    """Negative Gamma-Gamma log-likelihood and its analytic gradient, in the log-parameters."""
    ln_m, ln_x = np.log(m), np.log(x)

    def negll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        p, q, v = np.exp(theta)
        dg = special.digamma
        px = p * x
        ln_vxm = np.log(v + x * m)
        ll = (
            special.gammaln(px + q)
            - special.gammaln(px)
            - special.gammaln(q)
            + q * np.log(v)
            + (px - 1) * ln_m
            + px * ln_x
            - (px + q) * ln_vxm
        )
        val = -np.sum(w * ll)
        if not np.isfinite(val):
            return 1e300, np.zeros(3)
        d_pq = dg(px + q)
        d_p = x * (d_pq - dg(px) + ln_m + ln_x - ln_vxm)
        d_q = d_pq - dg(q) + np.log(v) - ln_vxm
        d_v = q / v - (px + q) / (v + x * m)
        grad = np.array([np.sum(w * g) for g in (d_p, d_q, d_v)])
        return float(val), -grad * np.array([p, q, v])

    return negll


def fit_bgnbd(frequency, recency, T) -> Fit:
    """Fit the BG/NBD model by maximum likelihood.

    Parameters
    ----------
    frequency, recency, T
        Per-customer repeat transactions, recency and age, in one time unit.

    Returns
    -------
    Fit
        Estimates of r, alpha, a, b with standard errors (inverse numerical Hessian of the
        log-likelihood; delta method from the log scale) and the log-likelihood.

    Raises
    ------
    ClvFitError
        On degenerate data (no customers, negative values, recency above T).
    """
    x, t_x, big_t = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
    if len(x) == 0:
        raise ClvFitError("BG/NBD: no customers to fit")
    if np.any(x < 0) or np.any(t_x < 0) or np.any(t_x > big_t + 1e-9):
        raise ClvFitError("BG/NBD: frequency and recency must be >= 0 and recency <= T")
    (x, t_x, big_t), w = _compress(x, t_x, big_t)

    negll = bgnbd_objective(x, t_x, big_t, w)

    scale = float(np.mean(big_t)) or 1.0
    starts = [np.array([1.0, scale, 1.0, 1.0]), np.array([0.5, scale / 2, 0.5, 2.0])]
    return _fit("BG/NBD", BGNBD_PARAMS, negll, int(w.sum()), starts)


def fit_gamma_gamma(frequency, monetary_value) -> Fit:
    """Fit the Gamma-Gamma spend model on customers with repeat transactions and positive spend.

    Raises
    ------
    ClvFitError
        When fewer than 10 customers qualify.
    """
    x = np.asarray(frequency, dtype=float)
    m = np.asarray(monetary_value, dtype=float)
    ok = (x > 0) & np.isfinite(m) & (m > 0)
    if ok.sum() < 10:
        raise ClvFitError(
            f"Gamma-Gamma: {int(ok.sum())} customers with repeat purchases and positive spend "
            "(at least 10 needed)"
        )
    (x, m), w = _compress(x[ok], m[ok])

    negll = gg_objective(x, m, w)

    mean = float(np.average(m, weights=w))
    starts = [np.array([1.0, 1.0, mean]), np.array([5.0, 3.0, mean * 2])]
    return _fit("Gamma-Gamma", GG_PARAMS, negll, int(w.sum()), starts)


# ------------------------------------------------------------------------------- predictions
def p_alive(params, frequency, recency, T) -> np.ndarray:
    """Probability that each customer is still active at the end of the observation."""
    r, alpha, a, b = params
    x, t_x, big_t = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_ratio = (
            np.log(a)
            - np.log(np.maximum(b + x - 1, 1e-300))
            + (r + x) * (np.log(alpha + big_t) - np.log(alpha + t_x))
        )
        odds = np.where(x > 0, np.exp(ln_ratio), 0.0)
    return 1.0 / (1.0 + odds)


def _hyp2f1(a, b, c, z) -> np.ndarray:
    """Gauss hypergeometric function; 1 - z is small only for very long horizons."""
    return special.hyp2f1(a, b, c, z)


def expected_transactions(params, t, frequency, recency, T) -> np.ndarray:
    """E[Y(t) | x, t_x, T]: expected transactions in the next ``t`` periods (FHL 2005, eq. 10)."""
    r, alpha, a, b = params
    x, t_x, big_t = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
    t = np.asarray(t, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = t / (alpha + big_t + t)
        hyp = _hyp2f1(r + x, b + x, a + b + x - 1, z)
        term = 1 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp
        num = (a + b + x - 1) / (a - 1) * term
        odds = np.where(
            x > 0,
            a / np.maximum(b + x - 1, 1e-300) * ((alpha + big_t) / (alpha + t_x)) ** (r + x),
            0.0,
        )
        out = num / (1 + odds)
    return np.where(t > 0, out, 0.0)


def expected_transactions_new(params, t) -> np.ndarray:
    """E[X(t)]: expected repeat transactions of a new customer within ``t`` periods."""
    r, alpha, a, b = params
    t = np.asarray(t, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        hyp = _hyp2f1(r, b, a + b - 1, t / (alpha + t))
        out = (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp)
    return np.where(t > 0, out, 0.0)


def expected_spend(params, frequency, monetary_value) -> np.ndarray:
    """E[M | x, m_x]: expected mean transaction value (population mean when x = 0)."""
    p, q, v = params
    x = np.asarray(frequency, dtype=float)
    m = np.nan_to_num(np.asarray(monetary_value, dtype=float), nan=0.0)
    x = np.where(m > 0, x, 0.0)
    return p * (v + x * m) / (p * x + q - 1)


def population_mean_spend(params) -> float:
    """Mean transaction value of the population: p gamma / (q - 1) (infinite when q <= 1)."""
    p, q, v = params
    return float(p * v / (q - 1)) if q > 1 else math.inf


def clv(
    bgnbd,
    gg,
    frequency,
    recency,
    T,
    monetary_value,
    unit: str,
    horizon_months: int,
    monthly_discount_rate: float,
    margin: float = 1.0,
) -> np.ndarray:
    """Discounted CLV over ``horizon_months``.

    The sum over months of the month's expected transactions times the expected spend (times
    ``margin``), discounted at ``monthly_discount_rate`` (month m is discounted by (1 + d) ** m).
    """
    month = DAYS_PER_MONTH / UNIT_DAYS[unit]
    spend = expected_spend(gg, frequency, monetary_value) * margin
    total = np.zeros(len(np.atleast_1d(frequency)))
    prev = np.zeros_like(total)
    for i in range(1, horizon_months + 1):
        cum = expected_transactions(bgnbd, i * month, frequency, recency, T)
        total += (cum - prev) * spend / (1 + monthly_discount_rate) ** i
        prev = cum
    return total


# ------------------------------------------------------------------------------- evaluation
def conditional_expectations(
    summary: pd.DataFrame, predicted: np.ndarray, cap: int = 7
) -> pd.DataFrame:
    """Mean actual and predicted holdout transactions by calibration frequency (``cap``+ pooled)."""
    freq = summary["frequency"].clip(upper=cap).astype(int)
    frame = pd.DataFrame(
        {
            "frequency": freq,
            "actual": summary["holdout_transactions"].to_numpy(float),
            "predicted": predicted,
        }
    )
    out = frame.groupby("frequency").agg(
        customers=("actual", "size"), actual=("actual", "mean"), predicted=("predicted", "mean")
    )
    out.index = [f"{i}+" if i == cap else str(i) for i in out.index]
    out.index.name = "calibration transactions"
    return out.reset_index()


def cumulative_curve(
    params, first_period: np.ndarray, actual: pd.DataFrame, periods: int
) -> pd.DataFrame:
    """Cumulative repeat transactions by period: actual vs model (FHL 2005, figure 2).

    Parameters
    ----------
    params
        BG/NBD estimates.
    first_period
        Each customer's first purchase in periods since the data start (fractional).
    actual
        ``period``, ``repeats`` from :func:`repeat_curve_sql`.
    periods
        Number of whole periods covered (calibration + holdout).
    """
    ends = np.arange(1, periods + 1, dtype=float)
    starts, counts = np.unique(np.asarray(first_period, dtype=float), return_counts=True)
    expected = np.array(
        [
            float(np.sum(counts * expected_transactions_new(params, np.maximum(e - starts, 0))))
            for e in ends
        ]
    )
    act = np.zeros(periods)
    for p, n in zip(actual["period"], actual["repeats"], strict=True):
        if 0 <= p < periods:
            act[int(p)] += n
    return pd.DataFrame(
        {"period": ends.astype(int), "actual": np.cumsum(act), "predicted": expected}
    )


def top_capture(
    actual: np.ndarray, score: np.ndarray, ids: np.ndarray, share: float = 0.2
) -> float:
    """Share of the actual top ``share`` (by ``actual``) that the top ``share`` by ``score`` holds.

    Both top sets have ``ceil(share * n)`` customers; ties are broken by customer id so the result
    is deterministic.
    """
    n = len(actual)
    k = max(1, math.ceil(share * n))
    order_a = np.lexsort((ids, -np.asarray(actual, dtype=float)))[:k]
    order_s = np.lexsort((ids, -np.asarray(score, dtype=float)))[:k]
    return len(set(order_a.tolist()) & set(order_s.tolist())) / k


def _errors(pred: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    err = pred - actual
    total = float(actual.sum())
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "predicted_total": float(pred.sum()),
        "actual_total": total,
        "aggregate_error_pct": float(100 * (pred.sum() - total) / total) if total else math.nan,
    }


def scorecard(
    summary: pd.DataFrame,
    predicted_transactions: np.ndarray,
    predicted_spend: np.ndarray,
    holdout_length: float,
    top_share: float = 0.2,
) -> pd.DataFrame:
    """Holdout scorecard: the model against the naive baseline, per customer and in aggregate.

    The baseline carries each customer's calibration behaviour forward: repeat transactions at the
    calibration rate ``x / T`` and spend at ``calibration_spend / T`` per period, over the holdout
    (``T`` floored at one period, so a customer seen for a day is not extrapolated wildly).
    """
    big_t = np.maximum(summary["T"].to_numpy(float), 1.0)
    base_tx = summary["frequency"].to_numpy(float) / big_t * holdout_length
    base_spend = summary["calibration_spend"].to_numpy(float) / big_t * holdout_length
    act_tx = summary["holdout_transactions"].to_numpy(float)
    act_spend = summary["holdout_spend"].to_numpy(float)
    ids = summary["customer_id"].to_numpy()
    rows = []
    for name, tx, spend in (
        ("BG/NBD + Gamma-Gamma", predicted_transactions, predicted_spend),
        ("Baseline: calibration carried forward", base_tx, base_spend),
    ):
        e_tx, e_sp = (
            _errors(np.asarray(tx, float), act_tx),
            _errors(np.asarray(spend, float), act_spend),
        )
        rows.append(
            {
                "model": name,
                "transactions_mae": e_tx["mae"],
                "transactions_rmse": e_tx["rmse"],
                "transactions_predicted": e_tx["predicted_total"],
                "transactions_actual": e_tx["actual_total"],
                "transactions_error_pct": e_tx["aggregate_error_pct"],
                "spend_mae": e_sp["mae"],
                "spend_rmse": e_sp["rmse"],
                "spend_predicted": e_sp["predicted_total"],
                "spend_actual": e_sp["actual_total"],
                "spend_error_pct": e_sp["aggregate_error_pct"],
                "top20_capture": top_capture(act_spend, np.asarray(spend, float), ids, top_share),
            }
        )
    return pd.DataFrame(rows)


def p_alive_matrix(params, T: float, max_frequency: int, recency_bins: int = 10) -> pd.DataFrame:
    """P(alive) for a customer of age ``T`` over a grid of frequency (rows) and recency (columns)."""
    rec = np.linspace(0, T, recency_bins + 1)
    freq = np.arange(0, max_frequency + 1)
    grid = np.array(
        [p_alive(params, np.full_like(rec, f), rec, np.full_like(rec, T)) for f in freq]
    )
    return pd.DataFrame(grid, index=freq, columns=np.round(rec, 1))


def top_decile_share(table: pd.DataFrame) -> float:
    """Share of total CLV held by ``clv_decile`` 1 of :func:`customer_table` (the top 10 %)."""
    total = float(table["clv"].sum())
    return float(table.loc[table["clv_decile"] == 1, "clv"].sum()) / total if total else math.nan


def frequency_spend_correlation(frequency, monetary_value) -> float:
    """Pearson correlation of repeat frequency and mean repeat value (Gamma-Gamma assumes ~0)."""
    x = np.asarray(frequency, dtype=float)
    m = np.asarray(monetary_value, dtype=float)
    ok = (x > 0) & np.isfinite(m) & (m > 0)
    if ok.sum() < 3:
        return math.nan
    return float(np.corrcoef(x[ok], m[ok])[0, 1])


# ------------------------------------------------------------------------------------ plots
def plot_conditional(table: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Mean holdout transactions by calibration frequency: actual vs model.

    Frequencies held by fewer than ``privacy.min_group_size`` customers are not drawn.
    """
    import matplotlib.pyplot as plt

    from ..plots import PALETTE
    from ..privacy import min_group_size

    if "customers" in table:
        table = table.loc[table["customers"] >= min_group_size()].reset_index(drop=True)
    ax = ax or plt.subplots(figsize=(7, 3.6))[1]
    pos = np.arange(len(table))
    ax.plot(pos, table["actual"], marker="o", color=PALETTE[0], label=tr("actual"))
    ax.plot(pos, table["predicted"], marker="s", ls="--", color=PALETTE[1], label="BG/NBD")
    ax.set_xticks(pos, table["calibration transactions"])
    ax.set_xlabel(tr("repeat transactions in the calibration period"))
    ax.set_ylabel(tr("mean holdout transactions"))
    ax.legend(frameon=False)
    return ax


def plot_cumulative(
    curve: pd.DataFrame, calibration_periods: float, unit: str, ax: Axes | None = None
) -> Axes:
    """Cumulative repeat transactions, actual vs model, with the calibration end marked."""
    import matplotlib.pyplot as plt

    from ..plots import NEUTRAL, PALETTE

    ax = ax or plt.subplots(figsize=(7, 3.6))[1]
    ax.plot(curve["period"], curve["actual"], color=PALETTE[0], label=tr("actual"))
    ax.plot(curve["period"], curve["predicted"], ls="--", color=PALETTE[1], label="BG/NBD")
    ax.axvline(calibration_periods, color=NEUTRAL, lw=0.8, ls=":")
    ax.text(
        calibration_periods,
        ax.get_ylim()[1] * 0.95,
        tr(" calibration end"),
        fontsize=8,
        va="top",
        color=NEUTRAL,
    )
    ax.set_xlabel(tr(unit))
    ax.set_ylabel(tr("cumulative repeat transactions"))
    ax.legend(frameon=False)
    return ax


# ------------------------------------------------------------------------- derived quantities
def _delta(fit: Fit, func, uses: tuple[str, ...] | None = None) -> tuple[float, float]:
    """Value and delta-method standard error of ``func(params)`` (gradient on the log scale).

    ``uses`` names the parameters ``func`` depends on: when one of them sits at a bound, the
    quantity is not estimated and its standard error is not available (NaN).
    """
    theta = np.log(fit.values)
    value = float(func(fit.values))
    if not np.all(np.isfinite(fit.cov_log)) or set(uses or fit.names) & set(fit.at_bound):
        return value, math.nan
    grad = np.empty(len(theta))
    for i in range(len(theta)):
        h = 1e-6 * max(abs(theta[i]), 1.0)
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (func(np.exp(up)) - func(np.exp(down))) / (2 * h)
    return value, float(math.sqrt(max(grad @ fit.cov_log @ grad, 0.0)))


def bgnbd_summary(fit: Fit) -> dict[str, tuple[float, float]]:
    """Mean purchase rate r / alpha and mean dropout probability a / (a + b), with standard errors."""
    return {
        "mean_rate": _delta(fit, lambda v: v[0] / v[1], ("r", "alpha")),
        "mean_dropout": _delta(fit, lambda v: v[2] / (v[2] + v[3]), ("a", "b")),
    }


def gg_summary(fit: Fit) -> dict[str, tuple[float, float]]:
    """Mean transaction value p gamma / (q - 1), with its standard error."""
    return {"mean_spend": _delta(fit, lambda v: v[0] * v[2] / (v[1] - 1) if v[1] > 1 else np.inf)}


def headline_intervals(
    bgnbd: Fit,
    gg: Fit,
    summary: pd.DataFrame,
    *,
    unit: str,
    prediction_periods: float,
    horizon_months: int,
    monthly_discount_rate: float,
    margin: float,
    draws: int,
    level: float,
    seed: int,
    sample: int = 3000,
) -> dict[str, list[float]]:
    """Intervals on the totals (CLV, expected transactions) from parameter uncertainty.

    Parameter vectors are drawn (seeded) from the asymptotic normal of each fit's log-parameters;
    each draw's totals are computed on a seeded sample of at most ``sample`` customers and
    expressed as a ratio to the point estimate on the same sample, which then scales the full
    total (so the interval reflects parameter uncertainty, not the sampling of customers).
    """
    if draws <= 0 or len(summary) == 0:
        return {}
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(summary), size=min(sample, len(summary)), replace=False))
    s = summary.iloc[idx]
    cols = (s["frequency"], s["recency"], s["T"])

    def totals(bp, gp) -> tuple[float, float]:
        c = clv(
            bp, gp, *cols, s["monetary_value"], unit, horizon_months, monthly_discount_rate, margin
        )
        return float(np.sum(c)), float(np.sum(expected_transactions(bp, prediction_periods, *cols)))

    base_clv, base_tx = totals(bgnbd.values, gg.values)
    bd, gd = bgnbd.draws(draws, seed + 1), gg.draws(draws, seed + 2)
    ratios = np.array([totals(b, g) for b, g in zip(bd, gd, strict=True)])
    ratios = ratios / np.array([base_clv, base_tx])
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    q = np.nanquantile(ratios, [lo, hi], axis=0)
    return {"clv_ratio": q[:, 0].tolist(), "transactions_ratio": q[:, 1].tolist()}


def customer_table(
    summary: pd.DataFrame,
    bgnbd: Fit,
    gg: Fit,
    *,
    unit: str,
    prediction_periods: float,
    horizon_months: int,
    monthly_discount_rate: float,
    margin: float,
) -> pd.DataFrame:
    """One row per customer: the summary, P(alive), expected transactions, spend and CLV."""
    cols = (summary["frequency"], summary["recency"], summary["T"])
    out = pd.DataFrame(
        {
            "customer_key": summary["customer_id"].to_numpy(),
            "frequency": summary["frequency"].to_numpy(int),
            "recency": summary["recency"].to_numpy(float),
            "T": summary["T"].to_numpy(float),
            "monetary_value": summary["monetary_value"].to_numpy(float),
            "p_alive": p_alive(bgnbd.values, *cols),
            "expected_transactions": expected_transactions(bgnbd.values, prediction_periods, *cols),
            "expected_spend": expected_spend(
                gg.values, summary["frequency"], summary["monetary_value"]
            ),
            "clv": clv(
                bgnbd.values,
                gg.values,
                *cols,
                summary["monetary_value"],
                unit,
                horizon_months,
                monthly_discount_rate,
                margin,
            ),
        }
    )
    # 1 = top 10 %: the first ceil(n / 10) customers by CLV (ties by order)
    rank = out["clv"].rank(method="first", ascending=False).astype(int).to_numpy()
    out["clv_decile"] = (rank - 1) * 10 // len(out) + 1
    return out


# ------------------------------------------------------------------------------ time frame + gate
@dataclass(frozen=True)
class TimeFrame:
    """Observation start and end, calibration end and the holdout length."""

    start: dt.date
    calibration_end: dt.date
    observation_end: dt.date
    unit: str

    @property
    def calibration_days(self) -> int:
        """Days from the data start to the calibration end (inclusive)."""
        return (self.calibration_end - self.start).days + 1

    @property
    def holdout_days(self) -> int:
        """Days after the calibration end up to the observation end."""
        return (self.observation_end - self.calibration_end).days

    @property
    def holdout_length(self) -> float:
        """Holdout length in the time unit."""
        return self.holdout_days / UNIT_DAYS[self.unit]


def time_frame(
    con: Any,
    transactions: str | Path,
    unit: str,
    calibration_end: dt.date | None,
    observation_end: dt.date | None,
    holdout_share: float,
) -> TimeFrame | None:
    """The calibration / holdout split of the purchase data (None when there are no purchases).

    Without an explicit ``calibration_end`` the last ``holdout_share`` of the days from the first
    to the last purchase day is kept as holdout.
    """
    path = str(transactions).replace("'", "''")
    start, last = con.execute(
        f"SELECT min(order_date), max(order_date) FROM read_parquet('{path}') WHERE {PURCHASE}"
    ).fetchone()
    if start is None:
        return None
    end = min(observation_end, last) if observation_end else last
    if calibration_end is None:
        calibration_end = start + dt.timedelta(days=round((end - start).days * (1 - holdout_share)))
    return TimeFrame(start, min(calibration_end, end), end, unit)


def sufficiency(
    frame: TimeFrame | None,
    summary: pd.DataFrame | None,
    *,
    min_customers: int,
    min_repeat_buyers: int,
    min_calibration_days: int,
    min_holdout_days: int,
) -> list[str]:
    """What the data lack for a reliable fit (empty = enough), each item naming the threshold."""
    if frame is None or summary is None:
        return ["purchase transactions (none found)"]
    missing = []
    if frame.calibration_days < min_calibration_days:
        missing.append(
            f"a calibration period of at least {min_calibration_days} days "
            f"(found {frame.calibration_days})"
        )
    if frame.holdout_days < min_holdout_days:
        missing.append(
            f"a holdout period of at least {min_holdout_days} days (found {frame.holdout_days})"
        )
    if len(summary) < min_customers:
        missing.append(
            f"at least {min_customers:,} customers with a first purchase in the calibration "
            f"period (found {len(summary):,})"
        )
    repeat = int((summary["frequency"] > 0).sum())
    if repeat < min_repeat_buyers:
        missing.append(
            f"at least {min_repeat_buyers:,} customers with a repeat purchase in the calibration "
            f"period (found {repeat:,})"
        )
    return missing


def _first(truth: dict[str, float | None], *keys: str) -> float:
    """The first of ``keys`` that ``truth`` holds a value for (NaN when none)."""
    return next((float(truth[k]) for k in keys if truth.get(k) is not None), math.nan)


#: A dropout estimate this close to 0 or 1 whose resamples stay as close is not identified.
EDGE = 1e-4


def _segment_quantities(grp: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Mean purchase rate, dropout and spend per purchase of one group, with delta-method SEs."""
    bg = fit_bgnbd(grp["frequency"], grp["recency"], grp["T"])
    gg = fit_gamma_gamma(grp["frequency"], grp["monetary_value"])
    rate, drop = bgnbd_summary(bg).values()
    spend = gg_summary(gg)["mean_spend"]
    per_week = rate[0] * spend[0]
    # delta method for the product of two independent estimates
    per_week_se = math.hypot(rate[1] * spend[0], spend[1] * rate[0])
    return {
        "purchases per week": rate,
        "dropout probability": drop,
        "spend per purchase": spend,
        "spend per week": (per_week, per_week_se),
        "_at_bound": [*bg.at_bound, *gg.at_bound],  # type: ignore[dict-item]
    }


def planted_check(
    summary: pd.DataFrame,
    planted: dict[str, dict[str, float]],
    *,
    bootstrap: int = 50,
    seed: int = 0,
) -> pd.DataFrame:
    """Fit both models per planted segment and compare with the planted (measured) values.

    Parameters
    ----------
    summary
        The per-customer summary with a ``segment`` column.
    planted
        Segment -> the demo's measured ground truth, in weeks: the purchase rate
        (``mean_lambda_observable_per_week``, the rate of distinct purchase days the cleaned data
        can show; else ``mean_lambda_calendar_per_week``, else ``mean_lambda_per_week``),
        ``mean_dropout_p`` and the spend per purchase (``mean_purchase_day_value``, else
        ``mean_order_value``).
    bootstrap
        Customer resamples (seeded) that give the standard error (half the central 68 % range
        of the resampled values, robust to a stray refit) of a quantity whose delta-method
        standard error is not available: a segment whose likelihood is flat in some
        direction (no dropout at all, or almost no repeat purchases) has a singular information
        matrix, yet its mean rate is still well determined. 0 leaves those standard errors out.
    seed
        Seed of the resampling.

    Returns
    -------
    pandas.DataFrame
        One row per segment and quantity: planted, recovered, standard error, how the standard
        error was obtained (``delta`` or ``bootstrap``) and z.
    """
    rows = []
    rng = np.random.default_rng(seed)
    for name, grp in summary.groupby("segment", sort=True):
        truth = planted.get(name)
        if truth is None:
            continue
        try:
            est = _segment_quantities(grp)
        except ClvFitError:
            continue
        lam = _first(truth, "mean_lambda_observable_per_week", "mean_lambda_calendar_per_week",
                     "mean_lambda_per_week")  # fmt: skip
        order_value = _first(truth, "mean_purchase_day_value", "mean_order_value")
        values = {
            "purchases per week": lam,
            "dropout probability": _first(truth, "mean_dropout_p"),
            "spend per purchase": order_value,
            "spend per week": lam * order_value,
        }
        bound = est.pop("_at_bound")
        repeaters = int((grp["frequency"] > 0).sum())
        missing = [q for q, (_, se) in est.items() if not np.isfinite(se)]
        boot: dict[str, float] = {}
        if missing and bootstrap > 1:
            draws = []
            for _ in range(bootstrap):
                sample = grp.iloc[rng.integers(0, len(grp), len(grp))]
                try:
                    q = _segment_quantities(sample)
                except ClvFitError:
                    continue
                draws.append([q[k][0] for k in missing])
            if len(draws) > 1:
                # half the central 68 % range: a flat likelihood can throw a refit far out, and
                # one such draw would swamp a standard deviation
                lo, hi = np.nanpercentile(np.asarray(draws, dtype=float), [15.87, 84.13], axis=0)
                sd = (hi - lo) / 2
                boot = {k: float(v) for k, v in zip(missing, sd, strict=True) if np.isfinite(v)}
        for quantity, (value, se) in est.items():
            # with a parameter at its bound the delta-method error is conditional on it
            method = f"delta (given {', '.join(bound)} at bound)" if bound else "delta"
            if not np.isfinite(se):
                se, method = boot.get(quantity, math.nan), "bootstrap"
            planted_value = values[quantity]
            if quantity == "dropout probability" and min(value, 1 - value) < EDGE and not se > EDGE:
                # dropout happens only after a repeat purchase: with few repeat buyers the
                # estimate runs to the edge of [0, 1] and no resample moves it. Whether the
                # information matrix there is singular (no delta-method error, so a bootstrap)
                # or just inverts to a spuriously tiny error depends on the floating point of the
                # machine: either way the estimate is not identified.
                se, method = math.nan, f"not identified ({repeaters} repeat buyers)"
            ok = np.isfinite(se) and se > 0
            rows.append(
                {
                    "segment": name,
                    "customers": len(grp),
                    "quantity": quantity,
                    "planted": planted_value,
                    "recovered": value,
                    "std_error": se,
                    "se_method": method if ok or method.startswith("not") else None,
                    "z": (value - planted_value) / se if ok else math.nan,
                }
            )
    return pd.DataFrame(rows)


def population_counts(con: Any, transactions: str | Path, frame: TimeFrame) -> dict[str, int]:
    """Customers in the prepared transactions, buyers, and buyers first seen in the holdout."""
    path = str(transactions).replace("'", "''")
    return dict(
        zip(
            ("customers", "buyers", "first_in_holdout"),
            con.execute(
                f"""SELECT count(DISTINCT customer_key),
                    count(DISTINCT customer_key) FILTER (WHERE {PURCHASE}),
                    (SELECT count(*) FROM (SELECT min(order_date) AS f FROM read_parquet('{path}')
                        WHERE {PURCHASE} GROUP BY customer_key)
                     WHERE f > DATE '{frame.calibration_end}' AND f <= DATE '{frame.observation_end}')
                FROM read_parquet('{path}')"""
            ).fetchone(),
            strict=True,
        )
    )
