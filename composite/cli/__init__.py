"""The ``wsi-composite`` command line: parse, call one library function, report.

Each subcommand is a module in this package with ``register(subparsers)``; it sets ``func`` on its
parser to a function taking the parsed arguments and returning an exit code. User errors
(:class:`~composite.errors.CompositeError`) become one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from .. import __version__
from ..errors import CompositeError

COMMAND_MODULES = ("info", "export", "quality", "redact", "serve", "convert", "compose", "annotations", "batch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsi-composite",
        description="Author, convert and serve whole-slide images (SVS, TIFF, CWS, ACI, DICOM).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def _show_warning(message: Warning | str, *args: object, **kwargs: object) -> None:
    """Library warnings (a CWS's missing blocks) as one line, like errors, without source lines."""
    print(f"wsi-composite: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            code: int = args.func(args)
    except CompositeError as err:
        print(f"wsi-composite: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wsi-composite: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    return code
