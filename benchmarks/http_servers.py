"""HTTP servers for the serve/viewer tests and the benchmark, each bound to 127.0.0.1 only.

``composite_server`` runs ``wsi-composite serve`` as a real process (so the CLI, signals and the
access log are exercised too); ``http_server`` runs ``python -m http.server``; ``nginx_server``
runs Debian's nginx with a throwaway configuration serving ``composite/web/`` at ``/`` and the slides at
``/slides/`` — the layout our server uses, so the same viewer URL works on all three.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live descendants (Linux /proc)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            pending.extend(int(c) for c in Path(f"/proc/{current}/task/{current}/children").read_text().split())
        except (OSError, ValueError):
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url}: server not answering after {timeout} s")


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def composite_server(root: Path, *args: str, log: Path | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``wsi-composite serve ROOT --port 0``; yields (base URL, process). stderr goes to ``log``."""
    stderr = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "composite", "serve", str(root), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not match:
            raise RuntimeError(f"unexpected first line from wsi-composite serve: {line!r}")
        url = f"http://127.0.0.1:{match.group(1)}/"
        yield url, process
    finally:
        _stop(process)
        if log:
            stderr.close()  # type: ignore[union-attr]


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[str]:
    """``python -m http.server`` on ``directory``; yields the base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_listening(url, process)
        yield url
    finally:
        _stop(process)


NGINX_CONF = """\
{user}worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    types {{ text/plain ini INI; }}
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ root {web}; }}
        location /slides/ {{ alias {slides}/; }}
    }}
}}
"""


@contextlib.contextmanager
def nginx_server(
    web: Path, slides: Path, tmp: Path, *, workers: int = 1
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Debian's nginx serving ``web`` at / and ``slides`` at /slides/; yields (base URL, master process)."""
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "nginx.conf"
    # As root, nginx's workers would drop to 'nobody', who cannot read pytest's 0700 temp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_CONF.format(user=user, workers=workers, tmp=tmp, port=port, web=web, slides=slides))
    process = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        try:
            _wait_listening(url, process)
        except RuntimeError as err:
            _stop(process, signal.SIGQUIT)
            message = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"nginx did not start: {message or err}") from err
        yield url, process
    finally:
        _stop(process, signal.SIGQUIT)


@dataclasses.dataclass
class LoadResult:
    """What a bounded load run saw: counts, errors by kind, and per-request latencies (seconds)."""

    requests: int = 0
    bytes: int = 0
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    latencies: list[float] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def load(
    base: str, paths: list[str], sizes: list[int] | None = None, *, connections: int = 64, seconds: float = 20.0
) -> LoadResult:
    """``connections`` clients each fetch ``paths`` round-robin until ``seconds`` have passed.

    A response counts as an error unless it is a 200 whose body has the expected size (``sizes``).
    Bounded in time and in connections; only for servers on this machine.
    """
    import aiohttp

    result = LoadResult()
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    start = time.monotonic()
    deadline = start + seconds

    async def worker(offset: int) -> None:
        index = offset
        while time.monotonic() < deadline:
            i = index % len(paths)
            index += connections
            began = time.perf_counter()
            try:
                async with session.get(base + paths[i]) as response:
                    body = await response.read()
                    ok = response.status == 200 and (sizes is None or len(body) == sizes[i])
            except (aiohttp.ClientError, OSError, TimeoutError) as err:
                result.error(type(err).__name__)
                continue
            result.latencies.append(time.perf_counter() - began)
            result.requests += 1
            result.bytes += len(body)
            if not ok:
                result.error(f"HTTP {response.status}" if response.status != 200 else "short body")

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(n) for n in range(connections)))
    result.seconds = time.monotonic() - start
    return result
