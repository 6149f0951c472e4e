"""Write the bad-input corpus: small broken files, each with its expected outcome in cases.yml.

Every file is committed so the corpus can be read without running anything; this script is how
they were made (byte-exact encodings, the Excel workbook and the Parquet files). Run it from the
project root after changing a case: ``python tests/bad_inputs/make_corpus.py``. Customer ids all
start with ``cust-`` so that a test can check that no message repeats one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
HEADER = "customer_id,order_id,order_date,quantity,unit_price"


def text(name: str, body: str, encoding: str = "utf-8") -> None:
    """Write a text file byte-exactly (newline = LF)."""
    (HERE / name).write_bytes(body.encode(encoding))


def lines(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def main() -> None:
    text("empty.csv", "")
    text("header_only.csv", HEADER + "\n")
    text(
        "semicolon.csv",
        lines(
            "cust-1;O1;2024-01-05;2;3.50",
            "cust-2;O2;2024-01-06;1;10",
            header=HEADER.replace(",", ";"),
        ),
    )
    text(
        "latin1.csv",
        lines(
            "cust-1,O1,2024-01-05,1,4.5,Crème brûlée",
            "cust-2,O2,2024-01-06,2,3,Smørrebrød",
            header=HEADER + ",product_name",
        ),
        encoding="latin-1",
    )
    text("utf8_bom.csv", "\ufeff" + lines("cust-1,O1,2024-01-05,1,2", "cust-2,O2,2024-01-06,1,3"))
    text(
        "mixed_dates.csv",
        lines(
            "cust-1,O1,05/01/2024,1,2",  # the chosen format: kept (5 January)
            "cust-1,O2,2024-01-06,1,2",  # ISO: another format
            "cust-2,O3,01/13/2024,1,2",  # month first: month 13 does not exist
            "cust-2,O4,31/02/2024,1,2",  # 31 February
            "cust-3,O5,6 Jan 2024,1,2",  # words
            "cust-3,O6,07/01/2024,1,2",  # kept (7 January)
        ),
    )
    text(
        "decimal_comma.csv",
        lines(
            "cust-1;O1;2024-01-05;1;1.234,50",  # German thousands and decimal
            "cust-1;O2;2024-01-05;1;2,5",  # decimal comma
            "cust-2;O3;2024-01-05;1;1,234.50",  # English thousands separator
            "cust-2;O4;2024-01-05;1 000;2",  # thousands separated by a space
            "cust-3;O5;2024-01-05;2;3.5",  # plain: kept
            "cust-3;O6;2024-01-05;1;1.234",  # 1.234 (or 1234?): read as 1.234, see cases.yml
            header=HEADER.replace(",", ";"),
        ),
    )
    text(
        "no_price_column.csv",
        lines("cust-1,O1,2024-01-05,1", header="customer_id,order_id,order_date,quantity"),
    )
    text(
        "extra_columns.csv",
        lines(
            "cust-1,O1,2024-01-05,1,2,web,x",
            "cust-2,O2,2024-01-06,1,3,shop,y",
            header=HEADER + ",channel,loyalty_tier",
        ),
    )
    text(
        "duplicate_header.csv",
        lines("cust-1,O1,2024-01-05,1,2,3", header=HEADER + ",unit_price"),
    )
    text(
        "nan_inf.csv",
        lines(
            "cust-1,O1,2024-01-05,NaN,2",
            "cust-1,O2,2024-01-05,1,nan",
            "cust-2,O3,2024-01-05,1,inf",
            "cust-2,O4,2024-01-05,1,-Infinity",
            "cust-3,O5,2024-01-05,Infinity,2",
            "cust-3,O6,2024-01-05,1,1e400",  # overflows while parsing: not a finite number
            "cust-4,O7,2024-01-05,3,2.5",  # kept
        ),
    )
    text(
        "huge_values.csv",
        lines(
            "cust-1,O1,2024-01-05,10,1e308",  # 1e309: the amount overflows
            "cust-1,O2,2024-01-05,1e200,1e200",  # 1e400
            "cust-2,O3,2024-01-05,1,1e308",  # finite: kept
            "cust-2,O4,2024-01-05,-10,1e308",  # a return of -1e309: overflows
            "cust-3,O5,2024-01-05,2,-1e308",  # negative price comes first
            "cust-3,O6,2024-01-05,123456789012,0.5",  # large but finite: kept
        ),
    )
    text(
        "all_bad.csv",
        lines(
            ",O1,2024-01-05,1,2",
            "cust-1,O2,yesterday,1,2",
            "cust-1,O3,2024-01-05,one,2",
            "cust-2,O4,2024-01-05,1,0",
            "cust-2,O4,2024-01-05,1,0",
        ),
    )

    sales = pd.DataFrame(
        {
            "customer_id": ["cust-1", "cust-2", "", "cust-3", "cust-3"],
            "order_id": ["O1", "O2", "O3", "O4", "O4"],
            "order_date": ["2024-01-05", "2024-01-06", "2024-01-07", "2024-02-30", "2024-02-30"],
            "quantity": ["2", "1", "1", "1", "1"],
            "unit_price": ["3.5", "10", "4", "4", "4"],
        }
    )
    with pd.ExcelWriter(HERE / "workbook.xlsx", engine="openpyxl") as book:
        pd.DataFrame({"About": ["Export of the shop system", "Sales are on sheet Sales"]}).to_excel(
            book, sheet_name="About", index=False
        )
        sales.to_excel(book, sheet_name="Sales", index=False)
        twice = pd.concat([sales.iloc[:2], sales.iloc[:2][["quantity"]]], axis=1)
        twice.to_excel(book, sheet_name="Twice", index=False)  # 'quantity' twice

    # Parquet with the wrong types: dates as integers (yyyymmdd), quantities as text, prices
    # as text with a NaN among real numbers.
    wrong = pa.table(
        {
            "customer_id": pa.array(["cust-1", "cust-2", "cust-3", "cust-4", "cust-5"]),
            "order_id": pa.array([1, 2, 3, 4, 5], pa.int64()),
            "order_date": pa.array([20240105, 20240106, 20241399, 20240108, 20240109], pa.int64()),
            "quantity": pa.array(["2", "abc", "1", "3", "1"]),
            "unit_price": pa.array([3.5, 2.0, 1.0, float("nan"), 1.25], pa.float64()),
        }
    )
    pq.write_table(wrong, HERE / "wrong_types.parquet")
    epoch = pa.table(
        {
            "customer_id": pa.array(["cust-1", "cust-2", "cust-3"]),
            "order_id": pa.array(["O1", "O2", "O3"]),
            "order_date": pa.array([1704412800, 1704499200, 1704585600], pa.int64()),
            "quantity": pa.array([1, 2, 1], pa.int32()),
            "unit_price": pa.array([1.5, 2.5, 3.5], pa.float32()),
        }
    )
    pq.write_table(epoch, HERE / "epoch_dates.parquet")


if __name__ == "__main__":
    main()
