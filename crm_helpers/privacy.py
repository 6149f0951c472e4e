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
- For figures, :func:`merge_small` pools the groups below k into one "other" group (and drops it
  when even the pool is below k) before anything is plotted.

What this does not do: secondary suppression. Where a table also shows a total, a suppressed count
can sometimes be recovered by subtraction; tables here show shares of the whole rather than
complements, and the per-group artifacts (JSON) keep exact counts for the analysts who own the data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

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


def _small(value: object, k: int) -> bool:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return 0 < v < k


def suppress(
    df: pd.DataFrame,
    k: int | None = None,
    *,
    counts: Iterable[str] | None = None,
    cells: bool = False,
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

    Returns
    -------
    (table, hidden)
        A copy with small counts shown as ``< k`` and the other numeric cells of their rows blanked
        (None), and how many cells were changed.

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
    small = pd.DataFrame({c: out[c].map(lambda v: _small(v, k)) for c in count_cols})
    rows = small.any(axis=1)
    if not rows.any():
        return df, 0
    hidden = 0
    out = out.astype(object)
    for c in count_cols:
        mask = small[c]
        out.loc[mask, c] = f"< {k}"
        hidden += int(mask.sum())
    if not cells:
        values = [c for c in numeric if c not in count_cols]
        for c in values:
            mask = rows & out[c].notna()
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
    left empty for the pool. The pool itself is dropped when it still has fewer than k customers.
    """
    k = min_group_size() if k is None else int(k)
    small = df[count] < k
    if not small.any():
        return df
    keep = df.loc[~small]
    pool_n = df.loc[small, count].sum()
    if pool_n < k:
        return keep.reset_index(drop=True)
    row = {c: None for c in df.columns}
    row[group] = f"{other} ({int(small.sum())} groups under {k})"
    row[count] = pool_n
    for c in sums:
        row[c] = df.loc[small, c].sum()
    return pd.concat([keep, pd.DataFrame([row])], ignore_index=True)
