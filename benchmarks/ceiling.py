"""The codec's ceiling for a re-encode job: every level-0 tile decoded and encoded, nothing else.

Usage: ceiling.py SRC RESULT.json --quality Q [--ycbcr] [--workers N]

SRC is an SVS/TIFF (its first page's tiles, with the page's JPEGTables and colour space) or a CWS
directory (its level-0 blocks ``Da<N>.jpg``, complete JPEGs). Every tile's bytes are read into
memory first (not timed); then each tile is decoded by imagecodecs and encoded again as JPEG at
the job's settings (Q, RGB as our default or YCbCr 4:2:0 with ``--ycbcr``), on a thread per core
(imagecodecs releases the GIL), each thread taking whole runs of tiles: no retiling, no pyramid,
no files, no per-tile scheduling. RESULT gets the codec section's wall and CPU seconds, which the
harness reports as the job's time: the speed no converter doing this work could beat here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagecodecs
import tifffile

_BLOCK = re.compile(r"Da\d+\.jpg")


def svs_tiles(src: Path) -> tuple[list[bytes], bytes | None, str | None]:
    """The first page's tile bytes, its JPEGTables and the colour space to decode them in."""
    with tifffile.TiffFile(src) as tif:
        page = tif.pages[0]
        assert isinstance(page, tifffile.TiffPage) and page.is_tiled and page.compression == 7, "JPEG tiles expected"
        rgb = page.photometric == tifffile.PHOTOMETRIC.RGB
        with open(src, "rb") as f:
            tiles = []
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
                f.seek(offset)
                tiles.append(f.read(count))
        return tiles, page.jpegtables, "RGB" if rgb else None


def cws_tiles(src: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted(src.iterdir()) if _BLOCK.fullmatch(path.name)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--quality", type=int, required=True)
    parser.add_argument("--ycbcr", action="store_true", help="encode YCbCr 4:2:0 (default: RGB, Aperio's)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if args.source.is_dir():
        tiles, tables, colorspace = cws_tiles(args.source), None, None  # complete JPEGs (Adobe marker)
    else:
        tiles, tables, colorspace = svs_tiles(args.source)
    outcolor = "RGB" if colorspace else None
    if args.ycbcr:
        options: dict[str, object] = {"level": args.quality, "subsampling": "420"}
    else:
        options = {"level": args.quality, "colorspace": "RGB", "outcolorspace": "RGB"}

    def work(part: list[bytes]) -> tuple[int, int]:
        pixels = encoded = 0
        for data in part:
            image = imagecodecs.jpeg8_decode(data, tables=tables, colorspace=colorspace, outcolorspace=outcolor)
            encoded += len(imagecodecs.jpeg8_encode(image, **options))
            pixels += image.shape[0] * image.shape[1]
        return pixels, encoded

    workers = max(1, args.workers)
    runs = [tiles[i :: workers * 8] for i in range(workers * 8)]  # interleaved: equal work per run
    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(workers) as pool:
        done = list(pool.map(work, runs))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    record = {
        "codec_wall_s": wall,
        "codec_cpu_s": cpu,
        "tiles": len(tiles),
        "megapixels": sum(p for p, _ in done) / 1e6,
        "encoded_mb": sum(e for _, e in done) / 1e6,
        "workers": workers,
    }
    args.result.write_text(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
