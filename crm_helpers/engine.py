"""The engines that run the preparation SQL: DuckDB (embedded, the default) and Apache Spark.

The preparation and the features are written once, as DuckDB SQL, in :mod:`crm_helpers.data` and
:mod:`crm_helpers.features`. On Spark they run through :class:`SparkConnection`, a connection with
DuckDB's ``execute(sql)`` interface that transpiles each statement with SQLGlot
(``read="duckdb", write="spark"``) and runs it with ``spark.sql``. A few DuckDB statements have no
Spark SQL form and are handled here, in one place:

- ``CREATE [OR REPLACE] TEMP TABLE x AS <query>``: the query's result is materialised
  (``localCheckpoint``, which keeps its row order) and registered as the temp view ``x``;
  ``CREATE TEMP TABLE x (col TYPE, ...)`` gives an empty view of that schema;
- ``COPY (<query>) TO 'file.parquet' (FORMAT parquet)``: the result is brought to the driver as
  Arrow and written as one Parquet file (the chapters read the run folder on the driver);
- ``SET VARIABLE crm_key = ?`` / ``getvariable('crm_key')``: a Spark session variable;
- ``DESCRIBE <query or table>``: the column names and types of Spark's analysed plan;
- ``isfinite(x)`` and ``try_strptime(x, '%d/%m/%Y')``: rewritten to Spark functions.

Files are read by :meth:`SparkConnection.read_file` (CSV with a header line, Parquet), which adds
``_row``, the 1-based row in the file's order, as DuckDB's ``row_number() OVER ()`` does.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Spark settings the preparation relies on (identical results to DuckDB); params cannot change them.
FIXED_CONF: dict[str, str] = {
    # DuckDB's TIMESTAMP has no time zone: so does Spark's, and dates never shift.
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
    "spark.sql.session.timeZone": "UTC",
}

#: Defaults for a session started here (a client's ``run.spark.conf`` overrides them).
DEFAULT_CONF: dict[str, str] = {
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "16",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}

#: Column that receives a CSV line whose fields do not match the header.
_CORRUPT = "_crm_corrupt_record"

#: Environment variable read for the master URL when ``run.spark.master`` is null.
MASTER_ENV = "SPARK_MASTER"
DEFAULT_MASTER = "local[*]"


class SparkEngineError(RuntimeError):
    """A statement failed on Spark (the message is Spark's first line)."""


def _import_pyspark() -> None:
    """Import PySpark without its warning that pandas 3 is "not yet fully supported".

    The warning would land in the chapter notebooks. The engine hands Spark Arrow tables, not
    pandas frames, and tests/test_spark.py checks that its results equal DuckDB's.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", "PySpark does not yet fully support pandas", FutureWarning
        )
        import pyspark.sql  # noqa: F401
        import pyspark.testing.utils  # noqa: F401  (where the check runs, once per process)


def spark_master(configured: str | None) -> str:
    """The master URL: ``run.spark.master``, else ``$SPARK_MASTER``, else ``local[*]``."""
    return configured or os.environ.get(MASTER_ENV) or DEFAULT_MASTER


def spark_session(
    master: str | None = None,
    conf: Mapping[str, Any] | None = None,
    app_name: str = "crm-report",
    log_level: str = "ERROR",
):
    """A SparkSession for the preparation (one per process: a running one is reused as it is).

    Parameters
    ----------
    master
        The master URL (``local[*]``, ``spark://host:7077``, ``yarn``, ``k8s://...``); None =
        ``$SPARK_MASTER`` or ``local[*]``.
    conf
        Spark settings (``spark.executor.memory`` ...), applied over :data:`DEFAULT_CONF`;
        :data:`FIXED_CONF` is always applied last.
    app_name
        The application name shown by the cluster manager.
    log_level
        Spark's log level (ERROR keeps notebooks and the console readable).

    """
    _import_pyspark()
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    if SparkContext._active_spark_context is not None:  # a session of this process: reuse it
        spark = SparkSession.builder.getOrCreate()
        for k, v in FIXED_CONF.items():
            spark.conf.set(k, v)
        return spark
    builder = SparkSession.builder.appName(app_name).master(spark_master(master))
    log_conf = Path(__file__).parent / "assets" / "spark-log4j2.properties"
    quiet = {"spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{log_conf}"}
    settings = {
        **DEFAULT_CONF,
        **quiet,
        **{k: str(v) for k, v in (conf or {}).items()},
        **FIXED_CONF,
    }
    for k, v in settings.items():
        builder = builder.config(k, _conf_value(v))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(log_level)
    for k, v in FIXED_CONF.items():  # a reused session may predate these
        spark.conf.set(k, v)
    return spark


def _conf_value(v: str) -> str:
    return v.lower() if v in ("True", "False") else v


# ----------------------------------------------------------------------------------- transpile
def _java_pattern(strftime: str) -> str:
    """A DuckDB (strftime) date format as a Spark (Java) pattern.

    Like DuckDB, the pattern also reads numbers without their leading zero where a separator
    follows (``1/2/2024`` for ``%d/%m/%Y``).
    """
    from sqlglot.dialects.spark import Spark
    from sqlglot.time import format_time

    java = format_time(strftime, Spark.INVERSE_TIME_MAPPING, Spark.INVERSE_TIME_TRIE) or strftime
    return re.sub(r"(?<![A-Za-z])(MM|dd|HH|mm|ss)(?![A-Za-z])", lambda m: m.group(1)[0], java)


#: The text DuckDB casts to a timestamp: a date of year, month and day (``-`` or ``/``), then
#: optionally hours and minutes (DuckDB rejects an hour alone) and whatever Spark reads after them.
_TS_SHAPE = r"^\s*[0-9]{4,}([-/])[0-9]{1,2}\1[0-9]{1,2}([ T][0-9]{1,2}:[0-9]{1,2}.*)?$"
#: A zone name after the time (``10:00 PST``): DuckDB's TIMESTAMP ignores it, Spark refuses it.
_ZONE_NAME = r"^(.*[0-9]:[0-9]{1,2}(:[0-9]{1,2}(\.[0-9]+)?)?)\s+[A-Za-z][A-Za-z_/+-]*\s*$"
#: ``2024/01/05`` -> ``2024-01-05`` (Spark reads dates with ``-`` only).
_SLASH_DATE = r"^(\s*[0-9]{4,})/([0-9]{1,2})/"


def _rewrite(node):
    """DuckDB functions without a Spark SQL namesake, as Spark expressions."""
    from sqlglot import exp

    if (
        isinstance(node, exp.TryCast)
        and node.to.is_type("timestamp", "timestampntz")
        and not node.meta.get("crm")
    ):
        # Spark also reads '2024', '2024-03' and '2024-01-05 10' as timestamps; DuckDB does not.
        cast = node.copy()
        cast.meta["crm"] = True
        text = cast.this
        if text.is_type("timestamp", "date"):
            return cast
        dashed = exp.RegexpReplace(
            this=text.copy(),
            expression=exp.Literal.string(_SLASH_DATE),
            replacement=exp.Literal.string("$1-$2-"),
        )
        unzoned = exp.RegexpReplace(
            this=dashed,
            expression=exp.Literal.string(_ZONE_NAME),
            replacement=exp.Literal.string("$1"),
        )
        cast.set("this", unzoned)
        return exp.Case(
            ifs=[
                exp.If(
                    this=exp.RegexpLike(this=text.copy(), expression=exp.Literal.string(_TS_SHAPE)),
                    true=cast,
                )
            ]
        )
    if isinstance(node, exp.TryCast) and node.to.is_type("double") and not node.meta.get("crm"):
        # DuckDB reads digit groups separated by single underscores ('1_000'); Spark does not.
        cast = node.copy()
        cast.meta["crm"] = True
        cast.set(
            "this",
            exp.RegexpReplace(
                this=cast.this,
                expression=exp.Literal.string(r"(?<=[0-9])_(?=[0-9])"),
                replacement=exp.Literal.string(""),
            ),
        )
        return cast
    if not isinstance(node, exp.Anonymous):
        return node
    name = str(node.this).lower()
    args = [a.transform(_rewrite) for a in node.expressions]  # a replaced node is not visited
    if name == "getvariable":
        var = args[0].name
        return exp.column(var, table="session", db="system")
    if name == "isfinite":
        # Spark has no isfinite; abs(NaN) sorts above infinity there, so NaN fails too.
        return exp.LT(
            this=exp.Abs(this=args[0].copy()),
            expression=exp.cast(exp.Literal.string("Infinity"), "DOUBLE"),
        )
    if name == "try_strptime":
        fmt = args[1]
        if not (isinstance(fmt, exp.Literal) and fmt.is_string):
            raise SparkEngineError("try_strptime needs a literal format on Spark")
        return exp.Anonymous(
            this="TRY_TO_TIMESTAMP",
            expressions=[args[0].copy(), exp.Literal.string(_java_pattern(fmt.this))],
        )
    return node


def to_spark_sql(node) -> str:
    """One parsed DuckDB expression as Spark SQL."""
    return node.transform(_rewrite).sql(dialect="spark")


def transpile(sql: str) -> str:
    """DuckDB SQL (one query) as Spark SQL."""
    import sqlglot

    return to_spark_sql(sqlglot.parse_one(sql, read="duckdb"))


# --------------------------------------------------------------------------------- connection
class _Result:
    """The rows of a statement, with DuckDB's fetch methods."""

    def __init__(self, rows: Sequence[tuple] | None = None, frame=None):
        self._rows = [tuple(r) for r in rows] if rows is not None else None
        self._frame = frame
        self._pos = 0

    def _all(self) -> list[tuple]:
        if self._rows is None:
            self._rows = (
                [tuple(r) for r in self._frame.collect()] if self._frame is not None else []
            )
        return self._rows

    def fetchone(self) -> tuple | None:
        rows = self._all()
        if self._pos >= len(rows):
            return None
        self._pos += 1
        return rows[self._pos - 1]

    def fetchall(self) -> list[tuple]:
        rows = self._all()[self._pos :]
        self._pos = len(self._all())
        return rows

    def df(self):
        """The result as a pandas frame."""
        if self._frame is None:
            import pandas as pd

            return pd.DataFrame(self._all())
        return self._frame.toArrow().to_pandas()


class SparkConnection:
    """DuckDB's connection interface (``execute``) over a SparkSession.

    Parameters
    ----------
    spark
        The SparkSession (see :func:`spark_session`).

    """

    engine = "spark"

    def __init__(self, spark, *, owns_session: bool = False):
        self.spark = spark
        self.owns_session = owns_session  # close() stops the session it started
        self._tables: dict[str, Any] = {}  # temp view name -> materialised DataFrame

    @classmethod
    def start(cls, master: str | None = None, conf: Mapping[str, Any] | None = None):
        """A connection on a new SparkSession (or on the running one, which it then leaves running)."""
        _import_pyspark()
        from pyspark import SparkContext

        running = SparkContext._active_spark_context is not None
        return cls(spark_session(master, conf), owns_session=not running)

    # -------------------------------------------------------------------------- statements
    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> _Result:
        """Run one DuckDB statement on Spark."""
        import sqlglot
        from sqlglot import exp

        try:
            node = sqlglot.parse_one(sql, read="duckdb")
        except sqlglot.errors.ParseError as exc:
            raise SparkEngineError(f"cannot read the statement: {exc}") from None
        if isinstance(node, exp.Set):
            return self._set(node, parameters or [])
        if isinstance(node, exp.Create):
            return self._create(node)
        if isinstance(node, exp.Copy):
            return self._copy(node)
        if isinstance(node, exp.Describe):
            return self.describe(node.this)
        return _Result(frame=self._sql(to_spark_sql(node)))

    def _sql(self, text: str):
        from pyspark.errors import PySparkException

        try:
            return self.spark.sql(text)
        except PySparkException as exc:
            raise SparkEngineError(str(exc).splitlines()[0]) from None

    def _set(self, node, parameters: Sequence[Any]) -> _Result:
        from pyspark.sql.functions import lit
        from sqlglot import exp

        item = node.expressions[0]
        eq = item.this
        if item.args.get("kind") != "VARIABLE" or not isinstance(eq, exp.EQ):
            raise SparkEngineError(f"unsupported SET statement on Spark: {node.sql()}")
        name = eq.this.name
        value = parameters[0] if isinstance(eq.expression, exp.Placeholder) else eq.expression.name
        # The value is bound, never spliced into SQL text (it may be the pseudonym secret).
        self._sql(f"DECLARE OR REPLACE VARIABLE {name} STRING")
        self.spark.sql(f"SET VAR {name} = :value", args={"value": lit(str(value))})
        return _Result([])

    def _create(self, node) -> _Result:
        from sqlglot import exp

        target = node.this
        if isinstance(target, exp.Schema):  # CREATE TABLE x (col TYPE, ...): an empty table
            name = target.this.name
            ddl = ", ".join(
                f"`{c.this.name}` {c.args['kind'].sql(dialect='spark')}" for c in target.expressions
            )
            df = self.spark.createDataFrame([], schema=ddl)
        else:
            name = target.name
            df = self._sql(to_spark_sql(node.expression))
        self.register(name, df)
        return _Result([])

    def register(self, name: str, df) -> None:
        """Materialise ``df`` (its row order kept) as the temp view ``name``."""
        from pyspark.errors import PySparkException

        try:
            # localCheckpoint keeps partitions and their order and cuts the lineage (the
            # identity loop replaces a table by a query on itself).
            df = df.localCheckpoint(eager=True)
        except PySparkException as exc:
            raise SparkEngineError(str(exc).splitlines()[0]) from None
        df.createOrReplaceTempView(name)
        old = self._tables.pop(name, None)
        if old is not None:
            old.unpersist()
        self._tables[name] = df

    def _copy(self, node) -> _Result:
        import pyarrow.parquet as pq
        from sqlglot import exp

        fmt = {
            str(p.this).lower(): str(p.expression).lower() for p in node.args.get("params") or []
        }
        if fmt.get("format") != "parquet":
            raise SparkEngineError("COPY on Spark writes Parquet only")
        query = node.this.this if isinstance(node.this, exp.Subquery) else node.this
        path = node.args["files"][0].this
        frame = self._sql(to_spark_sql(query))
        table = frame.toArrow()
        pq.write_table(table, path)
        return _Result([])

    def describe(self, target) -> _Result:
        """``DESCRIBE``: (column name, type) of a table or query."""
        from sqlglot import exp

        if isinstance(target, exp.Table) and target.name in self._tables:
            df = self._tables[target.name]
        elif isinstance(target, exp.Table):
            df = self._sql(f"SELECT * FROM `{target.name}`")
        else:
            df = self._sql(to_spark_sql(target))
        return _Result([(f.name, f.dataType.simpleString()) for f in df.schema.fields])

    # ------------------------------------------------------------------------------- files
    def read_file(
        self,
        name: str,
        path: str | Path,
        fmt: str,
        *,
        delimiter: str = ",",
        encoding: str = "utf-8",
    ) -> str:
        """Register a CSV (header line, every value as text) or Parquet file as the view ``name``.

        Its first column ``_row`` is the 1-based row in the file's order: Spark reads a file in
        byte ranges whose partitions keep the file's order, so the row number is the partition's
        offset (rows in the earlier partitions) + the row's position in its partition.
        """
        from pyspark.errors import PySparkException

        try:
            if fmt == "csv":
                opts = {"header": True, "sep": delimiter, "quote": '"', "escape": '"'}
                header = self.spark.read.options(**opts).csv(str(path)).columns
                # every value as text; a line with more or fewer fields lands in _corrupt
                schema = ", ".join(f"`{c}` STRING" for c in [*header, _CORRUPT])
                df = (
                    self.spark.read.options(
                        **opts,
                        mode="PERMISSIVE",
                        columnNameOfCorruptRecord=_CORRUPT,
                        encoding={"latin-1": "ISO-8859-1", "utf-16": "UTF-16"}.get(
                            encoding, "UTF-8"
                        ),
                    )
                    .schema(schema)
                    .csv(str(path))
                )
            elif fmt == "parquet":
                df = self.spark.read.parquet(str(path))
            else:
                raise SparkEngineError(f"Spark reads CSV and Parquet files here, not {fmt}")
            numbered, tagged = _with_row_number(df)
            self.register(name, numbered)
            tagged.unpersist()
            if fmt == "csv":
                self._refuse_ragged(name, len(header))
        except PySparkException as exc:
            raise SparkEngineError(str(exc).splitlines()[0]) from None
        return name

    def _refuse_ragged(self, name: str, width: int) -> None:
        """Refuse a CSV with a line whose fields cannot be assigned to the header's columns."""
        first, n = self.spark.sql(
            f"SELECT min(_row), count(*) FROM `{name}` WHERE `{_CORRUPT}` IS NOT NULL"
        ).first()
        if n:
            more = f"; {n} rows differ in all" if n > 1 else ""
            raise SparkEngineError(
                f"data row {first} (counted after the header) has a different number of fields "
                f"than the header's {width}{more}; fix the line, or the delimiter of the table"
            )
        cols = [c for c in self._tables[name].columns if c != _CORRUPT]
        self.register(name, self._tables[name].select(*[f"`{c}`" for c in cols]))

    def from_arrow(self, name: str, table) -> str:
        """Register an Arrow table (read on the driver by DuckDB) as the view ``name``."""
        self.register(name, self.spark.createDataFrame(table))
        return name

    def close(self) -> None:
        """Drop the views and cached tables; stop the session if this connection started it."""
        for name, df in self._tables.items():
            self.spark.catalog.dropTempView(name)
            df.unpersist()
        self._tables.clear()
        if self.owns_session:
            self.spark.stop()


def _with_row_number(df):
    """``df`` with ``_row`` first (1-based, partition order then in-partition order).

    Also returns the checkpointed frame it was computed from: unpersist it once the result is
    materialised.
    """
    from pyspark.sql import functions as F

    cols = df.columns
    tagged = df.select(
        F.spark_partition_id().alias("_pid"),
        F.monotonically_increasing_id().alias("_mid"),
        *[F.col(f"`{c}`") for c in cols],
    ).localCheckpoint(eager=True)
    counts = sorted(tagged.groupBy("_pid").count().collect())
    offsets, total = [], 0
    for pid, n in counts:
        offsets.append((pid, total))
        total += n
    spark = df.sparkSession
    off = spark.createDataFrame(offsets or [(0, 0)], "_pid INT, _off BIGINT")
    local = F.col("_mid") - F.shiftleft(F.col("_pid").cast("long"), 33)
    numbered = tagged.join(F.broadcast(off), "_pid").select(
        (F.col("_off") + local + 1).alias("_row"), *[F.col(f"`{c}`") for c in cols]
    )
    return numbered, tagged
