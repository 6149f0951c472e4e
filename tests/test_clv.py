"""Chapter 03's models: published CDNOW results, hand-computed fixtures and simulated recovery."""

from __future__ import annotations

import datetime as dt
import math

import duckdb
import numpy as np
import pandas as pd
import pytest

from crm_helpers.models import clv

from .conftest import SHARED_DATA

CDNOW_CAL_END = dt.date(1997, 9, 30)
CDNOW_END = dt.date(1998, 6, 30)


# ------------------------------------------------------------------------------------- fixtures
def _cdnow_lines(shared) -> pd.DataFrame:
    """The CDNOW sample read independently of the product (pandas, whitespace separated)."""
    s = pd.read_csv(
        shared / "cdnow" / "CDNOW_sample.txt",
        sep=r"\s+",
        header=None,
        names=["master_id", "customer_id", "date", "cds", "value"],
        dtype={"master_id": str, "customer_id": str, "date": str},
    )
    s["date"] = pd.to_datetime(s["date"], format="%Y%m%d").dt.date
    return s


def _as_prepared(lines: pd.DataFrame, path) -> None:
    """Write lines in the prepared-transactions layout the SQL reads."""
    pd.DataFrame(
        {
            "customer_key": lines["customer_id"].astype(str),
            "order_date": pd.to_datetime(lines["date"]).dt.date,
            "amount": lines["value"].astype(float),
            "is_return": lines.get("is_return", False),
            "is_product": lines.get("is_product", True),
        }
    ).to_parquet(path)


@pytest.fixture(scope="module")
def cdnow_summary(tmp_path_factory, shared_data):
    path = tmp_path_factory.mktemp("cdnow") / "transactions.parquet"
    _as_prepared(_cdnow_lines(shared_data), path)
    con = duckdb.connect()
    return con.execute(clv.summary_sql(path, CDNOW_CAL_END, CDNOW_END, "weeks")).df()


@pytest.fixture(scope="module")
def shared_data():
    return SHARED_DATA


# ------------------------------------------------------------------------- published results
def test_summary_sql_equals_hardies_cdnow_summary(cdnow_summary, shared_data):
    ref = pd.read_csv(shared_data / "cdnow" / "cdnow_customers_summary.csv")
    got = cdnow_summary.assign(ID=cdnow_summary["customer_id"].astype(int)).set_index("ID")
    got = got.loc[ref["ID"]]
    assert len(got) == 2357
    assert (got["frequency"].to_numpy() == ref["frequency"].to_numpy()).all()
    assert np.abs(got["recency"].to_numpy() - ref["recency"].to_numpy()).max() < 0.006
    assert np.abs(got["T"].to_numpy() - ref["T"].to_numpy()).max() < 0.006


def test_bgnbd_reproduces_fader_hardie_lee_2005(cdnow_summary):
    fit = clv.fit_bgnbd(cdnow_summary["frequency"], cdnow_summary["recency"], cdnow_summary["T"])
    p = fit.params
    assert (round(p["r"], 3), round(p["alpha"], 3), round(p["a"], 3), round(p["b"], 3)) == (
        0.243,
        4.414,
        0.793,
        2.426,
    )
    assert round(fit.loglik, 1) == -9582.4
    assert fit.n == 2357
    assert not fit.at_bound and not fit.warnings
    # standard errors exist and are sensible (each estimate several SEs from zero)
    assert all(0 < fit.se[k] < p[k] / 2.5 for k in ("r", "alpha", "a")), fit.se


def test_gamma_gamma_reproduces_published(cdnow_summary):
    fit = clv.fit_gamma_gamma(cdnow_summary["frequency"], cdnow_summary["monetary_value"])
    p = fit.params
    assert (round(p["p"], 2), round(p["q"], 2), round(p["gamma"], 2)) == (6.25, 3.74, 15.44)
    assert round(fit.loglik, 1) == -4055.9
    assert fit.n == 946
    corr = clv.frequency_spend_correlation(
        cdnow_summary["frequency"], cdnow_summary["monetary_value"]
    )
    assert round(corr, 2) == 0.11


def test_cdnow_holdout_actuals_and_consistent_prediction(cdnow_summary):
    s = cdnow_summary
    assert int(s["holdout_transactions"].sum()) == 1882
    fit = clv.fit_bgnbd(s["frequency"], s["recency"], s["T"])
    pred = clv.expected_transactions(fit.values, 39.0, s["frequency"], s["recency"], s["T"])
    # The sum of conditional expectations must agree with the aggregate (unconditional) forecast
    # of the same model for the same cohort: weeks 39..78 since each customer's first purchase.
    first = (pd.to_datetime(s["first_purchase"]) - pd.Timestamp("1997-01-01")).dt.days / 7
    uncond = clv.expected_transactions_new(fit.values, 78 - first) - clv.expected_transactions_new(
        fit.values, 39 - first
    )
    assert abs(pred.sum() - uncond.sum()) / uncond.sum() < 0.01
    card = clv.scorecard(s, pred, pred * 0, 39.0)
    assert card.loc[0, "transactions_actual"] == 1882
    assert card.loc[0, "transactions_predicted"] == pytest.approx(pred.sum())


# --------------------------------------------------------------------------- hand-computed math
def test_no_dropout_limit_is_the_nbd_posterior_mean():
    # With a -> 0 nobody drops out: E[Y(t) | x, T] = (r + x) / (alpha + T) * t and P(alive) = 1.
    params = (0.5, 4.0, 1e-9, 1.0)
    x, t_x, T = np.array([0.0, 3.0]), np.array([0.0, 10.0]), np.array([20.0, 20.0])
    got = clv.expected_transactions(params, 13.0, x, t_x, T)
    want = (0.5 + x) / (4.0 + T) * 13.0
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(clv.p_alive(params, x, t_x, T), 1.0, atol=1e-8)


def test_p_alive_hand_computed():
    r, alpha, a, b = 0.25, 4.0, 0.8, 2.5
    # x = 2, t_x = 5, T = 20: 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))
    want = 1 / (1 + 0.8 / 3.5 * (24 / 9) ** 2.25)
    assert clv.p_alive((r, alpha, a, b), [2], [5], [20])[0] == pytest.approx(want, rel=1e-12)
    assert clv.p_alive((r, alpha, a, b), [0], [0], [20])[0] == 1.0


def test_unconditional_expectation_matches_simulation():
    params = (0.243, 4.414, 0.793, 2.426)
    rng = np.random.default_rng(3)
    n, t = 200_000, 39.0
    lam = rng.gamma(params[0], 1 / params[1], n)
    p = rng.beta(params[2], params[3], n)
    count, alive, time = np.zeros(n), np.ones(n, bool), np.zeros(n)
    for _ in range(150):
        time = time + rng.exponential(1 / np.maximum(lam, 1e-12))
        inside = alive & (time <= t)
        count += inside
        alive = inside & (rng.random(n) >= p)
    se = count.std() / math.sqrt(n)
    assert abs(count.mean() - clv.expected_transactions_new(params, t)) < 3 * se


def test_expected_spend_and_clv_hand_computed():
    p, q, g = 6.0, 4.0, 15.0
    # x = 0: the population mean p gamma / (q - 1); x = 2, m = 30: (p (gamma + x m)) / (p x + q - 1)
    got = clv.expected_spend((p, q, g), [0, 2], [np.nan, 30.0])
    np.testing.assert_allclose(got, [30.0, 6 * (15 + 60) / 15])
    # No dropout, rate known: monthly purchases = (r + x) / (alpha + T) * month length.
    bg = (0.5, 4.0, 1e-9, 1.0)
    month = clv.DAYS_PER_MONTH / 7
    rate = (0.5 + 0) / (4.0 + 20.0)
    want = sum(rate * month * 30.0 / 1.01**m for m in range(1, 4))
    got = clv.clv(bg, (p, q, g), [0], [0], [20.0], [np.nan], "weeks", 3, 0.01)
    assert got[0] == pytest.approx(want, rel=1e-6)
    assert clv.clv(bg, (p, q, g), [0], [0], [20.0], [np.nan], "weeks", 3, 0.01, margin=0.5)[
        0
    ] == pytest.approx(want / 2, rel=1e-6)


def test_summary_sql_hand_fixture(tmp_path):
    d = dt.date
    lines = pd.DataFrame(
        [
            # a: first 01-01, same-day lines merged (10 + 5), repeats 01-08 (20) and 01-29 (40)
            ("a", d(2024, 1, 1), 10.0, False, True),
            ("a", d(2024, 1, 1), 5.0, False, True),
            ("a", d(2024, 1, 8), 20.0, False, True),
            ("a", d(2024, 1, 29), 40.0, False, True),
            ("a", d(2024, 1, 10), -20.0, True, True),  # a return: not a purchase
            ("a", d(2024, 1, 15), 3.0, False, False),  # postage: not a product
            ("a", d(2024, 2, 5), 7.0, False, True),  # holdout
            ("a", d(2024, 2, 6), 8.0, False, True),  # holdout
            ("b", d(2024, 1, 15), 9.0, False, True),  # one purchase, no repeat
            ("c", d(2024, 2, 2), 9.0, False, True),  # first purchase in the holdout: excluded
        ],
        columns=["customer_id", "date", "value", "is_return", "is_product"],
    )
    path = tmp_path / "t.parquet"
    _as_prepared(lines, path)
    s = (
        duckdb.connect()
        .execute(clv.summary_sql(path, d(2024, 1, 31), d(2024, 2, 29), "weeks"))
        .df()
    )
    s = s.set_index("customer_id")
    assert list(s.index) == ["a", "b"]
    a, b = s.loc["a"], s.loc["b"]
    assert (a["frequency"], a["recency"], a["T"]) == (2, 4.0, 30 / 7)
    assert a["monetary_value"] == 30.0  # mean of the repeats 20 and 40; first purchase excluded
    assert a["calibration_spend"] == 75.0
    assert (a["holdout_transactions"], a["holdout_spend"]) == (2, 15.0)
    assert (b["frequency"], b["recency"], b["T"]) == (0, 0.0, 16 / 7)
    assert pd.isna(b["monetary_value"])
    frame = clv.TimeFrame(d(2024, 1, 1), d(2024, 1, 31), d(2024, 2, 29), "weeks")
    counts = clv.population_counts(duckdb.connect(), path, frame)
    assert counts == {"customers": 3, "buyers": 3, "first_in_holdout": 1}  # c starts on 02-02
    days = duckdb.connect().execute(clv.summary_sql(path, d(2024, 1, 31), d(2024, 2, 29), "days"))
    assert days.df().set_index("customer_id").loc["a", "T"] == 30.0


def test_top_capture_and_scorecard_baseline_hand_computed():
    ids = np.array(["a", "b", "c", "d", "e"])
    actual = np.array([100.0, 0.0, 50.0, 0.0, 0.0])
    assert clv.top_capture(actual, np.array([1.0, 5, 4, 0, 0]), ids, share=0.4) == 0.5
    assert clv.top_capture(actual, np.array([9.0, 0, 8, 0, 0]), ids, share=0.4) == 1.0
    s = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "frequency": [2, 0],
            "T": [10.0, 0.5],
            "calibration_spend": [30.0, 4.0],
            "holdout_transactions": [1, 0],
            "holdout_spend": [12.0, 0.0],
        }
    )
    card = clv.scorecard(s, np.array([1.0, 0.0]), np.array([12.0, 0.0]), holdout_length=5.0)
    base = card.iloc[1]
    # baseline: x / T * 5 = [1.0, 0]; spend 30 / 10 * 5 = 15 and 4 / max(0.5, 1) * 5 = 20
    assert base["transactions_mae"] == 0.0
    assert base["spend_mae"] == pytest.approx((3 + 20) / 2)
    assert base["spend_error_pct"] == pytest.approx(100 * (35 - 12) / 12)
    assert card.iloc[0]["spend_mae"] == 0.0


def test_sufficiency_gate_names_what_is_missing():
    frame = clv.TimeFrame(dt.date(2024, 1, 1), dt.date(2024, 2, 1), dt.date(2024, 2, 10), "weeks")
    s = pd.DataFrame({"frequency": [0, 1, 0]})
    missing = clv.sufficiency(
        frame,
        s,
        min_customers=200,
        min_repeat_buyers=50,
        min_calibration_days=90,
        min_holdout_days=28,
    )
    assert missing == [
        "a calibration period of at least 90 days (found 32)",
        "a holdout period of at least 28 days (found 9)",
        "at least 200 customers with a first purchase in the calibration period (found 3)",
        "at least 50 customers with a repeat purchase in the calibration period (found 1)",
    ]
    assert clv.sufficiency(
        None, None, min_customers=1, min_repeat_buyers=1, min_calibration_days=1, min_holdout_days=1
    )
    assert not clv.sufficiency(
        frame,
        s,
        min_customers=3,
        min_repeat_buyers=1,
        min_calibration_days=30,
        min_holdout_days=9,
    )


def test_degenerate_data_is_a_clear_error():
    with pytest.raises(clv.ClvFitError, match="no customers"):
        clv.fit_bgnbd([], [], [])
    with pytest.raises(clv.ClvFitError, match="recency <= T"):
        clv.fit_bgnbd([1], [5.0], [2.0])
    with pytest.raises(clv.ClvFitError, match="at least 10 needed"):
        clv.fit_gamma_gamma([1, 2, 0], [10.0, 20.0, np.nan])


# --------------------------------------------------------------------------- simulated recovery
def _simulate(params, gg, n, seed):
    """Customers drawn from BG/NBD + Gamma-Gamma with first purchases spread over 12 weeks."""
    r, alpha, a, b = params
    p, q, g = gg
    rng = np.random.default_rng(seed)
    lam, drop = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    nu = rng.gamma(q, 1 / g, n)
    T = 52.0 - rng.uniform(0, 12, n)
    x, t_x, m = np.zeros(n), np.zeros(n), np.full(n, np.nan)
    for i in range(n):
        t, k, total = 0.0, 0, 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T[i]:
                break
            k, t_last = k + 1, t
            total += rng.gamma(p, 1 / nu[i])
            if rng.random() < drop[i]:
                break
        x[i] = k
        if k:
            t_x[i], m[i] = t_last, total / k
    return x, t_x, T, m


def test_fits_recover_simulated_parameters_within_standard_errors():
    truth_bg, truth_gg = (0.6, 5.0, 0.8, 2.5), (6.0, 4.0, 15.0)
    x, t_x, T, m = _simulate(truth_bg, truth_gg, 6000, seed=11)
    bg = clv.fit_bgnbd(x, t_x, T)
    gg = clv.fit_gamma_gamma(x, m)
    for fit, truth in ((bg, truth_bg), (gg, truth_gg)):
        for name, value in zip(fit.names, truth, strict=True):
            z = (fit.params[name] - value) / fit.se[name]
            assert abs(z) < 2.5, (name, fit.params[name], value, fit.se[name])


def test_parameter_draws_are_seeded_and_intervals_cover_the_estimate(cdnow_summary):
    s = cdnow_summary
    bg = clv.fit_bgnbd(s["frequency"], s["recency"], s["T"])
    gg = clv.fit_gamma_gamma(s["frequency"], s["monetary_value"])
    np.testing.assert_array_equal(bg.draws(5, 1), bg.draws(5, 1))
    opts = dict(
        unit="weeks",
        prediction_periods=26,
        horizon_months=12,
        monthly_discount_rate=0.01,
        margin=1.0,
        draws=100,
        level=0.9,
        seed=7,
    )
    iv = clv.headline_intervals(bg, gg, s, **opts)
    assert iv == clv.headline_intervals(bg, gg, s, **opts)
    lo, hi = iv["clv_ratio"]
    assert lo < 1 < hi and hi - lo > 0.02  # parameter uncertainty is visible, not zero
    values = clv.customer_table(
        s,
        bg,
        gg,
        unit="weeks",
        prediction_periods=26,
        horizon_months=12,
        monthly_discount_rate=0.01,
        margin=1.0,
    )
    assert len(values) == 2357 and values["clv"].ge(0).all()
    assert values["p_alive"].between(0, 1).all()
    assert sorted(values["clv_decile"].unique()) == list(range(1, 11))
    top = values.loc[values["clv_decile"] == 1, "clv"].min()
    assert top >= values.loc[values["clv_decile"] == 2, "clv"].max()


def test_analytic_gradients_match_finite_differences():
    from scipy.optimize import approx_fprime

    rng = np.random.default_rng(5)
    x = rng.integers(0, 6, 300).astype(float)
    T = rng.uniform(10, 40, 300)
    t_x = np.where(x > 0, rng.uniform(0, 1, 300) * T, 0.0)
    m = rng.gamma(4, 10, 300)
    w = np.ones(300)
    for fun, theta in (
        (clv.bgnbd_objective(x, t_x, T, w), np.log([0.3, 4.0, 0.8, 2.5])),
        (clv.gg_objective(x[x > 0], m[x > 0], w[x > 0]), np.log([6.0, 3.5, 15.0])),
    ):
        numeric = approx_fprime(theta, lambda t, f=fun: f(t)[0], 1e-7)
        np.testing.assert_allclose(fun(theta)[1], numeric, rtol=1e-4, atol=1e-3)


def test_parameter_at_a_bound_is_held_fixed_for_the_standard_errors():
    # f = (t0 - 1)^2 + t1 on log-parameters: t1 runs to the lower bound, t0 has variance 1/2
    def fun(theta):
        return (theta[0] - 1) ** 2 + theta[1], np.array([2 * (theta[0] - 1), 1.0])

    fit = clv._fit("toy", ("u", "v"), fun, 10, [np.array([1.5, 0.5])])
    assert fit.at_bound == ["v"]
    assert fit.params["u"] == pytest.approx(np.e, rel=1e-6)
    assert fit.se["u"] == pytest.approx(np.e * np.sqrt(0.5), rel=1e-4)
    assert np.isnan(fit.se["v"])
    assert any("held fixed" in w for w in fit.warnings)
    table = fit.table().set_index("parameter")
    assert np.isnan(table.loc["v", "ci95_low"]) and table.loc["u", "ci95_low"] < np.e
    # a quantity of the fixed parameter has no standard error; one of the free parameter has
    assert np.isnan(clv._delta(fit, lambda v: v[1], ("v",))[1])
    assert clv._delta(fit, lambda v: v[0] ** 2, ("u",))[1] == pytest.approx(
        2 * np.e**2 * np.sqrt(0.5), rel=1e-4
    )


def test_planted_check_bootstraps_a_rate_when_the_information_matrix_is_singular():
    # no dropout at all: the BG/NBD likelihood is flat along a -> 0, b -> inf (singular
    # information), yet the mean rate is well determined; planted rate = mean of the lambdas
    rng = np.random.default_rng(3)
    n = 1500
    lam = rng.gamma(4, 1 / 40, n)
    big_t = rng.uniform(20, 60, n)
    x = rng.poisson(lam * big_t)
    rec = np.where(x > 0, big_t * rng.beta(np.maximum(x, 1), 1), 0.0)
    fit = clv.fit_bgnbd(x, rec, big_t)
    assert np.isnan(clv.bgnbd_summary(fit)["mean_rate"][1])  # the delta method cannot say
    summary = pd.DataFrame(
        {
            "frequency": x,
            "recency": rec,
            "T": big_t,
            "monetary_value": np.where(x > 0, rng.gamma(20, 5.0, n), np.nan),
            "segment": "s",
        }
    )
    truth = {"s": {"mean_lambda_per_week": lam.mean(), "mean_dropout_p": 0.0,
                   "mean_order_value": 100.0}}  # fmt: skip
    a = clv.planted_check(summary, truth, bootstrap=40, seed=1).set_index("quantity")
    b = clv.planted_check(summary, truth, bootstrap=40, seed=1).set_index("quantity")
    pd.testing.assert_frame_equal(a, b)  # seeded
    rate = a.loc["purchases per week"]
    assert rate["se_method"] == "bootstrap"
    # the bootstrap SE is of the size the Poisson counts imply (about mean / sqrt(purchases))
    assert 0.3 < rate["std_error"] / (lam.mean() / np.sqrt(x.sum())) < 3
    assert abs(rate["z"]) < 2
    assert a.loc["spend per purchase", "se_method"] == "delta"
    assert abs(a.loc["spend per purchase", "z"]) < 2


@pytest.mark.parametrize("dropout_se", [math.nan, 5.7e-5], ids=["singular", "spuriously-tiny"])
def test_a_dropout_at_the_edge_is_not_identified_however_the_matrix_inverts(monkeypatch, dropout_se):
    # A segment that barely repeats: its dropout runs to 1. Whether the information matrix is
    # singular there (no delta-method error) or inverts to a tiny error (5.7e-5 on one machine,
    # z = 2,903) is floating point; the report must say "not identified" in both cases.
    def quantities(grp):
        return {
            "purchases per week": (0.000231, 0.000044),
            "dropout probability": (1.0, dropout_se),
            "spend per purchase": (8.07, 0.44),
            "spend per week": (0.001867, 0.000392),
            "_at_bound": ["alpha", "q"],
        }

    monkeypatch.setattr(clv, "_segment_quantities", quantities)
    summary = pd.DataFrame({"frequency": [0, 0, 1], "segment": "one_off"})
    truth = {"one_off": {"mean_lambda_per_week": 0.000267, "mean_dropout_p": 0.835,
                         "mean_order_value": 7.52}}  # fmt: skip
    rows = clv.planted_check(summary, truth, bootstrap=0).set_index("quantity")
    drop = rows.loc["dropout probability"]
    assert drop["se_method"] == "not identified (1 repeat buyers)"
    assert np.isnan(drop["std_error"]) and np.isnan(drop["z"])
    # the other quantities keep their delta-method errors, conditional on the bound parameters
    assert rows.loc["spend per purchase", "se_method"] == "delta (given alpha, q at bound)"
    assert rows.loc["spend per purchase", "z"] == pytest.approx((8.07 - 7.52) / 0.44)
