"""Connection limits for the server: header-read timeout, idle-connection cap, request sizes, fds.

aiohttp's low-level server keeps a connection that never completes a request for an hour (its
keep-alive default) and keeps any number of them, so a client opening connections and sending
nothing, or a request header one byte at a time (slowloris), holds memory and file descriptors
for free. :class:`LimitedServer` bounds that, the way nginx does:

- **Header timeout** (nginx's ``client_header_timeout``): a new connection has ``header_timeout``
  seconds to deliver its first complete request header, else it is closed. Counted from the
  connection's opening, not reset by each byte, so dribbling does not extend it.
- **Keep-alive timeout** (nginx's ``keepalive_timeout``): after a response, the connection has
  ``keepalive_timeout`` seconds to deliver the next complete request header (aiohttp's own timer).
- **Idle cap** (what nginx does when ``worker_connections`` run out: it closes idle keep-alive
  connections to make room): when a new connection makes a worker hold more than
  ``max_connections``, connections without a request in progress (fresh ones still sending
  their header, kept-alive ones between requests) are closed, longest-held first, until it holds
  ``max_connections`` again or none but the new one is idle. A connection with a request in progress is never
  closed for this, so idle connections never exceed the cap, and busy ones only delay it. Below
  the cap nothing is checked; above it the search stops at the first idle connections found.
- **Request size** (aiohttp's parser): request line (method, URL, version) and each header line
  at most :data:`MAX_LINE` bytes, at most :data:`MAX_HEADERS` headers; beyond that a 400.
- **File descriptors**: :func:`raise_fd_limit` lifts the soft ``RLIMIT_NOFILE`` to the hard one
  (as nginx's ``worker_rlimit_nofile`` would), and :func:`connection_cap` keeps the cap below it.

Whether a kept-alive connection is waiting for a request is read from aiohttp's
``RequestHandler._waiter`` (the future its own keep-alive timer checks); where that attribute is
missing such connections are simply never closed by the cap.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

__all__ = [
    "FD_RESERVE",
    "HEADER_TIMEOUT",
    "KEEPALIVE_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_HEADERS",
    "MAX_LINE",
    "LimitedServer",
    "Limits",
    "connection_cap",
    "raise_fd_limit",
]

HEADER_TIMEOUT = 20.0
KEEPALIVE_TIMEOUT = 75.0
MAX_CONNECTIONS = 4096
MAX_LINE = 8190
MAX_HEADERS = 100
FD_RESERVE = 64  # descriptors kept for files, the listening socket, threads' pipes


@dataclasses.dataclass(frozen=True)
class Limits:
    """The per-worker connection limits (seconds, and a count); the defaults are the CLI's."""

    header_timeout: float = HEADER_TIMEOUT
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS


def raise_fd_limit() -> int:
    """Lift the soft limit on open files to the hard limit; returns the soft limit now in force."""
    try:
        import resource
    except ImportError:  # not POSIX: nothing to raise
        return 1 << 16
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # the kernel refused (e.g. above fs.nr_open): keep the old limit
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_cap(max_connections: int, fd_limit: int) -> int:
    """``max_connections`` lowered so that idle connections cannot take every descriptor."""
    return max(1, min(max_connections, fd_limit - FD_RESERVE))


def _waiting(connection: RequestHandler) -> bool:
    """Whether a kept-alive connection sits between requests (aiohttp's own idle test)."""
    waiter = getattr(connection, "_waiter", None)
    return waiter is not None and not waiter.done()


class LimitedServer(web.Server):
    """aiohttp's low-level server with the header timeout and the idle cap described above."""

    def __init__(self, handler: Any, *, limits: Limits, **kwargs: Any) -> None:
        kwargs.setdefault("max_line_size", MAX_LINE)
        kwargs.setdefault("max_field_size", MAX_LINE)
        kwargs.setdefault("max_headers", MAX_HEADERS)
        super().__init__(handler, keepalive_timeout=limits.keepalive_timeout, **kwargs)
        self._header_timeout = limits.header_timeout
        self._max_connections = limits.max_connections
        # Connections that have not started a request yet, oldest first, with their timers.
        self._fresh: dict[RequestHandler, asyncio.TimerHandle] = {}
        self.closed_for_timeout = 0
        self.closed_for_cap = 0

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._fresh[handler] = self._loop.call_later(self._header_timeout, self._header_expired, handler)
        if len(self._connections) > self._max_connections:
            self._shed_idle(handler)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        timer = self._fresh.pop(handler, None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(handler, exc)

    def _make_request(self, message: Any, payload: Any, protocol: RequestHandler, writer: Any, task: Any) -> Any:
        if self._fresh:  # the first request of a connection stops its header timer
            timer = self._fresh.pop(protocol, None)
            if timer is not None:
                timer.cancel()
        return super()._make_request(message, payload, protocol, writer, task)

    def _header_expired(self, handler: RequestHandler) -> None:
        if self._fresh.pop(handler, None) is not None:
            self.closed_for_timeout += 1
            handler.force_close()

    def _shed_idle(self, newest: RequestHandler) -> None:
        """Close the longest-held connections without a request in progress, down to the cap."""
        excess = len(self._connections) - self._max_connections
        idle = []
        for connection in self._connections:  # oldest first
            if connection is not newest and (connection in self._fresh or _waiting(connection)):
                idle.append(connection)
                if len(idle) == excess:
                    break
        for connection in idle:
            timer = self._fresh.pop(connection, None)
            if timer is not None:
                timer.cancel()
            self.closed_for_cap += 1
            connection.force_close()
