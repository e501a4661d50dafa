"""``wsi-composite serve ROOT``: serve the CWS directories under ROOT and the viewer over HTTP.

Prints the viewer URL once listening (the real port when ``--port 0``), logs each request to
stderr (aiohttp's access log; ``--quiet`` turns it off) and stops cleanly on SIGINT or SIGTERM:
the listening socket closes, requests in flight get ``--shutdown-timeout`` seconds to finish.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from aiohttp import web

from ..errors import CompositeError
from ..server import create_app

ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs'


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="serve CWS directories and the browser viewer over HTTP")
    parser.add_argument("root", help="directory holding CWS slide directories (searched recursively)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--cors", metavar="ORIGIN", help="send CORS headers allowing ORIGIN (or *)")
    parser.add_argument("--quiet", action="store_true", help="no access log")
    parser.add_argument("--shutdown-timeout", type=float, default=5.0, metavar="SECONDS",
                        help="time given to requests in flight when stopping (default 5)")
    parser.set_defaults(func=run)


async def _serve(app: web.Application, args: argparse.Namespace) -> None:
    access_log = None if args.quiet else logging.getLogger("aiohttp.access")
    runner = web.AppRunner(
        app, access_log=access_log, access_log_format=ACCESS_LOG_FORMAT, shutdown_timeout=args.shutdown_timeout
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        site = web.TCPSite(runner, args.host, args.port)
        try:
            await site.start()
        except OSError as err:
            raise CompositeError(f"{args.host}:{args.port}: cannot listen ({err.strerror or err})") from err
        for address in runner.addresses:
            host, port = address[0], address[1]
            shown = f"[{host}]" if ":" in host else host
            print(f"serving {args.root} at http://{shown}:{port}/  (viewer; Ctrl-C stops)", flush=True)
        await stop.wait()
        print("stopping ...", file=sys.stderr, flush=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    app = create_app(args.root, cors=args.cors)
    if not args.quiet:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        access = logging.getLogger("aiohttp.access")
        access.addHandler(handler)
        access.setLevel(logging.INFO)
    asyncio.run(_serve(app, args))
    print("stopped", file=sys.stderr, flush=True)
    return 0
