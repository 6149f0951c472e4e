"""Seeded demo CRM data with planted, documented ground truth and realistic dirt.

:func:`generate_demo` writes ``transactions.csv``, ``customers.csv``, ``feedback.csv``,
``events.csv`` and ``ground_truth.json``. Everything is drawn from one
``numpy.random.default_rng(seed)`` and vectorised (no Python loop over lines, orders or
customers), so the same arguments give byte-identical files and 1M lines take a few seconds.

Planted truth (each block of ``ground_truth.json`` has a ``description`` saying how it was made
and what a chapter should recover):

- **segments** -- four latent segments: ``vip`` (8 %), ``loyal`` (21 %), ``occasional`` (40 %)
  and ``one_off`` (31 %, bargain buyers who buy once), each with its own purchase rate, dropout,
  basket size, order value, age and income. Purchase rates differ about 7x (vip / loyal) and 2.3x
  (loyal / occasional) with little spread within a segment; occasional customers lapse (base
  dropout p0 ~ Beta(2, 4), mean 1/3, after each repeat purchase) while the others rarely drop
  out; target order values are 380, 130, 80 and 5 GBP; all vip, loyal and one-off customers and
  90 % of occasional ones are existing customers with the full period of history (the other
  occasional ones are the new customers). So the segments lie far apart in log RFM space: on the
  default 5,000-customer demo (and with seeds 1 and 7) k-means on standardised log1p recency /
  frequency / net monetary has its highest silhouette at k = 4 (about 0.63, next best about
  0.61), and those clusters recover the segments with an adjusted Rand index of about 0.82.
  ``customer_segment`` maps every canonical customer id to its segment.
- **bgnbd** -- within each segment, BG/NBD with time unit weeks: lambda ~ Gamma(shape r, rate
  alpha), base dropout p0 ~ Beta(a, b) shifted by the churn drivers; purchases form a Poisson
  process from the first purchase, and after each repeat purchase the customer drops out with
  probability p. One scale ``s`` multiplies every lambda to reach the requested number of lines
  (effective rate alpha / s); when s > 2 every p is also multiplied by 2 / s (the only way to give
  few customers very many lines). First purchases: a per-segment share of existing customers in
  the first 12 weeks, the others arriving over the whole period with growing intensity.
  **gamma_gamma** -- each order's target value is Gamma(shape p, rate nu) with
  nu ~ Gamma(shape q, rate gamma) per customer; the basket's lines realise it up to rounding.
- **seasonality** -- purchase times are drawn on an *operational* clock and mapped to calendar
  days (time warping, which keeps the BG/NBD structure): a day's length on that clock is a
  weekday factor (Saturday peak) x a yearly sinusoid (amplitude 0.25, peak late November) x a
  linear trend (the end of the period 1.5x busier than the start).
- **product_pairs** -- 220 products in 10 categories, Zipf popularity within price tiers; four
  planted pairs (A, B): when A is in a basket, B is added with probability 0.5-0.65. Their
  support, confidence and lift over orders (measured on the clean purchase lines, lift far above
  2) are recorded.
- **taste** -- every customer has two favourite categories; 60 % of their lines are drawn within
  one of them (same price tier, by popularity), so past categories predict the next products and
  a recommender can beat popularity.
- **churn** -- traits: logit(p) is raised by being a serial returner (12 % of customers, who
  return about 7 % of their lines), by preferring the web channel and by low latent
  satisfaction z (which also lowers CSAT);
  experience: the order after which a customer drops out went wrong, so it is sent back whole
  (half of them) or brings a complaint (the other half), against 1 % each for other orders. The
  traits act from the first purchase (those they push out leave early), so among customers still
  active at a cutoff the recent returns and complaints are the visible drivers; gender and
  region have no effect.
- **satisfaction** -- CSAT 1-5 = round(3.7 + 0.8 z + type effect + channel effect + noise):
  complaints score 1.6 lower than reviews and app orders 0.5 lower than web, and a complaint
  after a bad experience 1 lower again; the texts use terms of their score band ("late
  delivery", "great quality", ...).
- **identity** -- the second accounts (see dirt) as {canonical_id, duplicate_id} pairs.
- **pii_sentinels** -- three customers with unmistakable sentinel name, e-mail, phone and address
  (they have transactions and feedback), so tests can grep every output for them.

Planted dirt (``dirt=True``; a dirty line has exactly one kind, so the recorded counts are exact):

- ~0.5 % exact duplicate transaction lines (extra copies of clean lines);
- ~2 % of customers have a second account: another customers.csv row whose e-mail differs in case
  or surrounding spaces and/or whose phone is formatted differently (``07700 900123``,
  ``0044 ...``, ``+44 (0) ...``), with the person's later orders under the second id; no two
  different people share a normalised e-mail (trimmed, lower case) or phone (last 10 digits);
- ~1 % lines with an empty customer id;
- ~0.2 % zero and ~0.2 % negative unit prices;
- ~1 % product names differing only in case and whitespace from the product's name;
- ~0.2 % unparseable dates (``2023-13-45``, ``31/02/2023``, ``not a date``, empty,
  ``2023-02-30 12:00:00``) and ~0.1 % dates moved 8 or more years ahead (2031 or later).

Cancellations (order id ``C`` + the original id, minus the original quantity, within two days of
the purchase) and returns (negative quantity on the original order id, 2-30 days later) make about
2 % of lines; they are business events, also present when ``dirt=False``. Feedback and events
carry no dirt.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

__all__ = ["SEGMENTS", "generate_demo"]

# ------------------------------------------------------------------------------------ constants
MIN_CUSTOMERS, MAX_CUSTOMERS = 50, 5_000_000
MIN_LINES, MAX_LINES = 500, 200_000_000
MIN_LINES_PER_CUSTOMER = 3
TIME_UNIT = "weeks"
S_FREE = 2.0  # lambda alone is scaled up to this factor; beyond it dropout is scaled down too


@dataclass(frozen=True)
class _Segment:
    """Parameters of one latent segment."""

    share: float  # share of customers
    r: float  # purchase rate lambda ~ Gamma(shape r, rate alpha), purchases per week
    alpha: float
    a: float  # base dropout probability p0 ~ Beta(a, b)
    b: float
    gg_p: float  # order value ~ Gamma(shape gg_p, rate nu), nu ~ Gamma(shape gg_q, rate gg_gamma)
    gg_q: float
    gg_gamma: float
    basket: float  # lines per order = 1 + Poisson(basket)
    cohort: float  # share of existing customers: first purchase within the first COHORT_WEEKS
    age: float  # mean age (years)
    income: float  # median yearly income (GBP)


def _gg_gamma(mean_order_value: float, p: float = 10.0, q: float = 30.0) -> float:
    """Gamma-Gamma rate ``gamma`` giving the expected order value p * gamma / (q - 1)."""
    return mean_order_value * (q - 1.0) / p


# The segments sit far apart in log RFM space: purchase rates differ about 7x (vip / loyal) and
# 2.3x (loyal / occasional) with little spread within a segment (Gamma shape r = 100, a rate CV of
# 10 %); occasional customers lapse (base dropout p0 ~ Beta(2, 4), mean 1/3, after each repeat
# purchase) while the others rarely do; target order values are 380, 130, 80 and 5 GBP; and all
# vip, loyal and one-off customers (90 % of occasional ones) are existing customers with the full
# period of history. So k-means on standardised log1p recency / frequency / monetary picks k = 4
# by silhouette (as chapter 02 does) and recovers the segments.
SEGMENT_PARAMS: dict[str, _Segment] = {
    "vip": _Segment(
        share=0.08, r=100.0, alpha=64.0, a=1.0, b=5000.0, gg_p=10.0, gg_q=30.0,
        gg_gamma=_gg_gamma(380), basket=0.8, cohort=1.0, age=48.0, income=68000.0,
    ),
    "loyal": _Segment(
        share=0.21, r=100.0, alpha=440.0, a=1.0, b=2000.0, gg_p=10.0, gg_q=30.0,
        gg_gamma=_gg_gamma(130), basket=0.5, cohort=1.0, age=44.0, income=45000.0,
    ),
    "occasional": _Segment(
        share=0.40, r=100.0, alpha=1000.0, a=2.0, b=4.0, gg_p=10.0, gg_q=30.0,
        gg_gamma=_gg_gamma(80), basket=0.44, cohort=0.9, age=38.0, income=35000.0,
    ),
    "one_off": _Segment(
        share=0.31, r=2.0, alpha=4000.0, a=8.0, b=2.0, gg_p=10.0, gg_q=30.0,
        gg_gamma=_gg_gamma(5), basket=0.2, cohort=1.0, age=32.0, income=27000.0,
    ),
}  # fmt: skip
SEGMENTS: tuple[str, ...] = tuple(SEGMENT_PARAMS)

WEEKDAY_FACTORS = (0.85, 0.85, 0.9, 0.95, 1.1, 1.25, 1.1)  # Monday .. Sunday
YEARLY_AMPLITUDE = 0.25
YEARLY_PEAK_DAY = 330  # day of year of the yearly peak (late November)
ACTIVITY_TREND = 0.5  # the operational clock runs (1 + trend) x faster at the end than the start
ACQUISITION_GROWTH = 1.0  # new-customer intensity at the end = (1 + growth) x at the start
COHORT_WEEKS = 12
HOUR_WEIGHTS = (
    1.0, 0.5, 0.3, 0.2, 0.2, 0.4, 1.0, 2.0, 3.5, 4.5, 5.0, 5.5,
    6.0, 6.0, 5.5, 5.5, 6.0, 6.5, 7.5, 8.5, 8.5, 7.0, 4.5, 2.5,
)  # fmt: skip

CHANNELS = ("web", "store", "app")
CHANNEL_SHARES = (0.45, 0.30, 0.25)
PREFERRED_CHANNEL_PROB = 0.75

RETURNER_SHARE = 0.12
RETURN_PROB = {"returner": 0.07, "other": 0.006}
CANCEL_ORDER_PROB = 0.006
CHURN_LOGIT = {"serial_returner": 1.0, "prefers_web": 0.7, "satisfaction_z": -0.6}
# Bad experiences, the reasons customers leave: the order after which a customer drops out went
# wrong, so either the goods go back whole 1-14 days later ("return") or a complaint follows 0-14
# days later ("complaint"), with the "leaving" probabilities (never both); on every other order each
# happens with probability "staying". The complaint's score is lowered by "score_effect".
BAD_EXPERIENCE: dict[str, Any] = {
    "leaving": {"return": 0.5, "complaint": 0.5},
    "staying": {"return": 0.01, "complaint": 0.01},
    "score_effect": -1.0,
}

CSAT = {
    "intercept": 3.7,
    "z": 0.8,
    "noise_sd": 0.7,
    "type": {"complaint": -1.6, "inquiry": -0.3, "review": 0.0},
    "channel": {"web": 0.0, "store": 0.3, "app": -0.5},
}
FEEDBACK_TYPE_SHARES = {"complaint": 0.2, "inquiry": 0.25, "review": 0.55}
FEEDBACK_PER_ORDER = 0.08
TEXT_TERMS = {
    "negative": [
        "late delivery", "damaged item", "poor quality", "rude staff", "refund still pending",
        "wrong size", "missing parts", "app keeps crashing",
    ],
    "neutral": [
        "okay quality", "delivery a bit slow", "average value", "fine but pricey",
        "packaging could be better", "as described",
    ],
    "positive": [
        "great quality", "fast delivery", "friendly staff", "excellent value", "easy returns",
        "love the design", "well packaged",
    ],
}  # fmt: skip

DIRT_FRACTIONS = {
    "missing_customer_id": 0.01,
    "unparseable_date": 0.002,
    "future_date": 0.001,
    "zero_price": 0.002,
    "negative_price": 0.002,
    "product_name_variant": 0.01,
    "exact_duplicate": 0.005,
}
#: Kinds of planted dirt the data layer quarantines (with default cleaning params); the others
#: (a duplicate copy, a product-name variant) leave the purchase line usable.
QUARANTINED_DIRT = (
    "missing_customer_id",
    "unparseable_date",
    "future_date",
    "zero_price",
    "negative_price",
)
DUPLICATE_ACCOUNT_SHARE = 0.02
#: Bumped whenever the generated data change; part of the demo cache key.
GENERATOR_VERSION = 6

CATALOGUE: dict[str, list[tuple[str, float]]] = {
    "Kitchen": [
        ("Espresso Machine", 149), ("Coffee Beans 1kg", 14), ("Kettle", 35), ("Toaster", 40),
        ("Mug Set", 18), ("Chef Knife", 45), ("Frying Pan", 32), ("Blender", 60),
        ("Tea Towels", 6), ("Storage Jars", 16), ("Cutting Board", 20),
    ],
    "Electronics": [
        ("Printer", 120), ("Ink Cartridge Set", 28), ("Headphones", 80), ("Phone Charger", 15),
        ("USB Cable", 5), ("Bluetooth Speaker", 55), ("Power Bank", 25), ("Smart Watch", 180),
        ("Laptop Stand", 35), ("Wireless Mouse", 22), ("HDMI Cable", 9),
    ],
    "Outdoor": [
        ("Tent 2-Person", 130), ("Sleeping Bag", 60), ("Camping Stove", 45), ("Head Torch", 18),
        ("Water Bottle", 12), ("Hiking Socks", 10), ("Rain Jacket", 85), ("Backpack 30L", 70),
        ("Picnic Blanket", 25), ("Insect Repellent", 5), ("Compass", 15),
    ],
    "Fitness": [
        ("Yoga Mat", 25), ("Yoga Block", 9), ("Dumbbell Pair", 40), ("Resistance Bands", 14),
        ("Protein Powder", 30), ("Skipping Rope", 8), ("Foam Roller", 20), ("Gym Towel", 12),
        ("Kettlebell", 35), ("Running Belt", 15), ("Exercise Bike", 350),
    ],
    "Beauty": [
        ("Face Cream", 24), ("Shampoo", 7), ("Conditioner", 7), ("Lip Balm", 3),
        ("Perfume", 65), ("Hair Dryer", 45), ("Nail Polish", 4), ("Body Lotion", 10),
        ("Sun Cream", 12), ("Razor", 18), ("Makeup Brush Set", 22),
    ],
    "Home": [
        ("Scented Candle", 14), ("Cushion", 18), ("Throw Blanket", 35), ("Photo Frame", 12),
        ("Table Lamp", 45), ("Duvet Cover", 40), ("Bath Towel", 15), ("Doormat", 18),
        ("Wall Clock", 28), ("Vase", 22), ("Rug", 95),
    ],
    "Garden": [
        ("Plant Pot", 10), ("Potting Compost", 8), ("Garden Gloves", 9), ("Pruning Shears", 22),
        ("Watering Can", 15), ("Seed Collection", 3), ("Bird Feeder", 18), ("Hose Reel", 45),
        ("Solar Lights", 25), ("Garden Chair", 60), ("Lawn Mower", 220),
    ],
    "Toys": [
        ("Building Bricks Set", 40), ("Jigsaw Puzzle", 15), ("Board Game", 28),
        ("Plush Bear", 16), ("Toy Car", 9), ("Art Set", 20), ("Doll", 22), ("Kite", 14),
        ("Water Pistol", 8), ("Science Kit", 30), ("Ride-on Scooter", 65),
    ],
    "Books & Stationery": [
        ("Novel", 9), ("Cookbook", 20), ("Notebook", 4), ("Pen Set", 12), ("Diary", 14),
        ("Colouring Book", 4), ("Atlas", 25), ("Desk Organiser", 18), ("Greeting Cards", 3),
        ("Planner", 16), ("Fountain Pen", 45),
    ],
    "Pets": [
        ("Dog Food 10kg", 35), ("Cat Food Pack", 12), ("Dog Lead", 15), ("Cat Litter", 9),
        ("Pet Bed", 40), ("Chew Toy", 4), ("Fish Flakes", 3), ("Bird Seed", 4),
        ("Pet Shampoo", 9), ("Scratching Post", 30), ("Pet Carrier", 38),
    ],
}  # fmt: skip
DELUXE_FACTOR = 1.8
N_TIERS = 10
#: Planted taste: every customer has two favourite categories, and this share of their lines is
#: drawn within a favourite category (by popularity, same price tier); the rest by popularity.
TASTE_SHARE = 0.6
TASTE_CATEGORIES = 2
ZIPF_EXPONENT = 0.7  # popularity within a price tier proportional to rank ** -0.7
LINE_SPREAD = 0.6  # the order value is split over its lines in proportion to lognormal(0, 0.6)
TIER_SHIFT = 0.8  # lines aim at unit prices exp(-0.8) x their target (quantity makes up the rest)
TIER_NOISE = 0.9  # sd of the log-price noise when picking a line's price tier
PLANTED_PAIRS = (  # (A, B, probability that B is added when A is in the basket)
    ("Espresso Machine", "Coffee Beans 1kg", 0.55),
    ("Printer", "Ink Cartridge Set", 0.6),
    ("Tent 2-Person", "Sleeping Bag", 0.5),
    ("Yoga Mat", "Yoga Block", 0.65),
)

FIRST_NAMES = (
    "Olivia Amelia Isla Ava Mia Ivy Lily Isabella Rosie Sophia Grace Freya Emily Poppy Ella "
    "Evie Charlotte Florence Sienna Alice Ruby Harper Daisy Matilda Aisha Priya Zara Maya Chloe "
    "Hannah Noah Oliver George Arthur Muhammad Leo Harry Oscar Archie Henry Theodore Freddie "
    "Jack Charlie Theo Alfie Jacob Thomas Finley Arlo William Lucas Isaac Tommy James Samuel "
    "Daniel Ravi Kwame Tariq"
).split()
LAST_NAMES = (
    "Smith Jones Taylor Brown Williams Wilson Johnson Davies Patel Wright Robinson Thompson "
    "Evans Walker White Roberts Green Hall Wood Jackson Clarke Khan Lewis Harris Martin Cooper "
    "King Lee Baker Harrison Morgan Allen James Scott Phillips Watson Davis Parker Price Bennett "
    "Young Griffiths Mitchell Kelly Cook Carter Richardson Bailey Collins Bell Shaw Murphy "
    "Miller Cox Richards Khalid Ahmed Singh Ali Chen"
).split()
STREETS = (
    "Oak Maple Station Church High Mill Park Victoria Queen King Elm Cedar Willow Meadow "
    "Orchard Chapel Bridge Manor Grove Albert Windsor Mount Springfield Highfield Green"
).split()
STREET_KINDS = ("Road", "Street", "Lane", "Avenue", "Close", "Way", "Drive", "Crescent")
REGIONS: dict[str, tuple[float, tuple[str, ...]]] = {
    "London": (0.18, ("London",)),
    "South East": (0.16, ("Brighton", "Reading", "Oxford", "Canterbury")),
    "North West": (0.15, ("Manchester", "Liverpool", "Preston", "Chester")),
    "Midlands": (0.17, ("Birmingham", "Nottingham", "Leicester", "Derby")),
    "South West": (0.12, ("Bristol", "Exeter", "Bath", "Plymouth")),
    "Scotland": (0.12, ("Glasgow", "Edinburgh", "Aberdeen", "Dundee")),
    "Wales": (0.10, ("Cardiff", "Swansea", "Newport", "Bangor")),
}
SENTINELS = (
    ("Zqxj Sentinelperson", "pii.sentinel.zqxj@example.com", "+44 7700 900999",
     "1 Sentinel Road, Testtown"),
    ("Vqpw Sentinelperson", "pii.sentinel.vqpw@example.com", "+44 7700 900998",
     "2 Sentinel Road, Testtown"),
    ("Kxzj Sentinelperson", "pii.sentinel.kxzj@example.com", "+44 7700 900997",
     "3 Sentinel Road, Testtown"),
)  # fmt: skip

_CSV = pacsv.WriteOptions(quoting_style="needed")


# ----------------------------------------------------------------------------------- helpers
def _validate(customers: int, lines: int, start_date: dt.date, years: int, seed: int) -> None:
    """Raise ValueError for arguments outside the supported range."""
    if not isinstance(customers, int | np.integer) or not (
        MIN_CUSTOMERS <= customers <= MAX_CUSTOMERS
    ):
        raise ValueError(
            f"customers must be an integer from {MIN_CUSTOMERS:,} to {MAX_CUSTOMERS:,}, "
            f"got {customers!r}"
        )
    if not isinstance(lines, int | np.integer) or not (MIN_LINES <= lines <= MAX_LINES):
        raise ValueError(
            f"lines must be an integer from {MIN_LINES:,} to {MAX_LINES:,}, got {lines!r}"
        )
    if lines < MIN_LINES_PER_CUSTOMER * customers:
        raise ValueError(
            f"lines ({lines:,}) must be at least {MIN_LINES_PER_CUSTOMER} x customers "
            f"({MIN_LINES_PER_CUSTOMER * customers:,}): every customer buys at least once"
        )
    if not isinstance(years, int | np.integer) or not (1 <= years <= 10):
        raise ValueError(f"years must be an integer from 1 to 10, got {years!r}")
    if not isinstance(start_date, dt.date) or isinstance(start_date, dt.datetime):
        raise ValueError(f"start_date must be a datetime.date, got {start_date!r}")
    if not 1990 <= start_date.year <= 2100:
        raise ValueError(f"start_date must be between 1990 and 2100, got {start_date}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _end_date(start: dt.date, years: int) -> dt.date:
    """Last day of the period: ``years`` years after ``start``, minus one day."""
    try:
        nxt = start.replace(year=start.year + years)
    except ValueError:  # 29 February
        nxt = dt.date(start.year + years, 3, 1)
    return nxt - dt.timedelta(1)


def _strings(values: np.ndarray) -> pa.Array:
    """Integers as a pyarrow string array."""
    return pc.cast(pa.array(values), pa.string())


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded numbers, e.g. ``C000123``."""
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(_strings(numbers), width, "0"), "")


def _decimal2(pence: np.ndarray) -> pa.Array:
    """Integer pence as an exact decimal(12, 2) array (written as e.g. ``12.99``)."""
    pence = np.ascontiguousarray(pence, dtype=np.int64)
    raw = np.empty((len(pence), 2), dtype=np.int64)
    raw[:, 0] = pence
    raw[:, 1] = pence >> 63
    return pa.Array.from_buffers(pa.decimal128(12, 2), len(pence), [None, pa.py_buffer(raw)])


def _take(dictionary: list[str] | pa.Array, idx: np.ndarray, null: np.ndarray | None = None):
    """``dictionary[idx]`` as a pyarrow array (null where ``null`` is True)."""
    d = dictionary if isinstance(dictionary, pa.Array) else pa.array(dictionary, pa.string())
    return d.take(pa.array(np.asarray(idx, dtype=np.int64), mask=null))


def _split_groups(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For groups of the given sizes: (group index of each item, position within its group)."""
    counts = np.asarray(counts, dtype=np.int64)
    group = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return group, np.arange(len(group)) - starts[group]


def _round(x: float, digits: int = 6) -> float:
    """A float rounded for stable JSON."""
    return float(round(float(x), digits))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


# ---------------------------------------------------------------------------------- calendar
@dataclass
class _Calendar:
    """Day-level seasonal weights and the operational clock (cumulative weight)."""

    start: dt.date
    end: dt.date
    days: int
    weights: np.ndarray  # per day, mean 1
    cum: np.ndarray  # length days + 1, cum[0] = 0, cum[days] = days

    def day_of(self, tau: np.ndarray) -> np.ndarray:
        """Calendar day index of operational times ``tau`` (days)."""
        d = np.searchsorted(self.cum, tau, side="right") - 1
        return np.clip(d, 0, self.days - 1)


def _calendar(start: dt.date, end: dt.date) -> _Calendar:
    """Weekday x yearly-sinusoid weights per day, normalised to mean 1."""
    days = (end - start).days + 1
    d = np.arange(days)
    dow = (start.weekday() + d) % 7
    doy = (start.timetuple().tm_yday - 1 + d) % 365.25
    yearly = 1.0 + YEARLY_AMPLITUDE * np.cos(2 * np.pi * (doy - (YEARLY_PEAK_DAY - 1)) / 365.25)
    trend = 1.0 + ACTIVITY_TREND * (d + 0.5) / days
    w = np.asarray(WEEKDAY_FACTORS)[dow] / np.mean(WEEKDAY_FACTORS) * yearly * trend
    w = w / w.mean()
    cum = np.concatenate([[0.0], np.cumsum(w)])
    cum[-1] = float(days)
    return _Calendar(start, end, days, w, cum)


# --------------------------------------------------------------------------------- catalogue
@dataclass
class _Catalogue:
    ids: list[str]
    names: list[str]
    categories: list[str]
    category_idx: np.ndarray
    price: np.ndarray  # pence
    tier: np.ndarray
    tier_edges: np.ndarray  # log-price edges between tiers
    by_tier: np.ndarray  # product indices sorted by tier
    cum: np.ndarray  # tier + cumulative popularity within tier, aligned with by_tier
    popularity: np.ndarray
    pairs: list[tuple[int, int, float]]


def _catalogue(rng: np.random.Generator) -> _Catalogue:
    """220 products (11 nouns x plain/Deluxe x 10 categories) with prices and popularity."""
    names, cats, base = [], [], []
    for ci, items in enumerate(CATALOGUE.values()):
        for noun, price in items:
            for deluxe in (False, True):
                names.append(f"{noun} Deluxe" if deluxe else noun)
                cats.append(ci)
                base.append(price * (DELUXE_FACTOR if deluxe else 1.0))
    n = len(names)
    jitter = np.exp(rng.normal(0.0, 0.1, n))
    price = np.maximum(np.round(np.asarray(base) * jitter * 2) * 50 - 1, 99).astype(np.int64)
    order = np.argsort(price, kind="stable")
    tier = np.empty(n, dtype=np.int64)
    tier[order] = np.arange(n) * N_TIERS // n
    lp = np.log(price / 100.0)
    edges = np.array(
        [(lp[tier == k].max() + lp[tier == k + 1].min()) / 2 for k in range(N_TIERS - 1)]
    )
    # Zipf popularity within each tier (random ranks); planted A products ranked 2nd (3rd, ...).
    rank = np.empty(n)
    for k in range(N_TIERS):
        members = np.flatnonzero(tier == k)
        rank[members] = rng.permutation(len(members)) + 1
    idx = {nm: i for i, nm in enumerate(names)}
    pairs = []
    for a, b, prob in PLANTED_PAIRS:
        ia, ib = idx[a], idx[b]
        want = 2.0 + sum(tier[j] == tier[ia] for j, _, _ in pairs)
        other = np.flatnonzero((tier == tier[ia]) & (rank == want))[0]
        rank[other], rank[ia] = rank[ia], want
        pairs.append((ia, ib, prob))
    pop = rank**-ZIPF_EXPONENT
    by_tier = np.lexsort((np.arange(n), tier))
    cum = np.empty(n)
    for k in range(N_TIERS):
        sel = by_tier[tier[by_tier] == k]
        c = np.cumsum(pop[sel])
        cum[tier[by_tier] == k] = k + c / c[-1]
    cum = np.minimum(cum, tier[by_tier] + 1.0)
    return _Catalogue(
        ids=[f"P{i + 1:04d}" for i in range(n)],
        names=names,
        categories=list(CATALOGUE),
        category_idx=np.asarray(cats),
        price=price,
        tier=tier,
        tier_edges=edges,
        by_tier=by_tier,
        cum=cum,
        popularity=pop / pop.sum(),
        pairs=pairs,
    )


def _draw_products(rng: np.random.Generator, cat: _Catalogue, tier: np.ndarray) -> np.ndarray:
    """One product per entry of ``tier``, by popularity within that tier."""
    u = tier + rng.random(len(tier))
    pos = np.searchsorted(cat.cum, u, side="left")
    return cat.by_tier[np.minimum(pos, len(cat.by_tier) - 1)]


def _dup_in_order(order: np.ndarray, prod: np.ndarray, n_products: int) -> np.ndarray:
    """Mask of lines whose product already appeared earlier in the same order."""
    key = order.astype(np.int64) * n_products + prod
    srt = np.argsort(key, kind="stable")
    ks = key[srt]
    dup = np.zeros(len(key), dtype=bool)
    dup[srt[1:]] = ks[1:] == ks[:-1]
    return dup


def _line_targets(
    rng: np.random.Generator, cat: _Catalogue, value: np.ndarray, n_lines: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split order values over their lines: (order of each line, target value, price tier)."""
    order, _ = _split_groups(n_lines)
    w = np.exp(rng.normal(0.0, LINE_SPREAD, len(order)))
    target = value[order] * w / np.bincount(order, weights=w, minlength=len(value))[order]
    noisy = np.log(target) - TIER_SHIFT + rng.normal(0.0, TIER_NOISE, len(order))
    return order, target, np.searchsorted(cat.tier_edges, noisy)


def _pilot_lines_per_order(rng: np.random.Generator, cat: _Catalogue, size: int = 4000):
    """Mean purchase lines per order of each segment, planted pair additions included."""
    out = []
    pair_of = np.full(len(cat.names), -1)
    for k, (ia, _, _) in enumerate(cat.pairs):
        pair_of[ia] = k
    add_prob = np.array([pr for _, _, pr in cat.pairs] + [0.0])
    for name in SEGMENTS:
        sp = SEGMENT_PARAMS[name]
        value = rng.gamma(sp.gg_p, 1.0 / rng.gamma(sp.gg_q, 1.0 / sp.gg_gamma, size))
        n_lines = 1 + rng.poisson(sp.basket, size)
        order, target, tier = _line_targets(rng, cat, value, n_lines)
        added = add_prob[pair_of[_draw_products(rng, cat, tier)]].sum()
        out.append((len(order) + 0.9 * added) / size)
    return np.array(out)


# -------------------------------------------------------------------------- customer process
def _expected_lines(
    s: float, lam: np.ndarray, p: np.ndarray, t_weeks: np.ndarray, per_order: np.ndarray
) -> float:
    """Expected purchase lines: sum over customers of (1 + E[X(T)]) x lines per order."""
    lam_e, p_e = lam * s, p * min(1.0, S_FREE / s)
    ex = -np.expm1(-lam_e * p_e * t_weeks) / p_e
    return float(np.sum((1.0 + ex) * per_order))


def _solve_scale(
    target: float, lam: np.ndarray, p: np.ndarray, t_weeks: np.ndarray, per_order: np.ndarray
) -> float:
    """The rate scale s whose expected number of purchase lines equals ``target``."""
    lo, hi = math.log(1e-8), math.log(1e9)
    for _ in range(32):  # ln(1e17) / 2**32: relative precision far below 1e-6
        mid = (lo + hi) / 2
        if _expected_lines(math.exp(mid), lam, p, t_weeks, per_order) < target:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


# -------------------------------------------------------------------------- text formatting
def _day_strings(cal: _Calendar, lo: int, hi: int) -> pa.Array:
    """ISO dates of day indices lo .. hi-1 (relative to the start day)."""
    base = (cal.start - dt.date(1970, 1, 1)).days
    return pc.cast(pa.array(np.arange(lo, hi, dtype=np.int32) + base, pa.date32()), pa.string())


_CLOCK: pa.Array | None = None


def _clock() -> pa.Array:
    """The 86,400 strings ``HH:MM:SS`` of one day."""
    global _CLOCK
    if _CLOCK is None:
        _CLOCK = pa.array(
            [f"{h:02d}:{mi:02d}:{s:02d}" for h in range(24) for mi in range(60) for s in range(60)]
        )
    return _CLOCK


def _timestamps(cal: _Calendar, sec: np.ndarray) -> pa.Array:
    """``YYYY-MM-DD HH:MM:SS`` strings of seconds since the start day (may be slightly negative)."""
    day = np.floor_divide(sec, 86400)
    lo, hi = int(day.min(initial=0)), int(day.max(initial=0)) + 1
    days = _day_strings(cal, lo, hi)
    return pc.binary_join_element_wise(
        days.take(pa.array(day - lo)), _clock().take(pa.array(sec - day * 86400)), " "
    )


def _dates(cal: _Calendar, day: np.ndarray) -> pa.Array:
    """``YYYY-MM-DD`` strings of day indices relative to the start day."""
    base = (cal.start - dt.date(1970, 1, 1)).days
    return pc.cast(pa.array(np.asarray(day, dtype=np.int32) + base, pa.date32()), pa.string())


def _name_variant(name: str, kind: int) -> str:
    """A spelling of ``name`` that differs only in case and whitespace (never after trimming)."""
    if kind == 1:
        return name.lower()
    if kind == 2:
        return name.upper()
    if kind == 3:
        return name.replace(" ", "  ", 1) if " " in name else name.lower() + " "
    return " " + name.swapcase()


def _plant_bad_dates(
    rng: np.random.Generator, cal: _Calendar, text: pa.Array, bad: np.ndarray
) -> pa.Array:
    """Replace dates flagged 1 by unparseable strings and 2 by the same date years later."""
    y = cal.start.year
    choices = [f"{y}-13-45", f"31/02/{y}", "not a date", None, f"{y}-02-30 12:00:00"]
    i_bad = np.flatnonzero(bad == 1)
    i_fut = np.flatnonzero(bad == 2)
    if len(i_bad):
        repl = pa.array(choices, pa.string()).take(pa.array(rng.integers(0, 5, len(i_bad))))
        mask = np.zeros(len(text), dtype=bool)
        mask[i_bad] = True
        text = pc.replace_with_mask(text, pa.array(mask), repl)
    if len(i_fut):
        # A multiple of 4 years keeps 29 February valid; at least 6 years after the end and 2031+.
        need = max(2031 - y, cal.end.year + 6 - y)
        shift = 4 * math.ceil(need / 4)
        orig = text.take(pa.array(i_fut))
        year = pc.add(pc.cast(pc.utf8_slice_codeunits(orig, 0, 4), pa.int64()), shift)
        repl = pc.binary_join_element_wise(
            pc.cast(year, pa.string()), pc.utf8_slice_codeunits(orig, 4, 100), ""
        )
        mask = np.zeros(len(text), dtype=bool)
        mask[i_fut] = True
        text = pc.replace_with_mask(text, pa.array(mask), repl)
    return text


def _email_variant(email: str, kind: int) -> str:
    """The same e-mail after a case or whitespace slip."""
    if kind == 0:
        return email.upper()
    if kind == 1:
        local, _, domain = email.partition("@")
        return ".".join(w.capitalize() for w in local.split(".")) + "@" + domain.capitalize()
    if kind == 2:
        return f"  {email} "
    return f" {email.upper()}"


def _phone_variant(national: str, kind: int) -> str:
    """The same UK mobile (10-digit national number ``7xxxxxxxxx``) in another format."""
    a, b = national[:4], national[4:]
    return (
        f"0{a} {b}",
        f"0044 {a} {b}",
        f"+44 (0) {a} {b}",
        f"+44-{a}-{b[:3]}-{b[3:]}",
        f"44{national}",
        f"(0{a}) {b[:3]} {b[3:]}",
    )[kind]


EMAIL_VARIANTS = ("upper case", "capitalised", "surrounding spaces", "leading space + upper case")
PHONE_VARIANTS = ("0 + national", "0044", "+44 (0)", "+44 with dashes", "44 no spaces", "(0...)")


# ------------------------------------------------------------------------------ measurement
def _pair_lifts(
    cat: _Catalogue, l_order: np.ndarray, l_prod: np.ndarray, n_orders: int
) -> list[dict[str, Any]]:
    """Support, confidence and lift of each planted pair over orders (clean purchase lines)."""
    out = []
    for ia, ib, prob in cat.pairs:
        has_a = np.zeros(n_orders, dtype=bool)
        has_b = np.zeros(n_orders, dtype=bool)
        has_a[l_order[l_prod == ia]] = True
        has_b[l_order[l_prod == ib]] = True
        na, nb, nab = int(has_a.sum()), int(has_b.sum()), int((has_a & has_b).sum())
        lift = nab * n_orders / (na * nb) if na and nb else None
        out.append(
            {
                "antecedent_id": cat.ids[ia],
                "antecedent_name": cat.names[ia],
                "consequent_id": cat.ids[ib],
                "consequent_name": cat.names[ib],
                "add_probability": prob,
                "orders": n_orders,
                "orders_with_antecedent": na,
                "orders_with_consequent": nb,
                "orders_with_both": nab,
                "support": _round(nab / n_orders),
                "confidence": _round(nab / na) if na else None,
                "lift": _round(lift) if lift is not None else None,
            }
        )
    return out


# --------------------------------------------------------------------------------- simulation
@dataclass
class _People:
    """Latent traits and the BG/NBD draws of the real customers (people)."""

    seg: np.ndarray
    lam0: np.ndarray  # purchases per week before scaling
    p0: np.ndarray  # Beta draw before the churn drivers
    shift: np.ndarray  # churn drivers' shift of logit(p)
    p_base: np.ndarray  # after the churn drivers, before scaling
    lam: np.ndarray  # effective rate per week
    p: np.ndarray  # effective dropout probability
    returner: np.ndarray
    pref: np.ndarray
    z: np.ndarray
    nu: np.ndarray
    basket: np.ndarray
    ret_p: np.ndarray
    tau0: np.ndarray  # first purchase, operational days
    t_weeks: np.ndarray
    n_ev: np.ndarray
    k_drop: np.ndarray
    m: np.ndarray  # repeat purchases in the period
    scale: float

    @property
    def dropped(self) -> np.ndarray:
        """Dropped out during the period (after their last observed purchase)."""
        return self.k_drop <= self.n_ev


def _people(
    rng: np.random.Generator,
    n: int,
    cal: _Calendar,
    lines: int,
    dirt: bool,
    lines_per_order: np.ndarray,
) -> _People:
    """Draw segments, traits, BG/NBD parameters and repeat counts hitting ``lines``."""
    sp = [SEGMENT_PARAMS[s] for s in SEGMENTS]
    shares = np.array([s.share for s in sp])
    seg = rng.choice(len(sp), size=n, p=shares / shares.sum())
    col = {f: np.array([getattr(s, f) for s in sp]) for f in asdict(sp[0])}
    lam0 = rng.gamma(col["r"][seg], 1.0 / col["alpha"][seg])
    p0 = np.clip(rng.beta(col["a"][seg], col["b"][seg]), 1e-6, 1 - 1e-6)
    returner = rng.random(n) < RETURNER_SHARE
    pref = rng.choice(len(CHANNELS), size=n, p=CHANNEL_SHARES)
    z = rng.standard_normal(n)
    shift = (
        CHURN_LOGIT["serial_returner"] * returner
        + CHURN_LOGIT["prefers_web"] * (pref == CHANNELS.index("web"))
        + CHURN_LOGIT["satisfaction_z"] * z
    )
    p_base = np.clip(_expit(_logit(p0) + shift), 1e-6, 0.999)
    nu = rng.gamma(col["gg_q"][seg], 1.0 / col["gg_gamma"][seg])
    basket = col["basket"][seg]
    ret_p = np.where(returner, RETURN_PROB["returner"], RETURN_PROB["other"])

    # An existing cohort shows up in the first weeks; new customers arrive with growing intensity.
    g = ACQUISITION_GROWTH
    y = (-1.0 + np.sqrt(1.0 + 2.0 * g * rng.random(n) * (1.0 + g / 2.0))) / g
    in_cohort = rng.random(n) < col["cohort"][seg]
    cohort_days = min(7.0 * COHORT_WEEKS, cal.days / 4)
    tau0 = np.where(in_cohort, rng.random(n) * cohort_days, y * cal.days)
    tau0 = np.minimum(tau0, cal.days - 1e-6)
    t_weeks = (cal.days - tau0) / 7.0

    # One scale on lambda (and, beyond S_FREE, on p) so that the expected lines hit the target.
    weights = (1.0 + lam0 * t_weeks) * (1.0 + basket)
    extra = float(np.average(ret_p, weights=weights)) + CANCEL_ORDER_PROB
    if dirt:
        extra += DIRT_FRACTIONS["exact_duplicate"]
    target = lines / (1.0 + extra)
    per_order = lines_per_order[seg]
    s = _solve_scale(target, lam0, p_base, t_weeks, per_order)
    lam = lam0 * s
    p = p_base * min(1.0, S_FREE / s)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(40):  # redraw the cheap counts until the realised size is close
        n_ev = rng.poisson(lam * t_weeks)
        k_drop = rng.geometric(p)
        err = abs(float(np.sum((1 + np.minimum(n_ev, k_drop)) * per_order)) / target - 1.0)
        if best is None or err < best[0]:
            best = (err, n_ev, k_drop)
        if err < 0.015:
            break
    assert best is not None
    _, n_ev, k_drop = best
    return _People(
        seg=seg, lam0=lam0, p0=p0, shift=shift, p_base=p_base, lam=lam, p=p, returner=returner,
        pref=pref, z=z, nu=nu, basket=basket, ret_p=ret_p, tau0=tau0, t_weeks=t_weeks, n_ev=n_ev,
        k_drop=k_drop, m=np.minimum(n_ev, k_drop), scale=s,
    )  # fmt: skip


@dataclass
class _Orders:
    """One row per order, in chronological order (index = order number - 1)."""

    cust: np.ndarray
    sec: np.ndarray  # seconds since the start day
    rank: np.ndarray  # 0 = the customer's first order
    chan: np.ndarray
    value: np.ndarray  # Gamma-Gamma target value
    bad_return: np.ndarray | None = None  # a bad experience: the whole order is sent back
    bad_complaint: np.ndarray | None = None  # a bad experience: the customer complains
    bad_return_days: np.ndarray | None = None  # days after the order that it is sent back

    @property
    def day(self) -> np.ndarray:
        """Day index of each order."""
        return self.sec // 86400


def _orders(rng: np.random.Generator, ppl: _People, cal: _Calendar) -> _Orders:
    """First purchases plus the repeat purchases, warped onto the seasonal calendar."""
    n, m = len(ppl.seg), ppl.m
    rep_cust, _ = _split_groups(m)
    # The first m of n_ev sorted uniforms: cumsum of exponentials over the total of n_ev + 1.
    ce = np.cumsum(rng.standard_exponential(len(rep_cust)))
    starts = np.cumsum(m) - m
    cum_e = ce - np.concatenate([[0.0], ce])[starts][rep_cust]
    denom = np.zeros(n)
    has = m > 0
    denom[has] = cum_e[(starts + m - 1)[has]]
    denom += rng.gamma(ppl.n_ev - m + 1.0)
    frac = cum_e / denom[rep_cust]
    cust = np.concatenate([np.arange(n), rep_cust])
    tau = np.concatenate([ppl.tau0, ppl.tau0[rep_cust] + frac * (cal.days - ppl.tau0[rep_cust])])
    n_orders = len(cust)
    hour = rng.choice(24, size=n_orders, p=np.asarray(HOUR_WEIGHTS) / sum(HOUR_WEIGHTS))
    sec = cal.day_of(tau) * 86400 + hour * 3600 + rng.integers(0, 3600, n_orders)
    srt = np.lexsort((cust, sec))
    cust, sec = cust[srt], sec[srt].astype(np.int64)
    by_cust = np.lexsort((sec, cust))
    rank = np.empty(n_orders, dtype=np.int64)
    rank[by_cust] = _split_groups(np.bincount(cust, minlength=n))[1]
    other = (ppl.pref[cust] + rng.integers(1, len(CHANNELS), n_orders)) % len(CHANNELS)
    chan = np.where(rng.random(n_orders) < PREFERRED_CHANNEL_PROB, ppl.pref[cust], other)
    gg_p = np.array([SEGMENT_PARAMS[s].gg_p for s in SEGMENTS])[ppl.seg[cust]]
    value = rng.gamma(gg_p, 1.0 / ppl.nu[cust])
    return _Orders(cust=cust, sec=sec, rank=rank, chan=chan, value=value)


def _bad_experience(xrng: np.random.Generator, ppl: _People, od: _Orders) -> None:
    """Mark the orders with a bad experience: likely the one after which the customer drops out.

    Drawn after the dropout (from its own stream), so the BG/NBD structure is untouched; by Bayes'
    rule this is the same as a bad experience raising the odds of leaving after that order
    (about leaving / staying times, with the customer's own dropout p as the base).
    """
    leaving = ppl.dropped[od.cust] & (od.rank == ppl.m[od.cust])
    lv, st = BAD_EXPERIENCE["leaving"], BAD_EXPERIENCE["staying"]
    u = xrng.random(len(od.cust))
    p_ret = np.where(leaving, lv["return"], st["return"])
    p_com = np.where(leaving, lv["complaint"], st["complaint"])
    od.bad_return = u < p_ret
    od.bad_return_days = xrng.integers(1, 15, len(od.cust))  # sent back promptly
    od.bad_complaint = (u >= p_ret) & (u < p_ret + p_com)


@dataclass
class _Lines:
    """Clean purchase lines, grouped by order."""

    order: np.ndarray
    prod: np.ndarray
    qty: np.ndarray
    seq: np.ndarray  # position within the order


def _favourites(trng: np.random.Generator, n_people: int, n_cat: int) -> np.ndarray:
    """Each person's ``TASTE_CATEGORIES`` distinct favourite categories, shape (people, k)."""
    keys = trng.random((n_people, n_cat))
    return np.argsort(keys, axis=1)[:, :TASTE_CATEGORIES]


def _apply_taste(
    rng: np.random.Generator,
    cat: _Catalogue,
    n_people: int,
    cust: np.ndarray,
    order: np.ndarray,
    tier: np.ndarray,
    prod: np.ndarray,
) -> np.ndarray:
    """Redraw ``TASTE_SHARE`` of the lines within one of the customer's favourite categories.

    A spawned stream makes the draws, so the main stream (and every later draw of the generator)
    is unchanged. A line keeps its product when its tier has no product of the chosen category or
    when the redraw repeats a product already in the order.
    """
    trng = rng.spawn(1)[0]
    n_prod, n_cat = len(cat.names), len(cat.categories)
    fav = _favourites(trng, n_people, n_cat)
    taste = trng.random(len(prod)) < TASTE_SHARE
    g = fav[cust, trng.integers(0, TASTE_CATEGORIES, len(prod))] if len(prod) else cust
    u = trng.random(len(prod))
    # products grouped by (tier, category), cumulative popularity within each group
    group = cat.tier * n_cat + cat.category_idx
    members = np.lexsort((np.arange(n_prod), group))
    gsorted = group[members]
    pop = cat.popularity[members]
    starts = np.searchsorted(gsorted, np.arange(N_TIERS * n_cat), side="left")
    ends = np.searchsorted(gsorted, np.arange(N_TIERS * n_cat), side="right")
    cum = np.cumsum(pop)
    before = np.concatenate([[0.0], cum])
    want = tier * n_cat + g
    lo, hi = starts[want], ends[want]
    ok = taste & (hi > lo)
    total = before[hi[ok]] - before[lo[ok]]
    target = before[lo[ok]] + u[ok] * total
    pos = np.minimum(np.searchsorted(cum, target, side="right"), hi[ok] - 1)
    out = prod.copy()
    out[ok] = members[np.maximum(pos, lo[ok])]
    dup = _dup_in_order(order, out, n_prod)
    out[dup] = prod[dup]
    return out


def _lines(rng: np.random.Generator, ppl: _People, od: _Orders, cat: _Catalogue) -> _Lines:
    """Baskets: lines priced around the order's target value, plus the planted pairs."""
    n_orders, n_prod = len(od.cust), len(cat.names)
    n_lines = 1 + rng.poisson(ppl.basket[od.cust])
    order, target, tier = _line_targets(rng, cat, od.value, n_lines)
    prod = _draw_products(rng, cat, tier)
    for _ in range(4):  # redraw products already in the basket
        dup = _dup_in_order(order, prod, n_prod)
        if not dup.any():
            break
        prod[dup] = _draw_products(rng, cat, tier[dup])
    prod = _apply_taste(rng, cat, len(ppl.seg), od.cust[order], order, tier, prod)
    keep = ~_dup_in_order(order, prod, n_prod)
    order, prod, target = order[keep], prod[keep], target[keep]
    units = target / (cat.price[prod] / 100.0)  # stochastic rounding keeps values unbiased
    qty = np.clip(np.floor(units + rng.random(len(units))), 1, 24).astype(np.int64)
    pair_of = np.full(n_prod, -1)
    for k, (ia, _, _) in enumerate(cat.pairs):
        pair_of[ia] = k
    pk = pair_of[prod]
    add_prob = np.array([pr for _, _, pr in cat.pairs])
    hit = (pk >= 0) & (rng.random(len(pk)) < add_prob[np.maximum(pk, 0)])
    added = np.array([ib for _, ib, _ in cat.pairs])[pk[hit]]
    order = np.concatenate([order, order[hit]])
    prod = np.concatenate([prod, added])
    qty = np.concatenate([qty, np.ones(len(added), dtype=np.int64)])
    keep = ~_dup_in_order(order, prod, n_prod)  # B already in the basket: nothing to add
    srt = np.argsort(order[keep], kind="stable")
    order, prod, qty = order[keep][srt], prod[keep][srt], qty[keep][srt]
    seq = _split_groups(np.bincount(order, minlength=n_orders))[1]
    return _Lines(order=order, prod=prod, qty=qty, seq=seq)


@dataclass
class _Accounts:
    """Customer accounts: one per person (0..n-1) plus second accounts (n..)."""

    ids: pa.Array  # account -> customer id string
    person: np.ndarray  # account -> person
    signup: np.ndarray  # account -> signup day index
    dup_persons: np.ndarray  # persons with a second account (account n + k for the k-th)
    evidence: np.ndarray  # per second account: 0 e-mail + phone, 1 e-mail only, 2 phone only
    sentinels: np.ndarray  # persons carrying the PII sentinels
    number: np.ndarray  # account -> number in its id (ids sort like numbers)
    order_acct: np.ndarray  # order -> account


def _accounts(
    rng: np.random.Generator, ppl: _People, od: _Orders, cal: _Calendar, dirt: bool
) -> _Accounts:
    """Pick the sentinel people and the people with a second account; number the accounts."""
    n = len(ppl.seg)
    n_ord = 1 + ppl.m
    eligible = np.flatnonzero(n_ord >= 2)
    if len(eligible) < len(SENTINELS):
        eligible = np.arange(n)
    sentinels = np.sort(rng.choice(eligible, size=len(SENTINELS), replace=False))
    dup_persons = np.zeros(0, dtype=np.int64)
    if dirt:
        cand = np.setdiff1d(np.flatnonzero(n_ord >= 2), sentinels)
        k = min(len(cand), int(round(DUPLICATE_ACCOUNT_SHARE * n)))
        dup_persons = np.sort(rng.choice(cand, size=k, replace=False))
    n_dup = len(dup_persons)
    dup_of = np.full(n, -1)
    dup_of[dup_persons] = np.arange(n_dup)
    # The second account takes the person's orders from a random repeat order onwards.
    switch = np.zeros(n, dtype=np.int64)
    switch[dup_persons] = 1 + (rng.random(n_dup) * (n_ord[dup_persons] - 1)).astype(np.int64)
    on_dup = (dup_of[od.cust] >= 0) & (od.rank >= switch[od.cust])
    order_acct = np.where(on_dup, n + dup_of[od.cust], od.cust)

    day = od.day
    first = np.full(n, cal.days, dtype=np.int64)
    first[od.cust[od.rank == 0]] = day[od.rank == 0]
    signup = first - np.floor(rng.exponential(20.0, n)).astype(np.int64)
    dup_first = np.full(n, cal.days, dtype=np.int64)
    who, at = np.unique(od.cust[on_dup], return_index=True)  # orders are chronological
    dup_first[who] = day[on_dup][at]
    dup_signup = np.maximum(dup_first[dup_persons] - rng.integers(0, 4, n_dup), signup[dup_persons])
    acct_signup = np.concatenate([signup, dup_signup])
    is_dup = np.concatenate([np.zeros(n, dtype=bool), np.ones(n_dup, dtype=bool)])
    # Ids follow signup order, so a second account always has the larger id.
    ranked = np.lexsort((rng.random(n + n_dup), is_dup, acct_signup))
    number = np.empty(n + n_dup, dtype=np.int64)
    number[ranked] = np.arange(1, n + n_dup + 1)
    width = max(6, len(str(n + n_dup)))
    evidence = rng.choice(3, size=n_dup, p=[0.5, 0.25, 0.25])
    return _Accounts(
        ids=_ids("C", number, width),
        number=number,
        person=np.concatenate([np.arange(n), dup_persons]),
        signup=acct_signup,
        dup_persons=dup_persons,
        evidence=evidence,
        sentinels=sentinels,
        order_acct=order_acct,
    )


# ------------------------------------------------------------------------------------ writing
def _write_transactions(
    rng: np.random.Generator,
    out_dir: Path,
    cal: _Calendar,
    cat: _Catalogue,
    ppl: _People,
    od: _Orders,
    ln: _Lines,
    acc: _Accounts,
    dirt: bool,
) -> dict[str, Any]:
    """Add returns, cancellations and dirt to the clean lines and write transactions.csv."""
    n_p = len(ln.order)
    n_prod = len(cat.names)
    price = cat.price[ln.prod]
    sec = od.sec[ln.order]
    end_sec = cal.days * 86400 - 1
    cancelled_order = rng.random(len(od.cust)) < CANCEL_ORDER_PROB
    cancelled = cancelled_order[ln.order]
    returned = rng.random(n_p) < ppl.ret_p[od.cust[ln.order]]
    c_sec = sec + rng.integers(3600, 48 * 3600, len(od.cust))[ln.order]  # one time per order
    r_sec = sec + rng.integers(2 * 86400, 30 * 86400, n_p)
    if od.bad_return is not None:  # a bad experience: the whole order goes back, promptly
        sent_back = od.bad_return[ln.order]
        returned |= sent_back
        r_sec = np.where(sent_back, sec + od.bad_return_days[ln.order] * 86400, r_sec)
    returned &= ~cancelled
    cancelled &= c_sec <= end_sec  # not yet cancelled or returned by the end of the period
    returned &= r_sec <= end_sec
    c_idx, r_idx = np.flatnonzero(cancelled), np.flatnonzero(returned)
    c_sec, r_sec = c_sec[c_idx], r_sec[r_idx]
    r_qty = -(1 + (rng.random(len(r_idx)) * ln.qty[r_idx]).astype(np.int64))

    # Dirt: one uniform per line picks at most one kind, so every dirty line has exactly one.
    kinds = list(DIRT_FRACTIONS)
    kind = np.full(n_p, -1, dtype=np.int64)
    on_dup_acct = acc.order_acct[ln.order] >= len(ppl.seg)
    if dirt:
        sentinel = np.isin(od.cust[ln.order], acc.sentinels)  # keep their lines findable
        ok = ~cancelled & ~returned & ~on_dup_acct & ~sentinel
        k = np.searchsorted(np.cumsum(list(DIRT_FRACTIONS.values())), rng.random(n_p), "right")
        kind = np.where(ok & (k < len(kinds)), k, -1)
    sel = {name: np.flatnonzero(kind == i) for i, name in enumerate(kinds)}
    cust = acc.order_acct[ln.order].copy()
    cust[sel["missing_customer_id"]] = -1
    t_price = price.copy()
    t_price[sel["zero_price"]] = 0
    t_price[sel["negative_price"]] *= -1
    variant = np.zeros(n_p, dtype=np.int64)
    variant[sel["product_name_variant"]] = 1 + rng.integers(0, 4, len(sel["product_name_variant"]))
    name = ln.prod + n_prod * variant
    bad = np.zeros(n_p, dtype=np.int64)
    bad[sel["unparseable_date"]] = 1
    bad[sel["future_date"]] = 2
    d_idx = sel["exact_duplicate"]

    # Rows: purchases, returns, cancellations, exact copies; then chronological order.
    src = np.concatenate([np.arange(n_p), r_idx, c_idx, d_idx])
    kind_row = np.repeat(np.arange(4), [n_p, len(r_idx), len(c_idx), len(d_idx)])
    row_sec = np.concatenate([sec, r_sec, c_sec, sec[d_idx]])
    row_cust = np.concatenate([cust, cust[r_idx], cust[c_idx], cust[d_idx]])
    row_qty = np.concatenate([ln.qty, r_qty, -ln.qty[c_idx], ln.qty[d_idx]])
    row_price = np.concatenate([t_price, price[r_idx], price[c_idx], t_price[d_idx]])
    row_name = np.concatenate([name, ln.prod[r_idx], ln.prod[c_idx], name[d_idx]])
    row_bad = np.concatenate([bad, np.zeros(len(r_idx) + len(c_idx), np.int64), bad[d_idx]])
    # Chronological; ties keep the input order (by order and line, then returns, cancellations
    # and copies), so the sort is deterministic.
    srt = np.argsort(row_sec, kind="stable")
    src, kind_row = src[srt], kind_row[srt]
    row_order, row_prod = ln.order[src], ln.prod[src]

    o_width = max(7, len(str(len(od.cust))))
    order_id = pc.binary_join_element_wise(
        _take(["O", "CO"], (kind_row == 2).astype(np.int64)),
        pc.utf8_lpad(_strings(row_order + 1), o_width, "0"),
        "",
    )
    when = _plant_bad_dates(rng, cal, _timestamps(cal, row_sec[srt]), row_bad[srt])
    names = cat.names + [_name_variant(nm, v) for v in (1, 2, 3, 4) for nm in cat.names]
    row_cust = row_cust[srt]
    table = pa.table(
        {
            "customer_id": acc.ids.take(pa.array(np.maximum(row_cust, 0), mask=row_cust < 0)),
            "order_id": order_id,
            "order_date": when,
            "product_id": _take(cat.ids, row_prod),
            "product_name": _take(names, row_name[srt]),
            "category": _take(cat.categories, cat.category_idx[row_prod]),
            "quantity": pa.array(row_qty[srt], pa.int64()),
            "unit_price": _decimal2(row_price[srt]),
            "channel": _take(list(CHANNELS), od.chan[row_order]),
        }
    )
    pacsv.write_csv(table, out_dir / "transactions.csv", _CSV)
    counts = {name: int(len(idx)) for name, idx in sel.items()}
    counts["cancellation_lines"] = int(len(c_idx))
    counts["return_lines"] = int(len(r_idx))
    sent_back = od.bad_return[ln.order[r_idx]] if od.bad_return is not None else []
    counts["sent_back_lines"] = int(np.sum(sent_back))
    counts["lines_under_duplicate_id"] = int(on_dup_acct.sum())
    variants_used = {names[i] for i in np.unique(name[variant > 0])}
    return {
        "rows": int(table.num_rows),
        "counts": counts,
        "cancelled_orders": int(len(np.unique(ln.order[c_idx]))),
        "orders_under_duplicate_id": int((acc.order_acct >= len(ppl.seg)).sum()),
        "rows_under_duplicate_id": int((row_cust >= len(ppl.seg)).sum()),
        "product_name_variant_spellings": len(variants_used),
        "returned_by_customer": np.bincount(od.cust[ln.order[r_idx]], minlength=len(ppl.seg)),
        "sent_back_by_customer": np.bincount(
            od.cust[ln.order[r_idx]],
            weights=od.bad_return[ln.order[r_idx]] if od.bad_return is not None else None,
            minlength=len(ppl.seg),
        ).astype(np.int64),
        "lines_by_customer": np.bincount(od.cust[ln.order], minlength=len(ppl.seg)),
        # purchase lines the data layer keeps (the other kinds of dirt are quarantined)
        "line_kept": ~np.isin(kind, [kinds.index(k) for k in QUARANTINED_DIRT]),
    }


def _write_customers(
    rng: np.random.Generator, out_dir: Path, cal: _Calendar, ppl: _People, acc: _Accounts
) -> dict[str, Any]:
    """Write customers.csv (people, then second accounts with e-mail / phone variants)."""
    n, n_dup = len(ppl.seg), len(acc.dup_persons)
    sp = [SEGMENT_PARAMS[s] for s in SEGMENTS]
    gender = rng.choice(3, size=n, p=[0.5, 0.47, 0.03])
    reg_names = list(REGIONS)
    reg_p = np.array([REGIONS[r][0] for r in reg_names])
    region = rng.choice(len(reg_names), size=n, p=reg_p / reg_p.sum())
    towns = [t for r in reg_names for t in REGIONS[r][1]]
    n_towns = np.array([len(REGIONS[r][1]) for r in reg_names])
    town = (np.cumsum(n_towns) - n_towns)[region] + (rng.random(n) * n_towns[region]).astype(int)
    age = np.clip(rng.normal(np.array([s.age for s in sp])[ppl.seg], 12.0), 18.0, 90.0)
    birth = -np.floor(age * 365.25).astype(np.int64) - rng.integers(0, 365, n)
    income = (
        np.round(
            np.exp(rng.normal(np.log(np.array([s.income for s in sp])[ppl.seg]), 0.45)) / 100
        ).astype(np.int64)
        * 100
    )
    first = _take(FIRST_NAMES, rng.integers(0, len(FIRST_NAMES), n))
    last = _take(LAST_NAMES, rng.integers(0, len(LAST_NAMES), n))
    national = _strings(7_100_000_000 + rng.choice(600_000_000, size=n, replace=False))
    house = _strings(rng.integers(1, 250, n))
    street = _take(STREETS, rng.integers(0, len(STREETS), n))
    kind = _take(list(STREET_KINDS), rng.integers(0, len(STREET_KINDS), n))

    person_ids = acc.ids.slice(0, n)
    number = pc.utf8_ltrim(pc.utf8_slice_codeunits(person_ids, 1, 100), "0")
    name = pc.binary_join_element_wise(first, last, " ")
    email = pc.binary_join_element_wise(
        pc.utf8_lower(first), ".", pc.utf8_lower(last), number, "@example.com", ""
    )
    phone = pc.binary_join_element_wise(
        "+44 ",
        pc.utf8_slice_codeunits(national, 0, 4),
        " ",
        pc.utf8_slice_codeunits(national, 4, 10),
        "",
    )
    address = pc.binary_join_element_wise(
        house, " ", street, " ", kind, ", ", _take(towns, town), ""
    )
    mask = np.zeros(n, dtype=bool)
    mask[acc.sentinels] = True
    cols = [name, email, phone, address]
    for j in range(4):
        repl = pa.array([SENTINELS[i][j] for i in range(len(acc.sentinels))], pa.string())
        cols[j] = pc.replace_with_mask(cols[j], pa.array(mask), repl)
    name, email, phone, address = cols

    # Second accounts: same person, e-mail and/or phone written differently (or left empty).
    dp = acc.dup_persons
    e_kind = rng.integers(0, len(EMAIL_VARIANTS), n_dup)
    p_kind = rng.integers(0, len(PHONE_VARIANTS), n_dup)
    d_email = email.take(pa.array(dp)).to_pylist()
    d_nat = national.take(pa.array(dp)).to_pylist()
    dup_email = [
        None if ev == 2 else _email_variant(e, int(k))
        for e, k, ev in zip(d_email, e_kind, acc.evidence, strict=True)
    ]
    dup_phone = [
        None if ev == 1 else _phone_variant(ph, int(k))
        for ph, k, ev in zip(d_nat, p_kind, acc.evidence, strict=True)
    ]
    rows = np.argsort(acc.number)  # accounts in id order
    person = acc.person[rows]
    pidx = pa.array(person)
    table = pa.table(
        {
            "customer_id": acc.ids.take(pa.array(rows)),
            "signup_date": _dates(cal, acc.signup[rows]),
            "birth_date": _dates(cal, birth[person]),
            "gender": _take(["F", "M", "X"], gender[person]),
            "region": _take(reg_names, region[person]),
            "income": pa.array(income[person], pa.int64()),
            "name": name.take(pidx),
            "email": _take(pa.concat_arrays([email, pa.array(dup_email, pa.string())]), rows),
            "phone": _take(pa.concat_arrays([phone, pa.array(dup_phone, pa.string())]), rows),
            "address": address.take(pidx),
        }
    )
    pacsv.write_csv(table, out_dir / "customers.csv", _CSV)

    ids = acc.ids.to_pylist()
    evidence_names = ("email+phone", "email", "phone")
    pairs = [
        {
            "canonical_id": ids[int(person)],
            "duplicate_id": ids[n + k],
            "evidence": evidence_names[int(acc.evidence[k])],
            "email_variant": None if acc.evidence[k] == 2 else EMAIL_VARIANTS[int(e_kind[k])],
            "phone_variant": None if acc.evidence[k] == 1 else PHONE_VARIANTS[int(p_kind[k])],
        }
        for k, person in enumerate(dp)
    ]
    sentinels = [
        {
            "customer_id": ids[int(person)],
            "segment": SEGMENTS[int(ppl.seg[person])],
            "name": SENTINELS[i][0],
            "email": SENTINELS[i][1],
            "phone": SENTINELS[i][2],
            "address": SENTINELS[i][3],
        }
        for i, person in enumerate(acc.sentinels)
    ]
    return {
        "rows": int(table.num_rows),
        "identity_pairs": sorted(pairs, key=lambda d: d["canonical_id"]),
        "sentinels": sentinels,
        "gender": gender,
        "region": region,
        "region_names": reg_names,
    }


def _band_texts() -> tuple[list[str], np.ndarray, np.ndarray]:
    """All feedback texts, with the offset and count of each score band's texts."""
    texts, counts = [], []
    for band in ("negative", "neutral", "positive"):
        terms = TEXT_TERMS[band]
        mine = [t.capitalize() + "." for t in terms]
        mine += [f"{a.capitalize()}, {b}." for a in terms for b in terms if a != b]
        texts += mine
        counts.append(len(mine))
    c = np.array(counts)
    return texts, np.cumsum(c) - c, c


def _write_feedback(
    rng: np.random.Generator,
    out_dir: Path,
    cal: _Calendar,
    ppl: _People,
    od: _Orders,
    acc: _Accounts,
) -> dict[str, Any]:
    """Write feedback.csv: CSAT after some orders, driven by latent satisfaction, type, channel.

    Orders with a bad experience (see _bad_experience) also get a complaint with probability
    BAD_EXPERIENCE["complaint"] (drawn from a spawned stream, so the other rows stay as they were),
    and every row about such an order scores BAD_EXPERIENCE["score_effect"] lower.
    """
    pick = rng.random(len(od.cust)) < FEEDBACK_PER_ORDER
    pick |= np.isin(od.cust, acc.sentinels) & (od.rank == 0)
    idx = np.flatnonzero(pick)
    k = len(idx)
    offset = rng.integers(0, 15, k)
    types = list(FEEDBACK_TYPE_SHARES)
    ftype = rng.choice(len(types), size=k, p=list(FEEDBACK_TYPE_SHARES.values()))
    noise = rng.normal(0.0, CSAT["noise_sd"], k)
    text_u = rng.random(k)
    if od.bad_complaint is not None:
        xrng = rng.spawn(1)[0]
        extra = np.flatnonzero(od.bad_complaint & ~pick)
        e = len(extra)
        idx = np.concatenate([idx, extra])
        offset = np.concatenate([offset, xrng.integers(0, 15, e)])
        ftype = np.concatenate([ftype, np.full(e, types.index("complaint"))])
        noise = np.concatenate([noise, xrng.normal(0.0, CSAT["noise_sd"], e)])
        text_u = np.concatenate([text_u, xrng.random(e)])
        k += e
    bad = od.bad_complaint[idx] if od.bad_complaint is not None else np.zeros(k, dtype=bool)
    ftype = np.where(bad, types.index("complaint"), ftype)  # the bad experience's complaint
    day = np.minimum(od.day[idx] + offset, cal.days - 1)
    chan = od.chan[idx]
    cust = od.cust[idx]
    type_eff = np.array([CSAT["type"][t] for t in types])
    chan_eff = np.array([CSAT["channel"][c] for c in CHANNELS])
    latent = (
        CSAT["intercept"]
        + CSAT["z"] * ppl.z[cust]
        + type_eff[ftype]
        + chan_eff[chan]
        + BAD_EXPERIENCE["score_effect"] * bad
        + noise
    )
    score = np.clip(np.rint(latent), 1, 5).astype(np.int64)
    band = np.where(score <= 2, 0, np.where(score == 3, 1, 2))
    texts, off, cnt = _band_texts()
    text_idx = off[band] + (text_u * cnt[band]).astype(np.int64)
    # Two identical rows (same account, day, score, channel, type and text) would be an exact
    # duplicate that nobody planted: keep the first.
    key = acc.order_acct[idx]
    for col, size in ((day, cal.days), (score, 6), (chan, 3), (ftype, 3), (text_idx, len(texts))):
        key = key * size + col
    first = np.sort(np.unique(key, return_index=True)[1])
    idx, day, ftype, chan, cust, score, text_idx, band, bad = (
        a[first] for a in (idx, day, ftype, chan, cust, score, text_idx, band, bad)
    )
    k = len(idx)
    srt = np.lexsort((idx, day))
    table = pa.table(
        {
            "customer_id": acc.ids.take(pa.array(acc.order_acct[idx][srt])),
            "date": _dates(cal, day[srt]),
            "score": pa.array(score[srt], pa.int64()),
            "channel": _take(list(CHANNELS), chan[srt]),
            "type": _take(types, ftype[srt]),
            "text": _take(texts, text_idx[srt]),
        }
    )
    pacsv.write_csv(table, out_dir / "feedback.csv", _CSV)
    drop = ppl.dropped[cust]

    def mean(mask: np.ndarray) -> float | None:
        return _round(score[mask].mean(), 4) if mask.any() else None

    return {
        "rows": k,
        "mean_score": mean(np.ones(k, dtype=bool)),
        "by_type": {t: mean(ftype == i) for i, t in enumerate(types)},
        "by_channel": {c: mean(chan == i) for i, c in enumerate(CHANNELS)},
        "by_dropped_out": {"dropped_out": mean(drop), "not_dropped_out": mean(~drop)},
        "by_bad_experience": {"bad": mean(bad), "other": mean(~bad)},
        "rows_after_bad_experience": int(bad.sum()),
        "corr_score_dropout_logit_shift": _round(np.corrcoef(score, ppl.shift[cust])[0, 1], 4)
        if k > 2
        else None,
        "corr_score_z": _round(np.corrcoef(score, ppl.z[cust])[0, 1], 4) if k > 2 else None,
    }


def _write_events(
    rng: np.random.Generator,
    out_dir: Path,
    cal: _Calendar,
    cat: _Catalogue,
    ppl: _People,
    od: _Orders,
    ln: _Lines,
    acc: _Accounts,
) -> int:
    """Write events.csv: a session (views, add to cart, purchase) per online order, e-mail opens."""
    n, n_orders = len(ppl.seg), len(od.cust)
    n_lines = np.bincount(ln.order, minlength=n_orders)
    first_line = np.searchsorted(ln.order, np.arange(n_orders))
    online = od.chan != CHANNELS.index("store")
    views = rng.poisson(0.8, n_orders)
    ev_order, pos = _split_groups(np.where(online, views + 2, 0))
    m = len(ev_order)
    etype = np.clip(pos - views[ev_order] + 1, 0, 2)  # 0 view, 1 add_to_cart, 2 purchase
    line = first_line[ev_order] + (rng.random(m) * n_lines[ev_order]).astype(np.int64)
    line = np.where(etype == 0, line, first_line[ev_order])
    prod = ln.prod[line]
    browse = (etype == 0) & (rng.random(m) < 0.3)
    prod[browse] = rng.choice(len(cat.names), size=int(browse.sum()), p=cat.popularity)
    # Seconds before the purchase: views 300 + (views left) x a per-session step (all distinct),
    # add to cart 10-299, purchase 0; so no two events of a session share a second.
    step = rng.integers(30, 240, n_orders)[ev_order]
    back = np.where(
        etype == 0,
        300 + (views[ev_order] - pos) * step,
        np.where(etype == 1, rng.integers(10, 300, m), 0),
    )
    sec = od.sec[ev_order] - back
    acct = acc.order_acct[ev_order]
    session = ev_order + 1

    n_mail = rng.poisson(0.3 * (1 + ppl.m))
    mail_person, _ = _split_groups(n_mail)
    first = np.full(n, cal.days * 86400, dtype=np.int64)
    first[od.cust[od.rank == 0]] = od.sec[od.rank == 0]
    span = cal.days * 86400 - first[mail_person]
    mail_sec = first[mail_person] + (rng.random(len(mail_person)) * span).astype(np.int64)
    keep = np.unique(mail_person * (cal.days * 86400 + 1) + mail_sec, return_index=True)[1]
    mail_person, mail_sec = mail_person[np.sort(keep)], mail_sec[np.sort(keep)]  # no repeats

    k = len(mail_person)
    all_sec = np.concatenate([sec, mail_sec])
    all_type = np.concatenate([etype, np.full(k, 3)])
    all_acct = np.concatenate([acct, mail_person])
    all_sess = np.concatenate([session, np.zeros(k, dtype=np.int64)])
    all_prod = np.concatenate([prod, np.zeros(k, dtype=np.int64)])
    srt = np.argsort(all_sec, kind="stable")  # ties keep the (deterministic) input order
    all_type, all_sess, all_prod = all_type[srt], all_sess[srt], all_prod[srt]
    is_mail = all_type == 3
    width = max(7, len(str(n_orders)))
    table = pa.table(
        {
            "customer_id": acc.ids.take(pa.array(all_acct[srt])),
            "timestamp": _timestamps(cal, all_sec[srt]),
            "event_type": _take(["view", "add_to_cart", "purchase", "email_open"], all_type),
            "product_id": _take(cat.ids, all_prod, is_mail),
            "session_id": pc.if_else(
                pa.array(is_mail), pa.scalar(None, pa.string()), _ids("S", all_sess, width)
            ),
        }
    )
    pacsv.write_csv(table, out_dir / "events.csv", _CSV)
    return int(table.num_rows)


# -------------------------------------------------------------------------------- ground truth
def _month_factors() -> dict[str, float]:
    """Mean planted yearly factor per calendar month (of a non-leap year), normalised to mean 1."""
    doy = np.arange(365)
    yearly = 1.0 + YEARLY_AMPLITUDE * np.cos(2 * np.pi * (doy - (YEARLY_PEAK_DAY - 1)) / 365.25)
    months = (np.datetime64("2023-01-01") + doy).astype("datetime64[M]").astype(int) % 12 + 1
    f = np.array([yearly[months == mo].mean() for mo in range(1, 13)])
    f = f / f.mean()
    return {f"{mo:02d}": _round(v, 4) for mo, v in zip(range(1, 13), f, strict=True)}


def _observable(
    mine: np.ndarray,
    lam_calendar: np.ndarray,
    repeats: np.ndarray,
    day_cust: np.ndarray,
    day_amt: np.ndarray,
) -> dict[str, float | None]:
    """The planted rate and order value as a purchase-day model sees them, for one segment."""
    d_mine = mine[day_cust]
    days = int(d_mine.sum())
    buyers = len(np.unique(day_cust[d_mine]))
    planted_repeats = int(repeats[mine].sum())
    if not days or not planted_repeats:
        return {"observable_repeat_share": None, "mean_lambda_observable_per_week": None,
                "mean_purchase_day_value": _round(day_amt[d_mine].mean(), 2) if days else None}  # fmt: skip
    share = (days - buyers) / planted_repeats
    return {
        "observable_repeat_share": _round(share, 6),
        "mean_lambda_observable_per_week": _round(lam_calendar[mine].mean() * share, 6),
        "mean_purchase_day_value": _round(day_amt[d_mine].mean(), 2),
    }


def _top_two_share(cat: _Catalogue, od: _Orders, ln: _Lines) -> float | None:
    """Mean share of a customer's lines in their two most-bought categories (5+ lines)."""
    n_cat = len(cat.categories)
    cust = od.cust[ln.order]
    mine = cust < 100_000
    counts = np.bincount(
        cust[mine] * n_cat + cat.category_idx[ln.prod[mine]],
        minlength=(int(cust[mine].max()) + 1) * n_cat if mine.any() else 0,
    ).reshape(-1, n_cat)
    total = counts.sum(axis=1)
    top2 = np.sort(counts, axis=1)[:, -2:].sum(axis=1)
    use = total >= 5
    return _round(float((top2[use] / total[use]).mean()), 4) if use.any() else None


def _truth(
    args: dict[str, Any],
    cal: _Calendar,
    cat: _Catalogue,
    ppl: _People,
    od: _Orders,
    ln: _Lines,
    acc: _Accounts,
    tx: dict[str, Any],
    cu: dict[str, Any],
    fb: dict[str, Any],
    n_events: int,
    pairs: list[dict[str, Any]],
    dirt: bool,
) -> dict[str, Any]:
    """The ground-truth dict written to ground_truth.json."""
    n = len(ppl.seg)
    ids = acc.ids.slice(0, n).to_pylist()
    by_id = np.argsort(acc.number[:n])  # people in id order (the JSON keeps this order)
    as_of = cal.end + dt.timedelta(1)
    n_orders = len(od.cust)
    amount = np.bincount(ln.order, weights=ln.qty * _line_price(cat, ln), minlength=n_orders) / 100
    orders_per = 1 + ppl.m
    lines_per = tx["lines_by_customer"]
    dropped = ppl.dropped
    s = ppl.scale
    p_scale = min(1.0, S_FREE / s)
    # The rate in calendar time while alive: the operational clock runs at cal.weights per day,
    # so a customer alive from their first purchase to their last one (dropped) or to the end
    # buys at lam x the mean clock weight over that window (trend and season included).
    first_day = np.full(n, cal.days, dtype=np.int64)
    np.minimum.at(first_day, od.cust, od.day)
    last_day = np.zeros(n, dtype=np.int64)
    np.maximum.at(last_day, od.cust, od.day)
    first_day = np.minimum(first_day, cal.days - 1)
    end_day = np.maximum(np.where(dropped, last_day, cal.days - 1), first_day)
    cum_w = np.concatenate([[0.0], np.cumsum(cal.weights)])
    window_w = (cum_w[end_day + 1] - cum_w[first_day]) / (end_day + 1 - first_day)
    lam_calendar = ppl.lam * window_w
    # What a purchase-day model can see: orders with at least one line the data layer keeps,
    # merged per customer and day (FHL's protocol). Per segment, the share of planted repeat
    # orders that remain distinct repeat purchase days scales the planted rate, and the value of
    # a purchase day is the kept amount of its orders.
    kept = tx["line_kept"]
    line_amt = ln.qty * _line_price(cat, ln) / 100
    kept_amt = np.bincount(ln.order[kept], weights=line_amt[kept], minlength=n_orders)
    seen = np.bincount(ln.order[kept], minlength=n_orders) > 0
    day_key = od.cust[seen].astype(np.int64) * (cal.days + 1) + od.day[seen]
    uniq_day, day_inv = np.unique(day_key, return_inverse=True)
    day_cust = uniq_day // (cal.days + 1)
    day_amt = np.bincount(day_inv, weights=kept_amt[seen], minlength=len(uniq_day))

    seg_params, seg_measured, bg_params, gg_params, gg_measured = {}, {}, {}, {}, {}
    for k, name in enumerate(SEGMENTS):
        sp = SEGMENT_PARAMS[name]
        mine = ppl.seg == k
        o_mine = ppl.seg[od.cust] == k
        cnt = int(mine.sum())
        seg_params[name] = {
            "share": sp.share,
            "lines_per_order": _round(1 + sp.basket, 4),
            "mean_age": sp.age,
            "median_income": sp.income,
        }
        seg_measured[name] = {
            "customers": cnt,
            "share": _round(cnt / n, 4),
            "mean_orders": _round(orders_per[mine].mean(), 4) if cnt else None,
            "mean_purchase_lines": _round(lines_per[mine].mean(), 4) if cnt else None,
            "mean_order_value": _round(amount[o_mine].mean(), 2) if o_mine.any() else None,
            "mean_lambda_per_week": _round(ppl.lam[mine].mean(), 6) if cnt else None,
            "mean_lambda_calendar_per_week": _round(lam_calendar[mine].mean(), 6) if cnt else None,
            "mean_dropout_p": _round(ppl.p[mine].mean(), 6) if cnt else None,
            **_observable(mine, lam_calendar, ppl.m, day_cust, day_amt),
            "dropped_out_share": _round(dropped[mine].mean(), 4) if cnt else None,
        }
        bg_params[name] = {
            "r": sp.r,
            "alpha": sp.alpha,
            "alpha_effective": _round(sp.alpha / s, 6),
            "a": sp.a,
            "b": sp.b,
            "mean_lambda_effective": _round(sp.r / sp.alpha * s, 6),
            "mean_p_beta": _round(sp.a / (sp.a + sp.b), 6),
        }
        gg_params[name] = {
            "p": sp.gg_p,
            "q": sp.gg_q,
            "gamma": sp.gg_gamma,
            "mean_order_value": _round(sp.gg_p * sp.gg_gamma / (sp.gg_q - 1), 2),
        }
        gg_measured[name] = seg_measured[name]["mean_order_value"]

    # Seasonality measured on the clean orders.
    base = (cal.start - dt.date(1970, 1, 1)).days
    o_dates = (np.datetime64("1970-01-01") + (od.day + base).astype("timedelta64[D]")).astype(
        "datetime64[M]"
    )
    months, m_counts = np.unique(o_dates, return_counts=True)
    dow = (cal.start.weekday() + od.day) % 7
    dow_share = np.bincount(dow, minlength=7) / n_orders
    weekday_names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    wf = np.asarray(WEEKDAY_FACTORS) / np.mean(WEEKDAY_FACTORS)

    # Churn drivers measured.
    # The serial returners' trait: returns other than whole orders sent back after a bad experience.
    ret_share = (tx["returned_by_customer"] - tx["sent_back_by_customer"]) / np.maximum(
        lines_per, 1
    )

    def frac(mask: np.ndarray) -> float | None:
        return _round(dropped[mask].mean(), 4) if mask.any() else None

    web = ppl.pref == CHANNELS.index("web")
    leaving = dropped[od.cust] & (od.rank == ppl.m[od.cust])
    counts = tx["counts"]
    quarantine = (
        {
            "exact_duplicate": counts["exact_duplicate"],
            "missing_customer_id": counts["missing_customer_id"],
            "unparseable_date": counts["unparseable_date"],
            "future_date": counts["future_date"],
            "zero_price": counts["zero_price"],
            "negative_price": counts["negative_price"],
        }
        if dirt
        else {}
    )
    dirt_counts = {
        k: counts[k]
        for k in (
            "exact_duplicate", "missing_customer_id", "cancellation_lines", "return_lines",
            "zero_price", "negative_price", "product_name_variant", "unparseable_date",
            "future_date", "lines_under_duplicate_id",
        )
    }  # fmt: skip
    dirt_counts["duplicate_customer_accounts"] = len(acc.dup_persons)

    return {
        "description": (
            "Planted ground truth of the demo data made by crm_helpers.demo.generate_demo: what "
            "each chapter should recover. Ids are the raw customer_id strings of the CSV files; "
            "'canonical' ids are the people's first accounts."
        ),
        "generator": {"module": "crm_helpers.demo", "version": GENERATOR_VERSION, "args": args},
        "period": {
            "description": "The demo period (inclusive) and the analysis date (the day after).",
            "start": str(cal.start),
            "end": str(cal.end),
            "as_of": str(as_of),
            "days": cal.days,
            "weeks": _round(cal.days / 7, 4),
        },
        "as_of": str(as_of),
        "n_lines_clean": len(ln.order),
        "counts": {
            "description": (
                "Sizes. n_lines = rows of transactions.csv; n_lines_clean = purchase lines "
                "before returns, cancellations and dirt; n_customers = real people "
                "(canonical ids); n_customer_rows = rows of customers.csv (people + second "
                "accounts)."
            ),
            "n_lines": tx["rows"],
            "n_lines_clean": len(ln.order),
            "n_orders": n_orders,
            "n_return_lines": counts["return_lines"],
            "n_sent_back_lines": counts["sent_back_lines"],
            "n_cancellation_lines": counts["cancellation_lines"],
            "n_cancelled_orders": tx["cancelled_orders"],
            "n_customers": n,
            "n_customer_rows": cu["rows"],
            "n_feedback": fb["rows"],
            "n_events": n_events,
        },
        "segments": {
            "description": (
                "Four latent segments drawn with the given shares; each has its own BG/NBD "
                "purchase rate and dropout (see bgnbd), share of existing (cohort) customers, "
                "basket size, Gamma-Gamma order value (see gamma_gamma), age and income. Purchase "
                "rates differ about 7x (vip / loyal) and 2.3x (loyal / occasional), with a rate "
                "CV of 10 % within a segment (Gamma shape r = 100); occasional customers lapse "
                "(base dropout p0 ~ Beta(2, 4) after each repeat purchase) while vip and loyal "
                "customers rarely drop out; target order values are 380, 130, 80 and 5 GBP; all "
                "vip, loyal and one-off customers and 90 % of occasional ones are existing "
                "customers with the full period of history. So the segments lie far apart in "
                "standardised log1p(recency, frequency, monetary) per canonical customer: k-means "
                "with k chosen by the highest silhouette over k = 2..8 picks k = 4 (silhouette "
                "about 0.63, next best about 0.61, on the default 5,000-customer demo and with "
                "seeds 1 and 7), and k-means with k = 4 recovers the segments with an adjusted "
                "Rand index >= 0.7 (about 0.8 on the default demo, with monetary as net revenue, "
                "total spend or mean order value; the separation needs the default ~20 lines per "
                "customer). customer_segment holds every canonical id's segment; 'measured' is "
                "realised on the clean purchase lines."
            ),
            "names": list(SEGMENTS),
            "params": seg_params,
            "measured": seg_measured,
            "recovery": {
                "method": "k-means, k=4, n_init=10, random_state=0, on standardised log1p "
                "recency (days from the last purchase to as_of), frequency (distinct purchase "
                "orders) and monetary (sum of quantity x unit_price over purchase lines, or that "
                "sum / frequency), over valid purchase lines (customer id present, quantity and "
                "price > 0, parseable date before as_of, no C order id) with second accounts "
                "merged into their canonical ids",
                "k_choice": "as chapter 02 does it: over the rows the data layer keeps "
                "(customer id present, parseable date before as_of, unit price > 0, exact "
                "duplicates dropped) with second accounts merged, recency from the last "
                "purchase (positive quantity), frequency = distinct purchase orders and "
                "monetary = net revenue (returns and cancellations negative, clipped at 0 "
                "before log1p); k-means (n_init=10) for k = 2..8 on the standardised log1p "
                "features; k = the highest silhouette",
                "expected_k": 4,
                "min_adjusted_rand_index": 0.7,
            },
        },
        "customer_segment": {ids[i]: SEGMENTS[ppl.seg[i]] for i in by_id},
        "bgnbd": {
            "description": (
                "BG/NBD within each segment, time unit weeks. Per customer lambda ~ Gamma(shape "
                "r, rate alpha) and a base dropout probability p0 ~ Beta(a, b); the churn drivers "
                "shift logit(p0) (see churn). The first purchase happens at the acquisition "
                "time; repeat purchases form a Poisson(lambda) process from there to the end "
                "of the period, and after each repeat purchase the customer drops out with "
                "probability p. To reach the requested number of lines, every lambda is "
                "multiplied by rate_scale (so alpha_effective = alpha / rate_scale) and every p "
                "by dropout_scale = min(1, 2 / rate_scale). Purchase times live on the "
                "operational clock of the seasonality block, mapped to calendar days (time "
                "warping) with an hour of day drawn separately. The Poisson and geometric counts "
                "are redrawn (at most 40 times) until the expected number of lines is within "
                "1.5 % of the target. A BG/NBD fit per segment in calendar time should give mean "
                "purchase rates near segments.measured.mean_lambda_calendar_per_week (lambda "
                "times the mean clock weight over each customer's alive window: customers who "
                "drop out early lived when the clock, with its upward trend, ran slower) and "
                "dropout near segments.measured.mean_dropout_p. A model whose transaction is a "
                "purchase day (same-day orders merged) on the cleaned data sees "
                "mean_lambda_observable_per_week: the calendar rate times "
                "observable_repeat_share, the share of planted repeat orders that stay distinct "
                "repeat purchase days after same-day merging and the quarantine of planted "
                "dirt; its spend per purchase is mean_purchase_day_value."
            ),
            "time_unit": TIME_UNIT,
            "rate_scale": _round(s, 6),
            "dropout_scale": _round(p_scale, 6),
            "params": bg_params,
            "acquisition": {
                "description": (
                    "First purchases: a share 'cohort' of each segment (existing customers) "
                    "appears uniformly in the first cohort_weeks; the others arrive over the "
                    "whole period with intensity proportional to 1 + growth * t / period on the "
                    "operational clock, so T varies and acquisition grows."
                ),
                "cohort_weeks": COHORT_WEEKS,
                "cohort_share_by_segment": {k: SEGMENT_PARAMS[k].cohort for k in SEGMENTS},
                "growth": ACQUISITION_GROWTH,
            },
            "measured": {
                "mean_orders_per_customer": _round(orders_per.mean(), 4),
                "repeat_customer_share": _round((ppl.m > 0).mean(), 4),
                "dropped_out_share": _round(dropped.mean(), 4),
            },
        },
        "gamma_gamma": {
            "description": (
                "The target value of each order is Gamma(shape p, rate nu), with a per-customer "
                "nu ~ Gamma(shape q, rate gamma) (expected order value p * gamma / (q - 1)). The "
                "basket realises it: the value is split over the order's lines in proportion to "
                "lognormal(0, 0.6) weights, each line's product comes from a price tier drawn "
                "around exp(-0.8) x its target, and quantity = target / price rounded "
                "stochastically into 1..24. Realised order values (sum of quantity x unit_price) "
                "therefore follow the targets, a little higher for the cheapest orders (one unit "
                "can cost more than the target); measured_mean_order_value gives the realised "
                "mean per segment (GBP)."
            ),
            "params": gg_params,
            "measured_mean_order_value": gg_measured,
            "measured_overall_mean_order_value": _round(amount.mean(), 2),
        },
        "seasonality": {
            "description": (
                "Purchase and acquisition times are drawn on an operational clock and mapped to "
                "calendar days (time warping, which keeps the BG/NBD counts intact): a day's "
                "length on that clock is weekday_factor x (1 + amplitude x cos(2 pi "
                "(day_of_year - peak_day_of_year) / 365.25)) x (1 + activity_trend x "
                "t / period), normalised to mean 1 over the period; the hour of day is drawn "
                "from hour_weights. New customers (outside the initial cohort) also arrive with "
                "linearly growing intensity (see bgnbd.acquisition). month_factors are the "
                "yearly factor averaged per calendar month. A forecast chapter should find a "
                "Saturday peak, a November-December peak, a May-June trough and an upward trend "
                "(measured_monthly_orders counts the clean orders per month)."
            ),
            "weekday_factors": dict(zip(weekday_names, (_round(v, 4) for v in wf), strict=True)),
            "yearly": {
                "form": "1 + amplitude * cos(2 pi (day_of_year - peak_day_of_year) / 365.25)",
                "amplitude": YEARLY_AMPLITUDE,
                "peak_day_of_year": YEARLY_PEAK_DAY,
            },
            "month_factors": _month_factors(),
            "trend": {
                "kind": "linear: the operational clock (hence all purchase activity) runs "
                "(1 + activity_trend) times faster at the end of the period than at the start",
                "activity_trend": ACTIVITY_TREND,
            },
            "hour_weights": list(HOUR_WEIGHTS),
            "measured_weekday_order_share": dict(
                zip(weekday_names, (_round(v, 4) for v in dow_share), strict=True)
            ),
            "measured_monthly_orders": {
                str(mo): int(c) for mo, c in zip(months, m_counts, strict=True)
            },
        },
        "product_pairs": {
            "description": (
                f"{len(cat.names)} products in {len(cat.categories)} categories; each line's "
                "product is drawn by Zipf popularity within a price tier drawn around the line's "
                "target value. For each planted pair, when the antecedent A is in an order the "
                "consequent B is added (quantity 1) with add_probability unless already there. "
                "Support, confidence and lift = support(A and B) / (support(A) support(B)) are "
                "measured over orders on the clean purchase lines (positive quantity, before "
                "dirt); the same figures hold on all positive-quantity, non-cancellation lines "
                "of transactions.csv grouped by order_id and product_id. A basket chapter "
                "should find these four rules with lift well above 2."
            ),
            "n_products": len(cat.names),
            "categories": cat.categories,
            "pairs": pairs,
        },
        "taste": {
            "description": (
                f"Every customer has {TASTE_CATEGORIES} favourite categories (drawn uniformly); "
                f"{TASTE_SHARE:.0%} of their lines are drawn within one of them (by popularity in "
                "the line's price tier, when the tier has such a product), the rest by "
                "popularity alone. So a customer's past categories predict their next products: "
                "a recommender should beat popularity. measured_top_two_category_share: mean "
                "share of a customer's clean purchase lines in their two most-bought categories "
                "(customers with 5+ lines; the first 100,000 customers)."
            ),
            "share": TASTE_SHARE,
            "favourite_categories": TASTE_CATEGORIES,
            "measured_top_two_category_share": _top_two_share(cat, od, ln),
        },
        "churn": {
            "description": (
                "Two kinds of dropout driver. Traits: logit(p) = logit(p0) + "
                f"{CHURN_LOGIT['serial_returner']} x serial_returner + "
                f"{CHURN_LOGIT['prefers_web']} x prefers_web - "
                f"{-CHURN_LOGIT['satisfaction_z']} x z, where serial returners "
                f"({RETURNER_SHARE:.0%} of customers) return ~{RETURN_PROB['returner']:.0%} of "
                f"their purchase lines (others ~{RETURN_PROB['other']:.1%}), "
                f"{PREFERRED_CHANNEL_PROB:.0%} of a customer's orders use the preferred channel, "
                "and z ~ N(0, 1) is the latent satisfaction that also drives feedback scores. "
                "Traits act from the "
                "first purchase, so those they push out leave early: among customers still "
                "active at a cutoff they are weak. Experience: on the order after which a "
                "customer drops out went wrong: the goods are sent back whole 1-14 days later "
                f"(probability {BAD_EXPERIENCE['leaving']['return']}) or else a complaint follows "
                f"0-14 days later (probability {BAD_EXPERIENCE['leaving']['complaint']}); on "
                f"every other order each happens with probability "
                f"{BAD_EXPERIENCE['staying']['return']}. By Bayes' rule a returned order or a "
                "complaint multiplies the odds of leaving after that order by about "
                f"{BAD_EXPERIENCE['leaving']['return'] / BAD_EXPERIENCE['staying']['return']:.0f}"
                f"; the complaint scores {-BAD_EXPERIENCE['score_effect']} lower. So among active "
                "customers a recent return and a recent complaint mark many who have already "
                "left. "
                "Gender and region have no effect on dropout. A churn "
                "model should find returns and low satisfaction (scores, complaints) among its "
                "top features. dropped_out_ids lists the canonical ids whose dropout happened "
                "within the period (in id order)."
            ),
            "drivers": [
                {
                    "name": "returns",
                    "cause": "the last order sent back (a bad experience); serial returner",
                    "direction": "increases churn",
                    "logit_effect_serial_returner": CHURN_LOGIT["serial_returner"],
                    "columns": ["transactions.quantity (negative, non-C order ids)"],
                    "return_probability": RETURN_PROB,
                    "share_of_customers_serial_returners": RETURNER_SHARE,
                },
                {
                    "name": "low_satisfaction",
                    "cause": "a complaint about the last order (a bad experience); latent z",
                    "direction": "lower satisfaction and complaints increase churn",
                    "logit_effect_per_z": CHURN_LOGIT["satisfaction_z"],
                    "bad_experience_score_effect": BAD_EXPERIENCE["score_effect"],
                    "columns": ["feedback.score", "feedback.type"],
                },
            ],
            "traits": {
                "description": (
                    "Traits shift each customer's dropout p from the start (logit effects); "
                    "those they push out leave early, so among customers active at a late "
                    "cutoff they barely separate who leaves next."
                ),
                "logit_effects": CHURN_LOGIT,
                "preferred_channel_probability": PREFERRED_CHANNEL_PROB,
            },
            "bad_experience": BAD_EXPERIENCE,
            "non_drivers": ["customers.gender", "customers.region"],
            "measured": {
                "dropped_out_share": _round(dropped.mean(), 4),
                "dropped_out_share_returners": frac(ppl.returner),
                "dropped_out_share_non_returners": frac(~ppl.returner),
                "dropped_out_share_prefers_web": frac(web),
                "dropped_out_share_other_channels": frac(~web),
                "dropped_out_share_z_below_minus_1": frac(ppl.z < -1),
                "dropped_out_share_z_above_1": frac(ppl.z > 1),
                "leaving_orders": int(leaving.sum()),
                "leaving_orders_sent_back_share": _round(od.bad_return[leaving].mean(), 4)
                if leaving.any()
                else None,
                "leaving_orders_complaint_share": _round(od.bad_complaint[leaving].mean(), 4)
                if leaving.any()
                else None,
                "other_orders_sent_back_share": _round(od.bad_return[~leaving].mean(), 4),
                "other_orders_complaint_share": _round(od.bad_complaint[~leaving].mean(), 4),
                "mean_trait_returns_share_returners": _round(ret_share[ppl.returner].mean(), 4)
                if ppl.returner.any()
                else None,
                "mean_trait_returns_share_non_returners": _round(
                    ret_share[~ppl.returner].mean(), 4
                ),
            },
            "dropped_out_ids": [ids[i] for i in by_id[dropped[by_id]]],
        },
        "satisfaction": {
            "description": (
                "About 8 % of orders get a feedback row 0-14 days later (the first order of each "
                "PII sentinel always does). score = clip(round(3.7 + 0.8 z + type_effect + "
                "channel_effect + N(0, 0.7)), 1, 5): z is the latent satisfaction that also "
                "lowers dropout (see churn), so customers who churn score lower; complaints "
                "score 1.6 lower than reviews and app orders 0.5 lower than web (store 0.3 "
                "higher). type is drawn independently of z. text is built from the score band's "
                "terms (1-2 negative, 3 neutral, 4-5 positive). A satisfaction chapter should "
                "find complaints and the app channel as drivers of low CSAT, and negative terms "
                "such as 'late delivery' among low scores."
            ),
            "model": CSAT,
            "type_shares": FEEDBACK_TYPE_SHARES,
            "link_to_churn": {
                "latent": "z",
                "score_per_z": CSAT["z"],
                "dropout_logit_per_z": CHURN_LOGIT["satisfaction_z"],
                "bad_experience": (
                    "the order after which a customer leaves often had a bad experience, which "
                    "brings a complaint and lowers its scores (see churn)"
                ),
                "bad_experience_score_effect": BAD_EXPERIENCE["score_effect"],
            },
            "text_terms": TEXT_TERMS,
            "measured": {k: v for k, v in fb.items() if k != "rows"},
        },
        "identity": {
            "description": (
                "People with a second account (dirt): a later customers.csv row with the same "
                "name, birth date and address whose e-mail differs only in case / surrounding "
                "spaces and/or whose phone differs only in format (same last 10 digits); the "
                "other one is left empty when evidence names a single key. The person's orders "
                "from a random repeat order onwards are recorded under the second id. No two "
                "different people share a normalised e-mail (trim + lower case) or phone (last "
                "10 digits). Identity resolution should merge exactly these pairs."
            ),
            "pairs": cu["identity_pairs"],
            "n_pairs": len(cu["identity_pairs"]),
            "orders_under_duplicate_id": tx["orders_under_duplicate_id"],
            "lines_under_duplicate_id": counts["lines_under_duplicate_id"],
            "rows_under_duplicate_id": tx["rows_under_duplicate_id"],
        },
        "pii_sentinels": {
            "description": (
                "Three real customers whose name, e-mail, phone and address are unmistakable "
                "sentinel strings; they have transactions and feedback. No report output may "
                "contain any of 'strings'."
            ),
            "customers": cu["sentinels"],
            "strings": [v for row in SENTINELS for v in row],
        },
        "dirt": {
            "description": (
                "Exact counts of planted problems in transactions.csv (rows). Each dirty row has "
                "exactly one kind: a uniform draw per clean purchase line picks at most one "
                "kind, and lines that are returned, cancelled, recorded under a second account "
                "or bought by a PII sentinel are never dirtied. exact_duplicate rows are extra "
                "copies of otherwise clean lines; missing_customer_id rows have an empty id; "
                "zero/negative_price rows have unit_price 0 or minus the list price; "
                "product_name_variant rows spell the product's name with other case/whitespace "
                "(different even after trimming); unparseable_date rows hold one of "
                "unparseable_date_values (the empty one is an empty cell); future_date rows are "
                "moved a multiple of 4 years ahead (to 2031 or later, and at least 6 years after "
                "the end). cancellation_lines (order id 'C' + the original id, minus the "
                "original quantity, within 48 h) and return_lines (negative quantity on the "
                "original order id, 2-30 days later) are business events, also present without "
                "dirt. lines_under_duplicate_id counts purchase lines recorded under a second "
                "account; duplicate_customer_accounts counts second customers.csv rows. "
                "expected_quarantine gives the data layer's reason counts for transactions; "
                "feedback, events and customers carry no quarantinable dirt."
            ),
            "enabled": bool(dirt),
            "counts": dirt_counts,
            "product_name_variant_spellings": tx["product_name_variant_spellings"],
            "expected_quarantine": {"transactions": quarantine},
            "unparseable_date_values": [
                f"{cal.start.year}-13-45",
                f"31/02/{cal.start.year}",
                "not a date",
                "",
                f"{cal.start.year}-02-30 12:00:00",
            ],  # fmt: skip
        },
    }


def _line_price(cat: _Catalogue, ln: _Lines) -> np.ndarray:
    """List price (pence) of each clean line."""
    return cat.price[ln.prod].astype(np.float64)


# ------------------------------------------------------------------------------- the generator
def generate_demo(
    out_dir: Path,
    *,
    customers: int = 5000,
    lines: int = 100_000,
    start_date: dt.date = dt.date(2023, 1, 1),
    years: int = 2,
    seed: int = 42,
    dirt: bool = True,
) -> dict:
    """Write the demo tables and their planted ground truth to ``out_dir``; return the truth.

    Writes ``transactions.csv``, ``customers.csv``, ``feedback.csv``, ``events.csv`` and
    ``ground_truth.json`` (see the module docstring for what is planted).

    Parameters
    ----------
    out_dir
        Folder to write to (created if needed; files of the same names are replaced).
    customers
        Number of real customers (people): 50 to 5,000,000 (tested up to 1,000,000).
    lines
        Approximate number of rows of transactions.csv (within a few per cent): 500 to
        200,000,000 (tested up to 10,000,000) and at least 3 x ``customers``.
    start_date
        First day of the period.
    years
        Length of the period in years (1 to 10); it ends the day before the anniversary.
    seed
        Seed of ``numpy.random.default_rng``; the same arguments give byte-identical files.
    dirt
        Plant realistic dirt (duplicate lines and accounts, missing ids, bad prices, product name
        variants, unparseable and future dates). Returns and cancellations are always present.

    Returns
    -------
    dict
        The ground truth, as written to ``ground_truth.json``.

    Raises
    ------
    ValueError
        When an argument is out of range.

    """
    _validate(customers, lines, start_date, years, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(int(seed))
    cal = _calendar(start_date, _end_date(start_date, int(years)))
    cat = _catalogue(rng)
    ppl = _people(
        rng, int(customers), cal, int(lines), bool(dirt), _pilot_lines_per_order(rng, cat)
    )
    od = _orders(rng, ppl, cal)
    ln = _lines(rng, ppl, od, cat)
    _bad_experience(rng.spawn(1)[0], ppl, od)  # a spawned stream: the main one is unchanged
    pairs = _pair_lifts(cat, ln.order, ln.prod, len(od.cust))
    acc = _accounts(rng, ppl, od, cal, bool(dirt))
    tx = _write_transactions(rng, out_dir, cal, cat, ppl, od, ln, acc, bool(dirt))
    cu = _write_customers(rng, out_dir, cal, ppl, acc)
    fb = _write_feedback(rng, out_dir, cal, ppl, od, acc)
    n_events = _write_events(rng, out_dir, cal, cat, ppl, od, ln, acc)
    args = {
        "customers": int(customers),
        "lines": int(lines),
        "start_date": str(start_date),
        "years": int(years),
        "seed": int(seed),
        "dirt": bool(dirt),
    }
    truth = _truth(args, cal, cat, ppl, od, ln, acc, tx, cu, fb, n_events, pairs, bool(dirt))
    (out_dir / "ground_truth.json").write_text(_truth_json(truth), encoding="utf-8")
    return truth


def _truth_json(truth: dict[str, Any]) -> str:
    """Indented JSON, with the per-customer lists on one line each (fast for a million ids)."""
    big = {
        ("customer_segment",): truth["customer_segment"],
        ("churn", "dropped_out_ids"): truth["churn"]["dropped_out_ids"],
        ("identity", "pairs"): truth["identity"]["pairs"],
    }
    shell = dict(truth)
    for i, path in enumerate(big):
        node = shell
        for key in path[:-1]:
            node[key] = dict(node[key])
            node = node[key]
        node[path[-1]] = f"@@big{i}@@"
    text = json.dumps(shell, indent=1, sort_keys=True, ensure_ascii=False)
    for i, value in enumerate(big.values()):
        # The per-customer map and list are built in id order: no key sorting needed.
        compact = json.dumps(value, sort_keys=i > 1, ensure_ascii=False, separators=(",", ":"))
        text = text.replace(f'"@@big{i}@@"', compact, 1)
    return text + "\n"
