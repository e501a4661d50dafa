"""What the SVS and generic TIFF writers share: the plan, streaming one level, BigTIFF, thumbnail.

A level is written by handing tifffile an iterator of already-encoded tile bytes (it writes each
as it arrives, so memory stays bounded); tifffile never encodes pyramid tiles itself. JPEG
levels get one JPEGTables from the first tile: tiles with the same tables are stored
abbreviated, a tile with other tables is stored as a complete JPEG whose own tables override the
shared ones (libjpeg semantics; OpenSlide, libtiff and tifffile decode it), so copied tiles are
never decoded just to unify their tables. Photometric follows the tiles' colour space (RGB for
Aperio/Adobe-transform-0 JPEG, YCbCr with the stream's subsampling otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ... import codecs
from ...codecs import RGBArray
from ...errors import UnsupportedFormatError
from ...geometry import TileGrid, choose_tile_size
from ...model import Level, Slide, level_thumbnail
from ...output import LevelReport, Method, WriteOptions, default_quality
from ...progress import ProgressCallback
from ...pyramid import DownsampledLevel, pyramid_levels
from ...tiling import EncodedTile, encoded_tiles, is_copyable
from .tileorder import ArrivalOrder

BIGTIFF_THRESHOLD = 2 * 2**30  # estimated bytes: half of classic TIFF's 4 GiB, as a margin
# Expected output bytes per raw byte, generous on purpose (auto BigTIFF must switch early).
_SIZE_RATIO = {"jpeg": 0.5, "jpeg2000": 0.5, "lzw": 1.5, "none": 1.0}


@dataclass
class Plan:
    """The decisions made once for a whole conversion."""

    tile: tuple[int, int]
    compression: str
    quality: int | None  # None: the default per level (default_quality)
    rgb: bool
    bigtiff: bool
    levels: list[Level]
    grids: list[TileGrid]
    workers: int | None
    # (width, height) of each level written -> the order its tiles arrived in (see tileorder.py)
    arrivals: dict[tuple[int, int], ArrivalOrder] = field(default_factory=dict)
    # RGB JPEG tiles get the Adobe colour marker, for readers that decode tile bytes themselves
    # (generic/OME-TIFF; SVS readers know Aperio's RGB, and SVS tiles stay the source's bytes)
    adobe_rgb: bool = False


def make_plan(slide: Slide, options: WriteOptions, *, default_tile: int, spool_dir: Path) -> Plan:
    """Tile size, codec, quality, BigTIFF and levels for ``slide`` under ``options``."""
    tile = _tile_size(slide, options, default_tile)
    compression = options.compression or _source_codec(slide) or "jpeg"
    extra = options.extra
    levels = pyramid_levels(
        slide,
        factor=int(extra.get("pyramid_factor", 4)),
        min_size=int(extra.get("min_level_size", 1024)),
        tile_size=tile,
        workers=options.workers,
        spool_dir=spool_dir,
    )
    grids = [TileGrid(level.width, level.height, *tile) for level in levels]
    estimate = sum(g.cols * g.rows * g.tile_width * g.tile_height * 3 for g in grids) * _SIZE_RATIO[compression]
    return Plan(
        tile=tile,
        compression=compression,
        quality=options.quality,
        rgb=not bool(extra.get("ycbcr", False)),
        bigtiff=_bigtiff(extra, estimate),
        levels=levels,
        grids=grids,
        workers=options.workers,
    )


def _tile_size(slide: Slide, options: WriteOptions, default: int) -> tuple[int, int]:
    grid = slide.levels[0].grid
    try:
        return choose_tile_size(
            (grid.tile_width, grid.tile_height), options.tile_size, default=(default, default), multiple=16
        )
    except ValueError as err:
        width, height = options.tile_size or (0, 0)
        raise UnsupportedFormatError(f"tile size {width}x{height} cannot be written to TIFF ({err})") from None


def _source_codec(slide: Slide) -> str | None:
    """The level-0 codec when its tiles could be copied into TIFF, else None."""
    encoding = slide.levels[0].encoding
    if encoding is None:
        return None
    if encoding.compression == "jpeg" or (encoding.compression == "jpeg2000" and encoding.rgb):
        return encoding.compression
    return None


def _bigtiff(extra: Any, estimate: float) -> bool:
    mode = extra.get("bigtiff", "auto")
    if mode in (True, "yes"):
        return True
    if mode in (False, "no"):
        return False
    if mode != "auto":
        raise UnsupportedFormatError(f"bigtiff must be auto, yes or no, got {mode!r}")
    return estimate > float(extra.get("bigtiff_threshold", BIGTIFF_THRESHOLD))


def level_method(level: Level, grid: TileGrid, compression: str) -> Method:
    if is_copyable(level, grid, compression):
        return "copy"
    return "downsample" if isinstance(level, DownsampledLevel) else "reencode"


@dataclass
class LevelChunks:
    """tifffile keywords for one level and the iterator of its tile bytes."""

    kwargs: dict[str, Any]
    chunks: Iterator[bytes]
    codec: str  # for descriptions: "JPEG/RGB", "JPEG/YCbCr", "J2K/KAK", "LZW", "RAW"
    quality: int | None
    copied: list[int]  # one-element counter of copied tiles, filled while chunks are consumed


def level_chunks(tiles: Iterator[EncodedTile], compression: str, *, adobe_rgb: bool = False) -> LevelChunks:
    """Peek at the first tile to fix the level's tags, then stream every tile's bytes
    (RGB JPEG ones with the Adobe colour marker when ``adobe_rgb``)."""
    first = next(tiles)
    copied = [0]

    def counted(stream: Iterator[EncodedTile]) -> Iterator[EncodedTile]:
        for tile in stream:
            copied[0] += tile.copied
            yield tile

    rest = counted(_chain(first, tiles))
    quality = first.encoding.quality
    if compression == "jpeg":
        return _jpeg_chunks(first, rest, copied, adobe_rgb=adobe_rgb)
    if compression == "jpeg2000":
        kwargs = {"compression": 33005, "photometric": "rgb"}
        return LevelChunks(kwargs, (t.data for t in rest), "J2K/KAK", quality, copied)
    if compression == "lzw":
        return LevelChunks({"compression": "lzw", "photometric": "rgb"}, (t.data for t in rest), "LZW", None, copied)
    return LevelChunks({"compression": None, "photometric": "rgb"}, (t.data for t in rest), "RAW", None, copied)


def _chain(first: EncodedTile, rest: Iterator[EncodedTile]) -> Iterator[EncodedTile]:
    yield first
    yield from rest


def _jpeg_chunks(first: EncodedTile, rest: Iterator[EncodedTile], copied: list[int], *, adobe_rgb: bool) -> LevelChunks:
    if first.encoding.jpeg_tables is not None:
        tables = first.encoding.jpeg_tables
    else:
        tables, _ = codecs.split_jpeg_tables(first.data)
    rgb = first.encoding.rgb
    kwargs: dict[str, Any] = {"compression": "jpeg", "jpegtables": tables}
    if rgb:
        # tifffile tags JPEG as YCbCr unless told the stream is RGB (Aperio's way, docs/formats.md §3.2)
        kwargs.update(photometric="rgb", subsampling=(1, 1), compressionargs={"outcolorspace": "RGB"})
    else:
        kwargs.update(photometric="ycbcr", subsampling=codecs.jpeg_info(first.data).subsampling)

    def stored(tile: EncodedTile) -> bytes:
        own = tile.encoding.jpeg_tables
        if own is not None:
            return tile.data if own == tables else codecs.merge_jpeg_tables(tile.data, own)
        tile_tables, body = codecs.split_jpeg_tables(tile.data)
        return body if tile_tables == tables else tile.data

    def chunks() -> Iterator[bytes]:
        for tile in rest:
            data = stored(tile)
            yield codecs.with_adobe_rgb(data) if adobe_rgb and rgb else data

    codec = "JPEG/RGB" if rgb else "JPEG/YCbCr"
    return LevelChunks(kwargs, chunks(), codec, first.encoding.quality, copied)


def write_level(
    tw: tifffile.TiffWriter,
    plan: Plan,
    index: int,
    *,
    progress: ProgressCallback,
    describe: Any = None,
    **tags: Any,
) -> LevelReport:
    """Stream level ``index`` of the plan into ``tw`` as one tiled IFD.

    ``describe(chunks)`` returns the ImageDescription (it may use the codec and quality the
    first tile revealed); ``tags`` go to ``TiffWriter.write`` as they are.
    """
    level, grid = plan.levels[index], plan.grids[index]
    arrival = plan.arrivals[(level.width, level.height)] = ArrivalOrder(grid.cols)
    tiles = encoded_tiles(
        level,
        grid,
        compression=plan.compression,
        quality=default_quality(plan.quality, index),
        rgb=plan.rgb,
        workers=plan.workers,
        progress=progress,
        stage=f"level {index}",
    )
    chunks = level_chunks(arrival.track(tiles), plan.compression, adobe_rgb=plan.adobe_rgb)
    description = describe(chunks) if describe is not None else None
    tw.write(
        chunks.chunks,
        shape=(level.height, level.width, 3),
        dtype=np.uint8,
        tile=(grid.tile_height, grid.tile_width),
        description=description,
        metadata=tags.pop("metadata", None),
        **chunks.kwargs,
        **tags,
    )
    method = level_method(level, grid, plan.compression)
    return LevelReport(
        index=index,
        width=level.width,
        height=level.height,
        downsample=level.downsample,
        method=method,
        tile_width=grid.tile_width,
        tile_height=grid.tile_height,
        compression=plan.compression,
        copied_tiles=chunks.copied[0],
    )


def build_lower_levels(plan: Plan, progress: ProgressCallback) -> None:
    """Compute every downsampled level top-down (each spools itself), reporting progress.

    Done before the thumbnail so that it, and the later level writes, read spools instead of
    recomputing; and so a long first pass over a one-level source shows progress.
    """
    for index, level in enumerate(plan.levels):
        if isinstance(level, DownsampledLevel):
            rows = level.grid.rows
            for row in range(rows):
                level.read_tile(0, row)
                progress(f"level {index} (building)", row + 1, rows)


def thumbnail(plan: Plan, *, max_size: int = 1024) -> RGBArray:
    """About ``max_size`` px on the long side, smaller than the smallest level, from that level."""
    smallest = plan.levels[-1]
    base_w, base_h = plan.levels[0].dimensions
    limit = max(1, min(max_size, max(smallest.dimensions) - 1))
    scale = max(base_w, base_h) / limit
    size = (max(1, math.floor(base_w / scale)), max(1, math.floor(base_h / scale)))
    return level_thumbnail(smallest, size)
