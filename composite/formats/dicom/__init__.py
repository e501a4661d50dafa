"""DICOM reader: whole-slide series (VL WSI) and plain single/multi-frame images.

A path is DICOM when the file has ``DICM`` at byte 128 (Part 10), or is a directory holding such
files. A whole-slide instance opens its whole series: every instance in the same directory with
the same SeriesInstanceUID (see :mod:`.wsi`); a directory opens the one WSI series in it. Any
other DICOM image opens as a slide of its frames rendered to 8 bits (see :mod:`.single`).
Only headers are read when opening (``stop_before_pixels``); frames are read on demand
(:mod:`.instance`). pydicom is an optional extra: without it, opening a DICOM file says
``pip install composite[dicom]``.

Not supported: DICOMDIR indexes, directories with several WSI series (open a file of the one you
want), files without the Part 10 preamble, and what the submodules list.
"""

from __future__ import annotations

import itertools
import os
import warnings
from pathlib import Path
from typing import Any

from ...errors import FormatError, LimitError
from ...model import Slide
from . import single, wsi
from .instance import WSI_SOP_CLASS, Instance, read_header

NAME = "dicom"
_NOT_DICOM_SUFFIXES = {
    ".jpg", ".jpeg", ".png", ".ini", ".txt", ".xml", ".json", ".html", ".js", ".css", ".svs", ".tif",
    ".tiff", ".aci", ".md", ".py", ".gif", ".bmp", ".webp", ".j2k", ".zip",
}  # fmt: skip
_SNIFF_LIMIT = 256
_MAX_FILES = 100_000
_SERIES_TAGS = ["SOPClassUID", "SeriesInstanceUID", "ImageType"]


def _is_part10(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def _maybe_dicom(entry: os.DirEntry[str]) -> bool:
    """Not hidden, not a known other format, a regular file."""
    name = entry.name
    # os.path, not pathlib: Path(name) interns every name, and the interned-string table would
    # keep its size for a directory of a hundred thousand blocks (about 1 MB) for good.
    return not name.startswith(".") and os.path.splitext(name)[1].lower() not in _NOT_DICOM_SUFFIXES and entry.is_file()


def _candidates(directory: Path) -> list[Path]:
    """Files of a directory that may be DICOM, sorted by name."""
    with os.scandir(directory) as entries:
        files = [Path(entry.path) for entry in entries if _maybe_dicom(entry)]
    if len(files) > _MAX_FILES:
        raise LimitError(f"{directory}: {len(files)} files to look through, more than {_MAX_FILES}")
    return sorted(files)


def sniff(path: Path) -> bool:
    if path.is_file():
        return _is_part10(path)
    if not path.is_dir():
        return False
    with os.scandir(path) as entries:  # lazily: a CWS directory holds thousands of blocks
        candidates = (Path(entry.path) for entry in entries if _maybe_dicom(entry))
        return any(_is_part10(p) for p in itertools.islice(candidates, _SNIFF_LIMIT))


def source_files(path: Path) -> list[Path]:
    """What opening ``path`` may read: a directory, or a file and the DICOM files beside it
    (a whole-slide instance opens its series from its directory)."""
    if path.is_dir():
        return [path]
    try:
        return [path, *(other for other in _candidates(path.parent) if _is_part10(other))]
    except (OSError, LimitError):
        return [path, path.parent]


def open_slide(path: Path) -> Slide:
    with warnings.catch_warnings():  # pydicom warns about odd values as it converts them
        warnings.simplefilter("ignore")
        return _open(path)


def _open(path: Path) -> Slide:
    if path.is_dir():
        return _open_directory(path)
    header = read_header(path, tags=_SERIES_TAGS)
    if str(header.get("SOPClassUID", "")) != WSI_SOP_CLASS:
        return _open_single(path)
    series = str(header.get("SeriesInstanceUID", ""))
    members = [path]
    for other in _candidates(path.parent):
        if other.resolve() != path.resolve() and _is_part10(other) and _same_series(other, series):
            members.append(other)
    return _open_series(path, members)


def _same_series(path: Path, series: str) -> bool:
    try:
        header = read_header(path, tags=_SERIES_TAGS)
    except FormatError:
        return False  # a damaged stranger in the directory is not ours to report
    return str(header.get("SOPClassUID", "")) == WSI_SOP_CLASS and str(header.get("SeriesInstanceUID", "")) == series


def _open_directory(path: Path) -> Slide:
    series: dict[str, list[Path]] = {}
    others = 0
    for candidate in _candidates(path):
        if not _is_part10(candidate):
            continue
        header: Any = read_header(candidate, tags=_SERIES_TAGS)
        if str(header.get("SOPClassUID", "")) == WSI_SOP_CLASS:
            series.setdefault(str(header.get("SeriesInstanceUID", "")), []).append(candidate)
        else:
            others += 1
    if not series:
        raise FormatError(
            f"{path}: directory holds {others} DICOM file(s) but no whole-slide series;"
            " open one file to read its frames"
        )
    if len(series) > 1:
        examples = ", ".join(files[0].name for files in series.values())
        raise FormatError(f"{path}: directory holds {len(series)} whole-slide series; open a file of one ({examples})")
    (members,) = series.values()
    return _open_series(path, members)


def _open_series(path: Path, members: list[Path]) -> Slide:
    instances: list[Instance] = []
    try:
        for member in members:
            instances.append(Instance(member))
        return wsi.build_slide(path, instances)
    except BaseException:
        for inst in instances:
            inst.close()
        raise


def _open_single(path: Path) -> Slide:
    inst = Instance(path)
    try:
        return single.build_slide(path, inst)
    except BaseException:
        inst.close()
        raise
