"""One image of a :class:`~composite.formats.tiffwrite.stream.TiffStream`: a tiled level or a stripped picture.

:func:`write_tiles` streams a planned level's tiles into the file in batches (in whatever order
the pipeline gives them: each tile's offset goes to its row-major slot) and returns the IFD's
tags for its size, tiles, codec and colour; :func:`write_strips` does the same for a small
image held in memory (thumbnail, label, macro), encoded here in strips. The caller adds the
description, NewSubfileType and Software, and the IFD (:meth:`TiffStream.add_image`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from ... import codecs
from ...codecs import RGBArray
from ...output import ASSOCIATED_QUALITY, LevelReport
from ...plan import LevelPlan
from ...progress import ProgressCallback
from ...tiling import EncodedTile
from .common import LevelChunks, level_chunks
from .stream import BATCH_BYTES, LONG, RATIONAL, SHORT, UNDEFINED, Tag, TiffStream

NEW_SUBFILE_TYPE, DESCRIPTION = 254, 270
_COMPRESSION = {"jpeg": 7, 33005: 33005, "lzw": 5, None: 1}  # tifffile's keyword -> TIFF code
_PHOTOMETRIC = {"rgb": 2, "ycbcr": 6}
_REFERENCE_BLACK_WHITE = (0, 1, 255, 1, 128, 1, 255, 1, 128, 1, 255, 1)  # what tifffile and libtiff write


def write_tiles(
    out: TiffStream, level: LevelPlan, *, progress: ProgressCallback
) -> tuple[LevelReport, LevelChunks, list[Tag]]:
    """Stream ``level``'s tiles into ``out``: its report, its chunks (codec and quality, for the
    description) and the IFD's tags."""
    grid = level.grid
    arrived: list[int] = []  # row-major index of each tile, in the order written

    def track(tiles: Iterator[EncodedTile]) -> Iterator[EncodedTile]:
        for tile in tiles:
            arrived.append(tile.row * grid.cols + tile.col)
            yield tile

    chunks = level_chunks(track(level.tiles(progress=progress)), level.compression)
    offsets = np.zeros(grid.tile_count, np.uint64)
    counts = np.zeros(grid.tile_count, np.uint64)
    batch: list[bytes] = []
    size = written = 0
    for data in chunks.chunks:
        batch.append(data)
        size += len(data)
        if size >= BATCH_BYTES:
            written = _flush(out, batch, arrived[written : written + len(batch)], offsets, counts, written)
            batch, size = [], 0
    written = _flush(out, batch, arrived[written:], offsets, counts, written)
    if written != grid.tile_count or np.count_nonzero(counts) != grid.tile_count:
        raise ValueError(f"level {level.index}: {written} tiles written for {grid.tile_count} places")
    kwargs = chunks.kwargs
    tags: list[Tag] = [
        *_image_tags(grid.width, grid.height, kwargs["compression"], kwargs["photometric"], kwargs.get("subsampling")),
        (322, LONG, [grid.tile_width]),
        (323, LONG, [grid.tile_height]),
        (324, out.offset_type, offsets),
        (325, out.offset_type, counts),
    ]
    if "jpegtables" in kwargs:
        tags.append((347, UNDEFINED, kwargs["jpegtables"]))
    return level.report(chunks.copied[0]), chunks, tags


def _flush(
    out: TiffStream,
    batch: list[bytes],
    indices: list[int],
    offsets: NDArray[np.uint64],
    counts: NDArray[np.uint64],
    written: int,
) -> int:
    if batch:
        places = np.array(indices, np.intp)
        offsets[places] = out.append(batch)
        counts[places] = [len(data) for data in batch]
    return written + len(batch)


def write_strips(out: TiffStream, pixels: RGBArray, *, compression: str, rows: int | None = None) -> list[Tag]:
    """Write ``pixels`` in strips of ``rows`` rows (default: about 64 KB each), JPEG (YCbCr 4:2:0,
    quality :data:`ASSOCIATED_QUALITY`) or LZW (RGB, no predictor); the IFD's tags."""
    height, width = pixels.shape[:2]
    if rows is None:
        rows = max(16, 65536 // (3 * width) // 16 * 16)
    strips = [np.ascontiguousarray(pixels[y : y + rows]) for y in range(0, height, rows)]
    if compression == "jpeg":
        data = [codecs.encode_jpeg(strip, quality=ASSOCIATED_QUALITY) for strip in strips]
        tags = _image_tags(width, height, "jpeg", "ycbcr", (2, 2))
    else:
        data = [codecs.encode_lzw(strip.tobytes()) for strip in strips]
        tags = _image_tags(width, height, "lzw", "rgb", None)
    return [
        *tags,
        (273, out.offset_type, out.append(data)),
        (278, LONG, [rows]),
        (279, out.offset_type, [len(strip) for strip in data]),
    ]


def _image_tags(
    width: int, height: int, compression: str | int | None, photometric: str, subsampling: tuple[int, int] | None
) -> list[Tag]:
    """Size, samples, codec and colour: the tags every image of ours has."""
    tags: list[Tag] = [
        (256, LONG, [width]),
        (257, LONG, [height]),
        (258, SHORT, [8, 8, 8]),
        (259, SHORT, [_COMPRESSION[compression]]),
        (262, SHORT, [_PHOTOMETRIC[photometric]]),
        (277, SHORT, [3]),
        (284, SHORT, [1]),
    ]
    if photometric == "ycbcr" and subsampling is not None:
        tags += [(530, SHORT, list(subsampling)), (532, RATIONAL, _REFERENCE_BLACK_WHITE)]
    return tags
