"""The access log: one line per request, written in batches to a text stream.

A line is ``2026-11-22 03:38:31,874 127.0.0.1 "GET /slides/a/Da0.jpg HTTP/1.1" 200 15470 0.000412s``
(local time, client address, request line as the client sent it, status, body bytes sent (fewer
than the Content-Length when the body was cut short), seconds spent). aiohttp's own
``AccessLogger`` parses a format string and goes through ``logging`` for every request, which
cost more CPU than serving the block itself; here a line is one f-string appended to a list,
and the list is written at most every ``FLUSH_SECONDS`` (and when the server stops), so a busy
server makes one ``write`` per batch, not per request.
Non-printable characters in the request target are escaped so a client cannot forge log lines.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TextIO

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

__all__ = ["AccessLog"]

FLUSH_SECONDS = 0.2
PIECE = 4096


class AccessLog:
    """Lines waiting to be written to ``stream``; :meth:`flush` writes them."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lines: list[str] = []
        self._second = -1
        self._stamp = ""

    def add(self, request: web.BaseRequest, response: web.StreamResponse, seconds: float) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        target = request.raw_path
        if not target.isprintable():
            target = target.encode("unicode_escape").decode("ascii")
        version = request.version
        size = 0 if request.method == "HEAD" else _body_bytes(request, response)
        if not self._lines:
            asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
        self._lines.append(
            f"{self._stamp},{int((now - second) * 1000):03d} {request.remote} "
            f'"{request.method} {target} HTTP/{version.major}.{version.minor}" '
            f"{response.status} {size} {seconds:.3f}s\n"
        )

    def flush(self) -> None:
        # Pieces of whole lines up to PIPE_BUF, one write each: the workers of ``--workers N``
        # share the stream, and a pipe keeps writes of that size whole.
        piece: list[str] = []
        length = 0
        for line in self._lines:
            if length + len(line) > PIECE and piece:
                self._write("".join(piece))
                piece, length = [], 0
            piece.append(line)
            length += len(line)
        if piece:
            self._write("".join(piece))
        self._lines.clear()

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()

    def logger_class(self) -> type[AbstractAccessLogger]:
        """An aiohttp access-logger class feeding this log (aiohttp makes one per connection)."""
        sink = self

        class _Logger(AbstractAccessLogger):
            __slots__ = ()

            def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
                sink.add(request, response, time)

        return _Logger


def _body_bytes(request: web.BaseRequest, response: web.StreamResponse) -> int:
    """The body bytes actually sent: the declared length, less what a body cut short (a file
    truncated while sent) did not send. aiohttp counts the bytes written, head included
    (``body_length``); the head is what it serialised: status line and headers."""
    declared = response.content_length or 0
    if not response.body_length:
        return declared
    version = request.version
    head = f"HTTP/{version.major}.{version.minor} {response.status} {response.reason}\r\n"
    head += "".join(f"{key}: {value}\r\n" for key, value in response.headers.items()) + "\r\n"
    sent = response.body_length - len(head.encode("utf-8"))
    return sent if 0 <= sent < declared else declared


# aiohttp enables access logging only when given a logger object; ours never receives records.
PLACEHOLDER_LOGGER = logging.getLogger("composite.server.access")
