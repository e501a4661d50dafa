"""Plain raster images (JPEG, PNG, BMP, GIF, WebP) opened as one-level slides.

The whole image is one tile, decoded on first read: fine for camera tiles and exports, not for a
60,000 px JPEG (use a tiled TIFF for those). JPEG files keep their bytes available for copying.
Not supported: animation frames beyond the first, EXIF orientation (pixels are used as stored).
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from .. import codecs
from ..codecs import RGBArray, TileEncoding
from ..errors import CompositeError, TileReadError, UnsupportedFormatError
from ..geometry import TileGrid
from ..limits import check_decode, is_regular, open_regular, read_regular
from ..model import Level, Slide

NAME = "image"
MAX_IMAGE_FILE = 1 << 30  # bytes of one image file read whole
_MAGICS = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"GIF87a", b"GIF89a")


def sniff(path: Path) -> bool:
    if not is_regular(path):
        return False
    head = read_head(path, 12)
    return head.startswith(_MAGICS) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


class WholeImageReader:
    """A one-tile level backed by an image file."""

    def __init__(self, path: Path, encoding: TileEncoding | None, size: tuple[int, int]) -> None:
        self._path = path
        self._encoding = encoding
        self._size = size

    @property
    def encoding(self) -> TileEncoding | None:
        return self._encoding

    def read_encoded(self, col: int, row: int) -> bytes | None:
        return read_regular(self._path, limit=MAX_IMAGE_FILE) if self._encoding is not None else None

    def read_tile(self, col: int, row: int) -> RGBArray | None:
        try:
            check_decode(*self._size, "image")
            data = read_regular(self._path, limit=MAX_IMAGE_FILE)
            if data.startswith(codecs.SOI):
                codecs.checked_jpeg_info(data, size=self._size)
            return codecs.decode_image(data)
        except CompositeError as err:
            raise TileReadError(f"{self._path}: tile (0, 0): {err}") from err


def open_slide(path: Path) -> Slide:
    read_head(path, 1)  # a regular file, or one line saying what it is instead
    try:
        with Image.open(path) as image:
            width, height = image.size
            kind = image.format
    except Exception as err:  # Pillow raises many types (and DecompressionBombError) on damaged headers
        raise UnsupportedFormatError(f"{path}: not a readable image ({err})") from err
    encoding = None
    if kind == "JPEG":
        head = read_head(path, 65536)
        try:
            info = codecs.jpeg_info(head)
            if info.components == 3:
                encoding = TileEncoding("jpeg", rgb=info.rgb)
        except (ValueError, IndexError):
            encoding = None
    grid = TileGrid(width, height, width, height)
    reader = WholeImageReader(path, encoding, (width, height))
    return Slide(format="image", path=path, levels=[Level(grid, 1.0, reader)])


def read_head(path: Path, size: int) -> bytes:
    fd = open_regular(path, error=UnsupportedFormatError)
    try:
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)
