"""One DICOM Part 10 file written as its frames arrive: pydicom writes the header, we the pixels.

:func:`write_instance` lets pydicom write the file meta and the dataset (everything but Pixel
Data), then appends the Pixel Data element itself, one frame at a time, so a level of any size
passes through a few frames of memory:

- encapsulated (JPEG, JPEG 2000): an item per frame (each padded to an even length with one
  ``00`` byte, PS3.5 A.4), preceded by the Basic Offset Table - reserved as zeros and filled in
  once every frame's offset is known - or, when the level may pass 4 GiB (the BOT's 32-bit
  offsets), an empty BOT and the Extended Offset Table and its lengths (64-bit), reserved in the
  header as zeros and filled in the same way;
- native (uncompressed): one element of known length, frames back to back.

A frame is given as its pieces (a tuple of buffers whose concatenation is the frame, such as a
JPEG prefix and a tile's bytes after its SOI), so a copied tile is never joined into a new
string; the pieces of many frames go to the file in one ``writev`` (a few hundred frames a
system call, where a write per piece cost more than the copying itself).

The lossy compression ratio (LossyImageCompressionRatio) is only known after the last frame:
the header carries a 16-character placeholder that is overwritten in place.
"""

from __future__ import annotations

import os
import struct
from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from ....errors import FormatError

BOT_LIMIT = 2**32 - 1  # the Basic Offset Table's offsets are 32-bit
RATIO_PLACEHOLDER = "9.87654321012345"  # 16 characters, the longest DS value: patched after the frames
_ITEM = b"\xfe\xff\x00\xe0"
_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_PIXEL_DATA_ENCAPSULATED = b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff"
_BATCH_BYTES = 1 << 20  # pieces gathered for one writev (and at most IOV_MAX of them)
_IOV_MAX = min(1024, os.sysconf("SC_IOV_MAX")) if hasattr(os, "sysconf") else 1024
Buffer = bytes | bytearray | memoryview
Frame = Sequence[Buffer]  # the pieces of one frame, in order


def use_extended_table(frame_count: int, frame_bytes: int, *, limit: int = BOT_LIMIT) -> bool:
    """Whether a level of ``frame_count`` frames of ``frame_bytes`` raw bytes each needs the
    Extended Offset Table (its compressed size may pass the BOT's 32-bit offsets).

    The raw size bounds the compressed one for the codecs written here (JPEG and JPEG 2000 of
    natural images compress), with a margin per frame for headers.
    """
    return frame_count * (frame_bytes + 1024) > limit


def reserve_extended_table(ds: Any, frame_count: int) -> None:
    """Add zero-filled ExtendedOffsetTable and ExtendedOffsetTableLengths to ``ds``."""
    ds.ExtendedOffsetTable = bytes(8 * frame_count)
    ds.ExtendedOffsetTableLengths = bytes(8 * frame_count)


def write_instance(
    path: Path,
    ds: Any,
    frames: Iterable[Frame],
    *,
    frame_count: int,
    encapsulated: bool,
    raw_frame_bytes: int,
) -> int:
    """Write ``ds`` and its ``frames`` (each the tuple of its pieces) to ``path``; returns the
    bytes of pixel data written.

    ``ds`` carries ``file_meta``; with the Extended Offset Table it was reserved by
    :func:`reserve_extended_table`. ``raw_frame_bytes`` (rows x columns x samples) gives the
    lossy compression ratio when the header holds :data:`RATIO_PLACEHOLDER`.
    """
    import pydicom

    extended = "ExtendedOffsetTable" in ds
    with path.open("w+b") as fh:
        pydicom.dcmwrite(fh, ds, enforce_file_format=True)
        header_end = fh.tell()
        fh.flush()  # the frames go to the descriptor itself, after the header
        if encapsulated:
            written, offsets, lengths = _encapsulated(fh, frames, frame_count, extended=extended)
        else:
            written = _native(fh, frames, frame_count, raw_frame_bytes)
            offsets = lengths = array("Q")
        if encapsulated:
            _patch_tables(fh, header_end, offsets, lengths, extended=extended)
        _patch_ratio(fh, header_end, raw_frame_bytes * frame_count, written)
    return written


def _encapsulated(
    fh: BinaryIO, frames: Iterable[Frame], frame_count: int, *, extended: bool
) -> tuple[int, array[int], array[int]]:
    out = _Gather(fh)
    table_length = 0 if extended else 4 * frame_count
    item = struct.Struct("<4sI").pack
    out.add(_PIXEL_DATA_ENCAPSULATED + item(_ITEM, table_length) + bytes(table_length))
    offsets: array[int] = array("Q")
    lengths: array[int] = array("Q")
    position = 0  # from the first frame's item header
    written = 0
    batch: list[Buffer] = []  # the pieces of frames gathered here, handed over about 1 MB at a time
    start = 0  # ``position`` at the batch's start
    for pieces in frames:
        if len(offsets) == frame_count:
            raise FormatError(f"{fh.name}: more than the {frame_count} frames announced")
        size = sum(map(len, pieces))
        pad = size & 1
        offsets.append(position)
        lengths.append(size + pad)  # the item's length (wsidicom requires it even)
        batch.append(item(_ITEM, size + pad))
        batch += pieces
        if pad:
            batch.append(b"\x00")
        position += 8 + size + pad
        written += size
        if position - start >= _BATCH_BYTES or len(batch) >= _IOV_MAX - 8:
            out.write(batch)
            batch, start = [], position
    if len(offsets) != frame_count:
        raise FormatError(f"{fh.name}: {len(offsets)} frames written, {frame_count} announced")
    batch.append(_SEQUENCE_END)
    out.write(batch)
    out.flush()
    if not extended and offsets and offsets[-1] > BOT_LIMIT:
        raise FormatError(f"{fh.name}: frames pass 4 GiB; the Basic Offset Table cannot address them")
    return written, offsets, lengths


class _Gather:
    """Buffers written in order with few ``writev`` calls, straight to ``fh``'s descriptor (whose
    own buffer was flushed); ``fh`` is re-synchronised by :meth:`flush`."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._fd = fh.fileno()
        self._pieces: list[Buffer] = []
        self._bytes = 0

    def add(self, piece: Buffer) -> None:
        self._pieces.append(piece)
        self._bytes += len(piece)
        if self._bytes >= _BATCH_BYTES or len(self._pieces) >= _IOV_MAX:
            self._write()

    def _write(self) -> None:
        pieces, self._pieces, self._bytes = self._pieces, [], 0
        self.write(pieces)

    def write(self, pieces: list[Buffer]) -> None:
        """Write what was added, then ``pieces`` (at most ``_IOV_MAX``), with one ``writev``."""
        if self._pieces:
            self._write()
        total = sum(map(len, pieces))
        done = os.writev(self._fd, pieces) if pieces else 0
        if done < total:  # a short write (signal, full disk): the rest piece by piece
            rest = memoryview(b"".join(pieces))[done:]
            while rest:
                rest = rest[os.write(self._fd, rest) :]

    def flush(self) -> None:
        self._write()
        self._fh.seek(0, 2)


def _native(fh: BinaryIO, frames: Iterable[Frame], frame_count: int, frame_bytes: int) -> int:
    total = frame_count * frame_bytes
    if total + (total & 1) > 0xFFFFFFFE:
        raise FormatError(f"{fh.name}: {total} bytes of uncompressed pixels do not fit one element")
    out = _Gather(fh)
    out.add(b"\xe0\x7f\x10\x00OB\x00\x00" + struct.pack("<I", total + (total & 1)))
    count = 0
    for pieces in frames:
        size = sum(len(piece) for piece in pieces)
        if size != frame_bytes:
            raise ValueError(f"native frame of {size} bytes, expected {frame_bytes}")
        for piece in pieces:
            out.add(piece)
        count += 1
    if count != frame_count:
        raise FormatError(f"{fh.name}: {count} frames written, {frame_count} announced")
    if total & 1:
        out.add(b"\x00")
    out.flush()
    return total


def _patch_tables(fh: BinaryIO, header_end: int, offsets: array[int], lengths: array[int], *, extended: bool) -> None:
    if extended:
        # The two OV elements are the last of the header: lengths' value ends it, the table's
        # value ends 12 bytes (an explicit-VR OV element header) before the lengths' value.
        size = 8 * len(offsets)
        lengths_at = header_end - size
        table_at = lengths_at - 12 - size
        fh.seek(table_at - 12)
        if fh.read(4) != b"\xe0\x7f\x01\x00":
            raise FormatError(f"{fh.name}: Extended Offset Table not where it was reserved")
        fh.seek(table_at)
        fh.write(offsets.tobytes())
        fh.seek(lengths_at)
        fh.write(lengths.tobytes())
    else:
        fh.seek(header_end + len(_PIXEL_DATA_ENCAPSULATED) + 8)
        fh.write(array("I", offsets).tobytes())
    fh.seek(0, 2)


def _patch_ratio(fh: BinaryIO, header_end: int, raw: int, written: int) -> None:
    """Overwrite the ratio placeholder (when the header has one) with raw / written bytes."""
    fh.seek(0)
    header = fh.read(header_end)
    at = header.find(RATIO_PLACEHOLDER.encode())
    if at < 0:
        fh.seek(0, 2)
        return
    ratio = f"{raw / max(written, 1):.2f}"[:16]
    fh.seek(at)
    fh.write(ratio.ljust(16).encode())
    fh.seek(0, 2)
