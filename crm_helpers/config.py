"""Parameters: load ``params/<client>.yml`` on top of ``params/default.yml`` and validate them.

A client file names only what differs from the defaults. It extends ``default.yml`` beside it
unless it says ``extends: <other file>``. Mappings merge key by key; lists and scalars replace.
Relative data paths are resolved against the folder of the file that declares them.

Validation happens before anything runs: an unknown key, a wrong type, a value out of range or a
missing data file raises :class:`~crm_helpers.errors.ParamsError` whose message names the file
and the dotted key, e.g. ``params/acme.yml: key 'run.workers': Input should be greater than or
equal to 1 (got 0)``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ParamsError
from .paths import DEFAULT_PARAMS

CANONICAL_COLUMNS: dict[str, dict[str, list[str]]] = {
    "transactions": {
        "required": ["customer_id", "order_id", "order_date", "quantity", "unit_price"],
        "optional": [
            "product_id",
            "product_name",
            "category",
            "channel",
            "country",
            "store",
        ],
    },
    "customers": {
        "required": ["customer_id"],
        "optional": [
            "signup_date",
            "birth_date",
            "age",
            "gender",
            "region",
            "income",
            "name",
            "email",
            "phone",
            "address",
        ],
    },
    "feedback": {
        "required": ["customer_id", "date", "score"],
        "optional": ["channel", "type", "text"],
    },
    "events": {
        "required": ["customer_id", "timestamp", "event_type"],
        "optional": ["product_id", "session_id"],
    },
}
TABLES = tuple(CANONICAL_COLUMNS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DemoParams(_Strict):
    """Size and seed of the embedded demo data (used when ``data.source`` is ``demo``)."""

    customers: int = Field(5000, ge=50, le=5_000_000, description="Number of demo customers.")
    lines: int = Field(
        100_000, ge=500, le=200_000_000, description="Approximate number of transaction lines."
    )
    start_date: dt.date = Field(dt.date(2023, 1, 1), description="First day of the demo period.")
    years: int = Field(2, ge=1, le=10, description="Length of the demo period in years.")
    seed: int = Field(42, ge=0, description="Seed of the demo generator.")
    dirt: bool = Field(True, description="Plant realistic dirt (duplicates, bad dates, ...).")

    def generator_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`crm_helpers.demo.generate_demo` for these settings."""
        return {
            "customers": self.customers,
            "lines": self.lines,
            "start_date": self.start_date,
            "years": self.years,
            "seed": self.seed,
            "dirt": self.dirt,
        }

    @property
    def end_date(self) -> dt.date:
        """Last day of the demo period."""
        return self.start_date.replace(year=self.start_date.year + self.years) - dt.timedelta(1)


#: A URI with a scheme (s3a://, hdfs://, gs://, abfss://, file://): a path only Spark reads.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class RemotePath(str):
    """A file URI that Spark reads (``s3a://bucket/sales.parquet``); never opened locally."""

    @property
    def name(self) -> str:
        """The last segment, like :attr:`pathlib.Path.name`."""
        return self.rstrip("/").rsplit("/", 1)[-1]


class TableSource(_Strict):
    """Where one input table lives and how its columns map onto the canonical names."""

    path: Path | str = Field(
        description="CSV, Parquet or Excel file; relative to the params file. With run.engine "
        "spark also a URI Spark reads (s3a://, hdfs://, gs://, abfss://, file://) of a CSV file "
        "with a header line or of Parquet."
    )
    format: Literal["auto", "csv", "parquet", "excel", "baskets"] = Field(
        "auto",
        description="File format; auto = from the file extension. baskets = a text file with one "
        "basket per line, its items separated by the delimiter (default ','; no header unless "
        "header: true); order_id = the line number, product_name = the item. Implies "
        "basket_only.",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Canonical column name -> the client's column name (only those that differ).",
    )
    delimiter: str | None = Field(
        None,
        description="CSV delimiter; null = detect; 'whitespace' = runs of spaces or tabs separate "
        "the fields (leading and trailing whitespace, CR and blank lines ignored; quotes are "
        "ordinary characters, so no field may contain a space). With format: baskets, the item "
        "separator (null = ',').",
    )
    date_format: str | None = Field(
        None, description="strptime format of date columns (e.g. '%d/%m/%Y'); null = ISO 8601."
    )
    decimal: Literal[".", ","] = Field(
        ".",
        description="Decimal separator of the numbers in a text file. ',' reads '1.234,50' as "
        "1234.5 and '2,5' as 2.5 ('.' may group thousands, in threes); a number written any "
        "other way ('1,234.50', '3.5', '1 000') is quarantined as unparseable, never misread. "
        "Parquet and Excel files keep their own number types.",
    )
    encoding: Literal["utf-8", "latin-1", "utf-16"] = Field(
        "utf-8",
        description="Text encoding of a CSV, whitespace or basket file (utf-8 also reads a "
        "byte-order mark). A file that does not decode is an error naming its line.",
    )
    sheet: str | None = Field(None, description="Excel sheet name; null = the first sheet.")
    header: bool = Field(
        True,
        description="The first line (CSV, whitespace) or row (Excel) holds the column names; "
        "false = every line is data.",
    )
    column_names: list[str] | None = Field(
        None,
        description="With header: false, the names of the columns in file order (map them under "
        "columns like header names); null = column1, column2, ...",
    )
    order_id_from_row: bool = Field(
        False,
        description="Transactions without an order id: each data row is its own order, "
        "order_id = the 1-based data row as text (identical lines then stay separate orders, "
        "so none is an exact_duplicate).",
    )
    basket_only: bool = Field(
        False,
        description="Transactions that are baskets only (order_id and product_id or "
        "product_name; no customer, date, quantity or price, e.g. point-of-sale baskets): the "
        "market basket chapter runs, the chapters that need customers or dates say so.",
    )
    price_is_line_total: bool = Field(
        False,
        description="Transactions: the column mapped to unit_price holds the line total; "
        "unit_price = total / quantity and amount = the total exactly.",
    )

    @field_validator("path", mode="before")
    @classmethod
    def _local_or_uri(cls, v: Any) -> Any:
        if isinstance(v, str) and not _URI.match(v):
            return Path(v)
        return v

    @field_validator("path")
    @classmethod
    def _path_exists(cls, v: Path | str) -> Path | RemotePath:
        if isinstance(v, str):
            return RemotePath(v)  # only Spark can tell whether it exists
        if not Path(v).is_file():
            raise ValueError(f"data file not found: {v}")
        return v

    @field_validator("column_names")
    @classmethod
    def _column_names_usable(cls, v: list[str] | None, info: Any) -> list[str] | None:
        if v is None:
            return v
        if info.data.get("header", True):
            raise ValueError(
                "column_names names the columns of a file without a header line: set "
                "header: false, or map the header's own names under columns"
            )
        names = [n.strip() for n in v]
        if not names or "" in names:
            raise ValueError(f"column_names must be non-empty names (got {v!r})")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"column_names repeats {', '.join(repeated)}: names must be unique")
        return names

    @field_validator("order_id_from_row")
    @classmethod
    def _order_id_not_also_mapped(cls, v: bool, info: Any) -> bool:
        if v and "order_id" in info.data.get("columns", {}):
            raise ValueError(
                "order_id_from_row numbers the rows as order ids: remove columns.order_id "
                f"({info.data['columns']['order_id']!r}) or set order_id_from_row: false"
            )
        return v


class DataParams(_Strict):
    """Input data: the embedded demo or the client's files."""

    source: Literal["demo", "files"] = Field(
        "demo", description="demo = generate the embedded demo data; files = read the tables below."
    )
    demo: DemoParams = Field(default_factory=DemoParams, description="Demo data settings.")
    transactions: TableSource | None = Field(None, description="Transactions (required for files).")
    customers: TableSource | None = Field(None, description="Customer master data (optional).")
    feedback: TableSource | None = Field(None, description="Survey / feedback scores (optional).")
    events: TableSource | None = Field(None, description="Web or app events (optional).")


class CleaningParams(_Strict):
    """Rules of the data layer."""

    max_valid_date: dt.date | None = Field(
        None,
        description="Latest plausible date: later dates are quarantined as future_date; null = "
        "the last day of the demo period (demo) or the run date (client files).",
    )
    cancellation_prefix: str | None = Field(
        "C", description="Order ids starting with this prefix are cancellations (kept as returns)."
    )
    non_product_codes: list[str] = Field(
        default_factory=list,
        description="product_id values that are not products (postage, fees): kept, flagged.",
    )
    zero_price: Literal["quarantine", "keep"] = Field(
        "quarantine",
        description="Lines with unit price 0: quarantine (reason zero_price) or keep as ordinary "
        "transactions (free items, promotions). Negative prices are quarantined either way.",
    )
    score_min: float = Field(0, description="Lowest valid feedback score (CSAT 1-5, NPS 0-10).")
    score_max: float = Field(10, description="Highest valid feedback score.")


class IdentityParams(_Strict):
    """Identity resolution: one customer recorded under several ids."""

    enabled: bool = Field(True, description="Merge customer ids that share a normalised key.")
    match_on: list[Literal["email", "phone"]] = Field(
        default_factory=lambda: ["email", "phone"],
        description="Evidence that links two ids: normalised e-mail and/or phone.",
    )
    keep_separate: list[str] = Field(
        default_factory=list,
        description="Pseudonymised customer ids (as shown in chapter 00) never to be merged.",
    )


class PrivacyParams(_Strict):
    """Pseudonymisation of identifiers and removal of PII before anything is written."""

    pii_columns: list[str] = Field(
        default_factory=lambda: ["name", "email", "phone", "address"],
        description="Customer columns dropped at load time (used only for identity resolution).",
    )
    key_env: str = Field(
        "CRM_PSEUDONYM_KEY",
        description="Environment variable holding the secret key of the keyed hash of ids.",
    )
    min_group_size: int = Field(
        5, ge=1, description="Tables never show a group describing fewer customers than this."
    )
    export_real_ids: bool = Field(
        False,
        description=(
            "Also write the action lists with the client's real customer ids, to the restricted "
            "folder only (owner-only permissions)."
        ),
    )
    restricted_dir: Path | None = Field(
        None,
        description=(
            "Where the real-id action lists go (<dir>/<client>/<version>/); relative to the params "
            "file; null = restricted/ beside the reports folder."
        ),
    )


class ReportParams(_Strict):
    """Rendering and presentation."""

    title: str = Field("CRM insight report", description="Title on the title page.")
    author: str = Field("CRM analytics team", description="Author on the title page.")
    version: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Report version (folder name); null = UTC timestamp of the run.",
    )
    renderer: Literal["auto", "quarto", "pandoc"] = Field(
        "auto", description="auto = Quarto when on PATH, else pandoc + Typst."
    )
    formats: list[Literal["html", "pdf"]] = Field(
        default_factory=lambda: ["html", "pdf"], description="Formats to render."
    )
    language: Literal["en", "zh"] = Field(
        "en",
        description="Language of the report's text: en = English, zh = Simplified Chinese "
        "(titles, headings, prose, figure and table captions, table headers, summary).",
    )


#: Spark master URLs: local mode, a standalone cluster, YARN, Kubernetes, Spark Connect.
_SPARK_MASTER = r"^(local(\[(\*|[1-9][0-9]*)(,[0-9]+)?\])?|yarn|(spark|k8s|mesos|sc)://\S+)$"


class SparkParams(_Strict):
    """The SparkSession of ``run.engine: spark`` (ignored with DuckDB)."""

    master: str | None = Field(
        None,
        pattern=_SPARK_MASTER,
        description="Master URL: local[*], local[N], spark://host:7077, yarn, k8s://https://host; "
        "null = the environment variable SPARK_MASTER, else local[*].",
    )
    conf: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Spark settings (spark.executor.memory, spark.sql.shuffle.partitions, ...); "
        "they win over spark-defaults.conf and the environment.",
    )

    @field_validator("conf")
    @classmethod
    def _conf_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        fixed = {"spark.sql.timestampType", "spark.sql.session.timeZone", "spark.master"}
        for key in v:
            if not key.startswith("spark."):
                raise ValueError(f"Spark setting {key!r} must start with 'spark.'")
            if key in fixed:
                raise ValueError(
                    f"Spark setting {key!r} cannot be set here "
                    + (
                        "(use run.spark.master)"
                        if key == "spark.master"
                        else "(the preparation fixes it so that results equal DuckDB's)"
                    )
                )
        return v


class RunParams(_Strict):
    """Execution of the preparation and of the chapter notebooks."""

    workers: int = Field(2, ge=1, le=32, description="Chapters executed in parallel.")
    chapters: list[str] | None = Field(
        None, description="Chapter slugs to run (data_quality and summary always run); null = all."
    )
    cell_timeout_seconds: int = Field(
        1800, ge=10, description="A notebook cell running longer than this fails its chapter."
    )
    chapter_timeout_seconds: int = Field(
        3600,
        ge=1,
        description="A chapter running longer than this (kernel start to last cell) is stopped "
        "and fails; the others go on.",
    )
    duckdb_memory_limit: str | None = Field(
        None, description="DuckDB memory_limit (e.g. '4GB'); null = DuckDB's default."
    )
    engine: Literal["duckdb", "spark"] = Field(
        "duckdb",
        description="Engine of the data preparation: duckdb (embedded) or spark (a SparkSession: "
        "run.spark).",
    )
    spark: SparkParams = Field(
        default_factory=SparkParams, description="The SparkSession of engine spark."
    )


class DataQualityChapter(_Strict):
    """Chapter 00: data quality and unified customer view."""

    examples_per_reason: int = Field(
        3, ge=0, le=50, description="Example rows (pseudonymised) shown per quarantine reason."
    )


class ProfileChapter(_Strict):
    """Chapter 01: customer profile, cohorts and tags."""

    top_shares: list[float] = Field(
        default_factory=lambda: [0.01, 0.10, 0.20],
        description="Revenue concentration: share of revenue from the top x of customers.",
    )
    cohort_months: int = Field(
        12,
        ge=1,
        le=60,
        description="Months after the first purchase shown in the retention matrix.",
    )
    tag_new_days: int = Field(
        90, ge=1, description="Tag 'new': first purchase within this many days."
    )
    tag_loyal_min_orders: int = Field(
        5, ge=2, description="Tag 'loyal': at least this many orders."
    )
    tag_lapsing_days: int = Field(
        180, ge=1, description="Tag 'lapsing': 2+ orders but none in this many days."
    )
    tag_high_value_share: float = Field(
        0.10, gt=0, lt=1, description="Tag 'high value': in the top share of customers by revenue."
    )
    tag_returns_heavy_share: float = Field(
        0.20,
        gt=0,
        le=1,
        description="Tag 'returns-heavy': returns are at least this share of sales.",
    )
    tag_multi_channel_min: int = Field(
        2, ge=2, description="Tag 'multi-channel': bought through at least this many channels."
    )


class SegmentRule(_Strict):
    """One named RFM segment: R score and mean of F and M scores within inclusive ranges."""

    name: str = Field(description="Segment name shown in the report.")
    r: tuple[int, int] = Field(description="Inclusive range of the recency score (1-5).")
    fm: tuple[float, float] = Field(description="Inclusive range of the mean of F and M scores.")
    action: str = Field(description="Recommended action for the segment.")


DEFAULT_SEGMENT_RULES = [
    ("Champions", (4, 5), (4.0, 5.0), "Reward; early access; ask for reviews and referrals"),
    ("Loyal", (3, 5), (3.0, 5.0), "Upsell higher-value products; loyalty programme"),
    ("Potential loyalist", (4, 5), (2.0, 3.5), "Membership offer; recommend related products"),
    ("New", (5, 5), (1.0, 1.5), "Onboarding; build the relationship early"),
    ("Promising", (4, 4), (1.0, 1.5), "Brand awareness; free trials"),
    ("Need attention", (3, 3), (2.0, 3.0), "Limited-time offers based on past purchases"),
    ("About to sleep", (3, 3), (1.0, 2.0), "Share popular products; renewed discounts"),
    (
        "Cannot lose them",
        (1, 2),
        (4.5, 5.0),
        "Win back with renewals or new products; talk to them",
    ),
    ("At risk", (1, 2), (3.0, 4.5), "Personalised e-mails; helpful resources; win-back offers"),
    ("Hibernating", (2, 2), (1.0, 3.0), "Offer other relevant products and special discounts"),
    ("Lost", (1, 1), (1.0, 3.0), "Revive interest with a reach-out campaign; else ignore"),
]


class SegmentationChapter(_Strict):
    """Chapter 02: RFM scores and segments, clustering, value tiers."""

    reference_date: dt.date | None = Field(
        None, description="RFM as of this day; null = the day after the last transaction."
    )
    segment_rules: list[SegmentRule] = Field(
        default_factory=lambda: [
            SegmentRule(name=n, r=r, fm=fm, action=a) for n, r, fm, a in DEFAULT_SEGMENT_RULES
        ],
        description="Named RFM segments, first match wins (the usual 11-segment map).",
    )
    k_min: int = Field(2, ge=2, le=20, description="Smallest number of clusters tried.")
    k_max: int = Field(8, ge=2, le=20, description="Largest number of clusters tried.")
    extra_features: list[str] = Field(
        default_factory=list,
        description="Extra numeric columns of the unified customer view added to clustering.",
    )
    bootstrap_rounds: int = Field(
        20, ge=0, le=500, description="Bootstrap refits for the cluster stability (ARI)."
    )
    tier_z: list[float] = Field(
        default_factory=lambda: [-1.0, 0.0, 1.0],
        description="Cut points (z-scores of log monetary) between the value tiers.",
    )
    silhouette_sample: int = Field(
        5000, ge=100, description="Customers sampled (seeded) to compute silhouette scores."
    )


class ClvChapter(_Strict):
    """Chapter 03: customer lifetime value (BG/NBD + Gamma-Gamma)."""

    time_unit: Literal["days", "weeks"] = Field(
        "weeks", description="Time unit of frequency, recency and T (and of the model's rates)."
    )
    calibration_end: dt.date | None = Field(
        None,
        description="Last day of the calibration period; null = leave the last holdout_share of "
        "the observation period as holdout.",
    )
    observation_end: dt.date | None = Field(
        None, description="Last day of the observation period; null = the last transaction day."
    )
    holdout_share: float = Field(
        0.33,
        gt=0,
        lt=1,
        description="Share of the period kept as holdout when calibration_end is null.",
    )
    prediction_periods: int = Field(
        26, ge=1, description="Expected transactions are shown for the next N time units."
    )
    horizon_months: int = Field(12, ge=1, le=120, description="CLV horizon in months.")
    monthly_discount_rate: float = Field(
        0.01, ge=0, lt=1, description="Monthly discount rate of future spend in the CLV."
    )
    margin: float = Field(
        1.0, gt=0, le=1, description="Share of spend that is margin; 1 = CLV in revenue."
    )
    min_customers: int = Field(
        200, ge=10, description="Data-sufficiency gate: customers in the calibration period."
    )
    min_repeat_buyers: int = Field(
        50, ge=10, description="Data-sufficiency gate: customers with a repeat purchase."
    )
    min_calibration_days: int = Field(
        90, ge=1, description="Data-sufficiency gate: length of the calibration period in days."
    )
    min_holdout_days: int = Field(
        28, ge=1, description="Data-sufficiency gate: length of the holdout period in days."
    )
    top_share: float = Field(
        0.2, gt=0, lt=1, description="Scorecard: share of top holdout spenders to capture."
    )
    interval_draws: int = Field(
        200,
        ge=0,
        le=5000,
        description="Parameter draws (seeded) for the intervals on headline figures; 0 = none.",
    )
    interval_level: float = Field(
        0.9, gt=0, lt=1, description="Coverage of the intervals on headline figures."
    )


class BasketChapter(_Strict):
    """Chapter 04: market basket rules (R arules' conventions by default)."""

    item_column: Literal["auto", "product_name", "product_id", "category"] = Field(
        "auto", description="What an item is; auto = product_name when present, else product_id."
    )
    min_support: float = Field(
        0.005, gt=0, le=1, description="Frequent itemsets: share of baskets (count >= ceil(s n))."
    )
    min_confidence: float = Field(0.2, ge=0, le=1, description="Rules: minimum confidence.")
    max_len: int = Field(
        4, ge=1, le=10, description="Longest itemset mined (bounds time and memory)."
    )
    algorithm: Literal["fpgrowth", "apriori"] = Field("fpgrowth", description="Mining algorithm.")
    max_consequent: int = Field(
        1, ge=1, le=10, description="Items on a rule's right-hand side (1 = arules' convention)."
    )
    empty_antecedent: bool = Field(
        True, description="Keep {} => item rules that pass the thresholds (arules' convention)."
    )
    correction: Literal["fdr_bh", "holm", "bonferroni"] = Field(
        "fdr_bh", description="Multiple-testing correction of the rules' Fisher tests."
    )
    alpha: float = Field(
        0.05, gt=0, lt=1, description="A rule is significant when its corrected p-value is below."
    )
    bootstrap_rounds: int = Field(
        100,
        ge=0,
        le=2000,
        description="Bootstrap resamples of baskets for the top rules' stability.",
    )
    top_rules: int = Field(20, ge=1, le=500, description="Rules shown (by lift) and bootstrapped.")
    min_stability: float = Field(
        0.8,
        ge=0,
        le=1,
        description="Cross-sell suggestions need at least this bootstrap stability.",
    )
    min_baskets: int = Field(
        100, ge=1, description="Data-sufficiency gate: baskets with at least one item."
    )


class RecommendationsChapter(_Strict):
    """Chapter 05: personalised recommendations from implicit purchases."""

    item_column: Literal["auto", "product_name", "product_id", "category"] = Field(
        "auto", description="What an item is; auto = product_name when present, else product_id."
    )
    cutoff: dt.date | None = Field(
        None,
        description="Last day of the training period of the holdout; null = leave the last "
        "test_share of the period as test.",
    )
    test_share: float = Field(
        0.25, gt=0, lt=1, description="Share of the period kept as test when cutoff is null."
    )
    k: int = Field(10, ge=1, le=100, description="Metrics at k: precision, recall, NDCG, success.")
    top_n: int = Field(
        10, ge=1, le=100, description="Recommendations per customer in the artifact."
    )
    repeat_purchases: bool = Field(
        False,
        description="false: recommend only items the customer has not bought (and judge the "
        "holdout on new items); true: re-buying an item counts.",
    )
    models: list[Literal["item_knn", "svd", "als"]] = Field(
        default_factory=lambda: ["item_knn", "svd"],
        min_length=1,
        description="Models compared with the popularity baseline: item_knn (item-based "
        "collaborative filtering), svd (truncated SVD), als (implicit ALS; slower).",
    )
    tune: bool = Field(
        True,
        description="Choose each model's settings on a validation split inside the training "
        "period (never the test period); false = the models' defaults.",
    )
    fallback_group: Literal["auto", "none", "region", "country", "channel"] = Field(
        "auto",
        description="New customers (no history) get what is popular in their group, known at "
        "first contact: region (customer data), country or channel (of their first purchase); "
        "auto = the first of these the data have; none = overall popularity. Judged on the "
        "customers who first bought after the cutoff; the per-group lists go to the artifact.",
    )
    min_customers: int = Field(
        50, ge=1, description="Data-sufficiency gate: test customers with a new item bought."
    )
    min_items: int = Field(10, ge=2, description="Data-sufficiency gate: items in the catalogue.")


class ChurnChapter(_Strict):
    """Chapter 06: churn prediction and risk."""

    horizon_days: int = Field(
        90,
        ge=7,
        le=730,
        description="A customer churned at a cutoff when they buy nothing in "
        "the next horizon_days days.",
    )
    active_days: int | None = Field(
        None,
        ge=1,
        description="Customers scored at a cutoff: those who bought within this many "
        "days before it; null = horizon_days (the customers still active by the churn definition).",
    )
    train_cutoffs: int = Field(
        3, ge=1, le=12, description="Earlier cutoffs, one horizon apart, stacked to fit the models."
    )
    min_history_days: int = Field(
        90, ge=0, description="History needed before the first training cutoff."
    )
    lookback_days: int | None = Field(
        365, ge=30, description="Window of the frequency and spend features; null = all history."
    )
    calibrate: bool = Field(
        True,
        description="Re-map probabilities on the calibration cutoff when that lowers the "
        "cross-validated Brier score there.",
    )
    top_reasons: int = Field(3, ge=1, le=5, description="Reasons listed per at-risk customer.")
    contamination: float = Field(
        0.01, gt=0, le=0.2, description="Share of orders and of customers the anomaly flags mark."
    )
    win_back: int = Field(
        100,
        ge=1,
        description="Customers on the win-back list (highest value at risk) in the "
        "summary's action list.",
    )
    complaint_type: str = Field(
        "complaint", min_length=1, description="The feedback type that marks a complaint."
    )
    min_customers: int = Field(
        200, ge=10, description="Data-sufficiency gate: customers on every cutoff."
    )
    min_churners: int = Field(
        20, ge=5, description="Data-sufficiency gate: churners (and stayers) on every cutoff."
    )


class ForecastChapter(_Strict):
    """Chapter 07: sales forecast."""

    period: Literal["D", "W", "M"] = Field(
        "W", description="Period of the series: D (day), W (week from Monday), M (month)."
    )
    series: list[Literal["revenue", "orders", "customers"]] = Field(
        default_factory=lambda: ["revenue", "orders", "customers"],
        min_length=1,
        description="Series backtested and forecast: net revenue, purchase orders, active "
        "customers.",
    )
    horizon: int = Field(
        12, ge=1, le=104, description="Periods forecast (and per backtest origin)."
    )
    origins: int = Field(8, ge=1, le=52, description="Rolling-origin backtest: cut points.")
    step: int = Field(1, ge=1, description="Periods between backtest origins.")
    reselect: bool = Field(
        False,
        description="Re-run the AIC search at every backtest origin (slower: about 4x on "
        "the demo); false keeps the first origin's choice and re-estimates it.",
    )
    max_p: int = Field(2, ge=0, le=5, description="SARIMAX search bound: AR order p.")
    max_d: int = Field(1, ge=0, le=2, description="SARIMAX search bound: differencing d.")
    max_q: int = Field(2, ge=0, le=5, description="SARIMAX search bound: MA order q.")
    max_P: int = Field(1, ge=0, le=2, description="SARIMAX search bound: seasonal AR order P.")
    max_D: int = Field(1, ge=0, le=1, description="SARIMAX search bound: seasonal differencing D.")
    max_Q: int = Field(1, ge=0, le=2, description="SARIMAX search bound: seasonal MA order Q.")
    fourier: int = Field(
        3, ge=0, le=10, description="Fourier harmonics for seasons too long for seasonal orders."
    )
    min_train_periods: int = Field(
        26, ge=4, description="Data-sufficiency gate: periods before the first backtest origin."
    )


class SatisfactionChapter(_Strict):
    """Chapter 08: satisfaction and feedback."""

    scale: Literal["auto", "csat", "nps"] = Field(
        "auto",
        description="Score scale: csat (1-5 by default), nps (0-10) or auto (nps when a "
        "score lies outside the CSAT range).",
    )
    csat_min: int = Field(1, description="Lowest CSAT score.")
    csat_max: int = Field(5, description="Highest CSAT score.")
    satisfied_min: int = Field(4, description="CSAT scores from this value up count as satisfied.")
    period: Literal["M", "W", "Q"] = Field("M", description="Period of the trends.")
    complaint_type: str = Field(
        "complaint", min_length=1, description="The feedback type that marks a complaint."
    )
    top_terms: int = Field(10, ge=1, le=50, description="Frequent terms shown per score band.")
    churn_use: Literal["latest", "mean"] = Field(
        "latest", description="Score that bands a customer for churn by band: latest or mean."
    )
    min_group: int = Field(
        5, ge=1, description="Rows describing fewer customers are suppressed (privacy)."
    )
    min_responses: int = Field(
        30, ge=1, description="Data-sufficiency gate: feedback rows with a score."
    )


class SummaryChapter(_Strict):
    """Chapter 99: executive summary."""

    active_days: int = Field(
        90, ge=1, description="A customer is active when they bought within this many days."
    )


class ChaptersParams(_Strict):
    """Per-chapter parameters: each block reaches its notebook's ``parameters`` cell."""

    data_quality: DataQualityChapter = Field(
        default_factory=DataQualityChapter, description="Chapter 00."
    )
    profile: ProfileChapter = Field(default_factory=ProfileChapter, description="Chapter 01.")
    segmentation: SegmentationChapter = Field(
        default_factory=SegmentationChapter, description="Chapter 02."
    )
    clv: ClvChapter = Field(default_factory=ClvChapter, description="Chapter 03.")
    basket: BasketChapter = Field(default_factory=BasketChapter, description="Chapter 04.")
    recommendations: RecommendationsChapter = Field(
        default_factory=RecommendationsChapter, description="Chapter 05."
    )
    churn: ChurnChapter = Field(default_factory=ChurnChapter, description="Chapter 06.")
    forecast: ForecastChapter = Field(default_factory=ForecastChapter, description="Chapter 07.")
    satisfaction: SatisfactionChapter = Field(
        default_factory=SatisfactionChapter, description="Chapter 08."
    )
    summary: SummaryChapter = Field(default_factory=SummaryChapter, description="Chapter 99.")


class Params(_Strict):
    """Every parameter of one report run."""

    client: str = Field(
        "demo", pattern=r"^[a-z0-9][a-z0-9_-]*$", description="Client slug (report folder name)."
    )
    seed: int = Field(20260101, ge=0, description="Seed of every random step of the analysis.")
    data: DataParams = Field(default_factory=DataParams, description="Input data.")
    cleaning: CleaningParams = Field(default_factory=CleaningParams, description="Cleaning rules.")
    identity: IdentityParams = Field(
        default_factory=IdentityParams, description="Identity resolution."
    )
    privacy: PrivacyParams = Field(default_factory=PrivacyParams, description="Privacy.")
    report: ReportParams = Field(default_factory=ReportParams, description="Rendering.")
    run: RunParams = Field(default_factory=RunParams, description="Execution.")
    chapters: ChaptersParams = Field(
        default_factory=ChaptersParams, description="Per-chapter parameters."
    )

    def max_valid_date(self, today: dt.date | None = None) -> dt.date:
        """The latest plausible date: rows dated after it are quarantined as ``future_date``."""
        if self.cleaning.max_valid_date is not None:
            return self.cleaning.max_valid_date
        if self.data.source == "demo":
            return self.data.demo.end_date
        return today or dt.datetime.now(dt.UTC).date()

    def fingerprint(self) -> str:
        """A stable sha256 of the resolved parameters.

        Where outputs go is left out (the report version, a folder name, and the restricted
        folder): they do not change a number of the report.
        """
        data = self.model_dump(mode="json")
        data["report"].pop("version", None)
        data["privacy"].pop("restricted_dir", None)
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


# --------------------------------------------------------------------------------------- loading
def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ParamsError(
            f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make the relative ``data.<table>.path`` and ``privacy.restricted_dir`` absolute (to ``base``)."""
    data = raw.get("data")
    if not isinstance(data, dict):
        return raw
    for table in TABLES:
        src = data.get(table)
        if isinstance(src, dict) and isinstance(src.get("path"), str):
            if _URI.match(src["path"]):
                continue
            p = Path(os.path.expandvars(os.path.expanduser(src["path"])))
            src["path"] = str(p if p.is_absolute() else (base / p).resolve())
    priv = raw.get("privacy")
    if isinstance(priv, dict) and isinstance(priv.get("restricted_dir"), str):
        p = Path(os.path.expandvars(os.path.expanduser(priv["restricted_dir"])))
        priv["restricted_dir"] = str(p if p.is_absolute() else (base / p).resolve())
    return raw


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _chain(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    """The files a params file builds on, most general first."""
    path = path.resolve()
    if path in seen:
        raise ParamsError(f"{path}: key 'extends': circular extends chain")
    raw = _read_yaml(path)
    parent = raw.pop("extends", None)
    if parent is None and path.name != "default.yml":
        parent = path.parent / "default.yml"
        if not parent.is_file():
            parent = DEFAULT_PARAMS
    chain: list[tuple[Path, dict[str, Any]]] = []
    if parent is not None:
        if not isinstance(parent, str | Path):
            raise ParamsError(f"{path}: key 'extends': expected a file name, got {parent!r}")
        ppath = Path(parent)
        ppath = ppath if ppath.is_absolute() else path.parent / ppath
        chain = _chain(ppath, (*seen, path))
    return [*chain, (path, _resolve_paths(raw, path.parent))]


def _declared_in(loc: tuple[Any, ...], chain: list[tuple[Path, dict[str, Any]]]) -> Path:
    """The most specific file in which the key at ``loc`` (or its longest prefix) is written."""
    best, best_depth = chain[-1][0], -1
    for path, raw in chain:
        node: Any = raw
        depth = 0
        for part in loc:
            if isinstance(node, dict) and part in node:
                node, depth = node[part], depth + 1
            else:
                break
        if depth >= best_depth and depth > 0:
            best, best_depth = path, depth
    return best


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def format_validation_error(exc: ValidationError, chain: list[tuple[Path, dict[str, Any]]]) -> str:
    """One line per problem: ``<file>: key '<dotted.key>': <message> (got <value>)``."""
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = ".".join(str(p) for p in loc) or "<top level>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling against params/default.yml)"
        elif err["type"] != "value_error" and "input" in err:
            msg += f" (got {err['input']!r})"
        lines.append(f"{_display(_declared_in(loc, chain))}: key '{key}': {msg}")
    return "\n".join(lines)


def load_params(path: str | Path | None = None) -> Params:
    """Load and validate a params file (and the files it extends).

    Parameters
    ----------
    path
        A ``params/<client>.yml``; None means ``params/default.yml`` (the demo).

    Returns
    -------
    Params
        The validated, frozen parameters.

    Raises
    ------
    ParamsError
        With one line per problem, each naming the file and the dotted key.

    """
    chain = _chain(Path(path) if path is not None else DEFAULT_PARAMS)
    merged: dict[str, Any] = {}
    for _, raw in chain:
        merged = _merge(merged, raw)
    try:
        params = Params.model_validate(merged)
    except ValidationError as exc:
        raise ParamsError(format_validation_error(exc, chain)) from None
    if params.data.source == "files" and params.data.transactions is None:
        raise ParamsError(
            f"{_display(chain[-1][0])}: key 'data.transactions': required when data.source is "
            "'files' (give its path and column mapping)"
        )
    for table in TABLES:
        src = getattr(params.data, table)
        if src is None:
            continue
        known = set(CANONICAL_COLUMNS[table]["required"]) | set(
            CANONICAL_COLUMNS[table]["optional"]
        )
        for canonical in src.columns:
            if canonical not in known:
                where = _display(_declared_in(("data", table, "columns", canonical), chain))
                raise ParamsError(
                    f"{where}: key 'data.{table}.columns.{canonical}': not a canonical column of "
                    f"{table} (known: {', '.join(sorted(known))})"
                )
    return params


def chapter_parameters(params: Params, slug: str) -> dict[str, Any]:
    """The parameters a chapter notebook receives from ``chapters.<slug>`` (JSON-able values)."""
    block = getattr(params.chapters, slug, None)
    return {} if block is None else block.model_dump(mode="json")


def is_slug(text: str) -> bool:
    """Whether ``text`` is a valid client slug."""
    return re.fullmatch(r"[a-z0-9][a-z0-9_-]*", text) is not None
