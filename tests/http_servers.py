"""HTTP servers for the serve/viewer tests and the benchmark, each bound to 127.0.0.1 only.

``composite_server`` runs ``wsi-composite serve`` as a real process (so the CLI, signals and the
access log are exercised too); ``http_server`` runs ``python -m http.server``; ``nginx_server``
runs Debian's nginx with a throwaway configuration serving ``web/`` at ``/`` and the slides at
``/slides/`` — the layout our server uses, so the same viewer URL works on all three.
"""

from __future__ import annotations

import contextlib
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
def nginx_server(web: Path, slides: Path, tmp: Path, *, workers: int = 1) -> Iterator[str]:
    """Debian's nginx serving ``web`` at / and ``slides`` at /slides/; yields the base URL."""
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
        yield url
    finally:
        _stop(process, signal.SIGQUIT)
