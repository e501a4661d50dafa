"""Re-encoding a level into another tile grid: a row of a stripe per task, not a tile per task.

:func:`reencoded` is the re-encode half of :func:`composite.tiling.encoded_tiles`. For each
column stripe (:func:`composite.tiling.stripes`), top to bottom:

- a **decode task** per source tile row decodes that row's tiles across the stripe, each into one
  reused buffer (readers that can decode into it: TIFF JPEG tiles; no allocation per tile), and
  copies each tile's pixels straight into the target tiles they fall in, in the buffers of the
  one or two target rows the source row overlaps (one copy per pixel);
- an **encode task** per target tile row waits for those decodes, pads the slide's right and
  bottom edges (repeating the last column and row, or with ``fill``), and encodes the row's
  tiles one after the other, each a contiguous array.

So the Python work per tile is one decode call, a few slices and one encode call; futures, locks
and hand-overs are per row (15 tiles of a 3,840 px stripe), which keeps both cores in the codecs
instead of in the interpreter. Decode tasks are submitted before the encode tasks that need them
on the same FIFO pool, so an encode only ever waits for a decode a worker has already started.
A target row's buffer is given back after its encode; memory holds a few row buffers of one
stripe (a few MB each), whatever the slide's size. (Until 2026-12-01 decodes went into per-row
bands that encode tasks copied from: two copies per pixel and an allocation per tile.)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from .codecs import RGBArray
from .geometry import TileGrid
from .model import Level

Fill = tuple[int, int, int] | None  # the colour of edge tiles' padding; None: repeat the last row/column
T = TypeVar("T")
ROWS_IN_FLIGHT = 1  # encode tasks queued per worker (each holds a row buffer)


class _Buffers:
    """Arrays of a few shapes, reused: rows are several MB, and freeing them to malloc
    from several threads left that memory in per-thread arenas (peak RSS grew with the stripe)."""

    def __init__(self) -> None:
        self._free: dict[tuple[int, ...], list[RGBArray]] = {}
        self._lock = threading.Lock()

    def get(self, shape: tuple[int, ...]) -> RGBArray:
        with self._lock:
            free = self._free.get(shape)
            if free:
                return free.pop()
        return np.empty(shape, np.uint8)

    def put(self, array: RGBArray) -> None:
        with self._lock:
            self._free.setdefault(array.shape, []).append(array)


class _Stripe:
    """One stripe's target rows: buffers that decode tasks fill and encode tasks cut tiles from."""

    def __init__(self, source: Level, target: TileGrid, columns: range, fill: Fill, buffers: _Buffers) -> None:
        self.source, self.target, self.columns, self.fill, self.buffers = source, target, columns, fill, buffers
        sg = source.grid
        self.x0 = columns.start * target.tile_width  # the stripe's target pixels, x0..x1
        self.x1 = min(columns.stop * target.tile_width, target.width)
        self.c0 = self.x0 // sg.tile_width  # its source tile columns, c0..c1 - 1
        self.c1 = (self.x1 - 1) // sg.tile_width + 1
        self.shape = (len(columns), target.tile_height, target.tile_width, 3)  # a target row's tiles
        self.across = [self._pieces_across(col) for col in range(self.c0, self.c1)]
        self.rows: dict[int, RGBArray] = {}  # target row -> its buffer, until encoded
        self.decodes: dict[int, Future[None]] = {}  # source row -> its decode task (once a stripe)
        self.lock = threading.Lock()

    def source_rows(self, row: int) -> range:
        """The source tile rows target ``row`` overlaps."""
        th, sh = self.target.tile_height, self.source.grid.tile_height
        top = row * th
        bottom = min(top + th, self.target.height)
        return range(top // sh, (bottom - 1) // sh + 1)

    def target_rows(self, band: int) -> range:
        """The target rows source tile row ``band`` overlaps."""
        th, sh = self.target.tile_height, self.source.grid.tile_height
        top = band * sh
        bottom = min(top + sh, self.source.grid.height)
        return range(top // th, (bottom - 1) // th + 1)

    def row(self, row: int) -> RGBArray:
        with self.lock:
            pixels = self.rows.get(row)
            if pixels is None:
                pixels = self.rows[row] = self.buffers.get(self.shape)
            return pixels

    def submit(self, row: int, pool: ThreadPoolExecutor) -> None:
        """Submit the decodes target ``row`` needs that are not submitted yet (calling thread only)."""
        for band in self.source_rows(row):
            if band not in self.decodes:
                self.decodes[band] = pool.submit(self._decode, band)

    def _pieces_across(self, col: int) -> list[tuple[int, slice, slice]]:
        """Where source tile column ``col`` goes across the stripe, the same in every row: per
        target tile it falls in, (that tile's index in the row, its x slice, the source x slice)."""
        sw, tw, x0 = self.source.grid.tile_width, self.target.tile_width, self.x0
        tx = col * sw
        a, b = max(tx, x0), min(tx + sw, self.x1)  # the part inside the stripe (and the level)
        pieces = []
        for i in range((a - x0) // tw, (b - 1 - x0) // tw + 1):
            left = x0 + i * tw
            xa, xb = max(a, left), min(b, left + tw)
            pieces.append((i, slice(xa - left, xb - left), slice(xa - tx, xb - tx)))
        return pieces

    def _decode(self, band: int) -> None:
        """Decode source row ``band`` across the stripe into the target rows it overlaps: each
        source tile's pixels go straight to the one to four target tiles they fall in (where,
        is worked out once per row and stripe: per tile, only the copies remain)."""
        sg, th = self.source.grid, self.target.tile_height
        y = band * sg.tile_height
        bottom = min(y + sg.tile_height, sg.height)
        down = []  # per target row the band overlaps: (its tiles, their y slice, the source y slice)
        for row in self.target_rows(band):
            top = row * th
            y0, y1 = max(y, top), min(bottom, top + th)
            down.append((self.row(row), slice(y0 - top, y1 - top), slice(y0 - y, y1 - y)))
        scratch = self.buffers.get((sg.tile_height, sg.tile_width, 3))  # decoded into, when the reader can
        try:
            for col, across in zip(range(self.c0, self.c1), self.across, strict=True):
                tile = self.source.read_tile(col, band, out=scratch)
                for tiles, ty, sy in down:
                    part = tile[sy]
                    for i, tx, sx in across:
                        tiles[i, ty, tx] = part[:, sx]
        finally:
            self.buffers.put(scratch)

    def row_tiles(self, row: int) -> RGBArray:
        """Target ``row`` of the stripe as full tiles (tile, y, x, sample), edges padded; give it
        back to the buffers when encoded."""
        for band in self.source_rows(row):
            self.decodes[band].result()
        with self.lock:
            tiles = self.rows.pop(row)
        tw, th = self.target.tile_width, self.target.tile_height
        height = min(th, self.target.height - row * th)
        full, rest = divmod(self.x1 - self.x0, tw)  # whole tiles, then the pixels of a partial last one
        if rest:  # the slide's right edge, then its bottom: as tiling.pad_tile pads one tile
            edge = tiles[full, :height]
            edge[:, rest:] = self.fill if self.fill is not None else edge[:, rest - 1 : rest]
        if height < th:
            tiles[:, height:] = self.fill if self.fill is not None else tiles[:, height - 1 : height]
        return tiles


def reencoded(
    source: Level,
    target: TileGrid,
    stripe_columns: list[range],
    *,
    encode: Callable[[RGBArray, int, int], T],
    pool: ThreadPoolExecutor,
    workers: int,
    fill: Fill,
) -> Iterator[T]:
    """``encode(pixels, col, row)`` of every full-size target tile, stripe by stripe, rows top to
    bottom and columns left to right inside a stripe (see the module docstring)."""

    def encode_row(stripe: _Stripe, row: int) -> list[T]:
        tiles = stripe.row_tiles(row)
        try:
            return [encode(tiles[i], col, row) for i, col in enumerate(stripe.columns)]
        finally:
            buffers.put(tiles)

    buffers = _Buffers()

    # The decodes of the next rows too, as many as a source row is target rows high (one for 240 ->
    # 256, two for 480 -> 256): an encode then never waits on a decode started at the same time
    # (a stall: one core idle for a whole source row's decoding).
    ahead = 1 + -(-source.grid.tile_height // target.tile_height)
    pending: deque[Future[list[T]]] = deque()
    for columns in stripe_columns:
        stripe = _Stripe(source, target, columns, fill, buffers)
        for row in range(target.rows):
            for later in range(row, min(row + ahead, target.rows)):
                stripe.submit(later, pool)
            pending.append(pool.submit(encode_row, stripe, row))
            while len(pending) > ROWS_IN_FLIGHT * workers:
                yield from pending.popleft().result()
    while pending:
        yield from pending.popleft().result()
