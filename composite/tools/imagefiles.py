"""Writing plain image files (JPEG, PNG, TIFF) from bands of pixels, atomically.

A picture to write is a :class:`Picture`: its size and a function returning any horizontal band
of it. JPEG and PNG need the whole image in memory (the encoders take one array), so
:func:`check_fits` refuses what is over 65,500 px a side (libjpeg's limit) or over the memory
budget; TIFF is written tile row by tile row from the bands (tifffile encodes the tiles), so its
memory is one band. Every file is written under a temporary name and renamed at the end.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tifffile
from PIL import Image

from ..codecs import RGBArray
from ..errors import LimitError, OutputExistsError
from ..output import ASSOCIATED_QUALITY, atomic_output
from ..progress import ProgressCallback, no_progress

ImageFormat = Literal["jpeg", "png", "tiff"]
EXTENSIONS: dict[str, str] = {"jpeg": ".jpg", "png": ".png", "tiff": ".tif"}
JPEG_MAX_SIDE = 65_500  # libjpeg's JPEG_MAX_DIMENSION (the format's 65,535 is not reachable)
DEFAULT_MEMORY_BUDGET = 1_500_000_000  # bytes of RGB pixels a JPEG/PNG export may hold
DEFAULT_QUALITY = ASSOCIATED_QUALITY  # exported pictures: the policy of docs/convert.md, "Quality"
TIFF_TILE = 256
_BAND_PIXELS = 16_000_000


@dataclass(frozen=True)
class Picture:
    """An image of ``width`` x ``height`` whose rows ``y .. y+rows`` come from ``band(y, rows)``.

    ``mpp`` (microns per pixel) goes into TIFF resolution tags when known; ``channels`` is 4 for
    RGBA bands (PNG and LZW/deflate/uncompressed TIFF keep the alpha).
    """

    width: int
    height: int
    band: Callable[[int, int], RGBArray]
    mpp: tuple[float, float] | None = None
    channels: int = 3

    def pixels(self, progress: ProgressCallback = no_progress, stage: str = "") -> RGBArray:
        """The whole image, read band by band."""
        rows = max(1, min(self.height, _BAND_PIXELS // max(self.width, 1)))
        out = np.empty((self.height, self.width, self.channels), np.uint8)
        for y in range(0, self.height, rows):
            count = min(rows, self.height - y)
            out[y : y + count] = self.band(y, count)
            progress(stage, min(y + count, self.height), self.height)
        return out


def fit_problem(width: int, height: int, fmt: ImageFormat, *, memory_budget: int) -> str | None:
    """Why an image of this size cannot be written as ``fmt``, or None when it can."""
    if fmt == "tiff":
        return None
    if fmt == "jpeg" and max(width, height) > JPEG_MAX_SIDE:
        return f"{width} x {height} px is too large for JPEG (at most {JPEG_MAX_SIDE:,} px a side)"
    need = width * height * 3
    if need > memory_budget:
        return (
            f"{width} x {height} px needs {_bytes(need)} in memory for {fmt.upper()},"
            f" over the {_bytes(memory_budget)} budget (--memory-budget)"
        )
    return None


def _bytes(count: int) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e8 else f"{count / 1e6:.1f} MB"


def check_fits(what: str, width: int, height: int, fmt: ImageFormat, *, memory_budget: int) -> None:
    problem = fit_problem(width, height, fmt, memory_budget=memory_budget)
    if problem:
        raise LimitError(f"{what}: {problem}; use --format tiff (streamed) or --region to export part of it")


def write_atomic(dst: Path, writer: Callable[[Path], object], *, overwrite: bool) -> None:
    """Call ``writer`` on a temporary name beside ``dst``, then rename it to ``dst``."""
    with atomic_output(dst, overwrite=overwrite) as tmp:
        writer(tmp)


def write_bytes(dst: Path, data: bytes, *, overwrite: bool) -> None:
    write_atomic(dst, lambda tmp: tmp.write_bytes(data), overwrite=overwrite)


def encode_image(pixels: RGBArray, fmt: ImageFormat, *, quality: int) -> bytes:
    """A JPEG or PNG file; grey when the three channels are equal (e.g. rendered DICOM)."""
    grey = pixels.shape[2] == 3 and bool(
        (pixels[:, :, 0] == pixels[:, :, 1]).all() and (pixels[:, :, 1] == pixels[:, :, 2]).all()
    )
    image = Image.fromarray(np.ascontiguousarray(pixels[:, :, 0]) if grey else pixels)
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_picture(
    picture: Picture,
    dst: Path,
    fmt: ImageFormat,
    *,
    quality: int = DEFAULT_QUALITY,
    compression: str = "jpeg",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    overwrite: bool = False,
    progress: ProgressCallback = no_progress,
    stage: str = "export",
) -> None:
    """Write ``picture`` to ``dst``: JPEG/PNG in one piece, TIFF streamed by tile rows."""
    check_fits(str(dst), picture.width, picture.height, fmt, memory_budget=memory_budget)
    if dst.exists() and not overwrite:
        raise OutputExistsError(f"{dst}: already exists (use --overwrite to replace it)")
    if fmt == "tiff":
        write_atomic(
            dst,
            lambda tmp: _write_tiff(
                picture, tmp, quality=quality, compression=compression, progress=progress, stage=stage
            ),
            overwrite=overwrite,
        )
        return
    data = encode_image(picture.pixels(progress, stage), fmt, quality=quality)
    write_bytes(dst, data, overwrite=overwrite)


def _tiles(picture: Picture, progress: ProgressCallback, stage: str) -> Iterator[RGBArray]:
    rows = -(-picture.height // TIFF_TILE)
    cols = -(-picture.width // TIFF_TILE)
    for row in range(rows):
        y = row * TIFF_TILE
        count = min(TIFF_TILE, picture.height - y)
        band = picture.band(y, count)
        padded = np.full((TIFF_TILE, cols * TIFF_TILE, picture.channels), 255, np.uint8)
        padded[:count, : picture.width] = band
        for col in range(cols):
            yield padded[:, col * TIFF_TILE : (col + 1) * TIFF_TILE]
        progress(stage, row + 1, rows)


def _write_tiff(
    picture: Picture, path: Path, *, quality: int, compression: str, progress: ProgressCallback, stage: str
) -> None:
    resolution = None
    if picture.mpp:
        resolution = (1e4 / picture.mpp[0], 1e4 / picture.mpp[1])
    bigtiff = picture.width * picture.height * 3 > 2**31
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tif:
        tif.write(
            _tiles(picture, progress, stage),
            shape=(picture.height, picture.width, picture.channels),
            dtype=np.uint8,
            tile=(TIFF_TILE, TIFF_TILE),
            photometric="rgb",  # the input; tifffile stores JPEG tiles as YCbCr 4:2:0
            compression=None if compression == "none" else compression,
            compressionargs={"level": quality} if compression == "jpeg" else None,
            resolution=resolution,
            resolutionunit="CENTIMETER" if resolution else None,
            extrasamples=("unassalpha",) if picture.channels == 4 else None,
            metadata=None,
        )


def write_small_tiff(pixels: RGBArray, path: Path, *, compression: str = "lzw") -> None:
    """A stripped RGB TIFF of an image already in memory (associated images)."""
    with tifffile.TiffWriter(path) as tif:
        tif.write(pixels, photometric="rgb", compression=None if compression == "none" else compression, metadata=None)
