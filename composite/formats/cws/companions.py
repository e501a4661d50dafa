"""The companion images of a CWS directory we write: SlideThumb, Ss1, Label and Macro.

``SlideThumb.jpg`` is 1024 px wide and ``Ss1.jpg`` 1/16 of the base resolution (capped at
8192 px on the long side), both computed from the smallest of the levels just written that is
large enough (a level one pixel short counts: a 9,000 px slide's 1/16 level is 562 px high, its
Ss1 563), never from level 0 when the slide has another level (a slide under 4096 px wide gets a
thumbnail upscaled from level 1), so copying a slide's level 0 never decodes it. When those
levels are stored ones (not computed while writing), :func:`companions_alongside` makes the
companions on a thread while the writer writes the levels (a byte copy leaves a core idle).
``Label.jpg``/``Macro.jpg`` copy the source's label and macro: a JPEG is copied as a standalone
JPEG (tables merged, Adobe marker for RGB), anything else (Aperio's LZW label) is encoded.
Thumbnail and Ss1 are read a strip at a time (its pieces on two threads) and encoded strip by
strip (:class:`~composite.codecs.JpegStripWriter`), so memory holds about two strips of the image
written (at most 8192 px wide); nothing is read back from the directory. When the level is 2, 4
or 8 times (or a multiple of that) larger than the image and its tiles are JPEG, the tiles are
decoded at that reduced scale by libjpeg's DCT scaling (Pillow's ``draft``, as
:mod:`composite.glass` does): a scaled inverse DCT per 8x8 block instead of a full decode and a
box filter, about the same pixels (each the mean of its block, to within JPEG's own error).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ... import codecs
from ...codecs import RGBArray, TileEncoding
from ...errors import TileReadError
from ...geometry import TileGrid
from ...model import AssociatedImage, Level, Slide
from ...output import ASSOCIATED_QUALITY
from ...pyramid import DownsampledLevel
from ...resample import box_downsample, resize

THUMB_WIDTH = 1024
SS1_DOWNSAMPLE = 16
SS1_MAX = 8192
CHUNK = 2048  # px of a level read at once across, when scaling it down
WORKERS = 2  # pieces of a strip read and reduced at once


def _source_level(levels: list[Level], size: tuple[int, int]) -> Level:
    """The coarsest level at least ``size`` (one pixel short counts: rounding); level 0 only when
    there is no other level (a level-1 image is upscaled instead), so that a copying conversion
    never decodes level 0."""
    candidates = [level for level in levels if level.width >= size[0] - 1 and level.height >= size[1] - 1]
    level = candidates[-1] if candidates else levels[-1]
    if level is levels[0] and len(levels) > 1:
        level = levels[1]
    return level


DCT_SCALES = (8, 4, 2)  # libjpeg's reduced-size decodes that Pillow's draft asks for


class _ScaledTiles:
    """The JPEG tiles of ``level`` decoded at 1/``scale`` (a :class:`~composite.model.TileReader`)."""

    def __init__(self, level: Level, scale: int) -> None:
        self.level, self.scale = level, scale

    @property
    def encoding(self) -> TileEncoding | None:
        return None  # decoded pixels only: nothing to copy

    def read_encoded(self, col: int, row: int) -> bytes | None:
        return None

    def read_tile(self, col: int, row: int) -> RGBArray | None:
        return scaled_tile(self.level, col, row, self.scale)


def scaled_tile(level: Level, col: int, row: int, scale: int) -> RGBArray | None:
    """Tile (col, row) of ``level`` (JPEG) decoded at 1/``scale``; None when the tile is missing."""
    data = level.read_encoded_tile(col, row)
    encoding = level.encoding
    if data is None or encoding is None:
        return None
    grid = level.grid
    width, height = grid.tile_width // scale, grid.tile_height // scale
    try:
        pixels = codecs.decode_jpeg_reduced(
            data, tables=encoding.jpeg_tables, rgb=encoding.rgb, size=(grid.tile_width, grid.tile_height), scale=scale
        )
    except TileReadError as err:
        raise TileReadError(f"{level.source}: tile ({col}, {row}): {err}") from err
    if pixels.shape[:2] != (height, width):  # a tile whose stored size is not the grid's: no scaled decode
        pixels = box_downsample(level.read_tile(col, row), scale)
        out = np.full((height, width, 3), 255, np.uint8)
        out[: pixels.shape[0], : pixels.shape[1]] = pixels[:height, :width]
        return out
    return pixels


def _dct_scaled(level: Level, factor: int) -> tuple[Level, int]:
    """``level`` as read at 1/s by DCT scaling, s the largest of :data:`DCT_SCALES` dividing
    ``factor`` and the tile size, when its tiles are JPEG, and s; else ``level`` itself and 1."""
    encoding, grid = level.encoding, level.grid
    if encoding is None or encoding.compression != "jpeg":
        return level, 1
    for scale in DCT_SCALES:
        if factor % scale == 0 and grid.tile_width % scale == 0 and grid.tile_height % scale == 0:
            width, height = -(-level.width // scale), -(-level.height // scale)
            scaled = TileGrid(width, height, grid.tile_width // scale, grid.tile_height // scale)
            reduced = Level(scaled, level.downsample * scale, _ScaledTiles(level, scale))
            reduced.source = level.source
            return reduced, scale
    return level, 1


def _reduced(level: Level, size: tuple[int, int]) -> Iterator[RGBArray]:
    """``level`` scaled to ``size``, as consecutive row strips. The level is read one strip of
    about a tile row at a time, in pieces of about CHUNK px across reduced on WORKERS threads into
    the strip, so memory holds one strip and a few pieces, never the image."""
    width, height = size
    factor = max(1, min(level.width // width, level.height // height))
    full_height, scale = level.height, 1
    if factor > 1:
        level, scale = _dct_scaled(level, factor)
        factor //= scale
    rows = max(factor, level.grid.tile_height // factor * factor)
    # Pieces on a common multiple of the factor and the tile width, when small enough: no
    # source tile is then decoded for two pieces.
    period = math.lcm(factor, level.grid.tile_width)
    chunk = period * max(1, CHUNK // period) if period <= CHUNK else max(factor, CHUNK // factor * factor)
    reduced_width = -(-level.width // factor)
    # A level one pixel short (its size rounded down where ours rounds up) is padded by repeating
    # its last row and column, not stretched: its pixels stay where they are.
    pad = factor == 1 and 0 <= width - level.width <= 1 and 0 <= height - level.height <= 1
    done = 0
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="composite-companions") as pool:
        for y in range(0, level.height, rows):
            strip_rows = min(rows, level.height - y)
            strip = np.empty((-(-strip_rows // factor), reduced_width, 3), np.uint8)

            def reduce(x: int, y: int = y, strip_rows: int = strip_rows, strip: RGBArray = strip) -> None:
                piece = box_downsample(level.read_region(x, y, min(chunk, level.width - x), strip_rows), factor)
                strip[:, x // factor : x // factor + piece.shape[1]] = piece

            list(pool.map(reduce, range(0, level.width, chunk)))
            if pad:
                extra = height - level.height if y + strip_rows >= level.height else 0
                yield np.pad(strip, ((0, extra), (0, width - level.width), (0, 0)), mode="edge")
                continue
            end = round(min((y + strip_rows) * scale, full_height) * height / full_height)  # rows as unscaled
            if end > done:
                yield resize(strip, (width, end - done))
                done = end


def _restripped(strips: Iterator[RGBArray], rows: int) -> Iterator[RGBArray]:
    """The same pixels as strips of exactly ``rows`` rows (the last one fewer), gathered in one
    buffer: each strip yielded is overwritten once the next is asked for."""
    buffer: RGBArray | None = None
    count = 0
    for strip in strips:
        if buffer is None:
            buffer = np.empty((rows, *strip.shape[1:]), np.uint8)
        taken = 0
        while taken < strip.shape[0]:
            step = min(rows - count, strip.shape[0] - taken)
            buffer[count : count + step] = strip[taken : taken + step]
            count, taken = count + step, taken + step
            if count == rows:
                yield buffer
                count = 0
    if count and buffer is not None:
        yield buffer[:count]


def _write_scaled(levels: list[Level], size: tuple[int, int], path: Path, *, quality: int) -> None:
    """The slide at ``size`` as a JPEG at ``path``, encoded strip by strip (never held whole)."""
    writer = codecs.JpegStripWriter(*size, quality=quality)
    with path.open("wb") as out:
        for strip in _restripped(_reduced(_source_level(levels, size), size), writer.STRIP):
            out.write(writer.strip(strip))


def _fit(width: int, height: int, limit: int) -> tuple[int, int]:
    scale = max(width / limit, height / limit, 1.0)
    return max(1, round(width / scale)), max(1, round(height / scale))


def _associated_jpeg(image: AssociatedImage, quality: int) -> bytes:
    if image.encoded is not None:
        data, encoding = image.encoded()
        if encoding.compression == "jpeg":
            whole = codecs.standalone_jpeg(data, tables=encoding.jpeg_tables, rgb=encoding.rgb)
            try:
                if codecs.jpeg_info(whole).components in (1, 3):
                    return whole
            except ValueError:
                pass  # damaged or unusual: decode and encode below
    return codecs.encode_jpeg(image.read(), quality=quality)


def _sizes(slide: Slide) -> tuple[tuple[int, int], tuple[int, int]]:
    """The sizes of SlideThumb and Ss1."""
    width, height = slide.dimensions
    thumb_w = min(THUMB_WIDTH, width)
    thumb_size = _fit(thumb_w, max(1, round(height * thumb_w / width)), 65_535)  # a JPEG side; 16 x 65,536 px slides
    return thumb_size, _fit(math.ceil(width / SS1_DOWNSAMPLE), math.ceil(height / SS1_DOWNSAMPLE), SS1_MAX)


def write_companions(slide: Slide, directory: Path, *, levels: list[Level], quality: int) -> list[str]:
    """Write the companion JPEGs into ``directory``, scaled from ``levels`` (the levels just
    written: the source's own or computed ones, so nothing is read back); their names."""
    quality = max(quality, ASSOCIATED_QUALITY)
    thumb_size, ss1_size = _sizes(slide)
    _write_scaled(levels, thumb_size, directory / "SlideThumb.jpg", quality=quality)
    _write_scaled(levels, ss1_size, directory / "Ss1.jpg", quality=quality)
    names = ["thumbnail", "ss1"]
    for name, file_name in (("label", "Label.jpg"), ("macro", "Macro.jpg")):
        image = slide.associated.get(name)
        if image is not None:
            (directory / file_name).write_bytes(_associated_jpeg(image, quality))
            names.append(name)
    return names


class Companions:
    """The companions' names once written (:func:`companions_alongside`)."""

    names: list[str]


@contextlib.contextmanager
def companions_alongside(slide: Slide, directory: Path, *, levels: list[Level], quality: int) -> Iterator[Companions]:
    """:func:`write_companions` for a writer's ``with`` block: started on a thread at once when the
    levels it reads are stored ones, else (a level computed while writing) run when the block ends.
    Either way they are complete, or their error raised, when the block is left."""
    done = Companions()
    sources = [_source_level(levels, size) for size in _sizes(slide)]
    if any(isinstance(level, DownsampledLevel) for level in sources):
        yield done
        done.names = write_companions(slide, directory, levels=levels, quality=quality)
        return
    failed: list[BaseException] = []

    def run() -> None:
        try:
            done.names = write_companions(slide, directory, levels=levels, quality=quality)
        except BaseException as err:  # raised in the writer's thread below
            failed.append(err)

    thread = threading.Thread(target=run, name="composite-companions", daemon=True)
    try:
        # Started inside the try: a signal raised while start() waits for the thread to run
        # must still join it before the caller deletes the directory it writes into.
        thread.start()
        yield done
    finally:
        if thread.ident is not None:
            thread.join()  # also when the block failed: nothing may still write into the directory
    if failed:
        raise failed[0]
