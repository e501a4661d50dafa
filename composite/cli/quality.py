"""``wsi-composite quality SLIDE``: JPEG / JPEG 2000 at quality 30/50/70 on a sample of tiles."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..registry import open_slide
from ..tools.quality import quality_report
from .args import int_in
from .progress import progress_bar


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "quality",
        description="Recompress a sample of level-0 tiles with JPEG and JPEG 2000 at quality 30, 50, 70 and "
        "print the compression factor and RMS error of each, beside Aperio's published figures.",
    )
    parser.add_argument("slide", help="slide file or directory")
    parser.add_argument(
        "--sample", type=int_in(1, None, "--sample"), default=32, metavar="N", help="tiles to sample (default 32)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the tile sample (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_slide(args.slide) as slide, progress_bar(quiet=args.quiet or args.json, unit="setting") as progress:
        report = quality_report(slide, sample=args.sample, seed=args.seed, progress=progress)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
        return 0
    print(
        f"{report.path}: {len(report.tiles)} level-0 tiles of {report.tile_width}x{report.tile_height}"
        f" ({report.tissue_tiles} with tissue, seed {report.seed})"
    )
    if report.stored_factor is not None:
        print(f"  as stored ({report.stored_compression}): factor {report.stored_factor:.1f}")
    print(f"  {'codec':<11} {'quality':>7} {'factor':>7} {'RMS':>6}   {'Aperio factor':>13} {'Aperio RMS':>10}")
    for row in report.results:
        print(
            f"  {row.codec:<11} {row.quality:>7} {row.factor:>7.1f} {row.rms:>6.2f}"
            f"   {row.aperio_factor:>13g} {row.aperio_rms:>10g}"
        )
    return 0
