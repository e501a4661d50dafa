"""The access log records the body bytes actually sent, also for a body cut short."""

from __future__ import annotations

import asyncio
import io

from aiohttp import web

from composite.server.accesslog import PLACEHOLDER_LOGGER, AccessLog


async def _short(request: web.Request) -> web.StreamResponse:
    """Declares 100,000 bytes and sends 3,000 (as files.py does for a file truncated while sent)."""
    response = web.StreamResponse(headers={"X-Note": "caf\u00e9"})
    response.content_length = 100_000
    await response.prepare(request)
    await response.write(b"x" * 3000)
    assert request.protocol is not None
    request.protocol.force_close()
    return response


async def _full(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b"y" * 5000, content_type="image/jpeg")


async def _serve(requests: list[bytes]) -> tuple[list[int], list[str]]:
    app = web.Application()
    app.router.add_get("/short", _short)
    app.router.add_get("/full", _full)
    stream = io.StringIO()
    log = AccessLog(stream)
    runner = web.AppRunner(app, access_log=PLACEHOLDER_LOGGER, access_log_class=log.logger_class())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    received = []
    try:
        for raw in requests:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(raw)
            data = await asyncio.wait_for(reader.read(), 30)  # the server closes after each
            received.append(len(data.partition(b"\r\n\r\n")[2]))
            writer.close()
        await asyncio.sleep(0.1)
        log.flush()
    finally:
        await runner.cleanup()
    return received, stream.getvalue().splitlines()


def test_the_logged_size_is_what_was_sent() -> None:
    requests = [
        b"GET /full HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HEAD /full HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /short HTTP/1.0\r\n\r\n",
    ]
    received, lines = asyncio.run(_serve(requests))
    assert received == [5000, 3000, 0, 3000]
    sizes = [int(line.rsplit(" ", 2)[1]) for line in lines]
    assert sizes == received, lines
