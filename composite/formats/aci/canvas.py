"""Painting one layer of a composite: component placement, edge trimming, and tiles on demand.

Geometry (docs/aci.md has the full rules):

- A component's rectangle is (X, Y, w, h) in level-0 pixels; with edge trimming (the default)
  ``h`` is the smallest height among the layer's components with the same Y (one *row*) and
  ``w`` the smallest width among those with the same X (one *column*); ``edgetrim=no`` keeps
  every component's own size.
- Paint order is (Y, X, line): further down, then further right, then later in the file is on top.
- Level with downsample D: each component is drawn into its footprint, its rectangle divided by D
  and rounded outward, from its own level of downsample D when it has one (an exact copy when X
  and Y are multiples of D), else from its next finer level reduced with a box filter.

:class:`LayerIndex` finds the components under a box without scanning them all: they are sorted
by Y, so a query is a binary search for the band of rows that can reach the box (taller than the
tallest component above it cannot), then a vectorised test of that band.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ...codecs import RGBArray, TileEncoding, merge_jpeg_tables
from ...geometry import Box, TileGrid
from ...model import WHITE, Slide, read_reduced
from .components import ComponentPool, best_level, own_level

IntArray = NDArray[np.int64]


def trimmed_sizes(xs: IntArray, ys: IntArray, widths: IntArray, heights: IntArray) -> tuple[IntArray, IntArray]:
    """Widths cut to the narrowest of each column (same X), heights to the shortest of each row (same Y)."""
    return _group_min(xs, widths), _group_min(ys, heights)


def _group_min(keys: IntArray, values: IntArray) -> IntArray:
    unique, inverse = np.unique(keys, return_inverse=True)
    smallest = np.full(len(unique), np.iinfo(np.int64).max, np.int64)
    np.minimum.at(smallest, inverse, values)
    result: IntArray = smallest[inverse]
    return result


def _topmost(order: IntArray, xs: IntArray, ys: IntArray, widths: IntArray, heights: IntArray) -> IntArray:
    """``order`` without components hidden under a later one with the same rectangle: a manifest
    repeating one line a million times indexes (and paints) one component.

    Identical rectangles share (X, Y), so they are neighbours in ``order`` (by Y, X, line); only
    when some are is every rectangle grouped (one sort of the four keys, not a row-wise
    ``np.unique``, which takes seconds for a million distinct rows)."""
    if len(order) < 2:
        return order
    sx, sy = xs[order], ys[order]
    if not ((sx[1:] == sx[:-1]) & (sy[1:] == sy[:-1])).any():
        return order
    groups = np.lexsort((-np.arange(len(xs)), heights, widths, xs, ys))  # each group: last line first
    gx, gy, gw, gh = xs[groups], ys[groups], widths[groups], heights[groups]
    first = np.ones(len(groups), bool)
    first[1:] = (gx[1:] != gx[:-1]) | (gy[1:] != gy[:-1]) | (gw[1:] != gw[:-1]) | (gh[1:] != gh[:-1])
    if first.all():
        return order
    topmost = np.zeros(len(xs), bool)
    topmost[groups[first]] = True
    kept: IntArray = order[topmost[order]]
    return kept


def _paint_order(xs: IntArray, ys: IntArray) -> IntArray:
    """Indices by Y, then X, then line: one stable sort of a packed key when the offsets fit."""
    if len(xs) and int(xs.max()) < 2**31 and int(ys.max()) < 2**31:
        order: IntArray = np.argsort((ys << 31) | xs, kind="stable")
        return order
    order = np.lexsort((np.arange(len(xs)), xs, ys))
    return order


class LayerIndex:
    """The components of one layer in paint order, with a fast "what is under this box" query."""

    def __init__(
        self, xs: IntArray, ys: IntArray, widths: IntArray, heights: IntArray, files: IntArray, paths: Sequence[Path]
    ) -> None:
        order = _topmost(_paint_order(xs, ys), xs, ys, widths, heights)
        self.xs, self.ys = xs[order], ys[order]
        self.widths, self.heights = widths[order], heights[order]
        self.files = files[order]
        self.paths = paths
        self.max_height = int(self.heights.max()) if len(self.heights) else 0

    def __len__(self) -> int:
        return len(self.xs)

    def under(self, box: Box) -> IntArray:
        """Indices (in paint order) of the components sharing at least one pixel with ``box`` (level 0)."""
        lo = int(np.searchsorted(self.ys, box.y - self.max_height, side="right"))
        hi = int(np.searchsorted(self.ys, box.bottom, side="left"))
        xs, widths = self.xs[lo:hi], self.widths[lo:hi]
        bottoms = self.ys[lo:hi] + self.heights[lo:hi]
        hit = (xs < box.right) & (xs + widths > box.x) & (bottoms > box.y)
        found: IntArray = np.flatnonzero(hit) + lo
        return found

    def visible(self, hits: IntArray) -> IntArray:
        """``hits`` without the components hidden under a later one with the same rectangle
        (a manifest repeating one line 200,000 times paints one component, not 200,000)."""
        if len(hits) <= 8:
            return hits
        keys = np.stack([self.xs[hits], self.ys[hits], self.widths[hits], self.heights[hits]], axis=1)
        _, first = np.unique(keys[::-1], axis=0, return_index=True)  # first from the top = last painted
        kept: IntArray = np.sort(hits[len(hits) - 1 - first])
        return kept

    def rect(self, index: int) -> Box:
        return Box(int(self.xs[index]), int(self.ys[index]), int(self.widths[index]), int(self.heights[index]))


class CompositeTileReader:
    """Tiles of one level of one layer, painted from the components under each tile.

    With ``encoding`` (JPEG, when every component stores this level as JPEG tiles of the grid's
    size), a tile that lies inside a single component, on that component's tile grid, is also
    offered as the component's stored bytes (tables inlined), so a writer can copy it.
    """

    def __init__(
        self,
        index: LayerIndex,
        grid: TileGrid,
        downsample: int,
        pool: ComponentPool,
        *,
        encoding: TileEncoding | None = None,
    ) -> None:
        self._index = index
        self._grid = grid
        self._downsample = downsample
        self._pool = pool
        self._encoding = encoding

    @property
    def encoding(self) -> TileEncoding | None:
        return self._encoding

    def read_encoded(self, col: int, row: int) -> bytes | None:
        if self._encoding is None:
            return None
        tile = self._grid.tile_box(col, row)
        d = self._downsample
        hits = self._index.under(Box(tile.x * d, tile.y * d, tile.width * d, tile.height * d))
        if len(hits) != 1:
            return None
        with self._pool.use(self._index.paths[self._index.files[hits[0]]]) as component:
            return stored_tile(component, self._index.rect(int(hits[0])), tile, d, self._grid, self._encoding)

    def read_tile(self, col: int, row: int) -> RGBArray:
        """Paint the components under the tile. With several, from the top down, skipping those
        already covered and stopping once the tile is covered: the result is the same as
        painting bottom-up, but a pile of overlapping components costs only what shows."""
        tile = self._grid.tile_box(col, row)
        d = self._downsample
        out = np.full((tile.height, tile.width, 3), WHITE, np.uint8)
        hits = self._index.visible(self._index.under(Box(tile.x * d, tile.y * d, tile.width * d, tile.height * d)))
        if len(hits) <= 1:
            for i in hits:
                with self._pool.use(self._index.paths[self._index.files[i]]) as component:
                    draw_component(out, tile, d, self._index.rect(int(i)), component)
            return out
        covered = np.zeros((tile.height, tile.width), bool)
        scratch = np.empty_like(out)
        for i in hits[::-1]:
            rect = self._index.rect(int(i))
            part = rect.scaled_outward(d).intersection(tile)
            if part is None:
                continue
            rows = slice(part.y - tile.y, part.bottom - tile.y)
            cols = slice(part.x - tile.x, part.right - tile.x)
            free = ~covered[rows, cols]
            if not free.any():
                continue
            with self._pool.use(self._index.paths[self._index.files[i]]) as component:
                draw_component(scratch, tile, d, rect, component)
            out[rows, cols][free] = scratch[rows, cols][free]
            covered[rows, cols] = True
            if covered.all():
                break
        return out


def draw_component(out: RGBArray, tile: Box, downsample: int, rect: Box, component: Slide) -> None:
    """Draw the part of ``component`` (placed at level-0 ``rect``) that falls in ``tile`` (level D)."""
    d = downsample
    footprint = rect.scaled_outward(d)
    part = footprint.intersection(tile)
    if part is None:
        return
    # Level-0 pixels of the component behind `part`, clipped to its (trimmed) rectangle.
    qx0 = max(0, part.x * d - rect.x)
    qy0 = max(0, part.y * d - rect.y)
    qx1 = min(rect.width, part.right * d - rect.x)
    qy1 = min(rect.height, part.bottom * d - rect.y)
    level, ds = best_level(component, d)
    lx0, ly0 = math.floor(qx0 / ds), math.floor(qy0 / ds)
    lx1, ly1 = math.ceil(qx1 / ds), math.ceil(qy1 / ds)
    pixels = read_reduced(level, Box(lx0, ly0, lx1 - lx0, ly1 - ly0), (part.width, part.height))
    out[part.y - tile.y : part.bottom - tile.y, part.x - tile.x : part.right - tile.x] = pixels


def stored_tile(
    component: Slide, rect: Box, tile: Box, downsample: int, grid: TileGrid, encoding: TileEncoding
) -> bytes | None:
    """The component's stored tile that is exactly composite ``tile``, or None when there is none.

    Needs the component's own level at this downsample, placed on whole pixels of it, with the
    same tile size and codec, and ``tile`` inside both the component's footprint and its level:
    then painting would show exactly that tile's pixels.
    """
    d = downsample
    if rect.x % d or rect.y % d:
        return None
    level = own_level(component, d)
    own = level.encoding if level is not None else None
    if level is None or own is None or (own.compression, own.rgb) != (encoding.compression, encoding.rgb):
        return None
    fx, fy = rect.x // d, rect.y // d
    footprint = rect.scaled_outward(d)
    inside = Box(fx, fy, min(footprint.right, fx + level.width) - fx, min(footprint.bottom, fy + level.height) - fy)
    cx, cy = tile.x - fx, tile.y - fy
    lg = level.grid
    if tile.intersection(inside) != tile or (lg.tile_width, lg.tile_height) != (grid.tile_width, grid.tile_height):
        return None
    if cx % lg.tile_width or cy % lg.tile_height:
        return None
    data = level.read_encoded_tile(cx // lg.tile_width, cy // lg.tile_height)
    if data is None:
        return None
    return merge_jpeg_tables(data, own.jpeg_tables) if own.compression == "jpeg" else data
