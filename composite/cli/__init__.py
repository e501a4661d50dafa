"""The ``wsi-composite`` command line: parse, call one library function, report.

Each subcommand is a module in this package with ``register(subparsers)``; it sets ``func`` on its
parser to a function taking the parsed arguments and returning an exit code. User errors
(:class:`~composite.errors.CompositeError`) become one line on stderr and exit status 2.

Only the command being run is imported: :data:`COMMANDS` holds every command's one-line help, so
``wsi-composite --help`` lists them all without importing any, and ``main`` registers the full
parser of the command named on the command line alone (the others are stubs). Start-up is then
what that command needs (tests/test_cli_imports.py), not every subcommand's libraries.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .. import __version__
from ..errors import CompositeError, DroppedWarning

# Every command's one-line help, in the order ``--help`` lists them (the module of the same name
# in this package registers its parser; its add_parser call gets this help from here).
COMMANDS: dict[str, str] = {
    "info": "show levels, metadata and associated images",
    "export": "export levels, regions and associated images as JPEG/PNG/TIFF files",
    "quality": "compression factor and RMS error of JPEG/JPEG 2000 settings on a slide's tiles",
    "redact": "black out regions, drop label/macro, scrub identifying metadata (writes a new slide)",
    "serve": "serve slides (CWS, SVS, TIFF, DICOM, ACI) and the browser viewer over HTTP",
    "convert": "convert a slide to SVS, pyramidal TIFF, CWS, ACI or DICOM",
    "compose": "write an ACI manifest placing separate images on one canvas",
    "annotations": "convert annotations between ImageScope XML and QuPath GeoJSON, or list them",
    "batch": "convert every slide of a directory or list, resumably, on dask",
}
COMMAND_MODULES = tuple(COMMANDS)

# numpy's OpenBLAS starts a thread per core when numpy is imported, which spins for a while: 60-80
# ms of CPU per command on 2 cores, taken from the tile threads. Nothing here uses BLAS. Set when
# the command line is imported, before any command imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
_TOP_OPTIONS = ("-h", "--help", "--version", "--verbose", "--strict")


class _Commands:
    """The subparsers action as a command module sees it: ``add_parser`` adds the command's help."""

    def __init__(self, action: Any) -> None:
        self._action = action

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._action.add_parser(name, help=COMMANDS[name], **kwargs)
        return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first word that is not a top-level option), or None."""
    for word in argv:
        if word not in _TOP_OPTIONS:
            return word if word in COMMANDS else None
    return None


def build_parser(*, only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only``, that command's parser is complete and the others are
    stubs that only list themselves (their modules are not imported)."""
    parser = argparse.ArgumentParser(
        prog="wsi-composite",
        description="Author, convert and serve whole-slide images (SVS, TIFF, CWS, ACI, DICOM).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbose = "show third-party libraries' log messages (tifffile's warnings), hidden by default"
    strict = "make each warning about what the output cannot hold (label, levels, redacted area) an error"
    parser.add_argument("--verbose", action="store_true", help=verbose)
    parser.add_argument("--strict", action="store_true", help=strict)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands = _Commands(subparsers)
    for name in COMMANDS:
        if only is None or name == only:
            importlib.import_module(f"{__name__}.{name}").register(commands)
        else:
            commands.add_parser(name)
    for sub in subparsers.choices.values():  # also accepted after the command
        sub.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose)
        sub.add_argument("--strict", action="store_true", default=argparse.SUPPRESS, help=strict)
    return parser


class Terminated(BaseException):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so temporary outputs are deleted on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# Commands whose SIGTERM/SIGHUP unwinds through their temporary outputs. Not serve and batch: they
# run child processes (which would inherit the handler) and stop them their own way.
UNWINDING_COMMANDS = ("convert", "redact", "export", "compose")


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _signals(command: str) -> Iterator[None]:
    """SIGTERM/SIGHUP raise :class:`Terminated` (:data:`UNWINDING_COMMANDS` only); SIGXFSZ is
    ignored, so a write past ``ulimit -f`` fails with EFBIG (one error line) instead of killing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted: dict[int, object] = {signal.SIGXFSZ: signal.SIG_IGN} if hasattr(signal, "SIGXFSZ") else {}
    if command in UNWINDING_COMMANDS:
        wanted.update(
            {signal.SIGTERM: _terminate, **({signal.SIGHUP: _terminate} if hasattr(signal, "SIGHUP") else {})}
        )
    previous = {signum: signal.signal(signum, handler) for signum, handler in wanted.items()}  # type: ignore[arg-type]
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _quiet_logging(verbose: bool) -> Iterator[None]:
    """Third-party log records (tifffile warns about odd tags) are dropped unless ``--verbose``:
    what matters reaches the user as our own one-line warnings and errors."""
    if verbose:
        logging.basicConfig(level=logging.WARNING, format="wsi-composite: %(name)s: %(message)s")
        yield
        return
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _show_warning(message: Warning | str, *args: object, **kwargs: object) -> None:
    """Library warnings (a CWS's missing blocks) as one line, like errors, without source lines."""
    print(f"wsi-composite: warning: {message}", file=sys.stderr)


def _holding(held: list[str]) -> Callable[..., None]:
    """:func:`_show_warning`, but what the output cannot hold (DroppedWarning) is kept in
    ``held``: said once the command has succeeded, so a failure stays one error line."""

    def show(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
        if issubclass(category, DroppedWarning):
            held.append(str(message))
        else:
            _show_warning(message)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=command_of(words) or "")
    args = parser.parse_args(words)
    held: list[str] = []
    try:
        with warnings.catch_warnings(), _signals(args.command), _quiet_logging(args.verbose):
            warnings.showwarning = _holding(held)
            warnings.simplefilter("error" if args.strict else "always", DroppedWarning)
            code: int = args.func(args)
    except CompositeError as err:
        print(f"wsi-composite: error: {err}", file=sys.stderr)
        return 2
    except DroppedWarning as err:
        print(f"wsi-composite: error: {err} (--strict)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wsi-composite: interrupted", file=sys.stderr)
        return 130
    except Terminated as stop:
        print(f"wsi-composite: stopped by {signal.Signals(stop.signum).name}", file=sys.stderr)
        return 128 + stop.signum
    except BrokenPipeError:
        return 1
    for line in held:
        print(f"wsi-composite: warning: {line}", file=sys.stderr)
    if argv is None:  # the process ends with this command (console script, python -m composite):
        gc.freeze()  # its last garbage collection then skips what is loaded (40-60 ms for DICOM)
    return code
