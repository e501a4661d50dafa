"""The glass screen: most tiles judged from the next pyramid level, without decoding them.

A pyramid's next level (4x smaller) holds, per pixel, about the mean of 4x4 pixels of the level
above: what a 1/4-scale decode of each tile would give. Reading it costs 1/16 of the tiles, so the
glass test (:mod:`composite.glass`) first looks there. For tile (col, row) the screen takes its
view in that level (its box divided by 4, rounded outward) with one pixel around it, as offsets
from the background colour, and says:

- **glass** when every pixel of the view is within half the tolerance of the background, or of
  the view's mean when that mean is within the tolerance of the background (shading);
- **tissue** when the tile's own part of the view has a pixel beyond twice the tolerance from
  both the background and that mean: then some pixel of the tile itself is that far off too;
- **unsure** otherwise (tissue borders, dust, faint stains): the tile is decoded and tested.

Half the tolerance at 1/4 scale sees what the full test sees at 1/2 scale: a 1-px line 16 levels
off the glass shows as 4. What only the decoded tile can show, an isolated feature smaller than
about 2x2 px, is below both and is glass here too.

Verdicts are computed one tile row at a time for the whole row, from per-column statistics of a
band of the smaller level (a few MB), and kept as one byte per tile; thread-safe.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from numpy.typing import NDArray

from .codecs import RGBArray
from .errors import CompositeError
from .geometry import TileGrid
from .model import Level

RATIO = 4  # the screen reads the next level when it is this much smaller (a CWS pyramid)
_TODO, _UNSURE, _TISSUE, _GLASS = -2, -1, 0, 1
Offsets = NDArray[np.int16]  # per column of the smaller level: a statistic minus the background


class Screen:
    """Verdicts on the tiles of ``grid`` (a level) from ``smaller``, the level 4x below it."""

    def __init__(self, grid: TileGrid, smaller: Level, *, background: tuple[int, int, int], tolerance: int) -> None:
        self.grid = grid
        self.smaller = smaller
        self.ratio = grid.width / smaller.width
        self.tolerance = tolerance
        self._background = np.asarray(background, np.int16)
        self._verdicts = np.full((grid.rows, grid.cols), _TODO, np.int8)
        self._lock = threading.Lock()
        self._bands: dict[int, RGBArray] = {}  # decoded tile rows of ``smaller``

    @classmethod
    def between(
        cls, grid: TileGrid, level: Level, smaller: Level, *, background: tuple[int, int, int], tolerance: int
    ) -> Screen | None:
        """A screen when ``smaller`` is about 4x smaller than ``level`` (else None)."""
        ratio = level.width / smaller.width
        if abs(ratio - RATIO) > 0.05 * RATIO or level.width != grid.width:
            return None
        return cls(grid, smaller, background=background, tolerance=tolerance)

    def verdict(self, col: int, row: int) -> bool | None:
        """True: glass; False: tissue; None: unsure (decode the tile)."""
        with self._lock:
            if self._verdicts[row, 0] == _TODO:
                try:
                    self._verdicts[row] = self._row(row)
                except (CompositeError, MemoryError):
                    self._verdicts[row] = _UNSURE
            value = int(self._verdicts[row, col])
        return None if value == _UNSURE else value == _GLASS

    def _band(self, top: int, bottom: int) -> RGBArray:
        """Rows ``top``..``bottom`` of the smaller level, full width."""
        grid = self.smaller.grid
        first, last = top // grid.tile_height, (bottom - 1) // grid.tile_height
        for key in [k for k in self._bands if k < first]:
            del self._bands[key]  # rows are asked for top to bottom: the ones above are done
        parts = []
        for tile_row in range(first, last + 1):
            band = self._bands.get(tile_row)
            if band is None:
                tiles = [self.smaller.read_tile(col, tile_row) for col in range(grid.cols)]
                band = self._bands[tile_row] = np.concatenate(tiles, axis=1)
            y0 = tile_row * grid.tile_height
            parts.append(band[max(top, y0) - y0 : min(bottom, y0 + band.shape[0]) - y0])
        return np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]

    def _row(self, row: int) -> NDArray[np.int8]:
        grid, ratio, small = self.grid, self.ratio, self.smaller
        box = grid.tile_box(0, row)
        y0 = math.floor(box.y / ratio)
        y1 = max(y0 + 1, min(small.height, math.ceil(box.bottom / ratio)))
        top, bottom = max(0, y0 - 1), min(small.height, y1 + 1)
        view = self._band(top, bottom)
        core = view[y0 - top : y1 - top]
        # Each tile's columns in the smaller level (x0..x1, consecutive tiles overlap by at most
        # one column) and its view's, one more on each side (a..b); all tiles of the row at once.
        edges = np.arange(grid.cols + 1) * grid.tile_width
        x0 = np.floor(edges[:-1] / ratio).astype(np.intp)
        x1 = np.maximum(x0 + 1, np.minimum(small.width, np.ceil(np.minimum(edges[1:], grid.width) / ratio))).astype(
            np.intp
        )
        a, b = np.maximum(0, x0 - 1), np.minimum(small.width, x1 + 1)

        def spans(columns: Offsets, ufunc: np.ufunc, first: NDArray[np.intp], last: NDArray[np.intp]) -> Offsets:
            """``ufunc`` over columns x0..x1 of each tile, and over ``first`` and ``last`` too."""
            inside = ufunc(ufunc.reduceat(columns, x0, axis=0), columns[x1 - 1])
            out: Offsets = ufunc(inside, ufunc(columns[first], columns[last]))
            return out

        bg = self._background
        vmax, vmin = view.max(axis=0).astype(np.int16) - bg, view.min(axis=0).astype(np.int16) - bg
        hi, lo = spans(vmax, np.maximum, a, b - 1), spans(vmin, np.minimum, a, b - 1)
        sums = np.concatenate([np.zeros((1, 3), np.int64), np.cumsum(view.sum(axis=0, dtype=np.int64), axis=0)])
        level = np.round((sums[b] - sums[a]) / ((b - a) * view.shape[0])[:, None]).astype(np.int16) - bg
        cmax, cmin = core.max(axis=0).astype(np.int16) - bg, core.min(axis=0).astype(np.int16) - bg
        chi, clo = spans(cmax, np.maximum, x0, x1 - 1), spans(cmin, np.minimum, x0, x1 - 1)
        half, tol = self.tolerance // 2, self.tolerance
        near = np.maximum(hi.max(axis=1), -lo.min(axis=1)) <= half
        spread = np.maximum((hi - level).max(axis=1), (level - lo).max(axis=1))
        shaded = (np.abs(level).max(axis=1) <= tol) & (spread <= half)
        far = np.maximum(chi.max(axis=1), -clo.min(axis=1)) > 2 * tol
        off_level = np.maximum((chi - level).max(axis=1), (level - clo).max(axis=1)) > 2 * tol
        out = np.full(grid.cols, _UNSURE, np.int8)
        out[far & off_level] = _TISSUE
        out[near | shaded] = _GLASS
        return out
