"""Run a report: validate, prepare, execute the chapter notebooks with papermill, render, record.

The run folder ``reports/<client>/<version>/`` receives the executed notebooks, the artifacts, the
rendered ``report.html`` / ``report.pdf`` and ``manifest.json``. ``reports/<client>/latest``
points to the newest run whose every chapter and rendering succeeded; an incomplete run never
becomes latest.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import importlib.metadata as md
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
from nbclient.exceptions import DeadKernelError
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.log import logger as pm_logger
from papermill.utils import merge_kwargs, remove_args

from .. import __version__, actions
from ..chapters import FIRST, LAST, Chapter, selected
from ..config import TABLES, Params, TableSource, chapter_parameters, load_params
from ..data import (
    engine_connection,
    prepare,
    pseudonym_key,
    pseudonymise,
    real_ids,
    require_usable,
)
from ..engine import spark_master
from ..errors import CRMError, DataError, RunError, RunInterrupted
from ..paths import DEMO_DATA_DIR, PROJECT_ROOT, REPORTS_DIR, RunPaths
from . import browser, diff, faults, localize, render, reuse

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
    """papermill's nbclient engine that reports each cell start and the kernel it starts.

    ``progress(cell_index, total)`` is called as each cell starts; ``on_kernel(km)`` once the
    kernel runs, so that the run can stop it (a chapter past its timeout, a signal).
    """

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, progress=None, on_kernel=None, **kwargs):  # noqa: D102
        if progress is not None:
            total = len(nb_man.nb.cells)
            start = nb_man.cell_start

            def cell_start(cell, cell_index=None, **kw):
                progress(cell_index, total)
                return start(cell, cell_index, **kw)

            nb_man.cell_start = cell_start
        return WatchedClient(
            nb_man, on_kernel=on_kernel, **_client_kwargs(kernel_name, **kwargs)
        ).execute()


class WatchedClient(PapermillNotebookClient):
    """papermill's notebook client that hands its kernel manager to ``on_kernel`` once started."""

    def __init__(self, nb_man, on_kernel=None, **kw):
        super().__init__(nb_man, **kw)
        self._on_kernel = on_kernel

    def start_new_kernel(self, **kw):  # noqa: D102  nbclient's setup_kernel calls this one
        super().start_new_kernel(**kw)
        if self._on_kernel is not None:
            self._on_kernel(self.km)


def _client_kwargs(
    kernel_name,
    log_output=False,
    stdout_file=None,
    stderr_file=None,
    start_timeout=60,
    execution_timeout=None,
    **kwargs,
):
    """The notebook client's arguments, as papermill's ``NBClientEngine`` (2.7) builds them."""
    kwargs = remove_args(["input_path"], **kwargs)
    safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
    return merge_kwargs(
        safe_kwargs,
        timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
        startup_timeout=start_timeout,
        kernel_name=kernel_name,
        log=pm_logger,
        log_output=log_output,
        stdout_file=stdout_file,
        stderr_file=stderr_file,
    )


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

    Removes papermill's timestamps and the injected cell's random id (two runs of the same data
    and params then give byte-identical notebooks, and reruns diff only on real changes), tags
    the parameter cells ``remove-cell`` so that Quarto hides them as the fallback renderer does,
    and folds each figure's computed takeaway into its ``#| fig-cap``
    (:func:`localize.fold_takeaways`).
    """
    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("papermill", {})
    for k in ("start_time", "end_time", "duration", "input_path", "output_path"):
        meta.pop(k, None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:
            cell["id"] = "injected-parameters"  # papermill gives it a random id on every run
        if ("parameters" in tags or "injected-parameters" in tags) and "remove-cell" not in tags:
            # Quarto's Jupyter reader maps the remove-cell tag to include: false.
            cell.metadata["tags"] = [*tags, "remove-cell"]
        pmeta = cell.metadata.get("papermill")
        if pmeta:
            for k in ("start_time", "end_time", "duration"):
                pmeta.pop(k, None)
    localize.fold_takeaways(nb)
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
    ch: Chapter,
    params: Params,
    run: RunPaths,
    printer: _Printer,
    kernels: faults.Kernels | None = None,
) -> dict[str, Any]:
    """Execute one chapter notebook with papermill; never raises for a failing notebook.

    The result's ``reason`` says why a chapter failed: ``error`` (a cell raised), ``kernel_died``
    (the kernel process exited or was killed), ``timeout`` (stopped after
    ``run.chapter_timeout_seconds``), ``interrupted`` (the run got SIGINT or SIGTERM) or
    ``no_space`` (the disk is full).
    """
    kernels = kernels or faults.Kernels()
    out = run.notebooks / ch.filename
    t0 = time.perf_counter()
    status, reason, error = "ok", None, None
    if kernels.stopping:  # the run is stopping: do not start another kernel
        return _chapter_result(
            ch, "failed", kernels.stopping, "not started: the run was stopped", 0.0
        )
    printer(f"[{ch.number} {ch.slug}] started")
    cell = [0, 0]  # the cell running (1-based) and the number of cells
    report_cell = printer.cell(ch)

    def progress(index: int, total: int) -> None:
        cell[:] = [index + 1, total]
        report_cell(index, total)

    try:
        pm.execute_notebook(
            localize.source_notebook(ch.notebook, params.report.language),
            str(out),
            # The kernel runs in the run folder: "." keeps the executed notebook free of its path.
            parameters=notebook_parameters(ch, params, Path(".")),
            engine_name="crm-progress",
            progress=progress,
            on_kernel=lambda km: kernels.started(ch.slug, km),
            kernel_name="python3",
            progress_bar=False,
            cwd=str(run.root),
            # papermill's cwd is a process-wide chdir, which chapters on parallel threads undo
            # for each other; nbclient starts the kernel in this folder whatever the process's.
            resources={"metadata": {"path": str(run.root)}},
            execution_timeout=params.run.cell_timeout_seconds,
        )
    except pm.PapermillExecutionError as exc:
        status, reason, error = "failed", "error", f"{exc.ename}: {exc.evalue}"
    except DeadKernelError as exc:
        status, reason, error = "failed", "kernel_died", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001  cell timeout, papermill I/O: the chapter fails, the run goes on
        status, reason, error = "failed", "error", f"{type(exc).__name__}: {exc}"
        if faults.is_no_space(exc):
            reason, error = (
                "no_space",
                f"{getattr(exc, 'filename', None) or out}: no space left on device",
            )
    finally:
        kernels.finished(ch.slug)
    stopped = kernels.reason(ch.slug) if status == "failed" else None
    seconds = round(time.perf_counter() - t0, 2)
    if stopped == "timeout":
        reason = "timeout"
        error = (
            f"timed out after {params.run.chapter_timeout_seconds} s "
            "(key 'run.chapter_timeout_seconds'); the chapter's kernel was stopped"
        )
    elif stopped:  # the whole run is stopping: a signal, a full disk
        why = {"interrupted": "interrupted", "no_space": "out of disk space"}.get(
            stopped, "stopped"
        )
        reason, error = stopped, f"stopped: the run was {why}"
    elif reason == "kernel_died":
        error = (
            "the kernel died (its Python process exited or was killed, e.g. out of memory or "
            f"os._exit) in cell {cell[0]} of {cell[1]}"
        )
    try:
        if out.is_file():
            _strip_volatile(out)
            if reason == "error" and error and error.startswith("PapermillExecutionError"):
                error = _error_of(out)
    except OSError as exc:  # the notebook could not be rewritten (a full disk): say so
        if faults.is_no_space(exc) and reason is None:
            status, reason, error = "failed", "no_space", f"{out}: no space left on device"
    if reason == "error" and faults.is_no_space(error):  # a cell's write failed
        reason, error = "no_space", f"{run.root}: no space left on device (in a cell: {error})"
    printer(
        f"[{ch.number} {ch.slug}] {status} in {seconds:.1f} s" + (f": {error}" if error else "")
    )
    return _chapter_result(ch, status, reason, error, seconds)


def _chapter_result(
    ch: Chapter, status: str, reason: str | None, error: str | None, seconds: float
) -> dict[str, Any]:
    return {
        "slug": ch.slug,
        "number": ch.number,
        "title": ch.title,
        "status": status,
        "reason": reason,
        "seconds": seconds,
        "error": error,
    }


def _real_id_map(params: Params, inputs: dict[str, TableSource]) -> Any:
    """The real-id map alone (a resumed run keeps its prepared data): prepare into a scratch folder."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        con = engine_connection(params)
        try:
            prepare(params, inputs, RunPaths(Path(tmp)), con)
            return real_ids(con)
        finally:
            con.close()


def browser_check(run: RunPaths, printer: Callable[[str], None]) -> dict[str, Any]:
    """Open report.html in headless Chromium: problems a reader would see, chapter screenshots."""
    why = browser.available()
    if why:
        return {"skipped": why}
    t0 = time.perf_counter()
    try:
        facts = browser.inspect(run.html, run.root / "screenshots")
    except Exception as exc:  # noqa: BLE001  the report exists; the check is advisory
        return {"error": f"{type(exc).__name__}: {exc}"}
    found = browser.problems(facts)
    _write_json(run.root / "browser.json", facts | {"problems": found})
    for p in found:
        printer(f"browser check: {p}")
    return {
        "problems": found,
        "screenshots": len(facts.get("screenshots", [])),
        "seconds": round(time.perf_counter() - t0, 2),
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


class _ChapterPool:
    """Chapters on worker threads, watched by the main thread.

    The main thread only waits and watches, so a signal reaches it at once: it stops a chapter
    past ``run.chapter_timeout_seconds`` and, when the run must stop (a signal, a full disk),
    every kernel, then waits for the chapters' threads to return.
    """

    def __init__(
        self,
        params: Params,
        run: RunPaths,
        printer: _Printer,
        workers: int,
        on_result: Callable[[dict[str, Any]], None],
    ):
        self.params, self.run, self.printer, self.on_result = params, run, printer, on_result
        self.kernels = faults.Kernels()
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="chapter")
        self.started: dict[str, float] = {}
        self.timeout = params.run.chapter_timeout_seconds

    def _execute(self, ch: Chapter) -> dict[str, Any]:
        self.started[ch.slug] = time.monotonic()
        return execute_chapter(ch, self.params, self.run, self.printer, self.kernels)

    def run_wave(self, wave: list[Chapter]) -> None:
        """Execute these chapters (``workers`` at a time) and hand each result to ``on_result``."""
        futures = {self.pool.submit(self._execute, ch): ch for ch in wave}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for fut in done:
                    result = fut.result()
                    self.on_result(result)
                    if result["reason"] == "no_space":  # every later write would fail too
                        path = result["error"].split(": no space left on device")[0]
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
                now = time.monotonic()
                for fut in pending:
                    ch = futures[fut]
                    t0 = self.started.get(ch.slug)
                    if (
                        t0 is not None
                        and now - t0 > self.timeout
                        and not self.kernels.reason(ch.slug)
                    ):
                        self.printer(
                            f"[{ch.number} {ch.slug}] timed out after {self.timeout} s: stopping it"
                        )
                        self.kernels.stop(ch.slug, "timeout")
        except BaseException as exc:
            self.abort(
                "interrupted" if isinstance(exc, faults.Signalled) else "no_space", pending, futures
            )
            raise

    def abort(self, reason: str, pending: set, futures: dict) -> None:
        """Stop every kernel, record what the running chapters got to, and return promptly."""
        with faults.signals(signal.SIG_IGN):  # a second Ctrl-C must not cut the clean-up short
            self.kernels.stop_all(reason)
            done, _ = wait(pending, timeout=30)
            for fut in done:
                if not fut.cancelled() and fut.exception() is None:
                    self.on_result(fut.result())
            self.pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Release the worker threads."""
        self.pool.shutdown(wait=True)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _resume_command(params_file: str, reports_dir: Path, version: str) -> str:
    extra = "" if reports_dir == REPORTS_DIR else f" --reports-dir {reports_dir}"
    return f"crm-report run --params {params_file}{extra} --resume {version}"


def _open_run(params: Params, client_dir: Path, reports_dir: Path) -> tuple[RunPaths, str]:
    """Create ``<client>/<version>/``; an unwritable folder is one clear message."""
    try:
        client_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if faults.is_no_space(exc):
            raise faults.no_space_error(client_dir, client_dir / "latest", "run again") from None
        raise faults.not_writable_error(reports_dir, exc) from None
    version = new_version(params, client_dir)
    try:
        run = RunPaths(client_dir / version).make()
    except OSError as exc:
        if faults.is_no_space(exc):
            raise faults.no_space_error(client_dir, client_dir / "latest", "run again") from None
        raise faults.not_writable_error(client_dir, exc) from None
    return run, version


def _reopen_run(
    params: Params, params_file: str, client_dir: Path, version: str
) -> tuple[RunPaths, dict[str, Any]]:
    """The run folder to resume and its manifest; refuses a run that must not be resumed."""
    root = client_dir / version
    path = root / "manifest.json"
    if not path.is_file():
        raise RunError(
            f"{root}: no report run to resume there (no manifest.json); give the version folder "
            f"of an interrupted run in {client_dir} to --resume"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunError(
            f"{path}: cannot read the manifest to resume ({exc}); start a new run"
        ) from None
    status = manifest.get("status")
    if status == "complete":
        raise RunError(f"{root}: this run is complete; there is nothing to resume")
    if status == "running" and _alive(manifest.get("pid")):
        raise RunError(
            f"{root}: this run is still running (process {manifest['pid']}); wait for it or stop it first"
        )
    if manifest.get("params_sha256") != params.fingerprint():
        raise RunError(
            f"{params_file}: these params differ from those of the run to resume ({root} was made "
            f"with {manifest.get('params_file')}); resume with the same params, or start a new run "
            "without --resume"
        )
    return RunPaths(root), manifest


def _check_inputs_unchanged(
    inputs: dict[str, TableSource], manifest: dict[str, Any], root: Path
) -> None:
    """Refuse to resume when an input table differs from the one the run started with."""
    from ..data import sha256_file

    before = manifest.get("inputs") or {}
    if set(before) != set(inputs):
        raise RunError(
            f"{root}: the run to resume read the tables {', '.join(sorted(before))}, these params "
            f"give {', '.join(sorted(inputs))}; start a new run without --resume"
        )
    for table, source in inputs.items():
        if sha256_file(Path(source.path)) != before[table].get("sha256"):
            raise RunError(
                f"{source.path}: this input changed since the run {root} started (sha256 differs, "
                f"key 'data.{table}'); start a new run without --resume"
            )


def _to_rerun(chapters: list[Chapter], done: set[str]) -> set[str]:
    """Chapters to execute when resuming: those not done, those reading them, and the summary."""
    rerun = {c.slug for c in chapters} - done
    grew = True
    while grew:
        grew = False
        for c in chapters:
            if c.slug not in rerun and (set(c.reads) & rerun or ("*" in c.reads and rerun)):
                rerun.add(c.slug)
                grew = True
    return rerun


def _chapter_fingerprints(
    chapters: list[Chapter], params: Params, prep_fp: str | None, code_fp: str
) -> dict[str, dict[str, str]]:
    """Each chapter's fingerprint parts (:data:`reuse.PARTS`) and their ``total``."""
    by_slug = {c.slug: c for c in chapters}
    out: dict[str, dict[str, str]] = {}

    def of(ch: Chapter, seen: tuple[str, ...] = ()) -> dict[str, str]:
        if ch.slug in out:
            return out[ch.slug]
        ups = [s for s in by_slug if s != ch.slug] if "*" in ch.reads else list(ch.reads)
        ups = [s for s in ups if s in by_slug and s not in seen]
        own = notebook_parameters(ch, params, Path(".")) | {"shared": reuse.shared_params(params)}
        parts = {
            "prepared": str(prep_fp),
            "params": reuse.sha(own),
            "notebook": reuse.sha(ch.notebook.read_bytes()),
            "code": code_fp,
            "reads": reuse.sha({s: of(by_slug[s], (*seen, ch.slug))["total"] for s in sorted(ups)}),
        }
        out[ch.slug] = parts | {"total": reuse.sha(parts)}
        return out[ch.slug]

    for ch in chapters:
        of(ch)
    return {c.slug: out[c.slug] for c in chapters}


def run_report(
    params_path: str | Path | None = None,
    *,
    workers: int | None = None,
    renderer: str | None = None,
    reports_dir: Path = REPORTS_DIR,
    progress: Progress = print,
    params: Params | None = None,
    resume: str | None = None,
    force: bool = False,
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
    resume
        The version folder of an interrupted (or failed) run to finish: its completed chapters
        are kept, the others run, then the report is rendered. The params and the input files
        must be those it started with.
    force
        Recompute everything: reuse neither prepared tables nor chapters of earlier runs
        (by default, those whose fingerprints match are reused: see :mod:`.reuse`).

    Returns
    -------
    RunResult
        ``ok`` is False when a chapter or the rendering failed (then ``latest`` is unchanged).

    Raises
    ------
    RunInterrupted
        On SIGINT or SIGTERM: every kernel is stopped, the folder's manifest says
        ``interrupted`` and the message says how to resume.
    OutputError
        When the output folder cannot be written or the disk is full.

    """
    started = time.perf_counter()
    params = params or load_params(params_path)
    workers = workers or params.run.workers
    renderer = renderer or params.report.renderer
    chapters = selected(params.run.chapters)
    check_notebook_parameters(chapters, params)
    os.environ["MPLBACKEND"] = INLINE_BACKEND  # kernels inherit it: figures render inline
    params_file = str(params_path) if params_path else "params/default.yml"
    reports_dir = Path(reports_dir)
    printer = _Printer(progress)
    state: dict[str, Any] = {"run": None, "manifest": None}

    def save() -> None:
        _write_json(state["run"].manifest, state["manifest"])

    cwd = os.getcwd()  # papermill chdirs around each chapter; in threads the restores can cross
    with faults.signals() as received, _restore_cwd(cwd):
        try:
            return _run(
                params,
                params_file,
                chapters,
                workers,
                renderer,
                reports_dir,
                printer,
                resume,
                state,
                save,
                started,
                force,
            )
        except faults.Signalled as sig:
            raise _interrupted(
                sig.signum, state, save, params, params_file, reports_dir, printer
            ) from None
        except CRMError:
            raise
        except Exception as exc:
            if received.signum is not None:  # e.g. DuckDB turns the signal into its own error
                raise _interrupted(
                    received.signum, state, save, params, params_file, reports_dir, printer
                ) from None
            run = state["run"]
            if run is None or not (faults.is_no_space(exc) or faults.is_not_writable(exc)):
                raise
            if state["manifest"] is not None:
                state["manifest"]["status"] = "failed"
                state["manifest"]["error"] = f"{type(exc).__name__}: {exc}"
                with contextlib.suppress(OSError):
                    save()
            if faults.is_no_space(exc):
                path = getattr(exc, "filename", None) or run.root
                hint = "resume with: " + _resume_command(params_file, reports_dir, run.root.name)
                raise faults.no_space_error(
                    path, reports_dir / params.client / "latest", hint
                ) from None
            raise faults.not_writable_error(run.root, exc) from None


@contextlib.contextmanager
def _restore_cwd(cwd: str) -> Iterator[None]:
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.chdir(cwd)


def _interrupted(
    signum: int,
    state: dict[str, Any],
    save: Callable[[], None],
    params: Params,
    params_file: str,
    reports_dir: Path,
    printer: _Printer,
) -> RunInterrupted:
    """Mark the run folder interrupted and say how to resume."""
    name = faults.SIGNAL_NAMES.get(signum, str(signum))
    run, manifest = state["run"], state["manifest"]
    latest = f"{reports_dir / params.client / 'latest'} is unchanged"
    if run is None or manifest is None:
        return RunInterrupted(
            f"interrupted by {name} before the run folder was written; {latest}", signum
        )
    with faults.signals(signal.SIG_IGN):
        manifest["status"] = "interrupted"
        manifest["interrupted_by"] = name
        try:
            save()
        except OSError as exc:
            printer(f"could not mark {run.manifest} interrupted: {exc}")
    done = sum(c["status"] == "ok" for c in manifest.get("chapters", []))
    return RunInterrupted(
        f"interrupted by {name}: {run.root} is incomplete (manifest status 'interrupted', {done} "
        f"chapter(s) done) and {latest}. Resume with: "
        + _resume_command(params_file, reports_dir, run.root.name),
        signum,
    )


def _write_run_info(run: RunPaths, manifest: dict[str, Any], params: Params) -> None:
    """What the chapters may read of the run (their provenance cell, the privacy threshold)."""
    keys = (
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
    _write_json(
        run.root / "run_info.json",
        {k: manifest[k] for k in keys}
        | {"privacy": {"min_group_size": params.privacy.min_group_size}}
        | {"report": {"language": params.report.language}},
    )


def _run(
    params: Params,
    params_file: str,
    chapters: list[Chapter],
    workers: int,
    renderer: str,
    reports_dir: Path,
    printer: _Printer,
    resume: str | None,
    state: dict[str, Any],
    save: Callable[[], None],
    started: float,
    force: bool = False,
) -> RunResult:
    client_dir = reports_dir / params.client
    if resume:
        run, manifest = _reopen_run(params, params_file, client_dir, resume)
        version = resume
        state["run"], state["manifest"] = run, manifest
        printer(f"resuming {params.client}/{version} -> {run.root}")
        manifest.update(status="running", pid=os.getpid())
        manifest.pop("interrupted_by", None)
        manifest.pop("error", None)
        manifest.setdefault("timings", {})
    else:
        run, version = _open_run(params, client_dir, reports_dir)
        state["run"] = run
        printer(f"run {params.client}/{version} -> {run.root}")
        manifest = {
            "client": params.client,
            "version": version,
            "status": "running",
            "pid": os.getpid(),
            "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "params_file": params_file,
            "params": params.model_dump(mode="json"),
            "params_sha256": params.fingerprint(),
            "packages": package_versions(),
            "crm_helpers_version": __version__,
            "git": git_state(),
            "renderer": None,
            "chapters": [],
            "timings": {},
        }
        state["manifest"] = manifest
    try:
        save()
    except OSError as exc:
        if faults.is_no_space(exc):
            raise
        raise faults.not_writable_error(run.root, exc) from None

    t0 = time.perf_counter()
    inputs = input_sources(params, printer)
    manifest["timings"]["inputs"] = round(time.perf_counter() - t0, 2)
    prepared = bool(
        resume and manifest.get("reconciliation") and (run.prepared / "prepare.json").is_file()
    )
    if resume and manifest.get("inputs"):
        _check_inputs_unchanged(inputs, manifest, run.root)

    # Fingerprints: what the prepared tables and each chapter depend on (see reuse.py).
    t0 = time.perf_counter()
    input_sha = reuse.input_fingerprints(inputs)
    code_fp = reuse.code_fingerprint(manifest["packages"])
    prep_fp = (
        reuse.prepared_fingerprint(params, input_sha, pseudonym_key(params), code_fp)
        if input_sha is not None
        else None
    )
    earlier = [] if force or prep_fp is None else reuse.earlier_runs(client_dir, run.root)
    manifest["fingerprints"] = {"code": code_fp, "inputs": input_sha, "prepared": prep_fp}
    manifest["timings"]["fingerprints"] = round(time.perf_counter() - t0, 2)
    why_not = (
        "--force"
        if force
        else "an input is remote (not fingerprinted)"
        if prep_fp is None
        else None
    )
    manifest["reuse"] = {"force": force, "prepared": None, "chapters": {}}
    found = None if prepared or resume else reuse.find_prepared(earlier, prep_fp)
    if prepared:
        printer("prepared data kept from the interrupted run (same params, same inputs)")
        ids = _real_id_map(params, inputs) if params.privacy.export_real_ids else None
        manifest["reuse"]["prepared"] = {"kept": "from the interrupted run (resume)"}
    elif found is not None:
        src, old = found
        t0 = time.perf_counter()
        reuse.copy_prepared(src, run.make())
        printer(f"prepared data reused from {src.name} (same input files, params and code)")
        for k in ("inputs", "reconciliation", "reference_date", "period", "identity"):
            manifest[k] = old.get(k)
        manifest["timings"]["prepare"] = round(time.perf_counter() - t0, 2)
        manifest["reuse"]["prepared"] = {
            "from": src.name,
            "reason": "same input files, preparation params, pseudonym key and code",
        }
        ids = _real_id_map(params, inputs) if params.privacy.export_real_ids else None
        _write_run_info(run, manifest, params)
        save()
    else:
        manifest["reuse"]["prepared"] = {
            "computed": why_not
            or ("no earlier run with the same input files, preparation params and code")
        }
        run.make()
        t0 = time.perf_counter()
        engine = {"duckdb": "DuckDB", "spark": "Spark"}[params.run.engine]
        printer(f"preparing data ({engine}): load, validate, quarantine, identities, features")
        con = engine_connection(params)
        try:
            prep = prepare(params, inputs, run, con)
            require_usable(prep, inputs)
            # Real ids stay in memory, for the owner-only action lists (never in the run folder).
            ids = real_ids(con) if params.privacy.export_real_ids else None
        except DataError:
            manifest["status"] = "failed"
            manifest["error"] = "data preparation failed"
            save()
            raise
        finally:
            con.close()
        if params.data.source == "demo":
            write_planted_truth(inputs["transactions"].path.parent, run, pseudonym_key(params))
        manifest["timings"]["prepare"] = round(time.perf_counter() - t0, 2)
        manifest["timings"]["prepare_steps"] = prep.seconds
        manifest["inputs"] = prep.inputs
        manifest["reconciliation"] = prep.reconciliation
        manifest["reference_date"] = prep.reference_date
        manifest["period"] = prep.period
        manifest["identity"] = prep.identity
        manifest["chapters"] = []  # chapters computed on other prepared data cannot be kept
        printer(
            "prepared: "
            + "; ".join(
                f"{t} {r['kept']:,} kept / {r['input']:,}" for t, r in prep.reconciliation.items()
            )
        )
        _write_run_info(run, manifest, params)
        save()

    # Chapters kept from an interrupted run: done, with their notebook, and reading nothing rerun.
    results: dict[str, dict[str, Any]] = {}
    done = {
        c["slug"]: c
        for c in manifest.get("chapters", [])
        if c.get("status") == "ok"
        and (run.notebooks / f"{c['number']}-{c['slug']}.ipynb").is_file()
    }
    parts = _chapter_fingerprints(chapters, params, prep_fp, code_fp)
    manifest["fingerprints"]["chapters"] = parts
    earlier_ok: dict[str, tuple[Path, dict[str, Any]]] = {}
    for ch in chapters:
        hit = reuse.find_chapter(earlier, ch, parts[ch.slug]["total"]) if prep_fp else None
        if hit is not None and ch.slug not in done:
            earlier_ok[ch.slug] = hit
    rerun = _to_rerun(chapters, set(done) | set(earlier_ok))
    for ch in chapters:
        if ch.slug in rerun:
            manifest["reuse"]["chapters"][ch.slug] = {
                "executed": why_not or reuse.why_rerun(earlier, ch.slug, parts[ch.slug])
            }
        elif ch.slug in done:
            results[ch.slug] = done[ch.slug] | {"reused": True}
            manifest["reuse"]["chapters"][ch.slug] = {"kept": "from the interrupted run (resume)"}
        else:
            src, old = earlier_ok[ch.slug]
            reuse.copy_chapter(src, run, ch)
            results[ch.slug] = _chapter_result(ch, "ok", None, None, 0.0) | {
                "reused": True,
                "reused_from": src.name,
                "original_seconds": old.get("seconds"),
            }
            manifest["reuse"]["chapters"][ch.slug] = {
                "reused_from": src.name,
                "reason": "same prepared data, params, notebook, code and upstream chapters",
            }
    reused = [s for s, r in manifest["reuse"]["chapters"].items() if "reused_from" in r]
    if reused:
        printer(f"chapters reused from earlier runs (unchanged inputs): {', '.join(reused)}")
    if resume:
        manifest.setdefault("resumed", []).append(
            {
                "utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "kept": sorted(results),
                "rerun": [c.slug for c in chapters if c.slug in rerun],
                "git": git_state(),
            }
        )
        if results:
            printer(f"chapters kept from the interrupted run: {', '.join(results)}")

    def record(result: dict[str, Any]) -> None:
        results[result["slug"]] = result
        manifest["chapters"] = [results[c.slug] for c in chapters if c.slug in results]
        save()

    # 00 first, independent chapters in parallel, 99 last.
    first = [c for c in chapters if c.slug == FIRST]
    middle = [c for c in chapters if c.slug not in (FIRST, LAST)]
    last = [c for c in chapters if c.slug == LAST]
    t0 = time.perf_counter()
    pool = _ChapterPool(params, run, printer, workers, record)
    try:
        for wave in [first, *waves(middle)]:  # a chapter runs after those whose artifacts it reads
            pool.run_wave([c for c in wave if c.slug in rerun])
        # What the summary may know of the other chapters (no timings: artifacts stay reproducible).
        status = [
            {k: results[c.slug][k] for k in ("slug", "title", "status", "error")}
            for c in first + middle
        ]
        _write_json(run.artifacts / "_status.json", {"chapters": status})
        pool.run_wave([c for c in last if c.slug in rerun])
    finally:
        pool.close()
    manifest["chapters"] = [results[c.slug] for c in chapters]
    manifest["timings"]["chapters"] = round(time.perf_counter() - t0, 2)
    restricted = None
    if ids is not None:
        root = params.privacy.restricted_dir or reports_dir.parent / "restricted"
        restricted = Path(root) / params.client / version
    try:
        manifest["actions"] = actions.export(run.root, real_ids=ids, restricted=restricted)
    except Exception as exc:  # noqa: BLE001  a chapter's odd artifact must not lose the report
        manifest["actions"] = {"error": f"{type(exc).__name__}: {exc}"}
        printer(f"action lists failed: {manifest['actions']['error']}")
    if restricted is not None and "restricted" in manifest["actions"]:
        printer(f"action lists with real customer ids (owner-only): {restricted}")

    # "What changed since the last report": latest still points to the previous complete run.
    manifest["compared_with"] = diff.write_page(run.root, manifest, client_dir)
    t0 = time.perf_counter()
    printer(f"rendering ({renderer})")
    try:
        used = render.render_report(run, params, manifest, renderer=renderer)
        manifest["renderer"] = used
        render_error = None
    except Exception as exc:  # noqa: BLE001  the run is recorded as failed, never as latest
        if faults.is_no_space(exc):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run.root)) from exc
        render_error = f"{type(exc).__name__}: {exc}"
        printer(f"rendering failed: {render_error}")
    manifest["timings"]["render"] = round(time.perf_counter() - t0, 2)
    if render_error is None and run.html.is_file():
        manifest["browser"] = browser_check(run, printer)
    manifest["timings"]["total"] = round(time.perf_counter() - started, 2)

    failed = [c["slug"] for c in manifest["chapters"] if c["status"] != "ok"]
    ok = not failed and render_error is None
    manifest["status"] = "complete" if ok else "failed"
    if render_error:
        manifest["render_error"] = render_error
    save()
    if ok:
        _point_latest(client_dir, version)
        printer(f"done in {manifest['timings']['total']:.1f} s: {run.html} and {run.pdf}")
    else:
        printer(
            f"run incomplete ({'chapters failed: ' + ', '.join(failed) if failed else render_error}); "
            f"reports/{params.client}/latest unchanged"
        )
    return RunResult(run_dir=run.root, manifest=manifest, ok=ok)
