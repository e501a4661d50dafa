"""Re-encoding a level into another tile grid: a row of a stripe per task, not a tile per task.

:func:`reencoded` is the re-encode half of :func:`composite.tiling.encoded_tiles`. For each
column stripe (:func:`composite.tiling.stripes`), top to bottom:

- a **decode task** per source tile row decodes that row's tiles across the stripe into one band
  (an array as wide as the stripe's source columns);
- an **encode task** per target tile row copies the rows it needs from the one or two bands
  into a row buffer (one slice each), pads the slide's right and bottom edges (repeating the last
  column and row, or with ``fill``), and encodes the row's tiles one after the other.

So the Python work per tile is one encode call and one slice; futures, locks and hand-overs are
per row (15 tiles of a 3,840 px stripe), which keeps both cores in the codecs instead of in the
interpreter. Decode tasks are submitted before the encode tasks that need them on the same FIFO
pool, so an encode only ever waits for a decode a worker has already started. A band is dropped
after the last target row that needs it; memory holds a few bands and row buffers of one stripe
(a few MB each), whatever the slide's size.
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
ROWS_IN_FLIGHT = 1  # encode tasks queued per worker (each holds a row buffer and its bands)


class _Buffers:
    """Arrays of a few shapes, reused: bands and rows are several MB, and freeing them to malloc
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
    """One stripe's bands (decoded source rows) and target rows."""

    def __init__(self, source: Level, target: TileGrid, columns: range, fill: Fill, buffers: _Buffers) -> None:
        self.source, self.target, self.columns, self.fill, self.buffers = source, target, columns, fill, buffers
        sg = source.grid
        self.x0 = columns.start * target.tile_width  # the stripe's target pixels, x0..x1
        self.x1 = min(columns.stop * target.tile_width, target.width)
        self.c0 = self.x0 // sg.tile_width  # its source tile columns, c0..c1 - 1
        self.c1 = (self.x1 - 1) // sg.tile_width + 1
        self.sx0 = self.c0 * sg.tile_width  # the bands' first pixel column
        self.bands: dict[int, Future[RGBArray]] = {}
        self.uses: dict[int, int] = {}
        self.done: set[int] = set()  # bands every target row has used (never decoded again)
        self.lock = threading.Lock()

    def source_rows(self, row: int) -> range:
        th, sh = self.target.tile_height, self.source.grid.tile_height
        top = row * th
        bottom = min(top + th, self.target.height)
        return range(top // sh, (bottom - 1) // sh + 1)

    def submit(self, row: int, pool: ThreadPoolExecutor) -> None:
        """Submit the decodes target ``row`` needs that are not submitted yet."""
        th, sh = self.target.tile_height, self.source.grid.tile_height
        for band in self.source_rows(row):
            with self.lock:
                if band not in self.bands and band not in self.done:
                    self.bands[band] = pool.submit(self._decode, band)
                    top, bottom = band * sh, min((band + 1) * sh, self.source.grid.height)
                    self.uses[band] = (bottom - 1) // th - top // th + 1  # the target rows it serves

    def _decode(self, band: int) -> RGBArray:
        sg = self.source.grid
        y = band * sg.tile_height
        height = min(sg.tile_height, sg.height - y)
        width = min(self.c1 * sg.tile_width, sg.width) - self.sx0
        pixels = self.buffers.get((sg.tile_height, width, 3))[:height]
        for col in range(self.c0, self.c1):
            tile = self.source.read_tile(col, band)  # exactly its box
            x = col * sg.tile_width - self.sx0
            pixels[:, x : x + tile.shape[1]] = tile
        return pixels

    def row_tiles(self, row: int) -> RGBArray:
        """Target ``row`` of the stripe as full tiles (tile, y, x, sample), edges padded; give it
        back to the buffers when encoded."""
        tw, th, sh = self.target.tile_width, self.target.tile_height, self.source.grid.tile_height
        top = row * th
        height = min(th, self.target.height - top)
        width = self.x1 - self.x0
        full, rest = divmod(width, tw)  # whole tiles, then the pixels of a partial last one
        tiles = self.buffers.get((len(self.columns), th, tw, 3))
        across = tiles.transpose(1, 0, 2, 3)  # (y, tile, x, sample): the row as the bands see it
        for band in self.source_rows(row):
            pixels = self.bands[band].result()
            y0, y1 = max(top, band * sh), min(top + height, band * sh + pixels.shape[0])
            part = pixels[y0 - band * sh : y1 - band * sh, self.x0 - self.sx0 : self.x1 - self.sx0]
            across[y0 - top : y1 - top, :full] = part[:, : full * tw].reshape(y1 - y0, full, tw, 3)
            if rest:
                tiles[full, y0 - top : y1 - top, :rest] = part[:, full * tw :]
            with self.lock:
                self.uses[band] -= 1
                if not self.uses[band]:
                    del self.uses[band], self.bands[band]
                    self.done.add(band)
                    self.buffers.put(pixels.base if pixels.base is not None else pixels)
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

    pending: deque[Future[list[T]]] = deque()
    for columns in stripe_columns:
        stripe = _Stripe(source, target, columns, fill, buffers)
        for row in range(target.rows):
            stripe.submit(row, pool)
            if row + 1 < target.rows:  # the next row's bands too: its encode then never waits on a decode
                stripe.submit(row + 1, pool)  # started at the same time (a stall: one core idle)
            pending.append(pool.submit(encode_row, stripe, row))
            while len(pending) > ROWS_IN_FLIGHT * workers:
                yield from pending.popleft().result()
    while pending:
        yield from pending.popleft().result()
