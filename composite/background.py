"""The colour of a slide's glass: what padding beyond the image should look like.

Readers that ignore a format's true image size (CWS ``iWidth``/``iHeight``: olyvslideconv does)
show the padding of edge blocks. Padding with the glass colour makes it look like more slide, where
repeating the last row and column would show smeared stripes. The glass colour is the brightest
frequent colour of a small overview (the thumbnail, else the smallest level when it is small):
the brightest of the colour bins holding at least :data:`PEAK` of the pixels (glass is the
brightest large area of a brightfield slide, and the only one of a fluorescence slide's dark
background), else the most frequent bin; white when the slide has no small overview.
"""

from __future__ import annotations

import numpy as np

from .codecs import RGBArray
from .model import Slide, level_thumbnail

WHITE = (255, 255, 255)
PEAK = 0.05  # share of the pixels a colour bin needs to count as an area, not a detail
OVERVIEW = 512  # px on the long side of the image measured
MAX_LEVEL_PIXELS = 4_000_000  # a level read whole to measure, at most
_BIN_BITS = 5  # bins of 32 levels: 8 bins a channel


def glass_colour(pixels: RGBArray) -> tuple[int, int, int]:
    """The brightest frequent colour of ``pixels`` (the mean of its bin), see the module docstring."""
    flat = pixels.reshape(-1, 3)
    if not len(flat):
        return WHITE
    bins = flat >> _BIN_BITS  # shifts, in-place 16-bit keys, masked sums: a conversion waits for this
    keys = bins[:, 0].astype(np.uint16)
    for channel in (1, 2):
        keys <<= 3
        keys |= bins[:, channel]
    counts = np.bincount(keys, minlength=512)
    peaks = np.flatnonzero(counts >= PEAK * len(flat))
    if len(peaks):
        brightness = (peaks // 64) + (peaks // 8 % 8) + (peaks % 8)
        key = int(peaks[np.argmax(brightness)])
    else:
        key = int(np.argmax(counts))
    chosen, count = keys == key, int(counts[key])
    red, green, blue = (
        int(np.rint(np.add.reduce(flat[:, channel], where=chosen, dtype=np.int64) / count)) for channel in range(3)
    )
    return red, green, blue


def slide_background(slide: Slide) -> tuple[int, int, int]:
    """The glass colour of ``slide`` from its thumbnail or small lowest level; white if neither."""
    thumbnail = slide.associated.get("thumbnail")
    if thumbnail is not None:
        return glass_colour(thumbnail.read())
    level = slide.levels[-1]
    if level.width * level.height > MAX_LEVEL_PIXELS:
        return WHITE
    scale = max(level.width / OVERVIEW, level.height / OVERVIEW, 1.0)
    size = (max(1, round(level.width / scale)), max(1, round(level.height / scale)))
    return glass_colour(level_thumbnail(level, size))
