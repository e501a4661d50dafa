"""Where an output may go, checked before any work.

Every command that writes calls :func:`refuse_source` (the destination must not be, contain or lie
inside any file or directory the source reads, compared by file identity, ``st_dev`` and
``st_ino``, and by resolved path, so a symlink, a hard link or ``./X`` is caught) and
:func:`prepare` (the parent is a directory we can write in, the name fits, an existing
destination is of the kind we write) before reading anything; :func:`prepare_outputs` does both
for a command's outputs. Writing and replacing is :mod:`composite.replace`. docs/destinations.md
has the rules and the tests that hold them.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import DestinationError, OutputExistsError

_PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"))
_SUFFIX_ROOM = 40  # ".PID-XXXXXXXX.partial" and the leading dot, with room to spare


# -- the source is never a destination ------------------------------------------------------------


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _real(path: Path) -> Path:
    try:
        return Path(os.path.realpath(path))
    except (OSError, RuntimeError, ValueError):
        return Path(os.path.abspath(path))


class _Ancestry:
    """Identities of a path's existing ancestors, cached by directory (sources share folders)."""

    def __init__(self) -> None:
        self._cache: dict[Path, frozenset[tuple[int, int]]] = {}

    def of(self, real: Path) -> frozenset[tuple[int, int]]:
        folder = real.parent
        if folder in self._cache:
            return self._cache[folder]
        ids = {i for p in (folder, *folder.parents) if (i := _identity(p)) is not None}
        self._cache[folder] = frozenset(ids)
        return self._cache[folder]


def refuse_source(outputs: Sequence[Path], sources: Iterable[Path], *, may_contain: bool = False) -> None:
    """Raise :class:`DestinationError` when an output is, contains or lies inside a source.

    ``outputs`` are the paths a command will create or replace; ``sources`` every file and
    directory its source reads. ``may_contain`` allows an output folder to hold sources (export
    adds files to a folder and never replaces it; it checks the names it writes itself).
    """
    ancestry = _Ancestry()
    outs = []
    for out in outputs:
        real = _real(out)
        outs.append((out, real, _identity(out), ancestry.of(real)))
    for source in sources:
        s_real = _real(source)
        s_id = _identity(source)
        s_above: frozenset[tuple[int, int]] | None = None
        for out, real, out_id, above in outs:
            if (out_id is not None and out_id == s_id) or real == s_real:
                raise DestinationError(
                    f"{out}: is the source {source}; composite never modifies the source: choose another destination"
                )
            if real.is_relative_to(s_real) or (s_id is not None and s_id in above):
                raise DestinationError(f"{out}: is inside the source {source}; choose a destination outside it")
            if may_contain:
                continue
            if s_above is None:
                s_above = ancestry.of(s_real)
            if s_real.is_relative_to(real) or (out_id is not None and out_id in s_above):
                raise DestinationError(
                    f"{out}: holds the source {source}, which replacing it would delete; choose another destination"
                )


# -- the place is writable, before any work -------------------------------------------------------


def _stem(dst: Path) -> str:
    """The start of temporary names beside ``dst``: its name, or a hash when that is too long."""
    name = dst.name
    if len(os.fsencode(name)) + _SUFFIX_ROOM > _name_max(dst.parent):
        import hashlib  # only for such names: OpenSSL costs milliseconds to load

        return "composite-" + hashlib.sha1(os.fsencode(name)).hexdigest()[:16]
    return name


def _name_max(folder: Path) -> int:
    for candidate in (folder, *folder.parents):
        with contextlib.suppress(OSError, ValueError):
            return os.pathconf(candidate, "PC_NAME_MAX")
    return 255


def _checked_name(path: Path) -> Path:
    """``path`` made absolute, refused when it has no name, its name is over the filesystem's
    limit or it lies under /proc or /sys."""
    absolute = Path(os.path.abspath(path))
    if absolute.name in ("", ".", ".."):
        raise DestinationError(f"{path}: not a file or directory name")
    name_max, length = _name_max(absolute.parent), len(os.fsencode(absolute.name))
    if length > name_max:
        raise DestinationError(f"{path}: file name too long ({length} bytes, at most {name_max})")
    real_parent = _real(absolute.parent)
    for pseudo in _PSEUDO_FILESYSTEMS:
        if real_parent == pseudo or real_parent.is_relative_to(pseudo):
            raise DestinationError(f"{path}: is under {pseudo}, a kernel filesystem; choose a real folder")
    return absolute


def _check_parent(absolute: Path, given: Path, *, parents: bool) -> tuple[Path, list[Path]]:
    """The nearest existing folder above ``absolute`` and the missing ones below it; raises when
    that is not a directory, or folders are missing without ``parents``."""
    folder = absolute.parent
    missing = []
    while not os.path.lexists(folder):
        missing.append(folder)
        folder = folder.parent
    if not os.path.isdir(folder):
        raise DestinationError(f"{folder}: not a directory (in the destination {given})")
    if missing and not parents:
        raise DestinationError(f"{missing[0]}: no such directory (create it, or pass --parents)")
    return folder, missing


def _os_error(path: Path, err: OSError, doing: str) -> DestinationError:
    reason = err.strerror or str(err)
    return DestinationError(f"{path}: {doing} ({reason})")


def prepare(dst: Path, *, overwrite: bool, directory: bool = False, parents: bool = False) -> None:
    """Check that ``dst`` can be written before anything is read; raise a one-line error if not.

    ``directory``: the output is a directory (CWS). Checks, in order: the name, the kind of an
    existing ``dst`` (see :func:`check_destination`), pseudo filesystems (/proc, /sys), the parent
    (a directory; missing ones are an error unless ``parents``), and that a file can be created
    there (a probe file, created and deleted).
    """
    absolute = _checked_name(dst)
    folder, missing = _check_parent(absolute, dst, parents=parents)
    check_destination(dst, overwrite=overwrite, directory=directory)
    if missing:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise DestinationError(f"{folder}: cannot create folders here (permission denied)")
        return
    probe = absolute.parent / f".{_stem(absolute)}.{os.getpid()}-{os.urandom(4).hex()}.partial"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as err:
        raise _os_error(absolute.parent, err, "cannot write here") from err
    with contextlib.suppress(OSError):
        os.unlink(probe)


def check_destination(dst: Path, *, overwrite: bool, directory: bool | None = None) -> None:
    """Raise when ``dst`` exists and overwriting was not asked for, or is of the wrong kind.

    An existing empty directory does not count as existing for a directory output:
    ``mkdir out && convert slide.svs out`` is normal. ``directory`` True (a CWS) refuses to replace
    a file, False refuses to replace a directory, None checks existence only. Anything other than
    a regular file, a directory or a symlink (a FIFO, a device) is never replaced.
    """
    try:
        st = os.lstat(dst)
    except FileNotFoundError:
        return
    except OSError as err:
        raise _os_error(Path(dst), err, "cannot check the destination") from err
    mode = st.st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
        raise DestinationError(f"{dst}: exists and is not a regular file or directory; choose another name")
    is_dir = stat.S_ISDIR(mode)
    empty_dir = is_dir and not any(Path(dst).iterdir())
    if directory and not is_dir and overwrite:
        raise DestinationError(f"{dst}: is not a directory, and this output is one; remove it or choose another name")
    if directory is False and is_dir and (overwrite or empty_dir):
        raise DestinationError(f"{dst}: is a directory, and this output is a file; choose another name")
    if not empty_dir and not overwrite:
        raise OutputExistsError(f"{dst}: already exists (use --overwrite to replace it)")


def prepare_folder(folder: Path, *, parents: bool = False) -> list[Path]:
    """Make sure ``folder`` is a directory files can be written in: an existing one, or created
    when its parent exists (all missing ones with ``parents``). For outputs that add files to a
    folder and never replace it (export). Returns the folders created (for :func:`remove_created`)."""
    absolute = Path(os.path.abspath(folder))
    created: list[Path] = []
    if os.path.lexists(absolute) and not os.path.isdir(absolute):
        raise DestinationError(f"{folder}: exists and is not a directory")
    if not os.path.isdir(absolute):
        absolute = _checked_name(folder)
        _, missing = _check_parent(absolute, folder, parents=parents)
        for path in [*reversed(missing), absolute]:
            try:
                path.mkdir()
            except OSError as err:
                remove_created(created)
                raise _os_error(folder, err, "cannot create the folder") from err
            created.append(path)
    probe = absolute / f".composite-probe.{os.getpid()}-{os.urandom(4).hex()}.partial"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as err:
        remove_created(created)
        raise _os_error(folder, err, "cannot write here") from err
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return created


def refuse_source_names(folder: Path, pattern: re.Pattern[str], sources: Iterable[Path]) -> None:
    """Raise when a file of ``folder`` whose name ``pattern`` matches (one a command may write
    there) is a source by identity or resolved path."""
    sources = list(sources)
    ids = {i for s in sources if (i := _identity(s)) is not None}
    reals = {_real(s) for s in sources}
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if pattern.fullmatch(entry.name):
            path = Path(entry.path)
            if _identity(path) in ids or _real(path) in reals:
                raise DestinationError(f"{path}: would be written and is the source; choose another folder")


def prepare_outputs(
    outputs: Sequence[tuple[Path, bool]],
    sources: Iterable[Path],
    *,
    overwrite: bool,
    parents: bool = False,
    may_contain: bool = False,
) -> list[Path]:
    """:func:`refuse_source` and :func:`prepare` for ``outputs`` ((path, is a directory) pairs),
    then, with ``parents``, the missing folders created; returns those (for :func:`remove_created`)."""
    refuse_source([path for path, _ in outputs], sources, may_contain=may_contain)
    for path, directory in outputs:
        prepare(path, overwrite=overwrite, directory=directory, parents=parents)
    created: list[Path] = []
    for path, _ in outputs:
        folder = Path(os.path.abspath(path)).parent
        missing = []
        while not os.path.lexists(folder):
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            except OSError as err:
                remove_created(created)
                raise _os_error(folder, err, "cannot create the folder") from err
            created.append(folder)
    return created


def remove_created(folders: Sequence[Path]) -> None:
    """Remove folders :func:`prepare_outputs` created, innermost first, if still empty."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()
