"""Running the server: one listening socket, one or several worker processes, clean stops.

``listen`` binds the socket first (so ``port=0`` has a real port to report before anything runs,
and a busy port is an error before any process starts). ``serve`` runs a request handler
(:func:`composite.server.create_handler`) on it with aiohttp's low-level server until SIGINT or
SIGTERM: the socket closes, requests in flight get ``shutdown_timeout`` seconds.
With ``workers > 1`` (POSIX only) the process forks that many workers sharing the socket — the
kernel spreads connections over them — and the parent only forwards the stop signal and waits;
a worker that dies unexpectedly stops the others too (exit status 1).

The event loop is uvloop's when it is installed (a runtime dependency on POSIX; about a tenth
less CPU per request than asyncio's loop for aiohttp here), else asyncio's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import CompositeError
from . import Handler
from .accesslog import PLACEHOLDER_LOGGER, AccessLog
from .limits import LimitedServer, Limits, connection_cap, raise_fd_limit

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _NoMalformedRequests(logging.Filter):
    """Drops aiohttp's report of a request it could not parse: the client got its 400 and the
    access log has the line; a traceback on stderr for someone else's bad bytes helps nobody.
    Errors in our own handling still reach stderr with their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, HttpProcessingError)


ERROR_LOG = logging.getLogger("composite.server")
ERROR_LOG.addFilter(_NoMalformedRequests())


def _run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # an optional speed-up: asyncio's loop serves the same
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); CompositeError when that is impossible."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        return socket.create_server((host, port), family=family, backlog=1024)
    except OSError as err:
        raise CompositeError(f"{host}:{port}: cannot listen ({err.strerror or err})") from err


async def _run_handler(
    handler: Handler, sock: socket.socket, *, access_log: TextIO | None, shutdown_timeout: float, limits: Limits
) -> None:
    log = AccessLog(access_log) if access_log is not None else None
    if log is None:
        server = LimitedServer(handler, limits=limits, access_log=None, logger=ERROR_LOG)
    else:
        server = LimitedServer(
            handler,
            limits=limits,
            access_log_class=log.logger_class(),
            access_log=PLACEHOLDER_LOGGER,
            logger=ERROR_LOG,
        )
    runner = web.ServerRunner(server, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    # A worker starts with the stop signals blocked (see serve); one sent meanwhile arrives now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        await web.SockSite(runner, sock).start()
        await stop.wait()
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        await runner.cleanup()
        if log is not None:
            log.flush()


def serve(
    make_handler: Callable[[], Handler],
    sock: socket.socket,
    *,
    workers: int = 1,
    access_log: TextIO | None = None,
    shutdown_timeout: float = 5.0,
    limits: Limits | None = None,
) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit status (0 after a requested stop).

    ``access_log``: the stream that gets one line per request (:mod:`composite.server.accesslog`);
    ``limits``: header and keep-alive timeouts and the connection cap per worker
    (:mod:`composite.server.limits`). The soft limit on open files is raised to the hard one first,
    and the cap kept below it.
    """
    limits = limits or Limits()
    cap = connection_cap(limits.max_connections, raise_fd_limit())
    limits = dataclasses.replace(limits, max_connections=cap)
    if workers <= 1:
        main = _run_handler(
            make_handler(), sock, access_log=access_log, shutdown_timeout=shutdown_timeout, limits=limits
        )
        _run(main)
        return 0
    if not hasattr(os, "fork"):
        raise CompositeError("--workers above 1 needs a POSIX system (fork)")
    children: list[int] = []
    # Until a worker's loop (or the parent) has its handlers, a stop signal must wait rather
    # than kill it with the default action: a worker still starting up would die with an error.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker: serve, then leave without running the parent's cleanup
            status = 1
            try:
                main = _run_handler(
                    make_handler(), sock, access_log=access_log, shutdown_timeout=shutdown_timeout, limits=limits
                )
                _run(main)
                status = 0
            except Exception:
                traceback.print_exc()  # os._exit below would swallow it
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        children.append(pid)
    sock.close()
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    status = 0
    try:
        while children:
            pid, wait_status = os.wait()
            if pid in children:
                children.remove(pid)
            if not stopping:  # a worker died on its own: take the others down too
                status = 1
                stop(signal.SIGTERM, None)
            elif os.waitstatus_to_exitcode(wait_status) != 0:
                status = 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return status
