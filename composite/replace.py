"""Writing under a temporary name and replacing the destination crash-safely.

:func:`atomic_output` checks the place (:func:`composite.destination.prepare`), writes under a
hidden temporary name beside the destination and puts it in place:

- a file: ``rename`` over the old one (atomic);
- a directory over an existing one: ``renameat2(RENAME_EXCHANGE)`` swaps the two in one step,
  then the old one (now under the temporary name) is deleted. At every instant the destination
  holds the old complete output or the new complete one;
- where the exchange is unavailable (not Linux, a filesystem without it): the old directory is
  renamed to ``.NAME.PID-XXXX.old``, the new one renamed in, the old one deleted. A kill between
  the two renames leaves no destination; the next run on that destination renames the ``.old``
  back (:func:`repair`), so the old complete output returns.

Temporary names are ``.NAME.PID-XXXXXXXX.partial`` (and ``.old``): SIGINT and SIGTERM unwind
and delete them (the CLI turns SIGTERM into an exception); SIGKILL cannot be caught, so the next
run writing the same destination deletes those whose process is gone. (A PID reused by an
unrelated process keeps its leftovers until that process ends; a directory shared between
machines should not be written to the same name from two of them.)

For tests, ``COMPOSITE_TEST_KILL_AT=<step>`` makes the process SIGKILL itself at a step of the
replacement (:data:`STEPS`), ``COMPOSITE_TEST_PAUSE_AT=<step>`` makes it wait there, and
``COMPOSITE_TEST_NO_EXCHANGE=1`` takes the fallback sequence.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from .destination import _os_error, _stem, prepare
from .errors import DestinationError

STEPS = ("written", "replaced", "exchanged", "moved-old", "moved-new")
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS}
_PLACE_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENAMETOOLONG, errno.ENOTDIR, errno.ENOENT}
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _hook(step: str) -> None:
    """Test-only: SIGKILL this process at ``step`` when COMPOSITE_TEST_KILL_AT names it; wait
    there (for a signal) when COMPOSITE_TEST_PAUSE_AT does, after saying so on stderr."""
    if os.environ.get("COMPOSITE_TEST_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("COMPOSITE_TEST_PAUSE_AT") == step:
        os.write(2, f"paused at {step}\n".encode())
        time.sleep(600)


# -- replacing crash-safely -------------------------------------------------------------------------


def _temporary(dst: Path, kind: str) -> Path:
    return dst.with_name(f".{_stem(dst)}.{os.getpid()}-{os.urandom(4).hex()}.{kind}")


def _leftovers(dst: Path, kind: str) -> list[Path]:
    """Temporary names of ``dst`` of ``kind`` whose writing process is gone."""
    prefix = f".{_stem(dst)}."
    found = []
    try:
        entries = list(os.scandir(dst.parent))
    except OSError:
        return []
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(f".{kind}")):
            continue
        pid_text = name[len(prefix) : -len(kind) - 1].partition("-")[0]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            found.append(Path(entry.path))
    return found


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def repair(dst: Path) -> None:
    """Undo what a killed run left beside ``dst``: put a moved-away old output back when ``dst``
    is missing (the fallback sequence was cut between its renames), delete stale temporaries."""
    old = _leftovers(dst, "old")
    if old and not os.path.lexists(dst):
        with contextlib.suppress(OSError):
            os.rename(old.pop(), dst)
    for path in old + _leftovers(dst, "partial"):
        remove(path)


def remove(path: Path) -> None:
    """Delete a file or a directory tree; a tree still being filled by a thread is retried.

    A signal unwinds the main thread while the writer's threads may still add blocks for a
    moment (longer on a loaded machine), so the removal is retried for up to about ten seconds,
    not only back to back."""
    for attempt in range(200):
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if attempt >= 2:
                time.sleep(0.05)


_libc_renameat2 = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unavailable."""
    global _libc_renameat2
    if os.environ.get("COMPOSITE_TEST_NO_EXCHANGE") == "1" or not hasattr(os, "fork"):
        return False
    if _libc_renameat2 is None:
        try:
            function = ctypes.CDLL(None, use_errno=True).renameat2
        except (AttributeError, OSError):
            return False
        function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        function.restype = ctypes.c_int
        _libc_renameat2 = function
    if _libc_renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def install(tmp: Path, dst: Path) -> None:
    """Put the complete output ``tmp`` at ``dst``, replacing what is there (module docstring)."""
    _hook("written")
    if not (os.path.isdir(dst) and not os.path.islink(dst) and os.path.isdir(tmp)):
        os.replace(tmp, dst)
        _hook("replaced")
        return
    if _exchange(tmp, dst):
        _hook("exchanged")
        remove(tmp)  # the old output, now under the temporary name
        return
    old = _temporary(dst, "old")
    os.rename(dst, old)
    _hook("moved-old")
    os.rename(tmp, dst)
    _hook("moved-new")
    remove(old)


def _write_error(err: OSError, tmp: Path) -> bool:
    if err.errno in _WRITE_ERRNOS:
        return True
    if err.errno in _PLACE_ERRNOS:
        return err.filename is None or str(err.filename).startswith(str(tmp))
    return False


@contextlib.contextmanager
def atomic_output(dst: Path, *, overwrite: bool, directory: bool = False, parents: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``dst``; on success it replaces ``dst``, on failure it goes.

    The temporary name starts with a dot and ends with ``.partial`` so nothing looks complete
    while the writer runs. With ``directory=True`` it is a fresh directory. A full disk, a file
    size limit or a read-only filesystem while writing becomes one :class:`DestinationError`.
    """
    dst = Path(dst)
    prepare(dst, overwrite=overwrite, directory=directory, parents=parents)
    if parents:
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _os_error(dst.parent, err, "cannot create the folder") from err
    repair(dst)
    tmp = _temporary(dst, "partial")
    try:
        if directory:
            tmp.mkdir()
        try:
            yield tmp
            install(tmp, dst)
        except OSError as err:
            if isinstance(err, DestinationError) or not _write_error(err, tmp):
                raise
            raise _os_error(dst, err, "cannot write") from err
    finally:
        remove(tmp)
