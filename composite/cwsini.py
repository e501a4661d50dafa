"""CWS INI files (docs/cws.md): parsing, forgiving about syntax, strict about safety.

The one INI module of the package: the CWS format and the server's slide list both read INI files
through it, so they agree on every value, the canvas size and its rounding. Standard library only
(and :mod:`composite.errors`, :mod:`composite.aperio`): the server imports it without the format code.

Windows INI as scanners write it: ``[Section]`` then ``key=value`` lines, CRLF or LF, keys in
any case, spaces around ``=`` or not. Values are kept as text; :func:`number` turns one into a
float and treats a placeholder such as ``%MAGNIFICATION%`` as missing. A section other than
``[Header]`` with both ``x=`` and ``y=`` is an image block; its coordinates are parsed here so that
a 100,000-block file is read with plain string operations (docs/cws.md has the figures).

An INI file is untrusted: binary content, a line that is neither a section nor ``key=value``, a
block coordinate that is not an integer or lies outside a 32-bit stage, and a block name that is
not a plain file name each raise one error naming the file and line.
"""

from __future__ import annotations

import math
import os
import re
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .aperio import parse_fields
from .errors import FormatError, LimitError, UnsafePathError, where
from .limits import open_regular, read_regular

# Level INI files by producer: ours/Aperio first, then the Olympus/Bacus set (docs/cws.md).
KNOWN_INI = ("finalscan.ini", "scanslide.ini", "finalcond.ini", "slidescan.ini", "slidecond.ini")
HEAD_BYTES = 256 * 1024  # what head_only parsing reads: the header and level sections of our files
MAX_SCALE = 1000.0  # the largest believable magnification or mpp
MAX_INI_BYTES = 256 * 1024 * 1024  # a 10-million-block INI is about 300 MB; refuse beyond that
MAX_BLOCKS = 8_000_000
STAGE_LIMIT = 2**31 - 1  # scanners store stage coordinates in a Windows LONG
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_UNSAFE_NAME = re.compile(r"[/\\:\x00]|^\.", re.MULTILINE)
_LEVEL_SECTION = re.compile(r"level(\d{1,3})")
_BLOCK_SECTION = re.compile(r"(l\d+)?da\d+", re.IGNORECASE)


@dataclass(slots=True)
class Value:
    """A value as written, and the line it is on (for error messages)."""

    text: str
    line: int


@dataclass
class IniFile:
    """One parsed INI file: the header, the other non-block sections, and the blocks.

    Section and key names are lower-cased for lookup; ``header_names`` keeps the spelling of
    each header key for properties. Blocks are parallel arrays in file order.
    """

    path: Path
    line_count: int
    header: dict[str, Value] = field(default_factory=dict)
    header_names: dict[str, str] = field(default_factory=dict)
    sections: dict[str, dict[str, Value]] = field(default_factory=dict)
    block_names: list[str] = field(default_factory=list)
    block_x: array[int] = field(default_factory=lambda: array("q"))
    block_y: array[int] = field(default_factory=lambda: array("q"))
    block_lines: array[int] = field(default_factory=lambda: array("q"))

    def error(self, line: int | None, message: str) -> FormatError:
        return FormatError(f"{where(self.path, line)}: {message}")

    def number(self, key: str, section: str = "header") -> float | None:
        """The numeric value of ``key``, or None when absent or not a number (a placeholder)."""
        values = self.header if section == "header" else self.sections.get(section, {})
        value = values.get(key.lower())
        return None if value is None else number(value.text)

    def text(self, key: str, section: str = "header") -> str | None:
        values = self.header if section == "header" else self.sections.get(section, {})
        value = values.get(key.lower())
        return None if value is None else value.text


def number(text: str) -> float | None:
    """A finite float, or None for anything else (``%MAGNIFICATION%``, empty, ``nan``)."""
    try:
        result = float(text)
    except ValueError:
        return None
    return result if math.isfinite(result) else None


def _decode(data: bytes, path: Path, *, strict: bool) -> str:
    nul = data.find(b"\x00")
    if nul >= 0 and strict:
        line = data.count(b"\n", 0, nul) + 1
        raise FormatError(f"{where(path, line)}: binary data, not an INI text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")  # Windows producers write ANSI text


def _coordinate(ini: IniFile, value: Value, key: str) -> int:
    parsed = number(value.text)
    if parsed is None or parsed != int(parsed):
        raise ini.error(value.line, f"block {key}= must be an integer stage coordinate, got {value.text[:40]!r}")
    if abs(parsed) > STAGE_LIMIT:
        raise ini.error(value.line, f"block {key}={value.text[:40]} is outside any stage (|{key}| <= {STAGE_LIMIT})")
    return int(parsed)


def parse_ini(path: Path, *, strict: bool = True, head_only: bool = False) -> IniFile:
    """Parse ``path``; raise :class:`FormatError` naming the file and line on anything unsafe.

    ``strict=False`` skips what strict parsing refuses (a line that is no ``key=value``, a control
    character, a block coordinate that is no integer, an unsafe block name) instead of raising.
    ``head_only`` reads at most :data:`HEAD_BYTES` and stops at the first section named like a
    block (``Da<N>``, ``L<k>Da<N>``): where our writer's header and level sections end.
    """
    if head_only:
        data = _read_head(path)
    else:
        data = read_regular(path, limit=MAX_INI_BYTES, error=FormatError, what="INI file")
    text = _decode(data, path, strict=strict)
    bad = _CONTROL.search(text)
    if bad and strict:
        line = text.count("\n", 0, bad.start()) + 1
        raise FormatError(f"{where(path, line)}: binary data (control character {bad.group()!r}), not an INI text file")
    ini = IniFile(path=path, line_count=text.count("\n") + 1 - (text == "" or text.endswith("\n")))
    _Parser(ini, strict=strict, head_only=head_only).run(_lines(text))
    return ini


def _read_head(path: Path) -> bytes:
    """The first :data:`HEAD_BYTES` of a regular file, cut after its last whole line."""
    fd = open_regular(path, error=FormatError, what="INI file")
    try:
        with open(fd, "rb", closefd=False) as fh:
            data = fh.read(HEAD_BYTES + 1)
    finally:
        os.close(fd)
    return data if len(data) <= HEAD_BYTES else data[: data.rfind(b"\n", 0, HEAD_BYTES) + 1]


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` one at a time (a list of them all would cost 60 bytes a line)."""
    start = 0
    while (end := text.find("\n", start)) >= 0:
        yield text[start:end]
        start = end + 1
    yield text[start:]


class _Parser:
    """One pass over the lines, lean enough for 100,000-block files: a block section's x/y and
    line number go straight into flat arrays, so no per-block objects are kept besides its name."""

    def __init__(self, ini: IniFile, *, strict: bool, head_only: bool) -> None:
        self.ini = ini
        self.strict = strict
        self.head_only = head_only
        self.seen: set[str] = set()

    def run(self, lines: Iterable[str]) -> None:
        ini = self.ini
        name = ""
        start = 0
        in_section = False
        x = y = z = None  # (text, line) of a section's x=, y=, z= (the first of each)
        extra: dict[str, Value] = {}
        for lineno, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line[0] in ";#":
                continue
            if line[0] == "[":
                end = line.find("]")
                if end < 0:
                    if not self.strict:
                        continue
                    raise ini.error(lineno, f"section header without ']': {line[:60]!r}")
                if in_section:
                    self.finish(name, start, x, y, z, extra)
                    in_section = False
                name = line[1:end].strip()
                if self.head_only and _BLOCK_SECTION.fullmatch(name):
                    break
                start = lineno
                in_section = True
                x = y = z = None
                extra = ini.header if name.lower() == "header" else {}
                continue
            eq = line.find("=")
            if (eq <= 0 or not in_section) and not self.strict:
                continue
            if eq <= 0:
                raise ini.error(lineno, f"expected '[Section]' or 'key=value', got {line[:60]!r}")
            if not in_section:
                raise ini.error(lineno, "key=value before any [Section]")
            key = line[:eq].strip()
            lower = key.lower()
            if extra is not ini.header:
                if lower == "x":
                    x = x or (line[eq + 1 :].strip(), lineno)
                    continue
                if lower == "y":
                    y = y or (line[eq + 1 :].strip(), lineno)
                    continue
                if lower == "z":
                    z = z or (line[eq + 1 :].strip(), lineno)
                    continue
            if lower not in extra:  # the first occurrence wins, as with GetPrivateProfileString
                extra[lower] = Value(line[eq + 1 :].strip(), lineno)
                if extra is ini.header:
                    ini.header_names[lower] = key
        if in_section:
            self.finish(name, start, x, y, z, extra)
        self.close()

    def finish(
        self,
        name: str,
        start: int,
        x: tuple[str, int] | None,
        y: tuple[str, int] | None,
        z: tuple[str, int] | None,
        extra: dict[str, Value],
    ) -> None:
        ini = self.ini
        if extra is ini.header:
            return
        lower = name.lower()
        if x is None or y is None:
            for key, item in (("x", x), ("y", y), ("z", z)):
                if item is not None:
                    extra[key] = Value(*item)
            ini.sections.setdefault(lower, extra)
            return
        if lower in self.seen:
            return  # a duplicate block section: the first one wins, as Windows INI readers do
        if len(ini.block_names) >= MAX_BLOCKS:
            raise LimitError(f"{where(ini.path, start)}: more than {MAX_BLOCKS} blocks")
        try:
            bx, by = _int_coordinate(ini, x, "x"), _int_coordinate(ini, y, "y")
        except FormatError:
            if self.strict:
                raise
            return
        self.seen.add(lower)
        ini.block_names.append(name)
        ini.block_lines.append(start)
        ini.block_x.append(bx)
        ini.block_y.append(by)

    def close(self) -> None:
        ini = self.ini
        self.seen.clear()
        if self.strict and _UNSAFE_NAME.search("\n".join(ini.block_names)):
            for name, line in zip(ini.block_names, ini.block_lines, strict=True):
                if _UNSAFE_NAME.search(name):
                    raise UnsafePathError(f"{where(ini.path, line)}: block name {name[:60]!r} is not a plain file name")


def _int_coordinate(ini: IniFile, item: tuple[str, int], key: str) -> int:
    try:
        value = int(item[0])
    except ValueError:  # report the bad line, or accept "12.0"
        return _coordinate(ini, Value(*item), key)
    return value if -STAGE_LIMIT <= value <= STAGE_LIMIT else _coordinate(ini, Value(*item), key)


def level_sections(ini: IniFile) -> dict[int, dict[str, Value]]:
    """The ``[Level<k>]`` sections of a main INI file by k (our writer's level list)."""
    found = {}
    for name, values in ini.sections.items():
        match = _LEVEL_SECTION.fullmatch(name)
        if match:
            found[int(match.group(1))] = values
    return dict(sorted(found.items()))


def canvas_side(low: float, high: float, step: float, units: float) -> int:
    """Pixels spanned by block centres from ``low`` to ``high`` (stage units), blocks ``step``
    units wide at ``units`` per pixel: ``floor(span + 0.5)``, at least 1 (docs/cws.md, "Placement")."""
    return max(1, math.floor((high - low + step) / units + 0.5))


def block_canvas(ini: IniFile) -> tuple[int, int] | None:
    """The canvas of ``ini``'s blocks from their centres and the header's step sizes, None when
    the header lacks a block size or step size or there are no blocks."""
    width, height = ini.number("iImageWidth"), ini.number("iImageHeight")
    step_x, step_y = ini.number("lXStepSize"), ini.number("lYStepSize")
    if not (width and height and step_x and step_y) or min(width, height, step_x, step_y) <= 0 or not ini.block_x:
        return None
    return (
        canvas_side(min(ini.block_x), max(ini.block_x), step_x, step_x / width),
        canvas_side(min(ini.block_y), max(ini.block_y), step_y, step_y / height),
    )


def _positive(value: float | None) -> float | None:
    return value if value is not None and 0 < value <= MAX_SCALE else None


def scale(ini: IniFile) -> tuple[float | None, float | None]:
    """(mpp, magnification) of a main INI file: ``tMPP``/``dMagnification``, else the ``MPP``/``AppMag``
    fields of ``tDescription``, else mpp from the magnification (20x is about 0.5 um/px; never
    from stage units, docs/cws.md)."""
    fields = parse_fields(ini.text("tDescription"))
    magnification = _positive(ini.number("dMagnification")) or _positive(number(fields.get("AppMag", "")))
    mpp = _positive(ini.number("tMPP")) or _positive(number(fields.get("MPP", "")))
    if mpp is None and magnification:
        mpp = 10.0 / magnification
    return mpp, magnification
