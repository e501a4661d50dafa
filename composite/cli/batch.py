"""``wsi-composite batch SRC DST --to cws|svs|tiff|aci``: convert a whole archive, resumably.

SRC is a directory (searched recursively), a list file (``.txt``/``.csv``, optionally with a
destination per line) or one slide. Runs on a dask LocalCluster, or on ``--scheduler ADDRESS``
(``DASK_SCHEDULER_ADDRESS``). Prints a summary table; each failure as ``convert`` prints it, on
stderr. Exit status 0 when nothing failed, 1 when some slides failed, 2 for a usage error. The
batch machinery (and dask) is imported only when this command runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..errors import UnsupportedFormatError
from .args import int_in
from .convert import add_write_options, write_options
from .progress import progress_bar

FORMATS = ("cws", "svs", "tiff", "aci", "dicom")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "batch",
        description="Convert every slide under SRC (or listed in SRC) into DST, mirroring relative paths. "
        "Finished slides are recorded in DST/batch-ledger.jsonl and skipped on a rerun while unchanged.",
    )
    parser.add_argument("source", metavar="SRC", help="directory, list file (.txt/.csv: source[,destination]) or slide")
    parser.add_argument("destination", metavar="DST", help="output directory")
    parser.add_argument("--to", required=True, choices=FORMATS, help="output format")
    add_write_options(parser)
    parser.add_argument(
        "--allow-absolute", action="store_true", help="list file: allow absolute destinations outside DST"
    )
    parser.add_argument("--scheduler", metavar="ADDRESS", help="existing dask scheduler (default: a LocalCluster)")
    processes = int_in(1, None, "processes")
    parser.add_argument("--processes", type=processes, metavar="N", help="LocalCluster workers (default: one per core)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be done, convert nothing")
    parser.add_argument(
        "--retry-failed", action="store_true", help="try again slides that failed before (default: report them)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no dashboard link")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..batch import SlideResult, convert_many

    if args.series_uid:  # every slide is a series of its own
        raise UnsupportedFormatError("--series-uid names one series: give it to convert, not to batch")
    interactive = not args.quiet and sys.stderr.isatty()
    megapixels = 0.0
    started = time.perf_counter()

    def rate() -> str:
        return f"{megapixels / max(time.perf_counter() - started, 1e-3):.1f} MP/s"

    def on_slide(result: SlideResult) -> None:
        nonlocal megapixels
        if result.status == "ok":
            megapixels += result.megapixels

    def on_cluster(description: str, link: str | None) -> None:
        if interactive:
            from tqdm import tqdm

            tqdm.write(f"wsi-composite: {description}" + (f"; dashboard {link}" if link else ""), file=sys.stderr)

    with progress_bar(quiet=args.quiet, unit="slide", postfix=rate) as progress:
        report = convert_many(
            args.source,
            args.destination,
            to=args.to,
            options=write_options(args),
            allow_outside=args.allow_outside,
            allow_absolute=args.allow_absolute,
            scheduler=args.scheduler,
            processes=args.processes,
            dry_run=args.dry_run,
            retry_failed=args.retry_failed,
            dashboard=interactive,
            progress=progress,
            on_slide=on_slide,
            on_cluster=on_cluster,
        )
    if args.dry_run:
        for result in report.results:
            what = {"todo": "convert", "skipped": "skip", "failed": "fail"}[result.status]
            why = result.error or result.reason
            print(f"{what:8} {result.name}  ->  {result.output}  ({why})")
        print(
            f"{report.count('todo')} to convert, {report.count('skipped')} done before, "
            f"{report.count('failed')} failing, {len(report.ignored)} files ignored (not slides)"
        )
        return report.exit_code
    for result in report.results:
        if result.status == "failed":
            print(f"wsi-composite: error: {result.error}", file=sys.stderr)
    _summary(args, report)
    return report.exit_code


def _summary(args: argparse.Namespace, report: Any) -> None:
    done = [r for r in report.results if r.status == "ok"]
    mp = sum(r.megapixels for r in done)
    print(f"{args.destination}  [{args.to}]  {len(report.results)} slides in {report.seconds:.1f} s")
    print(f"  {'':10}{'slides':>8}{'megapixels':>12}{'slide time':>12}")
    print(f"  {'ok':10}{len(done):8}{mp:12.1f}{sum(r.seconds for r in done):10.1f} s")
    skipped = [r for r in report.results if r.status == "skipped"]
    print(f"  {'skipped':10}{len(skipped):8}{sum(r.megapixels for r in skipped):12.1f}")
    print(f"  {'failed':10}{report.count('failed'):8}")
    if report.ignored:
        print(f"  {'ignored':10}{len(report.ignored):8}  (not slides)")
    if done:
        where = f" on {report.cluster}" if report.cluster else ""
        print(f"  {mp / max(report.seconds, 1e-3):.1f} MP/s overall{where}")
