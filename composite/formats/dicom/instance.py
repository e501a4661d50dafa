"""One DICOM instance (file): its header, read without pixel data, and its frames, read lazily.

Opening parses the header with ``pydicom.dcmread(..., stop_before_pixels=True)`` and notes where
the Pixel Data element starts; nothing of the pixel data is read then. The first frame read
locates every frame: native (uncompressed) frames sit at fixed offsets; encapsulated frames are
found from the Extended Offset Table when present, else by walking the 8-byte item headers of
the fragments (seeking over their data) and grouping fragments into frames with the Basic
Offset Table or, without one, by the codestream start markers. Frames are then read with
``os.pread`` (thread-safe).

Not supported: deflated and big-endian transfer syntaxes, float pixel data, 1-bit samples,
MPEG/video syntaxes, and instances split into concatenations across files beyond what the WSI
reader merges by level size.
"""

from __future__ import annotations

import os
import struct
import threading
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ... import codecs
from ...errors import CompositeError, FormatError, LimitError, TileReadError, UnsupportedFormatError
from ...limits import check_declared, open_regular
from ...tiling import j2k_size

FrameCodec = Literal["none", "jpeg", "jpeg2000", "jpegls", "dicomrle"]

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
_NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
_IMPLICIT_VR = "1.2.840.10008.1.2"
_ENCAPSULATED: dict[str, FrameCodec] = {
    "1.2.840.10008.1.2.4.50": "jpeg",  # baseline
    "1.2.840.10008.1.2.4.51": "jpeg",  # extended 12-bit
    "1.2.840.10008.1.2.4.57": "jpeg",  # lossless
    "1.2.840.10008.1.2.4.70": "jpeg",  # lossless SV1
    "1.2.840.10008.1.2.4.80": "jpegls",
    "1.2.840.10008.1.2.4.81": "jpegls",
    "1.2.840.10008.1.2.4.90": "jpeg2000",
    "1.2.840.10008.1.2.4.91": "jpeg2000",
    "1.2.840.10008.1.2.4.201": "jpeg2000",  # HTJ2K: OpenJPEG decodes it
    "1.2.840.10008.1.2.4.202": "jpeg2000",
    "1.2.840.10008.1.2.4.203": "jpeg2000",
    "1.2.840.10008.1.2.5": "dicomrle",
}
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
_ITEM = (0xFFFE, 0xE000)
_SEQUENCE_END = (0xFFFE, 0xE0DD)
_MAX_FRAMES = 10_000_000
_MAX_FRAME_BYTES = 1 << 30
_STARTS = {"jpeg": b"\xff\xd8", "jpeg2000": b"\xff\x4f", "jpegls": b"\xff\xd8"}

PYDICOM_MISSING = "reading DICOM needs pydicom: pip install composite[dicom]"


def import_pydicom(path: Path) -> Any:
    """pydicom, imported only when a DICOM file is opened (it is an optional extra)."""
    try:
        import pydicom
    except ImportError as err:
        raise UnsupportedFormatError(f"{path}: {PYDICOM_MISSING}") from err
    return pydicom


def read_header(path: Path, *, tags: list[str] | None = None) -> Any:
    """The dataset of ``path`` without its pixel data (``tags``: only these keywords)."""
    pydicom = import_pydicom(path)
    try:
        with warnings.catch_warnings():  # pydicom warns about odd values; the library never prints
            warnings.simplefilter("ignore")
            return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags)
    except Exception as err:  # pydicom raises many types on damaged elements
        raise FormatError(f"{path}: not a readable DICOM file ({err})") from err


def int_value(ds: Any, keyword: str, default: int | None = None) -> int:
    value = ds.get(keyword)
    if value is None or value == "":
        if default is None:
            raise FormatError(f"{ds.filename}: DICOM attribute {keyword} is missing")
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as err:
        raise FormatError(f"{ds.filename}: DICOM attribute {keyword} is not a number ({value!r})") from err


class Instance:
    """A DICOM image instance whose frames are read on demand."""

    def __init__(self, path: Path) -> None:
        pydicom = import_pydicom(path)
        self.path = path
        self._fd = open_regular(path)
        self._size = os.fstat(self._fd).st_size
        try:
            with os.fdopen(os.dup(self._fd), "rb") as fh:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        ds = pydicom.dcmread(fh, stop_before_pixels=True)
                except Exception as err:  # pydicom raises many types on damaged elements
                    raise FormatError(f"{path}: not a readable DICOM file ({err})") from err
                pixel_pos = fh.tell()
                head = fh.read(12)
            ds.filename = str(path)  # read through a descriptor: name the file in messages
            self.ds = ds
            try:
                self._setup(ds, pixel_pos, head)
            except CompositeError:
                raise
            except Exception as err:  # pydicom converts element values lazily: damage surfaces here
                raise FormatError(f"{path}: damaged DICOM element ({type(err).__name__}: {err})") from err
        except BaseException:
            os.close(self._fd)
            raise
        self._lock = threading.Lock()
        self._frames: list[list[tuple[int, int]]] | None = None

    def _setup(self, ds: Any, pixel_pos: int, head: bytes) -> None:
        path = self.path
        syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "") if hasattr(ds, "file_meta") else "")
        if syntax in _NATIVE:
            self.codec: FrameCodec = "none"
        elif syntax in _ENCAPSULATED:
            self.codec = _ENCAPSULATED[syntax]
        else:
            raise FormatError(f"{path}: unsupported DICOM transfer syntax {syntax or '(none)'}")
        self.transfer_syntax = syntax
        self.rows = int_value(ds, "Rows")
        self.columns = int_value(ds, "Columns")
        self.samples = int_value(ds, "SamplesPerPixel", 1)
        self.bits_allocated = int_value(ds, "BitsAllocated", 8)
        self.bits_stored = int_value(ds, "BitsStored", self.bits_allocated)
        self.signed = int_value(ds, "PixelRepresentation", 0) == 1
        self.planar = int_value(ds, "PlanarConfiguration", 0) == 1
        self.photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        self.frame_count = int_value(ds, "NumberOfFrames", 1)
        if not 1 <= self.frame_count <= _MAX_FRAMES:
            raise LimitError(f"{path}: NumberOfFrames {self.frame_count} outside 1..{_MAX_FRAMES}")
        if self.rows <= 0 or self.columns <= 0 or self.samples not in (1, 3):
            raise FormatError(f"{path}: bad frame geometry {self.columns}x{self.rows}x{self.samples}")
        if self.bits_allocated not in (8, 16, 32):
            raise FormatError(f"{path}: {self.bits_allocated}-bit allocated samples are not supported")
        if not 1 <= self.bits_stored <= self.bits_allocated:
            raise FormatError(f"{path}: BitsStored {self.bits_stored} exceeds BitsAllocated {self.bits_allocated}")
        self.frame_bytes = self.rows * self.columns * self.samples * self.bits_allocated // 8
        if self.frame_bytes > _MAX_FRAME_BYTES:
            raise LimitError(f"{path}: a frame of {self.frame_bytes} bytes is beyond the {_MAX_FRAME_BYTES} limit")
        if head[:4] != _PIXEL_DATA_TAG:
            raise FormatError(f"{path}: DICOM instance has no Pixel Data")
        if syntax == _IMPLICIT_VR:
            (length,) = struct.unpack("<I", head[4:8])
            self._value_pos = pixel_pos + 8
        else:
            (length,) = struct.unpack("<I", head[8:12])
            self._value_pos = pixel_pos + 12
        self._encapsulated = length == 0xFFFFFFFF
        if self._encapsulated != (self.codec != "none"):
            raise FormatError(f"{path}: Pixel Data encapsulation does not match transfer syntax {syntax}")
        # Each frame takes room in the file: native samples, or at least an 8-byte item header.
        needed = self.frame_count * (8 if self._encapsulated else self.frame_bytes)
        if needed > self._size:
            raise LimitError(
                f"{path}: {self.frame_count} frames need at least {needed} bytes, the file has {self._size}"
            )
        if not self._encapsulated and length < self.frame_bytes * self.frame_count:
            raise FormatError(
                f"{path}: Pixel Data holds {length} bytes, {self.frame_count} frames need"
                f" {self.frame_bytes * self.frame_count}"
            )

    def close(self) -> None:
        os.close(self._fd)

    # -- locating frames -----------------------------------------------------------------------
    def _read(self, size: int, offset: int) -> bytes:
        if offset < 0 or size < 0 or offset + size > self._size:  # before pread allocates ``size``
            raise TileReadError(f"{self.path}: {size} bytes at byte {offset} lie past the end (file truncated)")
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise TileReadError(f"{self.path}: cut short at byte {offset} (file truncated)")
        return data

    def _item(self, pos: int) -> tuple[tuple[int, int], int]:
        group, element, length = struct.unpack("<HHI", self._read(8, pos))
        return (group, element), length

    def _locate(self) -> list[list[tuple[int, int]]]:
        if not self._encapsulated:
            return [[(self._value_pos + i * self.frame_bytes, self.frame_bytes)] for i in range(self.frame_count)]
        tag, bot_length = self._item(self._value_pos)
        if tag != _ITEM:
            raise TileReadError(f"{self.path}: encapsulated Pixel Data does not start with an item")
        first = self._value_pos + 8 + bot_length
        extended = self.ds.get((0x7FE0, 0x0001))
        lengths = self.ds.get((0x7FE0, 0x0002))
        if extended is not None and lengths is not None:
            offsets = np.frombuffer(extended.value, "<u8")
            sizes = np.frombuffer(lengths.value, "<u8")
            if len(offsets) == len(sizes) == self.frame_count:
                return [[(first + int(o) + 8, int(n))] for o, n in zip(offsets, sizes, strict=True)]
        bot: list[int] = []
        if 0 < bot_length <= 4 * _MAX_FRAMES:
            raw = self._read(bot_length, self._value_pos + 8)
            bot = list(struct.unpack(f"<{bot_length // 4}I", raw[: bot_length // 4 * 4]))
        fragments: list[tuple[int, int]] = []  # (item header position, value length)
        pos = first
        while True:
            tag, length = self._item(pos)
            if tag == _SEQUENCE_END:
                break
            if tag != _ITEM or length == 0xFFFFFFFF:
                raise TileReadError(f"{self.path}: bad encapsulated item at byte {pos}")
            fragments.append((pos, length))
            if len(fragments) > _MAX_FRAMES * 4:
                raise LimitError(f"{self.path}: more than {_MAX_FRAMES * 4} pixel data fragments")
            pos += 8 + length
        return self._group(fragments, bot, first)

    def _group(self, fragments: list[tuple[int, int]], bot: list[int], first: int) -> list[list[tuple[int, int]]]:
        values = [(pos + 8, length) for pos, length in fragments]
        n = self.frame_count
        if len(values) == n:
            return [[v] for v in values]
        if n == 1:
            return [values]
        frames: list[list[tuple[int, int]]] = []
        if len(bot) == n:
            starts = {first + offset for offset in bot}
            for (pos, _), value in zip(fragments, values, strict=True):
                if pos in starts or not frames:
                    frames.append([])
                frames[-1].append(value)
        else:  # no usable offset table: a frame starts where a fragment starts a codestream
            start = _STARTS.get(self.codec)
            for value in values:
                if not frames or (start is not None and self._read(2, value[0]) == start):
                    frames.append([])
                frames[-1].append(value)
        if len(frames) != n:
            raise TileReadError(f"{self.path}: found {len(frames)} frames in Pixel Data, NumberOfFrames says {n}")
        return frames

    def _frame_table(self) -> list[list[tuple[int, int]]]:
        with self._lock:
            if self._frames is None:
                self._frames = self._locate()
            return self._frames

    # -- reading frames ------------------------------------------------------------------------
    def frame(self, index: int) -> bytes:
        """The stored bytes of frame ``index`` (0-based): a codestream, or native samples."""
        if not 0 <= index < self.frame_count:
            raise IndexError(f"{self.path}: frame {index} outside 0..{self.frame_count - 1}")
        parts = [self._read(length, pos) for pos, length in self._frame_table()[index]]
        data = b"".join(parts)
        if self.codec in ("jpeg", "jpegls", "jpeg2000") and data.endswith(codecs.EOI + b"\x00"):
            data = data[:-1]  # items have even length: a pad byte may follow EOI (J2K: EOC)
        return data

    def samples_of(self, index: int) -> NDArray[Any]:
        """Frame ``index`` decoded to its stored samples: (rows, columns, samples), no windowing.

        JPEG decoding converts YCbCr to RGB; native YBR_FULL is converted here.
        """
        data = self.frame(index)
        shape = (self.rows, self.columns, self.samples)
        try:
            if self.codec == "none":
                array = np.frombuffer(data, self._dtype())
                if self.planar and self.samples > 1:
                    array = array.reshape(self.samples, self.rows, self.columns).transpose(1, 2, 0)
            elif self.codec == "dicomrle":
                array = codecs.decode_samples(data, "dicomrle", dtype=self._dtype())
                if self.samples > 1:  # RLE stores one segment per sample: planar
                    array = array.reshape(self.samples, self.rows, self.columns).transpose(1, 2, 0)
            else:
                self._check_header(data)
                array = codecs.decode_samples(data, self.codec)
            array = np.asarray(array).reshape(shape)
        except TileReadError as err:
            raise TileReadError(f"{self.path}: frame {index + 1}: {err}") from err
        except ValueError as err:
            raise TileReadError(f"{self.path}: frame {index + 1} is not {shape} samples ({err})") from err
        array = self._mask(array)
        if self.samples == 3 and self.photometric == "YBR_FULL" and self.codec in ("none", "dicomrle"):
            array = ycbcr_to_rgb(array)
        return array

    def _check_header(self, data: bytes) -> None:
        """A compressed frame must declare the frame size (Rows x Columns) before it is decoded."""
        size = (self.columns, self.rows)
        if self.codec == "jpeg2000":
            declared = j2k_size(data)
            if declared is not None:
                check_declared(declared, size, "JPEG 2000")
        elif self.codec in ("jpeg", "jpegls"):
            codecs.checked_jpeg_info(data, size=size)

    def _dtype(self) -> str:
        kind = "i" if self.signed else "u"
        return f"<{kind}{self.bits_allocated // 8}"

    def _mask(self, array: NDArray[Any]) -> NDArray[Any]:
        """Keep BitsStored bits (sign-extended when signed): the rest may hold overlays."""
        if self.bits_stored >= array.dtype.itemsize * 8 or array.dtype.kind not in "iu":
            return array
        bits = self.bits_stored
        values = array.astype(np.int64) & ((1 << bits) - 1)
        if self.signed:
            values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
        return values


def ycbcr_to_rgb(array: NDArray[Any]) -> NDArray[np.uint8]:
    """Full-range YCbCr (JFIF / DICOM YBR_FULL) to RGB."""
    ycc = array.astype(np.float32)
    y, cb, cr = ycc[..., 0], ycc[..., 1] - 128, ycc[..., 2] - 128
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
