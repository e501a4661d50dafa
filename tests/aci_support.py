"""Helpers for the ACI tests: component files, and composites pasted by hand with numpy.

The expected composite never goes through composite's reader: components are read back with
tifffile or Pillow and pasted in (Y, X, line) order onto a white canvas.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile
from numpy.typing import NDArray
from PIL import Image

Pixels = NDArray[np.uint8]


def pattern(height: int, width: int, seed: int) -> Pixels:
    """Noise plus a gradient: every pixel differs from its neighbours and from other seeds."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 200, (height, width, 3), dtype=np.uint16)
    ramp = (np.arange(width)[None, :, None] + np.arange(height)[:, None, None]) % 56
    return (noise + ramp).astype(np.uint8)


def mean_reduce(pixels: Pixels, factor: int) -> Pixels:
    """Box mean of factor x factor blocks (sizes divisible by factor), rounded half up."""
    h, w = pixels.shape[0] // factor, pixels.shape[1] // factor
    blocks = pixels[: h * factor, : w * factor].astype(np.uint32).reshape(h, factor, w, factor, 3)
    total = blocks.sum(axis=(1, 3))
    n = factor * factor
    return ((total + n // 2) // n).astype(np.uint8)


def write_tiff(
    path: Path, pixels: Pixels, *, downsamples: Sequence[int] = (1,), tile: int = 128, compression: str = "lzw"
) -> Path:
    """A tiled pyramidal TIFF (reduced-resolution pages) written with tifffile alone."""
    with tifffile.TiffWriter(path) as tw:
        for ds in downsamples:
            level = pixels if ds == 1 else mean_reduce(pixels, ds)
            tw.write(
                level,
                tile=(tile, tile),
                compression=compression,
                photometric="rgb",
                subfiletype=0 if ds == 1 else 1,
                metadata=None,
            )
    return path


def stored_level(path: Path, level: int = 0) -> Pixels:
    """The pixels of one stored level, decoded by tifffile (or Pillow for plain images)."""
    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        return np.asarray(Image.open(path).convert("RGB"))
    with tifffile.TiffFile(path) as tif:
        return np.asarray(tif.series[0].levels[level].asarray())[..., :3]


def paste(height: int, width: int, placed: Sequence[tuple[Pixels, int, int]]) -> Pixels:
    """White canvas with each (pixels, x, y) pasted in (y, x, list order) order, clipped to it."""
    canvas = np.full((height, width, 3), 255, np.uint8)
    order = sorted(range(len(placed)), key=lambda i: (placed[i][2], placed[i][1], i))
    for i in order:
        pixels, x, y = placed[i]
        h = min(pixels.shape[0], height - y)
        w = min(pixels.shape[1], width - x)
        canvas[y : y + h, x : x + w] = pixels[:h, :w]
    return canvas
