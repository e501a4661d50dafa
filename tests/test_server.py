"""The HTTP server's rules, each checked with aiohttp's test client (and raw sockets for paths a
client library would normalise before sending): caching, ranges, compression, MIME types, the
slide list, and every way out of ROOT."""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient

from composite.server import create_app, web_directory
from tests.cws_fixtures import write_levels_cws, write_scanner_cws

pytestmark = pytest.mark.asyncio
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
SECRET = b"top secret outside ROOT"


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory, synthetic_svs: Path) -> Path:
    """A pristine tree: base/secret.txt outside ROOT, ROOT=base/root with two slides."""
    base = tmp_path_factory.mktemp("served")
    (base / "secret.txt").write_bytes(SECRET)
    root = base / "root"
    root.mkdir()
    write_levels_cws(synthetic_svs, root / "cases" / "ours")
    write_scanner_cws(synthetic_svs, root / "scanner")
    return base


@pytest.fixture
def tree(tmp_path: Path, slides: Path) -> Path:
    """A copy each test may change (symlinks, new slides); returns ROOT."""
    shutil.copytree(slides, tmp_path / "base", symlinks=True)
    return tmp_path / "base" / "root"


@pytest_asyncio.fixture
async def client(aiohttp_client: ClientFactory, tree: Path) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(tree))


BLOCK = "/slides/cases/ours/Da5.jpg"
INI = "/slides/cases/ours/FinalScan.ini"
IDENTITY = {"Accept-Encoding": "identity"}


async def raw_get(client: TestClient[Any, Any], target: str) -> tuple[int, bytes]:
    """Send ``target`` byte for byte (no client-side normalisation); return status and body."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode("latin-1"))
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_block_has_long_cache_etag_and_type(client: TestClient[Any, Any], tree: Path) -> None:
    response = await client.get(BLOCK)
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["ETag"] and response.headers["Last-Modified"]
    assert response.headers["Accept-Ranges"] == "bytes"
    assert await response.read() == (tree / "cases/ours/Da5.jpg").read_bytes()


@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [("bytes=0-99", 0, 100), ("bytes=100-", 100, None), ("bytes=-50", -50, None), ("bytes=10-10", 10, 11)],
)
async def test_range_forms_give_206(
    client: TestClient[Any, Any], tree: Path, header: str, start: int, stop: int | None
) -> None:
    data = (tree / "cases/ours/Da5.jpg").read_bytes()
    response = await client.get(BLOCK, headers={"Range": header})
    assert response.status == 206
    body = await response.read()
    assert body == data[start:stop]
    first = start % len(data)
    assert response.headers["Content-Range"] == f"bytes {first}-{first + len(body) - 1}/{len(data)}"


async def test_range_beyond_the_end_is_416(client: TestClient[Any, Any], tree: Path) -> None:
    size = (tree / "cases/ours/Da5.jpg").stat().st_size
    response = await client.get(BLOCK, headers={"Range": f"bytes={size}-"})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{size}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-9", "bytes=a-b", "items=0-5"])
async def test_multiple_or_malformed_ranges_are_ignored(client: TestClient[Any, Any], tree: Path, header: str) -> None:
    response = await client.get(BLOCK, headers={"Range": header})
    assert response.status == 200
    assert await response.read() == (tree / "cases/ours/Da5.jpg").read_bytes()


async def test_revalidation_gives_304(client: TestClient[Any, Any], tree: Path) -> None:
    first = await client.get(BLOCK)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    by_etag = await client.get(BLOCK, headers={"If-None-Match": etag})
    assert by_etag.status == 304 and await by_etag.read() == b""
    assert by_etag.headers["ETag"] == etag
    by_date = await client.get(BLOCK, headers={"If-Modified-Since": modified})
    assert by_date.status == 304
    stale = await client.get(BLOCK, headers={"If-None-Match": '"0-0"'})
    assert stale.status == 200
    old_date = await client.get(BLOCK, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert old_date.status == 200
    path = tree / "cases/ours/Da5.jpg"
    path.write_bytes(path.read_bytes() + b"\0")  # a rewritten block gets a new validator
    changed = await client.get(BLOCK, headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag


async def test_ini_is_gzipped_with_its_own_etag(client: TestClient[Any, Any], tree: Path) -> None:
    text = (tree / "cases/ours/FinalScan.ini").read_bytes()
    plain = await client.get(INI, headers=IDENTITY)
    assert plain.status == 200 and "Content-Encoding" not in plain.headers
    assert await plain.read() == text
    assert plain.headers["Content-Type"].startswith("text/plain")
    assert plain.headers["Cache-Control"] == "public, max-age=60"
    assert plain.headers["Vary"] == "Accept-Encoding"
    zipped = await client.get(INI, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["Vary"] == "Accept-Encoding"
    body = await zipped.read()
    assert gzip.decompress(body) == text and len(body) < len(text)
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    again = await client.get(INI, headers={"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["ETag"]})
    assert again.status == 304
    by_date = await client.get(
        INI, headers={"Accept-Encoding": "gzip", "If-Modified-Since": zipped.headers["Last-Modified"]}
    )
    assert by_date.status == 304
    ranged = await client.get(INI, headers={"Accept-Encoding": "gzip", "Range": "bytes=0-9"})
    assert ranged.status == 206 and await ranged.read() == text[:10]


async def test_head_sends_headers_only(client: TestClient[Any, Any], tree: Path) -> None:
    for path, encoding in ((BLOCK, "identity"), (INI, "gzip")):
        response = await client.head(path, headers={"Accept-Encoding": encoding})
        assert response.status == 200
        assert await response.read() == b""
        assert response.headers["ETag"]


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html"),
        ("/viewer.js", "text/javascript"),
        ("/cws.js", "text/javascript"),
        ("/style.css", "text/css"),
        ("/vendor/openseadragon/openseadragon.min.js", "text/javascript"),
        ("/vendor/openseadragon/images/home_rest.png", "image/png"),
        ("/slides/cases/ours/SlideThumb.jpg", "image/jpeg"),
        ("/slides/scanner/FinalScan.INI", "text/plain"),
        ("/api/slides", "application/json"),
    ],
)
async def test_content_types(client: TestClient[Any, Any], path: str, content_type: str) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"].split(";")[0] == content_type


async def test_viewer_is_served_at_the_root(client: TestClient[Any, Any]) -> None:
    response = await client.get("/")
    assert "openseadragon.min.js" in await response.text()
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert (web_directory() / "index.html").is_file()


async def test_api_lists_slides(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/slides")
    assert response.headers["Cache-Control"] == "no-cache"
    slides = {s["name"]: s for s in await response.json()}
    assert set(slides) == {"cases/ours", "scanner"}
    ours = slides["cases/ours"]
    assert ours["url"] == "slides/cases/ours/"
    assert (ours["width"], ours["height"], ours["levels"]) == (3000, 2200, 3)
    assert ours["mpp"] == pytest.approx(0.25)
    assert ours["thumbnail"] == "slides/cases/ours/SlideThumb.jpg"
    assert ours["label"] == "slides/cases/ours/Label.jpg"
    scanner = slides["scanner"]
    assert scanner["ini"] == "FinalScan.INI"  # the real name on disk, for the viewer
    assert (scanner["width"], scanner["height"], scanner["levels"]) == (5 * 736 + 16, 5 * 464 + 16, 2)
    assert scanner["mpp"] == pytest.approx(0.25)  # no tMPP: from dMagnification=40
    assert scanner["thumbnail"] is None
    for slide in slides.values():  # every URL the list gives can be fetched
        for key in ("thumbnail", "label", "macro"):
            if slide[key]:
                assert (await client.get("/" + slide[key])).status == 200
        assert (await client.get("/" + slide["url"] + slide["ini"])).status == 200
    etag = response.headers["ETag"]
    assert (await client.get("/api/slides", headers={"If-None-Match": etag})).status == 304


async def test_api_follows_changes_under_root(client: TestClient[Any, Any], tree: Path) -> None:
    async def names() -> set[str]:
        return {s["name"] for s in await (await client.get("/api/slides")).json()}

    assert await names() == {"cases/ours", "scanner"}
    shutil.copytree(tree / "scanner", tree / "cases" / "deep" / "new one")
    assert await names() == {"cases/ours", "scanner", "cases/deep/new one"}
    listed = {s["name"]: s for s in await (await client.get("/api/slides")).json()}
    assert listed["cases/deep/new one"]["url"] == "slides/cases/deep/new%20one/"
    shutil.rmtree(tree / "scanner")
    assert await names() == {"cases/ours", "cases/deep/new one"}
    ini = tree / "cases/ours/FinalScan.ini"
    ini.write_text(ini.read_text().replace("iWidth=3000", "iWidth=2999", 1))
    os.utime(ini, ns=(1, 1))  # same size, different mtime: the change must still be seen
    listed = {s["name"]: s for s in await (await client.get("/api/slides")).json()}
    assert listed["cases/ours"]["width"] == 2999
    (tree / "cases/ours/Macro.jpg").unlink()
    listed = {s["name"]: s for s in await (await client.get("/api/slides")).json()}
    assert listed["cases/ours"]["macro"] is None


async def test_hidden_and_partial_slides_are_not_listed(client: TestClient[Any, Any], tree: Path) -> None:
    shutil.copytree(tree / "scanner", tree / ".writing.partial")
    (tree / "broken").mkdir()
    (tree / "broken" / "FinalScan.ini").write_bytes(b"\xff\xfe[Header]\nlXStepSize=%X%\n")
    listed = {s["name"]: s for s in await (await client.get("/api/slides")).json()}
    assert set(listed) == {"cases/ours", "scanner", "broken"}
    assert listed["broken"]["width"] is None and listed["broken"]["mpp"] is None


TRAVERSALS = [
    "/slides/../secret.txt",
    "/slides/../../secret.txt",
    "/slides/%2e%2e/secret.txt",
    "/slides/%2E%2E/%2e%2e/secret.txt",
    "/slides/..%2fsecret.txt",
    "/slides/cases/..%2f..%2f..%2fsecret.txt",
    "/slides/.%2e/secret.txt",
    "/%2e%2e/secret.txt",
    "/slides/%2fetc%2fpasswd",
    "/slides//etc/passwd",
    "//etc/passwd",
    "/slides/cases\\..\\..\\secret.txt",
    "/slides/cases%5c..%5c..%5csecret.txt",
    "/..%5csecret.txt",
    "/slides/C:/secret.txt",
    "/slides/cases/ours/%00",
    "/slides/%ff%fe",
    "/slides/" + "a" * 5000,
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_traversal_is_refused(client: TestClient[Any, Any], target: str) -> None:
    status, body = await raw_get(client, target)
    assert status in (403, 404), (target, status)
    assert SECRET not in body


async def test_symlink_out_of_root_is_refused(client: TestClient[Any, Any], tree: Path) -> None:
    outside = tree.parent / "secret.txt"
    (tree / "cases/ours/escape.jpg").symlink_to(outside)
    (tree / "cases/ours/escape-dir").symlink_to(tree.parent, target_is_directory=True)
    (tree / "cases/ours/inside.jpg").symlink_to(tree / "cases/ours/Da5.jpg")
    (tree / "cases/ours/to-hidden.jpg").symlink_to(tree / "cases/ours/.hidden.jpg")
    (tree / "cases/ours/.hidden.jpg").write_bytes(SECRET)
    for path in ("escape.jpg", "escape-dir/secret.txt", "to-hidden.jpg", ".hidden.jpg"):
        response = await client.get("/slides/cases/ours/" + path)
        assert response.status == 404, path
        assert SECRET not in await response.read()
    assert (await client.get("/slides/cases/ours/inside.jpg")).status == 200  # inside ROOT: fine


async def test_symlinked_root_is_served(aiohttp_client: ClientFactory, tree: Path) -> None:
    link = tree.parent / "root-link"
    link.symlink_to(tree, target_is_directory=True)
    client = await aiohttp_client(create_app(link))
    assert (await client.get(BLOCK)).status == 200


async def test_hidden_files_directories_and_specials_are_404(client: TestClient[Any, Any], tree: Path) -> None:
    (tree / ".git").mkdir()
    (tree / ".git" / "config").write_bytes(SECRET)
    os.mkfifo(tree / "cases/ours/pipe.jpg")
    for path in (
        "/slides/.git/config",
        "/slides/",
        "/slides",
        "/slides/cases/",
        "/slides/cases/ours",
        "/slides/cases/ours/",
        "/slides/cases/ours/pipe.jpg",
        "/slides/cases/ours/missing.jpg",
        "/vendor/",
        "/vendor/openseadragon",
        "/.gitignore",
        "/api/",
    ):
        response = await client.get(path)
        assert response.status == 404, path
        assert SECRET not in await response.read()


async def test_only_get_and_head(client: TestClient[Any, Any]) -> None:
    assert (await client.post(BLOCK)).status == 405
    assert (await client.put("/slides/cases/ours/new.jpg", data=b"x")).status == 405
    assert (await client.options(BLOCK)).status == 405  # no CORS asked for


async def test_cors_headers_when_asked(aiohttp_client: ClientFactory, tree: Path) -> None:
    plain = await aiohttp_client(create_app(tree))
    assert "Access-Control-Allow-Origin" not in (await plain.get(BLOCK)).headers
    client = await aiohttp_client(create_app(tree, cors="https://viewer.example"))
    for path in (BLOCK, INI, "/api/slides"):
        response = await client.get(path, headers={"Origin": "https://viewer.example"})
        assert response.headers["Access-Control-Allow-Origin"] == "https://viewer.example"
        assert "Content-Range" in response.headers["Access-Control-Expose-Headers"]
    preflight = await client.options(
        BLOCK, headers={"Origin": "https://viewer.example", "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status == 204
    assert "GET" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Range" in preflight.headers["Access-Control-Allow-Headers"]
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://viewer.example"


async def test_root_must_be_a_directory(tmp_path: Path) -> None:
    from composite.errors import SlideNotFoundError

    with pytest.raises(SlideNotFoundError, match="not a directory"):
        create_app(tmp_path / "missing")


async def test_preconditions_and_if_range(client: TestClient[Any, Any], tree: Path) -> None:
    data = (tree / "cases/ours/Da5.jpg").read_bytes()
    first = await client.get(BLOCK)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert (await client.get(BLOCK, headers={"If-Match": '"nope"'})).status == 412
    assert (await client.get(BLOCK, headers={"If-Match": etag})).status == 200
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert (await client.get(BLOCK, headers={"If-Unmodified-Since": old})).status == 412
    current = await client.get(BLOCK, headers={"If-Range": modified, "Range": "bytes=0-9"})
    assert current.status == 206 and await current.read() == data[:10]
    stale = await client.get(BLOCK, headers={"If-Range": old, "Range": "bytes=0-9"})
    assert stale.status == 200 and await stale.read() == data  # changed since: the whole file


async def test_large_files_follow_the_same_rules(client: TestClient[Any, Any], tree: Path) -> None:
    """Files above 1 MiB go through sendfile; the client cannot tell the difference."""
    data = os.urandom(3 * 1024 * 1024 // 2)
    (tree / "cases/ours/Macro.jpg").write_bytes(data)
    path = "/slides/cases/ours/Macro.jpg"
    whole = await client.get(path)
    assert whole.status == 200 and await whole.read() == data
    assert whole.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert whole.headers["Content-Type"] == "image/jpeg"
    small = await client.get(BLOCK)
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', whole.headers["ETag"]) and re.fullmatch(
        r'"[0-9a-f]+-[0-9a-f]+"', small.headers["ETag"]
    )  # one validator format on both paths
    assert (await client.get(path, headers={"If-None-Match": whole.headers["ETag"]})).status == 304
    assert (await client.get(path, headers={"If-Modified-Since": whole.headers["Last-Modified"]})).status == 304
    tail = await client.get(path, headers={"Range": "bytes=-100"})
    assert tail.status == 206 and await tail.read() == data[-100:]
    several = await client.get(path, headers={"Range": "bytes=0-1,5-9"})
    assert several.status == 200 and await several.read() == data
    assert (await client.get(path, headers={"Range": f"bytes={len(data)}-"})).status == 416
    head = await client.head(path)
    assert head.status == 200 and head.headers["Content-Length"] == str(len(data)) and await head.read() == b""


async def test_rewritten_blocks_are_not_served_from_memory(client: TestClient[Any, Any], tree: Path) -> None:
    path = tree / "cases/ours/Da5.jpg"
    original = path.read_bytes()
    assert await (await client.get(BLOCK)).read() == original  # now cached
    st = path.stat()
    changed = bytes(b ^ 0xFF for b in original)  # same size
    path.write_bytes(changed)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert await (await client.get(BLOCK)).read() == changed
    replacement = path.with_name("new.jpg")  # same size and mtime, another inode, renamed over it
    replacement.write_bytes(original)
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    os.replace(replacement, path)
    assert await (await client.get(BLOCK)).read() == original


async def test_directory_swapped_for_a_symlink_out_of_root_is_caught(client: TestClient[Any, Any], tree: Path) -> None:
    """A block served (and kept in memory) once is refused when its directory becomes a symlink
    leading outside ROOT, even though the file behind the path is the very same inode."""
    assert (await client.get(BLOCK)).status == 200
    moved = tree.parent / "moved-out"
    os.rename(tree / "cases/ours", moved)
    (tree / "cases/ours").symlink_to(moved, target_is_directory=True)
    response = await client.get(BLOCK)
    assert response.status == 404
    assert (await client.get(INI)).status == 404


async def test_block_cache_is_bounded_and_keeps_a_share_of_a_sweep() -> None:
    """150 kB of blocks asked for in order, again and again, through a 100 kB cache: LRU would
    evict each block just before its turn (no hits at all); random eviction keeps a share."""
    from composite.server.memory import Block, BlockCache

    st = os.stat(__file__)
    cache = BlockCache(100_000)
    paths = [f"/blocks/{n}.jpg" for n in range(150)]
    for sweep in range(4):
        hits = 0
        for path in paths:
            if cache.get(path) is not None:
                hits += 1
            else:
                cache.put(path, Block(bytes(1000), st, {}, plain=True))
        kept = [block for path in paths if (block := cache.get(path)) is not None]
        assert sum(len(block.body) for block in kept) <= 100_000
        assert hits > (40 if sweep else -1), (sweep, hits)


async def test_access_log_lines_are_batched_whole_and_escaped() -> None:
    import io

    from aiohttp.test_utils import make_mocked_request

    from composite.server.accesslog import PIECE, AccessLog

    class Stream(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[str] = []

        def write(self, text: str) -> int:
            self.writes.append(text)
            return super().write(text)

    stream = Stream()
    log = AccessLog(stream)
    response = web.Response(body=b"x" * 1234)
    for n in range(200):
        log.add(make_mocked_request("GET", f"/slides/a/Da{n}.jpg"), response, 0.0021)
    log.add(make_mocked_request("GET", "/slides/a\x1b[2J.jpg"), response, 0.0)
    assert stream.getvalue() == ""  # nothing written per request
    log.flush()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 201
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(stamp + r' \S+ "GET /slides/a/Da0\.jpg HTTP/1\.1" 200 1234 0\.002s', lines[0]), lines[0]
    assert '"GET /slides/a\\x1b[2J.jpg HTTP/1.1"' in lines[-1]  # no raw escape sequence reaches a terminal
    assert len(stream.writes) > 1 and all(len(w) <= PIECE and w.endswith("\n") for w in stream.writes)


async def test_without_a_block_cache_files_are_read_every_time(aiohttp_client: ClientFactory, tree: Path) -> None:
    client = await aiohttp_client(create_app(tree, cache_bytes=0))
    path = tree / "cases/ours/Da5.jpg"
    original = path.read_bytes()
    first = await client.get(BLOCK)
    assert first.status == 200 and await first.read() == original
    assert first.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    path.write_bytes(original[::-1])
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 1_000_000))
    assert await (await client.get(BLOCK)).read() == original[::-1]
