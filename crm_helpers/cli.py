"""``crm-report``: run, validate, diff, demo-data. Errors for users print without a traceback."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import CRMError, RunInterrupted


def _progress(line: str) -> None:
    """Progress on stderr: cell-by-cell on a terminal (one updating line), milestones otherwise."""
    tty = sys.stderr.isatty()
    if "] cell " in line:
        if tty:
            print(f"\r{line:<60}", end="", file=sys.stderr, flush=True)
        return
    print(("\r" if tty else "") + line, file=sys.stderr, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    """Build the report for one or more params files (several clients in one command).

    Every params file is validated before the first run starts, so a typo in the last client's
    file costs nothing. A client whose run fails or whose data is refused does not stop the
    others; the exit code is the worst of them (0 complete, 1 incomplete, 2 refused).
    """
    from .config import load_params
    from .report.runner import run_report

    files = args.params or [None]
    if args.resume and len(files) != 1:
        raise CRMError("--resume finishes one run: give exactly one --params with it")
    loaded = [(p, load_params(p)) for p in files]
    kw = {"reports_dir": Path(args.reports_dir)} if args.reports_dir else {}
    code, outcomes = 0, []
    for path, params in loaded:
        try:
            result = run_report(
                path,
                params=params,
                workers=args.workers,
                renderer=args.renderer,
                progress=_progress,
                resume=args.resume,
                force=args.force,
                **kw,
            )
        except CRMError as exc:
            if len(loaded) == 1:
                raise
            print(f"error: {path}: {exc}", file=sys.stderr)
            code = 2
            outcomes.append(f"{params.client}: refused ({path})")
            continue
        if not result.ok:
            code = max(code, 1)
        state = "complete" if result.ok else "incomplete"
        outcomes.append(f"{params.client}: {state} -> {result.run_dir}")
    if len(loaded) > 1:
        print("\n".join(["clients:", *(f"  {o}" for o in outcomes)]), file=sys.stderr)
    return code


def cmd_validate(args: argparse.Namespace) -> int:
    """Check params and data, and print a data-quality summary; runs no notebook."""
    import tempfile

    from .config import load_params
    from .data import prepare, require_usable
    from .paths import RunPaths
    from .report.runner import input_sources

    params = load_params(args.params)
    print(f"params OK: client {params.client}, data source {params.data.source}")
    inputs = input_sources(params, _progress)
    with tempfile.TemporaryDirectory(prefix="crm-validate-") as tmp:
        res = prepare(params, inputs, RunPaths(Path(tmp)))
    for table, r in res.reconciliation.items():
        q = sum(r["quarantined"].values())
        print(f"{table}: {r['input']:,} rows = {r['kept']:,} kept + {q:,} quarantined")
        for reason, n in sorted(r["quarantined"].items(), key=lambda kv: -kv[1]):
            print(f"  {reason}: {n:,}")
    require_usable(res, inputs)
    print(f"identity resolution: {res.identity.get('merged_ids', 0):,} ids merged")
    print(f"data period: {res.period['start']} to {res.period['end']}")
    if args.json:
        print(json.dumps(res.to_json(), indent=2, sort_keys=True))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    """Compare two report runs of a client and print what changed."""
    from .paths import REPORTS_DIR
    from .report.diff import cli_text, compare_runs, resolve_run

    reports = Path(args.reports_dir) if args.reports_dir else REPORTS_DIR
    old = resolve_run(args.old, args.client, reports)
    new = resolve_run(args.new, args.client, reports)
    result = compare_runs(old, new)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, sort_keys=True, default=str))
    else:
        print(cli_text(result, show_all=args.all), end="")
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    """Write the demo tables (and their ground truth) for the params' demo settings."""
    from .config import load_params
    from .demo import generate_demo

    d = load_params(args.params).data.demo
    out = Path(args.out)
    truth = generate_demo(
        out,
        customers=args.customers or d.customers,
        lines=args.lines or d.lines,
        start_date=d.start_date,
        years=d.years,
        seed=d.seed,
        dirt=d.dirt,
    )
    print(f"demo data written to {out} ({len(truth.get('customer_segment', {})):,} customers)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="crm-report", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="build the report (HTML, PDF, artifacts, manifest)")
    run.add_argument("--params", action="append", help="params file (repeat for several clients)")
    run.add_argument("--workers", type=int, help="chapters executed in parallel")
    run.add_argument("--renderer", choices=["auto", "quarto", "pandoc"], help="rendering path")
    run.add_argument("--reports-dir", help="where <client>/<version>/ goes (default: reports/)")
    run.add_argument(
        "--resume",
        metavar="VERSION",
        help="finish the interrupted run <client>/VERSION: keep its completed chapters, run the rest",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="recompute everything: reuse no prepared tables or chapters of earlier runs",
    )
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="check params and data; print a data-quality summary")
    val.add_argument("--params", help="params file (default: params/default.yml)")
    val.add_argument("--json", action="store_true", help="also print the full summary as JSON")
    val.set_defaults(func=cmd_validate)

    diff = sub.add_parser(
        "diff",
        help="compare two report runs of a client: KPIs, segments, model metrics, params, inputs",
    )
    diff.add_argument("old", help="the older run: a run folder, or a version with --client")
    diff.add_argument("new", help="the newer run: a run folder, or a version with --client")
    diff.add_argument("--client", help="read OLD and NEW as versions of this client")
    diff.add_argument("--reports-dir", help="where <client>/<version>/ are (default: reports/)")
    diff.add_argument("--all", action="store_true", help="also list the unchanged figures")
    diff.add_argument("--json", action="store_true", help="every row as JSON (exact values)")
    diff.set_defaults(func=cmd_diff)

    demo = sub.add_parser("demo-data", help="write the demo data and its planted ground truth")
    demo.add_argument("--params", help="params file whose data.demo block to use")
    demo.add_argument("--out", default="demo_data/manual", help="output folder")
    demo.add_argument("--customers", type=int, help="override data.demo.customers")
    demo.add_argument("--lines", type=int, help="override data.demo.lines")
    demo.set_defaults(func=cmd_demo_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``crm-report`` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "workers", None) is not None and args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except CRMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunInterrupted as exc:  # SIGINT 130, SIGTERM 143: the shell's convention
        print(f"\n{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
