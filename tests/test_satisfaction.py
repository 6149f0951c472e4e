"""Chapter 08's model layer: hand-computed CSAT, NPS, tables and terms; planted drivers; the demo."""

from __future__ import annotations

import json
import math

import duckdb
import numpy as np
import pandas as pd
import pytest

from crm_helpers.config import load_params
from crm_helpers.errors import DataError
from crm_helpers.models import satisfaction as sa

CSAT = sa.Scale.csat()
NPS = sa.Scale.nps()


# ------------------------------------------------------------------------------ key figures
def test_csat_of_70_fives_20_fours_10_threes_is_4_6_with_90_percent_satisfied():
    out = sa.csat([5] * 70 + [4] * 20 + [3] * 10)
    assert out["n"] == 100
    assert out["mean"] == pytest.approx(4.6)  # (350 + 80 + 30) / 100
    assert out["share_satisfied"] == pytest.approx(0.9)  # (70 + 20) / 100
    assert out["distribution"] == {1: 0, 2: 0, 3: 10, 4: 20, 5: 70}


def test_csat_ignores_missing_scores_and_honours_satisfied_min():
    out = sa.csat([5, 4, 3, np.nan, None], satisfied_min=5)
    assert out["n"] == 3 and out["mean"] == pytest.approx(4.0)
    assert out["share_satisfied"] == pytest.approx(1 / 3)  # only the 5
    seven = sa.csat([7, 6, 5, 1], scale=(1, 7), satisfied_min=6)
    assert seven["mean"] == pytest.approx(19 / 4) and seven["share_satisfied"] == 0.5
    empty = sa.csat([])
    assert empty["n"] == 0 and math.isnan(empty["mean"])


def test_nps_is_promoters_minus_detractors_counted_by_hand():
    # 10 10 10 9 9 | 8 8 7 | 6 3: 5 promoters, 3 passives, 2 detractors of 10
    out = sa.nps([10, 10, 10, 9, 9, 8, 8, 7, 6, 3])
    assert out["n"] == 10
    assert (out["promoters"], out["passives"], out["detractors"]) == pytest.approx((0.5, 0.3, 0.2))
    assert out["nps"] == pytest.approx(30.0)
    assert out["distribution"][10] == 3 and out["distribution"][0] == 0
    assert sa.nps([0, 6, 5])["nps"] == pytest.approx(-100.0)
    assert sa.nps([9, 10])["nps"] == pytest.approx(100.0)
    assert sa.nps([7, 8, 9, 6])["nps"] == pytest.approx(0.0)


def test_scores_outside_the_scale_raise_naming_the_value_and_the_scale():
    with pytest.raises(
        ValueError, match=r"score 6 is outside the CSAT scale 1-5.*set the chapter's scale to nps"
    ):
        sa.csat([1, 2, 6])
    with pytest.raises(ValueError, match=r"score 0 is outside the CSAT scale 1-5"):
        sa.csat([0, 4])
    with pytest.raises(ValueError, match=r"score 11 is outside the NPS scale 0-10"):
        sa.nps([3, 11])
    with pytest.raises(ValueError, match=r"score 4.5 is not a whole number on the CSAT scale 1-5"):
        sa.csat([4.5, 5])
    with pytest.raises(sa.ScoreScaleError) as info:
        sa.check_scores([-1], NPS)
    assert isinstance(info.value, DataError)  # the CLI prints it without a traceback
    with pytest.raises(ValueError, match=r"satisfied_min=2"):
        sa.Scale.csat(1, 5, satisfied_min=2)  # no room for a low band


def test_auto_scale_reads_0_to_10_when_a_score_is_above_5_or_is_0():
    assert sa.resolve_scale([1, 2, 3, 4, 5]).kind == "csat"
    assert sa.resolve_scale([3, 4, 6]).kind == "nps"
    assert sa.resolve_scale([0, 3, 4]).kind == "nps"
    assert sa.resolve_scale([4, 5], "nps") == NPS  # named: no guessing
    assert sa.resolve_scale([4, 5], csat_range=(1, 7), satisfied_min=6).high == 7
    with pytest.raises(ValueError, match=r"score 7 is outside the CSAT scale 1-5"):
        sa.resolve_scale([4, 7], "csat")
    with pytest.raises(ValueError, match=r"score 12 is outside the NPS scale 0-10"):
        sa.resolve_scale([4, 12])
    with pytest.raises(ValueError, match="scale='likert'"):
        sa.resolve_scale([4], "likert")


def test_bands_of_scores_and_of_mean_scores():
    assert CSAT.band_ranges == {"low": "1-2", "neutral": "3", "high": "4-5"}
    assert NPS.band_ranges == {"detractor": "0-6", "passive": "7-8", "promoter": "9-10"}
    b = sa.band([1, 2, 2.5, 3, 3.5, 4, 5, np.nan], CSAT)
    assert b.tolist()[:7] == ["low", "low", "low", "neutral", "neutral", "high", "high"]
    assert pd.isna(b.iloc[7]) and b.cat.ordered
    n = sa.band([0, 6, 6.5, 7, 8, 8.9, 9, 10], NPS)
    assert n.tolist() == ["detractor"] * 3 + ["passive"] * 3 + ["promoter"] * 2


def test_key_figures_fill_the_artifact_keys_of_the_measured_scale_only():
    k = sa.key_figures([5] * 70 + [4] * 20 + [3] * 10, CSAT)
    assert k == {
        "scale": "csat",
        "responses": 100,
        "csat_mean": pytest.approx(4.6),
        "csat_share_satisfied": pytest.approx(0.9),
        "nps": None,
    }
    k = sa.key_figures([10, 10, 10, 9, 9, 8, 8, 7, 6, 3], NPS)
    assert k["nps"] == pytest.approx(30.0) and k["csat_mean"] is None


def test_distribution_lists_every_point_of_the_scale():
    d = sa.distribution([1, 1, 3, 5], CSAT)
    assert d["score"].tolist() == [1, 2, 3, 4, 5]
    assert d["responses"].tolist() == [2, 0, 1, 0, 1]
    assert d["share"].tolist() == pytest.approx([0.5, 0, 0.25, 0, 0.25])


# ------------------------------------------------------------------------------ tiny tables
def _tiny() -> pd.DataFrame:
    rows = [  # customer, date, score, channel, type
        ("A", "2024-01-05 10:00", 5, "web", "review"),
        ("D", "2024-01-10 09:00", 1, None, "complaint"),
        ("B", "2024-01-20 18:00", 3, "app", "complaint"),
        ("C", "2024-01-31 23:59", 4, "web", "inquiry"),
        # February: no feedback
        ("A", "2024-03-02 08:00", 2, "store", "complaint"),
        ("A", "2024-03-15 12:00", 4, "store", "review"),
    ]
    df = pd.DataFrame(rows, columns=["customer_key", "date", "score", "channel", "type"])
    df["date"] = pd.to_datetime(df["date"])
    df["score"] = df["score"].astype(float)
    return df


def test_by_period_equals_the_hand_computed_months_with_gaps_and_small_months():
    t = sa.by_period(_tiny(), CSAT, min_customers=1).set_index("period")
    assert [str(p.date()) for p in t.index] == ["2024-01-01", "2024-02-01", "2024-03-01"]
    assert t["responses"].tolist() == [4, 0, 2]
    assert t["customers"].tolist() == [4, 0, 1]
    # January: 5 1 3 4 -> mean 13 / 4, satisfied 2 of 4; March: 2 4 -> 3, 1 of 2
    assert t["mean_score"].tolist()[0::2] == pytest.approx([3.25, 3.0])
    assert t["share_satisfied"].tolist()[0::2] == pytest.approx([0.5, 0.5])
    assert np.isnan(t.loc["2024-02-01", "mean_score"]) and not t.loc["2024-02-01", "suppressed"]
    # March's answers all come from one customer: blanked with min_customers = 2
    s = sa.by_period(_tiny(), CSAT, min_customers=2).set_index("period")
    assert s["suppressed"].tolist() == [False, False, True]
    assert np.isnan(s.loc["2024-03-01", "mean_score"]) and s.loc["2024-03-01", "responses"] == 2
    q = sa.by_period(_tiny(), CSAT, period="Q", min_customers=1)
    assert q["responses"].tolist() == [6] and q["mean_score"].tolist() == pytest.approx([19 / 6])


def test_by_group_equals_the_hand_computed_channels_and_blanks_small_groups():
    t = sa.by_group(_tiny(), "channel", CSAT, min_customers=1).set_index("channel")
    assert list(t.index) == ["(missing)", "app", "store", "web"]
    assert t["responses"].tolist() == [1, 1, 2, 2]
    assert t["customers"].tolist() == [1, 1, 1, 2]
    assert t["mean_score"].tolist() == pytest.approx([1.0, 3.0, 3.0, 4.5])
    assert t["share_satisfied"].tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0])
    s = sa.by_group(_tiny(), "channel", CSAT, min_customers=2).set_index("channel")
    assert s["suppressed"].tolist() == [True, True, True, False]
    assert s["mean_score"].isna().tolist() == [True, True, True, False]
    assert s["responses"].tolist() == [1, 1, 2, 2]  # counts stay
    two = sa.by_group(_tiny(), ["type", "channel"], CSAT, min_customers=1)
    assert len(two) == 6 and two.columns[:2].tolist() == ["type", "channel"]


def test_by_group_on_the_nps_scale_equals_the_hand_count():
    df = pd.DataFrame(
        {
            "customer_key": list("abcdef"),
            "score": [10.0, 9, 7, 3, 6, 6],
            "group": ["g1"] * 4 + ["g2"] * 2,
        }
    )
    t = sa.by_group(df, "group", NPS, min_customers=1).set_index("group")
    assert t.loc["g1", ["promoters", "passives", "detractors"]].tolist() == pytest.approx(
        [0.5, 0.25, 0.25]
    )
    assert t["nps"].tolist() == pytest.approx([25.0, -100.0])


def test_tables_refuse_a_frame_without_the_required_columns():
    with pytest.raises(DataError, match=r"required column\(s\) score missing"):
        sa.by_group(_tiny().drop(columns="score"), "channel", CSAT)


def test_complaint_rate_per_response_and_per_1000_orders_by_hand():
    orders = pd.DataFrame(
        {"period": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]), "orders": [10, 5, 4]}
    )
    t = sa.complaint_rate(_tiny(), orders=orders, min_customers=1)
    assert t["responses"].tolist() == [4, 0, 2]
    assert t["complaints"].tolist() == [2, 0, 1]  # D and B; none; A
    assert t["complaint_share"].tolist()[0::2] == pytest.approx([0.5, 0.5])
    assert np.isnan(t["complaint_share"].iloc[1])
    assert t["complaints_per_1000_orders"].tolist() == pytest.approx([200.0, 0.0, 250.0])
    by = sa.complaint_rate(_tiny(), period=None, by="channel", min_customers=1)
    assert by["channel"].tolist() == ["(missing)", "app", "store", "web"]
    assert by["complaint_share"].tolist() == pytest.approx([1.0, 1.0, 0.5, 0.0])
    total = sa.complaint_rate(_tiny(), period=None, orders=orders, min_customers=1)
    assert total[["complaints", "orders"]].iloc[0].tolist() == [3, 19]


def test_type_mix_lists_every_type_in_every_month():
    t = sa.type_mix(_tiny())
    assert len(t) == 9  # 3 months x 3 types
    jan = t[t["period"] == "2024-01-01"].set_index("type")
    assert jan["responses"].to_dict() == {"complaint": 2, "inquiry": 1, "review": 1}
    assert jan["share"].tolist() == pytest.approx([0.5, 0.25, 0.25])
    assert t[t["period"] == "2024-02-01"]["share"].isna().all()


def test_orders_sql_counts_distinct_purchase_orders_per_month(tmp_path):
    tx = pd.DataFrame(
        {
            "customer_key": ["A", "A", "B", "C", "C", None],
            "order_id": ["o1", "o1", "o2", "o3", "o4", "o5"],
            "order_date": pd.to_datetime(
                ["2024-01-03", "2024-01-03", "2024-01-20", "2024-02-02", "2024-03-31", "2024-03-01"]
            ).date,
            "is_return": [False, False, True, False, False, False],  # o2 is only a return
            "is_product": [True, True, True, False, True, True],  # o3 is postage
            "channel": ["web", "web", "app", "web", "store", "web"],  # o5 has no customer
        }
    )
    path = tmp_path / "transactions.parquet"
    tx.to_parquet(path, index=False)
    con = duckdb.connect()
    o = con.execute(sa.orders_sql(path)).df()
    assert [str(p.date()) for p in o["period"]] == ["2024-01-01", "2024-03-01"]
    assert o["orders"].tolist() == [1, 1]
    ob = con.execute(sa.orders_sql(path, period="Q", by="channel")).df()
    assert ob[["channel", "orders"]].values.tolist() == [["store", 1], ["web", 1]]


# ------------------------------------------------------------------------------ churn by band
def _churn_fixture() -> tuple[pd.DataFrame, pd.DataFrame]:
    fb = pd.DataFrame(
        [
            ("A", "2024-01-01", 2.0),
            ("A", "2024-02-01", 5.0),  # A: latest 5 (high), mean 3.5 (neutral)
            ("B", "2024-01-05", 1.0),  # low
            ("C", "2024-03-01 10:00:00", 4.0),
            ("C", "2024-03-01 10:00:00", 3.0),  # same time: the lower counts as latest -> neutral
            ("D", "2024-01-09", 4.0),  # high
            ("F", "2024-01-09", 5.0),  # not in the churn table: left out
        ],
        columns=["customer_key", "date", "score"],
    )
    fb["date"] = pd.to_datetime(fb["date"], format="ISO8601")
    churn = pd.DataFrame(
        {
            "customer_key": list("ABCDE"),  # E gave no feedback
            "churn_probability": [0.1, 0.9, 0.5, 0.2, 0.7],
            "churned": [0, 1, 1, 0, 1],
        }
    )
    return fb, churn


def test_churn_by_band_equals_the_hand_computed_fixture():
    fb, churn = _churn_fixture()
    t = sa.churn_by_band(fb, churn, CSAT, min_customers=1).set_index("band")
    assert list(t.index) == ["low", "neutral", "high", "no feedback"]
    assert t["customers"].tolist() == [1, 1, 2, 1]
    assert t["mean_score"].tolist()[:3] == pytest.approx([1.0, 3.0, 4.5])
    assert t["mean_churn_probability"].tolist() == pytest.approx([0.9, 0.5, 0.15, 0.7])
    assert t["churn_rate"].tolist() == pytest.approx([1.0, 1.0, 0.0, 1.0])
    m = sa.churn_by_band(fb, churn, CSAT, use="mean", min_customers=1).set_index("band")
    assert m["customers"].tolist() == [1, 2, 1, 1]  # A moves to neutral (mean 3.5)
    assert m["mean_churn_probability"].tolist() == pytest.approx([0.9, 0.3, 0.2, 0.7])
    assert m["churn_rate"].tolist() == pytest.approx([1.0, 0.5, 0.0, 1.0])
    s = sa.churn_by_band(fb, churn, CSAT, min_customers=2).set_index("band")
    assert s["suppressed"].tolist() == [True, True, False, True]
    assert s["mean_churn_probability"].isna().tolist() == [True, True, False, True]


def test_churn_by_band_uses_whichever_churn_column_exists():
    fb, churn = _churn_fixture()
    p_only = sa.churn_by_band(fb, churn.drop(columns="churned"), CSAT, min_customers=1)
    assert p_only["churn_rate"].isna().all() and p_only["mean_churn_probability"].notna().all()
    with pytest.raises(DataError, match="churn_probability or a churned column"):
        sa.churn_by_band(fb, churn[["customer_key"]], CSAT)


# ------------------------------------------------------------------------------ drivers
TRUE = {
    ("type", "complaint"): -1.5,
    ("type", "inquiry"): -0.4,
    ("channel", "app"): -0.8,
    ("channel", "store"): 0.5,
    ("region", "south"): 0.0,
}
CUTS = np.array([-2.5, -1.0, 0.5, 2.0])  # latent cut points of the scores 1 | 2 | 3 | 4 | 5


def _planted(n_customers: int = 1500, per: int = 2, seed: int = 7) -> pd.DataFrame:
    """An ordered logit exactly: score = 1 + number of cut points below x'b + logistic noise."""
    rng = np.random.default_rng(seed)
    n = n_customers * per
    df = pd.DataFrame(
        {
            "customer_key": np.repeat([f"k{i:05d}" for i in range(n_customers)], per),
            "type": rng.choice(["complaint", "inquiry", "review"], n, p=[0.25, 0.25, 0.5]),
            "channel": rng.choice(["web", "store", "app"], n, p=[0.45, 0.3, 0.25]),
            "region": rng.choice(["north", "south"], n, p=[0.6, 0.4]),
            "text": "free text is never a factor",
        }
    )
    eta = np.zeros(n)
    for (factor, level), beta in TRUE.items():
        eta += beta * (df[factor] == level).to_numpy()
    df["score"] = 1.0 + np.searchsorted(CUTS, eta + rng.logistic(size=n))
    return df


@pytest.fixture(scope="module")
def planted():
    df = _planted()
    return df, sa.drivers(df, CSAT)


def test_drivers_recover_the_planted_effects_of_a_synthetic_ordered_logit(planted):
    df, fit = planted
    assert fit.method == sa.ORDERED and fit.notes == ()
    assert fit.rows == len(df) and fit.customers == 1500
    t = fit.table.set_index(["factor", "level"])
    # references: the most frequent level of each factor
    assert t["reference"].to_dict() == {
        ("channel", "app"): "web",
        ("channel", "store"): "web",
        ("region", "south"): "north",
        ("type", "complaint"): "review",
        ("type", "inquiry"): "review",
    }
    for key, beta in TRUE.items():
        row = t.loc[key]
        assert abs(row["coef"] - beta) < 3 * row["se"] and row["se"] < 0.12, key
        assert row["odds_ratio"] == pytest.approx(math.exp(row["coef"]))
        assert row["or_low"] < row["odds_ratio"] < row["or_high"]
        if beta != 0:
            assert np.sign(row["coef"]) == np.sign(beta) and row["p_value"] < 1e-4, key
    assert t.loc[("type", "complaint"), "rows"] == (df["type"] == "complaint").sum()


def test_drivers_are_deterministic(planted):
    df, fit = planted
    again = sa.drivers(df, CSAT)
    pd.testing.assert_frame_equal(fit.table, again.table, check_exact=True)


def test_drivers_fall_back_to_a_binary_logit_and_say_so(monkeypatch):
    df = _planted(n_customers=1000)

    def broken(*args, **kwargs):
        raise RuntimeError("the optimiser did not converge in 1 iterations")

    monkeypatch.setattr(sa, "_fit_ordered", broken)
    fit = sa.drivers(df, CSAT, factors=["type", "channel"])
    assert fit.method == f"{sa.BINARY} (satisfied: score >= 4)"
    assert any("ordered logit failed" in n and "did not converge" in n for n in fit.notes)
    # P(score >= 4) is itself a logit with the same slopes: the planted effects again
    t = fit.table.set_index(["factor", "level"])
    for key in [("type", "complaint"), ("channel", "app"), ("channel", "store")]:
        assert abs(t.loc[key, "coef"] - TRUE[key]) < 3 * t.loc[key, "se"], key
    with pytest.raises(DataError, match="the ordered logit failed"):
        sa.drivers(df, CSAT, factors=["type"], method="ordered")


def test_drivers_pool_rare_levels_and_leave_out_identifiers():
    df = _planted(n_customers=600)
    df.loc[:3, "channel"] = "fax"  # 4 rows of 2 customers: too few to estimate
    df["order_ref"] = [f"r{i % 50}" for i in range(len(df))]  # 50 levels: not a factor
    fit = sa.drivers(df, CSAT, reference={"channel": "web", "type": "review"})
    assert set(fit.table["factor"]) == {"type", "channel", "region"}
    assert "fax" not in set(fit.table["level"]) and fit.rows == len(df) - 4
    assert any("order_ref left out: more than 12 levels" in n for n in fit.notes)
    assert any(
        n.startswith("channel: 1 level(s)") and "left out of the fit" in n for n in fit.notes
    )
    with pytest.raises(ValueError, match=r"reference level 'email' of channel not found"):
        sa.drivers(df, CSAT, factors=["channel"], reference={"channel": "email"})
    with pytest.raises(DataError, match="no categorical column"):
        sa.drivers(df.assign(type="review"), CSAT, factors=["type"])


# ------------------------------------------------------------------------------ frequent terms
def _texts() -> pd.DataFrame:
    rows = [  # customer, band, text
        ("k1", "low", "Late delivery, poor quality."),
        ("k2", "low", "Late delivery!"),
        ("k2", "low", "Late delivery again"),  # 'again' is a stop word
        ("k3", "low", "late delivery and rude staff"),
        ("k4", "high", "Great quality"),
        ("k5", "high", "great quality, fast delivery"),
        ("k1", "high", "Fast delivery."),
        ("k6", "high", None),  # no text: left out
    ]
    df = pd.DataFrame(rows, columns=["customer_key", "band", "text"])
    df["band"] = pd.Categorical(df["band"], categories=["low", "neutral", "high"], ordered=True)
    return df


def test_frequent_terms_equal_the_hand_count_per_band():
    t = sa.frequent_terms(_texts(), min_customers=1)
    low = t[t["band"] == "low"]
    # 'late' and 'delivery' only ever occur in 'late delivery' here (collapsed); no term spans
    # the comma ('delivery poor'); ties alphabetically
    assert low["term"].tolist() == ["late delivery", "delivery rude", "poor quality", "rude staff"]
    assert low["rank"].tolist() == [1, 2, 3, 4]
    assert low["responses"].tolist() == [4, 1, 1, 1]
    assert low["customers"].tolist() == [3, 1, 1, 1]
    assert low["share"].tolist() == pytest.approx([1.0, 0.25, 0.25, 0.25])
    # 'late delivery' is in 4 of the 7 texts: lift = 1 / (4 / 7)
    assert low["lift"].iloc[0] == pytest.approx(7 / 4)
    high = t[t["band"] == "high"]
    assert high["term"].tolist() == ["fast delivery", "great quality"]
    assert high["share"].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert t["band"].unique().tolist() == ["low", "high"]  # the empty neutral band is absent
    full = sa.frequent_terms(_texts(), min_customers=1, collapse=False, top=3)
    assert full[full["band"] == "low"]["term"].tolist() == ["delivery", "late", "late delivery"]
    two = sa.frequent_terms(_texts(), min_customers=2)
    assert two["term"].tolist() == ["late delivery", "fast delivery", "great quality"]


def test_frequent_terms_never_show_addresses_numbers_or_one_customers_words():
    rows = []
    for i in range(6):
        rows.append((f"k{i}", f"Contact me at jane.doe{i}@example.com or 07700 90012{i}, thanks"))
        rows.append((f"k{i}", f"See https://www.example.org/track?id=9{i} broken link"))
    rows += [("z", "Zqxj Sentinelperson was rude")] * 6  # one customer, many times
    df = pd.DataFrame(rows, columns=["customer_key", "text"]).assign(band="low")
    terms = set(sa.frequent_terms(df, top=50, min_customers=5)["term"])
    assert {"contact", "broken link", "thanks"} <= terms
    words = {w for t in terms for w in t.split()}
    assert not words & {"jane", "doe", "example", "com", "org", "www", "https", "track", "id"}
    assert not words & {"zqxj", "sentinelperson", "rude"}
    assert not any(ch.isdigit() for t in terms for ch in t)


# ------------------------------------------------------------------------------ plots
def test_plots_draw_on_the_given_axes(planted):
    import matplotlib.pyplot as plt

    df, fit = planted
    fig, axes = plt.subplots(1, 3)
    drawn = [
        sa.plot_distribution(sa.distribution(df["score"], CSAT), ax=axes[0]),
        sa.plot_trend(sa.by_period(_tiny(), CSAT, min_customers=1), CSAT, ax=axes[1]),
        sa.plot_drivers(fit.table, ax=axes[2]),
    ]
    assert drawn == list(axes) and all(ax.has_data() for ax in axes)
    plt.close(fig)


# ------------------------------------------------------------------------------ the demo
@pytest.fixture(scope="module")
def demo(prepared_demo):
    """The default demo (5,000 customers), prepared, and its planted truth."""
    prepared = prepared_demo["prepared"]
    truth = json.loads((prepared_demo["source"] / "ground_truth.json").read_text())
    feedback = pd.read_parquet(prepared / "feedback.parquet")
    return {
        "feedback": feedback,
        "transactions": prepared / "transactions.parquet",
        "truth": truth["satisfaction"],
        "end": load_params().data.demo.end_date,
    }


def test_demo_prepared_feedback_has_the_contract_columns(demo):
    fb = demo["feedback"]
    assert {"customer_key", "date", "score", "channel", "type", "text"} <= set(fb.columns)
    assert "customer_id" not in fb.columns and fb["customer_key"].str.startswith("c_").all()
    assert sa.resolve_scale(fb["score"]) == CSAT  # scores 1-5: read as CSAT


def test_demo_scores_by_channel_and_type_equal_the_planted_measurements(demo):
    fb, measured = demo["feedback"], demo["truth"]["measured"]
    assert sa.key_figures(fb["score"], CSAT)["csat_mean"] == pytest.approx(
        measured["mean_score"], abs=5e-5
    )
    for col in ("channel", "type"):
        t = sa.by_group(fb, col, CSAT).set_index(col)["mean_score"]
        assert t.round(4).to_dict() == pytest.approx(measured[f"by_{col}"], abs=1e-4)


def test_demo_drivers_find_complaints_and_app_lower_and_store_higher(demo):
    fit = sa.drivers(demo["feedback"], CSAT)
    assert fit.method == sa.ORDERED
    t = fit.table.set_index(["factor", "level"])
    assert t["reference"].to_dict() == {
        ("channel", "app"): "web",
        ("channel", "store"): "web",
        ("type", "complaint"): "review",
        ("type", "inquiry"): "review",
    }
    coef = t["coef"]
    assert coef[("type", "complaint")] < coef[("channel", "app")] < 0 < coef[("channel", "store")]
    assert coef[("type", "inquiry")] < 0
    assert (t["p_value"] < 1e-6).all()
    # rough sizes: app -0.5 vs store +0.3 score points; complaints -1.6 (and -1 more after a
    # bad experience) -- at least 2.5 x the app effect
    assert -2.5 < coef[("channel", "app")] / coef[("channel", "store")] < -1.0
    assert coef[("type", "complaint")] / coef[("channel", "app")] > 2.5


def test_demo_low_band_terms_are_the_planted_negative_terms(demo):
    fb = demo["feedback"].assign(band=lambda d: sa.band(d["score"], CSAT))
    t = sa.frequent_terms(fb, top=10)
    planted = demo["truth"]["text_terms"]

    def words(band: str) -> set[str]:
        return {w for phrase in planted[band] for w in phrase.split()}

    for band, kind in (("low", "negative"), ("neutral", "neutral"), ("high", "positive")):
        terms = t.loc[t["band"] == band, "term"].tolist()
        assert terms and all(set(term.split()) <= words(kind) for term in terms), (band, terms)
    low = set(t.loc[t["band"] == "low", "term"])
    assert {"late delivery", "damaged item", "poor quality", "rude staff"} <= low
    assert (t.loc[t["band"] == "low", "customers"] >= 5).all()


def test_demo_customers_who_lapse_scored_lower(demo):
    """Planted: customers who drop out score lower. Observed here as no purchase in the last
    180 days of the data (chapter 06's probabilities are not needed for this check)."""
    tx = str(demo["transactions"]).replace("'", "''")
    lapsed = (
        duckdb.connect()
        .execute(
            f"""SELECT customer_key,
            CAST(max(order_date) <= DATE '{demo["end"]}' - INTERVAL 180 DAY AS INTEGER) AS churned
        FROM read_parquet('{tx}') WHERE NOT is_return AND is_product AND customer_key IS NOT NULL
        GROUP BY ALL"""
        )
        .df()
    )
    t = sa.churn_by_band(demo["feedback"], lapsed, CSAT).set_index("band")
    assert t.loc["low", "churn_rate"] > t.loc["high", "churn_rate"] + 0.15
    assert t["customers"].sum() == len(lapsed) and not t["suppressed"].any()


def test_auto_scale_refuses_a_few_stray_scores_instead_of_reading_nps():
    """One '0 = no answer' in a CSAT export must not turn the survey into an NPS of about -100."""
    with pytest.raises(sa.ScoreScaleError, match=r"1 of 101 scores \(1\.0%\) lie outside the CSAT"):
        sa.resolve_scale([4] * 100 + [0])
    assert sa.resolve_scale([4] * 90 + [9] * 10).kind == "nps"  # 10 % outside: an NPS survey
    assert sa.resolve_scale([4] * 100 + [0], "csat", csat_range=(0, 5)).kind == "csat"
