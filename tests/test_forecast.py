"""Chapter 07's model layer: hand-computed series and metrics, planted seasons, the demo."""

from __future__ import annotations

import datetime as dt
import time

import duckdb
import numpy as np
import pandas as pd
import pytest

from crm_helpers import i18n
from crm_helpers.models import forecast as fc

Z80, Z95 = 1.2815515655446004, 1.959963984540054


# ------------------------------------------------------------------------------ tiny fixture
def _tx_rows() -> pd.DataFrame:
    rows = [  # customer, order, date, amount, is_return, is_cancellation, is_product
        ("X", "o0", "2024-01-03", 99.0, False, False, True),  # Wed: the partial first week
        ("X", "o1", "2024-01-08", 10.0, False, False, True),  # week of Mon 01-08
        ("X", "o1", "2024-01-08", 20.0, False, False, True),
        ("Y", "o2", "2024-01-10", 15.0, False, False, True),
        ("Y", "o2", "2024-01-10", 5.0, False, False, False),  # postage: not revenue
        ("X", "o1", "2024-01-12", -10.0, True, False, True),  # a return, booked on its day
        ("Y", "Co2", "2024-01-13", -15.0, True, True, True),  # a cancellation
        (None, "o3", "2024-01-14", 7.0, False, False, True),  # no customer: revenue, order
        # the week of 01-15 has no line at all: a gap
        ("X", "o4", "2024-01-22", 40.0, False, False, True),
        ("X", "o1", "2024-01-23", -20.0, True, False, True),  # a late return of o1
        ("Y", "o2", "2024-01-24", -5.0, True, False, False),  # postage refunded: not revenue
        ("Z", "o5", "2024-01-28", 60.0, False, False, True),  # Sunday: still the 01-22 week
        ("Z", "o6", "2024-01-31", 50.0, False, False, True),  # Wed: the partial last week
    ]  # fmt: skip
    cols = ["customer_key", "order_id", "order_date", "amount", "is_return", "is_cancellation"]
    df = pd.DataFrame(rows, columns=cols + ["is_product"])
    df["order_date"] = pd.to_datetime(df["order_date"]).dt.date
    df["order_ts"] = pd.to_datetime(df["order_date"]) + pd.Timedelta(hours=12)
    df["quantity"] = np.sign(df["amount"])
    return df


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "transactions.parquet"
    _tx_rows().to_parquet(path, index=False)
    return path


def test_weekly_series_by_hand_keeps_complete_weeks_and_fills_gaps(tiny):
    s = fc.series(duckdb.connect(), tiny, "W")
    f = s.frame
    assert list(f.index.strftime("%Y-%m-%d")) == ["2024-01-08", "2024-01-15", "2024-01-22"]
    assert f.index.freqstr == "W-MON" and f.index.name == "period_start"
    # 01-08 week: 10 + 20 + 15 + 7 - 10 (return) - 15 (cancellation); postage left out
    # 01-15 week: nothing (0, not missing); 01-22 week: 40 + 60 - 20 (o1's late return)
    assert f["revenue"].tolist() == [27.0, 0.0, 80.0]
    assert f["orders"].tolist() == [3, 0, 2]  # o1, o2, o3; the cancellation is not an order
    assert f["customers"].tolist() == [2, 0, 2]  # o3 has no customer
    assert (s.dropped_start, s.dropped_end) == (1, 1)
    assert (s.first_day, s.last_day) == (dt.date(2024, 1, 3), dt.date(2024, 1, 31))
    assert s.note == (
        "3 complete weeks from 2024-01-08 to 2024-01-28; dropped a partial week at the start "
        "(data from 2024-01-03) and a partial week at the end (data to 2024-01-31)."
    )
    try:  # in a Chinese report: the units read as Chinese measure words, in Chinese order
        i18n.set_language("zh")
        assert s.note == (
            "完整的 3 周（2024-01-08 至 2024-01-28）；已舍弃开头不完整的一周（数据始于 "
            "2024-01-03）和末尾不完整的一周（数据止于 2024-01-31）。"
        )
        months = fc.series(duckdb.connect(), tiny, "M")
        assert months.note == "完整的 0 个月；已舍弃开头不完整的一个月（数据始于 2024-01-03）。"
        days = fc.series(duckdb.connect(), tiny, "D")
        assert days.note == "完整的 29 天（2024-01-03 至 2024-01-31）；没有舍弃不完整的周期。"
        notes = fc.candidate_models("M", 20)[1]
        assert notes and all("个个月" not in n and "months" not in n for n in notes), notes
        assert fc.candidate_models("M", 20, lang="en")[1][0].startswith("ETS without season")
    finally:
        i18n.set_language("en")


def test_series_span_override_days_and_months(tiny):
    con = duckdb.connect()
    to_sunday = fc.series(con, tiny, "W", end=dt.date(2024, 1, 28))
    assert len(to_sunday.frame) == 3 and (to_sunday.dropped_start, to_sunday.dropped_end) == (1, 0)
    assert "at the end" not in to_sunday.note
    both = fc.series(con, tiny, "W", start=dt.date(2024, 1, 8), end=dt.date(2024, 1, 28))
    pd.testing.assert_frame_equal(both.frame, to_sunday.frame)
    assert (both.dropped_start, both.dropped_end) == (0, 0) and "no partial" in both.note
    days = fc.series(con, tiny, "D")
    assert len(days.frame) == 29 and (days.dropped_start, days.dropped_end) == (0, 0)
    assert days.frame.index.freqstr == "D"
    # every product line counts once: 99 + 27 + 80 + 50
    assert days.frame["revenue"].sum() == pytest.approx(256.0)
    assert days.frame.loc["2024-01-13", "revenue"] == -15.0  # a day with only a cancellation
    assert days.frame.loc["2024-01-15":"2024-01-21", "revenue"].eq(0).all()
    # January starts before the data (01-03): no complete month
    months = fc.series(con, tiny, "M")
    assert months.frame.empty and months.dropped_start == 1
    with pytest.raises(ValueError, match="period must be one of 'D', 'W', 'M'"):
        fc.series_sql(tiny, "Q")


# --------------------------------------------------------------------- baselines and metrics
def _weekly(values, start="2024-01-01") -> pd.Series:
    idx = pd.date_range(start, periods=len(values), freq="W-MON", name="period_start")
    return pd.Series(np.asarray(values, dtype=float), index=idx)


def test_naive_and_seasonal_naive_by_hand():
    y = _weekly([10, 20, 12, 22, 14, 24])
    naive = fc.Naive().fit(y).predict(3)
    # residuals 10, -8, 10, -8, 10: sigma^2 = 428 / 5; sd_h = sigma sqrt(h)
    sd = np.sqrt(428 / 5 * np.array([1, 2, 3]))
    assert naive["mean"].tolist() == [24.0, 24.0, 24.0]
    assert naive["upper_95"].to_numpy() == pytest.approx(24 + Z95 * sd)
    assert naive["lower_80"].to_numpy() == pytest.approx(24 - Z80 * sd)
    assert list(naive.index.strftime("%m-%d")) == ["02-12", "02-19", "02-26"]
    snaive = fc.SeasonalNaive(2).fit(y)
    out = snaive.predict(3)
    # last season (14, 24) repeated; residuals y_t - y_{t-2} all 2; sd_h = 2 sqrt(floor((h-1)/2)+1)
    assert out["mean"].tolist() == [14.0, 24.0, 14.0]
    assert out["upper_95"].to_numpy() == pytest.approx(
        [14 + Z95 * 2, 24 + Z95 * 2, 14 + Z95 * 2**1.5]
    )
    assert snaive.spec_ == "y[t-2]"
    assert list(out.columns) == list(fc.INTERVAL_COLUMNS)


def test_mase_scale_uses_the_season_or_falls_back_to_naive():
    y = _weekly([1, 3, 2, 6, 4])
    assert fc.mase_scale(y, 2) == (2.0, "seasonal naive (lag 2)")  # |2-1|, |6-3|, |4-2|
    assert fc.mase_scale(y, 5) == (2.25, "naive (lag 1)")  # no full season + 1: 2, 1, 4, 2
    with pytest.raises(ValueError, match="constant series"):
        fc.mase_scale(_weekly([5, 5, 5]), None)


def test_score_mase_and_mape_by_hand():
    idx = pd.date_range("2024-01-01", periods=4, freq="W-MON")
    base = pd.DataFrame(
        {
            "origin": [idx[0], idx[0], idx[1], idx[1]],
            "step": [1, 2, 1, 2],
            "period_start": [idx[0], idx[1], idx[1], idx[2]],
            "actual": [10.0, 0.0, 20.0, 40.0],
            "scale": [5.0, 5.0, 10.0, 10.0],
            "scaled_by": "seasonal naive (lag 2)",
        }
    )
    mean_a = np.array([12.0, 1.0, 18.0, 44.0])  # errors 2, 1, 2, 4
    parts = [
        base.assign(model="A", spec="a", mean=mean_a),
        base.assign(model="B", spec="b", mean=base["actual"]),
    ]
    f = pd.concat(parts, ignore_index=True)
    for level in fc.LEVELS:
        f[f"lower_{level}"], f[f"upper_{level}"] = f["mean"] - 1.5, f["mean"] + 1.5
    t = fc.score(f).set_index("model")
    assert list(t.index) == ["B", "A"] and t["rank"].tolist() == [1, 2]
    # MASE: 2/5, 1/5, 2/10, 4/10 -> mean 0.3; MAPE ignores the zero actual: 20, 10, 10 %
    assert t.loc["A", "mase"] == pytest.approx(0.3)
    assert t.loc["A", "mape"] == pytest.approx(40 / 3)
    assert t.loc["A", "zero_actuals"] == 1
    assert t.loc["A", "mae"] == pytest.approx(2.25)
    assert t.loc["A", "rmse"] == pytest.approx(np.sqrt(25 / 4))
    assert t.loc["A", "coverage_80"] == pytest.approx(0.25)  # only |e| = 1 is inside +-1.5
    assert t.loc["B", "mase"] == 0 and t.loc["B", "coverage_95"] == 1
    assert (t.loc["A", "origins"], t.loc["A", "horizon"]) == (2, 2)
    assert fc.choose(t.reset_index()) == "B"


def test_backtest_of_the_baselines_by_hand():
    y = _weekly([10, 20, 12, 22, 14, 24, 16, 26])
    models = {fc.NAIVE: fc.Naive(), fc.SEASONAL_NAIVE: fc.SeasonalNaive(2)}
    f = fc.backtest_forecasts(y, models, origins=2, horizon=2, m=2)
    # origin 1 trains on 10..14 (scale: lag-2 changes 2, 2, 2), tests 24, 16;
    # origin 2 trains on 10..24, tests 16, 26
    assert f["origin"].drop_duplicates().tolist() == [y.index[5], y.index[6]]
    assert f["scale"].tolist() == [2.0] * 8
    assert f.loc[f["model"] == fc.NAIVE, "mean"].tolist() == [14.0, 14.0, 24.0, 24.0]
    assert f.loc[f["model"] == fc.SEASONAL_NAIVE, "mean"].tolist() == [22.0, 14.0, 14.0, 24.0]
    t = fc.score(f).set_index("model")
    assert t.loc[fc.NAIVE, "mase"] == pytest.approx((10 + 2 + 8 + 2) / 2 / 4)
    assert t.loc[fc.SEASONAL_NAIVE, "mase"] == pytest.approx(1.0)
    assert t.loc[fc.SEASONAL_NAIVE, "mape"] == pytest.approx(
        100 * (2 / 24 + 2 / 16 + 2 / 16 + 2 / 26) / 4
    )
    assert fc.choose(t.reset_index()) == fc.SEASONAL_NAIVE


# ------------------------------------------------------------------ planted seasons and trend
def _planted(
    periods: int, freq: str, cycle: float, seed: int, peak: float = 0.0, start: str = "2021-01-04"
) -> pd.Series:
    """Level 1000, +3 per period, a cosine of amplitude 150 and the given cycle, noise sd 30."""
    t = np.arange(periods)
    rng = np.random.default_rng(seed)
    y = 1000 + 3 * t + 150 * np.cos(2 * np.pi * (t - peak) / cycle) + rng.normal(0, 30, periods)
    idx = pd.date_range(start, periods=periods, freq=freq, name="period_start")
    return pd.Series(y, index=idx)


def test_sarimax_fourier_recovers_a_planted_yearly_sinusoid_and_trend():
    y = _planted(156, "W-MON", 365.25 / 7, seed=3, peak=20)
    origins, horizon = 6, 13
    n0 = fc.train_length(len(y), origins=origins, horizon=horizon)
    models, notes = fc.candidate_models("W", n0, bounds=fc.ArimaBounds(p=1, q=1, fourier=2))
    assert isinstance(models[fc.SARIMAX], fc.Sarimax) and models[fc.SARIMAX].m == 52
    # the first origin's choice kept (faster): the search itself is what is tested here
    opts = {"origins": origins, "horizon": horizon, "m": 52, "reselect": False}
    table = fc.backtest(y, models, **opts).set_index("model")
    assert "Fourier(period 52.1786, K=" in table.loc[fc.SARIMAX, "spec"]
    # a season of 52 weeks 3 per week apart: the seasonal naive is 156 too low on average
    assert table.loc[fc.SARIMAX, "mase"] < 0.5 * table.loc[fc.SEASONAL_NAIVE, "mase"]
    assert fc.choose(table.reset_index()) == fc.SARIMAX
    assert table.loc[fc.SARIMAX, "coverage_95"] >= 0.85


def test_ets_and_sarimax_recover_a_planted_monthly_season():
    y = _planted(96, "MS", 12, seed=5, start="2021-01-01")
    n0 = fc.train_length(len(y), origins=6, horizon=6)
    models, notes = fc.candidate_models("M", n0, bounds=fc.ArimaBounds(p=1, q=1, P=1, Q=0))
    assert notes == [] and models[fc.ETS].m == 12
    opts = {"origins": 6, "horizon": 6, "m": 12, "reselect": False}
    table = fc.backtest(y, models, **opts).set_index("model")
    assert table.loc[fc.ETS, "spec"].endswith(",A)")  # a seasonal form
    assert "[12]" in table.loc[fc.SARIMAX, "spec"]
    for model in (fc.ETS, fc.SARIMAX):
        assert table.loc[model, "mase"] < 0.8 * table.loc[fc.SEASONAL_NAIVE, "mase"], model
    d = fc.decompose(y, 12)
    assert fc.seasonal_peak(d["seasonal"], "month") == 1  # the cosine peaks at t = 0, January
    assert d["trend"].iloc[-12:].mean() - d["trend"].iloc[:12].mean() == pytest.approx(
        3 * 84, rel=0.1
    )


def test_backtest_is_deterministic_and_never_sees_its_test_windows():
    y = _planted(60, "MS", 12, seed=8, start="2021-01-01")
    models = {fc.ETS: fc.Ets(), fc.SARIMAX: fc.Sarimax(bounds=fc.ArimaBounds(p=1, q=1))}
    opts = {"origins": 4, "horizon": 3, "m": 12}
    a = fc.backtest_forecasts(y, models, **opts)
    pd.testing.assert_frame_equal(a, fc.backtest_forecasts(y, models, **opts), check_exact=True)
    pinned = fc.backtest_forecasts(y, models, reselect=False, **opts)
    assert pinned.groupby("model")["spec"].nunique().eq(1).all()  # the first origin's choice
    # later data (even absurd) cannot change what was forecast before they were seen
    changed = y.copy()
    changed.iloc[-3:] = [5000.0, -5000.0, 0.0]
    first = a["origin"] == a["origin"].min()
    cols = ["model", "spec", "mean", "lower_95", "upper_95"]
    for frame, reselect in ((a, True), (pinned, False)):
        c = fc.backtest_forecasts(changed, models, reselect=reselect, **opts)
        pd.testing.assert_frame_equal(frame.loc[first, cols], c.loc[first, cols], check_exact=True)
    assert (c.loc[~first, "spec"] == pinned.loc[~first, "spec"]).all()


# ---------------------------------------------------------------------- fallbacks and errors
def test_candidate_models_fall_back_and_say_why():
    models, notes = fc.candidate_models("W", 40)
    assert list(models) == [fc.NAIVE, fc.ETS, fc.SARIMAX]
    assert models[fc.ETS].m is None and models[fc.SARIMAX].m is None
    assert any("Seasonal naive left out" in n and "53 weeks" in n for n in notes)
    assert (
        "SARIMAX without season: 1.5 seasons of 52 weeks (78 weeks) are needed; the data have 40."
        in notes
    )
    models, notes = fc.candidate_models("W", 85)
    assert models[fc.SARIMAX].m == 52 and models[fc.SEASONAL_NAIVE].m == 52
    assert models[fc.ETS].m is None and "at most 24" in notes[0]
    models, notes = fc.candidate_models("D", 12)
    assert models[fc.ETS].m is None and models[fc.SEASONAL_NAIVE].m == 7
    assert (
        "ETS without season: 2 seasons of 7 days (14 days) are needed; the data have 12." in notes
    )
    assert (
        fc.season_note(103, "W")
        == "2 seasons of 52 weeks (104 weeks) are needed; the data have 103"
    )
    assert fc.season_note(104, "W") is None
    assert fc.season_length("D") == 7 and fc.season_length("M") == 12


def test_too_short_series_raise_errors_that_name_the_need():
    y = _weekly(np.arange(30.0) % 7)
    with pytest.raises(ValueError, match="Seasonal naive needs at least 53 periods"):
        fc.SeasonalNaive(52).fit(y)
    with pytest.raises(ValueError, match="STL needs at least 104 periods .* the series has 30"):
        fc.decompose(y, 52)
    with pytest.raises(ValueError, match="ETS needs at least 48 periods \\(two seasons of 24\\)"):
        fc.Ets(m=24).fit(y)
    with pytest.raises(ValueError, match="SARIMAX needs at least 78 periods \\(1.5 seasons"):
        fc.Sarimax(m=52).fit(y)
    models = {fc.NAIVE: fc.Naive(), fc.SEASONAL_NAIVE: fc.SeasonalNaive(52)}
    with pytest.raises(ValueError, match="leave 16 for training .* Seasonal naive needs 53"):
        fc.backtest(y, models, origins=3, horizon=12, m=52)
    with pytest.raises(RuntimeError, match="not fitted yet"):
        fc.Naive().predict(3)
    with pytest.raises(ValueError, match="missing or infinite"):
        fc.Naive().fit(_weekly([1.0, np.nan, 2.0]))


def test_plot_helpers_draw_on_the_given_axes_and_return_them():
    import matplotlib.pyplot as plt

    y = _weekly([10, 20, 12, 22, 14, 24])
    fig, axes = plt.subplots(1, 2)
    out = fc.forecast(y, fc.Naive(), 3)
    profile = pd.Series([1.0, -1.0], index=pd.Index(["Mon", "Tue"], name="weekday"))
    drawn = [fc.plot_forecast(y, out, ax=axes[0]), fc.plot_profile(profile, ax=axes[1])]
    assert drawn == list(axes) and all(ax.has_data() for ax in axes)
    plt.close(fig)


# ------------------------------------------------------------------------------ the demo
@pytest.fixture(scope="module")
def demo(prepared_demo):
    """The default demo (2023-01-01 .. 2024-12-31), prepared; its weekly and daily series."""
    started = time.perf_counter()
    con = duckdb.connect()
    path = prepared_demo["prepared"] / "transactions.parquet"
    return {
        "path": path,
        "weekly": fc.series(con, path, "W"),
        "daily": fc.series(con, path, "D"),
        "started": started,
    }


def test_demo_weekly_series_has_two_full_years(demo):
    w = demo["weekly"]
    # the demo starts on a Sunday and ends on a Tuesday: both partial weeks are dropped
    assert len(w.frame) == 104 and (w.dropped_start, w.dropped_end) == (1, 1)
    assert w.frame.index[0] == pd.Timestamp("2023-01-02")
    assert (w.frame[["revenue", "orders", "customers"]] > 0).all().all()
    total = (
        duckdb.connect()
        .execute(
            f"SELECT sum(amount) FROM read_parquet('{demo['path']}') WHERE is_product "
            "AND order_date BETWEEN DATE '2023-01-02' AND DATE '2024-12-29'"
        )
        .fetchone()[0]
    )
    assert w.frame["revenue"].sum() == pytest.approx(total)


def test_demo_decomposition_finds_the_planted_seasons(demo):
    """Planted (crm_helpers.demo, seasonality): a yearly cosine of amplitude 0.25 peaking on
    day 330 (26 November), a Saturday peak (weekday factors Fri 1.1, Sat 1.25, Sun 1.1, the
    others 0.85-0.95) and an upward trend. Measured on weekly revenue: peak day 322 (18 Nov),
    relative amplitude 0.225, peak month November, trough June, trend x1.57; on daily revenue the
    weekday profile peaks on Saturday with Friday and Sunday next."""
    weekly = demo["weekly"].frame["revenue"]
    d = fc.decompose(weekly, fc.season_length("W"))
    cycle = fc.yearly_cycle(d)
    assert abs(cycle.peak_day - 330) <= 21, cycle  # late November, within three weeks
    assert 0.15 <= cycle.relative_amplitude <= 0.35, cycle
    assert fc.seasonal_peak(d["seasonal"], "month") in (11, 12)
    assert fc.seasonal_profile(d["seasonal"], "month").idxmin() in (5, 6)
    assert d["trend"].iloc[-1] > 1.2 * d["trend"].iloc[0]
    daily = fc.decompose(demo["daily"].frame["revenue"], fc.season_length("D"))
    profile = fc.seasonal_profile(daily["seasonal"], "weekday")
    assert fc.seasonal_peak(daily["seasonal"], "weekday") == "Sat"
    assert set(profile.nlargest(3).index) == {"Fri", "Sat", "Sun"}, profile.round(0).to_dict()


def test_demo_chosen_model_beats_seasonal_naive(demo):
    """Weekly revenue, 8 origins, horizon 12 weeks, the AIC search at every origin. Measured:
    SARIMAX MASE 0.40 (ARIMA(2,1,2) at the first origin, then ARIMA(0,1,1) + drift + a yearly
    Fourier pair), ETS(A,Ad,N) 0.45, naive 0.81, seasonal naive 0.85. On all 104 weeks the
    SARIMAX search keeps the yearly Fourier pair: the planted season is in the forecast. The
    three demo tests take 10-17 s on this shared 2-core machine, preparing the demo included."""
    y = demo["weekly"].frame["revenue"]
    origins, horizon = 8, 12
    n0 = fc.train_length(len(y), origins=origins, horizon=horizon)
    models, _ = fc.candidate_models("W", n0)
    assert list(models) == [fc.NAIVE, fc.SEASONAL_NAIVE, fc.ETS, fc.SARIMAX]
    table = fc.backtest(y, models, origins=origins, horizon=horizon, m=52)
    t = table.set_index("model")
    best = fc.choose(table)
    assert best != fc.SEASONAL_NAIVE
    assert t.loc[best, "mase"] < 0.8 * t.loc[fc.SEASONAL_NAIVE, "mase"], t["mase"].to_dict()
    assert (t["origins"] == origins).all() and (t["zero_actuals"] == 0).all()
    assert "Fourier" in fc.forecast(y, models[fc.SARIMAX], horizon)["spec"].iloc[0]
    out = fc.forecast(y, models[best], horizon)
    assert len(out) == horizon and out.index[0] == pd.Timestamp("2024-12-30")
    cols = ["lower_95", "lower_80", "mean", "upper_80", "upper_95"]
    assert (out[cols].diff(axis=1).iloc[:, 1:] > 0).all().all()
    elapsed = time.perf_counter() - demo["started"]
    assert elapsed < 60, f"the demo tests took {elapsed:.0f} s"


class _Flaky(fc.Naive):
    """A naive forecast whose pinned copy fails on the later origins (or always, with ``always``)."""

    def __init__(self, pinned_fails_after: int = 0, always: bool = False):
        self.pinned_fails_after = pinned_fails_after
        self.always = always

    def fit(self, y):
        if self.always or (self.pinned_fails_after and len(y) > self.pinned_fails_after):
            raise RuntimeError("did not converge")
        return super().fit(y)

    def pinned(self):
        return _Flaky(pinned_fails_after=self.pinned_fails_after or 1, always=self.always)


def test_backtest_survives_a_pinned_spec_failing_and_leaves_out_a_model_that_always_fails():
    y = pd.Series(
        np.arange(40, dtype=float), index=pd.date_range("2024-01-01", periods=40, freq="W-MON")
    )
    models = {"flaky": _Flaky(), "broken": _Flaky(always=True), fc.NAIVE: fc.Naive()}
    table = fc.backtest(y, models, origins=4, horizon=3, reselect=False)
    t = table.set_index("model")
    # the pinned copy fails on every later origin: the fresh search (a plain fit) stands in
    assert t.loc["flaky", "origins"] == 4 and t.loc["flaky", "mase"] == t.loc[fc.NAIVE, "mase"]
    assert "broken" not in t.index
    assert table.attrs["failed"]["broken"].startswith("broken failed at the origin")
    with pytest.raises(RuntimeError, match="every model failed"):
        fc.backtest(y, {"broken": _Flaky(always=True)}, origins=2, horizon=2)
