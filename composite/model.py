"""The slide model every format produces and every tool consumes.

A format implements one small thing per level, a :class:`TileReader`: the stored bytes of tile
(col, row) and how to decode them. :class:`Level` adds region reads, and :class:`Slide` adds the
OpenSlide-compatible API (``level_dimensions``, ``read_region``, ``associated_images`` ...) that
our users already write against. Encoded bytes and decoded pixels stay separate paths so that a
conversion can copy bytes where source and target tiles coincide.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol, cast

import numpy as np

from .codecs import RGBArray, TileEncoding
from .errors import CompositeError, TileReadError
from .geometry import Box, TileGrid
from .resample import box_downsample, resize

WHITE = 255
STRIP_PIXELS = 16_000_000  # pixels decoded at once when a level is reduced (thumbnails, ACI parts)


def paste_tiles(
    out: RGBArray, want: Box, grid: TileGrid, tile: Callable[[int, int], RGBArray], keys: Iterable[tuple[int, int]]
) -> RGBArray:
    """Copy into ``out`` (the pixels of box ``want``) the part of each tile ``keys`` names that
    lies inside ``want``; ``tile(col, row)`` gives a tile's pixels, cropped or padded to its box."""
    for col, row in keys:
        tile_box = grid.tile_box(col, row)
        part = tile_box.intersection(want)
        if part is None:
            continue
        pixels = tile(col, row)
        out[part.y - want.y : part.bottom - want.y, part.x - want.x : part.right - want.x] = pixels[
            part.y - tile_box.y : part.bottom - tile_box.y,
            part.x - tile_box.x : part.right - tile_box.x,
        ]
    return out


class TileReader(Protocol):
    """Stored tiles of one level.

    ``encoding`` is None when the level has no stored bytes that could be copied (a composited
    or resampled level); then ``read_encoded`` returns None and ``read_tile`` does the work.
    """

    @property
    def encoding(self) -> TileEncoding | None: ...

    def read_encoded(self, col: int, row: int) -> bytes | None:
        """The stored bytes of a tile, or None when the tile is missing."""
        ...

    def read_tile(self, col: int, row: int) -> RGBArray | None:
        """The decoded tile (may be larger than its box: padded edges), None when missing."""
        ...


class _DecodesInto(Protocol):
    """A reader with ``decodes_into = True``: ``read_tile`` may decode into a given buffer."""

    def read_tile(self, col: int, row: int, *, out: RGBArray | None = None) -> RGBArray | None: ...


class Level:
    """One resolution of a slide: a tile grid, its downsample from level 0, and its tiles."""

    def __init__(self, grid: TileGrid, downsample: float, reader: TileReader) -> None:
        self.grid = grid
        self.downsample = downsample
        self.reader = reader
        self.source: Path | None = None  # the slide's path, set by Slide: names damaged tiles

    def __repr__(self) -> str:
        g = self.grid
        return f"Level({g.width}x{g.height}, tiles {g.tile_width}x{g.tile_height}, ds {self.downsample:g})"

    @property
    def width(self) -> int:
        return self.grid.width

    @property
    def height(self) -> int:
        return self.grid.height

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.grid.width, self.grid.height

    @property
    def encoding(self) -> TileEncoding | None:
        return self.reader.encoding

    def read_encoded_tile(self, col: int, row: int) -> bytes | None:
        return self.reader.read_encoded(col, row)

    def read_tile(self, col: int, row: int, *, out: RGBArray | None = None) -> RGBArray:
        """Tile (col, row) decoded and cropped to its box; a missing tile is white. ``out``, a
        (tile_height, tile_width, 3) buffer, may be decoded into by readers that take one (TIFF
        JPEG tiles): then the result is a view of it, valid until ``out`` is reused."""
        box = self.grid.tile_box(col, row)
        try:
            if out is not None and getattr(self.reader, "decodes_into", False):
                tile = cast(_DecodesInto, self.reader).read_tile(col, row, out=out)
            else:
                tile = self.reader.read_tile(col, row)
        except (CompositeError, MemoryError):
            raise
        except Exception as err:  # a reader's unexpected error on damaged data: still one line
            raise TileReadError(f"{self.source}: tile ({col}, {row}): {type(err).__name__}: {err}") from err
        if tile is None:
            return np.full((box.height, box.width, 3), WHITE, np.uint8)
        tile = tile[: box.height, : box.width]
        if tile.shape[0] < box.height or tile.shape[1] < box.width:
            padded = np.full((box.height, box.width, 3), WHITE, np.uint8)
            padded[: tile.shape[0], : tile.shape[1]] = tile
            return padded
        return tile

    def read_region(self, x: int, y: int, width: int, height: int) -> RGBArray:
        """Pixels of the box (x, y, width, height) of this level; outside the image is white.

        Decodes each overlapping tile exactly once and no other tile.
        """
        if width < 0 or height < 0:
            raise ValueError(f"region size must not be negative, got {width}x{height}")
        out = np.full((height, width, 3), WHITE, np.uint8)
        want = Box(x, y, width, height)
        return paste_tiles(out, want, self.grid, self.read_tile, self.grid.tiles_overlapping(want))


def read_reduced(level: Level, box: Box, size: tuple[int, int]) -> RGBArray:
    """The pixels of ``box`` of ``level`` scaled to ``size`` (box filter, then an area resize for
    the rest), read in strips of about :data:`STRIP_PIXELS` so memory stays bounded."""
    width, height = size
    if (box.width, box.height) == size:
        return level.read_region(box.x, box.y, box.width, box.height)
    factor = max(1, min(box.width // width, box.height // height))
    band = max(factor, (STRIP_PIXELS // max(box.width, 1)) // factor * factor)
    parts = [
        box_downsample(level.read_region(box.x, box.y + dy, box.width, min(band, box.height - dy)), factor)
        for dy in range(0, box.height, band)
    ]
    reduced = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    return resize(reduced, size)


def level_thumbnail(level: Level, size: tuple[int, int]) -> RGBArray:
    """The whole level scaled to exactly ``size`` (:func:`read_reduced` of its whole box)."""
    return read_reduced(level, Box(0, 0, level.width, level.height), size)


@dataclass
class AssociatedImage:
    """A non-pyramid image of a slide (thumbnail, label, macro), decoded only when asked.

    ``read_encoded`` gives the stored bytes and their encoding when a writer may copy them.
    """

    name: str
    width: int
    height: int
    loader: Callable[[], RGBArray]
    encoded: Callable[[], tuple[bytes, TileEncoding]] | None = None

    def read(self) -> RGBArray:
        return self.loader()


class _AssociatedImages(Mapping[str, RGBArray]):
    """OpenSlide's ``associated_images``: name -> pixels, decoded on first access."""

    def __init__(self, images: Mapping[str, AssociatedImage]) -> None:
        self._images = images
        self._cache: dict[str, RGBArray] = {}

    def __getitem__(self, name: str) -> RGBArray:
        if name not in self._cache:
            self._cache[name] = self._images[name].read()
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._images)

    def __len__(self) -> int:
        return len(self._images)


@dataclass
class Slide:
    """A whole-slide image: levels (0 = full resolution), metadata and associated images.

    The API mirrors openslide-python's ``OpenSlide`` so existing scripts port by changing the
    import; pixels come back as RGB uint8 ndarrays instead of RGBA PIL images. ``focal_planes``
    maps a plane name (``"u1"``, ``"d2"``, ``"z-1.5"``) to that plane's levels, for formats with
    Z stacks; ``levels`` is the nominal plane. ``title`` is the name writers give the slide
    (CWS ``tWebSlideTitle``, the OME-XML image name, an ACI header); None: the source file's name.
    """

    format: str
    path: Path
    levels: list[Level]
    properties: dict[str, str] = field(default_factory=dict)
    mpp: tuple[float, float] | None = None
    magnification: float | None = None
    associated: dict[str, AssociatedImage] = field(default_factory=dict)
    description: str | None = None
    focal_planes: dict[str, list[Level]] = field(default_factory=dict)
    closers: list[Callable[[], None]] = field(default_factory=list)
    title: str | None = None

    def __post_init__(self) -> None:
        if not self.levels:
            raise ValueError(f"{self.path}: a slide needs at least one level")
        self.associated_images: Mapping[str, RGBArray] = _AssociatedImages(self.associated)
        for level in [*self.levels, *(lvl for plane in self.focal_planes.values() for lvl in plane)]:
            if level.source is None:
                level.source = self.path
        # OpenSlide's standard property names, so scripts reading them keep working.
        if self.mpp:
            self.properties.setdefault("openslide.mpp-x", repr(self.mpp[0]))
            self.properties.setdefault("openslide.mpp-y", repr(self.mpp[1]))
        if self.magnification is not None:
            self.properties.setdefault("openslide.objective-power", f"{self.magnification:g}")

    # -- context manager -------------------------------------------------------------------
    def close(self) -> None:
        while self.closers:
            self.closers.pop()()

    def __enter__(self) -> Slide:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- OpenSlide-compatible API ----------------------------------------------------------
    @property
    def level_count(self) -> int:
        return len(self.levels)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple(level.dimensions for level in self.levels)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(level.downsample for level in self.levels)

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.levels[0].dimensions

    def get_best_level_for_downsample(self, downsample: float) -> int:
        """The level with the largest downsample not above ``downsample`` (OpenSlide's rule)."""
        best = 0
        for index, level in enumerate(self.levels):
            if level.downsample <= downsample + 1e-9:
                best = index
        return best

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> RGBArray:
        """RGB pixels of shape (h, w, 3): ``location`` in level-0 pixels, ``size`` in level pixels.

        The level-0 location is divided by the level's downsample and floored; outside the image
        is white.
        """
        if not 0 <= level < len(self.levels):
            raise IndexError(f"{self.path}: level {level} outside 0..{len(self.levels) - 1}")
        lvl = self.levels[level]
        x = math.floor(location[0] / lvl.downsample)
        y = math.floor(location[1] / lvl.downsample)
        return lvl.read_region(x, y, size[0], size[1])

    def get_thumbnail(self, size: tuple[int, int]) -> RGBArray:
        """The whole slide scaled to fit ``size`` (max width, max height), aspect kept."""
        width, height = self.dimensions
        scale = max(width / size[0], height / size[1], 1.0)
        target = (max(1, round(width / scale)), max(1, round(height / scale)))
        return level_thumbnail(self.levels[self.get_best_level_for_downsample(scale)], target)
