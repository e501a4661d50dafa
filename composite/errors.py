"""Errors raised by composite.

One base class, :class:`CompositeError`; subclasses also derive from the builtin a caller would
expect (``FormatError`` is a ``ValueError``), so ``except ValueError`` keeps working. Messages name
the file first: ``path: what is wrong (expected X, got Y)``, with ``:line`` for text formats. The
CLI prints ``str(error)`` as one line and exits 2.
"""

from __future__ import annotations

from pathlib import Path


class CompositeError(Exception):
    """Base class of every error composite raises on purpose."""


class SlideNotFoundError(CompositeError, FileNotFoundError):
    """The path does not exist."""


class UnsupportedFormatError(CompositeError, ValueError):
    """No reader recognises the file."""


class FormatError(CompositeError, ValueError):
    """The file claims a format but breaks its rules (bad header, bad INI line, bad manifest)."""


class TileReadError(CompositeError, OSError):
    """Tile data could not be read or decoded (damaged file)."""


class UnsafePathError(CompositeError, PermissionError):
    """An untrusted file refers to a path outside the tree it may use."""


class OutputExistsError(CompositeError, FileExistsError):
    """The destination exists and overwriting was not asked for."""


class DestinationError(CompositeError, OSError):
    """The destination cannot be written: it is the source, its folder is missing or read-only,
    the disk is full, the name is too long."""


class LimitError(CompositeError, ValueError):
    """A declared size or count is beyond what we allocate for (untrusted input)."""


class DroppedWarning(UserWarning):
    """Something of the source the output cannot hold (a label in a plain TIFF, a small level);
    the CLI prints it as one line, and ``--strict`` makes it an error."""


def where(path: str | Path, line: int | None = None) -> str:
    """Return ``path`` or ``path:line`` for the start of an error message."""
    return f"{path}:{line}" if line is not None else str(path)
