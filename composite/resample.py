"""Reducing pixels: box-filter downsampling and thumbnails, streamed strip by strip.

Box filtering (the mean of each factor x factor block) is what pyramid builders in this field
use; it has no seams at tile borders when a tile's box is a whole number of blocks. Partial blocks
at the right and bottom edges average only the pixels that exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .codecs import RGBArray

if TYPE_CHECKING:
    from .model import Level

STRIP_PIXELS = 16_000_000  # pixels decoded at once when streaming a level into a thumbnail


def box_downsample(pixels: RGBArray, factor: int) -> RGBArray:
    """Mean of each ``factor`` x ``factor`` block; output size is the input size / factor, rounded up."""
    if factor == 1:
        return pixels
    height, width = pixels.shape[:2]
    out_h = -(-height // factor)
    out_w = -(-width // factor)
    pad_h = out_h * factor - height
    pad_w = out_w * factor - width
    data = pixels.astype(np.uint32)
    if pad_h or pad_w:
        data = np.pad(data, ((0, pad_h), (0, pad_w), (0, 0)))
    sums = data.reshape(out_h, factor, out_w, factor, 3).sum(axis=(1, 3))
    counts = np.full((out_h, out_w), factor * factor, np.uint32)
    if pad_h:
        counts[-1, :] = (factor - pad_h) * factor
    if pad_w:
        counts[:, -1] = (factor - pad_w) * factor
    if pad_h and pad_w:
        counts[-1, -1] = (factor - pad_h) * (factor - pad_w)
    reduced: RGBArray = ((sums + counts[:, :, None] // 2) // counts[:, :, None]).astype(np.uint8)
    return reduced


def resize(pixels: RGBArray, size: tuple[int, int]) -> RGBArray:
    """Resize to ``size`` (width, height) with an area-averaging filter."""
    if (pixels.shape[1], pixels.shape[0]) == size:
        return pixels
    image = Image.fromarray(pixels).resize(size, Image.Resampling.BOX)
    return np.asarray(image, dtype=np.uint8)


def level_thumbnail(level: Level, size: tuple[int, int]) -> RGBArray:
    """The whole level scaled to exactly ``size``, reading it in strips (memory stays bounded)."""
    factor = max(1, min(level.width // size[0], level.height // size[1]))
    strip_rows = max(factor, (STRIP_PIXELS // max(level.width, 1)) // factor * factor)
    strips = []
    for y in range(0, level.height, strip_rows):
        rows = min(strip_rows, level.height - y)
        strips.append(box_downsample(level.read_region(0, y, level.width, rows), factor))
    return resize(np.concatenate(strips, axis=0), size)
