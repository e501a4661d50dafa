"""``wsi-composite compose OUT.aci IMAGES... --grid COLSxROWS [--spacing PX] | --offsets FILE.csv``.

Writes an ACI manifest placing separate images on one canvas; ``convert OUT.aci slide.svs`` then
assembles them into one slide. Also the ACI options ``convert`` takes (``--piece-size``,
``--piece-format``, ``--allow-outside``), kept here with the rest of the ACI command line.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CompositeError
from ..output import AciOptions

if TYPE_CHECKING:
    from ..model import Slide


def grid(text: str) -> tuple[int, int]:
    """``COLSxROWS`` as (cols, rows)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise argparse.ArgumentTypeError(f"expected COLSxROWS like 3x2, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def piece_size(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 16:
        raise argparse.ArgumentTypeError(f"piece size must be an integer of at least 16 px, got {text!r}")
    return int(text)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compose",
        description="Author an Aperio Compound Image (.aci) from separate images; "
        "'wsi-composite convert OUT.aci slide.svs' then assembles them into one slide.",
    )
    parser.add_argument("out", metavar="OUT.aci", help="manifest to write")
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="images, row-major (with --grid)")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--grid", type=grid, metavar="COLSxROWS", help="place IMAGES on a grid, row-major")
    how.add_argument("--offsets", metavar="FILE.csv", help="CSV of 'path,x,y' rows (paths relative to the CSV)")
    parser.add_argument(
        "--spacing", type=int, default=0, metavar="PX", help="gap between grid cells (negative: overlap)"
    )
    parser.add_argument("--allow-outside", action="store_true", help="allow images outside OUT's directory")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument(
        "--annotations",
        metavar="FILE",
        help="gather each image's annotations (<stem>.xml/.geojson beside it) into FILE, in OUT's coordinates",
    )
    parser.add_argument("--parents", action="store_true", help="create OUT's missing folders (else an error)")
    parser.set_defaults(func=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    from ..formats.aci import compose  # this command's work; convert imports this module for its options

    parser: argparse.ArgumentParser = args.parser
    if args.grid:
        cols, rows = args.grid
        if len(args.images) != cols * rows:
            parser.error(f"--grid {cols}x{rows} needs {cols * rows} images, got {len(args.images)}")
        try:
            manifest = compose.compose_grid(
                args.out,
                args.images,
                cols=cols,
                rows=rows,
                spacing=args.spacing,
                allow_outside=args.allow_outside,
                overwrite=args.overwrite,
                parents=args.parents,
            )
        except ValueError as err:
            if isinstance(err, CompositeError):
                raise
            parser.error(str(err))
    else:
        if args.images:
            parser.error("IMAGES are listed in the --offsets file; give only OUT.aci")
        manifest = compose.compose_offsets(
            args.out, args.offsets, allow_outside=args.allow_outside, overwrite=args.overwrite, parents=args.parents
        )
    print(f"{args.out}  [aci]  {manifest.component_count} images")
    if args.annotations is not None:
        from ..annotations.carry import carry_compose

        images, regions = carry_compose(Path(args.out), Path(args.annotations), overwrite=args.overwrite)
        print(f"{args.annotations}  annotations of {images} images, {regions} regions")
    return 0


def add_convert_options(parser: argparse.ArgumentParser) -> None:
    """The ACI options of ``convert``."""
    parser.add_argument("--piece-size", type=piece_size, metavar="N", help="ACI output: largest piece side (16384)")
    parser.add_argument("--piece-format", choices=("svs", "tiff"), help="ACI output: format of the pieces (svs)")
    parser.add_argument(
        "--allow-outside", action="store_true", help="ACI input: trust component paths outside its directory"
    )


def aci_options(args: argparse.Namespace) -> AciOptions:
    """The ACI options given (``--piece-size``, ``--piece-format``), defaults for the rest."""
    given = {"piece_size": args.piece_size, "piece_format": args.piece_format}
    return AciOptions(**{key: value for key, value in given.items() if value is not None})


@contextmanager
def convert_source(args: argparse.Namespace) -> Iterator[str | Slide]:
    """The source path, or with ``--allow-outside`` the slide opened trusting its manifest."""
    if not args.allow_outside:
        yield args.source
        return
    from ..formats.aci import open_source

    with open_source(args.source, allow_outside=True) as slide:
        yield slide
