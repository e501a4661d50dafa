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
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import LimitError
from .part10 import candidates, is_part10, maybe_dicom

if TYPE_CHECKING:
    from ...model import Slide

NAME = "dicom"
_SNIFF_LIMIT = 256


def sniff(path: Path) -> bool:
    if path.is_file():
        return is_part10(path)
    if not path.is_dir():
        return False
    with os.scandir(path) as entries:  # lazily: a CWS directory holds thousands of blocks
        files = (Path(entry.path) for entry in entries if maybe_dicom(entry))
        return any(is_part10(p) for p in itertools.islice(files, _SNIFF_LIMIT))


def source_files(path: Path) -> list[Path]:
    """What opening ``path`` may read: a directory, or a file and the DICOM files beside it
    (a whole-slide instance opens its series from its directory)."""
    if path.is_dir():
        return [path]
    try:
        return [path, *(other for other in candidates(path.parent) if is_part10(other))]
    except (OSError, LimitError):
        return [path, path.parent]


def open_slide(path: Path) -> Slide:
    """Open a DICOM file or directory (:mod:`.opening`: pydicom and the frame readers are
    imported only here, so telling an SVS from DICOM never loads them)."""
    from .opening import open_dicom

    return open_dicom(path)
