"""Compare two report runs of a client: what changed, KPI by KPI, segment by segment, model by model.

A run folder ``reports/<client>/<version>/`` holds ``manifest.json`` (params, input fingerprints,
chapters, reconciliation) and ``artifacts/<slug>.json`` (DESIGN section 9). :func:`compare_runs`
reads the key figures of two runs and returns one :class:`FigureChange` per figure; the CLI
(``crm-report diff OLD NEW``) prints them and :func:`write_page` turns them into the report's
"What changed since the last report" page.

Tolerance: two numbers are equal when ``math.isclose(old, new, rel_tol=REL_TOL,
abs_tol=ABS_TOL)`` (a relative 1e-6, as the Spark-vs-DuckDB check uses, and 1e-9 absolute for
values at zero). Artifacts already round floats to 10 significant digits, so what is left is float
noise (summation order, BLAS threads), far below a millionth; integers (counts) differ by at least 1
and always count. Strings, booleans and lists compare exactly.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import i18n, privacy
from ..errors import CRMError

REL_TOL = 1e-6
ABS_TOL = 1e-9

#: Areas in the order the page and the CLI show them.
AREAS = (
    "Chapters",
    "Parameters",
    "Input data",
    "KPIs",
    "Data quality",
    "Reconciliation",
    "Profile",
    "Segments",
    "Clusters",
    "CLV",
    "Basket",
    "Models",
    "Satisfaction",
)
#: Areas that describe how the run was made rather than what it found.
SETUP_AREAS = ("Chapters", "Parameters", "Input data")
#: Parameters that differ between any two runs by design.
IGNORED_PARAMS = ("report.version",)

_NAMES = {
    "customers": "customers",
    "active_customers": "active customers",
    "active_share": "active share",
    "active_days": "active window (days)",
    "net_revenue": "net revenue",
    "gross_revenue": "gross revenue",
    "average_order_value": "average order value",
    "repeat_rate": "repeat rate",
    "items_per_basket": "products per basket",
    "total_clv": "total CLV",
    "top_decile_share": "CLV share of the top decile",
    "value_at_risk_total": "value at risk",
    "win_back_customers": "win-back list customers",
    "n_transactions": "baskets",
    "n_items": "distinct items",
    "n_itemsets": "frequent itemsets",
    "n_rules": "rules",
    "n_significant": "significant rules",
    "min_support": "minimum support",
    "min_confidence": "minimum confidence",
    "csat_mean": "CSAT mean",
    "csat_share_satisfied": "CSAT share satisfied",
    "nps": "NPS",
    "precision_at_k": "precision@k",
    "recall_at_k": "recall@k",
    "ndcg_at_k": "NDCG@k",
    "success_at_k": "success@k",
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "brier": "Brier score",
    "mase": "MASE",
    "mae": "MAE",
    "rmse": "RMSE",
    "mape": "MAPE",
    "loglik": "log-likelihood",
    "ari_planted": "ARI against planted segments",
    "stability_ari_mean": "bootstrap stability (ARI)",
    "k": "clusters (k)",
    "gini": "Gini of revenue",
}


# ------------------------------------------------------------------------------------- rows
@dataclass(frozen=True)
class FigureChange:
    """One figure of two runs.

    ``status`` is ``changed``, ``unchanged``, ``added`` (only in the new run) or ``removed``
    (only in the old one). ``abs_change`` and ``rel_change`` (new - old, and that over ``|old|``)
    are set for numbers. ``kind`` is ``count`` for a count of customers (shown through
    :func:`crm_helpers.privacy.suppress`), ``param``, ``input``, ``chapter`` or ``value``;
    ``group`` holds how many customers the figure describes in each run (a segment's size), so
    that a group below ``privacy.min_group_size`` shows no figures.
    """

    area: str
    figure: str
    old: Any
    new: Any
    status: str
    abs_change: float | None = None
    rel_change: float | None = None
    key: str = ""
    kind: str = "value"
    group: tuple[int | None, int | None] = (None, None)


@dataclass
class RunDiff:
    """The comparison of two runs of one client."""

    client: str
    old_version: str
    new_version: str
    old_dir: Path
    new_dir: Path
    rows: list[FigureChange]
    min_group_size: int = privacy.DEFAULT_K
    tolerance: dict[str, float] = field(
        default_factory=lambda: {"rel_tol": REL_TOL, "abs_tol": ABS_TOL}
    )

    def of(self, *statuses: str, areas: tuple[str, ...] | None = None) -> list[FigureChange]:
        """The rows with one of these statuses (all when none given), optionally in these areas."""
        return [
            r
            for r in self.rows
            if (not statuses or r.status in statuses) and (areas is None or r.area in areas)
        ]

    @property
    def figures(self) -> list[FigureChange]:
        """The rows about results (not about parameters, inputs or chapters)."""
        return [r for r in self.rows if r.area not in SETUP_AREAS]

    @property
    def changed_figures(self) -> list[FigureChange]:
        """Result figures that changed, appeared or disappeared."""
        return [r for r in self.figures if r.status != "unchanged"]

    def to_frame(self) -> pd.DataFrame:
        """The rows as a data frame (one row per figure, exact values)."""
        cols = [f.name for f in FigureChange.__dataclass_fields__.values()]
        return pd.DataFrame([asdict(r) for r in self.rows], columns=cols)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: the two runs, the tolerance and every row with its exact values."""
        return {
            "client": self.client,
            "old": {"version": self.old_version, "path": str(self.old_dir)},
            "new": {"version": self.new_version, "path": str(self.new_dir)},
            "tolerance": self.tolerance,
            "counts": {s: len(self.of(s)) for s in ("changed", "added", "removed", "unchanged")},
            "rows": [asdict(r) | {"group": list(r.group)} for r in self.rows],
        }


def same(old: Any, new: Any, *, rel_tol: float = REL_TOL, abs_tol: float = ABS_TOL) -> bool:
    """Whether two figure values are equal, numbers within the tolerance (module docstring)."""
    if _is_number(old) and _is_number(new):
        if isinstance(old, int) and isinstance(new, int):
            return old == new
        return math.isclose(float(old), float(new), rel_tol=rel_tol, abs_tol=abs_tol)
    return old == new


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _row(
    key: str,
    area: str,
    figure: str,
    old: Any,
    new: Any,
    status: str,
    kind: str,
    group: tuple[int | None, int | None],
    rel_tol: float,
    abs_tol: float,
) -> FigureChange:
    if status == "both":
        status = "unchanged" if same(old, new, rel_tol=rel_tol, abs_tol=abs_tol) else "changed"
    abs_change = rel_change = None
    if _is_number(old) and _is_number(new):
        abs_change = new - old
        rel_change = abs_change / abs(old) if old else None
    return FigureChange(area, figure, old, new, status, abs_change, rel_change, key, kind, group)


# -------------------------------------------------------------------------------- run folders
@dataclass
class _Run:
    root: Path
    manifest: dict[str, Any]
    artifacts: dict[str, dict[str, Any]]


def read_run(path: str | Path, manifest: dict[str, Any] | None = None) -> _Run:
    """A run folder's manifest and chapter artifacts; a clear error when it is not one."""
    root = Path(path)
    if not root.exists():
        raise CRMError(f"{root}: no such run folder")
    if not root.is_dir():
        raise CRMError(f"{root}: not a run folder (not a directory)")
    if manifest is None:
        mpath = root / "manifest.json"
        if not mpath.is_file():
            raise CRMError(
                f"{root}: not a run folder (no manifest.json); give reports/<client>/<version>"
            )
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CRMError(f"{mpath}: cannot read the manifest ({exc})") from None
    arts: dict[str, dict[str, Any]] = {}
    folder = root / "artifacts"
    if folder.is_dir():
        for p in sorted(folder.glob("*.json")):
            if p.name.startswith("_"):
                continue
            try:
                arts[p.stem] = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CRMError(f"{p}: cannot read this artifact ({exc})") from None
    return _Run(root, manifest, arts)


def resolve_run(ref: str | Path, client: str | None, reports_dir: Path) -> Path:
    """The run folder that ``ref`` names.

    With ``client``, a bare name (``v1``, ``latest``) is a version in ``reports_dir/<client>/``;
    otherwise, and for anything with a path separator, ``ref`` is the folder itself.
    """
    if client is None or "/" in str(ref) or "\\" in str(ref):
        return Path(ref)
    return Path(reports_dir) / client / str(ref)


def _min_group_size(run: _Run) -> int:
    info = run.root / "run_info.json"
    k = None
    if info.is_file():
        try:
            k = json.loads(info.read_text()).get("privacy", {}).get("min_group_size")
        except (OSError, ValueError):
            k = None
    if k is None:
        k = (run.manifest.get("params") or {}).get("privacy", {}).get("min_group_size")
    return int(k) if k else privacy.DEFAULT_K


# ------------------------------------------------------------------------------ extraction
# A figure: key -> (area, readable name, value, kind, customers of its group)
_Fig = tuple[str, str, Any, str, int | None]


def _name(key: str) -> str:
    return _NAMES.get(key, key.replace("_", " "))


def _is_count(key: str) -> bool:
    k = key.lower()
    return k in privacy.COUNT_COLUMNS or k.endswith("customers") or k in {"churners"}


def _scalars(d: dict[str, Any] | None, skip: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    for k, v in sorted((d or {}).items()):
        if k in skip or isinstance(v, dict | list):
            continue
        yield k, v


def _flatten(d: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, d


def _figures(run: _Run) -> dict[str, _Fig]:
    """Every compared figure of one run, by a stable key."""
    m, a = run.manifest, run.artifacts
    out: dict[str, _Fig] = {}

    def put(key: str, area: str, name: str, value: Any, kind: str | None = None, group=None):
        leaf = key.rsplit(".", 1)[-1]
        kind = kind or ("count" if _is_count(leaf) else "value")
        out[key] = (area, name, value, kind, group)

    # Chapters: the run's status, or the artifact's own (e.g. not_available).
    for c in m.get("chapters") or []:
        status = c.get("status")
        art = a.get(c["slug"]) or {}
        if status == "ok" and isinstance(art.get("status"), str) and art["status"] != "ok":
            status = art["status"]
        put(f"chapter.{c['slug']}", "Chapters", c.get("title") or c["slug"], status, "chapter")
    # Parameters: every key path (lists compare as a whole).
    for path, value in _flatten(m.get("params") or {}):
        if path and path not in IGNORED_PARAMS:
            if isinstance(value, list | dict):
                value = json.dumps(value, sort_keys=True, ensure_ascii=False)
            put(f"params.{path}", "Parameters", path, value, "param")
    # Input data: fingerprints and rows.
    for table, d in sorted((m.get("inputs") or {}).items()):
        put(f"inputs.{table}.sha256", "Input data", f"{table}: sha256", d.get("sha256"), "input")
        put(f"inputs.{table}.rows", "Input data", f"{table}: rows", d.get("rows"), "input")

    s = a.get("summary") or {}
    for k, v in _scalars(s.get("kpis"), skip=("basket_only",)):
        put(f"summary.kpis.{k}", "KPIs", _name(k).capitalize(), v)
    for k, v in _scalars(s.get("clv"), skip=("horizon_months",)):
        put(f"summary.clv.{k}", "KPIs", _name(k).capitalize(), v)
    for k, v in _scalars(s.get("churn")):
        put(f"summary.churn.{k}", "KPIs", "Churn: " + _name(k), v)

    dq = a.get("data_quality") or {}
    for k, v in _scalars(dq.get("kpis"), skip=("basket_only",)):
        put(f"data_quality.kpis.{k}", "Data quality", _name(k).capitalize(), v)
    for k, v in _scalars((dq.get("kpis") or {}).get("period")):
        put(f"data_quality.period.{k}", "Data quality", f"Data period {k}", v)
    for k in ("rows_input", "rows_kept", "rows_quarantined"):
        if k in dq:
            put(f"data_quality.{k}", "Data quality", _name(k).capitalize(), dq[k], "value")
    for k in ("merged_ids", "merged_groups"):
        if k in (dq.get("identity") or {}):
            put(
                f"data_quality.identity.{k}",
                "Data quality",
                "Identity: " + _name(k),
                dq["identity"][k],
            )

    for table, r in sorted((m.get("reconciliation") or {}).items()):
        for k in ("input", "kept"):
            put(f"reconciliation.{table}.{k}", "Reconciliation", f"{table}: {k}", r.get(k), "value")
        q = r.get("quarantined") or {}
        put(
            f"reconciliation.{table}.quarantined",
            "Reconciliation",
            f"{table}: quarantined",
            sum(q.values()),
            "value",
        )
        for reason, n in sorted(q.items()):
            put(
                f"reconciliation.{table}.quarantined.{reason}",
                "Reconciliation",
                f"{table}: quarantined ({reason})",
                n,
                "value",
            )

    p = a.get("profile") or {}
    for k, v in _scalars(p, skip=("status",)):
        put(f"profile.{k}", "Profile", _name(k).capitalize(), v)
    for k, v in _scalars(p.get("revenue_share_top")):
        put(f"profile.revenue_share_top.{k}", "Profile", f"Revenue share of the top {k}", v)
    for k, v in _scalars(p.get("tag_counts")):
        put(
            f"profile.tag_counts.{k}",
            "Profile",
            f"Customers tagged {k.replace('_', ' ')}",
            v,
            "count",
        )

    seg = a.get("segmentation") or {}
    for k, v in _scalars(seg, skip=("status", "reference_date")):
        put(f"segmentation.{k}", "Segments", _name(k).capitalize(), v)
    for group, area, label in (
        ("segments", "Segments", "Segment"),
        ("clusters", "Clusters", "Cluster"),
    ):
        for name, d in sorted((seg.get(group) or {}).items()):
            if not isinstance(d, dict):
                continue
            size = d.get("customers")
            for k, v in _scalars(d, skip=("action",)):
                put(
                    f"segmentation.{group}.{name}.{k}",
                    area,
                    f"{label} {name}: {_name(k)}",
                    v,
                    None,
                    size,
                )
    for name, n in _scalars(seg.get("tiers")):
        put(f"segmentation.tiers.{name}", "Clusters", f"Value tier {name}: customers", n, "count")

    clv = a.get("clv") or {}
    for k, v in _scalars(
        clv,
        skip=(
            "status",
            "time_unit",
            "margin",
            "monthly_discount_rate",
            "horizon_months",
            "interval_level",
            "prediction_periods",
        ),
    ):
        put(f"clv.{k}", "CLV", _name(k).capitalize(), v)
    for model in ("bgnbd", "gamma_gamma"):
        label = {"bgnbd": "BG/NBD", "gamma_gamma": "Gamma-Gamma"}[model]
        for k, v in _scalars(clv.get(model), skip=("n",)):
            put(f"clv.{model}.{k}", "CLV", f"{label} {_name(k)}", v)
    hold = clv.get("holdout") or {}
    for k, v in _scalars(hold):
        put(f"clv.holdout.{k}", "CLV", f"Holdout {_name(k)}", v)
    for k, v in _scalars(hold.get("baseline")):
        put(f"clv.holdout.baseline.{k}", "CLV", f"Holdout baseline {_name(k)}", v)

    b = a.get("basket") or {}
    for k, v in _scalars(b, skip=("status",)):
        put(f"basket.{k}", "Basket", _name(k).capitalize(), v)

    for slug, label in (
        ("recommendations", "Recommendations"),
        ("churn", "Churn"),
        ("forecast", "Forecast"),
    ):
        art = a.get(slug) or {}
        for k, v in _scalars(
            art,
            skip=(
                "status",
                "cutoff",
                "horizon",
                "k",
                "top_n",
                "period",
                "first_period",
                "last_period",
                "periods",
                "origins",
            ),
        ):
            put(f"{slug}.{k}", "Models", f"{label}: {_name(k)}", v)
        for series, d in sorted((art.get("chosen") or {}).items() if slug == "forecast" else []):
            for k, v in _scalars(d):
                put(f"{slug}.chosen.{series}.{k}", "Models", f"{label} {series}: {_name(k)}", v)
    for slug, label in (
        ("recommendations", "Recommendations"),
        ("churn", "Churn"),
        ("forecast", "Forecast"),
        ("clv", "CLV"),
    ):
        for row in (a.get(slug) or {}).get("metrics") or []:
            model = row.get("model")
            if model is None:
                continue
            ident = f"{row['series']} · {model}" if "series" in row else str(model)
            size = row.get("customers")
            for k, v in _scalars(row, skip=("model", "series", "spec", "scaled_by", "rank")):
                put(
                    f"{slug}.metrics.{ident}.{k}",
                    "Models",
                    f"{label} {ident}: {_name(k)}",
                    v,
                    None,
                    size if isinstance(size, int) else None,
                )

    sat = a.get("satisfaction") or {}
    for k, v in _scalars(sat, skip=("status", "drivers_method")):
        put(f"satisfaction.{k}", "Satisfaction", _name(k).capitalize(), v)
    return out


# ------------------------------------------------------------------------------- compare
def compare_runs(
    old: str | Path,
    new: str | Path,
    *,
    new_manifest: dict[str, Any] | None = None,
    rel_tol: float = REL_TOL,
    abs_tol: float = ABS_TOL,
) -> RunDiff:
    """Compare two run folders of one client, figure by figure.

    Parameters
    ----------
    old, new
        Run folders ``reports/<client>/<version>/``.
    new_manifest
        The new run's manifest when it is still being written (the runner's page hook).
    rel_tol, abs_tol
        Numbers within this tolerance count as unchanged (``math.isclose``).

    Returns
    -------
    RunDiff
        One row per figure present in either run, in the order of :data:`AREAS`.

    Raises
    ------
    CRMError
        When a folder is missing or not a run folder, or the two runs are of different clients.

    """
    a, b = read_run(old), read_run(new, new_manifest)
    ca, cb = a.manifest.get("client"), b.manifest.get("client")
    if ca != cb:
        raise CRMError(
            f"{b.root}: this run is of client {cb!r}, {a.root} of client {ca!r}; "
            "compare two runs of the same client"
        )
    fa, fb = _figures(a), _figures(b)
    rows = []
    for key in [*fa, *(k for k in fb if k not in fa)]:
        if key in fa and key in fb:
            area, name, vo, kind, go = fa[key]
            _, _, vn, _, gn = fb[key]
            status = "both"
        elif key in fa:
            area, name, vo, kind, go = fa[key]
            vn, gn, status = None, None, "removed"
        else:
            area, name, vn, kind, gn = fb[key]
            vo, go, status = None, None, "added"
        rows.append(_row(key, area, name, vo, vn, status, kind, (go, gn), rel_tol, abs_tol))
    rows.sort(key=lambda r: AREAS.index(r.area))
    return RunDiff(
        client=str(cb),
        old_version=str(a.manifest.get("version") or a.root.name),
        new_version=str(b.manifest.get("version") or b.root.name),
        old_dir=a.root,
        new_dir=b.root,
        rows=rows,
        min_group_size=_min_group_size(b),
        tolerance={"rel_tol": rel_tol, "abs_tol": abs_tol},
    )


# ------------------------------------------------------------------------------- display
def fmt_value(value: Any, kind: str = "value") -> str:
    """A figure's value as the page and the CLI show it."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if kind == "input" and isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value):
        return value[:12]
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.2f}"
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fmt_change(r: FigureChange) -> tuple[str, str]:
    if r.abs_change is None:
        return "", ""
    sign = "+" if r.abs_change > 0 else ""
    absolute = sign + fmt_value(r.abs_change)
    rel = "" if r.rel_change is None else f"{r.rel_change * 100:+.1f} %"
    return absolute, rel


#: Groups whose sizes split all customers (the key of a size is ``<family>.<name>[.customers]``).
_PARTITIONS = re.compile(
    r"^(segmentation\.(?:segments|clusters))\.(.+)\.[^.]+$|^(segmentation\.tiers)\.([^.]+)$"
)


def _member(key: str) -> tuple[str, str] | None:
    """(family, group name) of a figure of a group that is part of a partition, else None."""
    m = _PARTITIONS.match(key)
    if not m:
        return None
    return (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))


def _complements(rows: list[FigureChange], k: int) -> set[tuple[str, str, int]]:
    """The groups hidden beside small ones, as (family, name, run) with run 0 = old, 1 = new.

    The same choice as the report's tables (:func:`crm_helpers.privacy.hidden_groups` over each
    partition's sizes, equal sizes by name), so that the comparison does not show the size of a
    group the report hides, from which the small one would follow.
    """
    sizes: dict[str, dict[str, list[Any]]] = {}
    for r in rows:
        m = _member(r.key)
        if m and r.kind == "count":
            sizes.setdefault(m[0], {})[m[1]] = [r.old, r.new]
    out = set()
    for family, groups in sizes.items():
        names = sorted(groups)
        for run in (0, 1):
            counts = [groups[n][run] if _is_number(groups[n][run]) else 0 for n in names]
            _, complement = privacy.hidden_groups(counts, k, labels=names)
            out |= {(family, n, run) for n, c in zip(names, complement, strict=True) if c}
    return out


def display_frame(
    rows: list[FigureChange],
    k: int,
    *,
    status: bool = False,
    everything: list[FigureChange] | None = None,
) -> pd.DataFrame:
    """The rows as strings for a Markdown table, with small groups suppressed.

    Counts of customers go through :func:`crm_helpers.privacy.suppress` (a count of 1 .. k-1
    shows as ``< k``); a figure of a group (a segment, a model's test customers) with fewer than
    ``k`` customers in a run is blanked for that run; a change is shown only when both values are.
    Where the groups split all customers (segments, clusters, value tiers), the group the report
    hides beside a small one is hidden here too (``≥ k``, its figures blank), chosen among all the
    groups of ``everything`` (the whole comparison; default ``rows``).
    """
    beside = _complements(everything if everything is not None else rows, k)
    counts = [r.kind == "count" for r in rows]
    nums = pd.DataFrame(
        {
            "old": [
                r.old if c and _is_number(r.old) else None
                for r, c in zip(rows, counts, strict=True)
            ],
            "new": [
                r.new if c and _is_number(r.new) else None
                for r, c in zip(rows, counts, strict=True)
            ],
        },
        dtype="float64",
    )
    hidden, _ = privacy.suppress(nums, k, cells=True, complementary=False)  # unrelated figures
    out = []
    for i, r in enumerate(rows):
        old, new = fmt_value(r.old, r.kind), fmt_value(r.new, r.kind)
        if counts[i]:
            old = hidden.at[i, "old"] if isinstance(hidden.at[i, "old"], str) else old
            new = hidden.at[i, "new"] if isinstance(hidden.at[i, "new"], str) else new
        go, gn = r.group
        if not counts[i] and isinstance(go, int | float) and 0 < go < k:
            old = "–"
        if not counts[i] and isinstance(gn, int | float) and 0 < gn < k:
            new = "–"
        member = _member(r.key)
        if member and (*member, 0) in beside:
            old = f"≥ {k}" if counts[i] else "–"
        if member and (*member, 1) in beside:
            new = f"≥ {k}" if counts[i] else "–"
        change, rel = _fmt_change(r)
        if old.startswith(("<", "≥")) or new.startswith(("<", "≥")) or "–" in (old, new):
            change = rel = ""
        row = {
            "Area": r.area,
            "Figure": r.figure,
            "Old": old,
            "New": new,
            "Change": change,
            "Change %": rel,
        }
        if status:
            row["Status"] = r.status
        out.append(row)
    cols = ["Area", "Figure", "Old", "New", "Change", "Change %"] + (["Status"] if status else [])
    return pd.DataFrame(out, columns=cols)


def markdown_table(
    rows: list[FigureChange],
    k: int,
    *,
    status: bool = False,
    area: bool = True,
    lang: str = "en",
    everything: list[FigureChange] | None = None,
) -> str:
    """A Markdown pipe table of these rows (see :func:`display_frame`), headed in ``lang``."""
    df = display_frame(rows, k, status=status, everything=everything)
    if not area:
        df = df.drop(columns="Area")
    df = df.rename(columns=lambda c: i18n.header(c, lang))
    return df.to_markdown(index=False, disable_numparse=True)


def cli_text(diff: RunDiff, *, show_all: bool = False) -> str:
    """What ``crm-report diff`` prints: the changed (or all) rows and a count of the others."""
    changed = diff.of("changed", "added", "removed")
    unchanged = diff.of("unchanged")
    head = f"# {diff.client}: {diff.old_version} -> {diff.new_version}\n\n"
    shown = diff.rows if show_all else changed
    body = (
        markdown_table(shown, diff.min_group_size, status=show_all, everything=diff.rows)
        if shown
        else "No figure, parameter or input changed."
    )
    tail = (
        f"\n\n{len(changed)} changed, added or removed; {len(unchanged)} unchanged"
        + ("" if show_all else " (--all shows them)")
        + f". Equal within a relative {diff.tolerance['rel_tol']:g}."
    )
    return head + body + tail + "\n"


# ------------------------------------------------------------------------------------ page
PAGE_FILE = "diff.md"


def page_title(version: str, lang: str = "en") -> str:
    """The page's heading text."""
    return i18n.tr("What changed since the last report (version {version})", lang, version=version)


def _changes_paragraph(title: str, items: list[str], none: str) -> str:
    """``title`` over a bullet list of the changes, or the ``none`` sentence when there are none."""
    return f"{title}\n\n" + "\n".join(f"- {i}" for i in items) if items else none


def page_markdown(diff: RunDiff, lang: str = "en") -> str:
    """The report page: changed figures with both values, changed params, inputs and chapters.

    Its sentences, headings and table headers are in ``lang`` (the report's language); figure
    names, parameter keys and values are shown as the runs record them.
    """
    k = diff.min_group_size
    parts = [f"# {page_title(diff.old_version, lang)} {{.unnumbered}}"]
    figures = diff.changed_figures
    n_same = len([r for r in diff.figures if r.status == "unchanged"])
    parts.append(
        i18n.tr(
            "This report (version {new}) is compared with the previous complete report of "
            "{client}, version {old}, figure by figure: key figures, segments, model metrics and "
            "the row reconciliation. A figure counts as changed when it moved by more than a "
            "millionth of its value. {changed:,} figures changed, appeared or disappeared; "
            "{same:,} are unchanged.",
            lang,
            new=diff.new_version,
            client=diff.client,
            old=diff.old_version,
            changed=len(figures),
            same=n_same,
        )
    )
    params = diff.of("changed", "added", "removed", areas=("Parameters",))
    parts.append(
        _changes_paragraph(
            i18n.tr("**Parameters changed:**", lang),
            [f"`{r.figure}`: {fmt_value(r.old)} → {fmt_value(r.new)}" for r in params],
            i18n.tr("**Parameters:** no parameter changed.", lang),
        )
    )
    inputs = diff.of("changed", "added", "removed", areas=("Input data",))
    parts.append(
        _changes_paragraph(
            i18n.tr("**Input data changed** (fingerprints and row counts):", lang),
            [
                f"{r.figure}: {fmt_value(r.old, r.kind)} → {fmt_value(r.new, r.kind)}"
                for r in inputs
            ],
            i18n.tr("**Input data:** unchanged (same files, same sha256 fingerprints).", lang),
        )
    )
    chapters = diff.of("changed", "added", "removed", areas=("Chapters",))
    words = {
        "added": i18n.tr("added", lang),
        "removed": i18n.tr("not in this report", lang),
    }
    if chapters:
        parts.append(
            _changes_paragraph(
                i18n.tr("**Chapters:**", lang),
                [
                    f"{r.figure}: "
                    + (words[r.status] if r.status in words else f"{r.old} → {r.new}")
                    for r in chapters
                ],
                "",
            )
        )
    if not figures:
        parts.append(
            i18n.tr(
                "**No figure changed** since version {version}.", lang, version=diff.old_version
            )
        )
    else:
        for area in AREAS:
            rows = [r for r in figures if r.area == area]
            if rows:
                anchor = "changed-" + re.sub(r"[^a-z]+", "-", area.lower()).strip("-")
                parts.append(
                    f"## {i18n.tr(area, lang)} {{#{anchor}}}\n\n"
                    + markdown_table(rows, k, area=False, lang=lang, everything=diff.rows)
                )
        if any(r.kind == "count" or r.group != (None, None) for r in figures):
            beside, shown = _complements(diff.rows, k), {_member(r.key) for r in figures}
            complements = any((*m, run) in beside for m in shown if m for run in (0, 1))
            parts.append("*" + privacy.note(k, complements, lang) + "*")
    return "\n\n".join(parts) + "\n"


def previous_run(client_dir: Path) -> Path | None:
    """The client's latest complete run (``<client>/latest``), or None."""
    link = Path(client_dir) / "latest"
    if not link.exists():
        return None
    target = link.resolve()
    try:
        manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return target if manifest.get("status") == "complete" else None


def write_page(run_root: Path, manifest: dict[str, Any], client_dir: Path) -> dict[str, Any] | None:
    """The runner's hook: write ``diff.md`` comparing this run with the client's latest one.

    Returns what the manifest records as ``compared_with`` (None when there is no previous
    complete run); a comparison that fails is recorded with its error and never fails the run.
    """
    previous = previous_run(client_dir)
    if previous is None or previous.resolve() == Path(run_root).resolve():
        return None
    record: dict[str, Any] = {"version": previous.name, "path": str(previous)}
    try:
        diff = compare_runs(previous, run_root, new_manifest=manifest)
        page = page_markdown(diff, i18n.run_language(run_root))
        (Path(run_root) / PAGE_FILE).write_text(page, encoding="utf-8")
    except Exception as exc:  # noqa: BLE001  an odd old artifact must not lose the report
        return record | {"error": f"{type(exc).__name__}: {exc}"}
    return record | {
        "version": diff.old_version,
        "page": PAGE_FILE,
        "changed_figures": len(diff.changed_figures),
        "changed_params": [
            r.figure for r in diff.of("changed", "added", "removed", areas=("Parameters",))
        ],
        "inputs_changed": bool(diff.of("changed", "added", "removed", areas=("Input data",))),
    }


def page_of(run_root: Path, manifest: dict[str, Any]) -> Path | None:
    """The run's diff page, when the run was compared with a previous one."""
    cw = manifest.get("compared_with") or {}
    page = Path(run_root) / str(cw.get("page") or "")
    return page if cw.get("page") and page.is_file() else None
