"""Segmentation helpers against hand-computed fixtures and planted structure."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from crm_helpers import features
from crm_helpers.config import SegmentationChapter
from crm_helpers.models import segment

REF = dt.date(2024, 1, 31)


def _tx(tmp_path):
    rows = [  # customer, order, date, amount
        ("A", "a1", "2024-01-01", 10.0), ("A", "a2", "2024-01-10", 20.0),
        ("B", "b1", "2024-01-20", 50.0),
        ("C", "c1", "2024-01-05", 5.0), ("C", "c2", "2024-01-25", 5.0), ("C", "c3", "2024-01-30", 5.0),
        ("D", "d1", "2024-01-20", 30.0), ("D", "d1", "2024-01-20", 20.0),  # one order, two lines
        ("E", "e1", "2024-01-02", 100.0), ("E", "e1", "2024-01-15", -40.0),  # a return
        ("F", "f1", "2024-01-12", -5.0),  # only a return: not a buyer
        ("G", "g1", "2024-02-05", 9.0),  # after the reference date
    ]
    df = pd.DataFrame(rows, columns=["customer_key", "order_id", "order_date", "amount"])
    df["order_date"] = pd.to_datetime(df["order_date"]).dt.date
    df["is_return"] = df["amount"] < 0
    path = tmp_path / "tx.parquet"
    df.to_parquet(path)
    return str(path)


def test_rfm_values_and_scores_equal_the_hand_computed_fixture(tmp_path):
    rfm = features.rfm(duckdb.connect(), _tx(tmp_path), REF).set_index("customer_key")
    assert list(rfm.index) == ["A", "B", "C", "D", "E"]  # F (only a return) and G (later) left out
    # recency = days from the last purchase to 2024-01-31; E's return does not refresh recency
    assert rfm["recency_days"].to_dict() == {"A": 21, "B": 11, "C": 1, "D": 11, "E": 29}
    assert rfm["frequency"].to_dict() == {"A": 2, "B": 1, "C": 3, "D": 1, "E": 1}
    assert rfm["monetary"].to_dict() == {"A": 30.0, "B": 50.0, "C": 15.0, "D": 50.0, "E": 60.0}
    # score = 1 + floor(5 (rank - 1) / 5) = rank; ties share the lower rank
    # recency (older = rank 1): E29 r1, A21 r2, B11 = D11 r3, C1 r5
    assert rfm["r_score"].to_dict() == {"A": 2, "B": 3, "C": 5, "D": 3, "E": 1}
    # frequency: B = D = E (1) r1, A (2) r4, C (3) r5
    assert rfm["f_score"].to_dict() == {"A": 4, "B": 1, "C": 5, "D": 1, "E": 1}
    # monetary: C15 r1, A30 r2, B50 = D50 r3, E60 r5
    assert rfm["m_score"].to_dict() == {"A": 2, "B": 3, "C": 1, "D": 3, "E": 5}


def test_rfm_scores_with_many_ties_share_the_lower_score():
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t AS SELECT * FROM (VALUES "
        "('a', 'o1', DATE '2024-01-01', 1.0, FALSE), ('b', 'o2', DATE '2024-01-01', 1.0, FALSE), "
        "('c', 'o3', DATE '2024-01-01', 1.0, FALSE), ('d', 'o4', DATE '2024-01-01', 2.0, FALSE), "
        "('e', 'o5', DATE '2024-01-01', 3.0, FALSE), ('f', 'o6', DATE '2024-01-01', 10.0, FALSE)) "
        "AS v(customer_key, order_id, order_date, amount, is_return)"
    )
    m = con.execute(features.rfm_sql("t", REF)).df().set_index("customer_key")["m_score"]
    # ranks 1,1,1,4,5,6 of n=6: 1 + floor(5 (r-1) / 6) -> 1,1,1,3,4,5
    assert m.to_dict() == {"a": 1, "b": 1, "c": 1, "d": 3, "e": 4, "f": 5}


def test_named_segments_follow_the_rules_first_match_wins(tmp_path):
    rfm = features.rfm(duckdb.connect(), _tx(tmp_path), REF).set_index("customer_key")
    rules = SegmentationChapter().model_dump(mode="json")["segment_rules"]
    seg = segment.rfm_segments(rfm, rules).to_dict()
    # A: R2, FM (4+2)/2 = 3 -> At risk; B: R3, FM 2 -> Need attention; C: R5, FM 3 -> Loyal;
    # D as B; E: R1, FM 3 -> At risk
    assert seg == {"A": "At risk", "B": "Need attention", "C": "Loyal", "D": "Need attention", "E": "At risk"}


def test_unmatched_scores_fall_into_other():
    rfm = pd.DataFrame({"r_score": [1], "f_score": [5], "m_score": [1]})
    assert segment.rfm_segments(rfm, [{"name": "X", "r": [5, 5], "fm": [1, 5]}]).tolist() == ["Other"]


def test_value_tiers_cut_z_scores_of_log_monetary():
    monetary = pd.Series(np.expm1([0.0, 1.0, 2.0, 3.0, 4.0]))
    # log1p -> 0..4, mean 2, sd sqrt(2): z = -1.41, -0.71, 0, 0.71, 1.41; a z on a cut goes up
    tiers = segment.value_tiers(monetary, [-1.0, 0.0, 1.0])
    assert tiers.astype(str).tolist() == ["Low", "Standard", "High", "High", "Top"]


def test_choose_k_finds_well_separated_clusters_and_they_are_stable():
    x, y = make_blobs(n_samples=600, centers=4, cluster_std=0.6, random_state=3)
    scores = segment.choose_k(x, 2, 7, seed=1)
    assert int(scores.loc[scores["silhouette"].idxmax(), "k"]) == 4
    fits = segment.fit_clusters(x, 4, seed=1)
    assert {f.method for f in fits} == {"k-means", "Gaussian mixture"}
    stab = segment.bootstrap_stability(x, 4, rounds=5, seed=1)
    assert stab.min() > 0.95


def test_choose_k_refuses_too_few_customers():
    with pytest.raises(ValueError, match="n_samples=3 is too few for k_min=4"):
        segment.choose_k(np.zeros((3, 3)), 4, 6, seed=0)


def test_cluster_names_come_from_the_profiles_and_are_unique():
    profile = pd.DataFrame(
        {"mean_monetary": [5000, 50, 800, 20], "mean_frequency": [30, 1.0, 6, 1.2],
         "mean_recency_days": [10, 30, 200, 400]},
        index=[0, 1, 2, 3],
    )
    names = segment.name_clusters(profile)
    assert names[0] == "Top value, active"
    assert names[2].endswith("lapsing") and names[3].endswith("one-time")
    assert len(set(names.values())) == 4


def test_customer_table_joins_the_profile_tags():
    rfm = pd.DataFrame({"customer_key": ["a", "b"], "recency_days": [1, 2], "frequency": [1, 2],
                        "monetary": [1.0, 2.0], "r_score": [5, 4], "f_score": [1, 2], "m_score": [1, 2],
                        "segment": ["New", "Loyal"], "cluster": ["x", "y"],
                        "tier": pd.Categorical(["Low", "Top"])})
    tags = pd.DataFrame({"customer_key": ["b"], "tags": ["loyal, high_value"]})
    out = segment.customer_table(rfm, tags)
    assert out["tags"].tolist() == ["", "loyal, high_value"] and out["tier"].tolist() == ["Low", "Top"]
    assert "tags" not in segment.customer_table(rfm, None).columns
