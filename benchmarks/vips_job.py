"""The libvips peer jobs, run by the interpreter of benchmarks/.venv-vips (pyvips + pyvips-binary).

Usage (run.py builds these command lines):
  vips_job.py versions                      -> JSON {"pyvips": ..., "libvips": ...}
  vips_job.py dzsave SRC OUT                -> Deep Zoom, JPEG Q80, 256-px tiles, overlap 0
  vips_job.py tiffsave SRC OUT              -> tiled pyramidal TIFF, 256-px JPEG Q80 tiles
  vips_job.py arrayjoin BLOCKS.json OUT     -> CWS blocks assembled with arrayjoin, then tiffsave

The SVS is read with ``tiffload`` page 0 (its level 0), not ``openslideload``: that is the fastest
reader libvips has for it, so the peer is at its best. The job here is only the libvips calls;
everything else (paths, block order) is decided by run.py. This file does not import composite.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pyvips  # type: ignore[import-not-found,unused-ignore]

QUALITY = 80
TILE = 256


def _tiffsave(image: Any, out: str) -> None:
    # libvips builds a 2x pyramid (its only choice); our SVS writer builds the 4x one Aperio uses.
    image.tiffsave(
        out,
        tile=True,
        tile_width=TILE,
        tile_height=TILE,
        pyramid=True,
        compression="jpeg",
        Q=QUALITY,
        bigtiff=True,
    )


def _svs_level0(src: str) -> Any:
    return pyvips.Image.tiffload(src, page=0, access="sequential")


def main(argv: list[str]) -> int:
    match argv:
        case ["versions"]:
            libvips = ".".join(str(pyvips.version(i)) for i in range(3))
            print(json.dumps({"pyvips": pyvips.__version__, "libvips": libvips}))
        case ["dzsave", src, out]:
            _svs_level0(src).dzsave(out, suffix=f".jpg[Q={QUALITY}]", tile_size=TILE, overlap=0)
        case ["tiffsave", src, out]:
            _tiffsave(_svs_level0(src), out)
        case ["arrayjoin", blocks_json, out]:
            with open(blocks_json) as f:
                plan = json.load(f)
            blocks = [pyvips.Image.new_from_file(path, access="sequential") for path in plan["files"]]
            canvas = pyvips.Image.arrayjoin(blocks, across=plan["across"])
            _tiffsave(canvas.crop(0, 0, plan["width"], plan["height"]), out)
        case _:
            print(__doc__, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
