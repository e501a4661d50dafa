"""Marker segments of copied tile bytes: what a scrubbed output keeps of them.

A byte-copied JPEG tile carries every segment its producer wrote: comments (COM), application
segments (APPn: EXIF, XMP, ICC profiles, vendor data) and anything after its end marker. Any of
them can hold text that identifies a patient, so :func:`scrub_jpeg` rebuilds a stream from the
segments decoding needs only: frame and scan headers, tables (DQT, DHT, DAC, DRI), the Adobe
APP14 colour marker (rewritten to its 12 standard bytes: version, flags, transform) and the JFIF
APP0 marker (rewritten without its thumbnail or extensions; libjpeg reads JFIF as "YCbCr", so
dropping it could change the colours of an unusual stream). The entropy-coded data is copied as
it is, up to the end marker, and never decoded: stripping costs a walk over the header and one
search for the end marker. The pixels decode identically.

:func:`scrub_jpeg2000` does the same for a raw J2K codestream (Aperio 33003/33005 tiles): comment
(COM) segments of the main header and of each tile-part header go, tile-part lengths are fixed.

Both raise ValueError for data they cannot parse; a caller that promised to scrub must then not
copy the bytes (re-encoding from pixels is the safe fallback).
"""

from __future__ import annotations

import re
import struct

from .codecs import iter_jpeg_segments

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
# markers decoding needs, besides APP0/APP14 (rewritten) and SOS/EOI (handled in the walk):
# SOF0-15 (C0-CF less C4 DHT, C8 JPG, CC DAC), DHT, DAC, DQT, DNL, DRI, DHP, EXP, and JPEG-LS's LSE.
_KEPT = {*range(0xC0, 0xD0), 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xF7, 0xF8} - {0xC8}
# the next marker after entropy-coded data: FF followed by anything but a stuffed 00, a restart
# marker (D0-D7) or another fill FF
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _adobe(payload: bytes) -> bytes | None:
    """The Adobe APP14 segment with only its 12 defined bytes, None when it is not one."""
    if not payload.startswith(b"Adobe") or len(payload) < 12:
        return None
    return b"\xff\xee\x00\x0e" + payload[:12]


def _jfif(payload: bytes) -> bytes | None:
    """The JFIF APP0 segment without its thumbnail (zero thumbnail size), None for others (JFXX)."""
    if not payload.startswith(b"JFIF\x00") or len(payload) < 14:
        return None
    return b"\xff\xe0\x00\x10" + payload[:12] + b"\x00\x00"


def _segments(data: bytes, pos: int, out: list[bytes]) -> int:
    """Walk marker segments from ``pos``, appending the kept ones to ``out``; stop after SOS
    (returns its end) or at EOI (returns -1)."""
    for marker, start, end in iter_jpeg_segments(data, pos):
        if marker == 0xD9:
            return -1
        if 0xD0 <= marker <= 0xD8 or marker == 0x01 or end > len(data) or end < start + 4:
            raise ValueError(f"JPEG marker FF{marker:02X} at byte {start} is misplaced or runs past the data")
        if marker == 0xDA:
            out.append(data[start:end])
            return end
        payload = data[start + 4 : end]
        if marker == 0xEE:
            kept = _adobe(payload)
            if kept is not None:
                out.append(kept)
        elif marker == 0xE0:
            kept = _jfif(payload)
            if kept is not None:
                out.append(kept)
        elif marker in _KEPT:
            out.append(data[start:end])
        pos = end
    if data[pos : pos + 2] == EOI:  # the walk stops short of an EOI in the last two bytes
        return -1
    raise ValueError("JPEG stream ends before its end marker")


def scrub_jpeg(data: bytes) -> bytes:
    """``data`` (a complete or abbreviated JPEG stream, or a tables-only stream) with only the
    segments decoding needs and nothing after the end marker; ``data`` itself when nothing had to
    go. Between scans (and after the last one) the next marker is found with one search over the
    entropy-coded data, which is copied untouched."""
    if not data.startswith(SOI):
        raise ValueError("not a JPEG stream (no SOI marker)")
    out = [SOI]
    pos = _segments(data, 2, out)
    while pos >= 0:
        match = _NEXT_MARKER.search(data, pos)
        if match is None:
            raise ValueError("JPEG stream has no end marker")
        out.append(data[pos : match.start()])
        pos = _segments(data, match.start(), out)
    out.append(EOI)
    result = b"".join(out)
    return data if result == data else result


_J2K_SOC, _J2K_SOT, _J2K_SOD, _J2K_EOC, _J2K_COM = 0xFF4F, 0xFF90, 0xFF93, 0xFFD9, 0xFF64


def scrub_jpeg2000(data: bytes) -> bytes:
    """A raw J2K codestream without COM segments (main and tile-part headers), Psot fixed; the
    bit stream of each tile-part is copied as it is, nothing after EOC is kept."""
    if not data.startswith(b"\xff\x4f\xff\x51"):
        raise ValueError("not a raw JPEG 2000 codestream (no SOC/SIZ)")
    out = [data[:2]]
    pos = 2
    while True:  # main header, up to the first SOT
        marker, end = _j2k_segment(data, pos)
        if marker == _J2K_SOT:
            break
        if marker != _J2K_COM:
            out.append(data[pos:end])
        pos = end
    while True:
        if pos + 2 > len(data):
            raise ValueError("JPEG 2000 codestream has no end marker")
        (marker,) = struct.unpack(">H", data[pos : pos + 2])
        if marker == _J2K_EOC:
            break
        if marker != _J2K_SOT or pos + 12 > len(data):
            raise ValueError(f"JPEG 2000 tile-part expected at byte {pos}")
        (psot,) = struct.unpack(">I", data[pos + 6 : pos + 10])
        part_end = pos + psot if psot else len(data) - 2
        if part_end > len(data) or part_end < pos + 14:
            raise ValueError(f"JPEG 2000 tile-part at byte {pos} runs past the data")
        header = [data[pos : pos + 12]]
        cursor = pos + 12
        while True:
            marker, end = _j2k_segment(data, cursor)
            if marker == _J2K_SOD:
                break
            if marker != _J2K_COM:
                header.append(data[cursor:end])
            cursor = end
        body = data[cursor:part_end]  # SOD and the bit stream
        length = sum(map(len, header)) + len(body)
        header[0] = header[0][:6] + struct.pack(">I", length if psot else 0) + header[0][10:]
        out += [*header, body]
        pos = part_end
    out.append(data[pos : pos + 2])
    result = b"".join(out)
    return data if result == data else result


def _j2k_segment(data: bytes, pos: int) -> tuple[int, int]:
    """(marker, end) of the marker segment at ``pos``; SOD has no length."""
    if pos + 2 > len(data):
        raise ValueError(f"JPEG 2000 marker expected at byte {pos}")
    (marker,) = struct.unpack(">H", data[pos : pos + 2])
    if marker >> 8 != 0xFF:
        raise ValueError(f"JPEG 2000 marker expected at byte {pos}")
    if marker == _J2K_SOD:
        return marker, pos + 2
    if pos + 4 > len(data):
        raise ValueError(f"JPEG 2000 segment at byte {pos} is cut short")
    (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
    if length < 2 or pos + 2 + length > len(data):
        raise ValueError(f"JPEG 2000 segment at byte {pos} runs past the data")
    return marker, pos + 2 + length


def scrub_tile(data: bytes, compression: str) -> bytes:
    """Stored tile bytes of ``compression`` ("jpeg", "jpeg2000") without text segments; other
    codecs carry no segments and are returned as they are."""
    if compression == "jpeg":
        return scrub_jpeg(data)
    if compression == "jpeg2000":
        return scrub_jpeg2000(data)
    return data
