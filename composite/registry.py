"""Which format a path is, decided by content (magic bytes, INI files), and opening it.

Formats are modules under ``composite.formats`` of the :class:`Reader` shape (``NAME``,
``sniff(path) -> bool``, ``open_slide(path) -> Slide``), imported only when a path is opened; the
first in ``FORMAT_MODULES`` whose sniff says yes opens the path. Order matters: DICOM files may
also be TIFF (dual-personality), so DICOM comes first.
"""

from __future__ import annotations

import importlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast, runtime_checkable

from .errors import CompositeError, SlideNotFoundError, UnsupportedFormatError
from .limits import kind_of

if TYPE_CHECKING:  # the model loads numpy; the format modules import it when a slide is opened
    from .model import Slide


@runtime_checkable
class Reader(Protocol):
    """A format that composite reads: a module of ``composite.formats`` (tests/test_reader_contract.py
    holds every one to the same checks)."""

    NAME: str

    def sniff(self, path: Path) -> bool:
        """Whether ``path`` is of this format, from its content (cheap: headers, names)."""
        ...

    def open_slide(self, path: Path) -> Slide:
        """Open ``path``; raise a :class:`~composite.errors.CompositeError` on anything wrong."""
        ...


FORMAT_MODULES = (
    "composite.formats.dicom",
    "composite.formats.tiff",
    "composite.formats.cws",
    "composite.formats.aci",
    "composite.formats.image",
)


def format_modules() -> list[Reader]:
    return [cast(Reader, importlib.import_module(name)) for name in FORMAT_MODULES]


def detect_format(path: str | Path) -> Reader:
    """The format module that reads ``path``; raises when none does."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise SlideNotFoundError(f"{path}: no such file or directory") from None
    except OSError as err:  # a symlink loop, a name too long, no permission
        raise UnsupportedFormatError(f"{path}: cannot be opened ({err.strerror or err})") from err
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UnsupportedFormatError(f"{path}: is {kind_of(mode)}, not a slide file or directory")
    for name in FORMAT_MODULES:  # imported one by one: a slide found early never loads the later readers
        module = cast(Reader, importlib.import_module(name))
        try:
            if module.sniff(path):
                return module
        except OSError as err:
            raise UnsupportedFormatError(f"{path}: cannot be read ({err.strerror or err})") from err
    what = "directory with no slide in it" if path.is_dir() else "file of no format composite reads"
    if path.is_file() and path.stat().st_size == 0:
        what = "empty file"
    raise UnsupportedFormatError(f"{path}: {what}")


def open_slide(path: str | Path) -> Slide:
    """Open any slide composite reads: SVS, pyramidal TIFF, plain images, and the formats added."""
    path = Path(path)
    module = detect_format(path)
    try:
        slide = module.open_slide(path)
    except CompositeError:
        raise
    except (ValueError, OSError, KeyError, IndexError) as err:
        raise UnsupportedFormatError(f"{path}: cannot be opened as {module.NAME} ({err})") from err
    return slide


def source_files(path: str | Path) -> list[Path]:
    """Every file and directory opening ``path`` reads (an ACI's components, a DICOM series'
    instances), for refusing a destination that is one of them. Reads headers only."""
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return [path]
        module = detect_format(path)
    except (OSError, CompositeError):
        return [path]
    files = getattr(module, "source_files", None)
    return list(files(path)) if files is not None else [path]
