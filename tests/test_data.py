"""The data layer on crafted inputs: every quarantine reason, reconciliation, identities, privacy."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from crm_helpers.config import TableSource, load_params
from crm_helpers.data import REASONS, prepare, pseudonymise
from crm_helpers.errors import DataError, ParamsError
from crm_helpers.paths import PARAMS_DIR, RunPaths

from .conftest import SHARED_DATA, write

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
        "exact_duplicate": 1,
        "missing_customer_id": 1,
        "missing_order_id": 1,
        "unparseable_date": 1,
        "future_date": 1,
        "unparseable_quantity": 1,
        "unparseable_price": 2,
        "zero_quantity": 1,
        "zero_price": 1,
        "negative_price": 1,
    },
    "customers": {"exact_duplicate": 1, "missing_customer_id": 1, "conflicting_customer_id": 1},
    "feedback": {
        "exact_duplicate": 1,
        "missing_customer_id": 1,
        "unparseable_date": 1,
        "future_date": 1,
        "unparseable_score": 1,
        "score_out_of_range": 1,
    },
    "events": {
        "exact_duplicate": 1,
        "missing_customer_id": 1,
        "missing_event_type": 1,
        "unparseable_date": 1,
        "future_date": 1,
    },
}


def _params(tmp_path: Path, extra: str = ""):
    for name, text in (("tx.csv", TX), ("cust.csv", CUST), ("fb.csv", FB), ("ev.csv", EV)):
        write(tmp_path / name, text)
    return load_params(
        write(
            tmp_path / "p.yml",
            f"""
extends: {Path(__file__).resolve().parents[1] / "params" / "default.yml"}
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
{extra}""",
        )
    )


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
            assert sorted(set(kept["source_row"]) | set(q["source_row"])) == list(
                range(1, r["input"] + 1)
            )


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
    bad = write(
        tmp_path / "bad.csv", "customer_id,order_id,order_date,quantity\nA,O,2024-01-01,1\n"
    )
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
        path=f,
        delimiter=";",
        date_format="%d/%m/%Y",
        columns={
            "customer_id": "Cust",
            "order_id": "Invoice",
            "order_date": "When",
            "quantity": "Qty",
            "unit_price": "Price",
        },
    )
    res = prepare(p, {"transactions": src}, RunPaths(tmp_path / "r"))
    assert res.reconciliation["transactions"] == {
        "input": 2,
        "kept": 1,
        "quarantined": {"unparseable_date": 1},
    }
    assert res.period == {"start": "2024-01-05", "end": "2024-01-05"}


def test_parquet_and_excel_inputs_load_like_csv(tmp_path):
    p = _params(tmp_path)
    df = pd.read_csv(tmp_path / "tx.csv", dtype=str, keep_default_na=False)
    df.to_parquet(tmp_path / "tx.parquet")
    df.to_excel(tmp_path / "tx.xlsx", index=False)
    base = prepare(
        p, {"transactions": TableSource(path=tmp_path / "tx.csv")}, RunPaths(tmp_path / "a")
    )
    for name in ("tx.parquet", "tx.xlsx"):
        res = prepare(
            p,
            {"transactions": TableSource(path=tmp_path / name)},
            RunPaths(tmp_path / f"run-{name}"),
        )
        assert res.reconciliation == base.reconciliation, name


def test_future_date_uses_max_valid_date(tmp_path):
    p = _params(tmp_path, "")
    assert p.max_valid_date() == dt.date(2025, 1, 1)


def test_python_pseudonym_equals_the_sql_one(tmp_path):
    from crm_helpers.data import pseudonymise

    _, run = _prepare(tmp_path)
    keys = set(pd.read_parquet(run.prepared / "customers.parquet")["customer_key"])
    assert pseudonymise("B9", "test-key") in keys and pseudonymise("A1", "test-key") in keys


# ------------------------------------------------ whitespace, header-less and line-total sources
# CDNOW-like: leading space, runs of spaces, a tab, CRLF, a blank line, ids with leading zeros,
# two identical lines (separate purchases), a free line and a total that qty * (total/qty) misses.
WS = (
    " 0001  19970101  3   28.31\r\n"
    " 0001 19970118 1\t 9.99\r\n"
    "\r\n"
    " 0002  19970102  2   10.00\r\n"
    " 0002  19970102  2   10.00\r\n"
    " 0003  19970105  1    0.00\r\n"
)
WS_NAMES = ["customer_id", "order_date", "quantity", "total"]


def _ws_source(path: Path, **kw) -> TableSource:
    opts = {
        "delimiter": "whitespace",
        "header": False,
        "column_names": WS_NAMES,
        "columns": {"unit_price": "total"},
        "date_format": "%Y%m%d",
        "order_id_from_row": True,
        "price_is_line_total": True,
    }
    return TableSource(path=path, **(opts | kw))


def test_whitespace_file_without_header_keeps_every_line_as_text(tmp_path):
    p = _params(tmp_path, "  zero_price: keep\n")
    src = _ws_source(write(tmp_path / "ws.txt", WS))
    res = prepare(p, {"transactions": src}, run := RunPaths(tmp_path / "r"))
    assert res.reconciliation["transactions"] == {"input": 5, "kept": 5, "quarantined": {}}
    assert res.inputs["transactions"]["blank_lines"] == 1
    tx = pd.read_parquet(run.prepared / "transactions.parquet")
    assert list(tx["source_row"]) == [1, 2, 3, 4, 5]
    assert list(tx["order_date"].astype(str)) == [
        "1997-01-01",
        "1997-01-18",
        "1997-01-02",
        "1997-01-02",
        "1997-01-05",
    ]
    keys = set(tx["customer_key"])  # ids stay text: '0001', not 1
    assert {pseudonymise(c, "test-key") for c in ("0001", "0002", "0003")} == keys


def test_order_id_from_row_keeps_identical_lines_as_separate_orders(tmp_path):
    p = _params(tmp_path, "  zero_price: keep\n")
    src = _ws_source(write(tmp_path / "ws.txt", WS))
    res = prepare(p, {"transactions": src}, run := RunPaths(tmp_path / "r"))
    assert "exact_duplicate" not in res.reconciliation["transactions"]["quarantined"]
    tx = pd.read_parquet(run.prepared / "transactions.parquet")
    assert list(tx["order_id"]) == ["1", "2", "3", "4", "5"]
    cust = pd.read_parquet(run.prepared / "customers.parquet").set_index("customer_key")
    assert cust.loc[pseudonymise("0002", "test-key"), "orders"] == 2


def test_price_is_line_total_derives_unit_price_and_keeps_the_total_as_amount(tmp_path):
    p = _params(tmp_path, "  zero_price: keep\n")
    src = _ws_source(write(tmp_path / "ws.txt", WS))
    prepare(p, {"transactions": src}, run := RunPaths(tmp_path / "r"))
    tx = pd.read_parquet(run.prepared / "transactions.parquet")
    assert (28.31 / 3) * 3 != 28.31  # the float trap the exact amount avoids
    assert list(tx["amount"]) == [28.31, 9.99, 10.0, 10.0, 0.0]
    assert tx["unit_price"].tolist() == pytest.approx([28.31 / 3, 9.99, 5.0, 5.0, 0.0])
    cust = pd.read_parquet(run.prepared / "customers.parquet").set_index("customer_key")
    assert cust.loc[pseudonymise("0001", "test-key"), "revenue"] == pytest.approx(38.30)


def test_line_total_reasons_read_the_total_and_the_sign_of_the_unit_price(tmp_path):
    p = _params(tmp_path)
    f = write(
        tmp_path / "lt.csv",
        "customer_id,order_id,order_date,quantity,total\n"
        "A,O1,2024-01-05,0,10\n"  # quantity 0: zero_quantity, not a division by zero
        "A,O2,2024-01-05,2,-4\n"  # -2 per unit: negative_price
        "A,O3,2024-01-05,1,x\n"  # unparseable_price
        "A,O4,2024-01-05,2,0\n"  # zero_price (the default)
        "A,CO5,2024-01-06,-1,-4\n",  # a return of 4.00: kept, unit price 4
    )
    src = TableSource(path=f, columns={"unit_price": "total"}, price_is_line_total=True)
    res = prepare(p, {"transactions": src}, run := RunPaths(tmp_path / "r"))
    assert res.reconciliation["transactions"]["quarantined"] == {
        "zero_quantity": 1,
        "negative_price": 1,
        "unparseable_price": 1,
        "zero_price": 1,
    }
    ret = pd.read_parquet(run.prepared / "transactions.parquet").iloc[0]
    assert ret["unit_price"] == 4 and ret["amount"] == -4 and ret["is_return"]


def test_zero_price_is_quarantined_by_default_and_kept_on_request(tmp_path):
    text = (
        "customer_id,order_id,order_date,quantity,unit_price\n"
        "A,O1,2024-01-05,1,0\nA,O2,2024-01-05,1,-2\nA,O3,2024-01-05,1,5\n"
    )
    f = write(tmp_path / "free.csv", text)
    default = prepare(
        _params(tmp_path), {"transactions": TableSource(path=f)}, RunPaths(tmp_path / "a")
    )
    assert default.reconciliation["transactions"]["quarantined"] == {
        "zero_price": 1,
        "negative_price": 1,
    }
    p = _params(tmp_path / "keep", "  zero_price: keep\n")
    res = prepare(p, {"transactions": TableSource(path=f)}, run := RunPaths(tmp_path / "b"))
    assert res.reconciliation["transactions"] == {
        "input": 3,
        "kept": 2,
        "quarantined": {"negative_price": 1},
    }
    tx = pd.read_parquet(run.prepared / "transactions.parquet")
    assert list(tx["order_id"]) == ["O1", "O3"] and list(tx["amount"]) == [0, 5]


def test_whitespace_header_line_names_the_columns(tmp_path):
    f = write(
        tmp_path / "master.txt",
        " customer_id  date number_of_cds  dollar_value\r\n"
        " 00001 19970101  1   11.77\r\n"
        " 00002 19970112  2   12.00\r\n",
    )
    src = TableSource(
        path=f,
        delimiter="whitespace",
        columns={"order_date": "date", "quantity": "number_of_cds", "unit_price": "dollar_value"},
        date_format="%Y%m%d",
        order_id_from_row=True,
        price_is_line_total=True,
    )
    res = prepare(_params(tmp_path), {"transactions": src}, run := RunPaths(tmp_path / "r"))
    assert res.reconciliation["transactions"] == {"input": 2, "kept": 2, "quarantined": {}}
    tx = pd.read_parquet(run.prepared / "transactions.parquet")
    assert list(tx["amount"]) == [11.77, 12.0] and list(tx["unit_price"]) == [11.77, 6.0]


@pytest.mark.parametrize(
    ("name", "text", "delimiter"),
    [
        ("ws.txt", " A  O1 2024-01-05  2  3.5\r\n A O2  2024-01-06 1 4\r\n", "whitespace"),
        ("plain.csv", "A,O1,2024-01-05,2,3.5\nA,O2,2024-01-06,1,4\n", None),
        ("semi.csv", "A;O1;2024-01-05;2;3.5\nA;O2;2024-01-06;1;4\n", ";"),
    ],
)
def test_headerless_file_without_column_names_has_columns_column1_on(
    tmp_path, name, text, delimiter
):
    f = write(tmp_path / name, text)
    canon = ["customer_id", "order_id", "order_date", "quantity", "unit_price"]
    src = TableSource(
        path=f,
        delimiter=delimiter,
        header=False,
        columns={c: f"column{i}" for i, c in enumerate(canon, start=1)},
    )
    res = prepare(_params(tmp_path), {"transactions": src}, run := RunPaths(tmp_path / "r"))
    assert res.reconciliation["transactions"] == {"input": 2, "kept": 2, "quarantined": {}}
    tx = pd.read_parquet(run.prepared / "transactions.parquet")
    assert list(tx["order_id"]) == ["O1", "O2"] and list(tx["amount"]) == [7.0, 4.0]


@pytest.mark.parametrize(
    ("text", "kw", "match"),
    [
        (
            WS + " 0004 19970105 1 2.00 extra\r\n",
            {},
            r"line 7 has 5 fields, expected 4 \(data\.transactions\.column_names",
        ),
        (
            " a b c\r\n 1 2 3\r\n 1 2\r\n",
            {"header": True, "column_names": None},
            r"line 3 has 2 fields, expected 3 \(the header on line 1",
        ),
        (
            "\r\n 1 2 3\r\n 1 2 3 4\r\n 5 6\r\n",
            {"column_names": None},
            r"line 3 has 4 fields, expected 3 \(the first data line, 2, .*2 lines differ",
        ),
    ],
)
def test_whitespace_line_with_wrong_number_of_fields_names_file_and_line(tmp_path, text, kw, match):
    src = _ws_source(write(tmp_path / "ws.txt", text), **kw)
    with pytest.raises(DataError, match=r"ws\.txt: " + match):
        prepare(_params(tmp_path), {"transactions": src}, RunPaths(tmp_path / "r"))


@pytest.mark.parametrize("delimiter", [",", None])
def test_headerless_csv_line_with_wrong_number_of_fields_names_file_and_line(tmp_path, delimiter):
    f = write(
        tmp_path / "rag.csv", "A,O1,2024-01-05,2,3.5\nA,O2,2024-01-06,1,4\nA,O3,2024-01-07,1\n"
    )
    src = TableSource(
        path=f,
        delimiter=delimiter,
        header=False,
        column_names=["customer_id", "order_id", "order_date", "quantity", "unit_price"],
    )
    # Given a delimiter, the ragged line is named; detected, the sniffer may be misled by it.
    match = (
        r"rag\.csv: line 3 has 4 fields, expected 5"
        if delimiter
        else r"rag\.csv: line 1 has 1 field, .*set data\.transactions\.delimiter"
    )
    with pytest.raises(DataError, match=match):
        prepare(_params(tmp_path), {"transactions": src}, RunPaths(tmp_path / "r"))


def test_whitespace_file_with_only_blank_lines_has_no_data_rows(tmp_path):
    src = _ws_source(write(tmp_path / "blank.txt", "\r\n   \r\n"))
    with pytest.raises(DataError, match=r"blank\.txt: the transactions table has no data rows"):
        prepare(_params(tmp_path), {"transactions": src}, RunPaths(tmp_path / "r"))


def test_whitespace_header_repeating_a_name_is_refused(tmp_path):
    src = _ws_source(write(tmp_path / "dup.txt", "a b a\n1 2 3\n"), header=True, column_names=None)
    with pytest.raises(
        DataError, match=r"dup\.txt: line 1 \(the header\) repeats the column name a"
    ):
        prepare(_params(tmp_path), {"transactions": src}, RunPaths(tmp_path / "r"))


def test_headerless_excel_sheet_takes_column_names(tmp_path):
    df = pd.DataFrame([["A", "O1", "2024-01-05", "2", "3.5"], ["B", "O2", "2024-01-06", "1", "4"]])
    df.to_excel(tmp_path / "tx.xlsx", index=False, header=False)
    canon = ["customer_id", "order_id", "order_date", "quantity", "unit_price"]
    src = TableSource(path=tmp_path / "tx.xlsx", header=False, column_names=canon)
    res = prepare(_params(tmp_path), {"transactions": src}, RunPaths(tmp_path / "r"))
    assert res.reconciliation["transactions"] == {"input": 2, "kept": 2, "quarantined": {}}
    short = TableSource(path=tmp_path / "tx.xlsx", header=False, column_names=canon[:4])
    with pytest.raises(DataError, match=r"tx\.xlsx: the sheet has 5 columns, .*names 4"):
        prepare(_params(tmp_path), {"transactions": short}, RunPaths(tmp_path / "r2"))


def test_header_options_are_refused_for_parquet(tmp_path):
    pd.DataFrame({"customer_id": ["A"]}).to_parquet(tmp_path / "tx.parquet")
    src = TableSource(path=tmp_path / "tx.parquet", header=False)
    with pytest.raises(DataError, match=r"'data\.transactions\.header' .* Parquet"):
        prepare(_params(tmp_path), {"transactions": src}, RunPaths(tmp_path / "r"))


@pytest.mark.parametrize("key", ["order_id_from_row", "price_is_line_total"])
def test_transaction_only_options_are_refused_on_other_tables(tmp_path, key):
    p = _params(tmp_path)
    inputs = {
        "transactions": p.data.transactions,
        "feedback": TableSource(path=tmp_path / "fb.csv", **{key: True}),
    }
    with pytest.raises(
        DataError, match=rf"key 'data\.feedback\.{key}' applies to the transactions"
    ):
        prepare(p, inputs, RunPaths(tmp_path / "r"))


def test_order_id_from_row_is_refused_when_the_file_has_an_order_id(tmp_path):
    p = _params(tmp_path)
    src = TableSource(path=tmp_path / "tx.csv", order_id_from_row=True)
    with pytest.raises(DataError, match=r"tx\.csv: the transactions table has its own order_id"):
        prepare(p, {"transactions": src}, RunPaths(tmp_path / "r"))


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("column_names: [a, b]", "data.transactions.column_names", "set header: false"),
        (
            "header: false\n    column_names: [a, b, a]",
            "data.transactions.column_names",
            "repeats a",
        ),
        ("header: false\n    column_names: [a, '']", "data.transactions.column_names", "non-empty"),
        (
            "order_id_from_row: true\n    columns: {order_id: Invoice}",
            "data.transactions.order_id_from_row",
            "remove columns.order_id ('Invoice')",
        ),
        ("header: maybe", "data.transactions.header", "valid boolean"),
    ],
)
def test_inconsistent_source_options_name_file_and_key(tmp_path, text, key, words):
    write(tmp_path / "tx.txt", "A O1 2024-01-05 1 1\n")
    f = write(
        tmp_path / "acme.yml",
        (
            f"extends: {Path(__file__).resolve().parents[1] / 'params' / 'default.yml'}\n"
            f"data:\n  source: files\n  transactions:\n    path: tx.txt\n    {text}\n"
        ),
    )
    with pytest.raises(ParamsError) as err:
        load_params(f)
    msg = str(err.value)
    assert f"acme.yml: key '{key}'" in msg and words in msg, msg


def test_zero_price_param_accepts_only_quarantine_or_keep(tmp_path):
    with pytest.raises(ParamsError, match=r"key 'cleaning\.zero_price'.*'quarantine' or 'keep'"):
        _params(tmp_path, "  zero_price: drop\n")


# ------------------------------------------------------------------------------- real CDNOW data
CDNOW_SAMPLE = SHARED_DATA / "cdnow" / "CDNOW_sample.txt"


def test_cdnow_sample_loads_every_line_through_its_params(tmp_path):
    p = load_params(PARAMS_DIR / "cdnow.yml")
    assert p.data.transactions.path == CDNOW_SAMPLE.resolve()
    res = prepare(p, {"transactions": p.data.transactions}, run := RunPaths(tmp_path / "r"))
    assert res.reconciliation["transactions"] == {"input": 6919, "kept": 6919, "quarantined": {}}
    assert res.period == {"start": "1997-01-01", "end": "1998-06-30"}
    tx = pd.read_parquet(run.prepared / "transactions.parquet")
    assert len(tx) == 6919 and tx["customer_key"].nunique() == 2357
    # Independently of the data layer: the file's dollar_value summed in cents.
    raw = pd.read_csv(CDNOW_SAMPLE, sep=r"\s+", header=None, dtype=str)
    assert raw.shape == (6919, 5) and raw[1].nunique() == 2357
    cents = raw[4].map(lambda v: round(float(v) * 100)).sum()
    assert round(tx["amount"].sum() * 100) == cents
    assert (tx["amount"] == 0).sum() == 8  # free purchases are transactions
    assert raw.duplicated().sum() == 21 and tx["order_id"].nunique() == 6919


# ------------------------------------------------------------------------ basket-only sources
BASKETS = "a,b\n\n c , a\nb,,d\ne,e\n"


def test_basket_file_becomes_one_row_per_item_with_every_line_accounted_for(tmp_path):
    src = TableSource(path=write(tmp_path / "b.csv", BASKETS), format="baskets")
    res = prepare(_params(tmp_path), {"transactions": src}, run := RunPaths(tmp_path / "r"))
    # 9 items on 4 basket lines (line 2 is blank): 'b,,d' has an empty item, 'e,e' a repeat
    assert res.reconciliation["transactions"] == {
        "input": 9,
        "kept": 7,
        "quarantined": {"missing_product": 1, "exact_duplicate": 1},
    }
    assert res.basket_only and res.inputs["transactions"]["blank_lines"] == 1
    assert res.inputs["transactions"]["absent_columns"] == [
        "customer_id",
        "order_date",
        "quantity",
        "unit_price",
    ]
    tx = pd.read_parquet(run.prepared / "transactions.parquet")
    # order id = line number in the file; items trimmed; file order kept
    assert list(zip(tx["order_id"], tx["product_name"], strict=True)) == [
        ("1", "a"), ("1", "b"), ("3", "c"), ("3", "a"), ("4", "b"), ("4", "d"), ("5", "e"),
    ]  # fmt: skip
    assert tx["customer_key"].isna().all() and tx["order_date"].isna().all()
    assert not tx["is_return"].any() and tx["is_product"].all()
    q = pd.read_parquet(run.root / "quarantine" / "transactions.parquet")
    assert sorted(q["reason"]) == ["exact_duplicate", "missing_product"]
    assert pd.read_parquet(run.prepared / "customers.parquet").empty


def test_basket_file_with_an_explicit_header_skips_it(tmp_path):
    f = write(tmp_path / "b.txt", "items\r\nx;y\r\ny\r\n")  # CR LF line ends too
    src = TableSource(path=f, format="baskets", header=True, delimiter=";")
    res = prepare(_params(tmp_path), {"transactions": src}, run := RunPaths(tmp_path / "r"))
    assert res.reconciliation["transactions"] == {"input": 3, "kept": 3, "quarantined": {}}
    tx = pd.read_parquet(run.prepared / "transactions.parquet")
    assert list(tx["order_id"]) == ["2", "2", "3"] and list(tx["product_name"]) == ["x", "y", "y"]


def test_basket_only_csv_needs_an_order_and_a_product_column(tmp_path):
    f = write(tmp_path / "long.csv", "basket,item\nB1,milk\nB1,bread\nB2,milk\n")
    ok = TableSource(path=f, basket_only=True, columns={"order_id": "basket", "product_id": "item"})
    res = prepare(_params(tmp_path), {"transactions": ok}, run := RunPaths(tmp_path / "r"))
    assert res.reconciliation["transactions"]["kept"] == 3 and res.basket_only
    tx = pd.read_parquet(run.prepared / "transactions.parquet")
    assert list(tx["product_id"]) == ["milk", "bread", "milk"]
    no_item = TableSource(path=f, basket_only=True, columns={"order_id": "basket"})
    with pytest.raises(DataError, match=r"long\.csv: required column product_id or product_name"):
        prepare(_params(tmp_path), {"transactions": no_item}, RunPaths(tmp_path / "r2"))


@pytest.mark.parametrize(
    ("kwargs", "table", "match"),
    [
        ({"format": "baskets"}, "customers", "format 'baskets'.*transactions table only"),
        ({"format": "baskets", "price_is_line_total": True}, "transactions", "price_is_line_total"),
        ({"format": "baskets", "delimiter": "whitespace"}, "transactions", "single item separator"),
        ({"format": "baskets", "order_id_from_row": True}, "transactions", "order_id_from_row"),
        ({"basket_only": True}, "customers", "basket_only' applies to the transactions table"),
    ],
)
def test_basket_options_that_do_not_apply_are_refused(tmp_path, kwargs, table, match):
    src = TableSource(path=write(tmp_path / "b.csv", "a,b\n"), **kwargs)
    sources = {"transactions": TableSource(path=write(tmp_path / "t.csv", TX))} | {table: src}
    with pytest.raises(DataError, match=match):
        prepare(_params(tmp_path), sources, RunPaths(tmp_path / "r"))


def test_empty_basket_file_is_a_clear_error(tmp_path):
    src = TableSource(path=write(tmp_path / "b.csv", "\n\n"), format="baskets")
    with pytest.raises(DataError, match=r"b\.csv: the transactions table has no data rows"):
        prepare(_params(tmp_path), {"transactions": src}, RunPaths(tmp_path / "r"))


def test_basket_only_on_a_table_with_dates_and_prices_is_refused_not_blanked(tmp_path):
    src = TableSource(path=write(tmp_path / "t.csv", TX), basket_only=True)
    with pytest.raises(DataError, match=r"basket_only is set, but the table has customer_id"):
        prepare(_params(tmp_path), {"transactions": src}, RunPaths(tmp_path / "r"))


# ------------------------------------------------------------------- the fast paths keep results
TRICKY_TEXT = [
    "", " ", "   ", "abc", " abc", "abc ", " a b ", "\tabc\t", "\nabc", "é", " é ", "éé",
    "\u00a0abc", "abc\u00a0", "\u3000客户\u3000", "客户", "\u2003x", "x\u2009", "a\u00a0b", None,
]  # fmt: skip


def test_conditional_trim_equals_trim_on_every_kind_of_text():
    """``_as_text`` trims only values that can change: the result equals NULLIF(TRIM(x), '')."""
    import duckdb

    from crm_helpers.data import _as_text

    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, x VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(TRICKY_TEXT)))
    rows = con.execute(
        f"SELECT i, x, {_as_text('x', 'VARCHAR', spark=False)}, NULLIF(TRIM(x), '') FROM t"
    ).fetchall()
    assert len(rows) == len(TRICKY_TEXT)
    for i, x, fast, plain in rows:
        assert fast == plain, (i, x)
    # at least one value of each kind really changed or became NULL
    assert sum(1 for _, x, fast, _ in rows if x is not None and fast != x) >= 10


def test_sha256_file_reads_a_file_once_until_it_changes(tmp_path, monkeypatch):
    import hashlib

    from crm_helpers import data as data_mod

    reads = []
    real_open = open

    def counting_open(path, *a, **k):
        reads.append(str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(data_mod, "open", counting_open, raising=False)
    f = tmp_path / "in.csv"
    f.write_text("customer_id\nabc\n")
    want = hashlib.sha256(b"customer_id\nabc\n").hexdigest()
    # Just written: file times are too coarse to trust yet, so every call reads the file.
    monkeypatch.setattr(data_mod, "SHA256_RACY_SECONDS", 3600.0)  # however slow this machine is
    assert data_mod.sha256_file(f) == want
    assert data_mod.sha256_file(f) == want
    assert len(reads) == 2
    monkeypatch.setattr(data_mod, "SHA256_RACY_SECONDS", 0.0)
    time.sleep(0.05)
    assert data_mod.sha256_file(f) == want
    assert data_mod.sha256_file(f) == want
    assert len(reads) == 3  # the last call is the remembered digest
    # Same size, and the modification time put back: the change time still differs, so it is
    # read again and the new digest is returned.
    st = f.stat()
    time.sleep(0.05)
    f.write_text("customer_id\nabd\n")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_mtime_ns == st.st_mtime_ns
    assert data_mod.sha256_file(f) == hashlib.sha256(b"customer_id\nabd\n").hexdigest()
    assert len(reads) == 4
