"""The codec's ceiling for a re-encode job: every level-0 tile decoded and encoded, nothing else.

Usage: ceiling.py SRC RESULT.json --quality Q [--ycbcr] [--workers N]

SRC is an SVS/TIFF (its first page's tiles, with the page's JPEGTables and colour space) or a CWS
directory (its level-0 blocks ``Da<N>.jpg``, complete JPEGs). Every tile's bytes are read into
memory first (not timed); then each tile is decoded by imagecodecs and encoded again as JPEG at
the job's settings (Q, RGB as our default or YCbCr 4:2:0 with ``--ycbcr``), on a thread per core
(imagecodecs releases the GIL), each thread taking whole runs of tiles: no retiling, no pyramid,
no files, no per-tile scheduling. RESULT gets the codec section's wall and CPU seconds, which the
harness reports as the job's time: the speed no converter doing this work could beat here.

With ``--work`` (SVS/TIFF only) it does the rest of a conversion's unavoidable work too, still
with no retiling and no pipeline: every tiled JPEG page (each pyramid level, not only level 0),
each tile read from the file inside the timed section (``os.pread``, as a converter must), and
each encoded tile written out: ``--files DIR`` one file each (a CWS directory's work) or
``--file PATH`` all appended to one file (an SVS's). Its speed is what a converter that
re-encodes every stored level could reach if retiling, planning and start-up cost nothing: a job's
share of it says how much of the gap to the level-0 ceiling is the pipeline's own. It writes a
file per source tile (240 px on our synthetic slides: 22,313 at 40k, where a 256 px CWS has
19,812 blocks), so it creates 13% more files than the job: about 1% of its time, in the job's favour.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import imagecodecs
import tifffile

T = TypeVar("T")
_BLOCK = re.compile(r"Da\d+\.jpg")


Page = tuple[list[tuple[int, int]], bytes | None, str | None]  # tile (offset, count)s, JPEGTables, colour space


def jpeg_pages(src: Path) -> list[Page]:
    """Every tiled page (the pyramid levels; an SVS's thumbnail, label and macro are strips): its
    tiles' (offset, byte count), its JPEGTables and the colour space to decode them in."""
    pages = []
    with tifffile.TiffFile(src) as tif:
        for page in tif.pages:
            assert isinstance(page, tifffile.TiffPage)
            if page.is_tiled:
                assert page.compression == 7, "JPEG tiles expected"
                colorspace = "RGB" if page.photometric == tifffile.PHOTOMETRIC.RGB else None
                spans = list(zip(page.dataoffsets, page.databytecounts, strict=True))
                pages.append((spans, page.jpegtables, colorspace))
    return pages


def svs_tiles(src: Path) -> tuple[list[bytes], bytes | None, str | None]:
    """Level 0's tile bytes, its JPEGTables and the colour space to decode them in."""
    spans, tables, colorspace = jpeg_pages(src)[0]
    with open(src, "rb") as f:
        tiles = []
        for offset, count in spans:
            f.seek(offset)
            tiles.append(f.read(count))
    return tiles, tables, colorspace


def reencode(
    data: bytes, tables: bytes | None, colorspace: str | None, options: dict[str, object]
) -> tuple[bytes, int]:
    """A tile decoded and encoded again at ``options``: the new JPEG and the tile's pixel count."""
    outcolor = "RGB" if colorspace else None
    image = imagecodecs.jpeg8_decode(data, tables=tables, colorspace=colorspace, outcolorspace=outcolor)
    return imagecodecs.jpeg8_encode(image, **options), image.shape[0] * image.shape[1]


def cws_tiles(src: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted(src.iterdir()) if _BLOCK.fullmatch(path.name)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--quality", type=int, required=True)
    parser.add_argument("--ycbcr", action="store_true", help="encode YCbCr 4:2:0 (default: RGB, Aperio's)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", action="store_true", help="every level, reads timed, tiles written (see above)")
    sink = parser.add_mutually_exclusive_group()
    sink.add_argument("--files", type=Path, help="with --work: write each encoded tile as a file in this new folder")
    sink.add_argument("--file", type=Path, help="with --work: append every encoded tile to this new file")
    args = parser.parse_args(argv)
    if (args.files or args.file) and not args.work:
        parser.error("--files and --file go with --work")
    if args.work:
        return work_ceiling(args)
    if args.source.is_dir():
        tiles, tables, colorspace = cws_tiles(args.source), None, None  # complete JPEGs (Adobe marker)
    else:
        tiles, tables, colorspace = svs_tiles(args.source)
    options = encode_options(args.quality, ycbcr=args.ycbcr)

    def work(part: list[bytes]) -> tuple[int, int]:
        pixels = encoded = 0
        for data in part:
            jpeg, count = reencode(data, tables, colorspace, options)
            encoded += len(jpeg)
            pixels += count
        return pixels, encoded

    args.result.write_text(json.dumps(timed(work, tiles, workers=args.workers)))
    return 0


def timed(work: Callable[[list[T]], tuple[int, int]], items: list[T], *, workers: int) -> dict[str, object]:
    """``work`` over ``items`` on ``workers`` threads, timed: the record the harness reads."""
    workers = max(1, workers)
    runs = [items[i :: workers * 8] for i in range(workers * 8)]  # interleaved: equal work per run
    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(workers) as pool:
        done = list(pool.map(work, runs))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "codec_wall_s": wall,
        "codec_cpu_s": cpu,
        "tiles": len(items),
        "megapixels": sum(p for p, _ in done) / 1e6,
        "encoded_mb": sum(e for _, e in done) / 1e6,
        "workers": workers,
    }


def encode_options(quality: int, *, ycbcr: bool) -> dict[str, object]:
    if ycbcr:
        return {"level": quality, "subsampling": "420"}
    return {"level": quality, "colorspace": "RGB", "outcolorspace": "RGB"}


def work_ceiling(args: argparse.Namespace) -> int:
    """``--work``: every level's tiles read, decoded, encoded and written, timed together."""
    items = [(o, c, tables, colorspace) for spans, tables, colorspace in jpeg_pages(args.source) for o, c in spans]
    options = encode_options(args.quality, ycbcr=args.ycbcr)
    source = os.open(args.source, os.O_RDONLY)
    if args.files is not None:
        args.files.mkdir()
    out = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644) if args.file else None
    names = itertools.count()

    def work(part: list[tuple[int, int, bytes | None, str | None]]) -> tuple[int, int]:
        pixels = encoded = 0
        for offset, count, tables, colorspace in part:
            jpeg, tile_pixels = reencode(os.pread(source, count, offset), tables, colorspace, options)
            if out is not None:
                os.write(out, jpeg)  # O_APPEND: each tile lands whole after the last
            elif args.files is not None:
                fd = os.open(args.files / f"{next(names)}.jpg", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.write(fd, jpeg)
                os.close(fd)
            encoded += len(jpeg)
            pixels += tile_pixels
        return pixels, encoded

    record = timed(work, items, workers=args.workers)
    os.close(source)
    if out is not None:
        os.close(out)
    args.result.write_text(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
