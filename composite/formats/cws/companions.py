"""The companion images of a CWS directory we write: SlideThumb, Ss1, Label and Macro.

``SlideThumb.jpg`` is 1024 px wide and ``Ss1.jpg`` 1/16 of the base resolution (capped at
8192 px on the long side), both computed from the lower levels just written: never from level 0
when the slide has another level (a slide under 4096 px wide gets a thumbnail upscaled from
level 1), so copying a slide's level 0 never decodes it. ``Label.jpg``/``Macro.jpg`` copy the
source's label and macro: a JPEG is copied as a standalone JPEG (tables merged, Adobe marker for
RGB), anything else (Aperio's LZW label) is encoded. Thumbnail and Ss1 are read a strip at a
time (its pieces on two threads) and encoded strip by strip (:class:`~composite.codecs.JpegStripWriter`),
so memory holds about two strips of the image written (at most 8192 px wide); nothing is read back
from the directory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ... import codecs
from ...codecs import RGBArray
from ...model import AssociatedImage, Level, Slide
from ...output import ASSOCIATED_QUALITY
from ...resample import box_downsample, resize

THUMB_WIDTH = 1024
SS1_DOWNSAMPLE = 16
SS1_MAX = 8192
CHUNK = 2048  # px of a level read at once across, when scaling it down
WORKERS = 2  # pieces of a strip read and reduced at once


def _source_level(levels: list[Level], size: tuple[int, int]) -> Level:
    """The coarsest level at least ``size``; level 0 only when there is no other level (a level-1
    image is upscaled instead), so that a copying conversion never decodes level 0."""
    candidates = [level for level in levels if level.width >= size[0] and level.height >= size[1]]
    level = candidates[-1] if candidates else levels[-1]
    if level is levels[0] and len(levels) > 1:
        level = levels[1]
    return level


def _reduced(level: Level, size: tuple[int, int]) -> Iterator[RGBArray]:
    """``level`` scaled to ``size``, as consecutive row strips. The level is read one strip of
    about a tile row at a time, in pieces of about CHUNK px across reduced on WORKERS threads into
    the strip, so memory holds one strip and a few pieces, never the image."""
    width, height = size
    factor = max(1, min(level.width // width, level.height // height))
    rows = max(factor, level.grid.tile_height // factor * factor)
    # Pieces on a common multiple of the factor and the tile width, when small enough: no
    # source tile is then decoded for two pieces.
    period = math.lcm(factor, level.grid.tile_width)
    chunk = period * max(1, CHUNK // period) if period <= CHUNK else max(factor, CHUNK // factor * factor)
    reduced_width = -(-level.width // factor)
    done = 0
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="composite-companions") as pool:
        for y in range(0, level.height, rows):
            strip_rows = min(rows, level.height - y)
            strip = np.empty((-(-strip_rows // factor), reduced_width, 3), np.uint8)

            def reduce(x: int, y: int = y, strip_rows: int = strip_rows, strip: RGBArray = strip) -> None:
                piece = box_downsample(level.read_region(x, y, min(chunk, level.width - x), strip_rows), factor)
                strip[:, x // factor : x // factor + piece.shape[1]] = piece

            list(pool.map(reduce, range(0, level.width, chunk)))
            end = round((y + strip_rows) * height / level.height)
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


def write_companions(slide: Slide, directory: Path, *, levels: list[Level], quality: int) -> list[str]:
    """Write the companion JPEGs into ``directory``, scaled from ``levels`` (the levels just
    written: the source's own or computed ones, so nothing is read back); their names."""
    quality = max(quality, ASSOCIATED_QUALITY)
    width, height = slide.dimensions
    thumb_w = min(THUMB_WIDTH, width)
    thumb_size = _fit(thumb_w, max(1, round(height * thumb_w / width)), 65_535)  # a JPEG side; 16 x 65,536 px slides
    _write_scaled(levels, thumb_size, directory / "SlideThumb.jpg", quality=quality)
    ss1_size = _fit(math.ceil(width / SS1_DOWNSAMPLE), math.ceil(height / SS1_DOWNSAMPLE), SS1_MAX)
    _write_scaled(levels, ss1_size, directory / "Ss1.jpg", quality=quality)
    names = ["thumbnail", "ss1"]
    for name, file_name in (("label", "Label.jpg"), ("macro", "Macro.jpg")):
        image = slide.associated.get(name)
        if image is not None:
            (directory / file_name).write_bytes(_associated_jpeg(image, quality))
            names.append(name)
    return names
