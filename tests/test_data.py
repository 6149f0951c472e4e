"""The data layer on crafted inputs: every quarantine reason, reconciliation, identities, privacy."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from crm_helpers.config import TableSource, load_params
from crm_helpers.data import REASONS, prepare
from crm_helpers.errors import DataError, ParamsError
from crm_helpers.paths import RunPaths

from .conftest import write

TX = """customer_id,order_id,order_date,quantity,unit_price,product_id,product_name,extra_col
A1,O1,2024-01-05 10:00:00,2,3.5,P1,Red  Mug,x
A1,O1,2024-01-05 10:00:00,2,3.5,P1,Red  Mug,x
A2,O2,2024-02-05,1,10,P1,red mug,x
,O3,2024-02-06,1,10,P2,Blue,x
A3,,2024-02-06,1,10,P2,Blue,x
A3,O4,not a date,1,10,P2,Blue,x
A3,O5,2031-01-01,1,10,P2,Blue,x
A3,O6,2024-03-01,x,10,P2,Blue,x
A3,O6b,2024-03-01,1,ten,P2,Blue,x
A3,O6c,2024-03-01,1,inf,P2,Blue,x
A3,O7,2024-03-01,0,10,P2,Blue,x
A3,O8,2024-03-01,1,0,P2,Blue,x
A3,O9,2024-03-01,1,-2,P2,Blue,x
A3,CO10,2024-03-02,-1,10,P2,Blue,x
A3,O12,2024-03-02,3,10,P2,Blue,x
B9,O11,2024-03-03,1,5,POST,Postage,x
"""
CUST = """customer_id,name,email,phone,signup_date,gender
A1,Ann Sentinel,ann@x.com,+44 7700 900123,2023-01-01,F
A2,Ann B,  ANN@x.com ,,2023-02-01,F
A3,Bob,bob@x.com,07700 900555,2023-01-01,M
A4,Bobby,bobby@y.com,0044 7700-900555,bad,M
A5,Carl,carl@z.com,,2023-01-01,M
A5,Carl,carl@z.com,,2023-01-01,M
A5,Carla,carla@z.com,,2023-01-01,F
,Nobody,no@z.com,,2023-01-01,F
"""
FB = """customer_id,date,score
A1,2024-01-10,5
A1,2024-01-10,5
,2024-01-11,4
A2,2024-13-01,4
A2,2031-01-01,4
A2,2024-01-12,great
A2,2024-01-13,11
A3,2024-01-14,2
"""
EV = """customer_id,timestamp,event_type
A1,2024-01-01 10:00:00,view
,2024-01-01 10:00:00,view
A1,2024-01-01 11:00:00,
A1,yesterday,view
A1,2031-01-01 00:00:00,view
A1,2024-01-01 10:00:00,view
"""

EXPECTED = {
    "transactions": {
        "exact_duplicate": 1, "missing_customer_id": 1, "missing_order_id": 1,
        "unparseable_date": 1, "future_date": 1, "unparseable_quantity": 1,
        "unparseable_price": 2, "zero_quantity": 1, "zero_price": 1, "negative_price": 1,
    },
    "customers": {"exact_duplicate": 1, "missing_customer_id": 1, "conflicting_customer_id": 1},
    "feedback": {
        "exact_duplicate": 1, "missing_customer_id": 1, "unparseable_date": 1, "future_date": 1,
        "unparseable_score": 1, "score_out_of_range": 1,
    },
    "events": {
        "exact_duplicate": 1, "missing_customer_id": 1, "missing_event_type": 1,
        "unparseable_date": 1, "future_date": 1,
    },
}


def _params(tmp_path: Path, extra: str = ""):
    for name, text in (("tx.csv", TX), ("cust.csv", CUST), ("fb.csv", FB), ("ev.csv", EV)):
        write(tmp_path / name, text)
    return load_params(write(tmp_path / "p.yml", f"""
extends: {Path(__file__).resolve().parents[1] / 'params' / 'default.yml'}
client: crafted
data:
  source: files
  transactions: {{path: tx.csv}}
  customers: {{path: cust.csv}}
  feedback: {{path: fb.csv}}
  events: {{path: ev.csv}}
cleaning:
  max_valid_date: 2025-01-01
  non_product_codes: [POST]
{extra}"""))


def _prepare(tmp_path: Path, extra: str = ""):
    p = _params(tmp_path, extra)
    inputs = {t: getattr(p.data, t) for t in ("transactions", "customers", "feedback", "events")}
    run = RunPaths(tmp_path / "run")
    return prepare(p, inputs, run), run


def test_every_quarantine_reason_is_assigned_on_crafted_rows(tmp_path):
    res, run = _prepare(tmp_path)
    for table, expected in EXPECTED.items():
        assert res.reconciliation[table]["quarantined"] == expected, table
        assert set(expected) <= set(REASONS[table])
    assert res.reconciliation["transactions"]["kept"] == 5


def test_reconciliation_balances_and_quarantine_files_hold_every_row(tmp_path):
    res, run = _prepare(tmp_path)
    for table, r in res.reconciliation.items():
        q = pd.read_parquet(run.quarantine / f"{table}.parquet")
        assert r["input"] == r["kept"] + len(q)
        assert q["reason"].value_counts().to_dict() == r["quarantined"]
        kept = pd.read_parquet(run.prepared / f"{table}.parquet") if table != "customers" else None
        if kept is not None:
            assert len(kept) == r["kept"]
            assert sorted(set(kept["source_row"]) | set(q["source_row"])) == list(range(1, r["input"] + 1))


def test_returns_and_cancellations_are_kept_and_flagged(tmp_path):
    _, run = _prepare(tmp_path)
    tx = pd.read_parquet(run.prepared / "transactions.parquet")
    cancel = tx[tx["order_id"] == "CO10"].iloc[0]
    assert cancel["is_return"] and cancel["is_cancellation"] and cancel["amount"] == -10
    assert not tx.loc[tx["order_id"] == "O11", "is_product"].iloc[0]


def test_product_names_differing_in_case_and_space_collapse(tmp_path):
    res, run = _prepare(tmp_path)
    tx = pd.read_parquet(run.prepared / "transactions.parquet")
    assert set(tx.loc[tx["product_id"] == "P1", "product_name"]) == {"Red Mug"}
    assert res.column_issues["transactions"]["product_name_variants"] == 1


def test_identity_resolution_merges_email_and_phone_variants(tmp_path):
    res, run = _prepare(tmp_path)
    cust = pd.read_parquet(run.prepared / "customers.parquet")
    merges = pd.read_parquet(run.prepared / "identity_merges.parquet")
    assert res.identity["merged_ids"] == 2 and res.identity["merged_groups"] == 2
    assert sorted(merges["evidence"]) == ["email", "phone"]
    # A1 and A2 are one customer: 2 orders (O1, O2), 14.0 revenue (7.0 + 10.0).
    ann = cust[cust["source_ids"] == 2].sort_values("orders", ascending=False).iloc[0]
    assert ann["orders"] == 2 and ann["revenue"] == pytest.approx(17.0)
    assert len(cust) == 4  # A1+A2, A3+A4, A5, B9 (transactions only)


def test_keep_separate_overrules_a_merge(tmp_path):
    _, run = _prepare(tmp_path)
    merges = pd.read_parquet(run.prepared / "identity_merges.parquet")
    undo = merges.loc[merges["evidence"] == "email", "merged_key"].iloc[0]
    res2, run2 = _prepare(tmp_path / "again", f"identity:\n  keep_separate: [{undo}]\n")
    assert res2.identity["merged_ids"] == 1
    assert undo not in set(pd.read_parquet(run2.prepared / "identity_merges.parquet")["merged_key"])


def test_customer_features_match_hand_computed_values(tmp_path):
    _, run = _prepare(tmp_path)
    cust = pd.read_parquet(run.prepared / "customers.parquet").set_index("customer_key")
    bob = cust[cust["return_lines"] == 1].iloc[0]  # A3+A4: O12 (3 x 10) and return CO10 (-10)
    assert bob["orders"] == 1 and bob["gross_revenue"] == 30 and bob["returns_value"] == 10
    assert bob["revenue"] == 20
    # reference date = day after the last kept line (2024-03-03) = 2024-03-04
    assert bob["recency_days"] == 2 and bob["tenure_days"] == 2
    assert str(bob["last_purchase"])[:10] == "2024-03-02"


def test_no_pii_or_raw_ids_in_prepared_or_quarantine_files(tmp_path):
    _, run = _prepare(tmp_path)
    for path in list(run.prepared.glob("*.parquet")) + list(run.quarantine.glob("*.parquet")):
        df = pd.read_parquet(path)
        text = df.astype(str).to_csv()
        for needle in ("Sentinel", "ann@x.com", "7700 900123", "Bobby"):
            assert needle not in text, (path.name, needle)
        for col in ("customer_id", "name", "email", "phone", "address", "birth_date"):
            assert col not in df.columns, (path.name, col)
        if "customer_key" in df.columns:
            keys = df["customer_key"].dropna()
            assert keys.str.fullmatch(r"c_[0-9a-f]{16}").all()


def test_pseudonyms_depend_on_the_secret_key(tmp_path, monkeypatch):
    _, run = _prepare(tmp_path / "a")
    monkeypatch.setenv("CRM_PSEUDONYM_KEY", "another-key")
    _, run2 = _prepare(tmp_path / "b")
    k1 = set(pd.read_parquet(run.prepared / "customers.parquet")["customer_key"])
    k2 = set(pd.read_parquet(run2.prepared / "customers.parquet")["customer_key"])
    assert len(k1) == len(k2) == 4 and not k1 & k2


def test_client_data_without_a_key_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("CRM_PSEUDONYM_KEY")
    with pytest.raises(ParamsError, match="CRM_PSEUDONYM_KEY"):
        _prepare(tmp_path)


def test_missing_required_column_names_file_and_column(tmp_path):
    p = _params(tmp_path)
    bad = write(tmp_path / "bad.csv", "customer_id,order_id,order_date,quantity\nA,O,2024-01-01,1\n")
    with pytest.raises(DataError, match=r"bad\.csv: required column unit_price missing"):
        prepare(p, {"transactions": TableSource(path=bad)}, RunPaths(tmp_path / "r"))


def test_mapped_column_missing_names_the_client_column(tmp_path):
    p = _params(tmp_path)
    src = TableSource(path=tmp_path / "tx.csv", columns={"unit_price": "Price"})
    with pytest.raises(DataError, match=r"unit_price \(column 'Price'\) missing"):
        prepare(p, {"transactions": src}, RunPaths(tmp_path / "r"))


@pytest.mark.parametrize("text", ["", "customer_id,order_id,order_date,quantity,unit_price\n"])
def test_empty_file_or_header_only_is_a_clear_error(tmp_path, text):
    p = _params(tmp_path)
    empty = write(tmp_path / "empty.csv", text)
    with pytest.raises(DataError, match=r"empty\.csv: .*(no data rows|required column)"):
        prepare(p, {"transactions": TableSource(path=empty)}, RunPaths(tmp_path / "r"))


def test_client_column_names_and_date_format_are_mapped(tmp_path):
    p = _params(tmp_path)
    f = write(
        tmp_path / "mapped.csv",
        "Cust;Invoice;When;Qty;Price\nK1;I1;05/01/2024;2;1.5\nK1;I2;31/02/2024;1;1\n",
    )
    src = TableSource(
        path=f, delimiter=";", date_format="%d/%m/%Y",
        columns={"customer_id": "Cust", "order_id": "Invoice", "order_date": "When",
                 "quantity": "Qty", "unit_price": "Price"},
    )
    res = prepare(p, {"transactions": src}, RunPaths(tmp_path / "r"))
    assert res.reconciliation["transactions"] == {
        "input": 2, "kept": 1, "quarantined": {"unparseable_date": 1}
    }
    assert res.period == {"start": "2024-01-05", "end": "2024-01-05"}


def test_parquet_and_excel_inputs_load_like_csv(tmp_path):
    p = _params(tmp_path)
    df = pd.read_csv(tmp_path / "tx.csv", dtype=str, keep_default_na=False)
    df.to_parquet(tmp_path / "tx.parquet")
    df.to_excel(tmp_path / "tx.xlsx", index=False)
    base = prepare(p, {"transactions": TableSource(path=tmp_path / "tx.csv")}, RunPaths(tmp_path / "a"))
    for name in ("tx.parquet", "tx.xlsx"):
        res = prepare(p, {"transactions": TableSource(path=tmp_path / name)}, RunPaths(tmp_path / f"run-{name}"))
        assert res.reconciliation == base.reconciliation, name


def test_future_date_uses_max_valid_date(tmp_path):
    p = _params(tmp_path, "")
    assert p.max_valid_date() == dt.date(2025, 1, 1)


def test_python_pseudonym_equals_the_sql_one(tmp_path):
    from crm_helpers.data import pseudonymise

    _, run = _prepare(tmp_path)
    keys = set(pd.read_parquet(run.prepared / "customers.parquet")["customer_key"])
    assert pseudonymise("B9", "test-key") in keys and pseudonymise("A1", "test-key") in keys
