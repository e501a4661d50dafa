"""A small TIFF writer for the SVS layout: tile bytes appended as they come, IFDs written at the end.

tifffile writes an image's chunks in the order an iterator gives them, numbering them row-major,
and spends a few Python calls and a ``write`` per tile. Here each tile's offset and byte count
go straight to its row-major slot (re-encoded levels arrive in column stripes, and levels may
be written at the same time from several threads), tiles are written in batches of about
:data:`BATCH_BYTES` with one ``pwritev``, and all IFDs are written after the image data, chained
in the order the images were added. TIFF allows image data and IFDs anywhere in the file.

Only what the SVS writer needs: classic TIFF or BigTIFF, little-endian, tags of types ASCII,
SHORT, LONG, RATIONAL, UNDEFINED and LONG8. Classic TIFF raises ``ValueError`` with
:data:`composite.formats.tiffwrite.common.TOO_LARGE` in it once the file would pass 4 GiB, as
tifffile does, so the caller can start again as BigTIFF. The tests read every file we write
with tifffile and OpenSlide.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

BATCH_BYTES = 1 << 20  # tile bytes per pwritev
_MAX_PIECES = 512  # pieces per pwritev (Linux's IOV_MAX is 1024)
_CLASSIC_LIMIT = 2**32
ASCII, SHORT, LONG, RATIONAL, UNDEFINED, LONG8 = 2, 3, 4, 5, 7, 16
_FORMAT = {SHORT: "<u2", LONG: "<u4", RATIONAL: "<u4", LONG8: "<u8"}

TagValue = str | bytes | Sequence[int] | NDArray[np.uint64]
Tag = tuple[int, int, TagValue]  # (code, type, value); RATIONAL values as (numerator, denominator, ...)


class TiffStream:
    """Appends chunks of image data to ``fh`` (opened ``wb``) and records IFDs, written by :meth:`finish`."""

    def __init__(self, fh: BinaryIO, *, bigtiff: bool) -> None:
        self._fd = fh.fileno()
        self.bigtiff = bigtiff
        header = struct.pack("<2sHHHQ", b"II", 43, 8, 0, 0) if bigtiff else struct.pack("<2sHI", b"II", 42, 0)
        os.pwrite(self._fd, header, 0)
        self._end = len(header)
        self._lock = threading.Lock()
        self._ifds: list[list[Tag]] = []
        self.offset_type = LONG8 if bigtiff else LONG

    def append(self, pieces: Sequence[bytes | memoryview]) -> NDArray[np.uint64]:
        """Write ``pieces`` one after the other at the end of the file (any thread); their offsets."""
        sizes = np.fromiter((len(p) for p in pieces), np.uint64, len(pieces))
        total = int(sizes.sum())
        with self._lock:
            start = self._end
            self._end = self._reserve(total)
        offsets = np.cumsum(sizes) - sizes + np.uint64(start)
        for first in range(0, len(pieces), _MAX_PIECES):
            _pwritev_all(self._fd, pieces[first : first + _MAX_PIECES], int(offsets[first]))
        return offsets

    def add_image(self, tags: list[Tag]) -> None:
        """An IFD to write at :meth:`finish`, after those added before it."""
        self._ifds.append(tags)

    def finish(self) -> None:
        """Write every IFD after the image data, chain them and point the header at the first."""
        with self._lock:
            at = self._reserve_at(self._end + (-self._end % 8))
            link = 8 if self.bigtiff else 4  # where the header holds the first IFD's offset
            for tags in self._ifds:
                data, next_at = self._ifd(tags, at)
                os.pwrite(self._fd, self._offset(at), link)
                os.pwrite(self._fd, data, at)
                link, at = next_at, self._reserve_at(at + len(data))
            self._end = at

    def _reserve(self, size: int) -> int:
        return self._reserve_at(self._end + size)

    def _reserve_at(self, end: int) -> int:
        if not self.bigtiff and end >= _CLASSIC_LIMIT:
            from .common import TOO_LARGE

            raise ValueError(f"data {TOO_LARGE}")
        return end + (-end % 2)  # IFDs and values start on a word boundary

    def _offset(self, value: int) -> bytes:
        return struct.pack("<Q" if self.bigtiff else "<I", value)

    def _ifd(self, tags: list[Tag], at: int) -> tuple[bytes, int]:
        """The IFD at ``at`` with its out-of-line values after it, and where its next-IFD link is."""
        entry, count, inline = ("<HHQ", "<Q", 8) if self.bigtiff else ("<HHI", "<H", 4)
        head = len(struct.pack(count, 0)) + len(tags) * (struct.calcsize(entry) + inline) + inline
        entries, values = [], bytearray()
        for code, kind, value in sorted(tags, key=lambda tag: tag[0]):
            data, n = _encode(kind, value)
            if len(data) <= inline:
                field = data.ljust(inline, b"\0")
            else:
                field = self._offset(at + head + len(values))
                values += data + b"\0" * (len(data) % 2)
            entries.append(struct.pack(entry, code, kind, n) + field)
        ifd = struct.pack(count, len(tags)) + b"".join(entries)
        next_link = at + len(ifd)
        return ifd + self._offset(0) + values, next_link


def _encode(kind: int, value: TagValue) -> tuple[bytes, int]:
    """A tag's value as bytes, and its TIFF count."""
    if kind == ASCII:
        assert isinstance(value, str)
        data = value.encode("ascii") + b"\0"
        return data, len(data)
    if kind == UNDEFINED:
        assert isinstance(value, bytes)
        return value, len(value)
    array = np.asarray(value).astype(_FORMAT[kind])
    return array.tobytes(), len(array) // 2 if kind == RATIONAL else len(array)


def _pwritev_all(fd: int, pieces: Sequence[bytes | memoryview], offset: int) -> None:
    written = os.pwritev(fd, pieces, offset)
    total = sum(len(p) for p in pieces)
    if written < total:  # a short write (rare for regular files): write the rest plainly
        rest = b"".join(pieces)[written:]
        while rest:
            done = os.pwrite(fd, rest, offset + written)
            written += done
            rest = rest[done:]
