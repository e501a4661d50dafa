"""Tile readers over CWS block files: a copyable grid, or composed overlapping blocks.

When a level's blocks tile it exactly (our own output, Digital Slide Studio), the level's grid is
the block grid and a tile's stored bytes are the block file: conversions copy them. Scanner blocks
overlap (752x480 blocks 16 px apart): then the level is a virtual grid of the nominal block size
whose tiles are painted from every block they touch, the block further right or lower on top,
gaps white (or the colour of our ``tBackgroundColor``: blocks left out as glass). Each block is
decoded once per read and kept in a small LRU for its neighbours.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ... import codecs
from ...codecs import RGBArray, TileEncoding
from ...errors import TileReadError
from ...geometry import Box, TileGrid
from ...limits import read_regular
from .placement import IndexArray, IntArray

CACHE_BYTES = 64 * 1024 * 1024  # decoded blocks kept for the neighbouring tiles that share them


def read_block(path: Path, tile: tuple[int, int] | None = None) -> bytes:
    """A block file's bytes: a regular file (never a FIFO or device) of at most MAX_SMALL_FILE bytes;
    ``tile`` (col, row) is named in the error."""
    what = "block" if tile is None else f"tile ({tile[0]}, {tile[1]}): block"
    return read_regular(path, error=TileReadError, what=what)


def decode_block(
    path: Path, data: bytes, tile: tuple[int, int], size: tuple[int, int], *, exact: bool, out: RGBArray | None = None
) -> RGBArray:
    """Decode block ``path`` for ``tile`` (col, row); its JPEG header must fit ``size`` (the INI's).
    ``out``: a buffer to decode into when the block fills it (:func:`codecs.decode_jpeg`)."""
    try:
        # No colour space forced: libjpeg follows JFIF/Adobe markers, exactly as browsers do.
        return codecs.decode_jpeg(data, size=size, exact=exact, out=out)
    except TileReadError as err:
        raise TileReadError(f"{path}: tile ({tile[0]}, {tile[1]}): {err}") from err


class BlockGridReader:
    """A level whose blocks are its tiles: ``read_encoded`` is the block file, for copying."""

    decodes_into = True  # read_tile(col, row, out=buffer): a full-size block decoded into the buffer

    def __init__(
        self,
        cells: IndexArray,
        directory: Path,
        names: list[str | None],
        quality: int | None,
        block_size: tuple[int, int],
        *,
        gap: tuple[int, int, int] | None = None,
    ) -> None:
        self._block_size = block_size
        self._gap = gap
        self._cells = cells
        self._directory = directory
        self._names = names
        self._quality = quality
        self._encoding: TileEncoding | None = None
        self._probed = False
        self._lock = threading.Lock()

    @property
    def encoding(self) -> TileEncoding | None:
        """JPEG with the colour space of the first block (read once, on first use)."""
        with self._lock:
            if not self._probed:
                self._encoding = self._probe()
                self._probed = True
            return self._encoding

    def _probe(self) -> TileEncoding | None:
        for index in np.sort(self._cells[self._cells >= 0]).tolist():
            name = self._names[index]
            if name is None:
                continue
            path = self._directory / name
            try:
                info = codecs.jpeg_info(read_block(path))
            except (ValueError, TileReadError, IndexError):
                return None  # not a JPEG: nothing a JPEG container could copy
            return TileEncoding("jpeg", rgb=info.rgb, quality=self._quality) if info.components == 3 else None
        return None

    def _path(self, col: int, row: int) -> Path | None:
        rows, cols = self._cells.shape
        index = int(self._cells[row, col]) if 0 <= row < rows and 0 <= col < cols else -1
        name = None if index < 0 else self._names[index]
        return None if name is None else self._directory / name

    def read_encoded(self, col: int, row: int) -> bytes | None:
        path = self._path(col, row)
        return None if path is None else read_block(path, (col, row))

    def _listed(self, col: int, row: int) -> bool:
        rows, cols = self._cells.shape
        return 0 <= row < rows and 0 <= col < cols and int(self._cells[row, col]) >= 0

    def read_tile(self, col: int, row: int, *, out: RGBArray | None = None) -> RGBArray | None:
        path = self._path(col, row)
        if path is None:
            if self._gap is not None and not self._listed(col, row):
                return np.full((self._block_size[1], self._block_size[0], 3), self._gap, np.uint8)
            return None
        rows, cols = self._cells.shape
        edge = col == cols - 1 or row == rows - 1  # an edge block may be cropped to the image
        data = read_block(path, (col, row))
        return decode_block(path, data, (col, row), self._block_size, exact=not edge, out=out)


class _BlockCache:
    """Decoded blocks by index, least recently used out first, bounded in bytes; thread-safe."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._bytes = 0
        self._items: OrderedDict[int, RGBArray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, index: int) -> RGBArray | None:
        with self._lock:
            item = self._items.get(index)
            if item is not None:
                self._items.move_to_end(index)
            return item

    def put(self, index: int, pixels: RGBArray) -> None:
        with self._lock:
            if index in self._items:
                return
            self._items[index] = pixels
            self._bytes += pixels.nbytes
            while self._bytes > self._limit and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes


class ComposedBlockReader:
    """A virtual grid over overlapping blocks; tiles are painted, so nothing can be copied."""

    def __init__(
        self,
        grid: TileGrid,
        px: IntArray,
        py: IntArray,
        block_size: tuple[int, int],
        directory: Path,
        names: list[str | None],
        *,
        gap: tuple[int, int, int] | None = None,
    ) -> None:
        self._grid = grid
        self._gap = gap
        # Paint order: top to bottom, left to right, so the block further right or lower wins.
        # Missing blocks are white: left out of the index, so thousands of them cost nothing per tile.
        present = np.flatnonzero(np.fromiter((name is not None for name in names), bool, len(names)))
        order = present[np.lexsort((px[present], py[present]))]
        self._order = order
        self._px = px[order]
        self._py = py[order]
        self._block_w, self._block_h = block_size
        self._directory = directory
        self._names = names
        self._cache = _BlockCache(CACHE_BYTES)

    @property
    def encoding(self) -> TileEncoding | None:
        return None

    def read_encoded(self, col: int, row: int) -> bytes | None:
        return None

    def _decoded(self, index: int, tile: tuple[int, int]) -> RGBArray | None:
        pixels = self._cache.get(index)
        if pixels is None:
            name = self._names[index]
            if name is None:
                return None
            path = self._directory / name
            size = (self._block_w, self._block_h)  # scanners crop edge blocks: smaller is fine
            pixels = decode_block(path, read_block(path, tile), tile, size, exact=False)
            self._cache.put(index, pixels)
        return pixels

    def read_tile(self, col: int, row: int) -> RGBArray | None:
        box = self._grid.tile_box(col, row)
        # Blocks are at most nominal size, so only those starting within one block of the box touch it.
        lo = int(np.searchsorted(self._py, box.y - self._block_h + 1, side="left"))
        hi = int(np.searchsorted(self._py, box.bottom, side="left"))
        near = np.flatnonzero((self._px[lo:hi] > box.x - self._block_w) & (self._px[lo:hi] < box.right)) + lo
        if len(near) == 0:
            return None if self._gap is None else np.full((box.height, box.width, 3), self._gap, np.uint8)
        out = np.full((box.height, box.width, 3), self._gap or 255, np.uint8)
        for k in near.tolist():
            pixels = self._decoded(int(self._order[k]), (col, row))
            if pixels is None:
                continue  # a missing block file: white, reported once when the slide was opened
            x, y = int(self._px[k]), int(self._py[k])
            part = Box(x, y, pixels.shape[1], pixels.shape[0]).intersection(box)
            if part is None:
                continue
            out[part.y - box.y : part.bottom - box.y, part.x - box.x : part.right - box.x] = pixels[
                part.y - y : part.bottom - y, part.x - x : part.right - x
            ]
        return out
