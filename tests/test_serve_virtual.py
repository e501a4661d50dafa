"""Slides stored as SVS, TIFF, DICOM and ACI served as virtual CWS directories (docs/serve.md).

The main check: every file ``convert --to cws`` writes for a slide is what the server answers for
the same name, byte for byte (copied blocks, re-encoded blocks, computed levels, INI files and
companions). Then the slide list, errors (404/422, never 500), validators and ranges, changed and
removed sources, the bounds on open slides, work off the event loop, path rules, and that a server
of CWS directories alone never loads the format readers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import shutil
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from composite.convert import WriteOptions, convert
from composite.formats.cws.layout import CwsLayout
from composite.output import AciOptions
from composite.server import create_app
from composite.synthetic import write_synthetic_slide

from .virtual_fixtures import write_aci_mosaic, write_dicom_series

pytestmark = pytest.mark.asyncio
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory, synthetic_svs: Path, synthetic_tiff: Path) -> Path:
    """ROOT holding slides as they are stored: SVS, generic TIFF, a DICOM series, an ACI mosaic,
    a one-level TIFF (every lower level computed), and a CWS directory served as files."""
    root = tmp_path_factory.mktemp("stored")
    shutil.copy(synthetic_svs, root / "case.svs")
    (root / "more").mkdir()
    shutil.copy(synthetic_tiff, root / "more" / "generic.tif")
    write_dicom_series(root / "series", synthetic_svs)
    write_aci_mosaic(root / "mosaic")
    write_synthetic_slide(
        root / "flat.tiff", width=4600, height=1500, tile_size=256, layout="tiff", min_level_size=10**5
    )
    convert(synthetic_svs, root / "converted", to="cws")
    return root


@pytest_asyncio.fixture
async def client(aiohttp_client: ClientFactory, stored: Path) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(stored))


async def _get(client: TestClient[Any, Any], url: str, **headers: str) -> tuple[int, bytes]:
    response = await client.get(url, headers=headers)
    return response.status, await response.read()


@pytest.mark.parametrize(
    "source", ["case.svs", "more/generic.tif", "series", "mosaic/mosaic.aci", "flat.tiff"], ids=lambda s: s
)
async def test_every_file_is_what_convert_writes(
    client: TestClient[Any, Any], stored: Path, tmp_path: Path, source: str
) -> None:
    out = tmp_path / "cws"
    convert(stored / source, out, to="cws")
    files = sorted(p.name for p in out.iterdir())
    assert "FinalScan.ini" in files and "SlideThumb.jpg" in files
    # Last blocks first: computed levels must not depend on the order they are asked in.
    for name in reversed(files):
        status, body = await _get(client, f"/slides/{source}/{name}", **{"Accept-Encoding": "identity"})
        assert status == 200, (name, body[:200])
        assert body == (out / name).read_bytes(), name


async def test_real_slides(aiohttp_client: ClientFactory, openslide_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "series").mkdir(parents=True)
    shutil.copy(openslide_data / "small.svs", root)
    shutil.copy(openslide_data / "boxes.tiff", root)
    for name in ("boxes_0.dcm", "boxes_1.dcm"):
        shutil.copy(openslide_data / name, root / "series")
    client = await aiohttp_client(create_app(root))
    for source, src in (
        ("small.svs", root / "small.svs"),
        ("boxes.tiff", root / "boxes.tiff"),
        ("series", root / "series"),
    ):
        out = tmp_path / f"{src.name}.cws"
        convert(src, out, to="cws")
        for path in out.iterdir():
            status, body = await _get(client, f"/slides/{source}/{path.name}", **{"Accept-Encoding": "identity"})
            assert (status, body) == (200, path.read_bytes()), (source, path.name)


async def test_slide_list(client: TestClient[Any, Any], stored: Path) -> None:
    response = await client.get("/api/slides")
    assert response.status == 200
    listed = {entry["name"]: entry for entry in await response.json()}
    # The mosaic's camera JPEGs are not slides of their own; the CWS directory is listed as before.
    assert set(listed) == {"case.svs", "more/generic.tif", "series", "mosaic/mosaic.aci", "flat.tiff", "converted"}
    case = listed["case.svs"]
    assert case["url"] == "slides/case.svs/" and case["ini"] == "FinalScan.ini"
    assert (case["width"], case["height"], case["format"], case["error"]) == (3000, 2200, "svs", None)
    assert case["mpp"] == pytest.approx(0.25) and case["magnification"] == 40
    assert case["thumbnail"] == "slides/case.svs/SlideThumb.jpg"
    assert case["label"] == "slides/case.svs/Label.jpg" and case["macro"] == "slides/case.svs/Macro.jpg"
    assert listed["series"]["format"] == "dicom" and listed["mosaic/mosaic.aci"]["format"] == "aci"
    assert listed["converted"]["format"] == "cws"
    ini = (await _get(client, "/slides/case.svs/FinalScan.ini"))[1].decode()
    assert f"iLevels={case['levels']}" in ini
    for entry in listed.values():
        status, body = await _get(client, entry["thumbnail"])
        assert status == 200 and body[:2] == b"\xff\xd8", entry["name"]


async def test_aci_components_are_not_listed(
    aiohttp_client: ClientFactory, synthetic_svs: Path, tmp_path: Path
) -> None:
    """An ACI whose pieces are SVS files (``convert --to aci``) is one slide, not one per piece."""
    root = tmp_path / "root"
    root.mkdir()
    convert(synthetic_svs, root / "big.aci", options=WriteOptions(aci=AciOptions(piece_size=1024)))
    pieces = [p for p in root.rglob("*") if p.suffix.lower() in (".svs", ".tif", ".tiff")]
    assert len(pieces) > 1
    client = await aiohttp_client(create_app(root))
    names = [entry["name"] for entry in await (await client.get("/api/slides")).json()]
    assert names == ["big.aci"]


async def test_failures_are_listed_and_answer_422(
    aiohttp_client: ClientFactory, openslide_data: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for name in ("unopenable.tiff", "unreadable.svs"):
        shutil.copy(openslide_data / name, root)
    (root / "empty.svs").write_bytes(b"")
    (root / "text.aci").write_bytes(b"\x00\x01binary")
    client = await aiohttp_client(create_app(root))
    listed = {entry["name"]: entry for entry in await (await client.get("/api/slides")).json()}
    assert set(listed) == {"unopenable.tiff", "unreadable.svs", "empty.svs", "text.aci"}
    for name, entry in listed.items():
        error = entry["error"]
        assert error and "\n" not in error and str(root) not in error, error
        assert error.startswith(name), error
        for file in ("FinalScan.ini", "Da0.jpg", "SlideThumb.jpg"):
            status, body = await _get(client, f"/slides/{name}/{file}")
            assert status == 422, (name, file)
            assert body.decode() == error


async def test_a_damaged_tile_is_422_and_the_rest_is_served(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    slide = write_synthetic_slide(root / "hurt.svs", width=1200, height=900, tile_size=240, associated=False)
    import tifffile

    with tifffile.TiffFile(slide) as tif:
        offset = tif.pages[0].dataoffsets[0]
    with open(slide, "r+b") as handle:  # tile (0, 0): the JPEG's SOF and entropy data become garbage
        handle.seek(offset + 2)
        handle.write(b"\x00" * 64)
    client = await aiohttp_client(create_app(root))
    status, _ = await _get(client, "/slides/hurt.svs/Da0.jpg")
    assert status in (200, 422)  # a damaged JPEG may still be copied as bytes (the copy path does not decode)
    assert (await _get(client, "/slides/hurt.svs/Da1.jpg"))[0] == 200
    status, _ = await _get(client, "/slides/hurt.svs/ScanSlide.ini")
    assert status in (200, 404)


async def test_unknown_names_and_paths_are_404(client: TestClient[Any, Any], stored: Path) -> None:
    for url in (
        "/slides/case.svs/Da100000.jpg",
        "/slides/case.svs/Da01.jpg",
        "/slides/case.svs/L9Da0.jpg",
        "/slides/case.svs/ScanLevel7.ini",
        "/slides/case.svs/Da0_u1.jpg",
        "/slides/case.svs/notes.txt",
        "/slides/case.svs/",
        "/slides/mosaic/Da0.jpg",  # a directory that is no DICOM series
        "/slides/mosaic/tile_0_0.jpg/FinalScan.ini",  # a plain image is not served as a slide
        "/slides/converted/Da100000.jpg",  # a CWS directory: its files only
        "/slides/nothing.svs/FinalScan.ini",
        "/slides/../case.svs/FinalScan.ini",
        "/slides/%2e%2e/stored/case.svs/FinalScan.ini",
    ):
        status, _ = await _get(client, url)
        assert status == 404, url


async def test_hidden_and_symlinked_slides(aiohttp_client: ClientFactory, synthetic_svs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.svs"
    shutil.copy(synthetic_svs, outside)
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(synthetic_svs, root / ".hidden.svs")
    (root / "escape.svs").symlink_to(outside)
    (root / "inside.svs").symlink_to(root / ".hidden.svs")
    client = await aiohttp_client(create_app(root))
    for name in (".hidden.svs", "escape.svs", "inside.svs"):
        assert (await _get(client, f"/slides/{name}/FinalScan.ini"))[0] == 404, name
    assert await (await client.get("/api/slides")).json() == []


async def test_validators_ranges_and_gzip(client: TestClient[Any, Any]) -> None:
    url = "/slides/case.svs/Da3.jpg"
    response = await client.get(url)
    body, etag = await response.read(), response.headers["ETag"]
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["Content-Type"] == "image/jpeg" and response.headers["Last-Modified"]
    assert (await client.get(url, headers={"If-None-Match": etag})).status == 304
    other = await client.get("/slides/case.svs/Da4.jpg")
    assert other.headers["ETag"] != etag
    ranged = await client.get(url, headers={"Range": "bytes=10-19"})
    assert ranged.status == 206 and await ranged.read() == body[10:20]
    assert (await client.get(url, headers={"Range": f"bytes={len(body)}-"})).status == 416
    plain = await client.get("/slides/case.svs/FinalScan.ini", headers={"Accept-Encoding": "identity"})
    packed = await client.get(
        "/slides/case.svs/FinalScan.ini", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert packed.headers["Content-Encoding"] == "gzip" and packed.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(await packed.read()) == await plain.read()
    assert packed.headers["ETag"] != plain.headers["ETag"]
    again = await client.get(
        "/slides/case.svs/FinalScan.ini", headers={"Accept-Encoding": "gzip", "If-None-Match": packed.headers["ETag"]}
    )
    assert again.status == 304
    head = await client.head(url)
    assert head.status == 200 and head.headers["Content-Length"] == str(len(body))


async def test_changed_and_removed_sources(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    write_synthetic_slide(root / "a.svs", width=1500, height=1000, seed=1)
    client = await aiohttp_client(create_app(root))
    first = (await _get(client, "/slides/a.svs/Da0.jpg"))[1]
    ini = (await _get(client, "/slides/a.svs/FinalScan.ini"))[1]
    write_synthetic_slide(root / "a.svs", width=1700, height=1000, seed=2)  # replaced under the same name
    assert (await _get(client, "/slides/a.svs/Da0.jpg"))[1] != first
    assert (await _get(client, "/slides/a.svs/FinalScan.ini"))[1] != ini
    listed = await (await client.get("/api/slides")).json()
    assert listed[0]["width"] == 1700
    (root / "a.svs").unlink()
    assert (await _get(client, "/slides/a.svs/Da0.jpg"))[0] == 404
    assert await (await client.get("/api/slides")).json() == []
    # The name becomes a CWS directory: its files are served as they are.
    source = write_synthetic_slide(tmp_path / "b.svs", width=1200, height=900, seed=3)
    assert (await _get(client, "/slides/a.svs/FinalScan.ini"))[0] == 404
    write_synthetic_slide(root / "a.svs", width=1500, height=1000, seed=1)
    assert (await _get(client, "/slides/a.svs/FinalScan.ini"))[0] == 200
    (root / "a.svs").unlink()
    convert(source, root / "a.svs", to="cws")
    for name in ("FinalScan.ini", "Da0.jpg"):
        assert (await _get(client, f"/slides/a.svs/{name}"))[1] == (root / "a.svs" / name).read_bytes()


def _open_slides(root: Path) -> set[str]:
    """The files under ``root`` this process holds open (sockets and pipes, which come and go with
    connections and thread pools, are not counted)."""
    held = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # an fd closed while listing
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(f"{root}{os.sep}"):
                held.add(target)
    return held


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")
async def test_open_slides_are_bounded(aiohttp_client: ClientFactory, synthetic_svs: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for number in range(8):
        shutil.copy(synthetic_svs, root / f"s{number}.svs")
    for bound, expected in ((3, 3), (16, 8)):
        client = await aiohttp_client(create_app(root, open_slides=bound))
        rounds = []
        for _ in range(2):
            for number in range(8):
                assert (await _get(client, f"/slides/s{number}.svs/L1Da0.jpg"))[0] == 200
            assert len(await (await client.get("/api/slides")).json()) == 8
            rounds.append(_open_slides(root))
        assert len(rounds[0]) == expected, (bound, rounds[0])  # one source file per open slide
        assert rounds[0] == rounds[1] or bound < 8  # under the bound, a second round reopens nothing
        await client.close()


async def test_blocks_are_made_off_the_event_loop(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    real = CwsLayout.block

    def spy(self: CwsLayout, ref: Any) -> bytes:
        threads.append(threading.current_thread().name)
        return real(self, ref)

    monkeypatch.setattr(CwsLayout, "block", spy)
    urls = [f"/slides/flat.tiff/L1Da{n}.jpg" for n in range(4)] * 3  # concurrent, repeated
    results = await asyncio.gather(*(_get(client, url) for url in urls))
    assert all(status == 200 for status, _ in results)
    assert threads and all(name.startswith("composite-virtual") for name in threads)
    assert len(threads) == 4  # each block made once: concurrent requests share it, then the cache


async def test_virtual_list_json_keys(client: TestClient[Any, Any]) -> None:
    raw = json.loads(await (await client.get("/api/slides")).read())
    keys = {"name", "url", "ini", "width", "height", "levels", "mpp", "magnification", "thumbnail", "label"}
    assert all(keys <= set(entry) and {"macro", "annotations", "format", "error"} <= set(entry) for entry in raw)


async def test_skip_glass_serves_what_convert_skip_glass_writes(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    from composite.synthetic_glass import GlassScene

    root = tmp_path / "root"
    root.mkdir()
    width, height = 3600, 2400
    source = write_synthetic_slide(
        root / "glass.svs", width=width, height=height, stamp=False, scene=GlassScene(width=width, height=height)
    )
    out = tmp_path / "skip"
    convert(source, out, to="cws", options=WriteOptions(skip_glass=True))
    client = await aiohttp_client(create_app(root, skip_glass=True))
    written = {p.name for p in out.iterdir()}
    for name in sorted(written, key=lambda n: not n.endswith(".ini")):  # INI files first: before any block
        status, body = await _get(client, f"/slides/glass.svs/{name}", **{"Accept-Encoding": "identity"})
        assert (status, body) == (200, (out / name).read_bytes()), name
    plain = tmp_path / "plain"
    convert(source, plain, to="cws")
    left_out = {p.name for p in plain.iterdir()} - written
    assert left_out  # the scene has glass blocks
    for name in sorted(left_out)[:20]:
        assert (await _get(client, f"/slides/glass.svs/{name}"))[0] == 404, name
