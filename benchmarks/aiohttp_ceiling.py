"""aiohttp's own ceiling: a server answering every request with one constant body, nothing else.

``python benchmarks/aiohttp_ceiling.py --port 0 --workers N --size BYTES`` listens on 127.0.0.1,
prints ``http://127.0.0.1:<port>/`` and serves until SIGTERM/SIGINT: aiohttp's low-level
``web.Server`` (what ``wsi-composite serve`` runs on) on uvloop when installed, N worker processes
forked on one socket as ``wsi-composite serve --workers N`` does, no access log, a handler that
returns a prebuilt ``web.Response`` of ``--size`` bytes of ``image/jpeg``. No routing, no path check,
no cache lookup: the rate no handler of ours can beat on the same machine, client and run
(benchmarks/serve.py compares the static and virtual block paths with it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys

from aiohttp import web


async def _serve(sock: socket.socket, body: bytes) -> None:
    headers = {"Content-Type": "image/jpeg", "Cache-Control": "public, max-age=31536000, immutable"}

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(body=body, headers=headers)

    server = web.Server(handler, access_log=None)
    runner = web.ServerRunner(server)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


def _run(sock: socket.socket, body: bytes) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(sock, body))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(sock, body))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--size", type=int, default=17_000, help="body bytes (default 17,000: a typical block)")
    args = parser.parse_args()
    body = os.urandom(args.size)
    sock = socket.create_server(("127.0.0.1", args.port), backlog=1024)
    print(f"http://127.0.0.1:{sock.getsockname()[1]}/", flush=True)
    if args.workers <= 1:
        _run(sock, body)
        return 0
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            try:
                _run(sock, body)
            finally:
                os._exit(0)
        children.append(pid)
    sock.close()

    def stop(signum: int, frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in children:
        os.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
