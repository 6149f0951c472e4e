"""Chapter 01 (customer profile and cohorts) on hand-computed fixtures, and its notebook."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import papermill as pm
import pytest

from crm_helpers import __version__, artifacts
from crm_helpers.config import load_params
from crm_helpers.data import prepare
from crm_helpers.models import profile
from crm_helpers.paths import NOTEBOOKS_DIR, RunPaths
from crm_helpers.report.runner import git_state, package_versions

from .conftest import write


def _tx(rows, columns=("customer_key", "order_id", "order_date", "amount", "is_return")):
    tx = pd.DataFrame(rows, columns=list(columns))
    tx["order_date"] = pd.to_datetime(tx["order_date"]).dt.date
    return tx


# ------------------------------------------------------------------ revenue concentration, Gini
def test_revenue_concentration_reads_the_top_shares_off_the_lorenz_curve():
    revenue = pd.Series([40.0, 10.0, 30.0, 20.0])  # total 100; sorted 10, 20, 30, 40
    got = profile.revenue_concentration(revenue, [0.25, 0.5, 0.1])
    # top 25 % = 1 customer = 40 / 100; top 50 % = (40 + 30) / 100.
    # top 10 %: Lorenz between (0.75, 0.60) and (1, 1): L(0.9) = 0.60 + 0.15 / 0.25 * 0.40 = 0.84,
    # so 1 - 0.84 = 0.16 (four tenths of the top customer's 40).
    assert got == pytest.approx({"25%": 0.40, "50%": 0.70, "10%": 0.16})


def test_gini_matches_the_closed_form_on_hand_computed_fixtures():
    # r = 10, 20, 30, 40: sum(i * r_i) = 10 + 40 + 90 + 160 = 300; 2 * 300 / (4 * 100) - 5 / 4 = 0.25
    assert profile.gini(pd.Series([40.0, 10.0, 30.0, 20.0])) == pytest.approx(0.25)
    # negative revenue counts as 0: r = 0, 0, 5, 15 (total 20): sum(i * r_i) = 15 + 60 = 75;
    # 2 * 75 / (4 * 20) - 5 / 4 = 0.625; the top 25 % brings 15 / 20.
    skewed = pd.Series([-5.0, 0.0, 5.0, 15.0])
    assert profile.gini(skewed) == pytest.approx(0.625)
    assert profile.revenue_concentration(skewed, [0.25])["25%"] == pytest.approx(0.75)
    # everyone spends the same: no concentration
    assert profile.gini(pd.Series([7.0, 7.0, 7.0])) == pytest.approx(0.0)


def test_lorenz_curve_runs_from_origin_to_one_in_ascending_order():
    lc = profile.lorenz_curve(pd.Series([40.0, 10.0, 30.0, 20.0]))
    assert lc["customer_share"].tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert lc["revenue_share"].tolist() == pytest.approx([0, 0.1, 0.3, 0.6, 1])  # 10, 30, 60, 100


# ---------------------------------------------------------------- buying behaviour, AOV
def test_days_between_purchases_counts_distinct_purchase_days_and_ignores_returns():
    tx = _tx(
        [
            ("A", "O1", "2024-01-01", 10.0, False),
            ("A", "O2", "2024-01-01", 5.0, False),  # second order the same day: one purchase day
            ("A", "R1", "2024-01-05", -5.0, True),  # a return is not a purchase
            ("A", "O3", "2024-01-11", 8.0, False),  # 10 days after Jan 1
            ("A", "O4", "2024-02-01", 8.0, False),  # 21 days after Jan 11
            ("B", "O5", "2024-01-03", 8.0, False),  # one purchase day: no gap
            ("C", "O6", "2024-03-04", 8.0, False),  # rows out of date order on purpose
            ("C", "O7", "2024-03-01", 8.0, False),  # Mar 1 -> Mar 4 = 3 days
        ]
    )
    gaps = profile.days_between_purchases(tx)
    assert list(zip(gaps.index, gaps, strict=True)) == [("A", 10), ("A", 21), ("C", 3)]
    assert gaps.median() == 10


def test_average_order_value_is_gross_purchases_per_purchase_order():
    tx = _tx(
        [
            ("A", "O1", "2024-01-01", 10.0, False),
            ("A", "O1", "2024-01-01", 5.0, False),  # O1 = 10 + 5 = 15
            ("A", "O2", "2024-01-02", 30.0, False),  # O2 = 30
            ("B", "O3", "2024-01-03", 45.0, False),  # O3 = 45
            ("B", "R1", "2024-01-04", -20.0, True),  # returns do not lower the order value
        ]
    )
    assert profile.order_values(tx).to_dict() == {"O1": 15.0, "O2": 30.0, "O3": 45.0}
    assert profile.average_order_value(tx) == pytest.approx(30.0)  # (15 + 30 + 45) / 3
    assert profile.orders_per_customer(tx).to_dict() == {"A": 2, "B": 1}
    assert profile.average_order_value(tx.iloc[:0]) is None


def test_count_distribution_pools_the_cap_and_keeps_empty_counts():
    got = profile.count_distribution(pd.Series([1, 1, 2, 5, 7, 12]), cap=5)
    assert got.to_dict() == {"1": 2, "2": 1, "3": 0, "4": 0, "5+": 3}


# ------------------------------------------------------------------------------- attributes
def test_age_bands_have_inclusive_lower_bounds_and_unknown_for_missing():
    ages = pd.Series([24, 25, 34, 35, 44, 45, 54, 55, 64, 65, 90, np.nan])
    assert profile.age_band(ages).tolist() == [
        "<25",
        "25-34",
        "25-34",
        "35-44",
        "35-44",
        "45-54",
        "45-54",
        "55-64",
        "55-64",
        "65+",
        "65+",
        "unknown",
    ]


def test_attribute_distributions_cover_only_attributes_present_among_buyers():
    customers = pd.DataFrame(
        {
            "customer_key": ["a", "b", "c", "d"],
            "orders": [1, 2, 1, np.nan],  # d never bought: not counted
            "gender": ["F", None, "F", "M"],
        }
    )
    tx = _tx([("a", "O1", "2024-01-01", 1.0, False)])  # no channel column
    dist = profile.attribute_distributions(customers, tx)
    # buyers a, b, c: F = 2 / 3, unknown = 1 / 3 (unknown listed last)
    assert dist[["attribute", "value", "customers"]].values.tolist() == [
        ["gender", "F", 2],
        ["gender", "unknown", 1],
    ]
    assert dist["share"].tolist() == pytest.approx([2 / 3, 1 / 3])
    assert profile.absent_attributes(customers, tx) == ["age", "region", "channel"]


def test_main_channel_is_the_channel_of_most_orders_ties_alphabetical():
    tx = _tx(
        [
            ("a", "O1", "2024-01-01", 1.0, False, "web"),
            ("a", "O2", "2024-01-02", 1.0, False, "store"),
            ("a", "O3", "2024-01-03", 1.0, False, "store"),  # a: store 2 orders, web 1
            ("b", "O4", "2024-01-01", 1.0, False, "web"),
            ("b", "O5", "2024-01-02", 1.0, False, "app"),  # b: tie -> app (alphabetical)
            ("b", "R1", "2024-01-03", -1.0, True, "web"),  # returns do not count
        ],
        columns=("customer_key", "order_id", "order_date", "amount", "is_return", "channel"),
    )
    assert profile.main_channel(tx).to_dict() == {"a": "store", "b": "app"}


# ---------------------------------------------------------------------------------- cohorts
COHORT_TX = [
    ("A", "O1", "2024-01-10", 10.0, False),  # A: cohort 2024-01, active months 0, 1, 2
    ("A", "O2", "2024-02-10", 10.0, False),
    ("A", "O3", "2024-03-10", 10.0, False),
    ("B", "O4", "2024-01-20", 20.0, False),  # B: cohort 2024-01, active months 0 and 2
    ("B", "R1", "2024-02-05", -5.0, True),  # a return in month 1 is not activity
    ("B", "O5", "2024-03-01", 20.0, False),
    ("C", "O6", "2024-02-28", 30.0, False),  # C: cohort 2024-02, active months 0, 1
    ("C", "O7", "2024-03-31", 30.0, False),  # last month of data: 2024-03
]


def test_cohort_retention_on_three_customers_over_three_months():
    ret = profile.cohort_retention(_tx(COHORT_TX), months=2)
    assert ret.index.tolist() == ["2024-01", "2024-02"]
    assert ret["customers"].tolist() == [2, 1]
    # 2024-01 (A, B): month 0 = 2/2, month 1 = A only = 1/2, month 2 = A and B = 2/2
    assert ret.loc["2024-01", [0, 1, 2]].tolist() == [1.0, 0.5, 1.0]
    # 2024-02 (C): month 0 = 1, month 1 = 1; month 2 (April) is after the data: not observed
    assert ret.loc["2024-02", [0, 1]].tolist() == [1.0, 1.0]
    assert np.isnan(ret.loc["2024-02", 2])


def test_mean_retention_is_weighted_by_cohort_size_over_observed_cohorts():
    ret = profile.cohort_retention(_tx(COHORT_TX), months=2)
    assert profile.mean_retention(ret, 1) == pytest.approx(2 / 3)  # (0.5 * 2 + 1.0 * 1) / 3
    assert profile.mean_retention(ret, 2) == pytest.approx(1.0)  # only 2024-01 observed: 2 / 2
    assert profile.mean_retention(ret, 3) is None  # not in the matrix


def test_cohort_revenue_nets_returns_per_cohort():
    rev = profile.cohort_revenue(_tx(COHORT_TX))
    # 2024-01: A 10 + 10 + 10 = 30, B 20 - 5 + 20 = 35 -> 65 over 2 customers; 2024-02: C 60
    assert rev.to_dict("index") == {
        "2024-01": {"customers": 2, "revenue": 65.0, "revenue_per_customer": 32.5},
        "2024-02": {"customers": 1, "revenue": 60.0, "revenue_per_customer": 60.0},
    }


# ------------------------------------------------------------------------------------- tags
THRESHOLDS = dict(
    new_days=90,
    loyal_min_orders=5,
    lapsing_days=180,
    high_value_share=0.3,  # 0.3 * 7 buyers = 2.1: ranks 1 and 2
    returns_heavy_share=0.2,
    multi_channel_min=2,
)
# key, orders, tenure_days, recency_days, revenue, gross_revenue, returns_value
TAG_CUSTOMERS = pd.DataFrame(
    [
        # new (tenure 90 <= 90: boundary in)
        ("k1", 1, 90, 90, 100.0, 100.0, 0.0),
        # loyal (5 >= 5), lapsing (181 > 180); returns 100 / 600 < 0.2; tenure 91 > 90: not new
        ("k2", 5, 91, 181, 500.0, 600.0, 100.0),
        # returns-heavy (100 = 0.2 * 500: boundary in); recency 180: not lapsing; 4 orders: not loyal
        ("k3", 4, 400, 180, 400.0, 500.0, 100.0),
        # long gone but 1 order: not lapsing
        ("k4", 1, 300, 300, 50.0, 50.0, 0.0),
        # lapsing (2 orders, 200 > 180), high value (rank 1)
        ("k5", 2, 500, 200, 1000.0, 1000.0, 0.0),
        # high value (rank 2 <= 2.1); returns 50 / 950 < 0.2
        ("k6", 3, 200, 10, 900.0, 950.0, 50.0),
        # new, returns-heavy (20 >= 0.2 * 10); negative revenue: never high value
        ("k7", 1, 30, 30, -10.0, 10.0, 20.0),
        # never bought: not tagged
        ("k8", np.nan, np.nan, np.nan, np.nan, np.nan, np.nan),
    ],
    columns=[
        "customer_key",
        "orders",
        "tenure_days",
        "recency_days",
        "revenue",
        "gross_revenue",
        "returns_value",
    ],
)
TAG_TX = _tx(
    [
        ("k1", "O1", "2024-10-03", 10.0, False, "web"),
        ("k1", "O2", "2024-10-04", 10.0, False, "app"),  # k1: 2 channels = multi-channel (boundary)
        ("k3", "O3", "2024-01-01", 10.0, False, "web"),
        ("k3", "R1", "2024-01-02", -10.0, True, "store"),  # a return's channel does not count
        ("k2", "O4", "2024-01-01", 10.0, False, "web"),
        ("k2", "O5", "2024-01-03", 10.0, False, None),  # no channel recorded on this line
    ],
    columns=("customer_key", "order_id", "order_date", "amount", "is_return", "channel"),
)


def test_each_tag_rule_on_boundary_values():
    tags = profile.customer_tags(TAG_CUSTOMERS, TAG_TX, **THRESHOLDS).set_index("customer_key")
    assert tags.index.tolist() == ["k1", "k2", "k3", "k4", "k5", "k6", "k7"]
    assert tags.index[tags["new"]].tolist() == ["k1", "k7"]
    assert tags.index[tags["loyal"]].tolist() == ["k2"]
    assert tags.index[tags["lapsing"]].tolist() == ["k2", "k5"]
    assert tags.index[tags["high_value"]].tolist() == ["k5", "k6"]
    assert tags.index[tags["returns_heavy"]].tolist() == ["k3", "k7"]
    assert tags.index[tags["multi_channel"]].tolist() == ["k1"]
    assert tags.loc["k1", "tags"] == "new, multi-channel"
    assert tags.loc["k2", "tags"] == "loyal, lapsing"
    assert tags.loc["k4", "tags"] == ""
    assert profile.tag_counts(tags.reset_index()) == {
        "new": 2,
        "loyal": 1,
        "lapsing": 2,
        "high_value": 2,
        "returns_heavy": 2,
        "multi_channel": 1,
    }


def test_high_value_ties_at_the_cut_share_the_better_rank():
    cust = TAG_CUSTOMERS.copy()
    cust.loc[cust["customer_key"] == "k3", "revenue"] = 900.0  # ties k6 for rank 2
    tags = profile.customer_tags(cust, TAG_TX, **THRESHOLDS).set_index("customer_key")
    assert tags.index[tags["high_value"]].tolist() == ["k3", "k5", "k6"]


def test_loyal_and_new_move_with_their_thresholds():
    tags = profile.customer_tags(
        TAG_CUSTOMERS, TAG_TX, **(THRESHOLDS | {"loyal_min_orders": 4, "new_days": 89})
    ).set_index("customer_key")
    assert tags.index[tags["loyal"]].tolist() == ["k2", "k3"]  # 5 and 4 orders >= 4
    assert tags.index[tags["new"]].tolist() == ["k7"]  # k1's tenure 90 > 89


def test_multi_channel_tag_is_absent_without_a_channel_column():
    tags = profile.customer_tags(TAG_CUSTOMERS, TAG_TX.drop(columns="channel"), **THRESHOLDS)
    assert "multi_channel" not in tags
    assert "multi_channel" not in profile.tag_counts(tags)
    assert tags.loc[tags["customer_key"] == "k1", "tags"].item() == "new"


# ------------------------------------------------------------------- the notebook, end to end
# A tiny client with planted tags. Last line 2024-12-31, so the reference date is 2025-01-01.
TX = """customer_id,order_id,order_date,quantity,unit_price,product_id,channel
C01,O01,2024-10-03,1,50,P1,web
C02,O02,2024-10-02,1,50,P1,web
C03,O03,2024-01-15,1,100,P1,web
C03,O04,2024-04-15,1,100,P2,app
C03,O05,2024-06-15,1,100,P1,web
C03,O06,2024-09-15,1,100,P1,web
C03,O07,2024-12-31,1,100,P1,web
C04,O08,2024-02-10,1,60,P1,store
C04,O09,2024-07-04,1,60,P1,store
C05,O10,2024-03-01,1,70,P2,web
C05,O11,2024-07-05,1,70,P2,web
C06,O12,2024-05-20,10,1000,P3,store
C07,O13,2024-04-01,1,100,P1,web
C07,CO14,2024-04-10,-1,20,P1,app
C08,O15,2024-02-01,1,30,P1,web
C08,O16,2024-02-01,1,30,P2,store
C09,O17,2024-01-20,1,40,P1,app
C09,O18,2024-02-25,1,40,P2,app
C10,O19,2024-05-05,1,40,P1,app
"""
CUST = """customer_id,gender,age,region
C01,F,23,North
C02,M,31,North
C03,F,45,South
C04,M,52,South
C05,F,38,North
C06,M,67,East
C07,F,29,East
C08,M,41,North
C09,F,35,South
C10,M,58,North
C11,F,40,East
"""
# What the notebook must find (default thresholds; days to 2025-01-01):
#   new (first purchase <= 90 days ago): C01 (Oct 3 = 90 days); C02 (Oct 2 = 91) is not -> 1
#   loyal (>= 5 orders): C03 -> 1
#   lapsing (>= 2 orders, none in 180 days): C04 (last Jul 4 = 181 days), C08 (Feb 1),
#     C09 (Feb 25); not C05 (last Jul 5 = 180 days) -> 3
#   high value (top 10 % of 10 buyers = 1): C06 (10,000) -> 1
#   returns-heavy (returns >= 20 % of purchases): C07 (20 of 100, exactly) -> 1
#   multi-channel (>= 2 channels): C03 (web, app), C08 (web, store); not C07 (its app line is a
#     return) -> 2
# Buyers: C01-C10 (C11 never bought) = 10. Net revenue 50 + 50 + 500 + 120 + 140 + 10,000 + 80
#   + 60 + 80 + 40 = 11,120: the top 10 % (C06) brings 10,000 / 11,120.
# Orders: 1+1+5+2+2+1+1+2+2+1 = 18 worth 11,140 (returns excluded): AOV 11,140 / 18.
# Gaps (days): C03 91, 61, 92, 107; C04 145; C05 126; C09 36; C08 none (same day) -> median 92.
# Cohorts: 2024-01 (C03, C09), 02 (C04, C08), 03 (C05), 04 (C07), 05 (C06, C10), 10 (C01, C02) = 6.
#   Month 1: only C09 (Feb) of 10 -> 0.1. Month 3: the October cohort is not observed (January
#   2025 is after the data), so 8 customers; only C03 (April) -> 1 / 8.
EXPECTED_TAGS = {
    "new": 1,
    "loyal": 1,
    "lapsing": 3,
    "high_value": 1,
    "returns_heavy": 1,
    "multi_channel": 2,
}


def _run_folder(tmp_path: Path, *, customers: bool = True, channel: bool = True) -> Path:
    tx = TX if channel else "\n".join(ln.rsplit(",", 1)[0] for ln in TX.splitlines()) + "\n"
    write(tmp_path / "tx.csv", tx)
    cust = f"  customers: {{path: {write(tmp_path / 'cust.csv', CUST)}}}\n" if customers else ""
    params = load_params(
        write(
            tmp_path / "p.yml",
            f"extends: {NOTEBOOKS_DIR.parent / 'params' / 'default.yml'}\nclient: tiny\n"
            f"data:\n  source: files\n  transactions: {{path: tx.csv}}\n{cust}"
            "cleaning:\n  max_valid_date: 2025-01-01\n",
        )
    )
    inputs = {
        t: getattr(params.data, t) for t in ("transactions", "customers") if getattr(params.data, t)
    }
    run = RunPaths(tmp_path / "run")
    res = prepare(params, inputs, run)
    info = {
        "client": params.client,
        "version": "test",
        "params_sha256": params.fingerprint(),
        "packages": package_versions(),
        "crm_helpers_version": __version__,
        "git": git_state(),
        "inputs": res.inputs,
        "period": res.period,
        "reference_date": res.reference_date,
    }
    (run.root / "run_info.json").write_text(json.dumps(info, indent=2))
    return run.root


def _execute(run_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    pm.execute_notebook(
        str(NOTEBOOKS_DIR / "01-profile.ipynb"),
        str(run_dir / "01-profile.ipynb"),
        parameters={"run_dir": str(run_dir)},
        kernel_name="python3",
        cwd=str(run_dir),
        progress_bar=False,
    )


def test_notebook_finds_the_planted_tags_and_figures(tmp_path, monkeypatch):
    run_dir = _run_folder(tmp_path)
    _execute(run_dir, monkeypatch)
    got = artifacts.load(run_dir, "profile")
    assert got["customers"] == 10
    assert got["tag_counts"] == EXPECTED_TAGS
    assert got["revenue_share_top"]["10%"] == pytest.approx(10_000 / 11_120)
    assert got["average_order_value"] == pytest.approx(11_140 / 18)
    assert got["median_days_between_purchases"] == 92
    assert got["cohorts"] == 6
    assert got["retention_month_1"] == pytest.approx(0.1)
    assert got["retention_month_3"] == pytest.approx(1 / 8)
    table = artifacts.load_table(run_dir, "profile")
    assert len(table) == 10 and table["customer_key"].is_unique
    assert table[list(EXPECTED_TAGS)].sum().to_dict() == EXPECTED_TAGS


def test_notebook_copes_without_customer_master_data_or_channel(tmp_path, monkeypatch):
    run_dir = _run_folder(tmp_path, customers=False, channel=False)
    _execute(run_dir, monkeypatch)
    got = artifacts.load(run_dir, "profile")
    assert got["customers"] == 10
    assert got["tag_counts"] == {k: v for k, v in EXPECTED_TAGS.items() if k != "multi_channel"}
    assert "multi_channel" not in artifacts.load_table(run_dir, "profile")
