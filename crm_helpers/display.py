"""What a chapter shows: tables and sentences as Markdown.

Both renderers turn Markdown into real tables (HTML and PDF), and it diffs cleanly in executed
notebooks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from IPython.display import Markdown

from . import privacy


def fmt_num(value: Any, digits: int = 0) -> str:
    """A number with thousands separators (``12,345``; ``12.3`` with ``digits=1``)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def fmt_pct(value: float | None, digits: int = 1) -> str:
    """A share as a percentage (``0.123`` -> ``12.3 %``)."""
    if value is None or pd.isna(value):
        return "n/a"
    return f"{100 * value:.{digits}f} %"


def table(
    df: pd.DataFrame,
    *,
    caption: str | None = None,
    index: bool = False,
    floatfmt: str | Sequence[str] = ",.2f",
    max_rows: int = 30,
    counts: Sequence[str] | None = None,
    cells: bool = False,
) -> Markdown:
    """A data frame as a Markdown pipe table (at most ``max_rows`` rows, noted when cut).

    Small groups are suppressed first (:func:`crm_helpers.privacy.suppress`): counts of customers
    below ``privacy.min_group_size`` show as ``< k`` and the rest of their row is blanked.
    ``counts`` names the columns counting customers when they are not among
    :data:`crm_helpers.privacy.COUNT_COLUMNS`; ``cells=True`` marks a cross-tabulation of counts.
    """
    df, hidden = privacy.suppress(df, counts=counts, cells=cells)
    shown = df.head(max_rows)
    shown = shown.astype(object).where(shown.notna(), None)  # tabulate shows None as missingval
    text = shown.to_markdown(index=index, floatfmt=floatfmt, intfmt=",", missingval="–")
    if caption:
        text += f"\n\n: {caption}"
    if len(df) > max_rows:
        text += f"\n\n*First {max_rows} of {len(df):,} rows.*"
    if hidden:
        k = privacy.min_group_size()
        text += (
            f"\n\n*Groups of fewer than {k} customers are suppressed (`< {k}`; their other "
            "figures blank) to protect privacy.*"
        )
    return Markdown(text)


def say(text: str) -> Markdown:
    """A sentence or paragraph of Markdown computed from data."""
    return Markdown(text)


def not_available(chapter: str, needs: str) -> Markdown:
    """The short page a chapter shows when its inputs are absent or too thin."""
    return Markdown(
        f"**{chapter} is not available for this data.** It needs {needs}. "
        "No numbers are shown rather than numbers we cannot stand behind."
    )


def provenance(run_dir: str | Path) -> Markdown:
    """A compact provenance note: package versions, git revision, parameter and data fingerprints."""
    info = json.loads((Path(run_dir) / "run_info.json").read_text())
    git = info["git"]
    state = "uncommitted changes" if git.get("dirty") else "clean"
    inputs = ", ".join(f"{t} {d['sha256'][:12]}" for t, d in sorted(info["inputs"].items()))
    packages = ", ".join(f"{k} {v}" for k, v in sorted(info["packages"].items()))
    return Markdown(
        f"*Provenance: crm_helpers {info['crm_helpers_version']}, git {git['revision'][:12]} "
        f"({state}); params sha256 {info['params_sha256'][:12]}; input sha256: {inputs}; "
        f"packages: {packages}.*"
    )
