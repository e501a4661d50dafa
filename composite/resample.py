"""Reducing pixels: box-filter downsampling and resizing of pixel arrays.

Box filtering (the mean of each factor x factor block) is what pyramid builders in this field
use; it has no seams at tile borders when a tile's box is a whole number of blocks. Partial blocks
at the right and bottom edges average only the pixels that exist.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .codecs import RGBArray


def box_downsample(pixels: RGBArray, factor: int) -> RGBArray:
    """Mean of each ``factor`` x ``factor`` block; output size is the input size / factor, rounded up.

    Edge blocks average the pixels that exist. Rows are summed first, then columns, into 16-bit
    accumulators (32-bit past a factor of 16), without a widened copy of the input: the largest
    temporary is the row sums, ``2 / factor`` of the input's bytes.
    """
    if factor == 1:
        return pixels
    height, width = pixels.shape[:2]
    out_h, out_w = -(-height // factor), -(-width // factor)
    full_h, full_w = height // factor, width // factor
    acc = np.uint16 if factor <= 16 else np.uint32
    rows = np.empty((out_h, width, 3), acc)
    rows[:full_h] = pixels[: full_h * factor].reshape(full_h, factor, width, 3).sum(axis=1, dtype=acc)
    if full_h < out_h:
        rows[full_h] = pixels[full_h * factor :].sum(axis=0, dtype=acc)
    sums = np.empty((out_h, out_w, 3), acc)
    sums[:, :full_w] = rows[:, : full_w * factor].reshape(out_h, full_w, factor, 3).sum(axis=2, dtype=acc)
    if full_w < out_w:
        sums[:, full_w] = rows[:, full_w * factor :].sum(axis=1, dtype=acc)
    block_h = np.full(out_h, factor, np.uint32)
    block_h[-1] = height - full_h * factor or factor
    block_w = np.full(out_w, factor, np.uint32)
    block_w[-1] = width - full_w * factor or factor
    counts = (block_h[:, None] * block_w[None, :])[:, :, None]
    reduced: RGBArray = ((sums + counts // 2) // counts).astype(np.uint8)
    return reduced


def resize(pixels: RGBArray, size: tuple[int, int]) -> RGBArray:
    """Resize to ``size`` (width, height) with an area-averaging filter."""
    if (pixels.shape[1], pixels.shape[0]) == size:
        return pixels
    image = Image.fromarray(pixels).resize(size, Image.Resampling.BOX)
    return np.asarray(image, dtype=np.uint8)
