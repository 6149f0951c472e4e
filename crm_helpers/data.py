"""The data layer: load, validate, clean, quarantine, resolve identities, pseudonymise, write.

Client tables are read through DuckDB (``run.engine: duckdb``, the default) or Spark
(``run.engine: spark``: the same SQL, transpiled by :mod:`crm_helpers.engine`), and the canonical
tables and per-customer features are written to the run folder.

Every input row ends either *kept* (in ``prepared/<table>.parquet``) or *quarantined* (in
``quarantine/<table>.parquet`` with one reason code); ``reconciliation`` proves
``input = kept + sum(quarantined)`` per table and per reason.

Reason codes, checked in this order (a row gets the first that applies):

- ``exact_duplicate``: the whole line repeats an earlier line (the first copy is kept). With
  ``order_id_from_row`` every line has its own order id, so identical lines stay separate orders.
- ``missing_customer_id`` / ``missing_order_id`` / ``missing_event_type``: a required id is empty.
- ``missing_product``: a basket-only line without its item (e.g. ``a,,b`` in a basket file).
- ``unparseable_date``: the date cannot be read (ISO 8601 or ``date_format``).
- ``future_date``: the date is after ``cleaning.max_valid_date``.
- ``unparseable_quantity`` / ``unparseable_price`` / ``unparseable_score``: not a finite number.
- ``zero_quantity``: quantity is 0 (a line that sold nothing).
- ``zero_price``: the unit price is 0 (kept as an ordinary line with ``cleaning.zero_price: keep``).
- ``negative_price``: the unit price is below 0. With ``price_is_line_total`` the unit price is the
  line total / quantity, so ``unparseable_price`` and ``zero_price`` read the total and a total whose
  sign differs from the quantity's is ``negative_price``.
- ``non_finite_amount``: quantity x unit price is not a finite number (each is finite, but their
  product overflows, e.g. 1e308 x 10): such a line would make every total infinite.
- ``score_out_of_range``: a feedback score outside ``cleaning.score_min .. score_max``.
- ``conflicting_customer_id``: a customers row repeats an id with different attributes.

Returns and cancellations (negative quantity; order ids starting with the cancellation prefix) are
real business events: they are kept and flagged, never dropped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from . import features
from .config import CANONICAL_COLUMNS, TABLES, Params, RemotePath, TableSource
from .engine import SparkConnection, SparkEngineError
from .errors import DataError, ParamsError
from .paths import RunPaths

DEMO_KEY = "demo-key-not-secret"

#: Reason codes per table, in the order they are checked.
REASONS: dict[str, list[str]] = {
    "transactions": [
        "exact_duplicate",
        "missing_customer_id",
        "missing_order_id",
        "missing_product",
        "unparseable_date",
        "future_date",
        "unparseable_quantity",
        "unparseable_price",
        "zero_quantity",
        "zero_price",
        "negative_price",
        "non_finite_amount",
    ],
    "customers": ["exact_duplicate", "missing_customer_id", "conflicting_customer_id"],
    "feedback": [
        "exact_duplicate",
        "missing_customer_id",
        "unparseable_date",
        "future_date",
        "unparseable_score",
        "score_out_of_range",
    ],
    "events": [
        "exact_duplicate",
        "missing_customer_id",
        "missing_event_type",
        "unparseable_date",
        "future_date",
    ],
}


@dataclass
class PrepareResult:
    """What :func:`prepare` did: reconciliation, reference dates, identity merges, timings."""

    reconciliation: dict[str, dict[str, Any]]
    reference_date: str | None
    period: dict[str, str | None]
    inputs: dict[str, dict[str, Any]]
    identity: dict[str, Any]
    column_issues: dict[str, dict[str, int]]
    seconds: dict[str, float] = field(default_factory=dict)
    basket_only: bool = False  # transactions are baskets only: no customers, dates or prices

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {
            "reconciliation": self.reconciliation,
            "reference_date": self.reference_date,
            "period": self.period,
            "inputs": self.inputs,
            "identity": self.identity,
            "column_issues": self.column_issues,
            "seconds": self.seconds,
            "basket_only": self.basket_only,
        }


# ------------------------------------------------------------------------------------ utilities
def connect(
    memory_limit: str | None = None, threads: int | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection (spills to a temp directory when over ``memory_limit``)."""
    con = duckdb.connect(":memory:")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = true")
    return con


def engine_connection(params: Params):
    """The connection of ``run.engine``: DuckDB in memory, or a :class:`SparkConnection`.

    Close it after :func:`prepare` (a Spark connection stops the session it started).
    """
    if params.run.engine == "spark":
        import shutil

        if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
            raise ParamsError(
                "key 'run.engine' is spark, but Java is not installed (no java on PATH, no "
                "JAVA_HOME): PySpark 4 needs Java 17; run `make setup` as root (it installs "
                "openjdk-17-jre-headless) or use engine duckdb"
            )
        return SparkConnection.start(params.run.spark.master, params.run.spark.conf)
    return connect(params.run.duckdb_memory_limit, None)


def pseudonym_key(params: Params) -> str:
    """The secret of the keyed hash: from ``privacy.key_env``; a documented default for the demo."""
    key = os.environ.get(params.privacy.key_env)
    if key:
        return key
    if params.data.source == "demo":
        return DEMO_KEY
    raise ParamsError(
        f"environment variable {params.privacy.key_env} (key 'privacy.key_env') is not set: "
        "client data needs a secret key for pseudonymising customer ids; set it, e.g. "
        f"export {params.privacy.key_env}=$(openssl rand -hex 32), and keep it out of git"
    )


#: sha256 of files already read in this process, by what identifies their current content.
_SHA256_SEEN: dict[tuple[str, int, int, int, int, int], str] = {}
#: A file changed less than this many seconds before it is looked at is not remembered: file
#: times are coarse (milliseconds to a second), so a rewrite that soon could leave them unchanged.
SHA256_RACY_SECONDS = 2.0


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks.

    A run needs an input's sha256 more than once (its fingerprint, the preparation summary, the
    resume check): a digest is remembered for the process while the file's path, device, inode,
    size, modification and change times are those it had when it was read, so a large input is
    read once per run. It is remembered only when the file was last changed at least
    :data:`SHA256_RACY_SECONDS` before it was looked at and did not change while it was read. (On
    a network file system that caches attributes, a change made by another machine shows once
    the cache expires, as for any reader there.)
    """
    import hashlib

    looked = time.time_ns()
    st = os.stat(path)
    seen = (
        str(Path(path).resolve()),
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
    )
    if seen in _SHA256_SEEN:
        return _SHA256_SEEN[seen]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
        after = os.fstat(fh.fileno())
    unchanged = (
        after.st_dev,
        after.st_ino,
        after.st_size,
        after.st_mtime_ns,
        after.st_ctime_ns,
    ) == seen[1:]
    settled = looked - max(st.st_mtime_ns, st.st_ctime_ns) > SHA256_RACY_SECONDS * 1e9
    if unchanged and settled:
        _SHA256_SEEN[seen] = h.hexdigest()
    return h.hexdigest()


def _q(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    """Quote an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _fmt(path: Path, source: TableSource) -> str:
    if source.format != "auto":
        return source.format
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".xlsx", ".xlsm", ".xls")):
        return "excel"
    return "csv"


# ------------------------------------------------------------------------------------- loading
#: ``TableSource.delimiter`` value for whitespace-separated text files.
WHITESPACE = "whitespace"
#: Field separator given to DuckDB when a text file is read one whole line per row; a line that
#: contains it fails loudly (DuckDB then finds two fields), it is never split silently.
_LINE_DELIM = "\x01"


def _check_options(table: str, source: TableSource, fmt: str) -> None:
    """Refuse source options that do not apply to this table or file format."""
    for key in ("order_id_from_row", "price_is_line_total", "basket_only"):
        if getattr(source, key) and table != "transactions":
            raise DataError(
                f"{source.path}: key 'data.{table}.{key}' applies to the transactions table "
                "only; remove it"
            )
    if fmt == "baskets" and table != "transactions":
        raise DataError(
            f"{source.path}: format 'baskets' (key 'data.{table}.format') applies to the "
            "transactions table only"
        )
    basket_only = source.basket_only or fmt == "baskets"
    if basket_only and source.price_is_line_total:
        raise DataError(
            f"{source.path}: key 'data.{table}.price_is_line_total' does not apply to baskets "
            "(no prices); remove it"
        )
    if fmt == "baskets" and (source.column_names is not None or source.order_id_from_row):
        raise DataError(
            f"{source.path}: keys 'data.{table}.column_names' and "
            f"'data.{table}.order_id_from_row' do not apply to a basket file (each line is one "
            "order, its items are the products); remove them"
        )
    if fmt == "baskets" and source.delimiter == WHITESPACE:
        raise DataError(
            f"{source.path}: key 'data.{table}.delimiter': a basket file needs a single "
            "item separator such as ',' (not 'whitespace': item names may contain spaces)"
        )
    if fmt in ("parquet", "excel") and source.encoding != "utf-8":
        raise DataError(
            f"{source.path}: key 'data.{table}.encoding' applies to text files; a {fmt} file "
            "records its own encoding (remove it)"
        )
    if fmt in ("parquet", "excel") and source.decimal != ".":
        raise DataError(
            f"{source.path}: key 'data.{table}.decimal' applies to text files; a {fmt} file "
            "stores numbers as numbers (remove it)"
        )
    if fmt == "parquet" and (not source.header or source.column_names is not None):
        raise DataError(
            f"{source.path}: keys 'data.{table}.header' and 'data.{table}.column_names' apply to "
            "text and Excel files; a Parquet file names its own columns (remove them)"
        )


def _field_count_error(path: Path, line: int, found: int, expected: int, why: str) -> DataError:
    return DataError(
        f"{path}: line {line} has {found} field{'s' if found != 1 else ''}, expected {expected} "
        f"({why}); fix the line, or the delimiter, header or column_names of the table"
    )


def _csv_line_error(path: Path, exc: duckdb.Error, why: str) -> DataError | None:
    """DuckDB's 'wrong number of columns' error as a :class:`DataError` naming the line."""
    text = str(exc)
    line = re.search(r"CSV Error on Line: (\d+)", text)
    counts = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
    if not (line and counts):
        return None
    expected, found = int(counts.group(1)), int(counts.group(2))
    return _field_count_error(path, int(line.group(1)), found, expected, why)


def _read_whitespace(
    con: duckdb.DuckDBPyConnection, table: str, path: Path, source: TableSource
) -> tuple[str, int]:
    """Read a whitespace-separated text file into the temp table ``_ws_<table>``.

    DuckDB reads the file one whole line per row; each line is stripped of leading and trailing
    whitespace (CR included) and split on runs of whitespace. Blank lines are skipped.

    Returns
    -------
    tuple of str and int
        The relation to select from (columns in file order, values as text) and the number of
        blank lines skipped.

    Raises
    ------
    DataError
        When a line has a different number of fields than the header, ``column_names`` or (when
        neither is given) the first data line.

    """
    lines = (
        f"read_csv({_lit(str(path))}, columns = {{'line': 'VARCHAR'}}, header = false, "
        f"delim = {_lit(_LINE_DELIM)}, quote = '', escape = '', auto_detect = false"
        f"{_enc(source)})"
    )
    # row_number() over the file in insertion order is the line number (blank lines included).
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _ws_{table} AS
        SELECT _line, regexp_split_to_array(_s, '\\s+') AS _f
        FROM (SELECT row_number() OVER () AS _line,
                     regexp_replace(line, '^\\s+|\\s+$', '', 'g') AS _s FROM {lines})
        WHERE coalesce(_s, '') <> '' ORDER BY _line"""
    )
    total, first = con.execute(f"SELECT count(*), min(_line) FROM _ws_{table}").fetchone()
    all_lines = con.execute(f"SELECT count(*) FROM {lines}").fetchone()[0]
    blank = int(all_lines - total)
    if first is None:
        raise DataError(f"{path}: the {table} table has no data rows (empty file or header only)")
    start = first if source.header else first - 1  # data lines are those after ``start``
    if source.header:
        names = con.execute(f"SELECT _f FROM _ws_{table} WHERE _line = {first}").fetchone()[0]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise DataError(
                f"{path}: line {first} (the header) repeats the column name "
                f"{', '.join(repeated)}; rename it in the file"
            )
        why = f"the header on line {first} names {len(names)} columns"
    elif source.column_names is not None:
        names = list(source.column_names)
        why = f"data.{table}.column_names names {len(names)} columns"
    else:
        width = con.execute(f"SELECT len(_f) FROM _ws_{table} WHERE _line = {first}").fetchone()[0]
        names = [f"column{i}" for i in range(1, width + 1)]
        why = f"the first data line, {first}, has {width} fields"
    bad = con.execute(
        f"SELECT _line, len(_f), count(*) OVER () FROM _ws_{table} "
        f"WHERE _line > {start} AND len(_f) <> {len(names)} ORDER BY _line LIMIT 1"
    ).fetchone()
    if bad is not None:
        line, found, n_bad = bad
        more = f"; {n_bad} lines differ in all" if n_bad > 1 else ""
        raise _field_count_error(path, line, found, len(names), why + more)
    select = ", ".join(f"_f[{i}] AS {_q(n)}" for i, n in enumerate(names, start=1))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _ws_{table} AS "
        f"SELECT {select} FROM _ws_{table} WHERE _line > {start} ORDER BY _line"
    )
    return f"_ws_{table}", blank


def _read_baskets(
    con: duckdb.DuckDBPyConnection, table: str, path: Path, source: TableSource
) -> tuple[str, int]:
    """Read a basket file (one basket per line) into ``_bk_<table>``: one row per item.

    ``order_id`` is the line number in the file; ``product_name`` the item, trimmed of spaces (an
    empty item, as in ``a,,b``, is NULL and quarantined as ``missing_product``). Blank lines are
    not baskets: they are skipped and counted. Quotes are ordinary characters. With an explicit
    ``header: true`` the first non-blank line is skipped.

    Returns
    -------
    tuple of str and int
        The relation to select from and the number of blank lines skipped.
    """
    sep = source.delimiter or ","
    header = source.header if "header" in source.model_fields_set else False
    lines = (
        f"read_csv({_lit(str(path))}, columns = {{'line': 'VARCHAR'}}, header = false, "
        f"delim = {_lit(_LINE_DELIM)}, quote = '', escape = '', auto_detect = false"
        f"{_enc(source)})"
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _bk_lines_{table} AS
        SELECT _line, _s FROM (SELECT row_number() OVER () AS _line,
                     regexp_replace(line, '^\\s+|\\s+$', '', 'g') AS _s FROM {lines})
        WHERE coalesce(_s, '') <> '' ORDER BY _line"""
    )
    total, first = con.execute(f"SELECT count(*), min(_line) FROM _bk_lines_{table}").fetchone()
    all_lines = con.execute(f"SELECT count(*) FROM {lines}").fetchone()[0]
    if first is None:
        raise DataError(f"{path}: the {table} table has no data rows (empty file or header only)")
    start = first if header else first - 1
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _bk_{table} AS
        SELECT CAST(_line AS VARCHAR) AS order_id, NULLIF(TRIM(_item), '') AS product_name
        FROM (SELECT _line, unnest(string_split(_s, {_lit(sep)})) AS _item,
                     generate_subscripts(string_split(_s, {_lit(sep)}), 1) AS _pos
              FROM _bk_lines_{table} WHERE _line > {start})
        ORDER BY _line, _pos"""
    )
    return f"_bk_{table}", int(all_lines - total)


def _read_csv_headerless(
    con: duckdb.DuckDBPyConnection, table: str, path: Path, source: TableSource
) -> str:
    """A header-less CSV read with fixed columns, so that a ragged line is an error naming it."""
    delim = source.delimiter
    if delim is None:
        delim = con.execute(
            f"SELECT Delimiter FROM sniff_csv({_lit(str(path))}{_enc(source)})"
        ).fetchone()[0]
    if source.column_names is not None:
        names = list(source.column_names)
        why = f"data.{table}.column_names names {len(names)} columns"
    else:
        sniffed = con.execute(
            f"DESCRIBE SELECT * FROM read_csv({_lit(str(path))}, all_varchar = true, "
            f"header = false, delim = {_lit(delim)}{_enc(source)})"
        ).fetchall()
        names = [f"column{i}" for i in range(1, len(sniffed) + 1)]
        why = f"the file has {len(names)} fields per line"
    if source.delimiter is None:
        # A ragged file can mislead the sniffer; then only a given delimiter finds the bad line.
        why += f"; delimiter detected as {delim!r}: set data.{table}.delimiter if that is wrong"
    cols = ", ".join(f"{_lit(n)}: 'VARCHAR'" for n in names)
    rel = (
        f"read_csv({_lit(str(path))}, columns = {{{cols}}}, header = false, "
        f"delim = {_lit(delim)}, auto_detect = false{_enc(source)})"
    )
    try:
        con.execute(f"SELECT count(*) FROM {rel}").fetchone()
    except duckdb.Error as exc:
        raise _csv_line_error(path, exc, why) or _read_error(
            path, table, "csv", exc, source
        ) from None
    return rel


def _enc(source: TableSource) -> str:
    """The ``encoding`` option of DuckDB's read_csv (none for the default, UTF-8)."""
    return "" if source.encoding == "utf-8" else f", encoding = {_lit(source.encoding)}"


def _read_error(path: Path, table: str, fmt: str, exc: Exception, source: TableSource) -> DataError:
    """A reader's error as one clear :class:`DataError`; never quotes the file's content."""
    text = str(exc)
    line = re.search(r"CSV Error on Line: (\d+)", text)
    if "Invalid unicode" in text or "byte sequence mismatch" in text:
        where = f"line {line.group(1)}" if line else "a line"
        other = "latin-1" if source.encoding != "latin-1" else "utf-16"
        return DataError(
            f"{path}: {where} is not valid {source.encoding} text (key "
            f"'data.{table}.encoding'); if the file was saved in another encoding, set e.g. "
            f"encoding: {other}"
        )
    # DuckDB's message goes on with the offending line and the reader's settings: keep the
    # first line only (no client data in messages).
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    where = f" (line {line.group(1)})" if line else ""
    return DataError(f"{path}: cannot read the {table} table as {fmt}{where}: {first}")


def _refuse_repeated(path: Path, table: str, names: list[str], where: str) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(
            f"{path}: {where} repeats the column name {', '.join(repr(n) for n in repeated)} "
            f"(the {table} table needs unique names); rename or remove the repeated column"
        )


def _check_csv_header(table: str, path: Path, source: TableSource, cols: list[str]) -> None:
    """Refuse a header that repeats a name (a reader would silently rename it, e.g. ``name_1``)."""
    renamed = [m.group(1) for c in cols if (m := re.fullmatch(r"(.+?)_?\d+", c))]
    if not set(renamed) & set(cols):
        return
    delim = f", delim = {_lit(source.delimiter)}" if source.delimiter else ""
    with duckdb.connect(":memory:") as local:  # the header line itself, whatever the engine
        row = local.execute(
            f"SELECT * FROM read_csv({_lit(str(path))}, all_varchar = true, header = false"
            f"{delim}{_enc(source)}) LIMIT 1"
        ).fetchone()
    names = [str(v).strip() for v in row or () if v is not None]
    _refuse_repeated(path, table, names, "line 1 (the header)")


def _missing_hint(
    table: str, fmt: str, cols: list[str], source: TableSource, sheets: list[str]
) -> str:
    """Why required columns may be missing: a wrong delimiter or the wrong Excel sheet."""
    if fmt == "csv" and len(cols) == 1:
        seps = [s for s in (";", "\t", "|", ",", " ") if s in cols[0]]
        guess = f": the header contains {seps[0]!r}, so try delimiter: {seps[0]!r}" if seps else ""
        told = f"delimiter {source.delimiter!r}" if source.delimiter else "the detected delimiter"
        return (
            f". Only one column was found with {told}: the file probably uses another "
            f"separator; set data.{table}.delimiter{guess}"
        )
    if fmt == "excel" and len(sheets) > 1:
        read = source.sheet if source.sheet is not None else sheets[0]
        return (
            f". Sheet {read!r} was read; the workbook has the sheets "
            f"{', '.join(repr(n) for n in sheets)}: choose one with data.{table}.sheet"
        )
    return ""


def _reader(
    con: duckdb.DuckDBPyConnection, table: str, path: Path, fmt: str, source: TableSource
) -> tuple[str, int | None, list[str]]:
    """Open the file in DuckDB: the relation, the blank lines skipped (or None), Excel's sheets."""
    if fmt == "baskets":
        return (*_read_baskets(con, table, path, source), [])
    if fmt == "csv" and source.delimiter == WHITESPACE:
        return (*_read_whitespace(con, table, path, source), [])
    if fmt == "csv" and not source.header:
        return _read_csv_headerless(con, table, path, source), None, []
    if fmt == "csv":
        opts = ["all_varchar = true", "header = true"]
        if source.delimiter:
            opts.append(f"delim = {_lit(source.delimiter)}")
        return f"read_csv({_lit(str(path))}, {', '.join(opts)}{_enc(source)})", None, []
    if fmt == "parquet":
        return f"read_parquet({_lit(str(path))})", None, []
    # Excel: DuckDB's excel extension is not installable offline, so read with openpyxl
    rel, sheets = _register_excel(con, table, path, source)
    return rel, None, sheets


def _sniff_delimiter(path: Path) -> str:
    """The delimiter DuckDB's CSV sniffer finds (the same one the DuckDB engine uses)."""
    with duckdb.connect(":memory:") as local:
        return local.execute(f"SELECT Delimiter FROM sniff_csv({_lit(str(path))})").fetchone()[0]


def _spark_source(
    con: SparkConnection, table: str, path: Path | RemotePath, fmt: str, source: TableSource
) -> tuple[str, int | None]:
    """Register the file as the Spark view ``_file_<table>`` with its row number ``_row`` first.

    CSV files with a header line and Parquet files are read by Spark itself (in parallel, from
    any path Spark reaches). The other formats (whitespace-separated or header-less text, basket
    files, Excel) go through the DuckDB readers above on the driver, with the same checks and
    errors, and are handed to Spark as Arrow.
    """
    view = f"_file_{table}"
    remote = isinstance(path, RemotePath)
    if fmt == "parquet" or (fmt == "csv" and source.header and source.delimiter != WHITESPACE):
        # DuckDB's sniffer reads local files only: a URI's CSV is comma-separated unless given
        sniff = fmt == "csv" and source.delimiter is None and not remote
        delim = _sniff_delimiter(path) if sniff else (source.delimiter or ",")
        return con.read_file(view, path, fmt, delimiter=delim, encoding=source.encoding), None
    if remote:
        raise DataError(
            f"{path}: key 'data.{table}.path': Spark reads CSV files with a header line and "
            f"Parquet files from a URI; this {fmt} file is read on the driver: give a local path, "
            "or convert it to Parquet"
        )
    with connect() as local:
        rel, blank_lines, _ = _reader(local, table, path, fmt, source)
        numbered = local.sql(f"SELECT row_number() OVER () AS _row, * FROM {rel}").to_arrow_table()
    return con.from_arrow(view, numbered), blank_lines


def register_raw(con: duckdb.DuckDBPyConnection, table: str, source: TableSource) -> dict[str, Any]:
    """Create the view ``raw_<table>``: canonical column names, every value as text, plus ``_row``.

    ``_row`` is the 1-based data row of the file (row 1 is the line after the header, or the first
    line without one; blank lines are not rows). With ``source.order_id_from_row`` the column
    ``order_id`` is ``_row`` as text.

    Raises
    ------
    DataError
        When the file is unreadable or empty, a line has the wrong number of fields, a required
        column is missing, or an option does not apply to the table or format.

    """
    remote = isinstance(source.path, RemotePath)
    path = source.path if remote else Path(source.path)
    fmt = _fmt(path, source)
    _check_options(table, source, fmt)
    if remote and not isinstance(con, SparkConnection):
        raise DataError(
            f"{path}: key 'data.{table}.path' is a URI, which only the Spark engine reads: set "
            "run.engine: spark, or give a local path"
        )
    if not remote and path.stat().st_size == 0:
        raise DataError(
            f"{path}: the file is empty (0 bytes): the {table} table has no header and no data "
            "rows; export it again"
        )
    # The file's row number: DuckDB numbers rows in the file's order; a Spark view carries it.
    row_sql = "row_number() OVER ()"
    sheets: list[str] = []
    kind = "TABLE"
    try:
        if isinstance(con, SparkConnection):
            rel, blank_lines = _spark_source(con, table, path, fmt, source)
            row_sql = "_row"
        else:
            rel, blank_lines, sheets = _reader(con, table, path, fmt, source)
        described = con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()
        cols = [r[0] for r in described]
        types = {r[0]: str(r[1]).upper() for r in described}
        if row_sql == "_row":
            cols = cols[1:]  # the view's own row number
        elif fmt == "parquet" and "file_row_number" not in cols:
            # A Parquet file numbers its rows itself: no single-threaded row_number() window,
            # and the typed table reads the file through a view (nothing to decode up front).
            rel = f"read_parquet({_lit(str(path))}, file_row_number = true)"
            row_sql = "file_row_number + 1"
            kind = "VIEW"
        if fmt == "csv" and source.header and source.delimiter != WHITESPACE and not remote:
            _check_csv_header(table, path, source, cols)
    except (duckdb.Error, SparkEngineError, ValueError, OSError) as exc:
        raise _read_error(path, table, fmt, exc, source) from None

    spec = CANONICAL_COLUMNS[table]
    mapping = {c: source.columns.get(c, c) for c in spec["required"] + spec["optional"]}
    derived: dict[str, str] = {}
    if source.order_id_from_row:
        if "order_id" in cols:
            raise DataError(
                f"{path}: the {table} table has its own order_id column, but "
                f"data.{table}.order_id_from_row is set: remove order_id_from_row"
            )
        del mapping["order_id"]
        derived["order_id"] = f"CAST({row_sql} AS VARCHAR)"
    basket_only = table == "transactions" and (source.basket_only or fmt == "baskets")
    required = ["order_id"] if basket_only else spec["required"]
    missing = [
        f"{canon} (column {src!r})" if src != canon else canon
        for canon, src in mapping.items()
        if canon in required and src not in cols
    ]
    if basket_only and not any(mapping[c] in cols for c in ("product_id", "product_name")):
        missing.append("product_id or product_name")
    if missing:
        raise DataError(
            f"{path}: required column {', '.join(missing)} missing from the {table} table "
            f"(found: {', '.join(cols)}); map your column names under data.{table}.columns"
            + _missing_hint(table, fmt, cols, source, sheets)
        )
    if basket_only:
        real = [c for c in spec["required"] if c != "order_id" and mapping[c] in cols]
        if real:
            raise DataError(
                f"{path}: data.{table}.basket_only is set, but the table has "
                f"{', '.join(real)}: a basket-only source holds orders and products only; "
                "remove basket_only to analyse those columns"
            )
    absent: dict[str, str] = {}
    if basket_only:
        # the columns a basket does not have: NULL, so every later step sees the same table shape
        absent = {
            c: "CAST(NULL AS VARCHAR)"
            for c in spec["required"]
            if c not in derived and mapping[c] not in cols
        }
    present = {canon: src for canon, src in mapping.items() if src in cols}
    spark = isinstance(con, SparkConnection)
    select = ", ".join(
        [f"{_as_text(_q(src), types[src], spark)} AS {_q(canon)}" for canon, src in present.items()]
        + [f"{expr} AS {_q(canon)}" for canon, expr in {**derived, **absent}.items()]
    )
    try:  # a text file is decoded to its end only here
        con.execute(
            f"CREATE OR REPLACE TEMP {kind} raw_{table} AS "
            f"SELECT CAST({row_sql} AS BIGINT) AS _row, {select} FROM {rel}"
        )
    except (duckdb.Error, SparkEngineError) as exc:
        raise _read_error(path, table, fmt, exc, source) from None
    n = con.execute(f"SELECT count(*) FROM raw_{table}").fetchone()[0]
    if n == 0:
        raise DataError(f"{path}: the {table} table has no data rows (empty file or header only)")
    extra = sorted(set(cols) - set(present.values()))
    info = {
        "path": str(path),
        "format": fmt,
        "rows": int(n),
        "sha256": None if remote else sha256_file(path),  # a URI is not read through the driver
        "columns": sorted([*present, *derived]),
        "ignored_columns": extra,
    }
    if basket_only:
        info["basket_only"] = True
        info["absent_columns"] = sorted(absent)
    if blank_lines is not None:
        info["blank_lines"] = blank_lines
    return info


#: Source types whose text never has surrounding spaces and is never empty.
_PLAIN_TYPES = re.compile(
    r"(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|FLOAT|DOUBLE"
    r"|DECIMAL.*|DATE|TIMESTAMP.*|BOOLEAN)"
)


def _as_text(col: str, type_: str, spark: bool) -> str:
    """SQL of a column's value as text: trimmed, and NULL when empty.

    DuckDB's ``trim`` removes the space and the Unicode space separators; trimming every value
    allocates a new string per value, so on DuckDB a value is trimmed only when it can change: it
    is empty, starts or ends with a space, or is not plain ASCII (``strlen``, its bytes, differs
    from ``length``, its characters). The result is the same as ``NULLIF(TRIM(x), '')``.
    """
    if _PLAIN_TYPES.fullmatch(type_):
        return f"CAST({col} AS VARCHAR)"  # a number or a date as text: nothing to trim
    text = f"CAST({col} AS VARCHAR)" if type_ != "VARCHAR" else col
    if spark:
        return f"NULLIF(TRIM({text}), '')"
    return (
        f"(CASE WHEN {text} = '' OR starts_with({text}, ' ') OR ends_with({text}, ' ') "
        f"OR strlen({text}) <> length({text}) THEN NULLIF(TRIM({text}), '') ELSE {text} END)"
    )


def _register_excel(
    con: duckdb.DuckDBPyConnection, table: str, path: Path, source: TableSource
) -> tuple[str, list[str]]:
    """Register the Excel sheet (values as text) as ``_excel_<table>``.

    Returns
    -------
    tuple of str and list of str
        The registered name and the names of the workbook's sheets.
    """
    import pandas as pd

    with pd.ExcelFile(path) as book:
        sheets = [str(n) for n in book.sheet_names]
        if source.sheet is not None and source.sheet not in sheets:
            raise DataError(
                f"{path}: key 'data.{table}.sheet': no sheet named {source.sheet!r}; the workbook "
                f"has the sheets {', '.join(repr(n) for n in sheets)}"
            )
        sheet = source.sheet if source.sheet is not None else sheets[0]
        header = 0 if source.header else None
        frame = pd.read_excel(book, sheet_name=sheet, dtype=str, header=header)
        if source.header:
            first = pd.read_excel(book, sheet_name=sheet, dtype=str, header=None, nrows=1)
            names = [str(v).strip() for v in first.iloc[0].dropna()] if len(first) else []
            _refuse_repeated(path, table, names, f"the header row of sheet {sheet!r}")
    if not source.header:
        names = source.column_names or [f"column{i}" for i in range(1, frame.shape[1] + 1)]
        if len(names) != frame.shape[1]:
            raise DataError(
                f"{path}: the sheet has {frame.shape[1]} columns, but data.{table}.column_names "
                f"names {len(names)}; name every column in sheet order"
            )
        frame.columns = names
    con.register(f"_excel_{table}", frame)
    return f"_excel_{table}", sheets


def _parse_ts(col: str, date_format: str | None) -> str:
    if date_format:
        return f"try_strptime({col}, {_lit(date_format)})"
    return f"TRY_CAST({col} AS TIMESTAMP)"


#: A number written with a decimal comma: thousands grouped by '.' in threes (no leading zero), or
#: no grouping; spaces or tabs around it. It must match the whole text: ``regexp_extract`` of the
#: match from the start equals the text (no ``$``, which in Spark's Java regexes also matches before
#: a final line break), and there are no backslashes, which the two SQL dialects read differently.
DECIMAL_COMMA = "^[ \t]*[+-]?([1-9][0-9]{0,2}([.][0-9]{3})+|[0-9]+)(,[0-9]+)?[ \t]*"


def _num(col: str, decimal: str = ".") -> str:
    """A finite number parsed from text, else NULL (``decimal``: the decimal separator)."""
    if decimal == ",":
        bare = f"replace(replace({col}, ' ', ''), '\t', '')"
        col = (
            f"(CASE WHEN regexp_extract({col}, {_lit(DECIMAL_COMMA)}, 0) = {col} "
            f"THEN replace(replace({bare}, '.', ''), ',', '.') END)"
        )
    return f"(CASE WHEN isfinite(TRY_CAST({col} AS DOUBLE)) THEN TRY_CAST({col} AS DOUBLE) END)"


def _typed_sql(
    table: str, cols: list[str], params: Params, source: TableSource, max_date: dt.date
) -> str:
    """SQL that parses ``raw_<table>`` and assigns each row its first failing reason (or NULL)."""
    fmt = source.date_format
    future = _lit(str(max_date + dt.timedelta(1)))
    checks: list[tuple[str, str]] = [("exact_duplicate", "d._drow IS NOT NULL")]
    parsed: list[str] = []
    if table == "transactions" and (source.basket_only or source.format == "baskets"):
        # A basket line has an order and an item, nothing else to parse.
        item = " AND ".join(f"{c} IS NULL" for c in ("product_id", "product_name") if c in cols)
        parsed = [
            "CAST(NULL AS TIMESTAMP) AS order_ts",
            "CAST(NULL AS DOUBLE) AS qty",
            "CAST(NULL AS DOUBLE) AS price",
        ]
        checks += [("missing_order_id", "order_id IS NULL"), ("missing_product", item)]
    elif table == "transactions":
        ts = _parse_ts("order_date", fmt)
        q, p = _num("quantity", source.decimal), _num("unit_price", source.decimal)
        # With a line total, p is the total: the unit price is derived (quantity 0 is quarantined
        # before it matters) and the total itself is kept as the exact amount.
        price = f"({p} / NULLIF({q}, 0))" if source.price_is_line_total else p
        parsed = [f"{ts} AS order_ts", f"{q} AS qty", f"{price} AS price"]
        if source.price_is_line_total:
            parsed.append(f"{p} AS line_total")
        checks += [
            ("missing_customer_id", "customer_id IS NULL"),
            ("missing_order_id", "order_id IS NULL"),
            ("unparseable_date", f"{ts} IS NULL"),
            ("future_date", f"{ts} >= TIMESTAMP {future}"),
            ("unparseable_quantity", f"{q} IS NULL"),
            ("unparseable_price", f"{p} IS NULL"),
            ("zero_quantity", f"{q} = 0"),
        ]
        if params.cleaning.zero_price == "quarantine":
            checks.append(("zero_price", f"{p} = 0"))
        checks.append(("negative_price", f"{price} < 0"))
        checks.append(("non_finite_amount", f"NOT isfinite({q} * {price})"))
    elif table == "customers":
        parsed = []
        for c in ("signup_date", "birth_date"):
            if c in cols:
                parsed.append(f"CAST({_parse_ts(c, fmt)} AS DATE) AS {c}_d")
        for c in ("age", "income"):
            if c in cols:
                parsed.append(f"{_num(c, source.decimal)} AS {c}_n")
        others = [c for c in cols if c != "customer_id"]
        conflict = (
            "count(*) OVER (PARTITION BY customer_id) > 1 AND row_number() OVER "
            "(PARTITION BY customer_id ORDER BY _row) > 1"
            if others
            else "FALSE"
        )
        checks += [
            ("missing_customer_id", "customer_id IS NULL"),
            ("conflicting_customer_id", conflict),
        ]
    elif table == "feedback":
        ts, s = _parse_ts("date", fmt), _num("score", source.decimal)
        parsed = [f"{ts} AS feedback_ts", f"{s} AS score_n"]
        c = params.cleaning
        checks += [
            ("missing_customer_id", "customer_id IS NULL"),
            ("unparseable_date", f"{ts} IS NULL"),
            ("future_date", f"{ts} >= TIMESTAMP {future}"),
            ("unparseable_score", f"{s} IS NULL"),
            ("score_out_of_range", f"{s} < {c.score_min} OR {s} > {c.score_max}"),
        ]
    elif table == "events":
        ts = _parse_ts("timestamp", fmt)
        parsed = [f"{ts} AS event_ts"]
        checks += [
            ("missing_customer_id", "customer_id IS NULL"),
            ("missing_event_type", "event_type IS NULL"),
            ("unparseable_date", f"{ts} IS NULL"),
            ("future_date", f"{ts} >= TIMESTAMP {future}"),
        ]
    # Window expressions cannot sit inside CASE with other windows portably: compute flags first.
    flags = ", ".join(f"({cond}) AS _f{i}" for i, (_, cond) in enumerate(checks))
    case = " ".join(f"WHEN _f{i} THEN {_lit(r)}" for i, (r, _) in enumerate(checks))
    extra = (", " + ", ".join(parsed)) if parsed else ""
    # The text a kept transaction line was parsed from is not needed again (its parsed value
    # is): it is kept for quarantined lines only, so the largest table stays narrow.
    text_if_quarantined = []
    if table == "transactions" and parsed and not source.basket_only and source.format != "baskets":
        text_if_quarantined = [c for c in ("order_date", "quantity", "unit_price") if c in cols]
    drop = [f"_f{i}" for i in range(len(checks))] + text_if_quarantined
    texts = "".join(
        f", CASE WHEN _reason IS NOT NULL THEN {_q(c)} END AS {_q(c)}" for c in text_if_quarantined
    )
    # The exact duplicates are found first (:func:`_find_duplicates`, the table dup_<table>).
    return (
        f"WITH f AS (SELECT r.*{extra}, {flags} FROM raw_{table} r "
        f"LEFT JOIN (SELECT _row AS _drow FROM dup_{table}) d ON d._drow = r._row), "
        f"g AS (SELECT *, CASE {case} END AS _reason FROM f) "
        f"SELECT * EXCLUDE ({', '.join(drop)}){texts} FROM g"
    )


@contextlib.contextmanager
def _any_order(con: Any):
    """Let DuckDB store rows in any order (faster, less memory) inside the block.

    For tables read only by queries that order, aggregate or join by ``_row`` explicitly; each
    row's ``_row`` was fixed when the file was registered.
    """
    if isinstance(con, SparkConnection):
        yield
        return
    con.execute("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        con.execute("SET preserve_insertion_order = true")


def _find_duplicates(con: Any, table: str, cols: list[str]) -> None:
    """Create ``dup_<table>(_row)``: the rows that repeat an earlier row field for field.

    Two passes, neither of which keeps a wide table: the hash of every column is counted, and only
    rows whose hash repeats are compared column by column (a window over every column, so a hash
    collision never makes two different rows duplicates). The first of equal rows is kept.
    """
    all_cols = ", ".join(_q(c) for c in cols)
    r_cols = ", ".join("r." + _q(c) for c in cols)
    # The repeated hashes are a table of their own, so the join knows they are few and builds its
    # hash table on them, never on the lines (which would not fit a small memory limit).
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE dup_hashes_{table} AS SELECT hash({all_cols}) AS _h "
        f"FROM raw_{table} GROUP BY _h HAVING count(*) > 1"
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE dup_{table} AS
        WITH w AS (SELECT r._row, row_number() OVER (PARTITION BY {r_cols} ORDER BY r._row) AS _n
                   FROM raw_{table} r JOIN dup_hashes_{table} c ON c._h = hash({r_cols}))
        SELECT _row FROM w WHERE _n > 1"""
    )


# ----------------------------------------------------------------------------- identity + privacy
def pseudonymise(value: str, key: str) -> str:
    """The pseudonym of one raw id, exactly as the SQL computes it (for checks and restricted lists)."""
    import hashlib

    return "c_" + hashlib.sha256(f"{key}|{value}".encode()).hexdigest()[:16]


def _pseudo(expr: str) -> str:
    """Keyed hash of an id: ``c_`` + 16 hex digits of sha256(key | id). Same SQL on Spark (sha2)."""
    return f"('c_' || left(sha256(getvariable('crm_key') || '|' || {expr}), 16))"


def resolve_identities(con: duckdb.DuckDBPyConnection, params: Params) -> dict[str, Any]:
    """Merge customer ids that share a normalised e-mail or phone (connected components).

    Creates ``id_map(customer_id, canonical_id)`` over every kept customer row and the audit table
    ``identity_merges(merged_key, canonical_key, evidence)``. Normalisation: e-mail lower-cased and
    trimmed; phone reduced to its last 10 digits (so ``+44 7700 900123``, ``0044 7700-900123`` and
    ``07700 900123`` agree); shorter phones are not evidence. Ids listed (pseudonymised) in
    ``identity.keep_separate`` are never merged.
    """
    cols = {r[0] for r in con.execute("DESCRIBE cust_kept").fetchall()}
    use = [k for k in params.identity.match_on if k in cols] if params.identity.enabled else []
    email = "lower(trim(email))" if "email" in use else "NULL"
    phone = (
        "CASE WHEN length(regexp_replace(phone, '[^0-9]', '', 'g')) >= 10 THEN "
        "right(regexp_replace(phone, '[^0-9]', '', 'g'), 10) END"
        if "phone" in use
        else "NULL"
    )
    keep = ", ".join(_lit(k) for k in params.identity.keep_separate) or "NULL"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE id_keys AS SELECT DISTINCT customer_id, "
        f"CASE WHEN {_pseudo('customer_id')} IN ({keep}) THEN NULL ELSE {email} END AS k_email, "
        f"CASE WHEN {_pseudo('customer_id')} IN ({keep}) THEN NULL ELSE {phone} END AS k_phone "
        f"FROM cust_kept"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE id_lab AS SELECT *, customer_id AS label FROM id_keys"
    )
    iterations = 0
    while iterations < 50:
        iterations += 1
        # Each id takes the smallest label among the ids sharing its e-mail or its phone; a NULL
        # key is no evidence (window partitions would otherwise group all NULLs together).
        con.execute(
            "CREATE OR REPLACE TEMP TABLE id_next AS SELECT customer_id, k_email, k_phone, least(label, "
            "CASE WHEN k_email IS NOT NULL THEN min(label) OVER (PARTITION BY k_email) ELSE label END, "
            "CASE WHEN k_phone IS NOT NULL THEN min(label) OVER (PARTITION BY k_phone) ELSE label END"
            ") AS label FROM id_lab"
        )
        changed = con.execute(
            "SELECT count(*) FROM id_next n JOIN id_lab o USING (customer_id) WHERE n.label <> o.label"
        ).fetchone()[0]
        con.execute("CREATE OR REPLACE TEMP TABLE id_lab AS SELECT * FROM id_next")
        if changed == 0:
            break
    con.execute(
        "CREATE OR REPLACE TEMP TABLE id_map AS SELECT customer_id, label AS canonical_id FROM id_lab"
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE identity_merges AS
        WITH m AS (SELECT k.customer_id, k.k_email, k.k_phone, m.canonical_id
                   FROM id_keys k JOIN id_map m USING (customer_id))
        SELECT {_pseudo("a.customer_id")} AS merged_key, {_pseudo("a.canonical_id")} AS canonical_key,
          CASE WHEN bool_or(a.k_email = b.k_email) AND bool_or(a.k_phone = b.k_phone) THEN 'email+phone'
               WHEN bool_or(a.k_email = b.k_email) THEN 'email' ELSE 'phone' END AS evidence
        FROM m a JOIN m b ON a.canonical_id = b.canonical_id AND a.customer_id <> b.customer_id
        WHERE a.customer_id <> a.canonical_id
        GROUP BY ALL ORDER BY canonical_key, merged_key"""
    )
    n = con.execute("SELECT count(*) FROM identity_merges").fetchone()[0]
    groups = con.execute("SELECT count(DISTINCT canonical_key) FROM identity_merges").fetchone()[0]
    return {
        "enabled": params.identity.enabled,
        "match_on": use,
        "merged_ids": int(n),
        "merged_groups": int(groups),
        "iterations": iterations,
        "kept_separate": list(params.identity.keep_separate),
    }


def real_ids(con: Any) -> Any:
    """``customer_key`` -> the client's ``customer_id`` (canonical of merged ids) and ``source_ids``.

    Read from the connection :func:`prepare` used (its temp tables; either engine), kept in memory
    by the runner and written only to the restricted folder when ``privacy.export_real_ids`` is set.
    """
    import pandas as pd

    rows = con.execute(
        """SELECT k.customer_key, coalesce(m.canonical_id, k.customer_id) AS customer_id,
               k.customer_id AS source_id
        FROM customer_keys k LEFT JOIN id_map m ON m.customer_id = k.customer_id"""
    ).fetchall()
    frame = pd.DataFrame(rows, columns=["customer_key", "customer_id", "source_id"])
    return (
        frame.sort_values(["customer_key", "source_id"])
        .groupby(["customer_key", "customer_id"], as_index=False, sort=True)["source_id"]
        .agg(";".join)
        .rename(columns={"source_id": "source_ids"})
    )


# ---------------------------------------------------------------------------------------- prepare
def prepare(
    params: Params,
    inputs: dict[str, TableSource],
    run: RunPaths,
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    today: dt.date | None = None,
) -> PrepareResult:
    """Load, validate, clean, quarantine, resolve identities, pseudonymise and write the tables.

    Parameters
    ----------
    params
        The validated parameters.
    inputs
        Table name -> source (``transactions`` required; others optional).
    run
        The run folder; writes ``prepared/*.parquet``, ``quarantine/*.parquet`` and
        ``prepared/prepare.json``.
    con
        A DuckDB connection or a :class:`~crm_helpers.engine.SparkConnection` (None = a new
        connection of ``run.engine``, closed when done).
    today
        The run date, used as the latest valid date for client files without
        ``cleaning.max_valid_date``.

    Returns
    -------
    PrepareResult

    """
    if "transactions" not in inputs:
        raise DataError("no transactions table given: it is the one required input")
    if con is None:
        con = engine_connection(params)
        try:
            return prepare(params, inputs, run, con, today=today)
        finally:
            con.close()
    run.make()
    con.execute("SET VARIABLE crm_key = ?", [pseudonym_key(params)])
    max_date = params.max_valid_date(today)
    seconds: dict[str, float] = {}
    info: dict[str, dict[str, Any]] = {}
    recon: dict[str, dict[str, Any]] = {}
    column_issues: dict[str, dict[str, int]] = {}

    t0 = time.perf_counter()
    for table in TABLES:
        if table not in inputs:
            continue
        info[table] = register_raw(con, table, inputs[table])
        cols = [c for c in info[table]["columns"]]
        with _any_order(con):  # every later read of these tables orders what it needs
            _find_duplicates(con, table, cols)
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE typed_{table} AS "
                + _typed_sql(table, cols, params, inputs[table], max_date)
            )
        rows = con.execute(f"SELECT _reason, count(*) FROM typed_{table} GROUP BY 1").fetchall()
        quarantined = {r: int(n) for r, n in sorted(rows, key=lambda x: str(x[0])) if r is not None}
        kept = sum(int(n) for r, n in rows if r is None)
        recon[table] = {
            "input": info[table]["rows"],
            "kept": kept,
            "quarantined": quarantined,
        }
        if recon[table]["input"] != recon[table]["kept"] + sum(quarantined.values()):
            raise DataError(f"{table}: reconciliation does not balance: {recon[table]}")
    seconds["load_validate"] = time.perf_counter() - t0

    # Customers: identity resolution, then PII removed.
    t0 = time.perf_counter()
    if "customers" in inputs:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE cust_kept AS SELECT * FROM typed_customers WHERE _reason IS NULL"
        )
        identity = resolve_identities(con, params)
        for c in ("signup_date", "birth_date", "age", "income"):
            if c in info["customers"]["columns"]:
                src = f"{c}_d" if c.endswith("date") else f"{c}_n"
                bad = con.execute(
                    f"SELECT count(*) FROM cust_kept WHERE {c} IS NOT NULL AND {src} IS NULL"
                ).fetchone()[0]
                if bad:
                    column_issues.setdefault("customers", {})[f"unparseable_{c}"] = int(bad)
    else:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE id_map (customer_id VARCHAR, canonical_id VARCHAR)"
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE identity_merges "
            "(merged_key VARCHAR, canonical_key VARCHAR, evidence VARCHAR)"
        )
        identity = {
            "enabled": False,
            "merged_ids": 0,
            "merged_groups": 0,
            "reason": "no customers table",
        }
    seconds["identity"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tx_cols = info["transactions"]["columns"]
    opt = [c for c in ("product_id", "category", "channel", "country", "store") if c in tx_cols]
    prefix = params.cleaning.cancellation_prefix
    is_cancel = f"starts_with(t.order_id, {_lit(prefix)})" if prefix else "FALSE"
    non_product = ", ".join(_lit(c) for c in params.cleaning.non_product_codes)
    is_product = (
        f"NOT coalesce(t.product_id IN ({non_product}), FALSE)"
        if non_product and "product_id" in tx_cols
        else "TRUE"
    )
    # One pass over the kept lines gives every small table the rest needs: the distinct customer
    # ids (to pseudonymise once each), the distinct product names as written, and the period.
    has_name = "product_name" in tx_cols
    sets = ["(customer_id)", *(["(product_name)"] if has_name else []), "()"]
    name_cols = "grouping(product_name) AS _g_name, product_name, " if has_name else ""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE tx_kept AS
        SELECT grouping(customer_id) AS _g_cust, customer_id, {name_cols}count(*) AS n,
               min(CAST(order_ts AS DATE)) AS first_date, max(CAST(order_ts AS DATE)) AS last_date
        FROM typed_transactions WHERE _reason IS NULL
        GROUP BY GROUPING SETS ({", ".join(sets)})"""
    )
    name_sql = ""
    if has_name:
        # One display name per normalised name (case and runs of whitespace ignored): the most
        # frequent spelling, ties broken alphabetically, so variants collapse deterministically.
        # Worked out once per distinct name as written (product_spellings), not once per line.
        con.execute(
            """CREATE OR REPLACE TEMP TABLE product_spellings AS
            SELECT product_name AS raw_name, n,
                   regexp_replace(product_name, '\\s+', ' ', 'g') AS spelling,
                   lower(regexp_replace(product_name, '\\s+', ' ', 'g')) AS norm
            FROM tx_kept WHERE _g_name = 0 AND product_name IS NOT NULL"""
        )
        con.execute(
            """CREATE OR REPLACE TEMP TABLE product_names AS
            SELECT norm, arg_min(spelling, (-n, spelling)) AS product_name, count(*) AS variants
            FROM (SELECT norm, spelling, sum(n) AS n FROM product_spellings GROUP BY norm, spelling)
            GROUP BY norm"""
        )
        con.execute(
            """CREATE OR REPLACE TEMP TABLE product_name_map AS
            SELECT m.raw_name, p.product_name FROM product_spellings m JOIN product_names p USING (norm)"""
        )
        variants = con.execute(
            "SELECT coalesce(sum(variants - 1), 0) FROM product_names"
        ).fetchone()[0]
        column_issues.setdefault("transactions", {})["product_name_variants"] = int(variants)
        name_sql = ", pn.product_name AS product_name"
    name_join = "LEFT JOIN product_name_map pn ON pn.raw_name = t.product_name" if name_sql else ""
    # The pseudonym of each distinct customer id (canonical id of merged ids) is hashed once.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE customer_keys AS
        SELECT k.customer_id, {_pseudo("coalesce(m.canonical_id, k.customer_id)")} AS customer_key
        FROM (SELECT customer_id FROM tx_kept WHERE _g_cust = 0 AND customer_id IS NOT NULL) k
        LEFT JOIN id_map m ON m.customer_id = k.customer_id"""
    )
    # A line total read from the file is the amount as given (qty * total / qty may differ from it
    # in the last bits).
    amount = "t.line_total" if inputs["transactions"].price_is_line_total else "t.qty * t.price"
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW transactions AS
        SELECT k.customer_key, t.order_id, t.order_ts, CAST(t.order_ts AS DATE) AS order_date,
          {"".join(f"t.{c}, " for c in opt)}t.qty AS quantity, t.price AS unit_price,
          {amount} AS amount, coalesce(t.qty < 0, FALSE) AS is_return, {is_cancel} AS is_cancellation,
          {is_product} AS is_product, t._row AS source_row{name_sql}
        FROM typed_transactions t
        LEFT JOIN customer_keys k ON k.customer_id = t.customer_id
        {name_join}
        WHERE t._reason IS NULL"""
    )  # a view: read once, by the ordered Parquet write
    ref = con.execute(
        "SELECT CAST(max(last_date) + INTERVAL 1 DAY AS DATE), min(first_date) FROM tx_kept "
        f"WHERE _g_cust = 1{' AND _g_name = 1' if has_name else ''}"
    ).fetchone()
    reference_date = ref[0]
    period = {
        "start": str(ref[1]) if ref[1] else None,
        "end": str(reference_date - dt.timedelta(1)) if reference_date else None,
    }

    seconds["transform"] = time.perf_counter() - t0

    # The kept lines are written first, in file order; DuckDB then reads the features from that
    # file (only the columns they need, already parsed) rather than parsing the input again.
    t0 = time.perf_counter()
    out = run.prepared
    tx_file = out / "transactions.parquet"
    # In file order: joins do not keep DuckDB's insertion order, so the lines are sorted.
    con.execute(
        f"COPY (SELECT * FROM transactions ORDER BY source_row) TO {_lit(str(tx_file))} "
        "(FORMAT parquet)"
    )
    if not isinstance(con, SparkConnection):
        con.execute(
            "CREATE OR REPLACE TEMP VIEW transactions AS "
            f"SELECT * FROM read_parquet({_lit(str(tx_file))})"
        )
    seconds["write"] = time.perf_counter() - t0

    # The unified customer view: customer attributes (merged ids) + transaction features.
    t0 = time.perf_counter()
    features.create_customer_features(con, reference_date)
    _unified_customers(con, info, reference_date)
    _write_side_tables(con, info, params)
    seconds["transform"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    for name in ("customers", "identity_merges") + tuple(
        t for t in ("feedback", "events") if t in inputs
    ):
        con.execute(
            f"COPY (SELECT * FROM {name}) TO {_lit(str(out / f'{name}.parquet'))} (FORMAT parquet)"
        )
    _write_quarantine(con, info, run)
    seconds["write"] += time.perf_counter() - t0

    result = PrepareResult(
        reconciliation=recon,
        reference_date=str(reference_date) if reference_date else None,
        period=period,
        inputs={
            t: {k: v for k, v in d.items() if k != "path"} | {"file": Path(d["path"]).name}
            for t, d in info.items()
        },
        identity=identity,
        column_issues=column_issues,
        seconds={k: round(v, 3) for k, v in seconds.items()},
        basket_only=bool(info["transactions"].get("basket_only", False)),
    )
    (out / "prepare.json").write_text(json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
    return result


def require_usable(result: PrepareResult, inputs: dict[str, TableSource]) -> None:
    """Refuse a run whose transactions were all quarantined: no chapter could say anything.

    :func:`prepare` still writes every row to ``quarantine/transactions.parquet`` with its reason;
    this check is what ``crm-report validate`` and ``run`` apply afterwards.

    Raises
    ------
    DataError
        Naming the file, the number of rows and the count per reason.

    """
    r = result.reconciliation["transactions"]
    if r["kept"] > 0:
        return
    reasons = ", ".join(
        f"{reason} {n:,}" for reason, n in sorted(r["quarantined"].items(), key=lambda kv: -kv[1])
    )
    raise DataError(
        f"no usable transactions in {inputs['transactions'].path}: all {r['input']:,} rows were "
        f"quarantined ({reasons}); check the column mapping, date_format, delimiter and encoding "
        "of data.transactions, or fix the file"
    )


def _unified_customers(
    con: duckdb.DuckDBPyConnection, info: dict[str, Any], reference: dt.date | None
) -> None:
    ref = _lit(str(reference)) if reference else "current_date"
    if "customers" in info:
        cols = info["customers"]["columns"]
        attrs = []
        if "signup_date" in cols:
            attrs.append("min(c.signup_date_d) AS signup_date")
        if "birth_date" in cols:
            attrs.append(
                f"CAST(floor(date_diff('day', min(c.birth_date_d), DATE {ref}) / 365.25) AS INTEGER) AS age"
            )
        elif "age" in cols:
            # the first age given (in file order) of the merged ids
            attrs.append(
                "CAST(round(arg_min(c.age_n, c._row) FILTER (WHERE c.age_n IS NOT NULL)) AS INTEGER) AS age"
            )
        for c in ("gender", "region"):
            if c in cols:
                attrs.append(f"arg_min(c.{c}, c._row) FILTER (WHERE c.{c} IS NOT NULL) AS {c}")
        if "income" in cols:
            attrs.append(
                "arg_min(c.income_n, c._row) FILTER (WHERE c.income_n IS NOT NULL) AS income"
            )
        sel = (", " + ", ".join(attrs)) if attrs else ""
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE cust_attr AS
            SELECT {_pseudo("m.canonical_id")} AS customer_key, count(*) AS source_ids{sel}
            FROM cust_kept c JOIN id_map m USING (customer_id) GROUP BY m.canonical_id"""
        )
        con.execute(
            """CREATE OR REPLACE TEMP TABLE customers AS
            SELECT coalesce(a.customer_key, f.customer_key) AS customer_key,
                   a.customer_key IS NOT NULL AS in_customer_table, coalesce(a.source_ids, 1) AS source_ids,
                   a.* EXCLUDE (customer_key, source_ids),
                   f.* EXCLUDE (customer_key)
            FROM cust_attr a FULL OUTER JOIN customer_features f USING (customer_key)
            ORDER BY customer_key"""
        )
    else:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE customers AS SELECT customer_key, FALSE AS in_customer_table, "
            "1 AS source_ids, * EXCLUDE (customer_key) FROM customer_features ORDER BY customer_key"
        )


def _write_side_tables(
    con: duckdb.DuckDBPyConnection, info: dict[str, Any], params: Params
) -> None:
    key = _pseudo("coalesce(m.canonical_id, t.customer_id)")
    if "feedback" in info:
        cols = info["feedback"]["columns"]
        opt = "".join(f", t.{c}" for c in ("channel", "type", "text") if c in cols)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE feedback AS
            SELECT {key} AS customer_key, t.feedback_ts AS date, t.score_n AS score{opt}, t._row AS source_row
            FROM typed_feedback t LEFT JOIN id_map m ON m.customer_id = t.customer_id
            WHERE t._reason IS NULL ORDER BY t._row"""
        )
    if "events" in info:
        cols = info["events"]["columns"]
        opt = "".join(f", t.{c}" for c in ("product_id", "session_id") if c in cols)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE events AS
            SELECT {key} AS customer_key, t.event_ts AS timestamp, t.event_type{opt}, t._row AS source_row
            FROM typed_events t LEFT JOIN id_map m ON m.customer_id = t.customer_id
            WHERE t._reason IS NULL ORDER BY t._row"""
        )


def _write_quarantine(con: duckdb.DuckDBPyConnection, info: dict[str, Any], run: RunPaths) -> None:
    """Quarantined rows with their reason; ids pseudonymised and PII columns left out."""
    pii = {"name", "email", "phone", "address", "birth_date"}
    for table, d in info.items():
        cols = [c for c in d["columns"] if c not in pii and c != "customer_id"]
        sel = ", ".join(_q(c) for c in cols)
        con.execute(
            f"""COPY (SELECT _row AS source_row, _reason AS reason,
                   CASE WHEN customer_id IS NULL THEN NULL ELSE {_pseudo("customer_id")} END AS customer_key,
                   {sel} FROM typed_{table} WHERE _reason IS NOT NULL ORDER BY _row)
            TO {_lit(str(run.quarantine / f"{table}.parquet"))} (FORMAT parquet)"""
        )
