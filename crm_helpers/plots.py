"""Plot helpers: one theme and a colour-blind-safe palette.

Each helper takes ``ax=None`` and returns the Axes; none calls ``plt.show()`` or sets a backend.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.figure import Figure

#: Okabe-Ito, the colour-blind-safe qualitative palette.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
#: Reference lines, diagonals and error bars: a neutral grey (greys are always allowed).
NEUTRAL = "#808080"
#: Colour maps for ordered values: perceptually uniform and readable with colour-vision deficiency.
SEQUENTIAL = "viridis"
#: Diverging map (below / above a centre) built from the palette: blue - white - orange.
DIVERGING = mcolors.LinearSegmentedColormap.from_list(
    "crm_diverging", [PALETTE[0], "#FFFFFF", PALETTE[1]]
)
#: Colour maps an image or heatmap of the report may use.
ALLOWED_CMAPS = frozenset({"viridis", "cividis", "crm_diverging"})


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


def _allowed_rgb() -> list[tuple[float, float, float]]:
    return [mcolors.to_rgb(c) for c in PALETTE]


def off_palette(fig: Figure, tol: float = 0.02) -> list[str]:
    """Colours drawn in ``fig`` that are neither the palette, a grey nor an allowed colour map.

    Lines, markers, bars, patches, scatter points and filled areas are compared with
    :data:`PALETTE` (RGB within ``tol``; transparency is ignored, invisible elements skipped);
    images and heatmaps must use a map of :data:`ALLOWED_CMAPS`.

    Returns
    -------
    list of str
        Sorted hex codes of the offending colours, and ``cmap:<name>`` for a disallowed map.

    """
    from matplotlib.collections import Collection
    from matplotlib.image import AxesImage
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    allowed = _allowed_rgb()
    bad: set[str] = set()

    def check(rgba) -> None:
        r, g, b, a = mcolors.to_rgba(rgba)
        if a == 0 or (abs(r - g) < tol and abs(g - b) < tol):  # invisible, or a grey/white/black
            return
        if not any(max(abs(r - x), abs(g - y), abs(b - z)) <= tol for x, y, z in allowed):
            bad.add(mcolors.to_hex((r, g, b)))

    for ax in fig.axes:
        for art in ax.get_children():
            if not art.get_visible():
                continue
            if isinstance(art, AxesImage) or (
                isinstance(art, Collection) and art.get_array() is not None
            ):
                name = art.get_cmap().name
                if name not in ALLOWED_CMAPS and name.removesuffix("_r") not in ALLOWED_CMAPS:
                    bad.add(f"cmap:{name}")
                continue
            if isinstance(art, Line2D):
                if art.get_linestyle() not in ("None", "none", "", " "):
                    check(art.get_color())
                if art.get_marker() not in (None, "None", "none", ""):
                    check(art.get_markerfacecolor())
            elif isinstance(art, Patch) and art is not ax.patch:
                check(art.get_facecolor())
                if art.get_linewidth():
                    check(art.get_edgecolor())
            elif isinstance(art, Collection):
                for c in [*art.get_facecolors(), *(art.get_edgecolors() if any(art.get_linewidths()) else [])]:
                    check(c)
    return sorted(bad)


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
