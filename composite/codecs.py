"""Encoding and decoding of tiles: the only module that imports imagecodecs.

JPEG needs care (docs/formats.md §3.2, §3.5): a TIFF tile is often an *abbreviated* stream whose
quantisation and Huffman tables live in the page's JPEGTables; and Aperio stores RGB (not YCbCr)
JPEG whose component ids (0, 1, 2) and missing Adobe marker make every decoder assume YCbCr.
So the TIFF Photometric tag, carried here as ``rgb=True``, decides the colour space, and a tile
copied out as a standalone JPEG gets an Adobe APP14 marker with transform 0.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import imagecodecs
import numpy as np
from numpy.typing import NDArray

from . import limits
from .errors import LimitError, TileReadError

Compression = Literal["jpeg", "jpeg2000", "lzw", "deflate", "none", "png", "other"]
RGBArray = NDArray[np.uint8]

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
# APP14 "Adobe", version 100, flags 0/0, transform 0: the samples are RGB, not YCbCr.
ADOBE_RGB_SEGMENT = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
_TABLE_MARKERS = {0xDB, 0xC4, 0xDD, 0xCC}  # DQT, DHT, DRI, DAC
# SOF0-15 less DHT, JPG and DAC, and JPEG-LS's SOF55 (same layout: precision, height, width, components)
_SOF_MARKERS = (set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}) | {0xF7}


@dataclass(frozen=True, slots=True)
class TileEncoding:
    """How a level's stored tiles are encoded, enough to copy them into another container.

    ``rgb`` is True when JPEG/J2K samples are RGB without a colour transform (Aperio's JPEG and
    code 33005) and False when they are YCbCr. ``jpeg_tables`` holds the shared JPEGTables of
    abbreviated JPEG tiles (None for complete streams). ``quality`` is the encoder quality when
    known (for descriptions), else None.
    """

    compression: Compression
    rgb: bool = False
    jpeg_tables: bytes | None = None
    quality: int | None = None


def iter_jpeg_segments(data: bytes, start: int = 2) -> Iterator[tuple[int, int, int]]:
    """Yield (marker, start, end) of each marker segment before the scan data (SOS included),
    from byte ``start`` (after SOI, or where a scan's entropy-coded data ends)."""
    if not data.startswith(SOI):
        raise ValueError("not a JPEG stream (no SOI marker)")
    pos = start
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            yield marker, pos, pos + 2
            return
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        end = pos + 2 + length
        yield marker, pos, end
        if marker == 0xDA:  # SOS: entropy-coded data follows
            return
        pos = end


def scan_start(data: bytes) -> int | None:
    """Where a JPEG stream's entropy-coded data begins (the end of its SOS segment): the bytes
    before it are the stream's header. None when there is no scan; ValueError (or struct.error,
    IndexError) when the segments are damaged."""
    return next((end for marker, _, end in iter_jpeg_segments(data) if marker == 0xDA), None)


def merge_jpeg_tables(tile: bytes, tables: bytes | None) -> bytes:
    """Make an abbreviated TIFF JPEG tile a complete stream by inlining the JPEGTables."""
    if not tables:
        return tile
    if not (tables.startswith(SOI) and tables.endswith(EOI) and tile.startswith(SOI)):
        raise ValueError("JPEG tables or tile lack SOI/EOI markers")
    return SOI + tables[2:-2] + tile[2:]


def standalone_jpeg(tile: bytes, *, tables: bytes | None, rgb: bool) -> bytes:
    """A JPEG file any decoder shows with the colours OpenSlide shows (docs/formats.md §3.5)."""
    data = merge_jpeg_tables(tile, tables)
    return with_adobe_rgb(data) if rgb else data


def with_adobe_rgb(data: bytes) -> bytes:
    """``data`` (a complete or abbreviated RGB JPEG) with the Adobe APP14 transform-0 marker after
    SOI unless it has one: decoders that read the tile bytes themselves then see RGB, not YCbCr."""
    return data if has_adobe_marker(data) else SOI + ADOBE_RGB_SEGMENT + data[2:]


def has_adobe_marker(data: bytes) -> bool:
    return any(m == 0xEE and data[s + 4 : s + 9] == b"Adobe" for m, s, _ in iter_jpeg_segments(data))


def split_jpeg_tables(data: bytes) -> tuple[bytes, bytes]:
    """Split a complete JPEG into (tables, abbreviated tile without tables or APPn segments)."""
    tables = [SOI]
    rest = [SOI]
    for marker, start, end in iter_jpeg_segments(data):
        if marker in _TABLE_MARKERS:
            tables.append(data[start:end])
        elif 0xE0 <= marker <= 0xEF or marker == 0xFE:
            continue  # APPn and comments: colour space travels in the TIFF Photometric tag
        elif marker == 0xDA:
            rest.append(data[start:])
            break
        else:
            rest.append(data[start:end])
    tables.append(EOI)
    return b"".join(tables), b"".join(rest)


@dataclass(frozen=True, slots=True)
class JpegInfo:
    """What a JPEG stream says about itself: size, components, colour space, subsampling."""

    width: int
    height: int
    components: int
    rgb: bool
    subsampling: tuple[int, int]
    precision: int = 8  # bits per sample


def jpeg_info(data: bytes) -> JpegInfo:
    """Parse the frame header; ``rgb`` follows the Adobe marker or R,G,B component ids."""
    adobe_transform: int | None = None
    jfif = False
    for marker, start, end in iter_jpeg_segments(data):
        segment = data[start:end]
        if marker == 0xEE and segment[4:9] == b"Adobe" and len(segment) >= 16:
            adobe_transform = segment[15]
        elif marker == 0xE0 and segment[4:8] == b"JFIF":
            jfif = True
        elif marker in _SOF_MARKERS:
            if len(segment) < 10 or len(segment) < 10 + 3 * segment[9]:
                raise ValueError(f"JPEG frame header of {len(segment)} bytes is cut short")
            height, width = struct.unpack(">HH", segment[5:9])
            ncomp = segment[9]
            ids = [segment[10 + 3 * i] for i in range(ncomp)]
            sampling = segment[11]
            if adobe_transform is not None:
                rgb = adobe_transform == 0 and ncomp == 3
            else:
                rgb = not jfif and ids == [82, 71, 66]
            return JpegInfo(width, height, ncomp, rgb, (sampling >> 4, sampling & 0x0F), segment[4])
    raise ValueError("JPEG stream has no frame header")


_last_header: tuple[bytes, JpegInfo] | None = None  # a stream's bytes up to its scan, and their info


def _known_jpeg_info(data: bytes) -> JpegInfo:
    """:func:`jpeg_info`, not parsed again for a stream whose bytes up to its scan (SOS included)
    are the last parsed stream's: a level's tiles share that header, and the parse cost about a
    tenth of decoding a 240 px tile."""
    global _last_header
    last = _last_header
    if last is not None and data.startswith(last[0]):
        return last[1]
    info = jpeg_info(data)
    try:
        scan = scan_start(data)
    except (ValueError, struct.error, IndexError):
        scan = None  # damaged after the frame header: the decoder reports it
    if scan is not None:
        _last_header = (data[:scan], info)
    return info


def checked_jpeg_info(data: bytes, *, size: tuple[int, int] | None = None, exact: bool = True) -> JpegInfo:
    """The frame header of ``data``, checked before anything is decoded (docs/limits.md).

    Raises :class:`TileReadError` when the header cannot be parsed, when ``size`` (the width and
    height the container gives the image) differs from it (with ``exact=False``: is smaller than
    it), or when it is beyond :data:`composite.limits.MAX_DECODE_PIXELS`.
    """
    try:
        info = _known_jpeg_info(data)
    except (ValueError, struct.error, IndexError) as err:
        raise TileReadError(f"damaged JPEG ({err})") from err
    if size is not None:
        limits.check_declared((info.width, info.height), size, "JPEG", exact=exact)
    try:
        limits.check_decode(info.width, info.height, "JPEG")
    except LimitError as err:
        raise TileReadError(str(err)) from err
    return info


def decode_jpeg(
    data: bytes,
    *,
    tables: bytes | None = None,
    rgb: bool | None = None,
    size: tuple[int, int] | None = None,
    exact: bool = True,
    out: RGBArray | None = None,
) -> RGBArray:
    """Decode a JPEG tile to RGB uint8; ``rgb`` forces the source colour space (None: guess).

    The frame header is checked first (:func:`checked_jpeg_info`): against ``size`` when given,
    and against the decode limit always. ``out``, a contiguous (height, width, 3) uint8 buffer,
    is decoded into (and returned) when the stream is an 8-bit three-component image of that
    size: a pipeline reusing one buffer saves an allocation and its page faults per tile.
    """
    info = checked_jpeg_info(data, size=size, exact=exact)
    colorspace = None if rgb is None else ("RGB" if rgb else "YCBCR")
    if out is not None and (info.precision != 8 or info.components != 3 or out.shape != (info.height, info.width, 3)):
        out = None  # a 12-bit stream decodes to 16-bit samples (then scaled), not into ``out``
    try:
        image = imagecodecs.jpeg8_decode(
            data, tables=tables, colorspace=colorspace, outcolorspace="RGB" if rgb is not None else None, out=out
        )
    except Exception as err:  # imagecodecs raises its own error types per codec
        raise TileReadError(f"JPEG decode failed: {err}") from err
    return as_rgb(image, bits=info.precision)


def decode_jpeg_reduced(data: bytes, *, tables: bytes | None, rgb: bool, size: tuple[int, int], scale: int) -> RGBArray:
    """A TIFF JPEG tile of ``size`` (width, height) decoded at about 1/``scale`` by libjpeg's DCT
    scaling (Pillow's ``draft``: a scaled inverse DCT per 8x8 block instead of a full decode),
    its header checked against ``size`` first (:func:`checked_jpeg_info`, not exact). libjpeg
    picks the nearest scale it has, so small tiles may come out larger than ``size // scale``."""
    stream = standalone_jpeg(data, tables=tables, rgb=rgb)
    checked_jpeg_info(stream, size=size, exact=False)
    # Only here: plain conversions never load Pillow for decoding. The JPEG plugin alone, not
    # Image.open, which imports four other plugins first (20 ms, holding the GIL).
    from PIL import JpegImagePlugin

    try:
        with JpegImagePlugin.JpegImageFile(io.BytesIO(stream)) as image:
            image.draft("RGB", (max(1, size[0] // scale), max(1, size[1] // scale)))
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as err:
        raise TileReadError(f"JPEG decode failed: {err}") from err


_SUBSAMPLING = {(1, 1): "444", (2, 1): "422", (2, 2): "420", (4, 1): "411"}


def encode_jpeg(pixels: RGBArray, *, quality: int, rgb: bool = False, subsampling: tuple[int, int] = (2, 2)) -> bytes:
    """Encode a complete baseline JPEG: YCbCr (4:2:0 unless ``subsampling`` says otherwise, as
    (horizontal, vertical) factors) or RGB with an Adobe marker."""
    if rgb:
        data = bytes(imagecodecs.jpeg8_encode(pixels, level=quality, colorspace="RGB", outcolorspace="RGB"))
        return with_adobe_rgb(data)
    if subsampling not in _SUBSAMPLING:
        raise ValueError(f"JPEG subsampling {subsampling} is not one of {sorted(_SUBSAMPLING)}")
    return bytes(imagecodecs.jpeg8_encode(pixels, level=quality, subsampling=_SUBSAMPLING[subsampling]))


def decode_jpeg2000(data: bytes) -> RGBArray:
    try:
        return as_rgb(imagecodecs.jpeg2k_decode(data))
    except Exception as err:
        raise TileReadError(f"JPEG 2000 decode failed: {err}") from err


def encode_jpeg2000(pixels: RGBArray, *, quality: int) -> bytes:
    """Encode a raw J2K codestream (what Aperio's TIFF codes 33003/33005 hold)."""
    # imagecodecs' level is a PSNR target for lossy J2K; map 0..100 quality onto 30..50 dB.
    psnr = 30 + 20 * max(0, min(quality, 100)) // 100
    return bytes(imagecodecs.jpeg2k_encode(pixels, level=psnr, codecformat="J2K"))


def decode_samples(
    data: bytes, codec: Literal["jpeg", "jpeg2000", "jpegls", "dicomrle"], *, dtype: str = "u1"
) -> NDArray[Any]:
    """Decode to the stored samples at full precision (12/16-bit, signed), no colour conversion.

    For medical images whose samples must be windowed before display (DICOM, docs/formats.md §4);
    ``dtype`` is the sample type of ``dicomrle`` data, which returns bytes in that order.
    """
    try:
        if codec == "jpeg":
            return np.asarray(imagecodecs.jpeg_decode(data))
        if codec == "jpeg2000":
            return np.asarray(imagecodecs.jpeg2k_decode(data))
        if codec == "jpegls":
            return np.asarray(imagecodecs.jpegls_decode(data))
        return np.frombuffer(imagecodecs.dicomrle_decode(data, dtype), dtype)
    except Exception as err:
        raise TileReadError(f"{codec} decode failed: {err}") from err


def decode_lzw(data: bytes) -> bytes:
    return bytes(imagecodecs.lzw_decode(data))


def encode_lzw(data: bytes) -> bytes:
    return bytes(imagecodecs.lzw_encode(data))


def decode_image(data: bytes) -> RGBArray:
    """Decode a complete image file in memory (JPEG, PNG, ...) to RGB uint8."""
    try:
        return as_rgb(imagecodecs.imread(data))
    except Exception as err:
        raise TileReadError(f"image decode failed: {_imread_error(err, data)}") from err


def _imread_error(err: Exception, data: bytes) -> str:
    """One line of imread's error, which has a line per codec it tried: the line of the codec
    the data's signature names (JPEG, PNG), else how many codecs refused it."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else type(err).__name__
    codec = "JPEG8_DECODE" if data[:2] == b"\xff\xd8" else "PNG_DECODE" if data[:4] == b"\x89PNG" else "-"
    return next((line for line in lines if line.startswith(codec)), f"none of {len(lines)} codecs reads it")


def as_rgb(image: NDArray[np.generic], *, bits: int = 16) -> RGBArray:
    """Return an (h, w, 3) uint8 array: grey is repeated, alpha dropped, 16-bit samples holding
    ``bits`` significant bits (12 for a 12-bit JPEG) scaled to 8."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        if array.dtype == np.uint16:
            array = (array >> max(0, min(bits, 16) - 8)).astype(np.uint8)
        elif array.dtype == np.bool_:
            array = array.astype(np.uint8) * 255
        else:
            raise TileReadError(f"unsupported sample type {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise TileReadError(f"unsupported image shape {array.shape}")
    channels = array.shape[2]
    if channels == 1:
        array = np.repeat(array, 3, axis=2)
    elif channels == 2:
        array = np.repeat(array[:, :, :1], 3, axis=2)
    elif channels > 3:
        array = array[:, :, :3]
    return np.ascontiguousarray(array)


def pack_pixels(pixels: RGBArray) -> bytes:
    """Lossless, fast compression of a pixel array for temporary storage (zstd, level 1)."""
    return bytes(imagecodecs.zstd_encode(np.ascontiguousarray(pixels).tobytes(), level=1))


def unpack_pixels(data: bytes, shape: tuple[int, int]) -> RGBArray:
    """The (height, width, 3) array :func:`pack_pixels` stored."""
    pixels: RGBArray = np.frombuffer(bytearray(imagecodecs.zstd_decode(data)), np.uint8).reshape(*shape, 3)
    return pixels


class JpegStripWriter:
    """One baseline JPEG written strip by strip, so a large image is never held whole.

    Each strip (``STRIP`` rows, the last one fewer) is encoded on its own with the same settings,
    hence the same tables; the file takes the first strip's header with the full height in the
    frame header and a restart interval of one strip (DRI), then each strip's entropy-coded data
    followed by the next restart marker. A restart resets the DC predictors exactly as a fresh
    encode starts, and libjpeg byte-aligns each strip's end, so the result decodes to the same
    pixels as encoding the whole image at once (strips are whole 16-row MCU rows).
    """

    STRIP = 256  # rows; a multiple of the 4:2:0 MCU height (16)

    def __init__(self, width: int, height: int, *, quality: int) -> None:
        mcus = -(-width // 16) * (self.STRIP // 16)
        if mcus > 0xFFFF or height > 0xFFFF or width > 0xFFFF:
            raise ValueError(f"image of {width}x{height} px is too large for strip-wise JPEG")
        self.width, self.height, self.quality = width, height, quality
        self._interval = mcus
        self._rows = 0

    def strip(self, pixels: RGBArray) -> bytes:
        """The bytes of the next strip (the header first); ``STRIP`` rows except the last strip."""
        rows = pixels.shape[0]
        last = self._rows + rows >= self.height
        if pixels.shape[1] != self.width or self._rows + rows > self.height or (rows != self.STRIP and not last):
            raise ValueError(f"strip of {pixels.shape[1]}x{rows} px at row {self._rows} does not fit")
        data = encode_jpeg(np.ascontiguousarray(pixels), quality=self.quality)
        head, scan = b"", b""
        for marker, start, end in iter_jpeg_segments(data):
            if marker == 0xDA:
                scan = data[end:-2] if data.endswith(EOI) else data[end:]
                break
            if self._rows == 0:
                segment = data[start:end]
                if marker in _SOF_MARKERS:
                    segment = segment[:5] + struct.pack(">H", self.height) + segment[7:]
                head += segment
        if self._rows == 0:
            sos = data[start:end]
            head = SOI + head + b"\xff\xdd\x00\x04" + struct.pack(">H", self._interval) + sos
        else:
            head = bytes((0xFF, 0xD0 + (self._rows // self.STRIP - 1) % 8))
        self._rows += rows
        return head + scan + (EOI if last else b"")
