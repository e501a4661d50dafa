"""``wsi-composite info SLIDE [--json]``: levels, metadata and associated images of a slide.

A directory that is not itself a slide (CWS, DICOM series) lists the slides below it, found as
``batch`` finds them: path, format, dimensions, mpp, magnification, levels, size on disk
(``--json``: a list of objects; a slide that cannot be opened has its one-line ``error``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CompositeError, UnsupportedFormatError
from ..registry import detect_format, open_slide

if TYPE_CHECKING:
    from ..model import Slide


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("info")
    parser.add_argument("slide", help="slide file or directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def describe(slide: Slide) -> dict[str, Any]:
    """The JSON shape of ``info --json``; reads metadata only, never pixels."""
    levels = []
    for level in slide.levels:
        encoding = level.encoding
        levels.append(
            {
                "width": level.width,
                "height": level.height,
                "downsample": level.downsample,
                "tile_width": level.grid.tile_width,
                "tile_height": level.grid.tile_height,
                "compression": encoding.compression if encoding else None,
            }
        )
    return {
        "format": slide.format,
        "path": str(slide.path),
        "levels": levels,
        "mpp": list(slide.mpp) if slide.mpp else None,
        "magnification": slide.magnification,
        "associated": {name: {"width": a.width, "height": a.height} for name, a in slide.associated.items()},
        "focal_planes": sorted(slide.focal_planes),
        "properties": slide.properties,
    }


def run(args: argparse.Namespace) -> int:
    if Path(args.slide).is_dir():
        try:
            detect_format(args.slide)
        except UnsupportedFormatError:
            return list_directory(Path(args.slide), as_json=args.json)
    with open_slide(args.slide) as slide:
        info = describe(slide)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['path']}  [{info['format']}]")
    mpp = info["mpp"]
    print(f"  mpp: {f'{mpp[0]:.4f} x {mpp[1]:.4f}' if mpp else 'unknown'}")
    print(f"  magnification: {info['magnification'] if info['magnification'] is not None else 'unknown'}")
    print("  levels:")
    for index, level in enumerate(info["levels"]):
        print(
            f"    {index}: {level['width']} x {level['height']}  downsample {level['downsample']:.3f}"
            f"  tiles {level['tile_width']}x{level['tile_height']}  {level['compression']}"
        )
    if info["associated"]:
        print("  associated images:")
        for name, size in info["associated"].items():
            print(f"    {name}: {size['width']} x {size['height']}")
    if info["focal_planes"]:
        print(f"  focal planes: {', '.join(info['focal_planes'])}")
    if info["properties"]:
        print("  properties:")
        for key, value in sorted(info["properties"].items()):
            print(f"    {key} = {value.replace(chr(13), '').replace(chr(10), ' ')}")
    return 0


def summarize(path: Path, root: Path) -> dict[str, Any]:
    """One row of a directory listing: what ``info`` says of a slide in brief, or its error."""
    from ..batch.ledger import output_size

    row: dict[str, Any] = {"path": str(path.relative_to(root)) if path.is_relative_to(root) else str(path)}
    try:
        row["size"] = output_size(path)
        with open_slide(path) as slide:
            row |= {
                "format": slide.format,
                "width": slide.levels[0].width,
                "height": slide.levels[0].height,
                "mpp": list(slide.mpp) if slide.mpp else None,
                "magnification": slide.magnification,
                "levels": len(slide.levels),
            }
    except (CompositeError, OSError) as err:
        row["error"] = str(err)
    return row


def list_directory(root: Path, *, as_json: bool) -> int:
    from ..batch.discover import discover

    found = discover(root, root / ".info-no-output", to="cws")
    rows = [summarize(job.source, root) for job in found.jobs]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        raise UnsupportedFormatError(f"{root}: directory with no slide in it")
    print(f"{root}  {len(rows)} slides")
    for row in rows:
        if "error" in row:
            print(f"  {row['path']}  error: {row['error']}")
            continue
        mpp = f"{row['mpp'][0]:.4f}" if row["mpp"] else "-"
        mag = f"{row['magnification']:g}x" if row["magnification"] else "-"
        print(
            f"  {row['path']}  [{row['format']}]  {row['width']} x {row['height']}  mpp {mpp}  {mag}"
            f"  {row['levels']} levels  {row['size'] / 1e6:.1f} MB"
        )
    return 0
