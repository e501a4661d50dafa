"""The disk's ceiling for the byte-copy path: an SVS's tile bytes copied into one file per tile.

Usage: plain_copy.py SRC.svs OUT_DIR COUNT

Reads each JPEG tile of every tiled page at its TIFF offset, joins it to the page's JPEGTables
(SOI + tables + tile, the size a standalone block has) and writes it to its own file, COUNT files
in all (the number of blocks our CWS has; tiles are reused in order when COUNT exceeds them).
No decoding, no INI, no checks: nothing a converter could skip.
"""

from __future__ import annotations

import os
import sys
from itertools import cycle, islice
from pathlib import Path

import tifffile


def tile_spans(src: Path) -> list[tuple[int, int, bytes]]:
    """(offset, bytecount, tables) of every non-empty tile of every tiled page."""
    spans: list[tuple[int, int, bytes]] = []
    with tifffile.TiffFile(src) as tif:
        for page in tif.pages:
            if not isinstance(page, tifffile.TiffPage) or not page.is_tiled:
                continue
            tables = page.jpegtables or b""
            spans.extend((o, n, tables) for o, n in zip(page.dataoffsets, page.databytecounts, strict=True) if n)
    return spans


def main(argv: list[str]) -> int:
    src, out, count = Path(argv[0]), Path(argv[1]), int(argv[2])
    spans = tile_spans(src)
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(src, os.O_RDONLY)
    try:
        for i, (offset, size, tables) in enumerate(islice(cycle(spans), count)):
            tile = os.pread(fd, size, offset)
            data = tables[:-2] + tile[2:] if tables else tile  # drop the tables' EOI, the tile's SOI
            with open(out / f"{i}.jpg", "wb") as f:
                f.write(data)
    finally:
        os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
