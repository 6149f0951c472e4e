"""Every path the product uses, derived from one project root (Cookiecutter Data Science style)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = Path(os.environ.get("CRM_PROJECT_ROOT", PACKAGE_DIR.parent)).resolve()
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
PARAMS_DIR = PROJECT_ROOT / "params"
REPORTS_DIR = PROJECT_ROOT / "reports"
DEMO_DATA_DIR = PROJECT_ROOT / "demo_data"
QUARTO_PROJECT_FILE = PROJECT_ROOT / "_quarto.yml"
ASSETS_DIR = PACKAGE_DIR / "report" / "assets"
DEFAULT_PARAMS = PARAMS_DIR / "default.yml"


@dataclass(frozen=True)
class RunPaths:
    """The layout of one report run folder, ``reports/<client>/<version>/``."""

    root: Path

    @property
    def prepared(self) -> Path:
        """Canonical tables and per-customer features (Parquet), written by the data layer."""
        return self.root / "prepared"

    @property
    def quarantine(self) -> Path:
        """Rows that could not be used, one Parquet file per table, each with its reason."""
        return self.root / "quarantine"

    @property
    def artifacts(self) -> Path:
        """Chapter results: ``<slug>.json`` and ``<slug>.parquet``."""
        return self.root / "artifacts"

    @property
    def notebooks(self) -> Path:
        """Executed chapter notebooks."""
        return self.root / "notebooks"

    @property
    def manifest(self) -> Path:
        """The run's manifest."""
        return self.root / "manifest.json"

    @property
    def html(self) -> Path:
        """The self-contained HTML report."""
        return self.root / "report.html"

    @property
    def pdf(self) -> Path:
        """The PDF report."""
        return self.root / "report.pdf"

    def make(self) -> RunPaths:
        """Create the folders of the run and return self."""
        for d in (self.prepared, self.quarantine, self.artifacts, self.notebooks):
            d.mkdir(parents=True, exist_ok=True)
        return self
