"""Run a report: validate, prepare, execute the chapter notebooks with papermill, render, record.

The run folder ``reports/<client>/<version>/`` receives the executed notebooks, the artifacts, the
rendered ``report.html`` / ``report.pdf`` and ``manifest.json``. ``reports/<client>/latest``
points to the newest run whose every chapter and rendering succeeded; an incomplete run never
becomes latest.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
from papermill.engines import NBClientEngine, papermill_engines

from .. import __version__
from ..chapters import FIRST, LAST, Chapter, selected
from ..config import TABLES, Params, TableSource, chapter_parameters, load_params
from ..data import prepare, pseudonym_key, pseudonymise
from ..engine import spark_master
from ..errors import DataError, RunError
from ..paths import DEMO_DATA_DIR, PROJECT_ROOT, REPORTS_DIR, RunPaths
from . import render

PACKAGES = (
    "pandas",
    "numpy",
    "duckdb",
    "pyarrow",
    "papermill",
    "nbclient",
    "ipykernel",
    "matplotlib",
    "seaborn",
    "scikit-learn",
    "statsmodels",
    "mlxtend",
    "scipy",
    "pydantic",
    "pypandoc-binary",
    "typst",
)
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"

Progress = Callable[[str], None]


# ----------------------------------------------------------------------------- papermill engine
class ProgressEngine(NBClientEngine):
    """papermill's nbclient engine that reports each cell start to a callback."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, progress=None, **kwargs):  # noqa: D102
        if progress is not None:
            total = len(nb_man.nb.cells)
            start = nb_man.cell_start

            def cell_start(cell, cell_index=None, **kw):
                progress(cell_index, total)
                return start(cell, cell_index, **kw)

            nb_man.cell_start = cell_start
        return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)


papermill_engines.register("crm-progress", ProgressEngine)


# ------------------------------------------------------------------------------------ helpers
def package_versions() -> dict[str, str]:
    """Installed versions of the packages the report depends on."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    out["python"] = sys.version.split()[0]
    return out


def git_state() -> dict[str, Any]:
    """The git revision of the product and whether its tracked files have local changes."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return {"revision": rev, "dirty": bool(dirty)}
    except (OSError, subprocess.CalledProcessError):
        return {"revision": "unknown", "dirty": None}


def demo_inputs(params: Params, progress: Progress = print) -> dict[str, TableSource]:
    """The demo tables for these params, generated once into ``demo_data/<key>/``."""
    from ..demo import GENERATOR_VERSION, generate_demo

    d = params.data.demo
    key = f"v{GENERATOR_VERSION}-c{d.customers}-l{d.lines}-s{d.seed}-{d.start_date}-{d.years}y-{'dirt' if d.dirt else 'clean'}"
    folder = DEMO_DATA_DIR / key
    if not (folder / "ground_truth.json").is_file():
        progress(
            f"generating demo data ({d.customers:,} customers, ~{d.lines:,} lines) in {folder}"
        )
        generate_demo(folder, **d.generator_kwargs())
    return {
        t: TableSource(path=folder / f"{t}.csv") for t in TABLES if (folder / f"{t}.csv").is_file()
    }


def write_planted_truth(demo_dir: Path, run: RunPaths, key: str) -> None:
    """Write the demo's planted segments (pseudonymised) and planted model parameters.

    ``prepared/planted_segments.parquet`` holds each customer's segment;
    ``prepared/planted_truth.json`` the per-segment measured rates, dropout and order values.

    Chapters compare what they recover with it (e.g. the adjusted Rand index of the clusters).
    Each true person is keyed as the data layer keys them: the pseudonym of the smallest of
    their raw ids.
    """
    import pandas as pd

    truth = json.loads((demo_dir / "ground_truth.json").read_text())
    group = {p["duplicate_id"]: p["canonical_id"] for p in truth["identity"]["pairs"]}
    smallest: dict[str, str] = {}
    for dup, canon in group.items():
        smallest[canon] = min(canon, dup, smallest.get(canon, canon))
    rows = sorted(
        (pseudonymise(smallest.get(cid, cid), key), seg)
        for cid, seg in truth["customer_segment"].items()
    )
    pd.DataFrame(rows, columns=["customer_key", "segment"]).to_parquet(
        run.prepared / "planted_segments.parquet", index=False
    )
    # The planted model parameters (no customer data): chapters check what they recover.
    planted = {
        "time_unit": truth["bgnbd"]["time_unit"],
        "segments": truth["segments"]["measured"],
        "bgnbd": truth["bgnbd"]["params"],
        "gamma_gamma": truth["gamma_gamma"]["params"],
        "product_pairs": truth["product_pairs"]["pairs"],
        "churn_drivers": [d["name"] for d in truth["churn"]["drivers"]],
        "satisfaction": {k: truth["satisfaction"]["model"][k] for k in ("type", "channel")},
        "seasonality": {
            "weekday_factors": truth["seasonality"]["weekday_factors"],
            "yearly": truth["seasonality"]["yearly"],
            "trend": truth["seasonality"]["trend"]["activity_trend"],
        },
    }
    (run.prepared / "planted_truth.json").write_text(json.dumps(planted, indent=1, sort_keys=True))


def input_sources(params: Params, progress: Progress = print) -> dict[str, TableSource]:
    """Table name -> source for this run (demo or client files)."""
    if params.data.source == "demo":
        return demo_inputs(params, progress)
    return {t: getattr(params.data, t) for t in TABLES if getattr(params.data, t) is not None}


def check_notebook_parameters(chapters: list[Chapter], params: Params) -> None:
    """Refuse keys a notebook does not declare (papermill itself only warns)."""
    for ch in chapters:
        if not ch.notebook.is_file():
            raise RunError(f"{ch.notebook}: chapter notebook missing")
        declared = set(pm.inspect_notebook(str(ch.notebook)))
        given = set(notebook_parameters(ch, params, Path("."))) - declared
        if given:
            raise RunError(
                f"{ch.notebook.name}: parameters {', '.join(sorted(given))} are not declared in its "
                "'parameters' cell (chapters.<slug> in params must match the notebook)"
            )


def notebook_parameters(ch: Chapter, params: Params, run_dir: Path) -> dict[str, Any]:
    """What papermill injects into a chapter: the run folder and its ``chapters.<slug>`` block.

    A chapter that ``uses_engine`` also gets the engine and the Spark master and settings.
    """
    engine: dict[str, Any] = {}
    if ch.uses_engine:
        engine = {
            "engine": params.run.engine,
            "spark_master": spark_master(params.run.spark.master),
            "spark_conf": {k: str(v) for k, v in params.run.spark.conf.items()},
        }
    base = {"run_dir": str(run_dir), "seed": params.seed}
    return base | engine | chapter_parameters(params, ch.slug)


def _strip_volatile(path: Path) -> None:
    """Make an executed notebook reviewable and renderable by Quarto.

    Removes papermill's timestamps (reruns then diff only on real changes) and tags the parameter
    cells ``remove-cell`` so that Quarto hides them as the fallback renderer does.
    """
    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("papermill", {})
    for k in ("start_time", "end_time", "duration", "input_path", "output_path"):
        meta.pop(k, None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        tags = cell.metadata.get("tags", [])
        if ("parameters" in tags or "injected-parameters" in tags) and "remove-cell" not in tags:
            # Quarto's Jupyter reader maps the remove-cell tag to include: false.
            cell.metadata["tags"] = [*tags, "remove-cell"]
        pmeta = cell.metadata.get("papermill")
        if pmeta:
            for k in ("start_time", "end_time", "duration"):
                pmeta.pop(k, None)
    nbformat.write(nb, path)


def _error_of(path: Path) -> str:
    """The first error output (ename: evalue) of an executed notebook."""
    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError):
        return "notebook could not be read"
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"{out.get('ename')}: {out.get('evalue')}"
    return "unknown error"


# --------------------------------------------------------------------------------------- run
@dataclass
class RunResult:
    """What a run produced."""

    run_dir: Path
    manifest: dict[str, Any]
    ok: bool


class _Printer:
    """Thread-safe progress lines: ``[00 data_quality] cell 3/12``."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.lock = threading.Lock()
        self.last: dict[str, int] = {}

    def __call__(self, text: str) -> None:
        with self.lock:
            self.progress(text)

    def cell(self, ch: Chapter) -> Callable[[int, int], None]:
        def report(index: int, total: int) -> None:
            self(f"[{ch.number} {ch.slug}] cell {index + 1}/{total}")

        return report


def execute_chapter(
    ch: Chapter, params: Params, run: RunPaths, printer: _Printer
) -> dict[str, Any]:
    """Execute one chapter notebook with papermill; never raises for a failing notebook."""
    out = run.notebooks / ch.filename
    t0 = time.perf_counter()
    printer(f"[{ch.number} {ch.slug}] started")
    status, error = "ok", None
    try:
        pm.execute_notebook(
            str(ch.notebook),
            str(out),
            parameters=notebook_parameters(ch, params, run.root),
            engine_name="crm-progress",
            progress=printer.cell(ch),
            kernel_name="python3",
            progress_bar=False,
            cwd=str(run.root),
            execution_timeout=params.run.cell_timeout_seconds,
        )
    except pm.PapermillExecutionError as exc:
        status, error = "failed", f"{exc.ename}: {exc.evalue}"
    except Exception as exc:  # kernel death, timeout: the chapter fails, the run goes on
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    if out.is_file():
        _strip_volatile(out)
        if status == "failed" and error and error.startswith("PapermillExecutionError"):
            error = _error_of(out)
    seconds = round(time.perf_counter() - t0, 2)
    printer(
        f"[{ch.number} {ch.slug}] {status} in {seconds:.1f} s" + (f": {error}" if error else "")
    )
    return {
        "slug": ch.slug,
        "number": ch.number,
        "title": ch.title,
        "status": status,
        "seconds": seconds,
        "error": error,
    }


def waves(chapters: list[Chapter]) -> list[list[Chapter]]:
    """Group chapters into waves that can run in parallel: each after those it reads."""
    slugs = {c.slug for c in chapters}
    done: set[str] = set()
    todo = list(chapters)
    out = []
    while todo:
        ready = [c for c in todo if not (set(c.reads) & slugs) - done]
        if not ready:  # a cycle: run the rest together rather than never
            ready = todo
        out.append(ready)
        done |= {c.slug for c in ready}
        todo = [c for c in todo if c not in ready]
    return out


def new_version(params: Params, client_dir: Path) -> str:
    """The run's version: ``report.version`` or the UTC time; never an existing folder."""
    if params.report.version:
        version = params.report.version
        if (client_dir / version).exists():
            raise RunError(
                f"{client_dir / version}: report version already exists (key 'report.version'); "
                "choose another version or set it to null for a timestamp"
            )
        return version
    base = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    version, n = base, 1
    while (client_dir / version).exists():
        n += 1
        version = f"{base}-{n}"
    return version


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def _point_latest(client_dir: Path, version: str) -> None:
    link = client_dir / "latest"
    tmp = client_dir / f".latest-{version}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(version, target_is_directory=True)
    os.replace(tmp, link)


def run_report(
    params_path: str | Path | None = None,
    *,
    workers: int | None = None,
    renderer: str | None = None,
    reports_dir: Path = REPORTS_DIR,
    progress: Progress = print,
    params: Params | None = None,
) -> RunResult:
    """Build one report run end to end.

    Parameters
    ----------
    params_path
        The client's params file (None = ``params/default.yml``, the demo).
    workers
        Chapters executed in parallel (overrides ``run.workers``).
    renderer
        ``auto``, ``quarto`` or ``pandoc`` (overrides ``report.renderer``).
    reports_dir
        Where ``<client>/<version>/`` is written.
    progress
        Receives one line of progress at a time.
    params
        Already validated parameters (then ``params_path`` is only recorded).

    Returns
    -------
    RunResult
        ``ok`` is False when a chapter or the rendering failed (then ``latest`` is unchanged).

    """
    started = time.perf_counter()
    params = params or load_params(params_path)
    workers = workers or params.run.workers
    renderer = renderer or params.report.renderer
    chapters = selected(params.run.chapters)
    check_notebook_parameters(chapters, params)
    os.environ["MPLBACKEND"] = INLINE_BACKEND  # kernels inherit it: figures render inline

    client_dir = reports_dir / params.client
    client_dir.mkdir(parents=True, exist_ok=True)
    version = new_version(params, client_dir)
    run = RunPaths(client_dir / version).make()
    printer = _Printer(progress)
    printer(f"run {params.client}/{version} -> {run.root}")
    manifest: dict[str, Any] = {
        "client": params.client,
        "version": version,
        "status": "running",
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "params_file": str(params_path) if params_path else "params/default.yml",
        "params": params.model_dump(mode="json"),
        "params_sha256": params.fingerprint(),
        "packages": package_versions(),
        "crm_helpers_version": __version__,
        "git": git_state(),
        "renderer": None,
        "chapters": [],
        "timings": {},
    }
    _write_json(run.manifest, manifest)

    t0 = time.perf_counter()
    inputs = input_sources(params, printer)
    manifest["timings"]["inputs"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    engine = {"duckdb": "DuckDB", "spark": "Spark"}[params.run.engine]
    printer(f"preparing data ({engine}): load, validate, quarantine, identities, features")
    try:
        prep = prepare(params, inputs, run)
    except DataError:
        manifest["status"] = "failed"
        manifest["error"] = "data preparation failed"
        _write_json(run.manifest, manifest)
        raise
    if params.data.source == "demo":
        write_planted_truth(inputs["transactions"].path.parent, run, pseudonym_key(params))
    manifest["timings"]["prepare"] = round(time.perf_counter() - t0, 2)
    manifest["timings"]["prepare_steps"] = prep.seconds
    manifest["inputs"] = prep.inputs
    manifest["reconciliation"] = prep.reconciliation
    manifest["reference_date"] = prep.reference_date
    manifest["period"] = prep.period
    manifest["identity"] = prep.identity
    printer(
        "prepared: "
        + "; ".join(
            f"{t} {r['kept']:,} kept / {r['input']:,}" for t, r in prep.reconciliation.items()
        )
    )
    _write_json(
        run.root / "run_info.json",
        {
            k: manifest[k]
            for k in (
                "client",
                "version",
                "params_sha256",
                "packages",
                "crm_helpers_version",
                "git",
                "inputs",
                "period",
                "reference_date",
            )
        },
    )

    # 00 first, independent chapters in parallel, 99 last.
    first = [c for c in chapters if c.slug == FIRST]
    middle = [c for c in chapters if c.slug not in (FIRST, LAST)]
    last = [c for c in chapters if c.slug == LAST]
    results: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for ch in first:
        results[ch.slug] = execute_chapter(ch, params, run, printer)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for wave in waves(middle):  # a chapter runs after the chapters whose artifacts it reads
            for ch, res in zip(
                wave,
                pool.map(lambda c: execute_chapter(c, params, run, printer), wave),
                strict=True,
            ):
                results[ch.slug] = res
    # What the summary may know of the other chapters (no timings: artifacts stay reproducible).
    status = [
        {k: results[c.slug][k] for k in ("slug", "title", "status", "error")}
        for c in first + middle
    ]
    _write_json(run.artifacts / "_status.json", {"chapters": status})
    for ch in last:
        results[ch.slug] = execute_chapter(ch, params, run, printer)
    manifest["chapters"] = [results[c.slug] for c in chapters]
    manifest["timings"]["chapters"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    printer(f"rendering ({renderer})")
    try:
        used = render.render_report(run, params, manifest, renderer=renderer)
        manifest["renderer"] = used
        render_error = None
    except Exception as exc:  # noqa: BLE001  the run is recorded as failed, never as latest
        render_error = f"{type(exc).__name__}: {exc}"
        printer(f"rendering failed: {render_error}")
    manifest["timings"]["render"] = round(time.perf_counter() - t0, 2)
    manifest["timings"]["total"] = round(time.perf_counter() - started, 2)

    failed = [c["slug"] for c in manifest["chapters"] if c["status"] != "ok"]
    ok = not failed and render_error is None
    manifest["status"] = "complete" if ok else "failed"
    if render_error:
        manifest["render_error"] = render_error
    _write_json(run.manifest, manifest)
    if ok:
        _point_latest(client_dir, version)
        printer(f"done in {manifest['timings']['total']:.1f} s: {run.html} and {run.pdf}")
    else:
        printer(
            f"run incomplete ({'chapters failed: ' + ', '.join(failed) if failed else render_error}); "
            f"reports/{params.client}/latest unchanged"
        )
    return RunResult(run_dir=run.root, manifest=manifest, ok=ok)
