"""Mutators for binary inputs: TIFF tags and IFD chains, JPEG segments, DICOM elements, raw bytes.

Each mutator takes the bytes of a file and a ``random.Random`` and returns the new bytes and a
short description of what it did (the description goes into the reproducer's name).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

INTERESTING = (0, 1, 2, 15, 16, 255, 256, 4096, 20_000, 65_000, 65_535, 65_536, 2**31 - 1, 2**32 - 1)
TIFF_TAGS = (256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 322, 323, 324, 325, 330, 347, 530)
Mutator = Callable[[bytes, random.Random], tuple[bytes, str]]
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}


# -- raw bytes --------------------------------------------------------------------------------
def truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    cut = rng.randrange(0, max(1, len(data)))
    return data[:cut], f"truncate-{cut}"


def flip_bits(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    count = rng.choice((1, 2, 8, 64))
    for _ in range(count):
        if out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out), f"flip-{count}"


def overwrite(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    if not data:
        return data, "overwrite-empty"
    out = bytearray(data)
    pos = rng.randrange(len(out))
    span = rng.choice((1, 4, 16, 256))
    fill = rng.choice((b"\x00", b"\xff", bytes([rng.randrange(256)])))
    out[pos : pos + span] = fill * len(out[pos : pos + span])
    return bytes(out), f"overwrite-{pos}-{span}"


RAW: list[Mutator] = [truncate, flip_bits, overwrite]


# -- JPEG -------------------------------------------------------------------------------------
def _segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of the segments before the scan, tolerant of damage."""
    out = []
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xD8, 0xD9, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        out.append((marker, pos, pos + 2 + length))
        if marker == 0xDA:
            break
        pos += 2 + length
    return out


def mutate_jpeg(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One structural change of a JPEG stream (complete or abbreviated), keeping the rest."""
    segs = _segments(data)
    sofs = [s for s in segs if 0xC0 <= s[0] <= 0xCF and s[0] not in (0xC4, 0xC8, 0xCC)]
    kind = rng.choice(("sof-size", "sof-size", "sof-short", "segment-length", "drop-segment", "cut", "flip", "big-app"))
    out = bytearray(data)
    if kind == "sof-size" and sofs:
        _, start, _ = sofs[0]
        height = rng.choice((0, 1, 20_000, 65_000, 65_535))
        width = rng.choice((0, 1, 20_000, 65_000, 65_535))
        out[start + 5 : start + 9] = struct.pack(">HH", height, width)
        return bytes(out), f"jpeg-sof-{width}x{height}"
    if kind == "sof-short" and sofs:
        _, start, end = sofs[0]
        length = rng.choice((0, 2, 5, 7, 8))
        return bytes(
            out[: start + 2] + struct.pack(">H", length) + out[start + 4 : start + 4 + max(0, length - 2)] + out[end:]
        ), f"jpeg-sof-len-{length}"
    if kind == "segment-length" and segs:
        _, start, _ = rng.choice(segs)
        length = rng.choice((0, 1, 2, 3, 0xFFFF))
        out[start + 2 : start + 4] = struct.pack(">H", length)
        return bytes(out), f"jpeg-seglen-{length}"
    if kind == "drop-segment" and segs:
        marker, start, end = rng.choice(segs)
        return bytes(out[:start] + out[end:]), f"jpeg-drop-{marker:02x}"
    if kind == "big-app" and len(data) > 2:
        segment = b"\xff\xe5" + struct.pack(">H", 0xFFFF) + bytes(0xFFFD)
        return bytes(out[:2] + segment + out[2:]), "jpeg-big-app"
    if kind == "cut" or not segs:
        cut = rng.randrange(0, max(1, len(data)))
        return bytes(out[:cut]), f"jpeg-cut-{cut}"
    return flip_bits(data, rng)[0], "jpeg-flip"


# -- TIFF -------------------------------------------------------------------------------------
@dataclass
class Entry:
    tag: int
    type: int
    count: int
    pos: int  # position of the entry in the file
    value_pos: int  # position of the value (inline or at the offset)


@dataclass
class Tiff:
    le: bool
    big: bool
    ifds: list[tuple[int, list[Entry], int]]  # (ifd offset, entries, position of its next-offset)

    @property
    def fmt(self) -> str:
        return "<" if self.le else ">"


def parse_tiff(data: bytes, *, max_ifds: int = 64) -> Tiff | None:
    if data[:2] not in (b"II", b"MM") or len(data) < 16:
        return None
    le = data[:2] == b"II"
    e = "<" if le else ">"
    version = struct.unpack(e + "H", data[2:4])[0]
    big = version == 43
    offset = struct.unpack(e + "Q", data[8:16])[0] if big else struct.unpack(e + "I", data[4:8])[0]
    tiff = Tiff(le, big, [])
    seen = set()
    while offset and offset not in seen and len(tiff.ifds) < max_ifds and offset + 8 < len(data):
        seen.add(offset)
        count_fmt, entry_size, head = ("Q", 20, 8) if big else ("H", 12, 2)
        (n,) = struct.unpack_from(e + count_fmt, data, offset)
        entries = []
        for i in range(min(n, 512)):
            pos = offset + head + i * entry_size
            if pos + entry_size > len(data):
                break
            if big:
                tag, typ, count = struct.unpack_from(e + "HHQ", data, pos)
                inline, value_field = 8, pos + 12
            else:
                tag, typ, count = struct.unpack_from(e + "HHI", data, pos)
                inline, value_field = 4, pos + 8
            size = _TYPE_SIZES.get(typ, 1) * count
            if size <= inline:
                value_pos = value_field
            else:
                value_pos = struct.unpack_from(e + ("Q" if big else "I"), data, value_field)[0]
            entries.append(Entry(tag, typ, count, pos, value_pos))
        next_pos = offset + head + n * entry_size
        tiff.ifds.append((offset, entries, next_pos))
        if next_pos + (8 if big else 4) > len(data):
            break
        offset = struct.unpack_from(e + ("Q" if big else "I"), data, next_pos)[0]
    return tiff


def _values(data: bytes, tiff: Tiff, entry: Entry) -> list[int]:
    codes = {3: "H", 4: "I", 16: "Q"}
    code = codes.get(entry.type)
    if code is None or entry.count > 1_000_000:
        return []
    try:
        return list(struct.unpack_from(f"{tiff.fmt}{entry.count}{code}", data, entry.value_pos))
    except struct.error:
        return []


def mutate_tiff(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A tag value, count or type; the IFD chain; JPEGTables; one tile's JPEG; or raw damage."""
    tiff = parse_tiff(data)
    if tiff is None or not tiff.ifds:
        return rng.choice(RAW)(data, rng)
    e = tiff.fmt
    out = bytearray(data)
    kind = rng.choice(("value", "value", "count", "type", "loop", "tables", "tile", "tile", "tile", "raw"))
    ifd_index = rng.randrange(len(tiff.ifds))
    offset, entries, next_pos = tiff.ifds[ifd_index]
    if kind == "loop":
        target = rng.choice((offset, tiff.ifds[0][0], tiff.ifds[max(0, ifd_index - 1)][0]))
        struct.pack_into(e + ("Q" if tiff.big else "I"), out, next_pos, target)
        return bytes(out), f"ifd{ifd_index}-next-{target}"
    interesting = [x for x in entries if x.tag in TIFF_TAGS] or entries
    if not interesting:
        return rng.choice(RAW)(data, rng)
    entry = rng.choice(interesting)
    count_pos = entry.pos + 4
    value_field = entry.pos + (12 if tiff.big else 8)
    if kind == "value":
        value = rng.choice(INTERESTING)
        if entry.type == 3:
            struct.pack_into(e + "H", out, value_field, value & 0xFFFF)
        else:
            struct.pack_into(e + "I", out, value_field, value & 0xFFFFFFFF)
        return bytes(out), f"ifd{ifd_index}-tag{entry.tag}-value-{value}"
    if kind == "count":
        count = rng.choice((0, 1, max(0, entry.count - 1), entry.count + 1, 2**31 - 1))
        struct.pack_into(e + ("Q" if tiff.big else "I"), out, count_pos, count)
        return bytes(out), f"ifd{ifd_index}-tag{entry.tag}-count-{count}"
    if kind == "type":
        typ = rng.choice((1, 2, 3, 4, 5, 7, 11, 12, 16, 0, 99))
        struct.pack_into(e + "H", out, entry.pos + 2, typ)
        return bytes(out), f"ifd{ifd_index}-tag{entry.tag}-type-{typ}"
    if kind == "tables":
        tables = [x for x in entries if x.tag == 347]
        if tables:
            struct.pack_into(e + ("Q" if tiff.big else "I"), out, tables[0].pos + 4, rng.choice((0, 2, 4)))
            return bytes(out), f"ifd{ifd_index}-jpegtables-emptied"
    if kind in ("tile", "tables"):
        offsets = next((x for x in entries if x.tag in (324, 273)), None)
        counts = next((x for x in entries if x.tag in (325, 279)), None)
        if offsets is not None and counts is not None:
            starts, sizes = _values(data, tiff, offsets), _values(data, tiff, counts)
            if starts and len(starts) == len(sizes):
                i = rng.randrange(len(starts))
                start, size = starts[i], sizes[i]
                tile = bytes(out[start : start + size])
                if tile.startswith(b"\xff\xd8"):
                    new, what = mutate_jpeg(tile, rng)
                    new = new[:size] + bytes(max(0, size - len(new)))  # keep the file layout
                    out[start : start + size] = new
                    return bytes(out), f"ifd{ifd_index}-tile{i}-{what}"
    raw, what = rng.choice(RAW)(data, rng)
    return raw, what


# -- DICOM ------------------------------------------------------------------------------------
DICOM_TAGS = {
    (0x0028, 0x0010): "US",  # Rows
    (0x0028, 0x0011): "US",  # Columns
    (0x0028, 0x0002): "US",  # SamplesPerPixel
    (0x0028, 0x0100): "US",  # BitsAllocated
    (0x0028, 0x0101): "US",  # BitsStored
    (0x0028, 0x0006): "US",  # PlanarConfiguration
    (0x0048, 0x0006): "UL",  # TotalPixelMatrixColumns
    (0x0048, 0x0007): "UL",  # TotalPixelMatrixRows
    (0x0028, 0x0008): "IS",  # NumberOfFrames
}


def mutate_dicom(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """An element's value or length (explicit VR little endian), a frame's JPEG, or raw damage."""
    kind = rng.choice(("element", "element", "element", "length", "frame", "raw"))
    out = bytearray(data)
    if kind in ("element", "length"):
        tag = rng.choice(list(DICOM_TAGS))
        needle = struct.pack("<HH", *tag) + DICOM_TAGS[tag].encode()
        pos = data.find(needle, 132)
        if pos >= 0:
            vr = DICOM_TAGS[tag]
            length = struct.unpack_from("<H", data, pos + 6)[0]
            if kind == "length":
                new = rng.choice((0, 1, 0xFFFF))
                struct.pack_into("<H", out, pos + 6, new)
                return bytes(out), f"dicom-{tag[0]:04x}{tag[1]:04x}-length-{new}"
            value = rng.choice(INTERESTING)
            if vr == "US" and length == 2:
                struct.pack_into("<H", out, pos + 8, value & 0xFFFF)
            elif vr == "UL" and length == 4:
                struct.pack_into("<I", out, pos + 8, value & 0xFFFFFFFF)
            elif vr == "IS":
                text = str(value).encode()[:length].ljust(length)
                out[pos + 8 : pos + 8 + length] = text
            return bytes(out), f"dicom-{tag[0]:04x}{tag[1]:04x}-{value}"
    if kind == "frame":
        starts = [i for i in range(132, len(data) - 4) if data[i : i + 3] == b"\xff\xd8\xff"]
        if starts:
            start = rng.choice(starts)
            end = data.find(b"\xff\xd9", start)
            end = len(data) if end < 0 else end + 2
            new, what = mutate_jpeg(data[start:end], rng)
            new = new[: end - start] + bytes(max(0, end - start - len(new)))
            out[start:end] = new
            return bytes(out), f"dicom-frame-{what}"
    return rng.choice(RAW)(data, rng)
