"""The slide list behind ``/api/slides``: find the slides under ROOT and describe them.

CWS directories are described here from their INI text. Slides stored in other formats (files
named ``*.svs``, ``*.tif``, ``*.tiff``, ``*.aci``, and directories holding ``*.dcm`` files: a DICOM
series) are *candidates*, described by the ``describe_virtual`` callback the site passes in (it
opens them with the format readers, :mod:`composite.server.virtual`, imported only when a
candidate exists); one that fails to open is still listed, with its one-line error. Files another
listed slide reads (an ACI manifest's components) are not listed on their own.

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
import re
import threading
from collections.abc import Callable
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

VIRTUAL_SUFFIXES = frozenset({".svs", ".tif", ".tiff", ".aci"})
DICOM_SUFFIX = ".dcm"
# The file names a virtual CWS directory may have (the layout decides which it has).
VIRTUAL_FILE = re.compile(
    r"FinalScan\.ini|ScanSlide\.ini|ScanLevel[1-9][0-9]*\.ini|(?:L[1-9][0-9]*)?Da(?:0|[1-9][0-9]*)(?:_[ud][1-9])?\.jpg"
    r"|SlideThumb\.jpg|Ss1\.jpg|Label\.jpg|Macro\.jpg"
)

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
    format: str = "cws"
    error: str | None = None  # why the slide cannot be opened (then its URLs answer 422)

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
            "format": self.format,
            "error": self.error,
        }


Identity = tuple[int, int, int, int]
DescribeVirtual = Callable[[Path, Identity, str, str], tuple[SlideInfo, list[str]]]
"""``describe(path, identity, name, url) -> (info, files it reads)`` for a non-CWS slide."""


def identity_of(st: os.stat_result) -> Identity:
    """What must stay the same for an open slide or a described one to stay valid."""
    return (st.st_ino, st.st_dev, st.st_mtime_ns, st.st_size)


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
    describe_virtual: DescribeVirtual | None = None
    _watched: dict[str, int] = field(default_factory=dict)
    _parsed: dict[str, _Parsed] = field(default_factory=dict)
    _virtual: dict[str, tuple[Identity, SlideInfo, list[str]]] = field(default_factory=dict)
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
        candidates: list[tuple[Path, os.stat_result]] = []
        pending: list[tuple[Path, int]] = [(root, 0)]
        visited = 0
        while pending and visited < MAX_DIRECTORIES:
            directory, depth = pending.pop()
            visited += 1
            try:
                st_dir = os.stat(directory, follow_symlinks=False)
                watched[str(directory)] = st_dir.st_mtime_ns
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
            if self.describe_virtual is not None:
                candidates += _candidates(directory, st_dir, entries)
            if depth < MAX_DEPTH:
                pending.extend((Path(e.path), depth + 1) for e in entries if e.is_dir(follow_symlinks=False))
        found += self._describe_candidates(root, candidates, watched)
        found.sort(key=lambda s: s.name)
        self._watched, self._parsed, self._slides, self._scanned = watched, parsed, found, True

    def _describe_candidates(
        self, root: Path, candidates: list[tuple[Path, os.stat_result]], watched: dict[str, int]
    ) -> list[SlideInfo]:
        assert self.describe_virtual is not None or not candidates
        described: dict[str, tuple[Identity, SlideInfo, list[str]]] = {}
        parts: set[str] = set()
        # Manifests first: their components (pieces of one slide) are then neither opened nor listed.
        for path, st in sorted(candidates, key=lambda c: (c[0].suffix.lower() != ".aci", str(c[0]))):
            key, identity = str(path), identity_of(st)
            watched.setdefault(key, st.st_mtime_ns)
            if key in parts:
                continue
            cached = self._virtual.get(key)
            if cached is None or cached[0] != identity:
                relative = path.relative_to(root).as_posix()
                url = self.url_prefix + quote(relative) + "/"
                assert self.describe_virtual is not None
                info, reads = self.describe_virtual(path, identity, relative, url)
                cached = (identity, info, reads)
            described[key] = cached
            parts.update(part for part in cached[2] if part != key)
        self._virtual = described
        return [info for key, (_, info, _) in described.items() if key not in parts]

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


def _candidates(
    directory: Path, st: os.stat_result, entries: list[os.DirEntry[str]]
) -> list[tuple[Path, os.stat_result]]:
    """The non-CWS slides a directory may hold: files with a slide suffix, and the directory
    itself when it holds DICOM files (a series). Symlinks are not followed."""
    found: list[tuple[Path, os.stat_result]] = []
    dicom = False
    for entry in entries:
        suffix = os.path.splitext(entry.name)[1].lower()
        if suffix in VIRTUAL_SUFFIXES or suffix == DICOM_SUFFIX:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if suffix == DICOM_SUFFIX:
                    dicom = True
                else:
                    found.append((Path(entry.path), entry.stat(follow_symlinks=False)))
            except OSError:
                continue
    if dicom:
        found.append((directory, st))
    return found


def is_series(directory: str) -> bool:
    """Whether a directory may be a DICOM series: it holds ``*.dcm`` files and no FinalScan.ini (a
    CWS directory is served as its files)."""
    dicom = False
    with os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name.lower()
            if name == "finalscan.ini":
                return False
            dicom = dicom or (name.endswith(DICOM_SUFFIX) and not name.startswith("."))
    return dicom
