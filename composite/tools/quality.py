"""Compression quality report: what JPEG and JPEG 2000 at quality 30/50/70 do to a slide's tiles.

A deterministic sample of full level-0 tiles (``seed``; tiles showing tissue are preferred over
blank glass, because blank glass compresses to nothing and flatters every codec) is encoded the
way our writers encode tiles (:func:`composite.tiling.encode_tile`: JPEG as Aperio RGB or YCbCr
4:2:0, JPEG 2000 as raw codestreams), decoded again with :mod:`composite.codecs`, and measured:
compression factor = raw RGB bytes / encoded bytes, RMS error = root of the mean squared
difference over every sample. Aperio's published figures for its slides stand beside each
setting, so a lab can choose a setting on its own slides.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .. import codecs
from ..codecs import RGBArray
from ..errors import LimitError
from ..model import Level, Slide
from ..progress import ProgressCallback, no_progress
from ..tiling import encode_tile

QUALITIES = (30, 50, 70)
# Aperio's published (compression factor, RMS error) for its slides, per codec and quality
APERIO = {
    "jpeg": {30: (21.0, 3.4), 50: (17.0, 2.7), 70: (13.0, 2.2)},
    "jpeg2000": {30: (55.0, 3.8), 50: (42.0, 3.2), 70: (25.0, 2.6)},
}
# (name, compression, rgb): JPEG as the SVS writer stores it by default, YCbCr as --ycbcr does
SETTINGS = (("jpeg-rgb", "jpeg", True), ("jpeg-ycbcr", "jpeg", False), ("jpeg2000", "jpeg2000", True))
TISSUE_DARK = 220  # a sample below this in any channel is not bright glass
TISSUE_FRACTION = 0.1
_CANDIDATES_PER_TILE = 20


@dataclass(frozen=True)
class Result:
    codec: str
    quality: int
    factor: float
    rms: float
    aperio_factor: float
    aperio_rms: float


@dataclass
class QualityReport:
    path: str
    tile_width: int
    tile_height: int
    seed: int
    tiles: list[tuple[int, int]]
    tissue_tiles: int
    stored_compression: str | None
    stored_factor: float | None
    results: list[Result] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["tiles"] = [list(t) for t in self.tiles]
        return data


def is_tissue(tile: RGBArray) -> bool:
    return float((tile.min(axis=2) < TISSUE_DARK).mean()) >= TISSUE_FRACTION


def sample_tiles(level: Level, count: int, *, seed: int) -> tuple[list[tuple[int, int]], int]:
    """``count`` full tiles (clipped ones only when the level is smaller than a tile) in a seeded
    random order, tissue first: (tiles, how many show tissue).

    Looks at no more than ``20 * count`` tiles, so a huge slide is not read whole.
    """
    grid = level.grid
    cols = grid.width // grid.tile_width
    rows = grid.height // grid.tile_height
    if cols == 0 or rows == 0:  # a level smaller than one tile: its one (clipped) tile
        cols, rows = grid.cols, grid.rows
    total = cols * rows
    order = random.Random(seed).sample(range(total), min(total, count * _CANDIDATES_PER_TILE))
    tissue: list[tuple[int, int]] = []
    other: list[tuple[int, int]] = []
    for index in order:
        col, row = index % cols, index // cols
        (tissue if is_tissue(level.read_tile(col, row)) else other).append((col, row))
        if len(tissue) >= count:
            break
    chosen = (tissue + other)[:count]
    return chosen, min(len(tissue), count)


def _decode(data: bytes, compression: str, rgb: bool) -> RGBArray:
    if compression == "jpeg":
        return codecs.decode_jpeg(data, rgb=rgb)
    return codecs.decode_jpeg2000(data)


def measure(tiles: list[RGBArray], *, compression: str, quality: int, rgb: bool) -> tuple[float, float]:
    """(compression factor, RMS error) of encoding ``tiles`` and decoding them again."""
    raw = encoded = 0
    squared = 0.0
    for tile in tiles:
        data = encode_tile(tile, compression=compression, quality=quality, rgb=rgb)
        decoded = _decode(data, compression, rgb)
        raw += tile.size
        encoded += len(data)
        squared += float(np.square(decoded.astype(np.float64) - tile).sum())
    return raw / encoded, math.sqrt(squared / raw)


def quality_report(
    slide: Slide, *, sample: int = 32, seed: int = 0, progress: ProgressCallback = no_progress
) -> QualityReport:
    """Measure every setting of :data:`SETTINGS` x :data:`QUALITIES` on a sample of level-0 tiles."""
    if sample < 1:
        raise LimitError(f"{slide.path}: the sample needs at least one tile, got {sample}")
    level = slide.levels[0]
    chosen, tissue = sample_tiles(level, sample, seed=seed)
    tiles = [level.read_tile(col, row) for col, row in chosen]
    stored_factor = None
    encoding = level.encoding
    if encoding is not None:
        stored = [level.read_encoded_tile(col, row) for col, row in chosen]
        if all(data is not None for data in stored):
            # stored tiles are full-size even where the image ends
            raw = level.grid.tile_width * level.grid.tile_height * 3 * len(stored)
            stored_factor = raw / sum(len(d or b"") for d in stored)
    report = QualityReport(
        path=str(slide.path),
        tile_width=level.grid.tile_width,
        tile_height=level.grid.tile_height,
        seed=seed,
        tiles=chosen,
        tissue_tiles=tissue,
        stored_compression=encoding.compression if encoding else None,
        stored_factor=stored_factor,
    )
    steps = len(SETTINGS) * len(QUALITIES)
    for name, compression, rgb in SETTINGS:
        for quality in QUALITIES:
            factor, rms = measure(tiles, compression=compression, quality=quality, rgb=rgb)
            aperio_factor, aperio_rms = APERIO[compression][quality]
            report.results.append(Result(name, quality, factor, rms, aperio_factor, aperio_rms))
            progress("settings", len(report.results), steps)
    return report
