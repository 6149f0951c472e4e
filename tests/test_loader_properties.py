"""Property-based test of the loader: on any messy table, every row is kept or quarantined once.

Hypothesis generates transaction tables mixing valid rows with duplicates, empty ids, garbage
dates and numbers, zero and negative prices, padding whitespace, non-Latin text (CJK included),
and quotes and delimiters inside fields, written as proper CSV. Whatever the mix,
``data.prepare`` must account for each written row exactly once.
"""

from __future__ import annotations

import csv
import datetime as dt
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_helpers.config import TableSource, load_params
from crm_helpers.data import REASONS, prepare
from crm_helpers.errors import DataError
from crm_helpers.paths import RunPaths

HEADER = ["customer_id", "order_id", "order_date", "quantity", "unit_price", "product_name"]
MESSY = "aZ09 ,;\"'\t\n|éß数据客户é\u00a0-_."

messy_text = st.text(alphabet=MESSY, max_size=8)
ids = st.one_of(st.sampled_from(["c1", "c2", "客户3", " c4 ", "", "  ", 'c"5', "c,6"]), messy_text)
dates = st.one_of(
    st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2026, 12, 31)).map(str),
    st.sampled_from(
        ["", "2024-02-30", "31/01/2024", "yesterday", "2024-01-05 10:00:00", " 2024-01-05 "]
    ),
    messy_text,
)
numbers = st.one_of(
    st.integers(-5, 50).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "0", "-0", "1e308", "1,5", "1.234,50", " 7 ", "NaN", "inf", "abc", "١٢"]),
    messy_text,
)
good_dates = st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2024, 12, 31)).map(str)
valid_rows = st.tuples(
    st.sampled_from(["c1", "客户3", 'c"5', "c,6", "Zoë"]),
    st.sampled_from(["O1", "O2", "订单3", "O 4", "C5"]),
    good_dates,
    st.integers(-3, 20).filter(bool).map(str),
    st.decimals(min_value="0.01", max_value="999.99", places=2).map(str),
    messy_text,
)
messy_rows = st.tuples(ids, ids, dates, numbers, numbers, messy_text)
rows = st.one_of(valid_rows, valid_rows, messy_rows)


@st.composite
def tables(draw):
    """A list of rows, some of them repeated exactly (like a double export)."""
    base = draw(st.lists(rows, min_size=0, max_size=25))
    if base:
        repeats = draw(st.lists(st.integers(0, len(base) - 1), max_size=5))
        for i in repeats:
            base.insert(draw(st.integers(0, len(base))), base[i])
    return base


def _write(path: Path, body: list[tuple[str, ...]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(body)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(tables())
def test_prepare_accounts_for_every_row_of_a_messy_table(body):
    params = load_params()
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "tx.csv"
        _write(f, body)
        run = RunPaths(Path(tmp) / "run")
        source = TableSource(path=f, delimiter=",")
        if not body:
            try:
                prepare(params, {"transactions": source}, run)
            except DataError as exc:
                assert "no data rows" in str(exc)
                return
            raise AssertionError("a table without rows was accepted")
        res = prepare(params, {"transactions": source}, run)
        r = res.reconciliation["transactions"]
        assert r["input"] == len(body)  # nothing lost or invented by the reader
        assert r["input"] == r["kept"] + sum(r["quarantined"].values())
        assert set(r["quarantined"]) <= set(REASONS["transactions"])
        q = pd.read_parquet(run.quarantine / "transactions.parquet")
        tx = pd.read_parquet(run.prepared / "transactions.parquet")
        assert len(q) == sum(r["quarantined"].values()) and len(tx) == r["kept"]
        assert q["reason"].value_counts().to_dict() == r["quarantined"]
        rows_seen = [*tx["source_row"], *q["source_row"]]
        assert sorted(rows_seen) == list(range(1, len(body) + 1))  # each row once
        # what is kept is usable: finite numbers, a date, ids present
        assert tx["amount"].map(lambda v: v == v and abs(v) != float("inf")).all()
        assert tx["order_date"].notna().all() and tx["customer_key"].notna().all()
        assert (tx["unit_price"] > 0).all() and (tx["quantity"] != 0).all()
        # and it is what the file says: numbers are read as written, never reinterpreted
        for row, qty, price in zip(tx["source_row"], tx["quantity"], tx["unit_price"], strict=True):
            written = body[row - 1]
            assert qty == float(written[3]) and price == float(written[4]), written
