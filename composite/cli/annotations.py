"""``wsi-composite annotations convert IN OUT`` / ``annotations list FILE``: ImageScope XML <-> GeoJSON.

The annotations package (shapely, defusedxml) is imported when the command runs, not when the
parser is built, so other commands do not load it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .args import positive_float


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "annotations",
        description="Annotation files: Aperio ImageScope XML and QuPath GeoJSON (docs/annotations.md).",
    )
    commands = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    convert = commands.add_parser(
        "convert",
        help="convert IN to OUT (format from OUT's suffix: .xml ImageScope, .geojson/.json GeoJSON)",
        description="Read IN (ImageScope XML or GeoJSON, told apart by content) and write OUT.",
    )
    convert.add_argument("source", metavar="IN", help="ImageScope XML or GeoJSON file")
    convert.add_argument("dst", metavar="OUT", help="file to write (.xml or .geojson)")
    convert.add_argument("--to", choices=("imagescope", "geojson"), help="output format (default: from OUT's suffix)")
    convert.add_argument(
        "--select", action="append", default=[], metavar="NAME|CLASS", help="only these regions (repeatable)"
    )
    convert.add_argument(
        "--mpp",
        type=positive_float("--mpp"),
        help="MicronsPerPixel for ImageScope XML (default: the input's, if it has one)",
    )
    convert.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    convert.set_defaults(func=run_convert)
    listing = commands.add_parser(
        "list", help="list the regions of an annotation file", description="One line per region."
    )
    listing.add_argument("source", metavar="FILE", help="ImageScope XML or GeoJSON file")
    listing.set_defaults(func=run_list)


def run_convert(args: argparse.Namespace) -> int:
    from ..annotations import read_annotations, write_annotations
    from ..destination import refuse_source

    refuse_source([Path(args.dst)], [Path(args.source)])  # OUT is not IN under any name, before reading
    annotations = read_annotations(args.source).select(args.select)
    write_annotations(annotations, args.dst, to=args.to, overwrite=args.overwrite, mpp=args.mpp)
    print(f"{args.dst}  {len(annotations.regions)} regions")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from ..annotations import read_annotations

    annotations = read_annotations(args.source)
    mpp = f"{annotations.mpp:g} um/px" if annotations.mpp else "no MicronsPerPixel"
    print(f"{args.source}  {len(annotations.regions)} regions, {mpp}")
    for index, region in enumerate(annotations.regions, 1):
        x0, y0, x1, y1 = region.bounds()
        print(
            f"  {index:4d}  {region.kind:9s}  {region.classification or '-':16s}  {region.name or '-':16s}"
            f"  {x0:.0f},{y0:.0f} - {x1:.0f},{y1:.0f}"
        )
    return 0
