"""Opening a DICOM path: a whole-slide instance's series, a directory's one series, or a plain
DICOM image (the package's docstring says which). Imported by :func:`composite.formats.dicom.open_slide`
only, so format detection does not load pydicom, numpy-heavy frame readers or the tile pipeline.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ...errors import CompositeError, FormatError
from ...model import Slide
from . import single, wsi
from .instance import WSI_SOP_CLASS, Instance, read_header
from .part10 import candidates, is_part10

_SERIES_TAGS = ["SOPClassUID", "SeriesInstanceUID", "ImageType"]


def open_dicom(path: Path) -> Slide:
    with warnings.catch_warnings():  # pydicom warns about odd values as it converts them
        warnings.simplefilter("ignore")
        try:
            return _open(path)
        except CompositeError:
            raise
        except Exception as err:  # pydicom converts element values lazily: damage surfaces anywhere
            raise FormatError(f"{path}: damaged DICOM element ({type(err).__name__}: {err})") from err


def _open(path: Path) -> Slide:
    if path.is_dir():
        return _open_directory(path)
    header = read_header(path, tags=_SERIES_TAGS)
    if str(header.get("SOPClassUID", "")) != WSI_SOP_CLASS:
        return _open_single(path)
    series = str(header.get("SeriesInstanceUID", ""))
    members = [path]
    for other in candidates(path.parent):
        if other.resolve() != path.resolve() and is_part10(other) and _same_series(other, series):
            members.append(other)
    return _open_series(path, members)


def _same_series(path: Path, series: str) -> bool:
    try:
        header = read_header(path, tags=_SERIES_TAGS)
        sop, other = str(header.get("SOPClassUID", "")), str(header.get("SeriesInstanceUID", ""))
    except Exception:  # FormatError, or pydicom's lazy conversion of a damaged element
        return False  # a damaged stranger in the directory is not ours to report
    return sop == WSI_SOP_CLASS and other == series


def _open_directory(path: Path) -> Slide:
    series: dict[str, list[Path]] = {}
    others = 0
    for candidate in candidates(path):
        if not is_part10(candidate):
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
