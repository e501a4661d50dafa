"""``wsi-composite redact SLIDE DST``: black boxes, dropped label/macro, scrubbed metadata."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..output import WriteOptions
from ..registry import open_slide
from ..tools.redact import RedactPlan, redact
from .args import box
from .progress import progress_bar


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "redact",
        description="Write a copy of SLIDE to DST (format from DST's name: .svs, .tif, or a directory for CWS) "
        "with boxes blacked out on every level and the thumbnail, the label and/or macro left out, and "
        "identifying metadata removed. Only tiles touching a box are re-encoded; the source is never modified.",
    )
    parser.add_argument("slide", help="slide file or directory")
    parser.add_argument("dst", help="output slide (.svs, .tif, or a directory name for CWS)")
    parser.add_argument(
        "--box",
        type=box("--box"),
        action="append",
        default=[],
        metavar="X,Y,W,H",
        help="level-0 box to black out (repeatable)",
    )
    parser.add_argument(
        "--annotations", metavar="FILE", help="black out the polygons of this ImageScope XML or GeoJSON file"
    )
    parser.add_argument(
        "--select", action="append", default=[], metavar="NAME|CLASS", help="only these annotated regions (repeatable)"
    )
    parser.add_argument("--drop-label", action="store_true", help="leave the label image out")
    parser.add_argument("--drop-macro", action="store_true", help="leave the macro (overview) image out")
    parser.add_argument("--scrub", action="store_true", help="remove identifying fields (see docs/tools.md)")
    parser.add_argument(
        "--to", choices=("svs", "tiff", "cws", "dicom"), help="output format (default: from DST's name)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    parser.add_argument("--parents", action="store_true", help="create DST's missing folders (else an error)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    if args.select and args.annotations is None:
        args.parser.error("--select applies to --annotations: give --annotations")
    plan = RedactPlan(boxes=args.box, drop_label=args.drop_label, drop_macro=args.drop_macro, scrub=args.scrub)
    if args.annotations is not None:
        from ..annotations import read_annotations
        from ..annotations.export import check_mpp
        from ..annotations.redact import PolygonShapes

        annotations = read_annotations(args.annotations).select(args.select)
        with open_slide(args.slide) as slide:
            check_mpp(slide, annotations)
            plan.shapes = PolygonShapes(annotations, image=slide.dimensions)
    with progress_bar(quiet=args.quiet) as progress:
        report, touched = redact(
            args.slide,
            args.dst,
            plan,
            options=WriteOptions(overwrite=args.overwrite, parents=args.parents),
            progress=progress,
        )
    print(f"{report.destination}  [{report.format}]")
    for line, level in zip(report.summary(), report.levels, strict=True):
        again = touched.get(level.index)
        print(f"  {line}" + (f"  ({again} tiles redacted)" if again else ""))
    print(f"  associated: {', '.join(report.associated) or 'none'}")
    if args.drop_label and not args.drop_macro and "macro" in report.associated:
        print("note: the macro image photographs the label too; add --drop-macro to leave it out", file=sys.stderr)
    return 0
