"""The server's connection limits against the real CLI: header and keep-alive timeouts, the idle
cap, request size bounds, a body cut short by a truncated file, slowloris, 2,000 connections.
The slowloris and 2,000-connection tests fetch static blocks and blocks of a virtual CWS directory
(an SVS served as it is stored, docs/serve.md) alike.

Every client here talks to 127.0.0.1 only, and every wait is bounded. Latencies are recorded in
test-artifacts/server-limits.txt, never asserted.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import shutil
import socket
import statistics
import time
from pathlib import Path

import pytest

from benchmarks.http_servers import composite_server
from composite.convert import convert
from tests.http_raw import RawClient

REPO = Path(__file__).resolve().parent.parent
BLOCK = "/slides/slide/Da1.jpg"
BLOCKS = 50


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, synthetic_svs: Path) -> Path:
    root = tmp_path_factory.mktemp("limits")
    (root / "slide").mkdir()
    generator = random.Random(17)
    for n in range(1, BLOCKS + 1):
        (root / "slide" / f"Da{n}.jpg").write_bytes(generator.randbytes(generator.randrange(10_000, 40_000)))
    shutil.copy(synthetic_svs, root / "case.svs")
    return root


@pytest.fixture(scope="module")
def virtual_blocks(tmp_path_factory: pytest.TempPathFactory, synthetic_svs: Path) -> dict[str, bytes]:
    """URL -> bytes of level-0 blocks of ROOT/case.svs, as ``convert --to cws`` writes them."""
    out = tmp_path_factory.mktemp("limits-cws") / "case"
    convert(synthetic_svs, out, to="cws")
    return {f"/slides/case.svs/Da{n}.jpg": (out / f"Da{n}.jpg").read_bytes() for n in range(BLOCKS)}


async def _fetch_virtual(port: int, blocks: dict[str, bytes], n: int) -> float:
    """One virtual block on a new connection; its latency in seconds (asserting the bytes)."""
    url = list(blocks)[n % len(blocks)]
    client = RawClient("127.0.0.1", port, timeout=60)
    began = time.perf_counter()
    try:
        reply = await client.request("GET", url)
    finally:
        await client.close()
    assert reply.status == 200 and reply.body == blocks[url]
    return time.perf_counter() - began


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


def _record(line: str) -> None:
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with open(artifacts / "server-limits.txt", "a") as out:
        out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"this test needs {needed} open files; the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed if hard == resource.RLIM_INFINITY else hard, hard))


async def _closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True once the server has closed the connection without answering anything."""
    try:
        return await asyncio.wait_for(reader.read(1), timeout) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def _fetch(port: int, root: Path, n: int = 1) -> float:
    """One block on a new connection; its latency in seconds (asserting the answer)."""
    client = RawClient("127.0.0.1", port, timeout=60)
    began = time.perf_counter()
    try:
        reply = await client.request("GET", f"/slides/slide/Da{n}.jpg")
    finally:
        await client.close()
    assert reply.status == 200 and reply.body == (root / "slide" / f"Da{n}.jpg").read_bytes()
    return time.perf_counter() - began


def test_idle_connections_are_closed_and_others_served(root: Path) -> None:
    """Nothing sent, a header never finished, a kept-alive connection left idle: each is closed
    after its timeout, while a normal client is served meanwhile."""

    async def main(port: int) -> None:
        silent = await asyncio.open_connection("127.0.0.1", port)
        partial = await asyncio.open_connection("127.0.0.1", port)
        partial[1].write(b"GET /slides/slide/Da1.jpg HTTP/1.1\r\nHost: x\r\n")
        kept = RawClient("127.0.0.1", port)
        assert (await kept.request("GET", BLOCK)).status == 200
        await _fetch(port, root)
        assert await _closed_by_server(silent[0], 30)
        assert await _closed_by_server(partial[0], 30)
        assert kept._streams is not None
        assert await _closed_by_server(kept._streams[0], 30)
        await _fetch(port, root)  # and after them too
        for _, writer in (silent, partial):
            writer.close()
        await kept.close()

    args = ("--quiet", "--header-timeout", "1", "--keepalive-timeout", "2")
    with composite_server(root, *args) as (url, process):
        asyncio.run(main(_port(url)))
        assert process.poll() is None


def test_idle_connections_beyond_the_cap_are_closed_oldest_first(root: Path) -> None:
    async def main(port: int) -> None:
        idle = []
        for _ in range(6):
            idle.append(await asyncio.open_connection("127.0.0.1", port))
            await asyncio.sleep(0.2)  # accepted in this order
        await _fetch(port, root)  # a 7th connection: three over the cap of 4
        closed = [await _closed_by_server(reader, 0.5 if n >= 3 else 10) for n, (reader, _) in enumerate(idle)]
        assert closed == [True, True, True, False, False, False]
        for _, writer in idle:
            writer.close()

    with composite_server(root, "--quiet", "--workers", "1", "--max-connections", "4") as (url, process):
        asyncio.run(main(_port(url)))
        assert process.poll() is None


def test_request_line_and_headers_are_bounded(root: Path, tmp_path: Path) -> None:
    """A URL or header over 8 kB, or over 100 headers, is a 4xx without a traceback in the log."""

    async def main(port: int) -> None:
        too_long = [
            ("GET", "/slides/" + "a" * 20_000, []),
            ("GET", BLOCK, [("X-Long", "b" * 20_000)]),
            ("GET", BLOCK, [(f"X-H{n}", "c") for n in range(150)]),
        ]
        for method, target, headers in too_long:
            client = RawClient("127.0.0.1", port)
            try:
                reply = await client.request(method, target, headers)
            finally:
                await client.close()
            assert 400 <= reply.status < 500, (target[:40], reply.status)
        await _fetch(port, root)

    log = tmp_path / "serve.log"
    with composite_server(root, "--quiet", log=log) as (url, process):
        asyncio.run(main(_port(url)))
        assert process.poll() is None
    assert "Traceback" not in log.read_text()


def test_a_file_truncated_while_sent_closes_the_connection(tmp_path: Path) -> None:
    """The short body is not followed by the next answer on the same connection."""
    root = tmp_path / "root"
    (root / "slide").mkdir(parents=True)
    big = root / "slide" / "Macro.jpg"
    big.write_bytes(os.urandom(32 << 20))
    (root / "slide" / "Da1.jpg").write_bytes(b"small block")
    log = tmp_path / "serve.log"
    with composite_server(root, "--quiet", log=log) as (url, _), socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", _port(url)))
        sock.settimeout(30)
        pipelined = b"GET /slides/slide/Macro.jpg HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(pipelined + b"GET /slides/slide/Da1.jpg HTTP/1.1\r\nHost: x\r\n\r\n")
        data = sock.recv(65536)
        time.sleep(0.5)  # the server is now waiting for the client to read
        os.truncate(big, 1 << 20)
        while chunk := sock.recv(1 << 20):  # ends: the server closes the connection
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: %d" % (32 << 20) in head
    assert len(body) < 32 << 20
    assert b"small block" not in body and b"HTTP/1.1" not in body
    assert "Traceback" not in log.read_text()


@pytest.mark.slow
def test_slowloris_does_not_starve_normal_clients(root: Path, virtual_blocks: dict[str, bytes]) -> None:
    """1,000 connections sending a header line a second: a normal client still gets its blocks,
    static and virtual (the first opening the SVS), and the header timeout closes every slow
    connection."""
    slow_count, timeout = 1000, 5.0
    _raise_fd_limit(slow_count + 200)

    async def slow_client(port: int, stop: asyncio.Event, closed: list[int]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /slides/slide/Da1.jpg HTTP/1.1\r\nHost: x\r\n")
            for n in range(60):  # at most a minute
                if stop.is_set():
                    return
                if await _closed_by_server(reader, 1.0):
                    closed.append(n)
                    return
                writer.write(b"X-Slow-%d: 1\r\n" % n)
        except ConnectionError:
            closed.append(-1)
        finally:
            writer.close()

    async def main(port: int) -> None:
        stop, closed = asyncio.Event(), list[int]()
        slow = [asyncio.create_task(slow_client(port, stop, closed)) for _ in range(slow_count)]
        await asyncio.sleep(2.0)  # all connected and dribbling
        latencies = [await _fetch(port, root, 1 + n % BLOCKS) for n in range(20)]
        virtual = [await _fetch_virtual(port, virtual_blocks, n) for n in range(20)]
        await asyncio.wait_for(asyncio.gather(*slow), 90)
        stop.set()
        _record(
            f"slowloris: {slow_count} slow connections; normal block fetch (new connection) median"
            f" {statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms;"
            f" virtual block (SVS, first one opens it) median {statistics.median(virtual) * 1000:.1f} ms,"
            f" first {virtual[0] * 1000:.1f} ms, max {max(virtual) * 1000:.1f} ms;"
            f" {len(closed)} slow connections closed by the server, after {statistics.median(closed or [0]):.0f}"
            " header lines (median)"
        )
        assert len(closed) == slow_count  # the header timeout ended every one of them
        await _fetch(port, root)

    with composite_server(root, "--quiet", "--header-timeout", str(timeout)) as (url, process):
        asyncio.run(main(_port(url)))
        assert process.poll() is None


@pytest.mark.slow
def test_2000_concurrent_connections_are_all_served(root: Path, virtual_blocks: dict[str, bytes]) -> None:
    connections, rounds = 2000, 3
    _raise_fd_limit(connections + 200)

    async def main(port: int) -> None:
        clients = [RawClient("127.0.0.1", port, timeout=120) for _ in range(connections)]
        errors: list[str] = []
        blocks = {f"/slides/slide/{p.name}": p.read_bytes() for p in (root / "slide").iterdir()}
        blocks.update(virtual_blocks)  # half the requests are for virtual blocks
        urls = sorted(blocks)
        began = time.perf_counter()
        await asyncio.gather(*(client.connect() for client in clients))  # all open at once
        opened = time.perf_counter() - began

        async def fetch(n: int, client: RawClient) -> None:
            for r in range(rounds):
                url = urls[(n * rounds + r) % len(urls)]
                try:
                    reply = await client.request("GET", url)
                except (OSError, TimeoutError, asyncio.IncompleteReadError) as err:
                    errors.append(type(err).__name__)
                    return
                if reply.status != 200 or reply.body != blocks[url]:
                    errors.append(f"HTTP {reply.status}, {len(reply.body)} bytes")

        await asyncio.gather(*(fetch(n, client) for n, client in enumerate(clients)))
        seconds = time.perf_counter() - began
        await asyncio.gather(*(client.close() for client in clients))
        _record(
            "2000 connections (half the blocks virtual):"
            f" all open in {opened:.1f} s, {connections * rounds} requests in {seconds:.1f} s,"
            f" {len(errors)} errors {sorted(set(errors))[:5]}"
        )
        assert errors == []

    with composite_server(root, "--quiet") as (url, process):
        asyncio.run(main(_port(url)))
        assert process.poll() is None
