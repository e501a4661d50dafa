"""A minimal HTTP/1.1 client over asyncio streams, for tests that need exact bytes on the wire.

It sends each header value as given (UTF-8 encoded, so non-ASCII digits reach the server as a
browser would never send them), keeps the connection alive between requests, reads a body by its
Content-Length only (what static servers send), and reconnects after ``Connection: close`` (or a
close without it, before any byte of the answer). Only
for servers on this machine; every read is bounded by ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes


class RawClient:
    """One keep-alive connection to ``host:port``, reopened when the server closes it."""

    def __init__(self, host: str, port: int, *, timeout: float = 30.0) -> None:
        self._address = (host, port)
        self._timeout = timeout
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def connect(self) -> None:
        """Open the connection now (a request opens it when needed)."""
        if self._streams is None:
            self._streams = await asyncio.wait_for(asyncio.open_connection(*self._address), self._timeout)

    async def request(self, method: str, target: str, headers: list[tuple[str, str]] = []) -> Reply:  # noqa: B006
        reused = self._streams is not None
        try:
            return await asyncio.wait_for(self._request(method, target, headers), self._timeout)
        except asyncio.IncompleteReadError as err:
            if not reused or err.partial:
                raise
        except ConnectionResetError:
            if not reused:
                raise
        # A kept-alive connection the server closed without saying so (nginx after a 412, by EOF
        # or by a reset): like any HTTP client, send the request again on a new connection, once.
        await self.close()
        return await asyncio.wait_for(self._request(method, target, headers), self._timeout)

    async def _request(self, method: str, target: str, headers: list[tuple[str, str]]) -> Reply:
        await self.connect()
        assert self._streams is not None
        reader, writer = self._streams
        lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers)]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        fields = {}
        for line in head[1:]:
            if line:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
        body = b""
        if method != "HEAD" and status not in (204, 304) and status >= 200:
            if fields.get("transfer-encoding", "").lower() == "chunked":
                raise AssertionError(f"{method} {target[:80]}: chunked body from a static server")
            body = await reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return Reply(status, fields, body)

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
