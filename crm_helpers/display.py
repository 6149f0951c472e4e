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

from . import i18n, privacy

#: MIME type of the output that carries a figure's computed takeaway sentence to the runner, which
#: folds it into the cell's ``#| fig-cap`` and removes it (:mod:`crm_helpers.report.captions`).
TAKEAWAY_MIME = "application/vnd.crm-takeaway+json"


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
    complementary: bool = True,
) -> Markdown:
    """A data frame as a Markdown pipe table (at most ``max_rows`` rows, noted when cut).

    Small groups are suppressed first (:func:`crm_helpers.privacy.suppress`): counts of customers
    below ``privacy.min_group_size`` show as ``< k`` and the rest of their row is blanked.
    ``counts`` names the columns counting customers when they are not among
    :data:`crm_helpers.privacy.COUNT_COLUMNS`; ``cells=True`` marks a cross-tabulation of counts.
    When the hidden counts of a column (or of a cross-tabulation's row or column) are one alone or
    together fewer than k, the next smallest is hidden too (``≥ k``), so that the total minus the
    rest does not give them away; ``complementary=False`` for tables whose rows do not add up.
    """
    df, hidden = privacy.suppress(df, counts=counts, cells=cells, complementary=complementary)
    df = df.rename(columns=i18n.header)  # after suppression: it recognises the English headers
    shown = df.head(max_rows)
    shown = shown.astype(object).where(shown.notna(), None)  # tabulate shows None as missingval
    text = shown.to_markdown(index=index, floatfmt=floatfmt, intfmt=",", missingval="–")
    if caption:
        text += f"\n\n: {caption}"
    if len(df) > max_rows:
        text += "\n\n*" + i18n.tr("First {shown} of {rows:,} rows.", shown=max_rows, rows=len(df)) + "*"
    if hidden:
        k = privacy.min_group_size()
        complements = bool(df.isin([f"≥ {k}"]).to_numpy().any())
        text += "\n\n*" + privacy.note(k, complements) + "*"
    return Markdown(text)


def say(text: str) -> Markdown:
    """A sentence or paragraph of Markdown computed from data."""
    return Markdown(text)


def takeaway(text: str) -> None:
    """Show a figure's computed takeaway sentence; the runner appends it to the cell's fig-cap.

    Call it in the figure's cell, before ``plt.show()``, with a sentence computed from the data
    (build it with :func:`crm_helpers.i18n.tr`, so that it is in the report's language). The
    output also lists the colours of the open figures outside the report's palette
    (:func:`crm_helpers.plots.off_palette`), which the runner keeps in the cell's metadata.
    """
    import matplotlib.pyplot as plt
    from IPython.display import display

    from .plots import off_palette

    off = sorted({c for n in plt.get_fignums() for c in off_palette(plt.figure(n))})
    display({TAKEAWAY_MIME: {"text": text, "off_palette": off}, "text/plain": text}, raw=True)


def not_available(chapter: str, needs: str) -> Markdown:
    """The short page a chapter shows when its inputs are absent or too thin."""
    return Markdown(
        i18n.tr(
            "**{chapter} is not available for this data.** It needs {needs}. No numbers are "
            "shown rather than numbers we cannot stand behind.",
            chapter=i18n.tr(chapter),
            needs=needs,
        )
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
