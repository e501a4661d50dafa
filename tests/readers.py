"""Helpers for comparing our pixels with OpenSlide's (an independent reader)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
from numpy.typing import NDArray

from composite.model import Slide


def openslide_region(
    path: Path | str, location: tuple[int, int], level: int, size: tuple[int, int]
) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
    """OpenSlide's RGB pixels of a region and the mask of pixels inside the image (alpha 255)."""
    with openslide.OpenSlide(str(path)) as slide:
        rgba = np.asarray(slide.read_region(location, level, size))
    return rgba[:, :, :3], rgba[:, :, 3] == 255


def assert_matches_openslide(
    slide: Slide, location: tuple[int, int], level: int, size: tuple[int, int], *, tolerance: int = 2
) -> None:
    """Our read_region equals OpenSlide's inside the image and is white outside it."""
    ours = slide.read_region(location, level, size)
    theirs, inside = openslide_region(slide.path, location, level, size)
    assert ours.shape == (size[1], size[0], 3)
    if inside.any():
        diff = np.abs(ours[inside].astype(int) - theirs[inside].astype(int)).max()
        assert diff <= tolerance, f"level {level} {location} {size}: max difference {diff}"
    assert (ours[~inside] == 255).all(), "outside the image must be white"


def psnr(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
