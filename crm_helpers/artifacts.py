"""Chapter results: the one way a chapter saves its numbers, and the one way others read them.

``save`` writes ``artifacts/<slug>.json`` (plain JSON numbers and strings, keys sorted, floats
rounded to 10 significant digits so reruns compare byte for byte) and, optionally, a table
``artifacts/<slug>.parquet`` (one row per pseudonymised customer, rows sorted).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SLUGS = (
    "data_quality",
    "profile",
    "segmentation",
    "clv",
    "basket",
    "recommendations",
    "churn",
    "forecast",
    "satisfaction",
    "summary",
)


def _plain(value: Any) -> Any:
    """Convert numpy / pandas / datetime values into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(f"{value:.10g}")
    if isinstance(value, dt.datetime | dt.date | pd.Timestamp):
        return value.isoformat()
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def save(
    run_dir: str | Path, slug: str, data: dict[str, Any], table: pd.DataFrame | None = None
) -> Path:
    """Save a chapter's key figures (and optional per-customer table) as its artifact.

    Parameters
    ----------
    run_dir
        The run folder.
    slug
        The chapter's artifact name (one of ``SLUGS``).
    data
        Key figures: JSON-able after numpy/pandas scalars are converted.
    table
        Optional table, sorted by its first column before writing.

    Returns
    -------
    Path
        The JSON file written.

    """
    if slug not in SLUGS:
        raise ValueError(f"unknown artifact slug {slug!r}; expected one of {', '.join(SLUGS)}")
    folder = Path(run_dir) / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{slug}.json"
    path.write_text(json.dumps(_plain(data), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    if table is not None:
        t = table.sort_values(list(table.columns[:1])).reset_index(drop=True)
        t.to_parquet(folder / f"{slug}.parquet", index=False)
    return path


def load(run_dir: str | Path, slug: str) -> dict[str, Any] | None:
    """Read a chapter's key figures; None when the chapter did not produce them."""
    path = Path(run_dir) / "artifacts" / f"{slug}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def load_table(run_dir: str | Path, slug: str) -> pd.DataFrame | None:
    """Read a chapter's per-customer table; None when absent."""
    path = Path(run_dir) / "artifacts" / f"{slug}.parquet"
    return pd.read_parquet(path) if path.is_file() else None
