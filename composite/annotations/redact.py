"""Annotated polygons for ``redact``: the :class:`composite.tools.redact.Shapes` of a plan.

At each level (and the thumbnail) the polygons are scaled by both the level's size ratio and its
nominal downsample (their union, as boxes are), grown by 1.5 level pixels (every pixel the
polygon touches, whatever the rounding), and blacked out in whole 16 x 16 blocks aligned to the
level's origin: a block is painted when it may touch the grown polygon. Whole JPEG blocks decode
black, so no tissue rings back into the polygon; the black reaches at most about one block
(16-28 level pixels) past the polygon's edge. Small levels (at most 2,048 px a side) are grown by
24 px instead: writers resample their thumbnails from the smallest level (the SVS writer does),
and a resampled, re-encoded 16-px JPEG block must not mix tissue with the polygon. The box
redaction's machinery does the rest: only tiles a painted block lies in are re-encoded, every
other tile is copied byte for byte.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely

from ..codecs import RGBArray
from ..errors import LimitError
from ..geometry import TileGrid
from ..model import Slide
from ..tools.redact import MCU
from .model import Annotations
from .shapes import area_geometry, fill, rings, scaled

PIXEL_MARGIN = 1.5
SMALL_LEVEL = 2048  # px a side: a level a thumbnail may be resampled from
SMALL_LEVEL_MARGIN = 24.0  # one 16-px block's diagonal (22.6) and a pixel of resampling


class LevelPolygons:
    """The blocks to paint on one level: a boolean block mask over the polygons' block bounds."""

    def __init__(self, geom: Any, *, margin: float = PIXEL_MARGIN, block: int = MCU) -> None:
        self.block = block
        grown = geom.buffer(margin + block * math.sqrt(0.5))
        in_blocks = scaled(grown, scale=(block, block))
        x0, y0, x1, y1 = in_blocks.bounds
        self.left, self.top = max(0, math.floor(x0)), max(0, math.floor(y0))
        width, height = max(0, math.ceil(x1) - self.left), max(0, math.ceil(y1) - self.top)
        self.mask = fill(rings(in_blocks), width, height, left=self.left, top=self.top)

    def tiles(self, grid: TileGrid) -> set[tuple[int, int]]:
        rows, cols = np.nonzero(self.mask)
        x = (cols + self.left) * self.block
        y = (rows + self.top) * self.block
        touched: set[tuple[int, int]] = set()
        for first_col, last_col, first_row, last_row in {
            (a, b, c, d)
            for a, b, c, d in zip(
                (x // grid.tile_width).tolist(),
                ((x + self.block - 1) // grid.tile_width).tolist(),
                (y // grid.tile_height).tolist(),
                ((y + self.block - 1) // grid.tile_height).tolist(),
                strict=True,
            )
        }:
            for col in range(first_col, min(last_col, grid.cols - 1) + 1):
                for row in range(first_row, min(last_row, grid.rows - 1) + 1):
                    touched.add((col, row))
        return touched

    def area(self, size: tuple[int, int]) -> int:
        """Pixels painted on a level of ``size``: the blocks, clipped to the level."""
        rows, cols = np.nonzero(self.mask)
        x = (cols + self.left) * self.block
        y = (rows + self.top) * self.block
        w = np.clip(size[0] - x, 0, self.block)
        h = np.clip(size[1] - y, 0, self.block)
        return int((w * h).sum())

    def paint(self, pixels: RGBArray, origin: tuple[int, int]) -> None:
        height, width = pixels.shape[:2]
        b = self.block
        bx0, by0 = origin[0] // b, origin[1] // b
        bx1, by1 = -(-(origin[0] + width) // b), -(-(origin[1] + height) // b)
        mh, mw = self.mask.shape
        window = np.zeros((by1 - by0, bx1 - bx0), bool)
        sx0, sy0 = max(bx0, self.left), max(by0, self.top)
        sx1, sy1 = min(bx1, self.left + mw), min(by1, self.top + mh)
        if sx1 <= sx0 or sy1 <= sy0:
            return
        window[sy0 - by0 : sy1 - by0, sx0 - bx0 : sx1 - bx0] = self.mask[
            sy0 - self.top : sy1 - self.top, sx0 - self.left : sx1 - self.left
        ]
        if not window.any():
            return
        full = np.repeat(np.repeat(window, b, axis=0), b, axis=1)
        dx, dy = origin[0] - bx0 * b, origin[1] - by0 * b
        pixels[full[dy : dy + height, dx : dx + width]] = 0


class PolygonShapes:
    """The area regions of an annotation file, in level-0 pixels, as redaction shapes."""

    def __init__(self, annotations: Annotations, *, image: tuple[int, int]) -> None:
        geoms = [g for g in (area_geometry(r) for r in annotations.regions) if g is not None]
        if not geoms:
            raise LimitError(f"{annotations.source}: no region with an area to redact (points and lines have none)")
        self.geom = shapely.unary_union(geoms)
        self.source = annotations.source
        if not self.geom.intersects(shapely.box(0, 0, *image)):
            raise LimitError(f"{annotations.source}: the regions are outside the {image[0]} x {image[1]} image")

    def blacked_out(self, slide: Slide, kept: Sequence[float]) -> list[str]:
        """One line: the regions' area and the area actually blacked out, in level-0 pixels, at
        level 0 and, when larger, at the written level where it is widest."""
        width, height = slide.dimensions
        area = self.geom.intersection(shapely.box(0, 0, width, height)).area
        painted = []
        for index, level in enumerate(slide.levels):
            if any(abs(level.downsample - d) <= 0.02 * d for d in kept):
                blocks = self.at(base=(width, height), size=level.dimensions, downsample=level.downsample)
                scale = (width / level.width) * (height / level.height)
                painted.append((index, blocks.area(level.dimensions) * scale))
        if not painted or area <= 0:
            return []
        first = painted[0][1]
        line = (
            f"{slide.path}: the annotated regions of {self.source} ({area:,.0f} px) black out"
            f" {first:,.0f} px at level 0 (+{100 * (first / area - 1):.0f}%)"
        )
        index, widest = max(painted, key=lambda item: item[1])
        if widest > first:
            line += f", up to {widest:,.0f} level-0 px at level {index}"
        return [line + ": regions grow to whole 16-px JPEG blocks of each level"]

    def at(self, *, base: tuple[int, int], size: tuple[int, int], downsample: float) -> LevelPolygons:
        by_size = scaled(self.geom, scale=(base[0] / size[0], base[1] / size[1]))
        by_downsample = scaled(self.geom, scale=(downsample, downsample))
        margin = SMALL_LEVEL_MARGIN if max(size) <= SMALL_LEVEL else PIXEL_MARGIN
        return LevelPolygons(shapely.unary_union([by_size, by_downsample]), margin=margin)
