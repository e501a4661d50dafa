"""Limits for untrusted input, and opening input files safely (docs/limits.md lists them all).

Every file a slide names (a block, an INI file, a component, a TIFF, a DICOM instance) is
opened through :func:`open_regular`: non-blocking, so a FIFO cannot stall the open, and refused
unless it is a regular file (a FIFO, a device such as ``/dev/zero``, a directory, a socket), so
nothing is read without a bound. :func:`read_regular` reads a whole small file with a ceiling.

Decoding is checked before it allocates: :func:`check_decode` refuses an image whose declared
size is beyond :data:`MAX_DECODE_PIXELS`, and :func:`check_declared` refuses a JPEG whose frame
header disagrees with the size its container gives it (a block, a tile, an associated image):
such data is damaged, and decoding it would let a 600-byte file ask for gigabytes.

The ceilings can be raised for trusted input with environment variables (read when this module
is imported): ``COMPOSITE_MAX_DECODE_MPX`` (megapixels one decode may produce).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import FormatError, LimitError, TileReadError


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


MAX_DECODE_PIXELS = _env_int("COMPOSITE_MAX_DECODE_MPX", 100) * 1_000_000  # 300 MB of RGB per decode
MAX_SMALL_FILE = 64 * 1024 * 1024  # a block or associated image read whole
MAX_IFDS = 10_000  # TIFF directories in one file (main chain and SubIFDs)

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def kind_of(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | Path, *, error: type[Exception] = FormatError, what: str = "") -> int:
    """A read-only descriptor of ``path``, which must be a regular file (symlinks followed).

    Opened with ``O_NONBLOCK`` so a FIFO (no writer) never blocks, then checked with ``fstat``
    (no race with a swap between a check and the open). Raises ``error`` naming the file.
    """
    label = f"{path}: {what + ' ' if what else ''}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise error(f"{label}cannot be opened (symlink loop)") from err
        raise error(f"{label}cannot be opened ({err.strerror or err})") from err
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{label}is {kind_of(mode)}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(
    path: str | Path, *, limit: int = MAX_SMALL_FILE, error: type[Exception] = TileReadError, what: str = ""
) -> bytes:
    """The whole of a regular file of at most ``limit`` bytes."""
    fd = open_regular(path, error=error, what=what)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise LimitError(f"{path}: {what or 'file'} is {size} bytes, more than the {limit} allowed")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(size)
    except OSError as err:
        raise error(f"{path}: {what + ' ' if what else ''}cannot be read ({err.strerror or err})") from err
    finally:
        os.close(fd)


def is_regular(path: str | Path) -> bool:
    """True when ``path`` (symlinks followed) is a regular file; False for anything else or a loop."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def identity(path: str | Path) -> tuple[int, int]:
    """(st_dev, st_ino): the file itself, whatever name, link or alias reaches it."""
    info = os.stat(path)
    return info.st_dev, info.st_ino


def check_decode(width: int, height: int, what: str) -> None:
    """Refuse to decode an image of ``width`` x ``height`` beyond :data:`MAX_DECODE_PIXELS`."""
    if width <= 0 or height <= 0:
        raise TileReadError(f"{what}: declared size {width}x{height} is empty")
    if width * height > MAX_DECODE_PIXELS:
        raise LimitError(
            f"{what}: declared size {width}x{height} is over the decode limit of "
            f"{MAX_DECODE_PIXELS // 1_000_000} megapixels (COMPOSITE_MAX_DECODE_MPX)"
        )


def check_declared(header: tuple[int, int], container: tuple[int, int], what: str, *, exact: bool = True) -> None:
    """Refuse a JPEG whose frame header (width, height) is not the size its container declares
    (``exact=False``: not larger than it, for containers whose edge blocks may be cropped)."""
    larger = header[0] > container[0] or header[1] > container[1]
    if larger or (exact and header != container):
        raise TileReadError(
            f"{what}: damaged: its JPEG header says {header[0]}x{header[1]} px, "
            f"its container says {container[0]}x{container[1]}"
        )
