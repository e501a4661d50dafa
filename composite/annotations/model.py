"""Annotations as this package holds them: regions with a GeoJSON geometry in level-0 pixels.

A :class:`Region` is one mark: its ``geometry`` is a GeoJSON geometry object (``Polygon``,
``MultiPolygon``, ``Point``, ``MultiPoint``, ``LineString``) whose coordinates are level-0 pixels
with (0, 0) the top-left corner of the top-left pixel (pixel (i, j) covers [i, i+1) x [j, j+1));
``name`` is the region's own text (ImageScope's ``Text``, QuPath's ``name``), ``classification``
its layer or class (ImageScope's ``Annotation Name``, QuPath's ``classification.name``), ``kind``
how it was drawn (``polygon``, ``rectangle``, ``ellipse``, ``point``, ``line``). The readers
(:mod:`.imagescope`, :mod:`.geojson`) and writers produce and consume :class:`Annotations`.

Annotation files are untrusted input: the limits below bound what a reader accepts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import FormatError, LimitError

MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_VERTICES = 4_000_000  # in one file, all regions together
MAX_REGIONS = 200_000
MAX_COORDINATE = 1e8  # level-0 pixels; slides are at most a few 10^6 px a side
KINDS = ("polygon", "rectangle", "ellipse", "point", "line")
AREA_TYPES = ("Polygon", "MultiPolygon")

Color = tuple[int, int, int]
Geometry = dict[str, Any]


@dataclass(frozen=True)
class Region:
    """One annotated region; see the module docstring for the fields' meaning."""

    geometry: Geometry
    name: str = ""
    classification: str = ""
    kind: str = "polygon"
    color: Color | None = None

    @property
    def has_area(self) -> bool:
        return self.geometry["type"] in AREA_TYPES

    @property
    def label(self) -> str:
        """What the region is called: its name, else its class, else ``region``."""
        return self.name or self.classification or "region"

    def bounds(self) -> tuple[float, float, float, float]:
        """(min x, min y, max x, max y) of every coordinate, level-0 pixels."""
        xs, ys = [], []
        for x, y in points(self.geometry):
            xs.append(x)
            ys.append(y)
        return min(xs), min(ys), max(xs), max(ys)


@dataclass
class Annotations:
    """The regions of one file, in file order, and the file's microns per pixel when it says."""

    regions: list[Region] = field(default_factory=list)
    mpp: float | None = None
    source: str = ""

    def select(self, wanted: Sequence[str]) -> Annotations:
        """The regions whose name or class is one of ``wanted`` (case-insensitive); all when empty."""
        if not wanted:
            return self
        keys = {w.casefold() for w in wanted}
        chosen = [r for r in self.regions if r.name.casefold() in keys or r.classification.casefold() in keys]
        missing = keys - {r.name.casefold() for r in chosen} - {r.classification.casefold() for r in chosen}
        if missing:
            known = sorted(
                {r.name for r in self.regions if r.name} | {r.classification for r in self.regions if r.classification}
            )
            raise FormatError(
                f"{self.source}: no region named or classified {', '.join(sorted(missing))!s}"
                f" (names and classes: {', '.join(known) or 'none'})"
            )
        return Annotations(chosen, self.mpp, self.source)


def points(geometry: Geometry) -> Iterable[tuple[float, float]]:
    """Every coordinate pair of a GeoJSON geometry."""
    kind, coords = geometry["type"], geometry["coordinates"]
    if kind == "Point":
        yield coords[0], coords[1]
        return
    depth = {"MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}[kind]

    def walk(node: Any, level: int) -> Iterable[tuple[float, float]]:
        if level == 0:
            for x, y, *_ in node:
                yield x, y
        else:
            for child in node:
                yield from walk(child, level - 1)

    yield from walk(coords, depth - 1)


class VertexBudget:
    """Counts vertices as a reader meets them and refuses a file past :data:`MAX_VERTICES`."""

    def __init__(self, source: str, limit: int | None = None) -> None:
        self.source, self.limit, self.used = source, limit or MAX_VERTICES, 0

    def take(self, count: int) -> None:
        self.used += count
        if self.used > self.limit:
            raise LimitError(f"{self.source}: more than {self.limit:,} vertices (limit for an annotation file)")


def coordinate(value: Any, source: str, what: str) -> float:
    """A finite level-0 coordinate, or a FormatError naming the file and the element."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FormatError(f"{source}: {what}: coordinate {value!r} is not a number") from None
    if not math.isfinite(number) or abs(number) > MAX_COORDINATE:
        raise FormatError(f"{source}: {what}: coordinate {value!r} is not a finite pixel position")
    return number


def close_ring(ring: list[list[float]]) -> list[list[float]]:
    """The ring with its first vertex repeated at the end (GeoJSON's closed rings)."""
    return ring if ring and ring[0] == ring[-1] else [*ring, list(ring[0])]
