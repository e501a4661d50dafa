"""The component slides of a composite: their headers, cached once, and a bounded pool of open ones.

A composite may reference a few files a million times or a million files once. Each distinct
file is opened once while the composite opens, to learn its size and pyramid
(:class:`ComponentInfo`); pixel reads then borrow open slides from a least-recently-used pool of
at most ``max_open`` (opened again on demand, evicted ones closed). One pool serves a composite
and every ACI nested in it, so nesting cannot multiply open files. Borrowing is thread-safe and
reference-counted: a slide in use by one thread is never closed under it by another.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ...codecs import TileEncoding
from ...model import Level, Slide

DEFAULT_MAX_OPEN = 32
_DOWNSAMPLE_TOLERANCE = 0.02  # same rule as composite.pyramid: 2% is "the same downsample"

Opener = Callable[[], Slide]


def nominal_downsample(downsample: float) -> float:
    """The whole number a level's downsample stands for (4.0003 -> 4), else the value itself.

    Pyramids store floor(width / 4) wide levels, so their measured downsample is a little off;
    pixel i of such a level still covers level-0 pixels 4i..4i+3.
    """
    rounded = round(downsample)
    if rounded >= 1 and abs(downsample - rounded) <= _DOWNSAMPLE_TOLERANCE * downsample:
        return float(rounded)
    return downsample


@dataclass(frozen=True, slots=True)
class LevelInfo:
    """One level of a component: nominal downsample, tile size, and how its tiles are stored.

    ``tiled`` is False for plain image files, whose one "tile" is the whole file.
    """

    downsample: float
    tile_size: tuple[int, int]
    tiled: bool
    encoding: TileEncoding | None


@dataclass(frozen=True, slots=True)
class ComponentInfo:
    """What the composite needs to know about a component file without reading pixels."""

    width: int
    height: int
    levels: tuple[LevelInfo, ...]
    mpp: tuple[float, float] | None
    magnification: float | None

    @classmethod
    def of(cls, slide: Slide) -> ComponentInfo:
        base = slide.levels[0]
        levels = tuple(
            LevelInfo(
                1.0 if index == 0 else nominal_downsample(level.downsample),
                (level.grid.tile_width, level.grid.tile_height),
                slide.format != "image",  # a whole JPEG file (EXIF, progressive...) is no TIFF tile
                level.encoding,
            )
            for index, level in enumerate(slide.levels)
        )
        return cls(base.width, base.height, levels, slide.mpp, slide.magnification)

    @property
    def downsamples(self) -> tuple[float, ...]:
        return tuple(level.downsample for level in self.levels)

    def level_at(self, downsample: float) -> LevelInfo | None:
        return next((level for level in self.levels if level.downsample == downsample), None)


def best_level(slide: Slide, downsample: float) -> tuple[Level, float]:
    """The coarsest level of ``slide`` not coarser than ``downsample``, with its nominal downsample."""
    best, best_ds = slide.levels[0], 1.0
    for level in slide.levels[1:]:
        ds = nominal_downsample(level.downsample)
        if best_ds < ds <= downsample * (1 + 1e-9):
            best, best_ds = level, ds
    return best, best_ds


def own_level(slide: Slide, downsample: int) -> Level | None:
    """The level of ``slide`` whose nominal downsample is exactly ``downsample``, if any."""
    if downsample == 1:
        return slide.levels[0]
    return next((lv for lv in slide.levels[1:] if nominal_downsample(lv.downsample) == downsample), None)


class _Entry:
    __slots__ = ("slide", "users")

    def __init__(self, slide: Slide) -> None:
        self.slide = slide
        self.users = 0


class ComponentPool:
    """Component headers (kept) and open component slides (at most ``max_open`` idle ones)."""

    def __init__(self, *, max_open: int = DEFAULT_MAX_OPEN) -> None:
        if max_open < 1:
            raise ValueError(f"max_open must be at least 1, got {max_open}")
        self.max_open = max_open
        # Re-entrant: opening a nested ACI borrows its own components while the lock is held.
        self._lock = threading.RLock()
        self._open: OrderedDict[Path, _Entry] = OrderedDict()
        self._openers: dict[Path, Opener] = {}
        self._info: dict[Path, ComponentInfo] = {}
        self._closed = False
        self.opens = 0  # files opened so far (tests count them)

    def info(self, path: Path, opener: Opener) -> ComponentInfo:
        """The header of ``path``, opening it the first time (``opener`` is kept for reopening)."""
        with self._lock:
            found = self._info.get(path)
            if found is not None:
                return found
            self._openers.setdefault(path, opener)
            with self.use(path) as slide:
                info = self._info[path] = ComponentInfo.of(slide)
            return info

    @contextmanager
    def use(self, path: Path) -> Iterator[Slide]:
        """Borrow the open slide of ``path`` (opened if needed); it stays open while borrowed."""
        with self._lock:
            if self._closed:
                raise ValueError("the composite slide is closed")
            entry = self._open.get(path)
            if entry is None:
                entry = _Entry(self._openers[path]())
                self.opens += 1
                self._open[path] = entry
            self._open.move_to_end(path)
            entry.users += 1
            self._evict()
        try:
            yield entry.slide
        finally:
            with self._lock:
                entry.users -= 1
                self._evict()

    def _evict(self) -> None:
        if len(self._open) <= self.max_open:
            return
        for path in [p for p, e in self._open.items() if e.users == 0]:
            if len(self._open) <= self.max_open:
                break
            self._open.pop(path).slide.close()

    @property
    def open_count(self) -> int:
        return len(self._open)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            while self._open:
                _, entry = self._open.popitem()
                entry.slide.close()
