"""``wsi-composite info SLIDE [--json]``: levels, metadata and associated images of a slide."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..model import Slide
from ..registry import open_slide


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("info", help="show levels, metadata and associated images")
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
