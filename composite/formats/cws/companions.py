"""The companion images of a CWS directory we write: SlideThumb, Ss1, Label and Macro.

``SlideThumb.jpg`` is 1024 px wide and ``Ss1.jpg`` 1/16 of the base resolution (capped at
8192 px on the long side), both computed from the lower levels just written: never from level 0
when the slide has another level (a slide under 4096 px wide gets a thumbnail upscaled from
level 1), so copying a slide's level 0 never decodes it. ``Label.jpg``/``Macro.jpg`` copy the
source's label and macro: a JPEG is copied as a standalone JPEG (tables merged, Adobe marker for
RGB), anything else (Aperio's LZW label) is encoded. Thumbnail and Ss1 are read a few strips
at a time (on two threads) and encoded strip by strip (:class:`~composite.codecs.JpegStripWriter`),
so memory holds a few strips, whatever the slide's size; nothing is read back from the directory.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ... import codecs
from ...codecs import RGBArray
from ...model import AssociatedImage, Level, Slide
from ...resample import box_downsample, resize

THUMB_WIDTH = 1024
SS1_DOWNSAMPLE = 16
SS1_MAX = 8192
CHUNK = 4096  # px of a level read at once across, when scaling it down
WORKERS = 2  # strips of a level read and reduced at once
_COMPANION_QUALITY = 90


def _source_level(levels: list[Level], size: tuple[int, int]) -> Level:
    """The coarsest level at least ``size``; level 0 only when there is no other level (a level-1
    image is upscaled instead), so that a copying conversion never decodes level 0."""
    candidates = [level for level in levels if level.width >= size[0] and level.height >= size[1]]
    level = candidates[-1] if candidates else levels[-1]
    if level is levels[0] and len(levels) > 1:
        level = levels[1]
    return level


def _reduced(level: Level, size: tuple[int, int]) -> Iterator[RGBArray]:
    """``level`` scaled to ``size``, as consecutive row strips. The level is read in strips of
    about one tile row, WORKERS strips at a time on a thread pool, each in pieces of CHUNK px
    across, so memory holds a few strips, never the image."""
    width, height = size
    factor = max(1, min(level.width // width, level.height // height))
    rows = max(factor, level.grid.tile_height // factor * factor)
    chunk = max(factor, CHUNK // factor * factor)

    def reduce(y: int) -> RGBArray:
        strip_rows = min(rows, level.height - y)
        pieces = [
            box_downsample(level.read_region(x, y, min(chunk, level.width - x), strip_rows), factor)
            for x in range(0, level.width, chunk)
        ]
        return np.concatenate(pieces, axis=1)

    done = 0

    def scaled(y: int, future: Future[RGBArray]) -> Iterator[RGBArray]:
        nonlocal done
        end = round(min(y + rows, level.height) * height / level.height)
        if end > done:
            yield resize(future.result(), (width, end - done))
            done = end

    with ThreadPoolExecutor(WORKERS, thread_name_prefix="composite-companions") as pool:
        pending: deque[tuple[int, Future[RGBArray]]] = deque()
        for y in range(0, level.height, rows):
            pending.append((y, pool.submit(reduce, y)))
            if len(pending) > WORKERS:
                yield from scaled(*pending.popleft())
        while pending:
            yield from scaled(*pending.popleft())


def _restripped(strips: Iterator[RGBArray], rows: int) -> Iterator[RGBArray]:
    """The same pixels as strips of exactly ``rows`` rows (the last one fewer)."""
    held: list[RGBArray] = []
    count = 0
    for strip in strips:
        held.append(strip)
        count += strip.shape[0]
        while count >= rows:
            whole = np.concatenate(held) if len(held) > 1 else held[0]
            yield whole[:rows]
            held, count = ([whole[rows:]], count - rows) if count > rows else ([], 0)
    if count:
        yield np.concatenate(held)


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
    quality = max(quality, _COMPANION_QUALITY)
    width, height = slide.dimensions
    thumb_w = min(THUMB_WIDTH, width)
    _write_scaled(
        levels, (thumb_w, max(1, round(height * thumb_w / width))), directory / "SlideThumb.jpg", quality=quality
    )
    ss1_size = _fit(math.ceil(width / SS1_DOWNSAMPLE), math.ceil(height / SS1_DOWNSAMPLE), SS1_MAX)
    _write_scaled(levels, ss1_size, directory / "Ss1.jpg", quality=quality)
    names = ["thumbnail", "ss1"]
    for name, file_name in (("label", "Label.jpg"), ("macro", "Macro.jpg")):
        image = slide.associated.get(name)
        if image is not None:
            (directory / file_name).write_bytes(_associated_jpeg(image, quality))
            names.append(name)
    return names
