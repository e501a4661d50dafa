"""What the SVS and generic TIFF writers share: streaming one planned level, BigTIFF, thumbnail.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ... import codecs
from ...codecs import RGBArray
from ...model import level_thumbnail
from ...output import ConversionReport, LevelReport, atomic_output
from ...plan import ConversionPlan, LevelPlan
from ...progress import ProgressCallback
from ...pyramid import DownsampledLevel
from ...tiling import EncodedTile
from .tileorder import ArrivalOrder

# Expected output bytes per raw byte, generous on purpose (auto BigTIFF must switch early).
_SIZE_RATIO = {"jpeg": 0.5, "jpeg2000": 0.5, "lzw": 1.5, "none": 1.0}
TOO_LARGE = "too large for non-BigTIFF"  # tifffile's error when classic TIFF overflows


@dataclass
class Layout:
    """The TIFF container's own state: BigTIFF or not, and each level's tile arrival order."""

    bigtiff: bool
    # (width, height) of each level written -> the order its tiles arrived in (see tileorder.py)
    arrivals: dict[tuple[int, int], ArrivalOrder] = field(default_factory=dict)
    # RGB JPEG tiles get the Adobe colour marker, for readers that decode tile bytes themselves
    # (generic/OME-TIFF; SVS readers know Aperio's RGB, and SVS tiles stay the source's bytes)
    adobe_rgb: bool = False


def layout(plan: ConversionPlan, *, adobe_rgb: bool = False) -> Layout:
    """BigTIFF from ``plan.options.tiff`` and the plan's estimated size."""
    options = plan.options.tiff
    if options.bigtiff != "auto":
        return Layout(bigtiff=options.bigtiff == "yes", adobe_rgb=adobe_rgb)
    estimate = plan.raw_bytes * _SIZE_RATIO[plan.compression]
    return Layout(bigtiff=estimate > options.bigtiff_threshold, adobe_rgb=adobe_rgb)


def write_with_bigtiff_retry(
    plan: ConversionPlan, dst: Path, write: Callable[[Path, Layout], ConversionReport], *, adobe_rgb: bool = False
) -> ConversionReport:
    """``write(tmp, layout)`` to a temporary name renamed to ``dst`` when complete; when BigTIFF
    was left to the estimate and classic TIFF overflowed anyway, start again as BigTIFF."""
    dst = Path(dst)
    chosen = layout(plan, adobe_rgb=adobe_rgb)
    with atomic_output(dst, overwrite=plan.options.overwrite) as tmp:
        try:
            report = write(tmp, chosen)
        except ValueError as err:
            if TOO_LARGE not in str(err) or plan.options.tiff.bigtiff != "auto":
                raise
            report = write(tmp, Layout(bigtiff=True, adobe_rgb=adobe_rgb))  # the estimate was too low
    report.destination = dst
    return report


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

    # A complete tile's header (up to its scan) whose tables are the level's, and that header
    # abbreviated: re-encoded tiles of a level share one, so most are split without a parse.
    known = [b"", b""]

    def stored(tile: EncodedTile) -> bytes:
        own = tile.encoding.jpeg_tables
        data = tile.data
        if own is not None:
            return data if own == tables else codecs.merge_jpeg_tables(data, own)
        if known[0] and data.startswith(known[0]):
            return b"".join((known[1], memoryview(data)[len(known[0]) :]))
        tile_tables, body = codecs.split_jpeg_tables(data)
        if tile_tables != tables:
            return data
        scan = codecs.scan_start(data)
        if scan is not None:
            known[:] = data[:scan], body[: len(body) - (len(data) - scan)]
        return body

    def chunks() -> Iterator[bytes]:
        for tile in rest:
            data = stored(tile)
            yield codecs.with_adobe_rgb(data) if adobe_rgb and rgb else data

    codec = "JPEG/RGB" if rgb else "JPEG/YCbCr"
    return LevelChunks(kwargs, chunks(), codec, first.encoding.quality, copied)


def write_level(
    tiff: tifffile.TiffWriter,
    level: LevelPlan,
    layout: Layout,
    *,
    progress: ProgressCallback,
    describe: Callable[[LevelChunks], str] | None = None,
    **tags: Any,
) -> LevelReport:
    """Stream ``level`` into ``tiff`` as one tiled IFD.

    ``describe(chunks)`` returns the ImageDescription (it may use the codec and quality the
    first tile revealed); ``tags`` go to ``TiffWriter.write`` as they are.
    """
    grid = level.grid
    arrival = layout.arrivals[(grid.width, grid.height)] = ArrivalOrder(grid.cols)
    chunks = level_chunks(arrival.track(level.tiles(progress=progress)), level.compression, adobe_rgb=layout.adobe_rgb)
    description = describe(chunks) if describe is not None else None
    tiff.write(
        chunks.chunks,
        shape=(grid.height, grid.width, 3),
        dtype=np.uint8,
        tile=(grid.tile_height, grid.tile_width),
        description=description,
        metadata=tags.pop("metadata", None),
        **chunks.kwargs,
        **tags,
    )
    return level.report(chunks.copied[0])


def build_lower_levels(plan: ConversionPlan, progress: ProgressCallback) -> None:
    """Compute every downsampled level top-down (each spools itself), reporting progress.

    Done before the thumbnail so that it, and the later level writes, read spools instead of
    recomputing; and so a long first pass over a one-level source shows progress.
    """
    for index, level in enumerate(p.level for p in plan.levels):
        if isinstance(level, DownsampledLevel):
            rows = level.grid.rows
            for row in range(rows):
                level.read_tile(0, row)
                progress(f"level {index} (building)", row + 1, rows)


def thumbnail(plan: ConversionPlan, *, max_size: int = 1024) -> RGBArray:
    """About ``max_size`` px on the long side, smaller than the smallest level, from that level."""
    smallest = plan.levels[-1].level
    base_w, base_h = plan.slide.dimensions
    limit = max(1, min(max_size, max(smallest.dimensions) - 1))
    scale = max(base_w, base_h) / limit
    size = (max(1, math.floor(base_w / scale)), max(1, math.floor(base_h / scale)))
    return level_thumbnail(smallest, size)
