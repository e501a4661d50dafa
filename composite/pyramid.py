"""Which levels a pyramid needs, and lower levels computed by streaming box downsampling.

:func:`pyramid_levels` lists the levels a writer writes: level 0, then one level per ``factor``
step until the level fits in ``min_size``. Where the slide has its own level at that downsample it
is used as is (its tiles may then be byte-copied); otherwise a lazy :class:`DownsampledLevel`
computes it from the nearest level above whose downsample divides it (box filter).

A :class:`DownsampledLevel` computes one tile row at a time: it reads its parent in horizontal
strips through a :class:`~composite.tiling.BandCache` (each parent tile decoded once), reduces
each strip per target tile (box blocks aligned to multiples of the factor, so no seams at tile
borders), and **spools** every finished row losslessly (zstd) to an anonymous temporary file. A
level is usually read twice - once by the writer, once by the level below it - and the spool
makes the second read cheap: building level k+2 reads level k+1's spool, never level 0 again, so
a one-level source (CWS, ACI) is decoded once for the whole pyramid, not once per level. The
spool file is unlinked at creation, so it vanishes with the process, even when killed.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import codecs
from .codecs import RGBArray
from .geometry import Box, TileGrid
from .model import Level, Slide
from .resample import box_downsample
from .tiling import BandCache, default_threads

_MATCH_TOLERANCE = 0.02  # relative difference of downsamples that counts as "the same level"


class TileSpool:
    """Decoded tiles stored losslessly in an anonymous temporary file (thread-safe)."""

    def __init__(self, directory: Path | None = None) -> None:
        import tempfile  # only when a level is computed: a byte copy never spools

        self._file = tempfile.TemporaryFile(dir=directory, prefix=".composite-spool-")  # noqa: SIM115 (kept open)
        self._index: dict[tuple[int, int], tuple[int, int, int, int]] = {}
        self._end = 0
        self._lock = threading.Lock()

    def __contains__(self, key: tuple[int, int]) -> bool:
        return key in self._index

    def put(self, col: int, row: int, pixels: RGBArray) -> None:
        data = codecs.pack_pixels(pixels)
        with self._lock:
            offset = self._end
            os.pwrite(self._file.fileno(), data, offset)
            self._end += len(data)
            self._index[(col, row)] = (offset, len(data), pixels.shape[0], pixels.shape[1])

    def get(self, col: int, row: int) -> RGBArray:
        offset, size, height, width = self._index[(col, row)]
        return codecs.unpack_pixels(os.pread(self._file.fileno(), size, offset), (height, width))

    def close(self) -> None:
        self._file.close()


class _DownsampleReader:
    """Tiles of a level computed as the ``factor`` x ``factor`` box mean of its parent level."""

    def __init__(self, parent: Level, grid: TileGrid, factor: int, *, workers: int | None, spool_dir: Path | None):
        self._parent = parent
        self._grid = grid
        self._factor = factor
        self._workers = default_threads(workers)
        self._spool_dir = spool_dir
        self._spool: TileSpool | None = None
        self._lock = threading.Lock()
        self._band: BandCache | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._band_next_row = 0
        self.computed_rows = 0  # rows computed from the parent (tests check each is computed once)

    @property
    def encoding(self) -> None:
        return None

    def read_encoded(self, col: int, row: int) -> bytes | None:
        return None

    def read_tile(self, col: int, row: int) -> RGBArray:
        with self._lock:
            if self._spool is None:
                self._spool = TileSpool(self._spool_dir)
            if (col, row) not in self._spool:
                self._compute_row(row)
            return self._spool.get(col, row)

    def _compute_row(self, row: int) -> None:
        assert self._spool is not None
        grid, parent, f = self._grid, self._parent, self._factor
        y = row * grid.tile_height
        height = min(grid.tile_height, grid.height - y)
        out = np.empty((height, grid.width, 3), np.uint8)
        py0 = y * f
        py1 = min((y + height) * f, parent.height)
        # Parent strips of about one parent tile row, a multiple of f high so box blocks never
        # straddle two strips; each strip is reduced per target tile column (bounded temporaries).
        strip = max(f, parent.grid.tile_height // f * f)
        # Threads only for a parent wide enough to keep them busy: for a few tiles a row (the
        # last levels) they cost more, in time and in per-thread malloc arenas, than they save.
        if self._pool is None and parent.grid.cols > 2 * self._workers:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="composite-pyramid")
        pool = self._pool
        if self._band is None or row < self._band_next_row:
            self._band = BandCache(parent, pool=pool)
        band = self._band
        for sy in range(py0, py1, strip):
            sh = min(strip, py1 - sy)
            band.ensure(Box(0, sy, parent.width, sh))

            def reduce(col: int, sy: int = sy, sh: int = sh) -> None:
                box = grid.tile_box(col, row)
                px = box.x * f
                pw = min(box.width * f, parent.width - px)
                small = box_downsample(band.region(px, sy, pw, sh), f)
                oy = (sy - py0) // f
                out[oy : oy + small.shape[0], box.x : box.x + small.shape[1]] = small

            list(pool.map(reduce, range(grid.cols)) if pool is not None else map(reduce, range(grid.cols)))
        self._band_next_row = row + 1
        for col in range(grid.cols):
            box = grid.tile_box(col, row)
            self._spool.put(col, row, out[:, box.x : box.right])
        self.computed_rows += 1
        if row == grid.rows - 1:  # the last row: the parent's tiles and the threads are done with
            self._band = None
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def close(self) -> None:
        with self._lock:
            if self._spool is not None:
                self._spool.close()
                self._spool = None
            self._band = None
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


class DownsampledLevel(Level):
    """A level computed from ``parent`` by a box filter of ``factor``; no stored bytes to copy.

    Its size is the parent's divided by ``factor``, rounded up (edge blocks average the pixels
    that exist). ``tile_size`` (width, height) defaults to the parent's tile size.
    """

    reader: _DownsampleReader

    def __init__(
        self,
        parent: Level,
        factor: int,
        *,
        level0: tuple[int, int],
        tile_size: tuple[int, int] | None = None,
        workers: int | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        if factor < 2:
            raise ValueError(f"downsample factor must be at least 2, got {factor}")
        tw, th = tile_size or (parent.grid.tile_width, parent.grid.tile_height)
        grid = TileGrid(-(-parent.width // factor), -(-parent.height // factor), tw, th)
        downsample = (level0[0] / grid.width + level0[1] / grid.height) / 2
        reader = _DownsampleReader(parent, grid, factor, workers=workers, spool_dir=spool_dir)
        super().__init__(grid, downsample, reader)
        self.parent = parent
        self.factor = factor

    def close(self) -> None:
        """Drop the spooled tiles (also dropped when the process ends)."""
        self.reader.close()


def pyramid_levels(
    slide: Slide,
    *,
    factor: int = 4,
    min_size: int = 1024,
    tile_size: tuple[int, int] | None = None,
    workers: int | None = None,
    spool_dir: Path | None = None,
) -> list[Level]:
    """The levels to write: level 0, then each ``factor`` x smaller until both sides <= ``min_size``.

    Uses the slide's own level where its downsample agrees (within 2%), else a
    :class:`DownsampledLevel` of the nearest level above (own or computed) whose downsample divides
    the target's. ``tile_size`` sets the computed levels' tiles (pass the writer's tile size so
    re-tiling is free); ``spool_dir`` is where their temporary spools go (default: system temp).
    """
    if factor < 2:
        raise ValueError(f"pyramid factor must be at least 2, got {factor}")
    base = slide.levels[0]
    level0 = base.dimensions
    levels: list[Level] = [base]
    while max(levels[-1].width, levels[-1].height) > min_size:
        target = levels[-1].downsample * factor
        own = _own_level(slide, target)
        if own is not None:
            levels.append(own)
            continue
        parent, step = _best_parent(slide, levels, target)
        levels.append(
            DownsampledLevel(parent, step, level0=level0, tile_size=tile_size, workers=workers, spool_dir=spool_dir)
        )
        if levels[-1].dimensions == levels[-2].dimensions:
            break  # a 1-px level cannot shrink further
    return levels


def close_levels(levels: list[Level]) -> None:
    """Release the spools of the computed levels in ``levels``."""
    for level in levels:
        if isinstance(level, DownsampledLevel):
            level.close()


def _own_level(slide: Slide, downsample: float) -> Level | None:
    for level in slide.levels[1:]:
        if abs(level.downsample - downsample) <= _MATCH_TOLERANCE * downsample:
            return level
    return None


def _best_parent(slide: Slide, levels: list[Level], target: float) -> tuple[Level, int]:
    """The smallest level (own or already planned) whose downsample divides ``target`` by >= 2."""
    candidates = [*slide.levels, *levels]
    best: tuple[Level, int] | None = None
    for level in candidates:
        ratio = target / level.downsample
        step = round(ratio)
        if step < 2 or abs(ratio - step) > _MATCH_TOLERANCE * ratio:
            continue
        if best is None or level.downsample > best[0].downsample:
            best = (level, step)
    if best is None:  # no level divides it (odd source downsamples): reduce the last one
        last = levels[-1]
        return last, max(2, math.ceil(target / last.downsample))
    return best
