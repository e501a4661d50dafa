"""A rectangular window of a slide, itself a :class:`Slide`: what one ACI piece is cut from.

Each level of the window is the matching window of a source level. A source level is kept only
where the window's level-0 corner falls on whole pixels of it (the corner divisible by its
downsample); a writer computes the missing levels. Where the window's corner also falls on the
source level's tile grid, the window exposes the source's stored tiles with their encoding, so a
writer byte-copies them (the last column/row of tiles may hold source pixels beyond the window:
they land in the padding of full-size edge tiles, which readers never show). Elsewhere tiles are
read through the source's region reads and re-encoded.
"""

from __future__ import annotations

import math

from ...codecs import RGBArray, TileEncoding
from ...geometry import Box, TileGrid
from ...model import Level, Slide
from .components import nominal_downsample


class _WindowReader:
    """Tiles of ``level`` inside ``box`` (level pixels), copied through when grid-aligned."""

    def __init__(self, level: Level, box: Box, grid: TileGrid) -> None:
        self._level = level
        self._box = box
        self._grid = grid
        source = level.grid
        self._aligned = (
            box.x % source.tile_width == 0
            and box.y % source.tile_height == 0
            and (grid.tile_width, grid.tile_height) == (source.tile_width, source.tile_height)
        )
        self._col0 = box.x // source.tile_width
        self._row0 = box.y // source.tile_height

    @property
    def encoding(self) -> TileEncoding | None:
        return self._level.encoding if self._aligned else None

    def read_encoded(self, col: int, row: int) -> bytes | None:
        if not self._aligned:
            return None
        return self._level.read_encoded_tile(col + self._col0, row + self._row0)

    def read_tile(self, col: int, row: int) -> RGBArray | None:
        if self._aligned:
            return self._level.read_tile(col + self._col0, row + self._row0)
        tile = self._grid.tile_box(col, row)
        return self._level.read_region(self._box.x + tile.x, self._box.y + tile.y, tile.width, tile.height)


def window_levels(levels: list[Level], box: Box) -> list[Level]:
    """The windows of ``levels`` (level 0 first) over the level-0 ``box``."""
    result = []
    for index, level in enumerate(levels):
        ds = 1.0 if index == 0 else nominal_downsample(level.downsample)
        if not ds.is_integer() or box.x % ds or box.y % ds:
            continue
        d = int(ds)
        x, y = box.x // d, box.y // d
        width = min(math.ceil(box.width / d), level.width - x)
        height = min(math.ceil(box.height / d), level.height - y)
        if width < 1 or height < 1:
            continue
        grid = TileGrid(width, height, level.grid.tile_width, level.grid.tile_height)
        result.append(Level(grid, float(d), _WindowReader(level, Box(x, y, width, height), grid)))
    return result


def window(slide: Slide, box: Box, *, levels: list[Level] | None = None) -> Slide:
    """``slide`` (or its focal plane ``levels``) seen through the level-0 ``box``; no file is opened."""
    return Slide(
        format=slide.format,
        path=slide.path,
        levels=window_levels(levels or slide.levels, box),
        properties=dict(slide.properties),
        mpp=slide.mpp,
        magnification=slide.magnification,
        description=slide.description,
        title=slide.title,
    )
