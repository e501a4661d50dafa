"""A layer's image lines as columns: what a million-line manifest costs in arrays, not objects.

:class:`ComponentTable` is a read-only sequence of :class:`Component` (one image line) backed by
numpy columns (Y, X, line number, and an index into the distinct path strings). The fast
parser (:func:`parse_plain`) builds it straight from the text with a few regular-expression and
array passes, so neither parsing nor opening a manifest of 10^6 lines makes 10^6 Python
objects; a ``Component`` is made only when an element is asked for. It compares equal to the
tuple of the same components, so code written against ``tuple[Component, ...]`` keeps working.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
_EMPTY: IntArray = np.zeros(0, np.int64)
_IMAGE_LINES = re.compile(r"^[ \t]*(\S.*\S|\S)[ \t]+(\d+)[ \t]+(\d+)[ \t\r]*$", re.MULTILINE)
# A path without spaces or '=' that does not start with '#' (else a comment or an attribute).
_SIMPLE_LINES = re.compile(r"^[ \t]*[^\s=#][^\s=]*[ \t]+\d+[ \t]+\d+[ \t\r]*$", re.MULTILINE)
_SKIP_LINES = re.compile(r"^[ \t]*(?:#.*|[ \t\r]*)$", re.MULTILINE)  # a comment or a blank line
_OTHER_LINES = re.compile(  # a layer line | an attribute (the line parser's classes)
    r"^[ \t]*(?:\d+[ \t]+[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[A-Za-z_][A-Za-z0-9_.\-]*[ \t]*=.*)[ \t\r]*$",
    re.MULTILINE,
)
_CHUNK = 1 << 20  # characters parsed at once
_MAX_DIGITS = 13  # an offset over 10^12 is refused anyway; longer ones go to the line parser


@dataclass(frozen=True, slots=True)
class Component:
    """One image line: ``path`` as written (relative to the manifest), level-0 offsets."""

    path: str
    y: int
    x: int
    quality: tuple[str, ...] = ()
    line: int = field(default=0, compare=False)


class ComponentTable(Sequence[Component]):
    """Image lines without quality words: ``paths[ids[i]]`` at (``ys[i]``, ``xs[i]``), line ``lines[i]``."""

    __slots__ = ("ids", "lines", "paths", "xs", "ys")

    def __init__(self, paths: Sequence[str], ids: IntArray, ys: IntArray, xs: IntArray, lines: IntArray) -> None:
        self.paths = tuple(paths)
        self.ids, self.ys, self.xs, self.lines = ids, ys, xs, lines

    @classmethod
    def of(cls, components: Sequence[Component]) -> ComponentTable:
        """``components`` as a table (quality words are not kept: nothing reads them)."""
        if isinstance(components, ComponentTable):
            return components
        index: dict[str, int] = {}
        ids = [index.setdefault(c.path, len(index)) for c in components]
        return cls(
            list(index),
            np.array(ids, np.int64),
            np.array([c.y for c in components], np.int64),
            np.array([c.x for c in components], np.int64),
            np.array([c.line for c in components], np.int64),
        )

    @classmethod
    def of_runs(cls, paths: Sequence[str], runs: Sequence[tuple[IntArray, ...]]) -> ComponentTable:
        """One table of runs of ``(ids, ys, xs, lines)`` columns (:func:`parse_plain`)."""
        if not runs:
            return cls(paths, _EMPTY, _EMPTY, _EMPTY, _EMPTY)
        ids, ys, xs, lines = (np.concatenate(column) for column in zip(*runs, strict=True))
        return cls(paths, ids, ys, xs, lines)

    def first_lines(self) -> dict[str, int]:
        """Each distinct path and the line of its first use."""
        _, first = np.unique(self.ids, return_index=True)
        return {self.paths[int(self.ids[i])]: int(self.lines[i]) for i in np.sort(first)}

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> Component: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Component, ...]: ...

    def __getitem__(self, index: int | slice) -> Component | tuple[Component, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        i = range(len(self))[index]
        return Component(self.paths[int(self.ids[i])], int(self.ys[i]), int(self.xs[i]), (), int(self.lines[i]))

    def __iter__(self) -> Iterator[Component]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ComponentTable):
            return (
                len(self) == len(other)
                and np.array_equal(self.ys, other.ys)
                and np.array_equal(self.xs, other.xs)
                and [self.paths[i] for i in self.ids.tolist()] == [other.paths[i] for i in other.ids.tolist()]
            )
        if isinstance(other, tuple):
            return tuple(self) == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"ComponentTable({len(self)} components, {len(self.paths)} paths)"


def first_lines(layers: Iterable[Sequence[Component]]) -> dict[str, int]:
    """Each distinct image path of a manifest's ``layers`` (their components) and the line of
    its first use."""
    found: dict[str, int] = {}
    for components in layers:
        for raw, line in ComponentTable.of(components).first_lines().items():
            found[raw] = min(line, found.get(raw, line))
    return dict(sorted(found.items(), key=lambda item: item[1]))


def parse_plain(
    body: str, first_line: int, index: dict[str, int], *, simple: bool = False
) -> tuple[IntArray, ...] | None:
    """Columns ``(ids, ys, xs, lines)`` of the image lines in ``body`` (lines ``first_line``...
    of the manifest), or None when some line is not a plain ``<path> <Y> <X>`` line or an offset
    has too many digits (the line parser then reports it). ``index`` numbers the paths;
    ``simple``: every line is known to match :data:`_SIMPLE_LINES`. Taken in pieces of about
    ``_CHUNK`` characters: the words of a huge manifest never exist as strings all at once."""
    runs = []
    position, line = 0, first_line
    while position <= len(body):
        end = body.find("\n", position + _CHUNK)
        end = len(body) if end < 0 else end
        run = _columns(body[position:end], line, index, simple=simple)
        if run is None:
            return None
        runs.append(run)
        position, line = end + 1, line + len(run[0])
    columns = tuple(np.concatenate(column) for column in zip(*runs, strict=True))
    return columns


def _columns(body: str, first_line: int, index: dict[str, int], *, simple: bool) -> tuple[IntArray, ...] | None:
    count = body.count("\n") + 1
    if simple or _SIMPLE_LINES.subn("", body)[1] == count:  # paths without spaces: the words are the columns
        words = body.split()
        paths, ys, xs = words[0::3], words[1::3], words[2::3]
    else:
        rows = _IMAGE_LINES.findall(body)
        if len(rows) != count:
            return None
        paths, ys, xs = (list(column) for column in zip(*rows, strict=True))
    if max(map(len, ys)) > _MAX_DIGITS or max(map(len, xs)) > _MAX_DIGITS:
        return None
    for path in dict.fromkeys(paths):
        index.setdefault(path, len(index))
    return (
        np.fromiter(map(index.__getitem__, paths), np.int64, count),
        np.array(ys, np.int64),
        np.array(xs, np.int64),
        np.arange(first_line, first_line + count, dtype=np.int64),
    )


def image_lines(
    body: str,
    marked: str,
    position: int,
    start: int,
    line: int,
    lines: int,
    starts: IntArray,
    ends: IntArray,
    index: dict[str, int],
) -> tuple[IntArray, ...] | None:
    """The columns of the image lines among ``lines`` lines from ``line`` (``marked[position:start]``),
    comments and blank lines left out."""
    segment = body[int(starts[line - 1]) : int(ends[line + lines - 2])]
    simple = marked.count("\x01", position, start)
    if not marked.count("\x02", position, start):
        return parse_plain(segment, line, index, simple=simple == lines)
    kinds = marked[position : start - 1 if start <= len(marked) else start].split("\n")
    keep = [i for i, kind in enumerate(kinds) if kind != "\x02"]
    if not keep:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    first = line - 1
    text = "\n".join([body[int(starts[first + i]) : int(ends[first + i])] for i in keep])
    run = parse_plain(text, 0, index, simple=simple == len(keep))
    if run is None:
        return None
    numbers = np.array(keep, np.int64) + line
    return run[0], run[1], run[2], numbers[run[3]]


def mark_simple(text: str) -> str:
    """``text`` with every ``<path without spaces or '='> <Y> <X>`` line replaced by ``\\x01``
    and every comment or blank line by ``\\x02`` (a regular-expression pass each; the layer
    and attribute lines are then found in a text a few bytes a line long)."""
    return _SKIP_LINES.sub("\x02", _SIMPLE_LINES.sub("\x01", text))


def other_lines(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every layer or attribute line of ``text`` (for the line parser)."""
    return [(m.start(), m.end()) for m in _OTHER_LINES.finditer(text)]
