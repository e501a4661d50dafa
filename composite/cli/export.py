"""``wsi-composite export SLIDE OUTDIR``: levels, regions and associated images as image files."""

from __future__ import annotations

import argparse
from typing import Any

from ..registry import open_slide
from ..tools.export import ExportOptions, export_slide
from ..tools.imagefiles import DEFAULT_MEMORY_BUDGET
from .args import box, int_in, int_list, positive_float
from .progress import progress_bar


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        description="Export whole levels, regions (given in level-0 pixels) and the thumbnail/label/macro "
        "as image files any program opens. With nothing chosen: the associated images and the "
        "highest-resolution level that fits the format.",
    )
    parser.add_argument("slide", help="slide file or directory")
    parser.add_argument("outdir", help="directory for the image files (created if missing; its parent must exist)")
    parser.add_argument("--associated", action="store_true", help="export thumbnail, label and macro")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--levels", type=int_list("--levels"), help="levels to export, e.g. 0,2")
    which.add_argument(
        "--top", type=int_in(1, None, "--top"), metavar="N", help="the N highest-resolution levels that fit the format"
    )
    parser.add_argument("--region", type=box("--region"), metavar="X,Y,W,H", help="a region in level-0 pixels")
    parser.add_argument(
        "--annotations",
        metavar="FILE",
        help="one image per annotated region (ImageScope XML or GeoJSON), and regions.json",
    )
    parser.add_argument(
        "--select", action="append", default=[], metavar="NAME|CLASS", help="only these annotated regions (repeatable)"
    )
    parser.add_argument(
        "--mask",
        nargs="?",
        const="white",
        choices=("white", "transparent"),
        help="outside each annotated polygon white (default) or transparent (PNG, TIFF without JPEG)",
    )
    at = parser.add_mutually_exclusive_group()
    at.add_argument("--level", type=int, metavar="L", help="read --region / the regions at level L (default 0)")
    at.add_argument(
        "--downsample",
        type=positive_float("--downsample"),
        metavar="D",
        help="read --region / the regions at downsample D",
    )
    parser.add_argument(
        "--format", choices=("jpeg", "png", "tiff"), default="jpeg", help="output format (default jpeg)"
    )
    parser.add_argument(
        "--quality",
        type=int_in(1, 100, "--quality"),
        help="JPEG quality 1..100 (default 90; JPEG associated images are copied unless set)",
    )
    parser.add_argument(
        "--compression",
        choices=("jpeg", "lzw", "deflate", "none"),
        default="jpeg",
        help="TIFF tile compression (default jpeg)",
    )
    parser.add_argument("--plane", help="focal plane (or DICOM frame, e.g. frame-2) to export; 'all' for every one")
    parser.add_argument(
        "--memory-budget",
        type=positive_float("--memory-budget"),
        default=DEFAULT_MEMORY_BUDGET / 1e9,
        metavar="GB",
        help=f"largest JPEG/PNG image held in memory, in GB of RGB pixels (default {DEFAULT_MEMORY_BUDGET / 1e9:g})",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.add_argument("--parents", action="store_true", help="create OUTDIR's missing parent folders")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    if (args.level is not None or args.downsample is not None) and args.region is None and args.annotations is None:
        args.parser.error("--level and --downsample choose how --region is read: give --region")
    if (args.select or args.mask) and args.annotations is None:
        args.parser.error("--select and --mask apply to --annotations: give --annotations")
    options = ExportOptions(
        format=args.format,
        quality=args.quality,
        compression=args.compression,
        memory_budget=int(args.memory_budget * 1e9),
        overwrite=args.overwrite,
        plane=args.plane,
        parents=args.parents,
    )
    annotations = None
    if args.annotations is not None:
        from ..annotations import read_annotations

        annotations = read_annotations(args.annotations).select(args.select)
    asked = args.associated or args.levels is not None or args.top is not None or args.region is not None
    with open_slide(args.slide) as slide, progress_bar(quiet=args.quiet, unit="row") as progress:
        done = []
        if asked or annotations is None:
            done += export_slide(
                slide,
                args.outdir,
                associated=args.associated,
                levels=args.levels,
                top=args.top,
                region=args.region,
                level=args.level if args.region is not None else None,
                downsample=args.downsample if args.region is not None else None,
                options=options,
                progress=progress,
            )
        if annotations is not None:
            from ..annotations.export import export_regions

            done += export_regions(
                slide,
                args.outdir,
                annotations,
                level=args.level,
                downsample=args.downsample,
                mask=args.mask,
                options=options,
                progress=progress,
            )
    for item in done:
        how = " (copied)" if item.copied else ""
        size = f"  {item.width} x {item.height}" if item.width else ""
        print(f"{item.path}  {item.what}{size}{how}")
    return 0
