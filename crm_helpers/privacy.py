"""Small-group suppression: no table or figure cell describes fewer than k customers.

``k`` is ``privacy.min_group_size`` (default 5). The runner writes it to ``run_info.json`` and
runs each chapter with the run folder as working directory; :func:`min_group_size` reads it from
there on first use (:func:`configure` reads it from a given run folder), and :func:`crm_helpers.display.table` applies :func:`suppress` to every table it shows, so a chapter
cannot forget it.

Rules
- A *count cell* is a cell of a column that counts customers (:data:`COUNT_COLUMNS`, or the
  columns a caller names). A count of 1 .. k-1 is shown as ``< k``; 0 is not a disclosure and is
  shown as 0.
- A row with such a small count describes fewer than k customers: its other numeric cells (means,
  shares, rates, values) are blanked, so nothing computed from those customers is shown.
- A table whose every numeric cell is a count of customers (a cross-tabulation) is suppressed cell
  by cell (:func:`suppress` with ``cells=True``).
- For figures, :func:`merge_small` pools the groups below k into one "other" group (adding the
  next smallest groups while the pool is still below k) before anything is plotted.

- Secondary (complementary) suppression: the rows of a table usually split one population whose
  total a reader knows (all customers, all responses). A lone hidden count would then be the total
  minus the others, and two hidden counts that together are under k give away that much. So while
  the hidden counts of a column are one alone or together fewer than k customers, the smallest
  other non-zero count of that column is hidden too, shown as ``≥ k`` (true: it is at least k),
  and its row's other numeric cells are blanked (a share or rate would give the count back). In a
  cross-tabulation each row and each column gets the same treatment, repeated until none is left
  exposed or an exposed one has nothing else to hide (its other cells are 0). Tables whose rows do
  not add up to a known total (overlapping tags, separate cut-off dates, nested top shares, models
  scored on the same customers) pass ``complementary=False``. Figures use the same rule
  (:func:`hidden_groups`, :func:`merge_small`). Not done: an audit across tables (a group's size
  shown in one table can pin a cell of another).

The per-group artifacts (JSON) keep exact counts for the analysts who own the data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

#: Column names (case-insensitive) that count customers in the tables the chapters show.
COUNT_COLUMNS = frozenset(
    {
        "customers",
        "buyers",
        "churned",
        "churners",
        "merged ids",
        "customers affected",
        "responses",
        "complaints",
    }
)

DEFAULT_K = 5
_state: dict[str, int | None] = {"k": None}


def min_group_size() -> int:
    """The k in force: the configured one, else the working directory's run's, else 5."""
    if _state["k"] is None:
        configure(".")
    return _state["k"] or DEFAULT_K


def set_min_group_size(k: int) -> None:
    """Set k for this process (the chapters' kernels)."""
    if int(k) < 1:
        raise ValueError(f"privacy.min_group_size must be at least 1 (got {k})")
    _state["k"] = int(k)


def configure(run_dir: str | Path) -> int:
    """Read k from the run's ``run_info.json`` (written by the runner) and put it in force."""
    path = Path(run_dir) / "run_info.json"
    k = None
    if path.is_file():
        k = json.loads(path.read_text()).get("privacy", {}).get("min_group_size")
    set_min_group_size(DEFAULT_K if k is None else k)
    return int(_state["k"])


def _is_count(name: object) -> bool:
    return str(name).strip().lower() in COUNT_COLUMNS


def note(k: int, complements: bool, lang: str | None = None) -> str:
    """The sentence under a table (or page) where something was suppressed, in ``lang``.

    ``complements``: some counts were hidden beside small ones (``≥ k``), which it also says.
    """
    from . import i18n

    notes = [
        i18n.tr(
            "Groups of fewer than {k} customers are suppressed (`< {k}`; their other figures "
            "blank) to protect privacy.",
            lang,
            k=k,
        )
    ]
    if complements:
        notes.append(
            i18n.tr(
                "So that no hidden count can be worked out from a total, the next smallest is "
                "hidden too (`≥ {k}`).",
                lang,
                k=k,
            )
        )
    return i18n.sentences(notes, lang)


def _complement(
    values: np.ndarray,
    hidden: np.ndarray,
    k: int,
    free: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> int | None:
    """Position of the smallest shown count of at least k, or None.

    Equal counts are told apart by ``labels`` (the group names), so that two tables listing the
    same groups in different orders hide the same one; without labels, the first. With ``free``,
    candidates marked there come first (see :func:`_cross_complements`).
    """
    cand = np.flatnonzero(~hidden & (values >= k))
    if free is not None and free[cand].any():
        cand = cand[free[cand]]
    if not len(cand):
        return None
    keys = [np.arange(len(cand))]  # np.lexsort: the last key first
    if labels is not None:
        keys.append(np.asarray([str(x) for x in labels[cand]]))
    return int(cand[np.lexsort((*keys, values[cand]))[0]])


def _exposed(values: np.ndarray, hidden: np.ndarray, k: int) -> bool:
    """Whether a line's hidden cells fail to protect each other.

    A line is a column of counts, or a cross-tabulation's row or column. Its hidden cells fail when
    there is exactly one (the line's total minus the rest gives it), or several that together count
    fewer than k customers.
    """
    n = int(hidden.sum())
    return n == 1 or (n > 1 and 0 < values[hidden].sum() < k)


def hidden_groups(
    counts: Iterable[object], k: int | None = None, labels: Iterable[object] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Which groups of a partition a table or figure must hide; ``(small, complement)`` masks.

    ``small``: 1 .. k-1 customers (0 discloses nobody). ``complement``: while the hidden groups
    are exposed (one alone, or together fewer than k customers: the total minus the rest would
    give them), the smallest other group of at least k customers (equal counts: the first
    ``labels`` in sort order). A count that is not a number is neither.
    """
    k = min_group_size() if k is None else int(k)
    v = pd.to_numeric(pd.Series(list(counts), dtype=object), errors="coerce").to_numpy(float)
    v = np.nan_to_num(v, nan=0.0)
    small = (v > 0) & (v < k)
    complement = np.zeros(len(v), dtype=bool)
    names = None if labels is None else np.asarray(list(labels), dtype=object)
    while k > 1 and _exposed(v, small | complement, k):
        j = _complement(v, small | complement, k, labels=names)
        if j is None:
            break
        complement[j] = True
    return small, complement


def shown_groups(df: pd.DataFrame, count: str = "customers") -> pd.DataFrame:
    """The rows of a partition (groups named by the index) that tables and figures show.

    Those :func:`hidden_groups` does not hide: for sentences that name a group (the largest, the
    best).
    """
    small, complement = hidden_groups(df[count], labels=df.index)
    return df.loc[~(small | complement)]


def _cross_complements(values: np.ndarray, small: np.ndarray, k: int) -> np.ndarray:
    """The complementary cells of a cross-tabulation.

    Cells are added until no row or column is exposed (:func:`_exposed`) or an exposed one has
    nothing left to hide (its other cells are 0).

    A candidate whose crossing line (its column, for a row's complement) has no other non-zero
    cell is taken last: that line's total would give the candidate, and so the cell it protects,
    away.
    """
    hidden = small.copy()
    complement = np.zeros_like(small)
    nonzero = values > 0
    changed = True
    while changed:
        changed = False
        for axis in (1, 0):  # rows, then columns
            lines = hidden if axis == 1 else hidden.T
            vals = values if axis == 1 else values.T
            others = (nonzero if axis == 1 else nonzero.T).sum(axis=0) > 1  # per crossing line
            for i in range(lines.shape[0]):
                if not _exposed(vals[i], lines[i], k):
                    continue
                j = _complement(vals[i], lines[i], k, free=others)
                if j is None:
                    continue
                r, c = (i, j) if axis == 1 else (j, i)
                hidden[r, c] = complement[r, c] = True
                changed = True
                break  # lines changed: recount
            if changed:
                break
    return complement


def suppress(
    df: pd.DataFrame,
    k: int | None = None,
    *,
    counts: Iterable[str] | None = None,
    cells: bool = False,
    complementary: bool = True,
) -> tuple[pd.DataFrame, int]:
    """Suppress what describes fewer than ``k`` customers; return the table and the cells hidden.

    Parameters
    ----------
    df
        The table as it will be shown.
    k
        Minimum group size; the configured one when None.
    counts
        The columns counting customers; by default the columns named in :data:`COUNT_COLUMNS`.
    cells
        Every numeric cell is a count of customers (a cross-tabulation): suppress cell by cell.
    complementary
        The rows (and, with ``cells``, the columns) add up to totals a reader may know: protect
        hidden counts that stand alone or together count fewer than k by hiding the next smallest
        ones too (``≥ k``). False for rows that do not add up (overlapping groups, separate dates,
        unrelated figures).

    Returns
    -------
    (table, hidden)
        A copy with small counts shown as ``< k``, their complements as ``≥ k``, the other
        numeric cells of those rows blanked (None), and how many cells were changed.

    """
    k = min_group_size() if k is None else int(k)
    if k <= 1 or df.empty:
        return df, 0
    out = df.copy()
    numeric = [c for c in out.columns if pd.api.types.is_numeric_dtype(out[c])]
    if cells:
        count_cols = numeric
    else:
        count_cols = [c for c in (counts if counts is not None else out.columns) if _is_count(c)]
        count_cols = [c for c in count_cols if c in out.columns]
    if not count_cols:
        return df, 0
    values = np.column_stack(
        [pd.to_numeric(out[c], errors="coerce").fillna(0).to_numpy(float) for c in count_cols]
    )
    small = (values > 0) & (values < k)
    if not small.any():
        return df, 0
    complement = np.zeros_like(small)
    if complementary and cells:
        complement = _cross_complements(values, small, k)
    elif complementary:
        # the group names: the first text column, else the index
        names = [c for c in out.columns if c not in numeric and c not in count_cols]
        labels = out[names[0]].to_numpy() if names else out.index.to_numpy()
        for j in range(len(count_cols)):
            complement[:, j] = hidden_groups(values[:, j], k, labels)[1]
    hidden = 0
    out = out.astype(object)
    for j, c in enumerate(count_cols):
        for mask, text in ((small[:, j], f"< {k}"), (complement[:, j], f"≥ {k}")):
            out.loc[mask, c] = text
            hidden += int(mask.sum())
    if not cells:
        rows = (small | complement).any(axis=1)
        for c in [c for c in numeric if c not in count_cols]:
            mask = rows & out[c].notna().to_numpy()
            out.loc[mask, c] = None
            hidden += int(mask.sum())
    return out, hidden


def merge_small(
    df: pd.DataFrame,
    group: str,
    count: str,
    k: int | None = None,
    *,
    other: str = "other",
    sums: Iterable[str] = (),
) -> pd.DataFrame:
    """Pool the groups of fewer than ``k`` customers into one ``other`` group, for a figure.

    ``count`` and the columns in ``sums`` are added up over the pooled groups; other columns are
    left empty for the pool. While the pool has fewer than k customers the next smallest group
    joins it (so that it neither shows a small group nor, by leaving one out, lets the total minus
    the bars give it away); a pool of no customers at all is dropped.
    """
    from .i18n import tr

    k = min_group_size() if k is None else int(k)
    other = tr(other)
    small = (df[count] < k).to_numpy(copy=True)
    if not small.any():
        return df
    n_small = int(small.sum())
    # smallest first; equal counts by name, as the tables choose (:func:`_complement`)
    order = np.lexsort((df[group].astype(str).to_numpy(), df[count].to_numpy(float)))
    for i in order:
        pool_n = df[count].to_numpy()[small].sum()
        if pool_n == 0 or pool_n >= k:
            break
        small[i] = True
    keep = df.loc[~small]
    pool_n = df.loc[small, count].sum()
    if pool_n == 0:
        return keep.reset_index(drop=True)
    if pool_n < k:  # every group together is still too small: nothing can be drawn
        return df.iloc[0:0].reset_index(drop=True)
    row = {c: None for c in df.columns}
    pooled = int(small.sum())
    row[group] = (
        tr("{other} ({n} groups under {k})", other=other, n=pooled, k=k)
        if pooled == n_small
        else tr("{other} ({n} groups, {m} under {k})", other=other, n=pooled, m=n_small, k=k)
    )
    row[count] = pool_n
    for c in sums:
        row[c] = df.loc[small, c].sum()
    return pd.concat([keep, pd.DataFrame([row])], ignore_index=True)
