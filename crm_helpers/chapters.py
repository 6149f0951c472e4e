"""The chapter registry: adding a chapter is one notebook, one models module and one line here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .paths import NOTEBOOKS_DIR


@dataclass(frozen=True)
class Chapter:
    """One chapter of the report: its notebook ``notebooks/<number>-<slug>.ipynb``."""

    number: str
    slug: str
    title: str
    reads: tuple[str, ...] = ()  # artifact slugs of other chapters it reads
    uses_engine: bool = False  # runs a heavy step on the engine: gets ENGINE_PARAMETERS

    @property
    def notebook(self) -> Path:
        """The source notebook (outputs stripped)."""
        return NOTEBOOKS_DIR / f"{self.number}-{self.slug}.ipynb"

    @property
    def filename(self) -> str:
        """File name of the notebook."""
        return f"{self.number}-{self.slug}.ipynb"


CHAPTERS: tuple[Chapter, ...] = (
    Chapter("00", "data_quality", "Data quality and unified customer view"),
    Chapter("01", "profile", "Customer profile and cohorts"),
    Chapter("02", "segmentation", "Segmentation", reads=("profile",)),
    Chapter("03", "clv", "Customer lifetime value"),
    Chapter("04", "basket", "Market basket and cross-selling", uses_engine=True),
    Chapter("05", "recommendations", "Personalised recommendations"),
    Chapter("06", "churn", "Churn prediction and risk", reads=("segmentation", "clv")),
    Chapter("07", "forecast", "Sales forecast"),
    Chapter("08", "satisfaction", "Satisfaction and feedback", reads=("churn", "segmentation")),
    Chapter("99", "summary", "Executive summary and actions", reads=("*",)),
)
FIRST, LAST = "data_quality", "summary"

#: What a chapter with ``uses_engine`` receives from ``run``: the engine and the Spark session's
#: master URL (resolved) and settings.
ENGINE_PARAMETERS = ("engine", "spark_master", "spark_conf")


def by_slug(slug: str) -> Chapter:
    """The chapter with this slug."""
    for ch in CHAPTERS:
        if ch.slug == slug:
            return ch
    raise KeyError(slug)


def selected(slugs: list[str] | None) -> list[Chapter]:
    """The chapters to run, in order: all when ``slugs`` is None; 00 and 99 always."""
    if slugs is None:
        return list(CHAPTERS)
    unknown = sorted(set(slugs) - {c.slug for c in CHAPTERS})
    if unknown:
        from .errors import ParamsError

        known = ", ".join(c.slug for c in CHAPTERS)
        raise ParamsError(
            f"key 'run.chapters': unknown chapter {', '.join(unknown)} (known: {known})"
        )
    keep = set(slugs) | {FIRST, LAST}
    return [c for c in CHAPTERS if c.slug in keep]
