"""Which files are DICOM Part 10 (``DICM`` at byte 128), and which files of a directory may be.

Shared by format detection (the package) and opening (:mod:`.opening`); no pydicom here.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import LimitError

_NOT_DICOM_SUFFIXES = {
    ".jpg", ".jpeg", ".png", ".ini", ".txt", ".xml", ".json", ".html", ".js", ".css", ".svs", ".tif",
    ".tiff", ".aci", ".md", ".py", ".gif", ".bmp", ".webp", ".j2k", ".zip",
}  # fmt: skip
_MAX_FILES = 100_000


def is_part10(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def maybe_dicom(entry: os.DirEntry[str]) -> bool:
    """Not hidden, not a known other format, a regular file."""
    name = entry.name
    # os.path, not pathlib: Path(name) interns every name, and the interned-string table would
    # keep its size for a directory of a hundred thousand blocks (about 1 MB) for good.
    return not name.startswith(".") and os.path.splitext(name)[1].lower() not in _NOT_DICOM_SUFFIXES and entry.is_file()


def candidates(directory: Path) -> list[Path]:
    """Files of a directory that may be DICOM, sorted by name."""
    with os.scandir(directory) as entries:
        files = [Path(entry.path) for entry in entries if maybe_dicom(entry)]
    if len(files) > _MAX_FILES:
        raise LimitError(f"{directory}: {len(files)} files to look through, more than {_MAX_FILES}")
    return sorted(files)
