"""Slides stored as they are, for the virtual-CWS server tests: an ACI mosaic of camera JPEGs and
a DICOM series converted from a synthetic SVS (the Aperio SVS itself is conftest's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from composite.convert import WriteOptions, convert


def write_aci_mosaic(directory: Path, *, cols: int = 3, rows: int = 2, size: tuple[int, int] = (900, 700)) -> Path:
    """``mosaic.aci`` placing ``cols x rows`` JPEG camera tiles (gradients with a grid of dark dots,
    so misplaced tiles show) edge to edge; returns the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    width, height = size
    lines = ["# camera tiles, Y before X"]
    yy, xx = np.mgrid[0:height, 0:width]
    for row in range(rows):
        for col in range(cols):
            pixels = np.empty((height, width, 3), np.uint8)
            pixels[..., 0] = 120 + (xx * 100 // width)
            pixels[..., 1] = 60 + 40 * col + (yy * 60 // height)
            pixels[..., 2] = 150 + 30 * row
            pixels[(yy % 100 < 12) & (xx % 100 < 12)] = (40, 20, 80)
            name = f"tile_{row}_{col}.jpg"
            Image.fromarray(pixels).save(directory / name, "JPEG", quality=92)
            lines.append(f"{name} {row * height} {col * width}")
    manifest = directory / "mosaic.aci"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def write_dicom_series(directory: Path, source: Path) -> Path:
    """A DICOM WSI series in ``directory``, its JPEG frames copied from ``source`` (an SVS)."""
    convert(source, directory, to="dicom", options=WriteOptions())
    return directory
