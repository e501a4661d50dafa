"""The companion images of a CWS directory we write: SlideThumb, Ss1, Label and Macro.

``SlideThumb.jpg`` is 1024 px wide and ``Ss1.jpg`` 1/16 of the base resolution (capped at
8192 px on the long side), both computed from the lower levels just written: never from level 0
when the slide has another level (a slide under 4096 px wide gets a thumbnail upscaled from
level 1), so copying a slide's level 0 never decodes it. ``Label.jpg``/``Macro.jpg`` copy the
source's label and macro: a JPEG is copied as a standalone JPEG (tables merged, Adobe marker for
RGB), anything else (Aperio's LZW label) is encoded. Each image is held whole once (a JPEG is
encoded at once), so memory peaks at Ss1's size (at most 8192 x 8192 px) plus one strip read.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ... import codecs
from ...codecs import RGBArray
from ...model import AssociatedImage, Level, Slide
from ...resample import box_downsample, resize
from .read import open_slide

THUMB_WIDTH = 1024
SS1_DOWNSAMPLE = 16
SS1_MAX = 8192
CHUNK = 4096  # px of a level read at once across, when scaling it down
_COMPANION_QUALITY = 90


def _scaled(written: Slide, size: tuple[int, int]) -> RGBArray:
    """The slide at ``size`` from the coarsest level at least that large; level 0 only when the
    slide has no other level (a level-1 image is upscaled instead), so that a copying conversion
    never decodes level 0."""
    candidates = [level for level in written.levels if level.width >= size[0] and level.height >= size[1]]
    level = candidates[-1] if candidates else written.levels[-1]
    if level is written.levels[0] and len(written.levels) > 1:
        level = written.levels[1]
    return _reduce(level, size)


def _reduce(level: Level, size: tuple[int, int]) -> RGBArray:
    """``level`` scaled to ``size``, read in pieces of about one block row by CHUNK px, so memory
    holds the output and one piece (resample.level_thumbnail holds up to 16 Mpx strips)."""
    width, height = size
    factor = max(1, min(level.width // width, level.height // height))
    rows = max(factor, level.grid.tile_height // factor * factor)
    chunk = max(factor, CHUNK // factor * factor)
    out = np.empty((height, width, 3), np.uint8)
    done = 0
    for y in range(0, level.height, rows):
        strip_rows = min(rows, level.height - y)
        pieces = [
            box_downsample(level.read_region(x, y, min(chunk, level.width - x), strip_rows), factor)
            for x in range(0, level.width, chunk)
        ]
        end = round((y + strip_rows) * height / level.height)
        if end > done:
            out[done:end] = resize(np.concatenate(pieces, axis=1), (width, end - done))
            done = end
    return out


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


def write_companions(slide: Slide, directory: Path, *, quality: int) -> list[str]:
    """Write the companion JPEGs into ``directory`` (whose INI files are complete); their names."""
    quality = max(quality, _COMPANION_QUALITY)
    width, height = slide.dimensions
    written = open_slide(directory)
    thumb_w = min(THUMB_WIDTH, width)
    thumb = _scaled(written, (thumb_w, max(1, round(height * thumb_w / width))))
    (directory / "SlideThumb.jpg").write_bytes(codecs.encode_jpeg(thumb, quality=quality))
    del thumb
    ss1_size = _fit(math.ceil(width / SS1_DOWNSAMPLE), math.ceil(height / SS1_DOWNSAMPLE), SS1_MAX)
    (directory / "Ss1.jpg").write_bytes(codecs.encode_jpeg(_scaled(written, ss1_size), quality=quality))
    names = ["thumbnail", "ss1"]
    for name, file_name in (("label", "Label.jpg"), ("macro", "Macro.jpg")):
        image = slide.associated.get(name)
        if image is not None:
            (directory / file_name).write_bytes(_associated_jpeg(image, quality))
            names.append(name)
    return names
