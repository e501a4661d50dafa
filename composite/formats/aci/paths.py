"""Where a manifest's component path points, and whether an untrusted manifest may use it.

A manifest is untrusted input: by default a component must resolve (following symlinks) inside
the directory that holds the manifest. Absolute paths (``/x``, ``C:\\x``, ``\\\\server\\x``), ``..``
that leads out of the directory and symlinks that lead out are refused with
:class:`~composite.errors.UnsafePathError` naming the manifest and line, before the component is
opened or even stat-ed. ``allow_outside=True`` lifts the restriction (the ``--allow-outside``
flag). Backslashes are directory separators (manifests are often written on Windows).

Not protected against: a symlink inside the tree swapped for one leading out between the check
and the open (do not serve manifests from directories other users can write to).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from ...errors import FormatError, UnsafePathError, where

_DRIVE = re.compile(r"[A-Za-z]:")


def manifest_base(manifest: Path) -> Path:
    """The directory component paths are relative to: the manifest's own, symlinks resolved."""
    try:
        return manifest.absolute().parent.resolve()
    except (RuntimeError, OSError) as err:
        raise FormatError(f"{manifest}: its directory cannot be resolved ({err})") from err


def resolve_component(raw: str, *, manifest: Path | str, line: int, base: Path, allow_outside: bool = False) -> Path:
    """The real path of component ``raw``; raises UnsafePathError when it leads outside ``base``."""
    text = raw.replace("\\", "/")
    if "\x00" in text:
        raise FormatError(f"{where(manifest, line)}: component path contains a NUL character")
    absolute = PurePosixPath(text).is_absolute() or bool(_DRIVE.match(text))
    if absolute and not allow_outside:
        raise _unsafe(raw, manifest, line, base, "an absolute path")
    candidate = Path(text) if absolute else base / text
    if allow_outside:
        return _resolve(candidate, raw, manifest, line)
    lexical = Path(os.path.normpath(candidate))
    if not lexical.is_relative_to(base):
        raise _unsafe(raw, manifest, line, base, "'..' leads out of the manifest's directory")
    real = _resolve(candidate, raw, manifest, line)
    if not real.is_relative_to(base):
        raise _unsafe(raw, manifest, line, base, "a symlink leads out of the manifest's directory")
    return real


def _resolve(candidate: Path, raw: str, manifest: Path | str, line: int) -> Path:
    """``candidate`` with symlinks resolved; a symlink loop is an error naming the line."""
    try:
        return candidate.resolve()
    except (RuntimeError, OSError) as err:  # Python 3.11-3.12 raise RuntimeError on a loop
        raise FormatError(f"{where(manifest, line)}: component {raw!r} cannot be resolved ({err})") from err


def _unsafe(raw: str, manifest: Path | str, line: int, base: Path, reason: str) -> UnsafePathError:
    return UnsafePathError(
        f"{where(manifest, line)}: component {raw!r} refused: {reason} ({base}); "
        "pass --allow-outside to trust this manifest"
    )
