"""Tile and box arithmetic: the only place that divides images into tiles.

``Box`` is a rectangle in pixels of one level; ``TileGrid`` cuts a level of ``width`` x ``height``
pixels into tiles of ``tile_width`` x ``tile_height``, row-major, with the last column and row
clipped to the image (the *box* is clipped; formats that store padded edge tiles still return a
full tile's bytes).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Box:
    """A rectangle of pixels: left ``x``, top ``y``, ``width``, ``height``."""

    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    @property
    def empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def intersection(self, other: Box) -> Box | None:
        """The overlap of two boxes, or None when they do not overlap."""
        x = max(self.x, other.x)
        y = max(self.y, other.y)
        right = min(self.right, other.right)
        bottom = min(self.bottom, other.bottom)
        if right <= x or bottom <= y:
            return None
        return Box(x, y, right - x, bottom - y)

    def scaled_outward(self, factor: float) -> Box:
        """This box divided by ``factor`` and rounded outward (it never shrinks what it covers)."""
        x = math.floor(self.x / factor)
        y = math.floor(self.y / factor)
        right = math.ceil(self.right / factor)
        bottom = math.ceil(self.bottom / factor)
        return Box(x, y, right - x, bottom - y)


@dataclass(frozen=True, slots=True)
class TileGrid:
    """A level of ``width`` x ``height`` pixels cut into ``tile_width`` x ``tile_height`` tiles."""

    width: int
    height: int
    tile_width: int
    tile_height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"grid size must be positive, got {self.width}x{self.height}")
        if self.tile_width <= 0 or self.tile_height <= 0:
            raise ValueError(f"tile size must be positive, got {self.tile_width}x{self.tile_height}")

    @property
    def cols(self) -> int:
        return -(-self.width // self.tile_width)

    @property
    def rows(self) -> int:
        return -(-self.height // self.tile_height)

    @property
    def tile_count(self) -> int:
        return self.cols * self.rows

    def tile_box(self, col: int, row: int) -> Box:
        """Pixels of tile (col, row), clipped at the right and bottom edges."""
        if not (0 <= col < self.cols and 0 <= row < self.rows):
            raise IndexError(f"tile ({col}, {row}) outside grid {self.cols}x{self.rows}")
        x = col * self.tile_width
        y = row * self.tile_height
        return Box(x, y, min(self.tile_width, self.width - x), min(self.tile_height, self.height - y))

    def indices(self) -> Iterator[tuple[int, int]]:
        """Every (col, row), row-major from the top-left."""
        for row in range(self.rows):
            for col in range(self.cols):
                yield col, row

    def tiles_overlapping(self, box: Box) -> Iterator[tuple[int, int]]:
        """The (col, row) of every tile that shares at least one pixel with ``box``, row-major."""
        inside = box.intersection(Box(0, 0, self.width, self.height))
        if inside is None:
            return
        col0 = inside.x // self.tile_width
        row0 = inside.y // self.tile_height
        col1 = (inside.right - 1) // self.tile_width
        row1 = (inside.bottom - 1) // self.tile_height
        for row in range(row0, row1 + 1):
            for col in range(col0, col1 + 1):
                yield col, row


MAX_TILE = 4096  # the largest tile or block side any writer accepts


def choose_tile_size(
    source: tuple[int, int] | None,
    requested: tuple[int, int] | None = None,
    *,
    default: tuple[int, int],
    keep: tuple[int, int] = (1, 1024),
    multiple: int = 1,
) -> tuple[int, int]:
    """The tile size of a written or composed level, one rule for every format.

    ``requested`` (the user's) when given, checked against ``multiple`` and :data:`MAX_TILE`
    (a ValueError says what is needed); else ``source`` (the source's level-0 tile, so tiles can be
    byte-copied) when both sides lie in ``keep`` (min, max) and are multiples of ``multiple``;
    else ``default``. A source "tile" larger than ``keep`` is a whole image (a plain JPEG).
    """
    if requested is not None:
        width, height = requested
        if width % multiple or height % multiple or not 0 < width <= MAX_TILE or not 0 < height <= MAX_TILE:
            needed = f"multiples of {multiple} " if multiple > 1 else ""
            raise ValueError(f"{needed}up to {MAX_TILE} px needed")
        return width, height
    if source is not None and all(keep[0] <= side <= keep[1] and side % multiple == 0 for side in source):
        return source
    return default
