"""The Spark engine: the same preparation, features and chapter artifacts as DuckDB's.

One local SparkSession (``local[2]``) serves the whole test session; each test runs the DuckDB
engine and the Spark engine on the same input and compares every written table and figure.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from crm_helpers.config import TableSource, load_params
from crm_helpers.data import prepare, pseudonymise
from crm_helpers.engine import SparkConnection, transpile
from crm_helpers.paths import DEFAULT_PARAMS, PARAMS_DIR, RunPaths
from crm_helpers.report.runner import input_sources

from . import test_data as crafted
from .conftest import SHARED_DATA, SMALL_DEMO, write

SPARK_CONF = {
    "spark.sql.shuffle.partitions": "4",
    "spark.ui.enabled": "false",
    "spark.default.parallelism": "2",
}


@pytest.fixture(scope="session")
def spark():
    from crm_helpers.engine import spark_session

    session = spark_session("local[2]", SPARK_CONF)
    yield session
    session.stop()


def _prepare_both(params, inputs, root: Path, spark):
    duck = RunPaths(root / "duckdb")
    on_spark = RunPaths(root / "spark")
    res_duck = prepare(params, inputs, duck)
    con = SparkConnection(spark)
    try:
        res_spark = prepare(params, inputs, on_spark, con)
    finally:
        con.close()
    return (res_duck, duck), (res_spark, on_spark)


def assert_same_tables(a: Path, b: Path) -> list[str]:
    """Every Parquet file under ``a`` has a twin under ``b``: same columns, rows, values."""
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*.parquet"))
    assert names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*.parquet"))
    for name in names:
        x, y = pq.read_table(a / name), pq.read_table(b / name)
        assert x.schema.names == y.schema.names, name
        pd.testing.assert_frame_equal(
            x.to_pandas(), y.to_pandas(), check_dtype=False, rtol=1e-9, obj=name
        )
    return names


def assert_same_prepare_json(a: Path, b: Path) -> None:
    ja, jb = (json.loads((p / "prepare.json").read_text()) for p in (a, b))
    assert ja.pop("seconds") and jb.pop("seconds")
    assert ja == jb


# ------------------------------------------------------------------------------- transpiler
def test_duckdb_only_functions_become_spark_functions():
    sql = transpile(
        "SELECT ('c_' || left(sha256(getvariable('crm_key') || '|' || id), 16)), "
        "isfinite(TRY_CAST(q AS DOUBLE)), try_strptime(d, '%d/%m/%Y %H:%M'), "
        "try_strptime(d, '%Y%m%d') FROM t"
    )
    assert "SHA2(system.session.crm_key || '|' || id, 256)" in sql
    assert (
        "ABS(TRY_CAST(REGEXP_REPLACE(q, '(?<=[0-9])_(?=[0-9])', '') AS DOUBLE)) < CAST('Infinity' AS DOUBLE)"
        in sql
    )
    # separated fields read with or without a leading zero, as DuckDB's strptime does
    assert "TRY_TO_TIMESTAMP(d, 'd/M/yyyy H:m')" in sql
    assert "TRY_TO_TIMESTAMP(d, 'yyyyMMdd')" in sql


DATE_TEXTS = [
    "2024",
    "2024-03",
    "2024-1-5",
    "2024-01-05T10:00",
    "2024-01-05 10:00:00+02",
    "2024/01/05",
    "20240105",
    "2024-01-05 10",
    "2024-01-05 10:00:00.123456789",
    "  2024-01-05",
    "2024-02-30",
    "1/5/2024",
    "2024-01-05Z",
    "+2024-01-05",
    "2024-01-05 25:00",
    "2024-01-05T10:00:00Z",
    "2024-01-05 10:00:00 UTC",
    "2024-01-05 1:2:3",
    "today",
    "2024-01-05 10:00 x",
    "2024-01/05",
]
NUMBER_TEXTS = [
    "1e3",
    "1,5",
    " 12 ",
    "NaN",
    "inf",
    "-Infinity",
    "12.",
    ".5",
    "0x10",
    "1_000",
    "+3",
    "-0",
    "1.5e400",
    "3 4",
    "",
]

#: Text -> the number under ``decimal: ','`` (None: unparseable, quarantined).
DECIMAL_COMMA_TEXTS = {
    "1.234,50": 1234.5,
    "2,5": 2.5,
    " -0,75 ": -0.75,
    "+3": 3.0,
    "1.234": 1234.0,
    "12.345.678,9": 12345678.9,
    "1,234.50": None,
    "3.5": None,
    "1.23,4": None,
    "1 000": None,
    ",5": None,
    "1e3": None,
    "NaN": None,
    "": None,
    "0,5": 0.5,
    "\t3,5 ": 3.5,
    "0.500": None,  # a group never starts with 0: not misread as 500
    "000.123": None,
    "012.345": None,
    "\xa01,5": None,  # other spaces than space and tab: not a number on either engine
    "3,5\n": None,  # Java's $ would match before a final line break
    "3,5\r": None,
}


def test_text_parses_to_the_same_timestamps_and_numbers_as_duckdb(spark):
    import duckdb

    from crm_helpers.data import _num, _parse_ts

    con, local = SparkConnection(spark), duckdb.connect()
    for text in DATE_TEXTS:
        for fmt in (None, "%Y-%m-%d %H:%M"):
            sql = "SELECT " + _parse_ts(f"'{text}'", fmt)
            assert con.execute(sql).fetchone()[0] == local.execute(sql).fetchone()[0], (text, fmt)
    for text in NUMBER_TEXTS:
        sql = "SELECT " + _num(f"'{text}'")
        assert con.execute(sql).fetchone()[0] == local.execute(sql).fetchone()[0], text
    for text in DECIMAL_COMMA_TEXTS:
        sql = "SELECT " + _num(f"'{text}'", ",")
        got = con.execute(sql).fetchone()[0]
        assert got == local.execute(sql).fetchone()[0] == DECIMAL_COMMA_TEXTS[text], text


def test_pseudonyms_on_spark_equal_python_and_duckdb(spark):
    con = SparkConnection(spark)
    con.execute("SET VARIABLE crm_key = ?", ["test-key"])
    for raw in ("A1", "B9", "0001", "ünï|code"):
        got = con.execute(
            f"SELECT ('c_' || left(sha256(getvariable('crm_key') || '|' || '{raw}'), 16))"
        ).fetchone()[0]
        assert got == pseudonymise(raw, "test-key")


# -------------------------------------------------------------------------------- prepare
def test_crafted_rows_quarantine_and_features_equal_duckdb(tmp_path, spark):
    p = crafted._params(tmp_path)
    inputs = {t: getattr(p.data, t) for t in ("transactions", "customers", "feedback", "events")}
    (rd, d), (rs, s) = _prepare_both(p, inputs, tmp_path, spark)
    for table, expected in crafted.EXPECTED.items():
        assert rs.reconciliation[table]["quarantined"] == expected, table
    assert rs.reconciliation == rd.reconciliation
    assert rs.identity == rd.identity and rs.identity["merged_ids"] > 0
    names = assert_same_tables(d.root, s.root)
    assert "quarantine/transactions.parquet" in names and "prepared/customers.parquet" in names
    assert_same_prepare_json(d.prepared, s.prepared)
    keys = set(pd.read_parquet(s.prepared / "customers.parquet")["customer_key"])
    assert pseudonymise("B9", "test-key") in keys and pseudonymise("A1", "test-key") in keys


def test_text_files_spark_cannot_split_go_through_the_duckdb_readers(tmp_path, spark):
    # whitespace-separated, no header, no order id, line totals (CDNOW-like); a basket file
    p = crafted._params(tmp_path, "  zero_price: keep\n")
    ws = crafted._ws_source(write(tmp_path / "ws.txt", crafted.WS))
    (rd, d), (rs, s) = _prepare_both(p, {"transactions": ws}, tmp_path / "ws", spark)
    assert rs.inputs["transactions"]["blank_lines"] == 1
    assert_same_tables(d.root, s.root)
    assert_same_prepare_json(d.prepared, s.prepared)
    tx = pd.read_parquet(s.prepared / "transactions.parquet")
    assert list(tx["source_row"]) == [1, 2, 3, 4, 5]
    bk = TableSource(path=write(tmp_path / "b.csv", crafted.BASKETS), format="baskets")
    (rd, d), (rs, s) = _prepare_both(p, {"transactions": bk}, tmp_path / "bk", spark)
    assert rs.basket_only and rs.reconciliation == rd.reconciliation
    assert_same_tables(d.root, s.root)


def test_demo_prepared_and_quarantine_tables_equal_duckdb(tmp_path, spark):
    params = load_params(write(tmp_path / "small.yml", SMALL))
    inputs = input_sources(params, progress=lambda _: None)
    (rd, d), (rs, s) = _prepare_both(params, inputs, tmp_path, spark)
    assert sum(sum(r["quarantined"].values()) for r in rs.reconciliation.values()) > 0
    assert rs.reconciliation == rd.reconciliation
    names = assert_same_tables(d.root, s.root)
    assert len(names) == 9  # 5 prepared tables, 4 quarantine tables
    assert_same_prepare_json(d.prepared, s.prepared)
    tx = pd.read_parquet(s.prepared / "transactions.parquet")
    assert tx["source_row"].is_monotonic_increasing  # the file's line order


@pytest.mark.slow
def test_online_retail_reconciliation_on_spark_equals_duckdb(tmp_path, spark):
    params = load_params(PARAMS_DIR / "online_retail.yml")
    inputs = input_sources(params, progress=lambda _: None)
    (rd, d), (rs, s) = _prepare_both(params, inputs, tmp_path, spark)
    assert rs.reconciliation["transactions"]["input"] == 541_909
    assert rs.reconciliation == rd.reconciliation
    assert rs.column_issues == rd.column_issues
    assert_same_tables(d.prepared, s.prepared)


# ------------------------------------------------------------------------------- the report
SMALL = SMALL_DEMO

#: Keys whose values describe the run, not the analysis.
VOLATILE = {"seconds", "timings", "version", "engine", "created_utc", "packages", "git"}


def assert_close(a, b, path="") -> None:
    """JSON values equal, numbers to a relative 1e-6 (keys in ``VOLATILE`` skipped)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), path
        for k in a:
            if k not in VOLATILE:
                assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            assert a is b, path
        elif math.isnan(a):
            assert math.isnan(b), path
        else:
            assert b == pytest.approx(a, rel=1e-6, abs=1e-9), path
    else:
        assert a == b, path


@pytest.mark.slow
def test_demo_report_on_spark_gives_duckdb_artifacts(tmp_path, spark, monkeypatch):
    from crm_helpers.chapters import CHAPTERS
    from crm_helpers.report.runner import run_report

    monkeypatch.delenv("CRM_PSEUDONYM_KEY", raising=False)  # the demo's documented key
    conf = ", ".join(f"{k}: '{v}'" for k, v in SPARK_CONF.items())
    runs = {}
    for engine in ("duckdb", "spark"):
        pfile = write(
            tmp_path / f"{engine}.yml",
            SMALL
            + f"report: {{renderer: pandoc, formats: [html], version: {engine}}}\n"
            + f"run:\n  engine: {engine}\n  spark: {{master: 'local[2]', conf: {{{conf}}}}}\n",
        )
        result = run_report(pfile, reports_dir=tmp_path / "reports", progress=lambda _: None)
        assert result.ok, [c for c in result.manifest["chapters"] if c["status"] != "ok"]
        runs[engine] = result.run_dir
    duck, on_spark = runs["duckdb"], runs["spark"]
    assert_same_tables(duck / "prepared", on_spark / "prepared")
    assert_same_tables(duck / "quarantine", on_spark / "quarantine")
    artifacts = sorted(p.name for p in (duck / "artifacts").glob("*.json"))
    assert {f"{c.slug}.json" for c in CHAPTERS} <= set(artifacts)  # + _status.json
    assert_same_tables(duck / "artifacts", on_spark / "artifacts")  # per-customer tables
    for name in artifacts:
        a = json.loads((duck / "artifacts" / name).read_text())
        b = json.loads((on_spark / "artifacts" / name).read_text())
        assert_close(a, b, name)
    basket = json.loads((on_spark / "artifacts" / "basket.json").read_text())
    assert basket["status"] == "ok" and basket["n_itemsets"] > 0
    for manifest in (json.loads((r / "manifest.json").read_text()) for r in runs.values()):
        assert (
            manifest["reconciliation"]
            == json.loads((duck / "manifest.json").read_text())["reconciliation"]
        )


def test_spark_without_java_is_a_clear_params_error(tmp_path, monkeypatch):
    from crm_helpers.errors import ParamsError

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no java here
    p = crafted._params(tmp_path, "")
    p = p.model_copy(update={"run": p.run.model_copy(update={"engine": "spark"})})
    with pytest.raises(ParamsError, match="run.engine.*Java is not installed"):
        prepare(p, {"transactions": p.data.transactions}, RunPaths(tmp_path / "r"))


def test_spark_params_are_validated(tmp_path):
    from crm_helpers.errors import ParamsError

    base = f"extends: {DEFAULT_PARAMS}\nrun:\n  engine: spark\n"
    ok = load_params(write(tmp_path / "ok.yml", base + "  spark: {master: 'spark://h:7077'}\n"))
    assert ok.run.spark.master == "spark://h:7077"
    for bad, match in (
        ("  spark: {master: 'local[two]'}\n", "run.spark.master"),
        ("  spark: {conf: {executor.memory: 4g}}\n", "must start with 'spark.'"),
        ("  spark: {conf: {spark.sql.session.timeZone: CET}}\n", "cannot be set here"),
        ("  engine: polars\n", "run.engine"),
    ):
        text = base + bad if "engine:" not in bad else f"extends: {DEFAULT_PARAMS}\nrun:\n" + bad
        with pytest.raises(ParamsError, match=match):
            load_params(write(tmp_path / "bad.yml", text))


# ------------------------------------------------------------------------- FP-growth (04)
@pytest.mark.parametrize(
    ("support", "confidence", "itemsets", "rules"),
    [(0.001, 0.8, 13_492, 410), (0.005, 0.25, 1_001, 663), (0.01, 0.5, 333, 15)],
)
def test_spark_fpgrowth_on_groceries_equals_r_arules_and_mlxtend(
    spark, support, confidence, itemsets, rules
):
    from crm_helpers.models import basket

    groceries = basket.read_basket_file(str(SHARED_DATA / "groceries" / "groceries.csv"))
    on_spark = basket.mine(groceries, min_support=support, min_confidence=confidence, spark=spark)
    local = basket.mine(groceries, min_support=support, min_confidence=confidence)
    assert on_spark["n"] == 9835
    assert (len(on_spark["itemsets"]), len(on_spark["rules"])) == (itemsets, rules)  # R arules
    pd.testing.assert_frame_equal(on_spark["itemsets"], local["itemsets"])
    pd.testing.assert_frame_equal(on_spark["rules"], local["rules"])


def test_spark_fpgrowth_caps_the_itemset_length(spark):
    from crm_helpers.models import basket

    baskets = [["a", "b", "c"]] * 3 + [["a", "b"]] * 2 + [["c"]]
    got = basket.frequent_itemsets_spark(spark, baskets, min_support=0.5, max_len=2)
    assert got["itemset"].map(len).max() == 2
    # a:5, b:5, ab:5, c:4, ac:3, bc:3 (abc:3 has length 3); ceil(0.5 * 6) = 3
    assert dict(
        zip(got["itemset"].map(lambda s: "".join(sorted(s))), got["count"], strict=True)
    ) == {
        "a": 5,
        "ab": 5,
        "b": 5,
        "c": 4,
        "ac": 3,
        "bc": 3,
    }


# ----------------------------------------------------------------------------- URIs (s3a://)
def test_uri_inputs_are_read_by_spark_only(tmp_path, spark):
    from crm_helpers.errors import DataError

    p = crafted._params(tmp_path)
    local = {t: getattr(p.data, t) for t in ("transactions", "customers", "feedback", "events")}
    uris = {
        t: TableSource(**(s.model_dump() | {"path": Path(s.path).as_uri()}))
        for t, s in local.items()
    }
    assert str(uris["transactions"].path).startswith("file:///")
    duck = RunPaths(tmp_path / "duckdb")
    prepare(p, local, duck)
    con = SparkConnection(spark)
    try:
        res = prepare(p, uris, on_spark := RunPaths(tmp_path / "spark"), con)
    finally:
        con.close()
    assert res.inputs["transactions"]["sha256"] is None  # not read through the driver
    assert res.inputs["transactions"]["file"] == "tx.csv"
    assert_same_tables(duck.root, on_spark.root)
    with pytest.raises(DataError, match=r"tx.csv: key 'data.transactions.path' is a URI"):
        prepare(p, uris, RunPaths(tmp_path / "refused"))  # DuckDB
    ws = write(tmp_path / "ws.txt", crafted.WS)
    src = crafted._ws_source(ws).model_dump() | {"path": ws.as_uri()}
    with pytest.raises(DataError, match="Spark reads CSV files with a header line and Parquet"):
        prepare(
            p,
            {"transactions": TableSource(**src)},
            RunPaths(tmp_path / "ws"),
            SparkConnection(spark),
        )


def test_a_ragged_csv_line_is_an_error_naming_the_file_and_row(tmp_path, spark):
    from crm_helpers.errors import DataError

    p = crafted._params(tmp_path)
    f = write(
        tmp_path / "rag.csv", crafted.TX.replace("A2,O2,2024-02-05,1,10,P1,red mug,x", "A2,O2")
    )
    src = TableSource(path=f, delimiter=",")  # a ragged file misleads the sniffer
    con = SparkConnection(spark)
    with pytest.raises(DataError, match=r"rag.csv: .*data row 3 \(counted after the header\)"):
        prepare(p, {"transactions": src}, RunPaths(tmp_path / "r"), con)
    with pytest.raises(
        DataError, match="rag.csv: cannot read the transactions table"
    ):  # DuckDB too
        prepare(p, {"transactions": src}, RunPaths(tmp_path / "d"))
