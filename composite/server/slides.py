"""The slide list behind ``/api/slides``: find CWS directories under ROOT and read their headers.

A CWS directory is any directory holding ``FinalScan.ini`` (name matched case-insensitively). Only
the INI text is read (never a block), and only what the list shows: size, levels, mpp and the
companion images. INI files are read by :mod:`composite.cwsini`, the module the CWS format reads them
with (so both agree on sizes and scale); the server serves files and never imports
``composite.formats`` (docs/serve.md).

The scan is cached. Each call stats the directories and INI files the last scan saw; only when one
of those mtimes changed (a slide added, removed, rewritten) is ROOT walked again, and only INI files
whose (mtime, size) changed are parsed again. The walk does not follow symlinked directories, skips
hidden entries and is bounded in depth and in directories visited, so a hostile tree cannot make
it unbounded. INI files are untrusted: a non-numeric value is "missing", an oversized file is not
read for block geometry.

Not supported: slides whose FinalScan.ini is a symlink leading outside ROOT (skipped), levels
declared by other vendors' INI names (FinalCond/SlideScan/SlideCond are counted, not described).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..cwsini import KNOWN_INI, block_canvas, level_sections, number, parse_ini, scale

MAX_DEPTH = 8
MAX_DIRECTORIES = 20_000
MAX_INI_BYTES = 64 * 1024 * 1024  # a 500k x 500k slide in 256 px blocks is about 120 MB of INI
COMPANIONS = {
    "thumbnail": ("slidethumb.jpg", "ss1.jpg"),
    "label": ("label.jpg",),
    "macro": ("macro.jpg",),
    "annotations": ("annotations.geojson", "annotations.json", "annotations.xml"),  # docs/annotations.md
}

_Parsed = tuple[tuple[int, int, frozenset[str]], "SlideInfo"]


@dataclass(frozen=True, slots=True)
class SlideInfo:
    """One entry of ``/api/slides``; ``url`` and the image URLs are relative to the site root."""

    name: str
    url: str
    ini: str
    width: int | None
    height: int | None
    levels: int
    mpp: float | None
    magnification: float | None
    images: dict[str, str | None]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "ini": self.ini,
            "width": self.width,
            "height": self.height,
            "levels": self.levels,
            "mpp": self.mpp,
            "magnification": self.magnification,
            **self.images,
        }


def describe_slide(directory: Path, ini: Path, names: list[str], *, name: str, url: str) -> SlideInfo:
    """Read one slide's FinalScan.ini (header and levels; all of it only when sizes need blocks)."""
    head = parse_ini(ini, strict=False, head_only=True)
    levels = level_sections(head)
    width, height = (number(levels[0][key].text) if key in levels.get(0, {}) else None for key in ("iwidth", "iheight"))
    size: tuple[int, int] | None = None
    if width and height and width > 0 and height > 0:
        size = int(width), int(height)
    elif ini.stat().st_size <= MAX_INI_BYTES:
        size = block_canvas(parse_ini(ini, strict=False))
    lower = {entry.lower(): entry for entry in names}
    count = len(levels) or sum(1 for known in KNOWN_INI if known in lower)
    images: dict[str, str | None] = {}
    for kind, candidates in COMPANIONS.items():
        found = next((lower[c] for c in candidates if c in lower), None)
        images[kind] = url + quote(found) if found else None
    mpp, magnification = scale(head)
    return SlideInfo(
        name=name,
        url=url,
        ini=ini.name,
        width=size[0] if size else None,
        height=size[1] if size else None,
        levels=max(count, 1),
        mpp=mpp,
        magnification=magnification,
        images=images,
    )


@dataclass
class SlideIndex:
    """The cached scan of ROOT; ``slides()`` is safe to call from worker threads."""

    root: Path
    url_prefix: str = "slides/"
    _watched: dict[str, int] = field(default_factory=dict)
    _parsed: dict[str, _Parsed] = field(default_factory=dict)
    _slides: list[SlideInfo] = field(default_factory=list)
    _scanned: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def slides(self) -> list[SlideInfo]:
        with self._lock:
            if not self._scanned or self._changed():
                self._scan()
            return list(self._slides)

    def _changed(self) -> bool:
        for path, mtime in self._watched.items():
            try:
                if os.stat(path, follow_symlinks=False).st_mtime_ns != mtime:
                    return True
            except OSError:
                return True
        return False

    def _scan(self) -> None:
        root = Path(os.path.realpath(self.root))
        watched: dict[str, int] = {}
        found: list[SlideInfo] = []
        parsed: dict[str, _Parsed] = {}
        pending: list[tuple[Path, int]] = [(root, 0)]
        visited = 0
        while pending and visited < MAX_DIRECTORIES:
            directory, depth = pending.pop()
            visited += 1
            try:
                watched[str(directory)] = os.stat(directory, follow_symlinks=False).st_mtime_ns
                with os.scandir(directory) as it:
                    entries = [e for e in it if not e.name.startswith(".")]
            except OSError:
                continue
            names = [e.name for e in entries]
            ini = next((e for e in entries if e.name.lower() == "finalscan.ini" and e.is_file()), None)
            if ini is not None:
                info = self._describe(root, directory, Path(ini.path), names, parsed, watched)
                if info is not None:
                    found.append(info)
                continue  # a slide directory holds blocks, not more slides
            if depth < MAX_DEPTH:
                pending.extend((Path(e.path), depth + 1) for e in entries if e.is_dir(follow_symlinks=False))
        found.sort(key=lambda s: s.name)
        self._watched, self._parsed, self._slides, self._scanned = watched, parsed, found, True

    def _describe(
        self,
        root: Path,
        directory: Path,
        ini: Path,
        names: list[str],
        parsed: dict[str, _Parsed],
        watched: dict[str, int],
    ) -> SlideInfo | None:
        real = os.path.realpath(ini)
        if os.path.commonpath([real, root]) != str(root):
            return None  # FinalScan.ini is a symlink out of ROOT: the file server would refuse it too
        try:
            st = os.stat(ini, follow_symlinks=False)
        except OSError:
            return None
        watched[str(ini)] = st.st_mtime_ns
        # A new companion image changes the directory mtime (so a rescan) but not the INI: the
        # directory's entries are part of the cache key.
        key = (st.st_mtime_ns, st.st_size, frozenset(names))
        cached = self._parsed.get(str(ini))
        if cached and cached[0] == key:
            info = cached[1]
        else:
            relative = directory.relative_to(root).as_posix()
            name = relative if relative != "." else directory.name
            url = self.url_prefix + ("" if relative == "." else quote(relative) + "/")
            try:
                info = describe_slide(directory, ini, names, name=name, url=url)
            except OSError:
                return None
        parsed[str(ini)] = (key, info)
        return info
