"""Where the blocks of a CWS level go, by stage coordinates (docs/formats.md §1.4).

A block's ``x``/``y`` are the stage coordinates of the centre of its nominal (uncropped) block;
larger x is further left and larger y further up; ``lXStepSize / iImageWidth`` stage units make one
pixel. Level 0's frame starts at the left/top edge of its outermost blocks, so a level-0 block's
top-left pixel is ``round((xMax - x) / ux)``, exactly docs/formats.md §1.4. Every other level (another INI file) is
placed in that same frame by the same rule with its own step size, so levels line up by stage
position rather than by block number, and a level's blocks outside level 0's area are dropped.

Block numbers are never used: scanners number serpentine, Digital Slide Studio row-major.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ...cwsini import STAGE_LIMIT, IniFile, canvas_side
from ...errors import FormatError, LimitError, where

MAX_SIDE = 4_194_304  # px on one side of a level; Aperio tested 500,000 px, we allow 8x that
MAX_BLOCK_SIDE = 65_535  # the JPEG limit
MAX_EMPTY_RATIO = 64  # a level may be this many times the area its block files cover (separate tissue pieces)...
MAX_EMPTY_PIXELS = 2**26  # ... plus this many pixels, before it is refused as a few blocks spread out
MAX_EMPTY_CELLS_PER_BLOCK = 64  # a level's block grid: at most this many cells per block file...
MAX_EMPTY_CELLS = 65_536  # ... plus this many (two 1-px blocks 5,000 px apart: 25 million 1-px tiles)
DEFAULT_UNITS_PER_PIXEL = 4.0  # what producers write when a file lacks step sizes (docs/formats.md §1.4)
_MIN_UNITS_PER_PIXEL = 1 / 64
_MAX_UNITS_PER_PIXEL = 65_536.0

IntArray = NDArray[np.int64]
IndexArray = NDArray[np.int32]


@dataclass(frozen=True)
class Geometry:
    """The nominal block size of one INI file and its stage units per pixel on each axis."""

    block_width: int
    block_height: int
    ux: float
    uy: float

    @property
    def step_x(self) -> float:
        return self.ux * self.block_width

    @property
    def step_y(self) -> float:
        return self.uy * self.block_height


def _block_side(ini: IniFile, key: str, fallback: int | None) -> int:
    value = ini.header.get(key.lower())
    parsed = ini.number(key)
    if parsed is None:
        if fallback is None:
            raise ini.error(None, f"no {key} in [Header] and no block image to measure")
        return fallback
    if parsed != int(parsed) or not 1 <= parsed <= MAX_BLOCK_SIDE:
        line = value.line if value else None
        raise ini.error(line, f"{key}={value.text if value else parsed} is not a block size (1..{MAX_BLOCK_SIDE} px)")
    return int(parsed)


def _units_per_pixel(ini: IniFile, key: str, side: int) -> float:
    value = ini.header.get(key.lower())
    step = ini.number(key)
    if value is None or step is None:
        return DEFAULT_UNITS_PER_PIXEL
    if step <= 0:
        raise ini.error(value.line, f"{key}={value.text} must be a positive number of stage units")
    units = step / side
    if step > STAGE_LIMIT or not _MIN_UNITS_PER_PIXEL <= units <= _MAX_UNITS_PER_PIXEL:
        raise ini.error(
            value.line,
            f"{key}={value.text} is absurd: {units:g} stage units per pixel "
            f"(expected {_MIN_UNITS_PER_PIXEL:g}..{_MAX_UNITS_PER_PIXEL:g}; producers write 4)",
        )
    return units


def geometry(ini: IniFile, *, measured: tuple[int, int] | None = None) -> Geometry:
    """Validate the header of ``ini``; ``measured`` is the first block's JPEG size, if read."""
    width = _block_side(ini, "iImageWidth", measured[0] if measured else None)
    height = _block_side(ini, "iImageHeight", measured[1] if measured else None)
    ux = _units_per_pixel(ini, "lXStepSize", width)
    uy = _units_per_pixel(ini, "lYStepSize", height)
    return Geometry(width, height, ux, uy)


@dataclass(frozen=True)
class Frame:
    """Level 0's pixel frame in stage units: its left and top edges, and its units per pixel."""

    left: float
    top: float
    ux: float
    uy: float


def _outlier_line(ini: IniFile, coords: IntArray) -> int:
    """The line of the block farthest from the median: the likeliest culprit of a huge canvas."""
    far = int(np.argmax(np.abs(coords - np.median(coords))))
    return ini.block_lines[far]


def base_frame(ini: IniFile, geom: Geometry) -> tuple[Frame, int, int]:
    """Level 0's frame and canvas size (before any ``[Level0]`` crop), checked against limits."""
    xs = np.asarray(ini.block_x, np.int64)
    ys = np.asarray(ini.block_y, np.int64)
    sizes = []
    for coords, step, units, axis in ((xs, geom.step_x, geom.ux, "x"), (ys, geom.step_y, geom.uy, "y")):
        span = (int(coords.max()) - int(coords.min()) + step) / units
        if span > MAX_SIDE:
            line = _outlier_line(ini, coords)
            raise FormatError(
                f"{where(ini.path, line)}: block {axis}= is outside any sane range: the blocks would span "
                f"{span:.0f} px (limit {MAX_SIDE})"
            )
        sizes.append(canvas_side(int(coords.min()), int(coords.max()), step, units))
    frame = Frame(left=int(xs.max()) + geom.step_x / 2, top=int(ys.max()) + geom.step_y / 2, ux=geom.ux, uy=geom.uy)
    return frame, sizes[0], sizes[1]


def positions(ini: IniFile, geom: Geometry, frame: Frame) -> tuple[IntArray, IntArray]:
    """Top-left pixel of every block of ``ini`` in its own level, aligned to level 0's frame."""
    xs = np.asarray(ini.block_x, np.float64)
    ys = np.asarray(ini.block_y, np.float64)
    # floor(v + 0.5): C's round() for the non-negative positions of every level-0 block
    px = np.floor((frame.left - xs - geom.step_x / 2) / geom.ux + 0.5).astype(np.int64)
    py = np.floor((frame.top - ys - geom.step_y / 2) / geom.uy + 0.5).astype(np.int64)
    return px, py


def regular_grid(px: IntArray, py: IntArray, geom: Geometry, width: int, height: int) -> IndexArray | None:
    """Block index at [row, col] (-1: no block) when the blocks tile the level without overlap, else None.

    Blocks that start outside the level (cropped away by ``[Level0]``) are left out. An array,
    not a dict: 4 bytes a cell keeps a 100,000-block level's index under half a megabyte.
    """
    if len(px) == 0 or (px < 0).any() or (py < 0).any():
        return None
    if (px % geom.block_width).any() or (py % geom.block_height).any():
        return None
    cols = px // geom.block_width
    rows = py // geom.block_height
    inside = np.flatnonzero((px < width) & (py < height))
    grid_cols, grid_rows = -(-width // geom.block_width), -(-height // geom.block_height)
    if grid_cols * grid_rows > MAX_EMPTY_CELLS_PER_BLOCK * len(px) + MAX_EMPTY_CELLS:
        return None  # mostly empty: no index of that size (check_extent refuses the level first)
    cells = np.full((grid_rows, grid_cols), -1, np.int32)
    cells[rows[inside], cols[inside]] = inside
    if np.count_nonzero(cells >= 0) != len(inside):
        return None  # two blocks on one cell: compose them instead
    return cells


def check_extent(ini: IniFile, geom: Geometry, width: int, height: int, present: int) -> None:
    """Refuse a level that is mostly empty: a few blocks spread far apart (or thousands named but
    missing) would make a conversion write (and an index hold) millions of blank tiles from a few
    bytes of INI. ``present`` is the number of block files that exist."""
    covered = present * geom.block_width * geom.block_height
    cells = -(-width // geom.block_width) * -(-height // geom.block_height)
    if cells > MAX_EMPTY_CELLS_PER_BLOCK * present + MAX_EMPTY_CELLS:  # tiny blocks: millions of tiles
        raise LimitError(
            f"{ini.path}: {present} block files of {geom.block_width}x{geom.block_height} px make a level of "
            f"{width}x{height} px {cells} blocks (limit: {MAX_EMPTY_CELLS_PER_BLOCK} per block file "
            f"+ {MAX_EMPTY_CELLS})"
        )
    if width * height > MAX_EMPTY_RATIO * covered + MAX_EMPTY_PIXELS:
        raise LimitError(
            f"{ini.path}: {present} block files of {geom.block_width}x{geom.block_height} px spread over "
            f"{width}x{height} px (limit: {MAX_EMPTY_RATIO} x the {covered} px they cover + {MAX_EMPTY_PIXELS} px)"
        )


def check_blocks(ini: IniFile) -> None:
    if not ini.block_names:
        raise ini.error(ini.line_count, "no image blocks (no section with both x= and y=) in the file")
