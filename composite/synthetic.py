"""A deterministic synthetic H&E-like slide, written streaming as SVS or pyramidal TIFF.

Used by ``make demo``, the tests and the benchmarks, so nothing large is committed. Pixels are a
pure function of level-0 coordinates: a smooth tissue mask, pink eosin stroma and purple nuclei
on a jittered lattice. Lower levels are exact box averages of level 0 (for
every power of 4), so they look like a real scanner's pyramid. The pattern repeats every 2048
level-0 pixels, which keeps a 100,000 px slide quick to generate. With ``stamp``
every tile carries its ``L<level> <col>,<row>`` in its top-left corner, so a tile in the wrong
place is visible in any viewer. The SVS layout follows docs/formats.md §3.1: Aperio RGB JPEG tiles
with one shared JPEGTables, like the scanners write.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import tifffile
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from . import codecs
from .codecs import RGBArray
from .geometry import TileGrid
from .resample import box_downsample

APERIO_VERSION = "Aperio Image Library v12.0.15"
_NUCLEUS_SPACING = 32.0
PERIOD = 2048  # level-0 pixels; every 4x downsample up to 1024 divides it, so levels tile exactly
_BACKGROUND = np.array([243, 243, 245], np.float32)
_STROMA = np.array([232, 170, 200], np.float32)
_NUCLEUS = np.array([92, 58, 140], np.float32)


def _hash(ix: NDArray[np.int64], iy: NDArray[np.int64], seed: int) -> NDArray[np.float32]:
    """A uniform value in [0, 1) per lattice cell, reproducible everywhere."""
    h = (ix * 374761393 + iy * 668265263 + seed * 2147483647) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    return ((h ^ (h >> 16)) & 0xFFFF).astype(np.float32) / 65536.0


def sample(xs: NDArray[np.float32], ys: NDArray[np.float32], *, seed: int = 0, holes: bool = True) -> RGBArray:
    """Pixels at level-0 positions ``xs`` (row vector) x ``ys`` (column vector); ``holes`` False
    fills the pattern's background areas with tissue too."""
    x = xs[None, :].astype(np.float32)
    y = ys[:, None].astype(np.float32)
    turn = np.float32(2 * np.pi / PERIOD)  # every wave fits the period: no seams where it repeats
    tissue = np.sin(x * turn + seed) + np.cos(y * turn) + 0.8 * np.sin((x + y) * 2 * turn)
    tissue_w = np.clip((tissue + 0.6) * 4.0, 0.0, 1.0) if holes else np.ones_like(tissue)
    shade = 0.5 + 0.5 * np.sin(x * 21 * turn) * np.cos(y * 17 * turn)
    cells = PERIOD // int(_NUCLEUS_SPACING)
    ix = np.floor(x / _NUCLEUS_SPACING).astype(np.int64) % cells
    iy = np.floor(y / _NUCLEUS_SPACING).astype(np.int64) % cells
    jx = (_hash(ix, iy, seed) * 0.6 + 0.2) * _NUCLEUS_SPACING
    jy = (_hash(iy, ix, seed + 7) * 0.6 + 0.2) * _NUCLEUS_SPACING
    dx = x - ix * _NUCLEUS_SPACING - jx
    dy = y - iy * _NUCLEUS_SPACING - jy
    radius = 6.0 + 5.0 * _hash(ix, iy, seed + 3)
    nucleus_w = np.clip((radius - np.sqrt(dx * dx + dy * dy)) / 2.0, 0.0, 1.0)
    nucleus_w *= _hash(ix + 11, iy, seed) < 0.7
    stroma = _STROMA[None, None, :] - (shade * 22.0)[:, :, None]
    tissue_rgb = stroma * (1 - nucleus_w[:, :, None]) + _NUCLEUS * nucleus_w[:, :, None]
    rgb = _BACKGROUND * (1 - tissue_w[:, :, None]) + tissue_rgb * tissue_w[:, :, None]
    pixels: RGBArray = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    return pixels


@functools.lru_cache(maxsize=4)
def _texture(seed: int, downsample: int, holes: bool = True) -> RGBArray:
    """One period of the pattern at a level's downsample: exact box averages of level 0."""
    if downsample == 1:
        coords = np.arange(PERIOD, dtype=np.float32) + 0.5
        return sample(coords, coords, seed=seed, holes=holes)
    parent = _texture(seed, downsample // 4, holes) if downsample % 4 == 0 else _texture(seed, 1, holes)
    factor = 4 if downsample % 4 == 0 else downsample
    return box_downsample(parent, factor)


def region(
    x: int, y: int, width: int, height: int, *, downsample: int = 1, seed: int = 0, holes: bool = True
) -> RGBArray:
    """Pixels of a box of the level with integer ``downsample`` (box averages of level 0).

    The pattern repeats every ``PERIOD`` level-0 pixels, which makes any level cheap to produce.
    ``holes`` False: tissue everywhere (no background areas).
    """
    downsample = max(1, min(downsample, PERIOD))
    texture = _texture(seed, downsample, holes)
    period = texture.shape[0]
    rows = np.arange(y, y + height) % period
    cols = np.arange(x, x + width) % period
    pixels: RGBArray = texture[rows[:, None], cols[None, :]]
    return pixels


class Scene(Protocol):
    """Other pixels for the generator (:class:`composite.synthetic_glass.GlassScene`: tissue on glass)."""

    def region(self, x: int, y: int, width: int, height: int, *, downsample: int = 1) -> RGBArray: ...


def _pixels(scene: Scene | None, x: int, y: int, width: int, height: int, *, downsample: int, seed: int) -> RGBArray:
    if scene is None:
        return region(x, y, width, height, downsample=downsample, seed=seed)
    return scene.region(x, y, width, height, downsample=downsample)


def _stamp(tile: RGBArray, text: str) -> RGBArray:
    image = Image.fromarray(tile)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 6 * len(text) + 4, 12), fill=(255, 255, 255))
    draw.text((2, 1), text, fill=(0, 0, 0))
    return np.asarray(image)


def level_sizes(width: int, height: int, *, factor: int = 4, min_size: int = 1024) -> list[tuple[int, int, int]]:
    """(width, height, downsample) of each level: divide by ``factor`` until below ``min_size``."""
    sizes = [(width, height, 1)]
    downsample = 1
    while max(sizes[-1][0], sizes[-1][1]) > min_size:
        downsample *= factor
        sizes.append((max(1, width // downsample), max(1, height // downsample), downsample))
    return sizes


def _tiles(
    grid: TileGrid, downsample: int, level: int, *, seed: int, stamp: bool, scene: Scene | None
) -> Iterator[RGBArray]:
    for col, row in grid.indices():
        # Full-size tiles (padded with the pattern itself) so no reader meets a short edge tile.
        x, y = col * grid.tile_width, row * grid.tile_height
        tile = _pixels(scene, x, y, grid.tile_width, grid.tile_height, downsample=downsample, seed=seed)
        yield _stamp(tile, f"L{level} {col},{row}") if stamp else tile


def _label(text: str) -> RGBArray:
    image = Image.new("RGB", (387, 463), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 366, 442), outline=(0, 0, 0), width=3)
    for i, line in enumerate(["SYNTHETIC", text, "H&E", "composite"]):
        draw.text((40, 60 + 40 * i), line, fill=(0, 0, 0))
    for i in range(30):  # a fake barcode
        draw.rectangle((40 + 10 * i, 300, 44 + 10 * i + (i * 7) % 4, 400), fill=(0, 0, 0))
    return np.asarray(image)


def _macro(width: int, height: int, label: RGBArray, seed: int, scene: Scene | None) -> RGBArray:
    macro = np.full((463, 1280, 3), 225, np.uint8)
    macro[:, :387] = label
    small = _pixels(scene, 0, 0, 64, 64, downsample=max(1, max(width, height) // 64), seed=seed)
    thumb = np.asarray(Image.fromarray(small).resize((820, 420)))
    macro[20:440, 420:1240] = thumb
    return macro


def write_synthetic_slide(
    path: str | Path,
    *,
    width: int,
    height: int,
    tile_size: int = 240,
    quality: int = 80,
    layout: Literal["svs", "tiff"] = "svs",
    ycbcr: bool = False,
    mpp: float = 0.25,
    magnification: float = 40,
    associated: bool = True,
    stamp: bool = True,
    seed: int = 0,
    min_level_size: int = 1024,
    scene: Scene | None = None,
) -> Path:
    """Write the synthetic slide to ``path`` (written under a temporary name, then renamed).

    ``layout="svs"``: Aperio layout with thumbnail, label and macro (when ``associated``);
    ``"tiff"``: a generic pyramidal TIFF with reduced-resolution pages and resolution tags.
    Tiles are JPEG at ``quality``: RGB with shared tables (Aperio's way) or YCbCr 4:2:0.
    ``scene`` replaces the default pattern (for example tissue pieces on glass,
    :class:`composite.synthetic_glass.GlassScene`); ``seed`` then only names the slide.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    sizes = level_sizes(width, height, min_size=min_level_size)
    bigtiff = width * height * 3 > 2**31
    head = f"{APERIO_VERSION}\r\n{width}x{height} [0,0 {width}x{height}] ({tile_size}x{tile_size}) JPEG/RGB Q={quality}"
    fields = f"|AppMag = {magnification:g}|MPP = {mpp:.4f}|Filename = synthetic-{seed}|ScanScope ID = SYNTH01"
    try:
        with tifffile.TiffWriter(tmp, bigtiff=bigtiff) as tw:
            for level, (lw, lh, ds) in enumerate(sizes):
                grid = TileGrid(lw, lh, tile_size, tile_size)
                tables, tiles = _encoded(_tiles(grid, ds, level, seed=seed, stamp=stamp, scene=scene), quality, ycbcr)
                desc = None
                resolution = None
                if layout == "svs":
                    desc = head + fields if level == 0 else f"{head} -> {lw}x{lh} JPEG/RGB Q={quality}"
                else:
                    resolution = (1e4 / (mpp * ds), 1e4 / (mpp * ds))
                tw.write(
                    tiles,
                    shape=(lh, lw, 3),
                    dtype=np.uint8,
                    tile=(tile_size, tile_size),
                    compression="jpeg",
                    photometric="ycbcr" if ycbcr else "rgb",
                    jpegtables=tables,
                    subsampling=(2, 2) if ycbcr else (1, 1),
                    # tifffile tags JPEG as YCbCr unless told the stream is RGB (Aperio's way)
                    compressionargs=None if ycbcr else {"outcolorspace": "RGB"},
                    description=desc,
                    metadata=None,
                    subfiletype=1 if (layout == "tiff" and level > 0) else 0,
                    resolution=resolution,
                    resolutionunit="CENTIMETER" if resolution else None,
                )
                if layout == "svs" and level == 0 and associated:
                    thumb_size = _thumb_size(width, height, sizes[-1])
                    thumb_ds = max(1, round(width / thumb_size[0]))
                    thumb = _pixels(scene, 0, 0, *thumb_size, downsample=thumb_ds, seed=seed)
                    thumb_w, thumb_h = thumb_size
                    tw.write(
                        thumb,
                        description=f"{APERIO_VERSION}\r\n{width}x{height} -> {thumb_w}x{thumb_h} -{fields}",
                        metadata=None,
                        photometric="rgb",
                        compression="jpeg",
                        compressionargs={"level": 85},
                        rowsperstrip=16,
                    )
            if layout == "svs" and associated:
                label = _label(f"seed {seed}")
                tw.write(
                    label,
                    description=f"{APERIO_VERSION}\nlabel {label.shape[1]}x{label.shape[0]}",
                    metadata=None,
                    photometric="rgb",
                    compression="lzw",
                    subfiletype=1,
                )
                macro = _macro(width, height, label, seed, scene)
                tw.write(
                    macro,
                    description=f"{APERIO_VERSION}\nmacro {macro.shape[1]}x{macro.shape[0]}",
                    metadata=None,
                    photometric="rgb",
                    compression="jpeg",
                    compressionargs={"level": 85},
                    subfiletype=9,
                )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _thumb_size(width: int, height: int, smallest: tuple[int, int, int]) -> tuple[int, int]:
    """About 1024 px on the long side, never larger than the smallest pyramid level."""
    limit = min(1024, max(smallest[0], smallest[1]) - 1)
    scale = max(width, height) / max(limit, 1)
    return max(1, round(width / scale)), max(1, round(height / scale))


def _encoded(tiles: Iterator[RGBArray], quality: int, ycbcr: bool) -> tuple[bytes, Iterator[bytes]]:
    """Encode tiles as abbreviated JPEG sharing one JPEGTables (standard tables are identical)."""
    first = next(tiles)
    tables, first_tile = codecs.split_jpeg_tables(codecs.encode_jpeg(first, quality=quality, rgb=not ycbcr))

    def rest() -> Iterator[bytes]:
        yield first_tile
        for tile in tiles:
            tile_tables, body = codecs.split_jpeg_tables(codecs.encode_jpeg(tile, quality=quality, rgb=not ycbcr))
            if tile_tables != tables:
                raise RuntimeError("JPEG encoder produced differing tables")  # programming error
            yield body

    return tables, rest()
