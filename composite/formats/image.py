"""Plain raster images (JPEG, PNG, BMP, GIF, WebP) opened as one-level slides.

The whole image is one tile, decoded on first read: fine for camera tiles and exports, not for a
60,000 px JPEG (use a tiled TIFF for those). JPEG files keep their bytes available for copying.
Not supported: animation frames beyond the first, EXIF orientation (pixels are used as stored).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .. import codecs
from ..codecs import RGBArray, TileEncoding
from ..errors import TileReadError, UnsupportedFormatError
from ..geometry import TileGrid
from ..model import Level, Slide

NAME = "image"
_MAGICS = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"GIF87a", b"GIF89a")


def sniff(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as fh:
        head = fh.read(12)
    return head.startswith(_MAGICS) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


class WholeImageReader:
    """A one-tile level backed by an image file."""

    def __init__(self, path: Path, encoding: TileEncoding | None) -> None:
        self._path = path
        self._encoding = encoding

    @property
    def encoding(self) -> TileEncoding | None:
        return self._encoding

    def read_encoded(self, col: int, row: int) -> bytes | None:
        return self._path.read_bytes() if self._encoding is not None else None

    def read_tile(self, col: int, row: int) -> RGBArray | None:
        try:
            return codecs.decode_image(self._path.read_bytes())
        except TileReadError as err:
            raise TileReadError(f"{self._path}: {err}") from err


def open_slide(path: Path) -> Slide:
    try:
        with Image.open(path) as image:
            width, height = image.size
            kind = image.format
    except (UnidentifiedImageError, OSError) as err:
        raise UnsupportedFormatError(f"{path}: not a readable image ({err})") from err
    encoding = None
    if kind == "JPEG":
        with path.open("rb") as fh:
            head = fh.read(65536)
        try:
            info = codecs.jpeg_info(head)
            if info.components == 3:
                encoding = TileEncoding("jpeg", rgb=info.rgb)
        except ValueError:
            encoding = None
    grid = TileGrid(width, height, width, height)
    return Slide(format="image", path=path, levels=[Level(grid, 1.0, WholeImageReader(path, encoding))])
