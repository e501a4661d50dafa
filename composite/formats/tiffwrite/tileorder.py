"""Tiles written out of row-major order, put back in place by rewriting two tag arrays.

Re-encoded levels arrive in column stripes (:mod:`composite.tiling`), and tifffile stores an
iterator's tiles in the order given, numbering them row-major. TIFF does not require tile data
to lie in row-major order in the file, only that entry ``i`` of TileOffsets and TileByteCounts
describes tile ``i``. So the writer records each level's arrival order (:class:`ArrivalOrder`)
and, once tifffile has closed the file, :func:`place_tiles` permutes the two arrays in place: no
tile byte moves, and the level never has to be held or reordered in memory.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

from ...tiling import EncodedTile


class ArrivalOrder:
    """The row-major index of each tile of a level, in the order the tiles were written."""

    def __init__(self, cols: int) -> None:
        self._cols = cols
        self.indices = array("L")

    def track(self, tiles: Iterator[EncodedTile]) -> Iterator[EncodedTile]:
        for tile in tiles:
            self.indices.append(tile.row * self._cols + tile.col)
            yield tile

    def is_row_major(self) -> bool:
        return all(index == position for position, index in enumerate(self.indices))


_UNSIGNED = {3: "u2", 4: "u4", 16: "u8"}  # TIFF SHORT, LONG, LONG8


def place_tiles(path: Path, orders: dict[tuple[int, int], ArrivalOrder]) -> None:
    """Permute TileOffsets/TileByteCounts of the tiled IFDs of size (width, height) in ``orders``.

    Every key must match exactly one tiled IFD (main chain or SubIFDs); levels of a pyramid
    never share a size.
    """
    pending = {size: order for size, order in orders.items() if not order.is_row_major()}
    if not pending:
        return
    with tifffile.TiffFile(path) as tif, open(path, "r+b") as out:
        for page in _tiled_pages(tif):
            order = pending.pop((page.imagewidth, page.imagelength), None)
            if order is None:
                continue
            if len(order.indices) != len(page.dataoffsets):
                raise ValueError(f"{path}: {len(order.indices)} tiles written, IFD has {len(page.dataoffsets)}")
            arrived = np.frombuffer(order.indices, dtype=f"u{order.indices.itemsize}")
            for name, values in (("TileOffsets", page.dataoffsets), ("TileByteCounts", page.databytecounts)):
                tag = page.tags[name]
                placed = np.empty(len(values), np.uint64)
                placed[arrived] = values  # the k-th tile written is tile arrived[k]
                dtype = np.dtype(tif.byteorder + _UNSIGNED[tag.dtype])
                out.seek(tag.valueoffset)
                out.write(placed.astype(dtype).tobytes())
    if pending:
        raise ValueError(f"{path}: no tiled IFD of size {sorted(pending)}")


def _tiled_pages(tif: tifffile.TiffFile) -> Iterator[tifffile.TiffPage]:
    for page in tif.pages:
        assert isinstance(page, tifffile.TiffPage)
        if page.is_tiled:
            yield page
        for sub in page.pages or ():
            assert isinstance(sub, tifffile.TiffPage)
            if sub.is_tiled:
                yield sub
