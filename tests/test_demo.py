"""The demo generator: determinism, size, exact dirt counts, identities, planted truth recovered."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crm_helpers.demo import BAD_EXPERIENCE, SEGMENTS, generate_demo

FILES = ("transactions.csv", "customers.csv", "feedback.csv", "events.csv", "ground_truth.json")


def _read(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False)


def _digests(folder: Path) -> dict[str, str]:
    return {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in FILES}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    """The default demo: 5,000 customers, ~100,000 lines, seed 42, with dirt."""
    folder = tmp_path_factory.mktemp("demo")
    return folder, generate_demo(folder)


@pytest.fixture(scope="module")
def tx(demo) -> pd.DataFrame:
    return _read(demo[0], "transactions")


@pytest.fixture(scope="module")
def customers(demo) -> pd.DataFrame:
    return _read(demo[0], "customers")


def _numbers(tx: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series]:
    qty = pd.to_numeric(tx.quantity)
    price = pd.to_numeric(tx.unit_price)
    ts = pd.to_datetime(tx.order_date, errors="coerce", format="%Y-%m-%d %H:%M:%S")
    cancel = tx.order_id.str.startswith("C")
    return qty, price, ts, cancel


# ------------------------------------------------------------------------------ determinism, size
def test_same_arguments_give_byte_identical_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ta = generate_demo(a, customers=300, lines=3000, seed=7)
    tb = generate_demo(b, customers=300, lines=3000, seed=7)
    assert _digests(a) == _digests(b)
    assert ta == tb == json.loads((a / "ground_truth.json").read_text())


def test_different_seed_gives_different_data(tmp_path):
    generate_demo(tmp_path / "a", customers=300, lines=3000, seed=7)
    generate_demo(tmp_path / "b", customers=300, lines=3000, seed=8)
    da, db = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert all(da[f] != db[f] for f in FILES)


@pytest.mark.parametrize(("customers", "lines"), [(50, 500), (400, 20_000)])
def test_number_of_lines_is_within_ten_percent_of_target(tmp_path, customers, lines):
    truth = generate_demo(tmp_path, customers=customers, lines=lines, seed=3)
    rows = len(_read(tmp_path, "transactions"))
    assert rows == truth["counts"]["n_lines"]
    assert abs(rows / lines - 1) <= 0.10
    assert len(truth["customer_segment"]) == customers


def test_default_demo_size_and_files(demo, tx, customers):
    folder, truth = demo
    assert abs(len(tx) / 100_000 - 1) <= 0.10
    assert len(customers) == truth["counts"]["n_customer_rows"]
    assert list(tx.columns) == [
        "customer_id", "order_id", "order_date", "product_id", "product_name", "category",
        "quantity", "unit_price", "channel",
    ]  # fmt: skip
    assert list(customers.columns) == [
        "customer_id", "signup_date", "birth_date", "gender", "region", "income", "name",
        "email", "phone", "address",
    ]  # fmt: skip
    feedback, events = _read(folder, "feedback"), _read(folder, "events")
    assert list(feedback.columns) == ["customer_id", "date", "score", "channel", "type", "text"]
    assert list(events.columns) == [
        "customer_id", "timestamp", "event_type", "product_id", "session_id"
    ]  # fmt: skip
    assert len(feedback) == truth["counts"]["n_feedback"]
    assert len(tx) <= len(events) == truth["counts"]["n_events"] <= 2 * len(tx)
    assert feedback.score.astype(int).between(1, 5).all()
    assert not feedback.duplicated().any() and not events.duplicated().any()
    assert set(tx.channel) == {"web", "store", "app"}
    assert set(feedback.type) == {"complaint", "inquiry", "review"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"customers": 49},
        {"customers": 10_000_000},
        {"lines": 499},
        {"customers": 1000, "lines": 2000},
        {"years": 0},
        {"years": 11},
        {"seed": -1},
        {"start_date": "2023-01-01"},
    ],
)
def test_out_of_range_arguments_raise_value_error(tmp_path, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        generate_demo(tmp_path, **kwargs)


# ------------------------------------------------------------------------------------------ dirt
def test_every_dirt_count_equals_what_is_in_the_files(demo, tx):
    truth = demo[1]
    counts = truth["dirt"]["counts"]
    qty, price, ts, cancel = _numbers(tx)
    end = pd.Timestamp(truth["period"]["end"]) + pd.Timedelta(days=1)
    canonical = tx.groupby("product_id").product_name.agg(lambda s: s.value_counts().index[0])
    found = {
        "exact_duplicate": int(tx.duplicated().sum()),
        "missing_customer_id": int((tx.customer_id == "").sum()),
        "cancellation_lines": int(cancel.sum()),
        "return_lines": int(((qty < 0) & ~cancel).sum()),
        "zero_price": int((price == 0).sum()),
        "negative_price": int((price < 0).sum()),
        "product_name_variant": int((tx.product_name != tx.product_id.map(canonical)).sum()),
        "unparseable_date": int(ts.isna().sum()),
        "future_date": int((ts >= end).sum()),
    }
    assert found == {k: counts[k] for k in found}
    assert all(v > 0 for v in found.values())
    assert truth["dirt"]["expected_quarantine"]["transactions"] == {
        k: counts[k]
        for k in (
            "exact_duplicate", "missing_customer_id", "unparseable_date", "future_date",
            "zero_price", "negative_price",
        )
    }  # fmt: skip
    assert (ts[ts >= end].dt.year >= 2031).all()
    # Rough shares of the brief (of ~100,000 lines).
    n = len(tx)
    assert 0.003 < found["exact_duplicate"] / n < 0.007
    assert 0.007 < found["missing_customer_id"] / n < 0.013
    # returns of whole orders sent back after a bad experience (the churn block) come on top
    c, churn = truth["counts"], truth["churn"]["measured"]
    sent_back = c["n_sent_back_lines"]
    leaving, staying = churn["leaving_orders"], c["n_orders"] - churn["leaving_orders"]
    orders = leaving * BAD_EXPERIENCE["leaving"]["return"]
    orders += staying * BAD_EXPERIENCE["staying"]["return"]
    assert sent_back == pytest.approx(orders * c["n_lines_clean"] / c["n_orders"], rel=0.15)
    assert 0.012 < (found["cancellation_lines"] + found["return_lines"] - sent_back) / n < 0.03


def test_each_dirty_line_has_exactly_one_kind(demo, tx):
    qty, price, ts, cancel = _numbers(tx)
    end = pd.Timestamp(demo[1]["period"]["end"]) + pd.Timedelta(days=1)
    canonical = tx.groupby("product_id").product_name.agg(lambda s: s.value_counts().index[0])
    dup_ids = {p["duplicate_id"] for p in demo[1]["identity"]["pairs"]}
    flags = pd.DataFrame(
        {
            "duplicate": tx.duplicated(keep=False),
            "missing_id": tx.customer_id == "",
            "zero_or_negative_price": price <= 0,
            "name_variant": tx.product_name != tx.product_id.map(canonical),
            "bad_or_future_date": ts.isna() | (ts >= end),
            "second_account": tx.customer_id.isin(dup_ids),
        }
    )
    assert flags.sum(axis=1).max() == 1
    # Returns and cancellations (business events) carry no dirt of their own.
    assert not flags.drop(columns="second_account")[qty < 0].any().any()


def test_cancellations_and_returns_reference_earlier_purchases(tx):
    qty, _, ts, cancel = _numbers(tx)
    buys = tx[(qty > 0) & ~cancel].assign(ts=ts)
    first = buys.groupby("order_id").ts.min()
    for mask, order_ids in ((cancel, tx.order_id.str[1:]), ((qty < 0) & ~cancel, tx.order_id)):
        ref = order_ids[mask]
        assert ref.isin(first.index).all()
        assert (ts[mask].to_numpy() >= first.loc[ref].to_numpy()).all()
    assert (qty[cancel] < 0).all()


def test_clean_demo_has_no_dirt_but_keeps_returns(tmp_path):
    truth = generate_demo(tmp_path, customers=500, lines=8000, seed=5, dirt=False)
    tx = _read(tmp_path, "transactions")
    qty, price, ts, cancel = _numbers(tx)
    assert not tx.duplicated().any()
    assert (tx.customer_id != "").all()
    assert ts.notna().all() and (ts < pd.Timestamp(truth["as_of"])).all()
    assert (price > 0).all()
    assert truth["identity"]["pairs"] == []
    assert len(_read(tmp_path, "customers")) == 500
    assert truth["dirt"]["enabled"] is False
    assert (
        (qty < 0).sum()
        == truth["dirt"]["counts"]["cancellation_lines"] + truth["dirt"]["counts"]["return_lines"]
        > 0
    )


# -------------------------------------------------------------------------------------- identity
def _normalised(customers: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    email = customers.email.str.strip().str.lower().replace("", np.nan)
    digits = customers.phone.str.replace(r"\D", "", regex=True)
    phone = digits.where(digits.str.len() >= 10).str[-10:]
    return email, phone


def test_different_people_never_share_a_normalised_email_or_phone(demo, customers):
    person_of = {p["duplicate_id"]: p["canonical_id"] for p in demo[1]["identity"]["pairs"]}
    person = customers.customer_id.map(lambda c: person_of.get(c, c))
    email, phone = _normalised(customers)
    for key in (email, phone):
        k = pd.DataFrame({"key": key, "person": person}).dropna()
        assert (k.groupby("key").person.nunique() == 1).all()
    assert email[customers.customer_id.isin(demo[1]["customer_segment"])].notna().all()


def test_duplicate_accounts_match_their_person_and_have_transactions(demo, tx, customers):
    pairs = demo[1]["identity"]["pairs"]
    assert abs(len(pairs) / 5000 - 0.02) < 0.005
    email, phone = _normalised(customers)
    by_id = customers.assign(e=email, p=phone).set_index("customer_id")
    for pair in pairs:
        a, b = by_id.loc[pair["canonical_id"]], by_id.loc[pair["duplicate_id"]]
        same = {
            "email": a.e == b.e,
            "phone": a.p == b.p,
        }
        assert all(same[k] for k in pair["evidence"].split("+"))
        assert a["name"] == b["name"] and a.address == b.address
        assert pair["duplicate_id"] > pair["canonical_id"]
        assert pair["duplicate_id"] not in demo[1]["customer_segment"]
    raw_differs = [
        by_id.loc[p["canonical_id"], "email"] != by_id.loc[p["duplicate_id"], "email"]
        for p in pairs
        if "email" in p["evidence"]
    ]
    assert all(raw_differs)
    on_second = tx.customer_id.isin({p["duplicate_id"] for p in pairs})
    identity = demo[1]["identity"]
    assert on_second.sum() == identity["rows_under_duplicate_id"]
    assert identity["rows_under_duplicate_id"] >= identity["lines_under_duplicate_id"] > 0


def test_pii_sentinels_have_transactions_and_feedback(demo, tx, customers):
    folder, truth = demo
    feedback = _read(folder, "feedback")
    block = truth["pii_sentinels"]
    assert len(block["customers"]) == 3 and len(block["strings"]) == 12
    text = (folder / "customers.csv").read_text(encoding="utf-8")
    for s in block["customers"]:
        row = customers.set_index("customer_id").loc[s["customer_id"]]
        assert [row["name"], row.email, row.phone, row.address] == [
            s["name"], s["email"], s["phone"], s["address"]
        ]  # fmt: skip
        assert (tx.customer_id == s["customer_id"]).any()
        assert (feedback.customer_id == s["customer_id"]).any()
    for value in block["strings"]:
        assert value in text
        assert text.count(value) == 1


# -------------------------------------------------------------------------------- planted truth
def test_planted_pairs_lift_on_the_file_matches_the_truth(demo, tx):
    qty, _, _, cancel = _numbers(tx)
    buys = tx[(qty > 0) & ~cancel]
    n = buys.order_id.nunique()
    pairs = demo[1]["product_pairs"]["pairs"]
    assert 3 <= len(pairs) <= 5
    for pair in pairs:
        a, b = pair["antecedent_id"], pair["consequent_id"]
        with_a = set(buys.order_id[buys.product_id == a])
        with_b = set(buys.order_id[buys.product_id == b])
        lift = len(with_a & with_b) * n / (len(with_a) * len(with_b))
        assert lift == pytest.approx(pair["lift"], rel=0.10)
        assert pair["lift"] > 2
        assert (
            buys.product_name[buys.product_id == a]
            .str.strip()
            .str.lower()
            .eq(pair["antecedent_name"].lower())
            .mean()
            > 0.95
        )


def _rfm(demo, tx: pd.DataFrame, monetary: str) -> pd.DataFrame:
    truth = demo[1]
    person_of = {p["duplicate_id"]: p["canonical_id"] for p in truth["identity"]["pairs"]}
    qty, price, ts, cancel = _numbers(tx)
    as_of = pd.Timestamp(truth["as_of"])
    ok = (tx.customer_id != "") & (qty > 0) & (price > 0) & ts.notna() & (ts < as_of) & ~cancel
    t = tx[ok].assign(
        cid=tx.customer_id[ok].map(lambda c: person_of.get(c, c)),
        amount=qty[ok] * price[ok],
        ts=ts[ok],
    )
    g = t.groupby("cid").agg(last=("ts", "max"), f=("order_id", "nunique"), m=("amount", "sum"))
    g["r"] = (as_of - g["last"]).dt.days
    if monetary == "mean order value":
        g["m"] = g.m / g.f
    return g


@pytest.mark.parametrize("monetary", ["total spend", "mean order value"])
def test_kmeans_on_log_rfm_recovers_the_planted_segments(demo, tx, monetary):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score
    from sklearn.preprocessing import StandardScaler

    g = _rfm(demo, tx, monetary)
    x = StandardScaler().fit_transform(np.log1p(g[["r", "f", "m"]].to_numpy(float)))
    labels = KMeans(n_clusters=4, n_init=10, random_state=0).fit_predict(x)
    truth = g.index.map(demo[1]["customer_segment"])
    assert truth.notna().all()
    assert adjusted_rand_score(truth, labels) >= 0.7


def _chapter_rfm(truth: dict, tx: pd.DataFrame) -> pd.DataFrame:
    """RFM per canonical customer exactly as chapter 02 builds it (features.rfm_sql).

    Over the rows the data layer keeps (customer id present, parseable date before as_of, unit
    price > 0, exact duplicates dropped), second accounts merged: recency = days from the last
    purchase day (positive quantity) to as_of, frequency = distinct purchase orders, monetary =
    net revenue (returns and cancellations negative).
    """
    person_of = {p["duplicate_id"]: p["canonical_id"] for p in truth["identity"]["pairs"]}
    qty, price, ts, _ = _numbers(tx)
    as_of = pd.Timestamp(truth["period"]["end"]) + pd.Timedelta(days=1)
    kept = (tx.customer_id != "") & ts.notna() & (ts < as_of) & (price > 0) & ~tx.duplicated()
    t = pd.DataFrame(
        {
            "cid": tx.customer_id[kept].map(lambda c: person_of.get(c, c)),
            "order_id": tx.order_id[kept],
            "day": ts[kept].dt.normalize(),
            "amount": qty[kept] * price[kept],
        }
    )
    buys = t[qty[kept] > 0].groupby("cid")
    rfm = pd.DataFrame(
        {"recency_days": (as_of - buys.day.max()).dt.days, "frequency": buys.order_id.nunique()}
    )
    rfm["monetary"] = t.groupby("cid").amount.sum().reindex(rfm.index)
    return rfm


@pytest.mark.parametrize("seed", [42, 1, 7])
def test_chapter_02_picks_k_4_by_silhouette_and_recovers_the_segments(demo, tx, tmp_path, seed):
    from sklearn.metrics import adjusted_rand_score

    from crm_helpers.models import segment

    if seed == 42:  # the default demo
        truth, transactions = demo[1], tx
    else:
        truth = generate_demo(tmp_path, seed=seed)
        transactions = _read(tmp_path, "transactions")
    rfm = _chapter_rfm(truth, transactions)
    x = segment.clustering_matrix(rfm)
    analysis_seed = 20260101  # params/default.yml
    scores = segment.choose_k(x, 2, 8, seed=analysis_seed, sample=5000)
    best_k = int(scores.loc[scores["silhouette"].idxmax(), "k"])
    assert best_k == truth["segments"]["recovery"]["expected_k"] == 4, scores.round(3)
    fits = segment.fit_clusters(x, best_k, seed=analysis_seed, sample=5000)
    chosen = max(fits, key=lambda f: f.silhouette)
    planted = rfm.index.map(truth["customer_segment"])
    assert planted.notna().all()
    assert adjusted_rand_score(planted, chosen.labels) >= 0.7


def test_segments_differ_in_frequency_and_spend_as_documented(demo):
    measured = demo[1]["segments"]["measured"]
    assert list(measured) == list(SEGMENTS)
    orders = [measured[s]["mean_orders"] for s in SEGMENTS]
    values = [measured[s]["mean_order_value"] for s in SEGMENTS]
    assert orders == sorted(orders, reverse=True)
    assert values == sorted(values, reverse=True)
    shares = {s: measured[s]["share"] for s in SEGMENTS}
    assert shares == pytest.approx({"vip": 0.08, "loyal": 0.21, "occasional": 0.40,
                                    "one_off": 0.31}, abs=0.02)  # fmt: skip
    assert set(demo[1]["customer_segment"].values()) == set(SEGMENTS)


def test_churn_and_satisfaction_drivers_show_in_the_measured_data(demo):
    churn = demo[1]["churn"]["measured"]
    assert churn["dropped_out_share_returners"] > churn["dropped_out_share_non_returners"]
    assert churn["dropped_out_share_prefers_web"] > churn["dropped_out_share_other_channels"]
    assert churn["dropped_out_share_z_below_minus_1"] > churn["dropped_out_share_z_above_1"]
    r = churn["mean_trait_returns_share_returners"]
    assert r > 5 * churn["mean_trait_returns_share_non_returners"]
    # The order after which a customer leaves went wrong: sent back or complained about.
    planted = BAD_EXPERIENCE["leaving"]
    assert churn["leaving_orders"] > 1000
    assert churn["leaving_orders_sent_back_share"] == pytest.approx(planted["return"], abs=0.05)
    assert churn["leaving_orders_complaint_share"] == pytest.approx(planted["complaint"], abs=0.05)
    assert churn["other_orders_sent_back_share"] < 0.02
    assert churn["other_orders_complaint_share"] < 0.02
    sat = demo[1]["satisfaction"]["measured"]
    assert sat["by_type"]["complaint"] < sat["by_type"]["inquiry"] < sat["by_type"]["review"]
    assert sat["by_channel"]["app"] < sat["by_channel"]["web"] < sat["by_channel"]["store"]
    assert sat["by_dropped_out"]["dropped_out"] < sat["by_dropped_out"]["not_dropped_out"]
    assert sat["by_bad_experience"]["bad"] < sat["by_bad_experience"]["other"] - 1


def test_feedback_texts_use_the_terms_of_their_score_band(demo):
    feedback = _read(demo[0], "feedback")
    terms = demo[1]["satisfaction"]["text_terms"]
    band = pd.cut(feedback.score.astype(int), [0, 2, 3, 5], labels=list(terms))
    for name, words in terms.items():
        pattern = "|".join(re.escape(w) for w in words)
        texts = feedback.text[band == name].str.lower()
        assert texts.str.contains(pattern).all()


def test_seasonality_weekday_and_trend_are_visible(demo, tx):
    qty, _, ts, cancel = _numbers(tx)
    orders = tx.assign(ts=ts)[(qty > 0) & ~cancel & ts.notna()].groupby("order_id").ts.min()
    orders = orders[orders < pd.Timestamp(demo[1]["as_of"])]
    by_day = orders.dt.day_of_week.value_counts(normalize=True)
    assert by_day.idxmax() == 5  # Saturday
    by_year = orders.dt.year.value_counts()
    assert by_year[2024] > by_year[2023]
    season = demo[1]["seasonality"]
    assert len(season["weekday_factors"]) == 7 and len(season["month_factors"]) == 12


def test_ground_truth_blocks_are_described(demo):
    truth = demo[1]
    for key in (
        "segments", "bgnbd", "gamma_gamma", "seasonality", "product_pairs", "churn",
        "satisfaction", "identity", "pii_sentinels", "dirt", "period", "counts",
    ):  # fmt: skip
        assert len(truth[key]["description"]) > 40, key
    assert truth["period"] == {
        **truth["period"],
        "start": "2023-01-01",
        "end": "2024-12-31",
        "as_of": "2025-01-01",
    }
    assert truth["bgnbd"]["time_unit"] == "weeks"
    assert set(truth["bgnbd"]["params"]) == set(SEGMENTS)
    assert {"r", "alpha", "a", "b"} <= set(truth["bgnbd"]["params"]["vip"])
    assert {"p", "q", "gamma"} <= set(truth["gamma_gamma"]["params"]["vip"])
    assert truth["n_lines_clean"] == truth["counts"]["n_lines_clean"]


def test_other_start_date_and_years_shift_the_period(tmp_path):
    truth = generate_demo(
        tmp_path, customers=100, lines=1500, start_date=dt.date(2020, 2, 29), years=1, seed=1
    )
    assert truth["period"]["start"] == "2020-02-29"
    assert truth["period"]["end"] == "2021-02-28"
    tx = _read(tmp_path, "transactions")
    ts = pd.to_datetime(tx.order_date, errors="coerce", format="%Y-%m-%d %H:%M:%S")
    valid = ts[ts < pd.Timestamp("2022-01-01")]
    assert valid.min() >= pd.Timestamp("2020-02-29")
    assert valid.max() < pd.Timestamp("2021-03-01")


def test_observable_purchase_days_match_a_count_on_the_clean_file(tmp_path):
    # without dirt every purchase line is usable: the truth's purchase-day figures must equal a
    # direct count of distinct (customer, day) on the file's purchase lines
    truth = generate_demo(tmp_path, customers=400, lines=4000, seed=5, dirt=False)
    t = _read(tmp_path, "transactions")
    buy = t[~t["order_id"].str.startswith("CO") & (t["quantity"].astype(int) > 0)].copy()
    buy["day"] = buy["order_date"].str[:10]
    buy["amount"] = buy["quantity"].astype(int) * buy["unit_price"].astype(float)
    buy["segment"] = buy["customer_id"].map(truth["customer_segment"])
    days = buy.groupby(["segment", "customer_id", "day"])["amount"].sum().reset_index()
    measured = truth["segments"]["measured"]
    for seg, grp in days.groupby("segment"):
        orders = buy.loc[buy["segment"] == seg, "order_id"].nunique()
        buyers = grp["customer_id"].nunique()
        m = measured[seg]
        assert m["mean_purchase_day_value"] == pytest.approx(grp["amount"].mean(), abs=0.006)
        if orders > buyers:
            share = (len(grp) - buyers) / (orders - buyers)
            assert m["observable_repeat_share"] == pytest.approx(share, abs=2e-6), seg
            assert m["mean_lambda_observable_per_week"] == pytest.approx(
                m["mean_lambda_calendar_per_week"] * share, rel=1e-4
            )
    # same-day orders merge most among the frequent buyers
    assert (
        measured["vip"]["observable_repeat_share"]
        < measured["occasional"]["observable_repeat_share"]
        <= 1
    )


def test_merges_and_dirt_keep_the_observable_share_below_one(demo):
    measured = demo[1]["segments"]["measured"]
    for seg in ("vip", "loyal", "occasional"):
        assert 0.85 < measured[seg]["observable_repeat_share"] < 1, seg
