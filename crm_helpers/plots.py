"""Plot helpers: one theme and a colour-blind-safe palette.

Each helper takes ``ax=None`` and returns the Axes; none calls ``plt.show()`` or sets a backend.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

#: Okabe-Ito, the colour-blind-safe qualitative palette.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def set_theme() -> None:
    """Apply the report's theme (call once, in a notebook's hidden set-up cell)."""
    sns.set_theme(style="whitegrid", palette=PALETTE, font_scale=0.95)
    plt.rcParams.update(
        {
            "figure.figsize": (7.5, 3.6),
            "figure.dpi": 110,
            "savefig.dpi": 110,
            "font.family": ["DejaVu Sans", "Noto Sans CJK SC", "sans-serif"],
            "axes.titleweight": "bold",
            "svg.hashsalt": "crm-report",
        }
    )


def _ax(ax: Axes | None) -> Axes:
    return ax if ax is not None else plt.subplots()[1]


def bar(
    series: pd.Series,
    *,
    ax: Axes | None = None,
    title: str = "",
    xlabel: str = "",
    horizontal: bool = True,
    color: str = PALETTE[0],
) -> Axes:
    """Bars of a labelled series (largest first when horizontal)."""
    ax = _ax(ax)
    s = series.sort_values() if horizontal else series
    (s.plot.barh if horizontal else s.plot.bar)(ax=ax, color=color)
    ax.set_title(title)
    ax.set_xlabel(xlabel) if horizontal else ax.set_ylabel(xlabel)
    ax.set_ylabel("") if horizontal else ax.set_xlabel("")
    return ax


def time_series(
    frame: pd.DataFrame, *, ax: Axes | None = None, title: str = "", ylabel: str = ""
) -> Axes:
    """One line per column of a frame indexed by date."""
    ax = _ax(ax)
    for i, col in enumerate(frame.columns):
        ax.plot(frame.index, frame[col], label=str(col), color=PALETTE[i % len(PALETTE)])
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if frame.shape[1] > 1:
        ax.legend(frameon=False)
    ax.figure.autofmt_xdate()
    return ax
