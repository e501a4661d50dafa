"""The streaming tile pipeline every writer uses: copy stored tiles or re-tile and encode them.

:func:`encoded_tiles` turns one source :class:`~composite.model.Level` into the encoded tiles of a
target :class:`~composite.geometry.TileGrid` of the same size, row-major:

- **copy**: when the grids coincide and the source codec is the target codec, the stored bytes
  are passed through untouched (:func:`is_copyable`). A tile that cannot be copied safely (a
  short JPEG edge tile, which OpenSlide rejects; a JP2-boxed J2K; a missing tile) is re-encoded
  on its own, so the level stays readable.
- **re-encode**: otherwise (:mod:`composite.retile`) each source tile row of a stripe is decoded
  once by one task on a thread pool (imagecodecs releases the GIL), straight into the target
  tiles it falls in, a row or two ahead of the tasks that encode a target tile row on the same
  pool. The calling thread only submits and
  yields, so every core decodes or encodes, and the interpreter's work is per row, not per
  tile. Edge tiles are
  full-size, padded by repeating the last row/column (invisible, and it avoids JPEG ringing) or,
  for formats whose readers may show the padding (CWS), with the slide's glass colour.

Re-encoded tiles come in **column stripes** (:func:`stripes`): top to bottom in a stripe about
``STRIPE_PX`` wide, row-major inside it, then the next stripe. A source tile row that straddles
two target rows must stay decoded until the second is done; across the whole level that is
width x tile height x 3 bytes (72 MB on a 100,000 px slide), in a stripe it is a constant few MB,
so memory does not grow with the slide. Stripe edges fall on multiples of both tile widths where
such a multiple is near ``STRIPE_PX`` (240 and 256: 3,840 px; 752 and 256: 12,032 px), so no
source tile is decoded twice; otherwise the source column on a stripe edge is decoded once per stripe. Consumers place
tiles by their (col, row), never by arrival order.

Memory is bounded by one stripe's straddling source tiles plus a few tiles in flight.
:class:`BandCache` (decoded tiles of a band moving down a level) serves the pyramid's downsampler.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from . import codecs
from .codecs import RGBArray, TileEncoding
from .geometry import Box, TileGrid
from .model import WHITE, Level, paste_tiles
from .progress import ProgressCallback, no_progress
from .retile import Fill as Fill  # the colour of edge tiles' padding (plan, writers)
from .retile import reencoded

_J2K_START = b"\xff\x4f\xff\x51"  # SOC then SIZ: a raw codestream, not a JP2 box file
COPYABLE = ("jpeg", "jpeg2000")


class EncodedTile(NamedTuple):
    """Tile (col, row) of a target grid, encoded; ``encoding.jpeg_tables`` set => abbreviated JPEG.

    ``copied`` is True when ``data`` are the source's stored bytes. A named tuple: made once per
    tile, it costs half a frozen dataclass (1 us of a byte copy's 5 us per tile).
    """

    col: int
    row: int
    data: bytes
    encoding: TileEncoding
    copied: bool = False


def default_threads(workers: int | None) -> int:
    return max(1, workers if workers is not None else (os.cpu_count() or 1))


def output_encoding(compression: str, *, quality: int, rgb: bool) -> TileEncoding:
    """The encoding :func:`encode_tile` produces (complete JPEG streams, raw J2K codestreams)."""
    if compression == "jpeg":
        return TileEncoding("jpeg", rgb=rgb, quality=quality)
    if compression == "jpeg2000":
        return TileEncoding("jpeg2000", rgb=True, quality=quality)  # RGB samples: TIFF code 33005
    if compression == "lzw":
        return TileEncoding("lzw", rgb=True)
    if compression == "none":
        return TileEncoding("none", rgb=True)
    raise ValueError(f"cannot encode tiles as {compression!r}")


def encode_tile(pixels: RGBArray, *, compression: str, quality: int, rgb: bool = False) -> bytes:
    """Encode one full-size RGB tile: a complete JPEG, a raw J2K codestream, LZW or raw bytes.

    LZW and ``none`` hold contiguous RGB samples without a predictor.
    """
    pixels = np.ascontiguousarray(pixels)
    if compression == "jpeg":
        return codecs.encode_jpeg(pixels, quality=quality, rgb=rgb)
    if compression == "jpeg2000":
        return codecs.encode_jpeg2000(pixels, quality=quality)
    if compression == "lzw":
        return codecs.encode_lzw(pixels.tobytes())
    if compression == "none":
        return pixels.tobytes()
    raise ValueError(f"cannot encode tiles as {compression!r}")


def pad_tile(pixels: RGBArray, width: int, height: int, *, fill: Fill = None) -> RGBArray:
    """``pixels`` grown to ``width`` x ``height``: by repeating its last column and row, or with
    the colour ``fill``."""
    pad_h = height - pixels.shape[0]
    pad_w = width - pixels.shape[1]
    if pad_h <= 0 and pad_w <= 0:
        return pixels
    if fill is not None:
        padded: RGBArray = np.empty((max(height, pixels.shape[0]), max(width, pixels.shape[1]), 3), np.uint8)
        padded[:] = fill
        padded[: pixels.shape[0], : pixels.shape[1]] = pixels
        return padded
    padded = np.pad(pixels, ((0, max(pad_h, 0)), (0, max(pad_w, 0)), (0, 0)), mode="edge")
    return padded


def is_copyable(source: Level, target: TileGrid, compression: str) -> bool:
    """True when ``source``'s stored tiles can be copied as the tiles of ``target``.

    Needs the same grid (size and tile size), the same codec, and a codec whose bytes mean the same
    in the target container: JPEG, or J2K with RGB samples (Aperio 33005).
    """
    encoding = source.encoding
    if encoding is None or compression not in COPYABLE or encoding.compression != compression:
        return False
    if compression == "jpeg2000" and not encoding.rgb:
        return False  # 33003 YCbCr J2K: a re-encoded fallback tile could not match it
    return source.grid == target


class BandCache:
    """Decoded tiles of a level, kept only while a row-major traversal may still need them.

    :meth:`region` may be called with boxes that move down the level (never up by more than
    the box in use): tiles entirely above the newest box's top are dropped, so memory holds the
    source tile rows the current band overlaps, and no tile is decoded twice.
    """

    def __init__(self, level: Level, *, pool: ThreadPoolExecutor | None = None) -> None:
        self.level = level
        self._pool = pool
        self._tiles: dict[tuple[int, int], RGBArray] = {}
        self.decoded = 0  # tiles decoded so far (tests check nothing is decoded twice)

    def ensure(self, box: Box) -> None:
        """Decode (in parallel when a pool was given) every tile overlapping ``box`` not yet held."""
        grid = self.level.grid
        top = box.y
        for key in [k for k in self._tiles if grid.tile_box(*k).bottom <= top]:
            del self._tiles[key]
        missing = [k for k in grid.tiles_overlapping(box) if k not in self._tiles]
        if not missing:
            return
        if self._pool is not None and len(missing) > 1:
            tiles = list(self._pool.map(lambda k: self.level.read_tile(*k), missing))
        else:
            tiles = [self.level.read_tile(*k) for k in missing]
        self._tiles.update(zip(missing, tiles, strict=True))
        self.decoded += len(missing)

    def region(self, x: int, y: int, width: int, height: int) -> RGBArray:
        """Pixels of the box, from cached tiles (decoding what is missing); white outside."""
        want = Box(x, y, width, height)
        self.ensure(want)
        out = np.full((height, width, 3), WHITE, np.uint8)
        grid = self.level.grid
        return paste_tiles(out, want, grid, lambda col, row: self._tiles[col, row], grid.tiles_overlapping(want))


def j2k_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a raw J2K codestream's SIZ marker, None when not a raw codestream."""
    if not data.startswith(_J2K_START) or len(data) < 24:
        return None
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", data[8:24])
    return xsiz - xosiz, ysiz - yosiz


def _copy_header(data: bytes, encoding: TileEncoding, grid: TileGrid) -> bytes | None:
    """Whether a stored tile is safe to copy (full tile size, three components, raw J2K): None
    when it is not, else the bytes that decided it: a JPEG's header
    up to the end of its SOS segment (b"" for other codecs). Another tile starting with the same
    header gets the same answer (the checks read nothing after it)."""
    if encoding.compression == "jpeg":
        try:
            info = codecs.jpeg_info(data)
            scan = codecs.scan_start(data)
        except (ValueError, struct.error, IndexError):
            return None
        if scan is None:
            return None  # no scan: damaged; decoding it reports the tile
        ok = info.components == 3 and (info.width, info.height) == (grid.tile_width, grid.tile_height)
        return data[:scan] if ok else None
    return b"" if j2k_size(data) == (grid.tile_width, grid.tile_height) else None


def encoded_tiles(
    source: Level,
    target: TileGrid,
    *,
    compression: str,
    quality: int,
    rgb: bool = False,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    stage: str = "",
    stripe_px: int | None = None,
    fill: Fill = None,
) -> Iterator[EncodedTile]:
    """Every tile of ``target`` (same size as ``source``), encoded or copied, each exactly once.

    Copied levels come row-major; re-encoded ones in the column stripes of :func:`stripes`
    (``stripe_px`` wide, default ``STRIPE_PX``). ``rgb`` chooses RGB JPEG (Aperio's way, Adobe
    marker) over YCbCr 4:2:0 for re-encoded tiles; copied tiles keep the source's encoding,
    which their :class:`EncodedTile` carries. ``fill`` pads re-encoded edge tiles with a colour
    (CWS: the glass) instead of repeating the last row/column; copied tiles keep their padding.
    """
    if (target.width, target.height) != source.dimensions:
        raise ValueError(f"target grid {target.width}x{target.height} differs from level {source.dimensions}")
    report = progress or no_progress
    count = default_threads(workers)
    pool = ThreadPoolExecutor(count, thread_name_prefix="composite-tiles")
    try:
        if is_copyable(source, target, compression):
            tiles = _copied(source, target, quality=quality, pool=pool, fill=fill)
        else:
            columns = stripes(source.grid, target, stripe_px=stripe_px or STRIPE_PX)
            tiles = _reencoded(
                source,
                target,
                columns,
                compression=compression,
                quality=quality,
                rgb=rgb,
                pool=pool,
                workers=count,
                fill=fill,
            )
        total = target.tile_count
        for done, tile in enumerate(tiles, 1):
            yield tile
            report(stage, done, total)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _copied(
    source: Level, target: TileGrid, *, quality: int, pool: ThreadPoolExecutor, fill: Fill
) -> Iterator[EncodedTile]:
    checked = _Checked()
    encoding = source.encoding
    assert encoding is not None
    for col, row in target.indices():
        data = source.read_encoded_tile(col, row)
        if data is not None and checked.header and data.startswith(checked.header):
            yield EncodedTile(col, row, data, encoding, True)  # the last header found safe: no parse
        else:
            yield _copied_tile(source, target, col, row, data, quality=quality, fill=fill, checked=checked)


class _Checked:
    """The last JPEG header found safe to copy, carried from tile to tile of a level: a tile that
    starts with it needs no parse (the checks read nothing after the header)."""

    header = b""


def _copied_tile(
    source: Level,
    target: TileGrid,
    col: int,
    row: int,
    data: bytes | None,
    *,
    quality: int,
    fill: Fill,
    checked: _Checked | None = None,
) -> EncodedTile:
    """Tile (col, row) of a copyable level from its stored bytes ``data``: those bytes, or
    re-encoded alone when they are unsafe (``checked`` then remembers a safe header)."""
    encoding = source.encoding
    assert encoding is not None
    if data is not None:
        header = _copy_header(data, encoding, target)
        if header is not None:
            if checked is not None:
                checked.header = header
            return EncodedTile(col, row, data, encoding, copied=True)
    fallback = output_encoding(encoding.compression, quality=quality, rgb=encoding.rgb)
    pixels = pad_tile(source.read_tile(col, row), target.tile_width, target.tile_height, fill=fill)
    data = encode_tile(pixels, compression=fallback.compression, quality=quality, rgb=fallback.rgb)
    return EncodedTile(col, row, data, fallback)


def encoded_tile(
    source: Level, target: TileGrid, col: int, row: int, *, compression: str, quality: int, rgb: bool, fill: Fill = None
) -> EncodedTile:
    """Tile (col, row) of ``target`` on its own: the tile :func:`encoded_tiles` gives for it, byte
    for byte (copied, or the same pixels padded and encoded the same way), without the pipeline.
    For serving one tile at a time; a whole level is much faster through :func:`encoded_tiles`."""
    if is_copyable(source, target, compression):
        data = source.read_encoded_tile(col, row)
        return _copied_tile(source, target, col, row, data, quality=quality, fill=fill)
    box = target.tile_box(col, row)
    pixels = pad_tile(
        source.read_region(box.x, box.y, box.width, box.height), target.tile_width, target.tile_height, fill=fill
    )
    encoding = output_encoding(compression, quality=quality, rgb=rgb)
    data = encode_tile(pixels, compression=compression, quality=quality, rgb=encoding.rgb)
    return EncodedTile(col, row, data, encoding)


# 4,096 since the row-per-task pipeline (composite.retile) holds whole bands and rows of a stripe:
# 8,192 px stripes held 25 MB more at the peak, and 40,000 px slides no longer matched 4,000 px ones.
STRIPE_PX = 4096


def stripes(source: TileGrid, target: TileGrid, *, stripe_px: int = STRIPE_PX) -> list[range]:
    """The target columns of each stripe, left to right: about ``stripe_px`` wide, on a common
    multiple of both tile widths when one is at most three times that (no source tile then spans
    two stripes)."""
    period = math.lcm(source.tile_width, target.tile_width)
    width = period * max(1, stripe_px // period) if period <= 3 * stripe_px else stripe_px
    step = max(1, width // target.tile_width)
    return [range(col, min(col + step, target.cols)) for col in range(0, target.cols, step)]


def _reencoded(
    source: Level,
    target: TileGrid,
    stripe_columns: list[range],
    *,
    compression: str,
    quality: int,
    rgb: bool,
    pool: ThreadPoolExecutor,
    workers: int,
    fill: Fill,
) -> Iterator[EncodedTile]:
    encoding = output_encoding(compression, quality=quality, rgb=rgb)

    def encode(pixels: RGBArray, col: int, row: int) -> EncodedTile:
        data = encode_tile(pixels, compression=compression, quality=quality, rgb=encoding.rgb)
        return EncodedTile(col, row, data, encoding)

    return reencoded(source, target, stripe_columns, encode=encode, pool=pool, workers=workers, fill=fill)
