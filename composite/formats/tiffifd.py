"""A TIFF's directory structure checked before tifffile parses it (untrusted input).

tifffile follows the IFD chain lazily and, on some damaged chains (a next-offset pointing back
into the chain through a directory it has not cached), loops for ever. :func:`check_ifds` walks
the main chain and every SubIFD chain once, reading the descriptor the reader holds:
each directory must lie inside the file (a chain pointing past the end stops there, as in
tifffile), its entries must fit the file, no directory may be
reached twice (a loop), and there may be at most :data:`composite.limits.MAX_IFDS` of them.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from ..errors import FormatError
from ..limits import MAX_IFDS

_SUBIFDS = 330
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}


def check_ifds(fd: int, path: Path) -> None:
    """Raise :class:`FormatError` naming ``path`` when the directory structure is unsafe to follow."""
    size = os.fstat(fd).st_size
    head = _read_at(fd, 16, 0)
    if len(head) < 8 or head[:2] not in (b"II", b"MM"):
        raise FormatError(f"{path}: not a TIFF header")
    e = "<" if head[:2] == b"II" else ">"
    (version,) = struct.unpack(e + "H", head[2:4])
    big = version == 43
    if big and len(head) < 16:
        raise FormatError(f"{path}: BigTIFF header cut short")
    first = struct.unpack(e + "Q", head[8:16])[0] if big else struct.unpack(e + "I", head[4:8])[0]
    seen: set[int] = set()
    chains = [(first, "IFD chain")]
    while chains:
        offset, what = chains.pop()
        while offset:
            if offset < 8 or offset >= size:
                break  # past the end: tifffile stops there too (a truncated file keeps its first pages)
            if offset in seen:
                raise FormatError(f"{path}: {what} loops (directory at byte {offset} is reached twice)")
            if len(seen) >= MAX_IFDS:
                raise FormatError(f"{path}: more than {MAX_IFDS} TIFF directories")
            seen.add(offset)
            offset = _directory(fd, path, e, big, offset, size, chains, what)


def _directory(
    fd: int, path: Path, e: str, big: bool, offset: int, size: int, chains: list[tuple[int, str]], what: str
) -> int:
    """Check the directory at ``offset``, queue its SubIFDs, return the next directory's offset."""
    count_size, entry_size, pointer = (8, 20, "Q") if big else (2, 12, "I")
    if offset + count_size > size:
        raise FormatError(f"{path}: {what} points outside the file (byte {offset} of {size})")
    (count,) = struct.unpack(e + ("Q" if big else "H"), _read_at(fd, count_size, offset))
    table = count * entry_size
    end = offset + count_size + table
    if count == 0 or end + struct.calcsize(pointer) > size:
        raise FormatError(f"{path}: TIFF directory at byte {offset} with {count} entries does not fit the file")
    data = _read_at(fd, table + struct.calcsize(pointer), offset + count_size)
    for index in range(count):
        entry = data[index * entry_size : (index + 1) * entry_size]
        if big:
            tag, typ, n = struct.unpack(e + "HHQ", entry[:12])
            inline = 8
        else:
            tag, typ, n = struct.unpack(e + "HHI", entry[:8])
            inline = 4
        if tag == _SUBIFDS and typ in (4, 13, 16, 18):
            item = 8 if typ in (16, 18) else 4
            if n * item > size:
                raise FormatError(f"{path}: SubIFDs tag with {n} entries does not fit the file")
            raw = entry[-inline:] if n * item <= inline else _value(fd, e, entry[-inline:], big, n * item, size, path)
            code = "Q" if item == 8 else "I"
            for sub in struct.unpack(f"{e}{n}{code}", raw[: n * item]):
                chains.append((sub, "SubIFD chain"))
        elif n * _TYPE_SIZES.get(typ, 1) > size:
            raise FormatError(f"{path}: TIFF tag {tag} declares {n} values, more than the file holds")
    (next_offset,) = struct.unpack(e + pointer, data[table:])
    return int(next_offset)


def _read_at(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset`` (lseek + read: the header is read before any tile is)."""
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


def _value(fd: int, e: str, field: bytes, big: bool, length: int, size: int, path: Path) -> bytes:
    (where,) = struct.unpack(e + ("Q" if big else "I"), field)
    if where + length > size:
        raise FormatError(f"{path}: TIFF tag values at byte {where} lie outside the file")
    return _read_at(fd, length, where)
