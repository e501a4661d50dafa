"""``wsi-composite serve`` as a user runs it: the printed URL, the access log, clean stops on
SIGINT/SIGTERM, one-line errors; and the viewer files shipped with the package."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest

from benchmarks.http_servers import composite_server
from composite.server import web_directory
from tests.cws_fixtures import write_scanner_cws

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, synthetic_svs: Path) -> Path:
    root = tmp_path_factory.mktemp("serve-cli")
    write_scanner_cws(synthetic_svs, root / "slide one")
    return root


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_logs_and_stops_cleanly(root: Path, tmp_path: Path, sig: signal.Signals) -> None:
    log = tmp_path / "stderr.txt"
    with composite_server(root, log=log) as (url, process):
        status, body = _get(url + "api/slides")
        assert status == 200
        assert [s["name"] for s in json.loads(body)] == ["slide one"]
        status, _ = _get(url + "slides/slide%20one/Da0.jpg")
        assert status == 200
        process.send_signal(sig)
        assert process.wait(timeout=15) == 0
        port = int(url.rstrip("/").rsplit(":", 1)[1])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # nothing listens any more
    text = log.read_text()
    assert re.search(r'127\.0\.0\.1 "GET /api/slides HTTP/1\.1" 200 \d+', text), text
    size = (root / "slide one" / "Da0.jpg").stat().st_size
    assert re.search(rf'"GET /slides/slide%20one/Da0\.jpg HTTP/1\.1" 200 {size} \d+\.\d{{3}}s\n', text), text
    assert "stopped" in text and "Traceback" not in text


def test_quiet_has_no_access_log(root: Path, tmp_path: Path) -> None:
    log = tmp_path / "stderr.txt"
    with composite_server(root, "--quiet", log=log) as (url, _):
        assert _get(url + "api/slides")[0] == 200
    assert "GET /api/slides" not in log.read_text()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "composite", "serve", *args], capture_output=True, text=True, timeout=60
    )


def test_missing_root_is_one_line_exit_2(tmp_path: Path) -> None:
    result = _run(str(tmp_path / "nope"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"wsi-composite: error: {tmp_path / 'nope'}: not a directory"


def test_busy_port_is_one_line_exit_2(root: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run(str(root), "--port", str(port))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"wsi-composite: error: 127.0.0.1:{port}: cannot listen")


def test_vendored_openseadragon_matches_the_pinned_npm_package() -> None:
    lock = json.loads((REPO / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/openseadragon"]["version"]
    assert json.loads((REPO / "package.json").read_text())["devDependencies"]["openseadragon"] == pinned
    vendor = REPO / "composite" / "web" / "vendor" / "openseadragon"
    assert (vendor / "openseadragon.min.js").read_text()[:60].startswith(f"//! openseadragon {pinned}\n")
    assert "BSD" in (vendor / "LICENSE.txt").read_text() or "Redistribution" in (vendor / "LICENSE.txt").read_text()
    assert (vendor / "images" / "zoomin_rest.png").is_file()


def test_package_data_ships_every_viewer_file() -> None:
    web = REPO / "composite" / "web"
    assert web_directory().resolve() == web.resolve()
    assert not web.is_symlink()  # real package data, no link for packaging to follow
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["composite"]
    files = [p.relative_to(REPO / "composite").as_posix() for p in web.rglob("*") if p.is_file()]
    assert "web/index.html" in files
    missing = [
        f
        for f in files
        if not any(fnmatch.fnmatchcase(f, p) and "/" not in f[len(p.rsplit("/", 1)[0]) + 1 :] for p in patterns)
    ]
    assert missing == []


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_workers_share_the_socket_and_stop_together(root: Path, tmp_path: Path, sig: signal.Signals) -> None:
    log = tmp_path / "stderr.txt"
    with composite_server(root, "--workers", "2", log=log) as (url, process):
        for _ in range(20):
            assert _get(url + "slides/slide%20one/Da0.jpg")[0] == 200
        workers = _children(process.pid)
        assert len(workers) == 2
        process.send_signal(sig)
        assert process.wait(timeout=15) == 0
    for worker in workers:
        assert not Path(f"/proc/{worker}").exists() or "zombie" in Path(f"/proc/{worker}/status").read_text()
    assert log.read_text().count('"GET /slides/slide%20one/Da0.jpg HTTP/1.1" 200') == 20


def test_a_dead_worker_stops_the_server(root: Path) -> None:
    with composite_server(root, "--workers", "2", "--quiet") as (url, process):
        assert _get(url + "api/slides")[0] == 200
        os.kill(_children(process.pid)[0], signal.SIGKILL)
        assert process.wait(timeout=15) == 1


def test_other_commands_do_not_load_the_server() -> None:
    """aiohttp (about 20 MB resident) is imported only by ``serve``: conversions, whose memory the
    benchmarks measure, do not carry it. The CLI's --cache-mb default is the server's."""
    code = "import sys; from composite.cli import build_parser; build_parser(); print('aiohttp' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == "False"
    from composite.cli import serve
    from composite.server import limits
    from composite.server.files import FILE_CACHE_BYTES

    assert serve.CACHE_MB << 20 == FILE_CACHE_BYTES
    assert serve.HEADER_TIMEOUT == limits.HEADER_TIMEOUT
    assert serve.KEEPALIVE_TIMEOUT == limits.KEEPALIVE_TIMEOUT
    assert serve.MAX_CONNECTIONS == limits.MAX_CONNECTIONS
    from composite.server import OPEN_SLIDES, virtual

    assert serve.OPEN_SLIDES == OPEN_SLIDES == virtual.MAX_SLIDES


def test_default_is_one_worker_per_core(root: Path) -> None:
    from composite.cli.serve import default_processes

    cores = len(os.sched_getaffinity(0))
    assert default_processes() == cores
    with composite_server(root, "--quiet") as (url, process):
        assert _get(url + "api/slides")[0] == 200
        # One worker runs in the process itself; more are forked children.
        assert len(_children(process.pid)) == (cores if cores > 1 else 0)


def test_malformed_requests_get_400_and_no_traceback(root: Path, tmp_path: Path) -> None:
    log = tmp_path / "stderr.txt"
    malformed = [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", b"GET /\xff HTTP/1.1\r\n\r\n"]
    with composite_server(root, "--workers", "1", log=log) as (url, process):
        port = int(url.rsplit(":", 1)[1].strip("/"))
        for request in malformed:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(request)
                assert conn.recv(64).split(b"\r\n")[0].endswith(b" 400 Bad Request")
        assert _get(url + "api/slides")[0] == 200  # still serving
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    stderr = log.read_text()
    assert "Traceback" not in stderr and "Error handling request" not in stderr
    assert stderr.count('" 400 ') == len(malformed)
