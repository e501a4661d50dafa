"""Which tiles are empty glass: the test behind ``--skip-glass`` (docs/cws.md, "Skipping glass").

A tile is **glass** when every pixel of it, seen at 1/:data:`SCALE` scale, is background within a
tolerance; any tissue at all (a pale fat membrane, a 1-px edge) keeps it, and so does a dust speck
that shows. The test:

1. the tile is decoded at reduced scale where the codec allows it: JPEG through libjpeg's DCT
   scaling (Pillow's ``draft``; imagecodecs' ``jpeg8_decode`` has no scale option), so only a 4x4
   inverse DCT runs per 8x8 block; other codecs are decoded whole and box-averaged. Each reduced
   pixel is the mean of 2x2 pixels: a 1-px line 32 levels off the glass is 16 levels off there,
   while the glass's own noise and JPEG ripple average out to 1-3 levels;
2. only the part inside the image counts (edge tiles' padding is ignored);
3. the tile is glass when every reduced pixel is within ``tolerance`` of the slide's background
   colour, or of the tile's own glass level (the median of its reduced pixels) when that level is
   within ``2 * tolerance`` of the background: scanner shading moves the glass a few levels across
   a slide (:func:`is_glass`).

Most tiles never reach that decode: :class:`GlassMap` first asks the next pyramid level
(:mod:`composite.glass_screen`), which settles the tiles that are clearly glass or clearly tissue.

The background colour is measured per slide, never assumed white: the brightest frequent colour of
the thumbnail (:func:`composite.background.slide_background`, the colour CWS edge padding uses).

A reader that derives a level's extent from its outermost listed tiles (olyvslideconv takes
xMax/yMax from the INI's block list) must see the same extent as without skipping, so the first and
the last tile of every level (:func:`pinned`) are always kept. :class:`GlassMap` records the
decision per tile as the tiles pass; it holds one byte per tile.

Pure functions and a small state object: no I/O, no policy about what a writer does with glass.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from . import codecs
from .background import slide_background
from .codecs import RGBArray, TileEncoding
from .errors import TileReadError
from .geometry import TileGrid
from .glass_screen import Screen
from .model import Level, Slide
from .output import DEFAULT_GLASS_TOLERANCE as DEFAULT_TOLERANCE
from .resample import box_downsample
from .tiling import EncodedTile

SCALE = 2  # pixels are compared as means of SCALE x SCALE blocks (a DCT-scaled JPEG decode)
MAX_TOLERANCE = 64
RGB = tuple[int, int, int]


def reduced_pixels(data: bytes, encoding: TileEncoding, *, size: tuple[int, int], valid: tuple[int, int]) -> RGBArray:
    """Tile ``data`` (encoded as ``encoding``, ``size`` = its full width and height) at about
    1/:data:`SCALE` scale, cut to the reduced box of its ``valid`` (width, height) inside the image.

    Raises :class:`TileReadError` for data that cannot be decoded.
    """
    width, height = size
    if encoding.compression == "jpeg":
        pixels = codecs.decode_jpeg_reduced(data, tables=encoding.jpeg_tables, rgb=encoding.rgb, size=size, scale=SCALE)
    else:
        pixels = box_downsample(_decoded(data, encoding, size), SCALE)
    # The scale libjpeg chose may differ from SCALE (small tiles); round the valid box up, so a
    # sliver of tissue at the image edge is never cut off.
    out_h, out_w = pixels.shape[:2]
    keep_w = min(out_w, -(-valid[0] * out_w // width))
    keep_h = min(out_h, -(-valid[1] * out_h // height))
    return pixels[: max(1, keep_h), : max(1, keep_w)]


def _decoded(data: bytes, encoding: TileEncoding, size: tuple[int, int]) -> RGBArray:
    width, height = size
    if encoding.compression == "jpeg2000":
        return codecs.decode_jpeg2000(data)
    if encoding.compression in ("lzw", "none"):
        raw = codecs.decode_lzw(data) if encoding.compression == "lzw" else data
        if len(raw) < width * height * 3:
            raise TileReadError(f"{encoding.compression} tile holds {len(raw)} bytes, expected {width * height * 3}")
        pixels: RGBArray = np.frombuffer(raw, np.uint8)[: width * height * 3].reshape(height, width, 3)
        return pixels
    raise TileReadError(f"cannot test {encoding.compression} tiles for glass")


def is_glass(pixels: RGBArray, *, background: RGB, tolerance: int = DEFAULT_TOLERANCE) -> bool:
    """True when ``pixels`` (reduced, see :func:`reduced_pixels`) are all background within
    ``tolerance``: every pixel within ``tolerance`` of ``background``, or (shaded glass) of the
    pixels' median when that median is within ``2 * tolerance`` of ``background``."""
    flat = pixels.reshape(-1, 3).astype(np.int16)
    if not len(flat):
        return True
    off = int(np.abs(flat - np.asarray(background, np.int16)).max())
    # Glass at the slide's own level, and most tissue (far from any glass): no sorting needed.
    if off <= tolerance or off > 3 * tolerance:
        return off <= tolerance
    level = np.median(flat, axis=0).round().astype(np.int16)
    if int(np.abs(level - np.asarray(background, np.int16)).max()) > 2 * tolerance:
        return False
    return int(np.abs(flat - level).max()) <= tolerance


def pinned(grid: TileGrid) -> tuple[tuple[int, int], tuple[int, int]]:
    """The tiles that pin a level's extent for readers that take it from the outermost listed tiles:
    the top-left one (xMax, yMax in CWS stage units) and the bottom-right one (xMin, yMin)."""
    return (0, 0), (grid.cols - 1, grid.rows - 1)


@dataclass(frozen=True, kw_only=True)
class GlassRule:
    """The glass test of one slide: its background colour and the tolerance."""

    background: RGB
    tolerance: int = DEFAULT_TOLERANCE

    def __post_init__(self) -> None:
        if not 0 <= self.tolerance <= MAX_TOLERANCE:
            raise ValueError(f"glass tolerance must be 0..{MAX_TOLERANCE}, got {self.tolerance}")

    @classmethod
    def for_slide(cls, slide: Slide, *, tolerance: int = DEFAULT_TOLERANCE, background: RGB | None = None) -> GlassRule:
        """The rule with ``slide``'s measured background (or ``background`` when already measured)."""
        return cls(background=background or slide_background(slide), tolerance=tolerance)

    def tile_is_glass(self, data: bytes, encoding: TileEncoding, *, grid: TileGrid, col: int, row: int) -> bool:
        """True when tile (col, row) of ``grid``, encoded as ``data``, is glass. A tile that cannot
        be decoded is not glass (it is kept, and its reader reports it)."""
        box = grid.tile_box(col, row)
        try:
            pixels = reduced_pixels(
                data, encoding, size=(grid.tile_width, grid.tile_height), valid=(box.width, box.height)
            )
        except TileReadError:
            return False
        return is_glass(pixels, background=self.background, tolerance=self.tolerance)


class GlassMap:
    """The kept tiles of each level of a conversion: every tile starts kept; :meth:`observe` drops
    glass tiles (never the :func:`pinned` ones). One byte per tile; thread-safe.

    ``levels`` (the pyramid being written) lets a tile be judged from the next level, 4x smaller,
    before anything of it is decoded (:meth:`screen`). A writer observes the tiles as it writes
    them and lists what is kept afterwards. A server, which must list a level before any of its
    tiles is asked for, gives ``survey``: the encoded tiles of level ``index``, observed all at
    once the first time :meth:`keep` asks about that level.
    """

    def __init__(
        self,
        grids: Iterable[TileGrid],
        rule: GlassRule,
        *,
        levels: Sequence[Level] = (),
        survey: Callable[[int], Iterable[EncodedTile]] | None = None,
    ) -> None:
        self.grids = list(grids)
        self.rule = rule
        self._kept = [bytearray(b"\x01") * grid.tile_count for grid in self.grids]
        self._lock = threading.Lock()
        self._survey = survey
        self._surveyed = [survey is None] * len(self.grids)
        self._survey_locks = [threading.Lock() for _ in self.grids]
        self._screens: list[Screen | None] = [None] * len(self.grids)
        for index, (level, smaller) in enumerate(itertools.pairwise(levels)):
            if index < len(self.grids):
                self._screens[index] = Screen.between(
                    self.grids[index], level, smaller, background=rule.background, tolerance=rule.tolerance
                )
        self.decoded = 0  # tiles decoded for the test (the others were decided by the screen)

    def screen(self, index: int, col: int, row: int) -> bool | None:
        """Tile (col, row) of level ``index`` judged from the next level (:mod:`composite.glass_screen`):
        True glass, False tissue, None unsure (no such level, or in between: decode the tile)."""
        screen = self._screens[index]
        return None if screen is None else screen.verdict(col, row)

    def observe(self, index: int, col: int, row: int, data: bytes, encoding: TileEncoding) -> bool:
        """Test tile (col, row) of level ``index`` (the screen, else its pixels); record and return
        whether it is kept."""
        grid = self.grids[index]
        if (col, row) in pinned(grid):
            return True
        glass = self.screen(index, col, row)
        if glass is None:
            glass = self.rule.tile_is_glass(data, encoding, grid=grid, col=col, row=row)
            with self._lock:
                self.decoded += 1
        if glass:
            with self._lock:
                self._kept[index][row * grid.cols + col] = 0
        return not glass

    def keep(self, index: int, col: int, row: int) -> bool:
        """Whether tile (col, row) of level ``index`` is kept (the block-filter signature)."""
        if not self._surveyed[index]:
            self._survey_level(index)
        return bool(self._kept[index][row * self.grids[index].cols + col])

    def kept_count(self, index: int) -> int:
        if not self._surveyed[index]:
            self._survey_level(index)
        return sum(self._kept[index])

    def _survey_level(self, index: int) -> None:
        with self._survey_locks[index]:
            if self._surveyed[index] or self._survey is None:
                return
            for tile in self._survey(index):
                self.observe(index, tile.col, tile.row, tile.data, tile.encoding)
            self._surveyed[index] = True
