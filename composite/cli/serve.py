"""``wsi-composite serve ROOT``: serve the slides under ROOT and the viewer over HTTP.

CWS directories are served as files; SVS, TIFF, DICOM series and ACI manifests as virtual CWS
directories built per request (docs/serve.md).

Prints the viewer URL once listening (the real port when ``--port 0``), logs each request to
stderr (in batches, :mod:`composite.server.accesslog`; ``--quiet`` turns it off) and stops
cleanly on SIGINT or SIGTERM: the listening socket closes, requests in flight get
``--shutdown-timeout`` seconds to finish.
``--workers N`` runs N processes on the one socket (default: one per CPU core, as nginx's
``worker_processes auto``; blocks are served about N times as fast when there are cores for them).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from .args import int_in, positive_float


def default_processes() -> int:
    """One worker per CPU this process may run on (nginx's ``worker_processes auto``); 1 without fork."""
    if not hasattr(os, "fork"):
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# The server's defaults (composite.server.files.FILE_CACHE_BYTES and composite.server.limits; a
# test keeps them equal). The server and aiohttp are imported only when serving: 20 MB that no
# other command should carry.
CACHE_MB = 64
HEADER_TIMEOUT = 20.0
KEEPALIVE_TIMEOUT = 75.0
MAX_CONNECTIONS = 4096
OPEN_SLIDES = 16


def seconds(what: str) -> Callable[[str], float]:
    """A positive number of seconds, at most a day (a timer further off is no limit at all)."""
    positive = positive_float(what)

    def parse(text: str) -> float:
        value = positive(text)
        if value > 86400:
            raise argparse.ArgumentTypeError(f"{what} must be at most 86400 seconds, got {text!r}")
        return value

    return parse


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve")
    parser.add_argument("root", help="directory holding slides (searched recursively)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--cors", metavar="ORIGIN", help="send CORS headers allowing ORIGIN (or *)")
    parser.add_argument(
        "--workers",
        type=int_in(1, 1024, "--workers"),
        metavar="N",
        help=f"worker processes (default: one per CPU core, {default_processes()} here)",
    )
    parser.add_argument(
        "--cache-mb",
        type=int_in(0, 1 << 20, "--cache-mb"),
        default=CACHE_MB,
        metavar="MB",
        help=f"memory per worker for small files served again (default {CACHE_MB}; 0 reads every time)",
    )
    parser.add_argument(
        "--header-timeout",
        type=seconds("--header-timeout"),
        default=HEADER_TIMEOUT,
        metavar="SECONDS",
        help=f"a new connection not done sending its request header by then is closed (default {HEADER_TIMEOUT:g})",
    )
    parser.add_argument(
        "--keepalive-timeout",
        type=seconds("--keepalive-timeout"),
        default=KEEPALIVE_TIMEOUT,
        metavar="SECONDS",
        help=f"an idle kept-alive connection is closed after this (default {KEEPALIVE_TIMEOUT:g})",
    )
    parser.add_argument(
        "--max-connections",
        type=int_in(1, 1 << 20, "--max-connections"),
        default=MAX_CONNECTIONS,
        metavar="N",
        help=f"per worker; above it idle connections are closed, oldest first (default {MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--open-slides",
        type=int_in(1, 4096, "--open-slides"),
        default=OPEN_SLIDES,
        metavar="N",
        help=f"per worker: SVS/TIFF/DICOM/ACI slides kept open (default {OPEN_SLIDES}; fewer open files)",
    )
    parser.add_argument(
        "--skip-glass",
        action="store_true",
        help="leave the glass blocks of SVS/TIFF/DICOM/ACI slides out, as convert --skip-glass does",
    )
    parser.add_argument("--quiet", action="store_true", help="no access log")
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="time given to requests in flight when stopping (default 5)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..server import create_handler
    from ..server.limits import Limits
    from ..server.run import listen, serve

    create_handler(args.root, cors=args.cors, cache_bytes=0)  # a bad ROOT is reported before anything listens
    sock = listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {args.root} at http://{shown}:{port}/  (viewer; Ctrl-C stops)", flush=True)
    status = serve(
        lambda: create_handler(
            args.root,
            cors=args.cors,
            cache_bytes=args.cache_mb << 20,
            open_slides=args.open_slides,
            skip_glass=args.skip_glass,
            warm_up=True,  # called in the serving process, after any fork
        ),
        sock,
        workers=args.workers or default_processes(),
        access_log=None if args.quiet else sys.stderr,
        shutdown_timeout=args.shutdown_timeout,
        limits=Limits(
            header_timeout=args.header_timeout,
            keepalive_timeout=args.keepalive_timeout,
            max_connections=args.max_connections,
        ),
    )
    print("stopped", file=sys.stderr, flush=True)
    return status
