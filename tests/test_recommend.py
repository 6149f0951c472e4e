"""Recommendations: hand-computed similarities, lists and metrics; time split; planted structure."""

from __future__ import annotations

import datetime as dt
import math

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

from crm_helpers.errors import CRMError, DataError, ParamsError
from crm_helpers.models import recommend as rc

D = dt.date

# ------------------------------------------------------------------------------ the tiny shop
# Items (sorted = column order): apple, bread, cheese, dates.
#   c1: apple, cheese       c2: bread, cheese      c3: bread, cheese
#   c4: bread               c5: bread, dates       c6: cheese
# Buyers: apple 1, bread 4 (c2 c3 c4 c5), cheese 4 (c1 c2 c3 c6), dates 1.
# Common buyers: apple-cheese 1 (c1), bread-cheese 2 (c2, c3), bread-dates 1 (c5); others 0.
# Cosine = common / sqrt(n_i n_j):
#   apple-cheese 1 / sqrt(1 * 4) = 0.5;  bread-cheese 2 / sqrt(4 * 4) = 0.5;
#   bread-dates 1 / sqrt(4 * 1) = 0.5;   every other pair 0.
SHOP = {
    "c1": ["apple", "cheese"],
    "c2": ["bread", "cheese"],
    "c3": ["bread", "cheese"],
    "c4": ["bread"],
    "c5": ["bread", "dates"],
    "c6": ["cheese"],
}
ITEMS = ["apple", "bread", "cheese", "dates"]


@pytest.fixture
def shop() -> rc.InteractionMatrix:
    rows = [(c, i, 1) for c, items in SHOP.items() for i in items]
    return rc.interaction_matrix(
        pd.DataFrame(rows, columns=["customer_key", "item", "purchase_days"])
    )


def lists(recs: pd.DataFrame) -> dict[str, list[tuple[str, str]]]:
    return {
        c: list(zip(g["item"], g["source"], strict=True))
        for c, g in recs.groupby("customer_key", sort=True)
    }


def test_matrix_rows_and_columns_are_sorted_labels(shop):
    assert list(shop.customers) == ["c1", "c2", "c3", "c4", "c5", "c6"]
    assert list(shop.items) == ITEMS
    assert shop.buyers.tolist() == [1, 4, 4, 1]
    assert shop.rows(["c4", "nobody"]).toarray().tolist() == [[0, 1, 0, 0], [0, 0, 0, 0]]


def test_item_knn_cosine_equals_hand_computed_similarities(shop):
    knn = rc.ItemKNN(neighbours=10, shrinkage=0).fit(shop.matrix)
    expected = np.array(
        [
            [0, 0, 0.5, 0],  # apple -> cheese
            [0, 0, 0.5, 0.5],  # bread -> cheese, dates
            [0.5, 0.5, 0, 0],  # cheese -> apple, bread
            [0, 0.5, 0, 0],  # dates -> bread
        ]
    )
    np.testing.assert_allclose(knn.similarity_.toarray(), expected)


def test_item_knn_shrinkage_damps_pairs_with_few_common_buyers(shop):
    # sim x common / (common + 1): apple-cheese 0.5 * 1/2 = 0.25, bread-cheese 0.5 * 2/3 = 1/3,
    # bread-dates 0.5 * 1/2 = 0.25
    knn = rc.ItemKNN(neighbours=10, shrinkage=1).fit(shop.matrix)
    s = knn.similarity_.toarray()
    assert s[0, 2] == pytest.approx(0.25) and s[2, 0] == pytest.approx(0.25)
    assert s[1, 2] == pytest.approx(1 / 3) and s[1, 3] == pytest.approx(0.25)


def test_item_knn_asymmetric_cosine_at_one_is_a_conditional_probability(shop):
    # alpha = 1: common / n_j = P(i | j): cheese -> bread = 2 / 4, bread -> dates = 1 / 4,
    # dates -> bread = 1 / 1
    s = rc.ItemKNN(neighbours=10, shrinkage=0, alpha=1.0).fit(shop.matrix).similarity_.toarray()
    assert (s[2, 1], s[1, 3], s[3, 1], s[0, 2]) == pytest.approx((0.5, 0.25, 1.0, 1.0))


def test_item_knn_customer_weight_discounts_heavy_buyers():
    # x: bought by u1 (3 items) and u2 (1 item); y by u1 only; z by u1 and u3 (1 item).
    # weights m^-1: u1 1/3, u2 1, u3 1. Weighted buyers: x 4/3, y 1/3, z 4/3.
    # weighted common x-y = 1/3 (u1): cosine 1/3 / sqrt(4/3 * 1/3) = 1/2.
    X = sparse.csr_matrix([[1, 1, 1], [1, 0, 0], [0, 0, 1]])
    s = rc.ItemKNN(shrinkage=0, customer_weight=1.0).fit(X).similarity_.toarray()
    assert s[0, 1] == pytest.approx(0.5)
    assert s[0, 2] == pytest.approx((1 / 3) / (4 / 3))


def test_item_knn_keeps_top_neighbours_with_ties_to_the_lower_item(shop):
    # one neighbour each: bread's cheese (0.5) and dates (0.5) tie -> cheese (lower column);
    # cheese's apple and bread tie -> apple
    s = rc.ItemKNN(neighbours=1, shrinkage=0).fit(shop.matrix).similarity_.toarray()
    assert [list(np.flatnonzero(r)) for r in s] == [[2], [2], [0], [1]]


def test_item_knn_blocks_give_the_same_similarity_as_one_block(shop, monkeypatch):
    rng = np.random.default_rng(3)
    X = sparse.csr_matrix((rng.random((60, 40)) < 0.15).astype(float))
    whole = rc.ItemKNN(neighbours=7, shrinkage=2).fit(X).similarity_.toarray()
    monkeypatch.setattr(rc, "BLOCK_CELLS", 90)  # 2 items per block
    blocked = rc.ItemKNN(neighbours=7, shrinkage=2).fit(X).similarity_.toarray()
    np.testing.assert_array_equal(whole, blocked)
    assert ((whole > 0).sum(axis=1) <= 7).all()


def test_recommend_top_n_hand_computed_with_ties_and_seen_items_excluded(shop):
    # Scores = sum of similarities to the customer's items (unseen items only):
    #   c1 (apple, cheese): bread 0 + 0.5 = 0.5, dates 0 -> bread; dates from the fallback
    #   c2 (bread, cheese): apple 0.5, dates 0.5: tie, both 1 buyer -> by name: apple, dates
    #   c4 (bread): cheese 0.5, dates 0.5: tie, cheese has 4 buyers -> cheese, dates; apple 0
    #   c5 (bread, dates): cheese 0.5, apple 0 -> cheese; apple from the fallback
    #   c6 (cheese): apple 0.5, bread 0.5: tie, bread has 4 buyers -> bread before apple
    #   new (no history): popularity bread 4, cheese 4 (tie: name), apple 1, dates 1 (name)
    knn = rc.ItemKNN(neighbours=10, shrinkage=0).fit(shop.matrix)
    recs = rc.recommend(knn, shop, ["c1", "c2", "c4", "c5", "c6", "new"], n=3)
    m, f = "ItemKNN", "fallback"
    assert lists(recs) == {
        "c1": [("bread", m), ("dates", f)],  # only two unseen items
        "c2": [("apple", m), ("dates", m)],
        "c4": [("cheese", m), ("dates", m), ("apple", f)],
        "c5": [("cheese", m), ("apple", f)],
        "c6": [("bread", m), ("apple", m), ("dates", f)],
        "new": [("bread", f), ("cheese", f), ("apple", f)],
    }
    c4 = recs[recs["customer_key"] == "c4"]
    assert c4["rank"].tolist() == [1, 2, 3]
    assert c4["score"].tolist() == pytest.approx([0.5, 0.5, 1.0])  # fallback score: buyers
    assert list(recs.columns) == ["customer_key", "rank", "item", "score", "source"]


def test_recommend_may_repeat_seen_items_when_asked(shop):
    # c4 (bread): cheese 0.5, dates 0.5 (model); then popularity with bread allowed: bread (4)
    knn = rc.ItemKNN(neighbours=10, shrinkage=0).fit(shop.matrix)
    recs = rc.recommend(knn, shop, ["c4"], n=3, exclude_seen=False, name="knn")
    assert lists(recs)["c4"] == [("cheese", "knn"), ("dates", "knn"), ("bread", "fallback")]


def test_recommend_with_pruned_neighbours(shop):
    # one neighbour each (see above): c4 (bread) -> cheese only; fallback apple, dates (1 buyer,
    # by name)
    knn = rc.ItemKNN(neighbours=1, shrinkage=0).fit(shop.matrix)
    recs = rc.recommend(knn, shop, ["c4"], n=3)
    assert [i for i, _ in lists(recs)["c4"]] == ["cheese", "apple", "dates"]


def test_popularity_ranks_by_buyers_then_name(shop):
    pop = rc.Popularity().fit(shop.matrix)
    assert pop.buyers_.tolist() == [1, 4, 4, 1]
    recs = rc.recommend(pop, shop, ["c6", "c4"], n=4)
    # c4 bought bread: cheese (4), apple (1), dates (1); c6 bought cheese: bread, apple, dates
    assert [i for i, _ in lists(recs)["c4"]] == ["cheese", "apple", "dates"]
    assert [i for i, _ in lists(recs)["c6"]] == ["bread", "apple", "dates"]
    assert set(recs["source"]) == {"Popularity"}


def test_group_popularity_hand_computed_and_used_as_fallback(shop):
    # groups g1 = c1 c2 c3, g2 = c4 c5 c6. g2 buyers: apple 0, bread 2 (c4 c5), cheese 1 (c6),
    # dates 1 (c5). Overall shares: apple 1/6, bread 4/6, cheese 4/6, dates 1/6.
    groups = pd.Series(["g1", "g1", "g1", "g2", "g2", "g2"], index=shop.customers)
    gp = rc.GroupPopularity(prior=2).fit(shop.matrix, groups.to_numpy())
    X = sparse.csr_matrix((3, 4))
    s = gp.predict_scores(X, groups=["g1", "g2", "elsewhere"])
    # g1 apple: (1 + 2 * 1/6) / (3 + 2) = 4/15; g2 bread: (2 + 2 * 4/6) / 5 = 2/3
    assert s[0, 0] == pytest.approx(4 / 15) and s[1, 1] == pytest.approx(2 / 3)
    np.testing.assert_allclose(s[2], [1 / 6, 4 / 6, 4 / 6, 1 / 6])  # unknown group: overall
    raw = rc.GroupPopularity(prior=0).fit(shop.matrix, groups.to_numpy())
    knn = rc.ItemKNN().fit(shop.matrix)
    recs = rc.recommend(knn, shop, ["new"], n=3, fallback=raw, groups={"new": "g2"})
    # g2: bread 2/3, then cheese 1/3 and dates 1/3 tie -> cheese (4 buyers) before dates (1)
    assert lists(recs)["new"] == [
        ("bread", "fallback"),
        ("cheese", "fallback"),
        ("dates", "fallback"),
    ]
    as_model = rc.recommend(raw, shop, ["c4", "new"], n=2, groups=groups.to_dict() | {"new": "g2"})
    # c4 (g2, bought bread): cheese, dates (tie 1/3: more buyers first); new: bread, cheese
    assert lists(as_model) == {
        "c4": [("cheese", "GroupPopularity"), ("dates", "GroupPopularity")],
        "new": [("bread", "GroupPopularity"), ("cheese", "GroupPopularity")],
    }


# ------------------------------------------------------------------------------ metrics
RECS = pd.DataFrame(
    [
        ("u1", 1, "x1"),
        ("u1", 2, "x2"),
        ("u1", 3, "x3"),
        ("u2", 1, "x4"),
        ("u2", 2, "x5"),  # a short list
        ("u4", 1, "x1"),  # u4 has nothing relevant: not a test customer
        ("u4", 2, "x6"),
        ("u4", 3, "x7"),
    ],
    columns=["customer_key", "rank", "item"],
)
RELEVANT = {"u1": {"x2", "x9"}, "u2": {"x4", "x5", "x6", "x7", "x8"}, "u3": {"x1"}}


def test_metrics_equal_hand_computed_values():
    # k = 3; discount 1/log2(rank + 1): rank 1 -> 1, rank 2 -> 0.63093, rank 3 -> 0.5
    # u1: hit at rank 2 of |rel| 2: precision 1/3, recall 1/2,
    #     NDCG 0.63093 / (1 + 0.63093) [IDCG over min(2, 3) = 2 places] = 0.38685
    # u2: hits at ranks 1, 2 of |rel| 5: precision 2/3, recall 2/5,
    #     NDCG 1.63093 / (1 + 0.63093 + 0.5) [IDCG over min(5, 3) = 3 places] = 0.76536
    # u3: no list: all 0.   Means over the 3 test customers (u4 is not one):
    # precision (1/3 + 2/3) / 3 = 1/3; recall (1/2 + 2/5) / 3 = 0.3;
    # NDCG (0.38685 + 0.76536) / 3 = 0.38407; success 2/3;
    # coverage: x1 x2 x3 (u1) + x4 x5 (u2) = 5 of 10 items (u4's list is not counted)
    d1 = 1 / math.log2(3)
    ndcg1 = d1 / (1 + d1)
    ndcg2 = (1 + d1) / (1 + d1 + 0.5)
    got = rc.evaluate(RECS, RELEVANT, k=3, n_items=10)
    assert got["precision_at_k"] == pytest.approx(1 / 3)
    assert got["recall_at_k"] == pytest.approx(0.3)  # recall over k would give (1/3 + 2/3) / 3
    assert got["ndcg_at_k"] == pytest.approx((ndcg1 + ndcg2) / 3)
    assert got["ndcg_at_k"] == pytest.approx(0.38407, abs=5e-6)
    assert got["success_at_k"] == pytest.approx(2 / 3)
    assert got["coverage"] == pytest.approx(0.5)
    assert got["customers"] == 3


def test_ndcg_uses_the_ideal_list_of_min_relevant_and_k():
    # IDCG over all 5 relevant items (u2) or over k places for u1 would change the value:
    d = [1 / math.log2(r + 1) for r in range(1, 6)]
    got = rc.evaluate(RECS, RELEVANT, k=3, n_items=10)["ndcg_at_k"]
    wrong_all = (d[1] / (d[0] + d[1]) + (d[0] + d[1]) / sum(d)) / 3
    wrong_k = (d[1] / sum(d[:3]) + (d[0] + d[1]) / sum(d[:3])) / 3
    assert abs(got - wrong_all) > 0.01 and abs(got - wrong_k) > 0.01


def test_metrics_at_k_one_and_relevant_as_a_frame():
    # k = 1: u1 x1 miss; u2 x4 hit (precision 1, recall 1/5, NDCG 1 / 1); u3 nothing
    rel = pd.DataFrame(
        [(c, i) for c, items in RELEVANT.items() for i in sorted(items)],
        columns=["customer_key", "item"],
    )
    got = rc.evaluate(RECS, rel, k=1, n_items=10)
    assert got["precision_at_k"] == pytest.approx(1 / 3)
    assert got["recall_at_k"] == pytest.approx(0.2 / 3)
    assert got["ndcg_at_k"] == pytest.approx(1 / 3)
    assert got["success_at_k"] == pytest.approx(1 / 3)
    assert got["coverage"] == pytest.approx(0.2)  # x1, x4


def test_scorecard_has_one_row_per_model_in_order():
    card = rc.scorecard({"b": RECS, "a": RECS.head(0)}, RELEVANT, k=3, n_items=10)
    assert list(card.columns) == [
        "model",
        "precision_at_k",
        "recall_at_k",
        "ndcg_at_k",
        "success_at_k",
        "coverage",
        "customers",
    ]
    assert card["model"].tolist() == ["b", "a"]
    assert card.loc[1, "precision_at_k"] == 0 and card.loc[1, "customers"] == 3
    assert card.to_dict("records")[0]["model"] == "b"


def test_no_test_customer_gives_nan_metrics():
    got = rc.evaluate(RECS, {}, k=3, n_items=10)
    assert got["customers"] == 0 and math.isnan(got["ndcg_at_k"])


# ------------------------------------------------------------------------------ time split
DAYS = pd.DataFrame(
    [
        ("A", "x", D(2024, 1, 1), 2.0),
        ("A", "x", D(2024, 1, 3), 1.0),
        ("A", "y", D(2024, 1, 10), 1.0),  # on the cutoff: training
        ("A", "x", D(2024, 1, 11), 1.0),  # re-bought after the cutoff
        ("A", "z", D(2024, 1, 11), 1.0),
        ("B", "y", D(2024, 1, 5), 1.0),
        ("B", "y", D(2024, 1, 20), 1.0),
        ("B", "w", D(2024, 1, 20), 1.0),  # w is first bought after the cutoff: a new item
        ("C", "x", D(2024, 1, 15), 1.0),  # C's first purchase is after the cutoff: cold start
        ("C", "y", D(2024, 1, 15), 3.0),
        ("D", "z", D(2024, 1, 2), 1.0),
    ],
    columns=["customer_key", "item", "order_date", "quantity"],
)
CUT = D(2024, 1, 10)


def pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return list(zip(frame["customer_key"], frame["item"], strict=True))


def test_time_split_boundaries_seen_items_and_cold_start():
    sp = rc.time_split(DAYS, CUT)
    # training = on or before the cutoff
    assert pairs(sp.train) == [("A", "x"), ("A", "y"), ("B", "y"), ("D", "z")]
    ax = sp.train.iloc[0]
    assert (ax["first_date"], ax["last_date"]) == (D(2024, 1, 1), D(2024, 1, 3))
    assert (ax["purchase_days"], ax["quantity"]) == (2, 3.0)
    # A re-bought x (seen: not relevant) and bought z; B re-bought y and bought the new item w
    assert pairs(sp.test) == [("A", "z")]
    assert pairs(sp.cold) == [("C", "x"), ("C", "y")]
    assert (sp.new_items, sp.new_item_pairs) == (1, 1)
    assert not sp.repeat_purchases and sp.cutoff == CUT


def test_time_split_with_repeat_purchases_keeps_rebought_items():
    sp = rc.time_split(DAYS, CUT, repeat_purchases=True)
    assert pairs(sp.test) == [("A", "x"), ("A", "z"), ("B", "y")]
    assert pairs(sp.cold) == [("C", "x"), ("C", "y")]


def test_time_split_end_is_inclusive():
    sp = rc.time_split(DAYS, CUT, end=D(2024, 1, 15), repeat_purchases=True)
    assert pairs(sp.test) == [("A", "x"), ("A", "z")]  # B's 20 January is after the end
    assert pairs(sp.cold) == [("C", "x"), ("C", "y")]  # 15 January: on the end
    sp = rc.time_split(DAYS, CUT, end=D(2024, 1, 14))
    assert sp.cold.empty and (sp.new_items, sp.new_item_pairs) == (0, 0)


def test_cutoff_date_leaves_the_last_share_of_days_and_validation_reads_only_training():
    # 1 .. 20 January: 19 days; 19 * 0.75 = 14.25 -> 14 -> 15 January
    assert rc.cutoff_date(DAYS, 0.25) == D(2024, 1, 15)
    val = rc.validation_split(DAYS, CUT, test_share=0.25)
    # training days 1 .. 10 January: 9 * 0.75 = 6.75 -> 7 -> 8 January
    assert val.cutoff == D(2024, 1, 8)
    assert pairs(val.train) == [("A", "x"), ("B", "y"), ("D", "z")]
    assert pairs(val.test) == [("A", "y")]  # nothing after the real cutoff is read
    with pytest.raises(ParamsError, match="test_share=1.5"):
        rc.cutoff_date(DAYS, 1.5)


def test_interactions_sql_agrees_with_the_per_day_table(tmp_path):
    rows = [
        # customer, order, date, item, quantity, is_return, is_product
        ("k1", "o1", "2024-01-01", "x", 2, False, True),
        ("k1", "o1", "2024-01-01", "x", 1, False, True),  # same day: one purchase day
        ("k1", "o2", "2024-01-05", "x", 1, False, True),
        ("k1", "o2", "2024-01-05", "POSTAGE", 1, False, False),  # not a product
        ("k1", "o3", "2024-01-06", "y", -1, True, True),  # a return: not a purchase
        ("k2", "o4", "2024-01-02", "y", 4, False, True),
        ("k2", "o4", "2024-01-02", None, 4, False, True),  # no item
    ]
    frame = pd.DataFrame(
        rows,
        columns=["customer_key", "order_id", "order_date", "product_name", "quantity",
                 "is_return", "is_product"],
    )  # fmt: skip
    frame["order_date"] = pd.to_datetime(frame["order_date"]).dt.date
    frame["is_cancellation"] = False
    path = tmp_path / "transactions.parquet"
    frame.to_parquet(path)
    item = rc.item_column(frame.columns)
    con = duckdb.connect()
    days = con.execute(rc.purchase_days_sql(path, item)).df()
    assert pairs(days) == [("k1", "x"), ("k1", "x"), ("k2", "y")]
    assert days["quantity"].tolist() == [3, 1, 4]
    sql = con.execute(rc.interactions_sql(path, item)).df()
    assert sql["purchase_days"].tolist() == [2, 1] and sql["quantity"].tolist() == [4, 4]
    mine = rc.interactions(days)
    pd.testing.assert_frame_equal(
        sql.astype({"purchase_days": int}),
        mine.astype({"purchase_days": int}).assign(
            first_date=lambda f: pd.to_datetime(f["first_date"]).astype(sql["first_date"].dtype),
            last_date=lambda f: pd.to_datetime(f["last_date"]).astype(sql["last_date"].dtype),
        ),
        check_dtype=False,
    )


# ------------------------------------------------------------------------------ planted structure
def planted(seed: int = 7):
    """4 groups of 60 customers; each group buys from its own 15 items, everyone from 5 staples.

    Each customer buys 3 staples (popular everywhere) and 7 of their group's items in training;
    2 further group items they did not buy are the relevant test items. Popularity can only
    offer staples (all bought) and the other groups' items; a model that learns the groups can
    find the relevant items.
    """
    rng = np.random.default_rng(seed)
    staples = [f"s{j}" for j in range(5)]
    train, test = [], []
    for g in range(4):
        own = [f"g{g}_{j:02d}" for j in range(15)]
        weights = np.linspace(2, 1, 15)
        for u in range(60):
            key = f"g{g}_c{u:02d}"
            picks = rng.choice(15, size=9, replace=False, p=weights / weights.sum())
            train += [(key, own[j]) for j in picks[:7]]
            train += [(key, s) for s in rng.choice(staples, size=3, replace=False)]
            test += [(key, own[j]) for j in picks[7:]]
    train = pd.DataFrame(train, columns=["customer_key", "item"]).assign(purchase_days=1)
    return train, pd.DataFrame(test, columns=["customer_key", "item"])


def test_planted_groups_item_knn_and_factor_models_beat_popularity():
    train, test = planted()
    data = rc.interaction_matrix(train)
    models = {
        "popularity": rc.Popularity(),
        "item_knn": rc.ItemKNN(),
        "pure_svd": rc.PureSVD(factors=8, seed=1),
        "als": rc.ImplicitALS(factors=8, regularization=1.0, alpha=5.0, iterations=8, seed=1),
    }
    recs = {
        name: rc.recommend(m.fit(data.matrix), data, n=10, name=name) for name, m in models.items()
    }
    card = rc.scorecard(recs, test, k=10, n_items=len(data.items)).set_index("model")
    pop = card.loc["popularity"]
    for name in ("item_knn", "pure_svd", "als"):
        row = card.loc[name]
        assert row["precision_at_k"] > 1.5 * pop["precision_at_k"], card
        assert row["ndcg_at_k"] > 1.5 * pop["ndcg_at_k"], card
        assert row["success_at_k"] > pop["success_at_k"], card
    again = rc.recommend(rc.ImplicitALS(**models["als"].get_params()).fit(data.matrix), data)
    pd.testing.assert_frame_equal(again.drop(columns="source"), recs["als"].drop(columns="source"))
    svd = rc.recommend(rc.PureSVD(factors=8, seed=1).fit(data.matrix), data)
    pd.testing.assert_frame_equal(
        svd.drop(columns="source"), recs["pure_svd"].drop(columns="source")
    )


def test_als_folding_in_solves_each_customers_least_squares():
    # (Y^T C_u Y + reg I) x_u = Y^T C_u p_u, C_u = I + alpha diag(r_u), solved exactly per row
    train, _ = planted()
    X = rc.interaction_matrix(train).matrix[:20]
    X.data = np.arange(len(X.data)) % 3 + 1.0  # counts 1..3: confidence varies
    als = rc.ImplicitALS(factors=6, regularization=0.5, alpha=4.0, iterations=3).fit(X)
    Y = als.item_factors_
    got = als.predict_scores(X) @ np.linalg.pinv(Y.T)  # scores = x_u Y^T
    for u in range(X.shape[0]):
        r = X[u].toarray().ravel()
        c = 1 + 4.0 * r
        A = (Y.T * c) @ Y + 0.5 * np.eye(6)
        x = np.linalg.solve(A, Y.T @ (c * (r > 0)))
        np.testing.assert_allclose(got[u], x, atol=1e-6)


def test_tune_chooses_parameters_on_the_given_split_only():
    days = DAYS.copy()
    best, table = rc.tune(
        rc.ItemKNN(), [{"neighbours": 1}, {"neighbours": 5}], rc.time_split(days, CUT), k=2
    )
    assert best in ({"neighbours": 1}, {"neighbours": 5})
    assert table["neighbours"].tolist() == [1, 5] and "ndcg_at_k" in table
    with pytest.raises(ParamsError, match="metric='auc'"):
        rc.tune(rc.ItemKNN(), [{}], rc.time_split(days, CUT), metric="auc")


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "model", [rc.Popularity(), rc.GroupPopularity(), rc.ItemKNN(), rc.PureSVD(), rc.ImplicitALS()]
)
def test_empty_matrix_is_refused_with_a_data_error(model):
    with pytest.raises(DataError, match="matrix is empty"):
        model.fit(sparse.csr_matrix((3, 4)))
    with pytest.raises(DataError, match="matrix is empty"):
        model.fit(sparse.csr_matrix((0, 0)))


@pytest.mark.parametrize("model", [rc.Popularity(), rc.ItemKNN(), rc.PureSVD(), rc.ImplicitALS()])
def test_unfitted_model_says_to_call_fit(model, shop):
    with pytest.raises(rc.NotFittedError, match="not fitted yet: call fit"):
        model.predict_scores(shop.matrix)
    with pytest.raises(CRMError):
        rc.recommend(model, shop)
    assert issubclass(rc.NotFittedError, SklearnNotFittedError)


def test_k_below_one_and_bad_parameters_are_refused(shop):
    with pytest.raises(ParamsError, match="k=0 should be an integer >= 1"):
        rc.evaluate(RECS, RELEVANT, k=0, n_items=10)
    knn = rc.ItemKNN().fit(shop.matrix)
    with pytest.raises(ParamsError, match="n=0 should be >= 1"):
        rc.recommend(knn, shop, n=0)
    with pytest.raises(ParamsError, match="neighbours=0 should be a number >= 1"):
        rc.ItemKNN(neighbours=0).fit(shop.matrix)
    with pytest.raises(ParamsError, match="alpha=2"):
        rc.ItemKNN(alpha=2).fit(shop.matrix)
    with pytest.raises(ParamsError, match="regularization=0"):
        rc.ImplicitALS(regularization=0).fit(shop.matrix)


def test_missing_column_is_named():
    with pytest.raises(DataError, match="Required column order_date missing"):
        rc.time_split(DAYS.drop(columns="order_date"), CUT)


# ------------------------------------------------------------------------ the chapter's helpers
def _days(seed: int = 3) -> pd.DataFrame:
    """Purchase days of 4 taste groups over 200 days: the planted() structure spread in time."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2024-01-01")
    for g in range(4):
        own = [f"g{g}_{j:02d}" for j in range(12)]
        for u in range(40):
            for _ in range(8):
                item = own[rng.integers(0, 12)] if rng.random() < 0.8 else f"s{rng.integers(0, 4)}"
                day = start + pd.Timedelta(days=int(rng.integers(0, 200)))
                rows.append((f"g{g}_c{u:02d}", item, day.date(), 1))
    frame = pd.DataFrame(rows, columns=["customer_key", "item", "order_date", "quantity"])
    return frame.drop_duplicates(["customer_key", "item", "order_date"]).reset_index(drop=True)


def test_compare_models_chooses_without_reading_the_test_period():
    days = _days()
    cut = rc.cutoff_date(days, 0.25)
    a = rc.compare_models(days, cut, ["item_knn", "svd"], k=5, seed=1)
    # delete every purchase after the cutoff and move the rest around in the test period: the
    # settings, the validation scores and the chosen model cannot change
    history = days[pd.to_datetime(days["order_date"]) <= pd.Timestamp(cut)]
    later = days[pd.to_datetime(days["order_date"]) > pd.Timestamp(cut)].sample(
        frac=0.3, random_state=0
    )
    b = rc.compare_models(pd.concat([history, later]), cut, ["item_knn", "svd"], k=5, seed=1)
    assert a.settings == b.settings and a.best == b.best
    assert a.validation_scores == b.validation_scores
    assert a.validated and a.split.cutoff == cut
    card = a.scorecard.set_index("model")
    assert list(card.index) == ["popularity", "item-based CF", "truncated SVD"]
    # taste groups: the chosen model beats popularity on this planted structure
    assert card.loc[a.best_name, "ndcg_at_k"] > card.loc["popularity", "ndcg_at_k"]


def test_gains_and_the_bar_are_the_scorecard_ratios():
    card = pd.DataFrame(
        {
            "model": ["popularity", "m"],
            "precision_at_k": [0.10, 0.12],
            "recall_at_k": [0.2, 0.2],
            "ndcg_at_k": [0.20, 0.19],
            "success_at_k": [0.50, 0.56],
            "coverage": [0.1, 0.0],
        }
    )
    g = rc.gains(card).loc["m"]
    assert g["precision_at_k"] == pytest.approx(20.0) and g["success_at_k"] == pytest.approx(12.0)
    assert g["ndcg_at_k"] == pytest.approx(-5.0) and g["recall_at_k"] == pytest.approx(0.0)
    # NDCG below the baseline fails the bar although success is +12 %
    assert rc.beats_baseline(card, "m") == {
        "precision_at_k": True, "ndcg_at_k": False, "success_at_k": True,
    }  # fmt: skip
    assert rc.beats_baseline(card.assign(success_at_k=[0.50, 0.54]), "m")["success_at_k"] is False


def test_new_customer_lists_follow_their_group():
    days = _days()
    groups = pd.Series({k: k.split("_")[0] for k in days["customer_key"].unique()})
    lists = rc.new_customer_lists(days, groups, 5)
    assert set(lists) == {"(overall)", "g0", "g1", "g2", "g3"}
    for g in ("g0", "g1", "g2", "g3"):
        assert len(lists[g]) == 5 and all(i.startswith((g + "_", "s")) for i in lists[g]), lists[g]
    assert rc.new_customer_lists(days, None, 3).keys() == {"(overall)"}


def test_describe_names_the_chosen_similarity():
    assert rc.describe(
        "item_knn", {"alpha": 0.5, "shrinkage": 5.0, "neighbours": 50, "customer_weight": 0.0}
    ) == (
        "Item-based CF scores a product by its cosine similarity to the products the customer "
        "bought, shrunk when it rests on few shared buyers (shrinkage 5); each product keeps its "
        "50 closest products."
    )
    text = rc.describe("item_knn", {"alpha": 1.0, "shrinkage": 0.0, "neighbours": 20})
    assert "conditional probability" in text and "shrunk" not in text and "20 closest" in text
    assert "8 latent factors" in rc.describe("svd", {"factors": 8})
