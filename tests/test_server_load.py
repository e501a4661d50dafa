"""Load: 64 concurrent connections for 20 s against ``wsi-composite serve`` give zero errors.

The server runs as its own process (the real CLI); the client is a bounded aiohttp loop in this
process fetching every block, INI and companion file of a converted slide round-robin and
checking each body's size against the file on disk. No timing is asserted; the rate is recorded
in test-artifacts/ for the record only.
"""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path
from urllib.parse import quote

import pytest

from benchmarks.http_servers import composite_server, load
from composite.convert import WriteOptions, convert

REPO = Path(__file__).resolve().parent.parent
CONNECTIONS = 64
SECONDS = 20.0


@pytest.mark.slow
def test_64_connections_for_20_seconds_without_errors(tmp_path: Path, synthetic_svs: Path) -> None:
    root = tmp_path / "root"
    convert(synthetic_svs, root / "slide", to="cws", options=WriteOptions(parents=True))
    files = sorted(p for p in (root / "slide").iterdir() if p.is_file())
    paths = ["slides/slide/" + quote(p.name) for p in files]
    sizes = [p.stat().st_size for p in files]
    with composite_server(root, "--quiet") as (url, process):
        result = asyncio.run(load(url, paths, sizes, connections=CONNECTIONS, seconds=SECONDS))
        assert process.poll() is None, "the server died under load"
    assert result.errors == {}, result.errors
    assert result.requests > len(paths)  # every file was fetched at least once
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    p50 = statistics.median(result.latencies) * 1000
    (artifacts / "server-load.txt").write_text(
        f"{result.requests} requests, {result.bytes / 1e6:.1f} MB in {result.seconds:.1f} s with {CONNECTIONS}"
        f" connections: {result.requests / result.seconds:.0f} req/s, p50 {p50:.1f} ms, 0 errors\n"
    )
