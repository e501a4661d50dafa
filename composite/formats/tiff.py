"""Reader for Aperio SVS and generic (pyramidal) TIFF, through tifffile.

Levels are tifffile's: the SVS ``Baseline`` series with its main-chain pyramid pages, or the
first series of a generic TIFF with reduced-resolution pages or SubIFD levels. Tile bytes are
read with ``os.pread`` at the offsets tifffile parsed (thread-safe, no pixel data is touched while
opening). JPEG tiles are decoded here with the colour space the Photometric tag says (Aperio RGB
vs YCbCr, docs/formats.md §3.2); other codecs go through tifffile's own ``TiffPage.decode``.

Associated images: SVS ``thumbnail``, ``label`` and ``macro`` (tifffile's series of those names).
Not supported: planar-separate (PlanarConfiguration 2) multi-sample images, images with more than
one sample per pixel beyond RGB(A), volumetric (ImageDepth) tiles, and non-8/16-bit samples.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from tifffile.tifffile import svs_description_metadata

from .. import codecs
from ..codecs import Compression, RGBArray, TileEncoding
from ..errors import CompositeError, FormatError, LimitError, TileReadError, UnsupportedFormatError
from ..geometry import TileGrid
from ..limits import MAX_SMALL_FILE, check_declared, check_decode, is_regular, open_regular
from ..model import AssociatedImage, Level, Slide
from ..tiling import j2k_size
from .tiffifd import check_ifds

NAME = "tiff"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
APERIO_ASSOCIATED = {"Thumbnail": "thumbnail", "Label": "label", "Macro": "macro"}
_COMPRESSIONS: dict[int, Compression] = {
    1: "none",
    5: "lzw",
    7: "jpeg",
    8: "deflate",
    32946: "deflate",
    33003: "jpeg2000",
    33005: "jpeg2000",
    34712: "jpeg2000",
    50000: "other",  # zstd
    50001: "other",  # webp
}
_TIFF_TAG_PROPERTIES = ("ImageDescription", "Make", "Model", "Software", "DateTime", "Artist", "Copyright")


def sniff(path: Path) -> bool:
    if not is_regular(path):
        return False
    fd = open_regular(path, error=UnsupportedFormatError)
    try:
        return os.read(fd, 4) in TIFF_MAGICS
    finally:
        os.close(fd)


class TiffTileReader:
    """Tiles (or strips, as full-width tiles) of one TIFF page."""

    decodes_into = True  # read_tile(col, row, out=buffer): JPEG tiles decoded into the buffer

    def __init__(self, fd: int, page: tifffile.TiffPage, path: Path) -> None:
        self._fd = fd
        self._file_size = os.fstat(fd).st_size
        self._page = page
        self._path = path
        # tifffile keeps these as tuples of Python ints, 36 bytes a tile (10 MB for a 100k slide's
        # level 0): hold them as arrays and hand tifffile the same arrays, so the tuples are freed.
        self._offsets = np.asarray(page.dataoffsets, np.uint64)
        self._counts = np.asarray(page.databytecounts, np.uint64)
        page.dataoffsets, page.databytecounts = self._offsets, self._counts  # type: ignore[assignment]
        for name, values in (("Offsets", self._offsets), ("ByteCounts", self._counts)):
            tag = page.tags.get(("Tile" if page.is_tiled else "Strip") + name)
            if tag is not None:
                tag.value = values
        self._cols = -(-page.imagewidth // page.tilewidth) if page.is_tiled else 1
        grid = _grid(page)
        # The size each stored JPEG must declare: a tile's, or a strip's (the last one may be shorter).
        self._size = (grid.tile_width, grid.tile_height)
        self._exact = bool(page.is_tiled)
        self._rgb = page.photometric == tifffile.PHOTOMETRIC.RGB
        compression = _COMPRESSIONS.get(int(page.compression), "other")
        if int(page.compression) == 33003:
            self._rgb = False
        elif int(page.compression) == 33005:
            self._rgb = True
        self._encoding = TileEncoding(compression, rgb=self._rgb, jpeg_tables=page.jpegtables)

    @property
    def encoding(self) -> TileEncoding:
        return self._encoding

    def _index(self, col: int, row: int) -> int:
        return row * self._cols + col

    def read_encoded(self, col: int, row: int) -> bytes | None:
        index = self._index(col, row)
        count = int(self._counts[index])
        if count == 0:
            return None
        offset = int(self._offsets[index])
        if offset + count > self._file_size:  # checked before pread allocates ``count`` bytes
            raise TileReadError(f"{self._path}: tile ({col}, {row}) lies past the end of the file (file truncated)")
        data = os.pread(self._fd, count, offset)
        if len(data) != count:
            raise TileReadError(f"{self._path}: tile ({col}, {row}) is cut short (file truncated)")
        return data

    def read_tile(self, col: int, row: int, *, out: RGBArray | None = None) -> RGBArray | None:
        """The decoded tile; a JPEG one into ``out`` when it fits (:func:`codecs.decode_jpeg`)."""
        data = self.read_encoded(col, row)
        if data is None:
            return None
        try:
            if self._encoding.compression == "jpeg":
                return codecs.decode_jpeg(
                    data, tables=self._encoding.jpeg_tables, rgb=self._rgb, size=self._size, exact=self._exact, out=out
                )
            if self._encoding.compression == "jpeg2000" and (declared := j2k_size(data)) is not None:
                check_declared(declared, self._size, "JPEG 2000", exact=self._exact)
            segment, _, _ = self._page.decode(data, self._index(col, row), jpegtables=self._page.jpegtables)
        except TileReadError as err:
            raise TileReadError(f"{self._path}: tile ({col}, {row}): {err}") from err
        except Exception as err:  # tifffile/imagecodecs raise many types for damaged data
            raise TileReadError(f"{self._path}: tile ({col}, {row}) cannot be decoded: {err}") from err
        if segment is None:
            return None
        return codecs.as_rgb(np.asarray(segment).reshape(segment.shape[-3:]))


def _grid(page: tifffile.TiffPage) -> TileGrid:
    if page.is_tiled:
        return TileGrid(page.imagewidth, page.imagelength, page.tilewidth, page.tilelength)
    rows_per_strip = min(int(page.rowsperstrip or page.imagelength), page.imagelength)
    return TileGrid(page.imagewidth, page.imagelength, page.imagewidth, rows_per_strip)


def _check_page(page: tifffile.TiffPage, path: Path) -> None:
    """Refuse what we do not read, and declared sizes the file cannot back (docs/limits.md)."""
    if page.samplesperpixel < 1 or page.imagewidth < 1 or page.imagelength < 1:
        raise FormatError(
            f"{path}: image of {page.imagewidth}x{page.imagelength} px with {page.samplesperpixel} samples is empty"
        )
    grid = _grid(page)
    if page.is_tiled and (grid.tile_width % 16 or grid.tile_height % 16):
        raise FormatError(f"{path}: tile size {grid.tile_width}x{grid.tile_height} is not a multiple of 16 (TIFF 6.0)")
    offsets, counts = np.asarray(page.dataoffsets), np.asarray(page.databytecounts)
    if offsets.dtype.kind not in "iu" or counts.dtype.kind not in "iu":
        raise FormatError(f"{path}: tile offsets or byte counts are not integers")
    if len(page.dataoffsets) != grid.tile_count or len(page.databytecounts) != grid.tile_count:
        raise FormatError(
            f"{path}: {len(page.dataoffsets)} tile offsets and {len(page.databytecounts)} byte counts "
            f"for a grid of {grid.tile_count} tiles"
        )
    try:
        check_decode(grid.tile_width, grid.tile_height, f"{path}: tile")
    except LimitError as err:
        raise FormatError(str(err)) from err
    _check_tables(page, path)
    if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and page.samplesperpixel > 1:
        raise FormatError(f"{path}: planar-separate TIFF samples are not supported")
    if page.imagedepth > 1:
        raise FormatError(f"{path}: volumetric TIFF tiles are not supported")
    if int(page.compression) not in _COMPRESSIONS:
        raise FormatError(f"{path}: unsupported TIFF compression {int(page.compression)}")
    if page.bitspersample not in (1, 8, 16):
        raise FormatError(f"{path}: {page.bitspersample}-bit samples are not supported")


def _associated(page: tifffile.TiffPage, name: str, path: Path) -> AssociatedImage:
    def load() -> RGBArray:
        try:
            check_decode(page.imagewidth, page.imagelength, f"{path}: {name} image")
            if int(page.compression) == 7:
                _check_jpeg_segments(page, path)
            return codecs.as_rgb(page.asarray())
        except CompositeError as err:
            raise TileReadError(f"{path}: {name} image: {err}") from err
        except Exception as err:
            raise TileReadError(f"{path}: {name} image cannot be decoded: {err}") from err

    encoded = None
    if len(page.dataoffsets) == 1 and int(page.compression) == 7:

        def encoded_bytes() -> tuple[bytes, TileEncoding]:
            try:
                _check_jpeg_segments(page, path)  # copied as they are: a JPEG of the page's size
                fh = page.parent.filehandle
                fh.seek(int(page.dataoffsets[0]))
                data = fh.read(int(page.databytecounts[0]))
                # Its segments must reach a scan: writers and exports walk them (Adobe marker, tables).
                if not any(marker == 0xDA for marker, _, _ in codecs.iter_jpeg_segments(data)):
                    raise ValueError("no scan (SOS) segment")
            except CompositeError as err:
                raise TileReadError(f"{path}: {name} image: {err}") from err
            except ValueError as err:
                raise TileReadError(f"{path}: {name} image: damaged JPEG ({err})") from err
            except Exception as err:  # tifffile on damaged tags
                raise TileReadError(f"{path}: {name} image cannot be read: {err}") from err
            rgb = page.photometric == tifffile.PHOTOMETRIC.RGB
            return data, TileEncoding("jpeg", rgb=rgb, jpeg_tables=page.jpegtables)

        encoded = encoded_bytes
    return AssociatedImage(name, page.imagewidth, page.imagelength, load, encoded)


def _check_tables(page: tifffile.TiffPage, path: Path) -> None:
    tables = page.jpegtables
    if int(page.compression) == 7 and tables and not (tables.startswith(b"\xff\xd8") and tables.endswith(b"\xff\xd9")):
        raise FormatError(f"{path}: JPEGTables of {len(tables)} bytes are damaged (no SOI/EOI markers)")


def _check_jpeg_segments(page: tifffile.TiffPage, path: Path) -> None:
    """Every JPEG tile or strip of ``page`` lies in the file and declares at most its size
    (a strip: the page width and rows per strip), before tifffile decodes any of them."""
    _check_tables(page, path)
    grid = _grid(page)
    size = os.path.getsize(path)
    fh = page.parent.filehandle
    for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
        if offset + count > size or count > MAX_SMALL_FILE:
            raise TileReadError(f"segment of {count} bytes at byte {offset} does not fit the file")
        fh.seek(int(offset))
        codecs.checked_jpeg_info(fh.read(int(count)), size=(grid.tile_width, grid.tile_height), exact=page.is_tiled)


def _mpp_from_resolution(page: tifffile.TiffPage) -> tuple[float, float] | None:
    unit = page.tags.get("ResolutionUnit")
    microns_per_unit = {2: 25_400.0, 3: 10_000.0}.get(int(unit.value) if unit else 2)
    xres = page.tags.get("XResolution")
    yres = page.tags.get("YResolution")
    if microns_per_unit is None or xres is None or yres is None:
        return None
    try:
        x = xres.value[0] / xres.value[1]
        y = yres.value[0] / yres.value[1]
    except (TypeError, ZeroDivisionError, IndexError):
        return None
    if x <= 0 or y <= 0:
        return None
    return microns_per_unit / x, microns_per_unit / y


def _properties(page: tifffile.TiffPage, aperio: dict[str, Any]) -> dict[str, str]:
    properties: dict[str, str] = {}
    for name in _TIFF_TAG_PROPERTIES:
        tag = page.tags.get(name)
        if tag is not None and isinstance(tag.value, str):
            properties[f"tiff.{name}"] = tag.value
    for key, value in aperio.items():
        properties[f"aperio.{key}"] = str(value)
    return properties


def open_slide(path: Path) -> Slide:
    fd = open_regular(path, error=UnsupportedFormatError)
    try:
        check_ifds(fd, path)
        tif = tifffile.TiffFile(path)
    except CompositeError:
        os.close(fd)
        raise
    except Exception as err:  # tifffile raises many types on damaged tags
        os.close(fd)
        raise UnsupportedFormatError(f"{path}: not a readable TIFF ({err})") from err
    try:
        return _open(tif, path, fd)
    except CompositeError:
        tif.close()
        os.close(fd)
        raise
    except Exception as err:  # tifffile parses pages and tags lazily: damage surfaces here
        tif.close()
        os.close(fd)
        raise FormatError(f"{path}: damaged TIFF ({type(err).__name__}: {err})") from err
    except BaseException:
        tif.close()
        os.close(fd)
        raise


def _open(tif: tifffile.TiffFile, path: Path, fd: int) -> Slide:
    if not tif.series:
        raise UnsupportedFormatError(f"{path}: TIFF has no images")
    series = tif.series[0]
    pages = [lvl.keyframe for lvl in series.levels]
    if not pages or any(p is None for p in pages):
        raise UnsupportedFormatError(f"{path}: TIFF has no readable image page")
    for page in pages:
        _check_page(page, path)
    base_w, base_h = pages[0].imagewidth, pages[0].imagelength
    levels = [
        Level(_grid(p), (base_w / p.imagewidth + base_h / p.imagelength) / 2, TiffTileReader(fd, p, path))
        for p in pages
    ]
    is_svs = bool(tif.is_svs)
    description = pages[0].description or None
    aperio: dict[str, Any] = {}
    if is_svs and description:
        try:
            aperio = svs_description_metadata(description)
        except ValueError:
            aperio = {}
    aperio.pop("Header", None)
    mpp = None
    if isinstance(aperio.get("MPP"), (int, float)) and aperio["MPP"] > 0:
        mpp = (float(aperio["MPP"]), float(aperio["MPP"]))
    elif not is_svs:
        mpp = _mpp_from_resolution(pages[0])
    magnification = float(aperio["AppMag"]) if isinstance(aperio.get("AppMag"), (int, float)) else None
    associated = {}
    if is_svs:
        for other in tif.series[1:]:
            name = APERIO_ASSOCIATED.get(other.name)
            if name and other.keyframe is not None:
                associated[name] = _associated(other.keyframe, name, path)
    properties = _properties(pages[0], aperio)
    properties["openslide.vendor"] = "aperio" if is_svs else "generic-tiff"

    def close() -> None:
        os.close(fd)
        tif.close()

    return Slide(
        format="svs" if is_svs else "tiff",
        path=path,
        levels=levels,
        properties=properties,
        mpp=mpp,
        magnification=magnification,
        associated=associated,
        description=description,
        closers=[close],
    )
