"""``wsi-composite convert SRC DST``: write a slide as SVS, pyramidal TIFF, CWS, ACI or DICOM.

Prints the destination and one line per level saying how it was made (copy, reencode or
downsample); progress bars go to stderr unless ``--quiet``.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from ..convert import COMPRESSIONS, WRITERS, DicomOptions, TiffOptions, WriteOptions, convert
from ..output import DEFAULT_GLASS_TOLERANCE
from .args import int_in
from .compose import aci_options, add_convert_options, convert_source
from .progress import progress_bar


def tile_size(text: str) -> tuple[int, int]:
    """``N`` or ``WxH`` as (width, height)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX*]\s*(\d+))?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected N or WxH, got {text!r}")
    width = int(match.group(1))
    height = int(match.group(2) or width)
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"tile size must be positive, got {text!r}")
    return width, height


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "convert",
        description="Convert a slide, copying tiles where source and target tiles coincide.",
    )
    parser.add_argument("source", help="slide file or directory to read")
    parser.add_argument("destination", help="output path: .svs, .tif/.tiff, .aci, or a directory for CWS and DICOM")
    parser.add_argument("--to", metavar="|".join(WRITERS), help="output format (default: from DST's extension)")
    add_write_options(parser)
    parser.add_argument(
        "--annotations",
        metavar="FILE",
        help="annotations of SOURCE (ImageScope XML or GeoJSON) to carry beside the output, in its coordinates",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def add_write_options(parser: argparse.ArgumentParser) -> None:
    """The options that say how a slide is written (``convert`` and ``batch`` share them)."""
    parser.add_argument("--tile-size", type=tile_size, metavar="N|WxH", help="tile size (default: keep the source's)")
    parser.add_argument("--compression", choices=COMPRESSIONS, help="tile codec (default: the source's, else jpeg)")
    quality = int_in(1, 100, "quality")
    parser.add_argument(
        "--quality", type=quality, metavar="Q", help="JPEG/J2K quality (default: 90 at level 0, 95 below)"
    )
    parser.add_argument(
        "--ycbcr", action="store_true", help="re-encode JPEG as YCbCr 4:2:0 (smaller, faster) instead of Aperio RGB"
    )
    parser.add_argument("--bigtiff", choices=("auto", "yes", "no"), default="auto", help="BigTIFF (default: auto)")
    parser.add_argument("--ome", action="store_true", help="OME-TIFF with SubIFD levels (TIFF output)")
    workers = int_in(1, None, "workers")
    parser.add_argument("--workers", type=workers, metavar="N", help="decode/encode threads (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    parser.add_argument("--parents", action="store_true", help="create DST's missing folders (else an error)")
    parser.add_argument(
        "--skip-glass",
        action="store_true",
        help="leave out blocks that are all background (CWS): docs/cws.md, Skipping glass",
    )
    parser.add_argument(
        "--glass-tolerance",
        type=int_in(0, 64, "glass tolerance"),
        default=DEFAULT_GLASS_TOLERANCE,
        metavar="N",
        help=f"levels a glass tile's pixels may differ from the background (default: {DEFAULT_GLASS_TOLERANCE})",
    )
    add_convert_options(parser)  # --piece-size, --piece-format, --allow-outside (ACI)
    dicom = parser.add_argument_group("DICOM output (docs/dicom.md)")
    dicom.add_argument("--metadata", metavar="FILE.json", help="patient/study/specimen attributes (DICOM keywords)")
    dicom.add_argument("--study-uid", metavar="UID", help="StudyInstanceUID (default: a fresh one)")
    dicom.add_argument("--series-uid", metavar="UID", help="SeriesInstanceUID (default: a fresh one)")
    dicom.add_argument("--drop-label", action="store_true", help="leave the label image out")
    dicom.add_argument("--drop-macro", action="store_true", help="leave the macro (overview) image out")


def write_options(args: argparse.Namespace) -> WriteOptions:
    """The :class:`WriteOptions` of ``add_write_options``'s arguments."""
    return WriteOptions(
        tile_size=args.tile_size,
        compression=args.compression,
        quality=args.quality,
        workers=args.workers,
        overwrite=args.overwrite,
        ycbcr=args.ycbcr,
        tiff=TiffOptions(bigtiff=args.bigtiff, ome=args.ome),
        aci=aci_options(args),
        dicom=DicomOptions(
            metadata=args.metadata,
            study_uid=args.study_uid,
            series_uid=args.series_uid,
            drop_label=args.drop_label,
            drop_macro=args.drop_macro,
        ),
        parents=args.parents,
        skip_glass=args.skip_glass,
        glass_tolerance=args.glass_tolerance,
    )


def run(args: argparse.Namespace) -> int:
    options = write_options(args)
    marks = None
    if args.annotations is not None:
        from ..annotations import read_annotations

        marks = read_annotations(args.annotations)  # a bad file stops here, before any output
    with progress_bar(quiet=args.quiet) as progress, convert_source(args) as source:
        report = convert(source, args.destination, to=args.to, options=options, progress=progress)
    print(f"{report.destination}  [{report.format}]")
    for line in report.summary():
        print(f"  {line}")
    if report.associated:
        print(f"  associated: {', '.join(report.associated)}")
    if marks is not None:
        from ..annotations.carry import carry_convert

        written = carry_convert(marks, report.destination, aci=report.format == "aci", overwrite=args.overwrite)
        print(f"  annotations: {written[0]}" + (f" and {len(written) - 1} pieces' files" if len(written) > 1 else ""))
    return 0
