"""The viewer, unchanged, on slides that are not CWS: headless Chromium shows an SVS, a DICOM series
and an ACI mosaic served by ``wsi-composite serve`` as virtual CWS directories, and what it draws
matches an independent reading of the source (OpenSlide for the SVS and for the SVS the DICOM
series was copied from; Pillow's decoding of the mosaic's camera JPEGs, placed by hand). Then a
plain SVS and a pyramidal TIFF on nginx, read by the viewer itself with Range requests.

Screenshots and screenshot|reference pairs go to test-artifacts/viewer/ (``virtual-*``).
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import openslide
import pytest
import tifffile
from numpy.typing import NDArray
from PIL import Image

from benchmarks.http_servers import NGINX, composite_server, nginx_server
from composite import codecs
from tests.test_viewer_browser import (  # noqa: F401 - browser is a fixture
    ARTIFACTS,
    PLACES,
    VIEW_H,
    VIEW_W,
    WEB,
    _assert_matches,
    _open,
    _reference,
    _require,
    _save,
    _show,
    browser,
)

from .virtual_fixtures import write_aci_mosaic, write_dicom_series

pytestmark = pytest.mark.slow
TILE = (900, 700)  # the mosaic's camera images; seams at x = 900, y = 700


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, synthetic_svs: Path) -> Path:
    root = tmp_path_factory.mktemp("virtual-root")
    shutil.copy(synthetic_svs, root / "case.svs")
    write_dicom_series(root / "series", synthetic_svs)
    write_aci_mosaic(root / "mosaic", size=TILE)
    return root


def _mosaic(directory: Path) -> NDArray[np.int16]:
    """The mosaic as Pillow decodes its pieces, placed by the manifest's offsets (Y before X)."""
    placed = []
    for line in (directory / "mosaic.aci").read_text().splitlines():
        if line and not line.startswith("#"):
            name, y, x = line.rsplit(" ", 2)
            placed.append((np.asarray(Image.open(directory / name).convert("RGB")), int(y), int(x)))
    height = max(y + p.shape[0] for p, y, _ in placed)
    width = max(x + p.shape[1] for p, _, x in placed)
    canvas = np.full((height, width, 3), 255, np.uint8)
    for pixels, y, x in placed:
        canvas[y : y + pixels.shape[0], x : x + pixels.shape[1]] = pixels
    return canvas.astype(np.int16)


def _view(page: Any, url: str, slide: str, name: str, place: tuple[int, int], reference0: Any, zoomed: Any) -> None:
    _open(page, f"{url}?slide=slides/{slide}/")
    x0, y0 = place
    shot = _show(page, x0, y0, VIEW_W, VIEW_H)
    reference = reference0(x0, y0)
    _save(f"virtual-{name}-level0", page, shot, reference)
    # SVS and DICOM: the stored JPEG tiles sent unchanged, so OpenSlide's pixels; the mosaic's
    # blocks are re-encoded (Q90 RGB) from the camera JPEGs.
    _assert_matches(f"virtual/{name} level 0", shot, reference, mean=1.5 if name != "aci" else 2.5, p99=12)
    if name != "aci":  # 0.25 um/px from the source's metadata (the mosaic has none)
        assert page.evaluate("document.getElementById('scalebar').textContent") == "20 \u00b5m"
    shot = _show(page, 0, 0, VIEW_W * 4, VIEW_H * 4)
    reference = zoomed()
    _save(f"virtual-{name}-zoomed-out", page, shot, reference)
    _assert_matches(f"virtual/{name} zoomed out", shot, reference, mean=3.0, p99=20)


def test_viewer_on_virtual_slides(browser: Any, root: Path, synthetic_svs: Path) -> None:  # noqa: F811
    mosaic = _mosaic(root / "mosaic")

    def svs0(x0: int, y0: int) -> NDArray[np.int16]:
        return _reference(synthetic_svs, (x0, y0), 0, (VIEW_W, VIEW_H))

    def svs1() -> NDArray[np.int16]:
        return _reference(synthetic_svs, (0, 0), 1, (VIEW_W, VIEW_H))

    def aci0(x0: int, y0: int) -> NDArray[np.int16]:
        return mosaic[y0 : y0 + VIEW_H, x0 : x0 + VIEW_W]

    def aci1() -> NDArray[np.int16]:
        full = np.full((VIEW_H * 4, VIEW_W * 4, 3), 255, np.uint8)
        part = mosaic[: VIEW_H * 4, : VIEW_W * 4].astype(np.uint8)
        full[: part.shape[0], : part.shape[1]] = part
        small = Image.fromarray(full).resize((VIEW_W, VIEW_H), Image.Resampling.BOX)
        return np.asarray(small).astype(np.int16)

    page = browser.new_page()
    try:
        with composite_server(root, "--workers", "1") as (url, _):
            page.goto(url)
            page.wait_for_function("window.cwsViewer && window.cwsViewer.slide")
            names = page.locator("#slide-list a").all_text_contents()
            assert names == ["case.svs", "mosaic/mosaic.aci", "series"]
            for kind in ("thumbnail", "label", "macro"):  # case.svs opens first: its companions show
                page.wait_for_function(f"!document.getElementById('{kind}').hidden")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "virtual-slide-list.png"))
            _view(page, url, "case.svs", "svs", PLACES["ours"], svs0, svs1)
            _view(page, url, "series", "dicom", PLACES["ours"], svs0, svs1)
            _view(page, url, "mosaic/mosaic.aci", "aci", (TILE[0] - 240, TILE[1] - 180), aci0, aci1)
    finally:
        page.close()


@pytest.mark.parametrize("kind", ["svs", "tiff"])
def test_viewer_reads_a_plain_svs_or_tiff_from_nginx(
    browser: Any,  # noqa: F811
    tmp_path: Path,
    synthetic_svs: Path,
    synthetic_tiff: Path,
    kind: str,
) -> None:
    """No server code: nginx serves the file, the viewer reads its IFDs and tiles by Range
    requests (composite/web/tiff.js). The SVS's RGB JPEG tiles need the Adobe marker to show
    OpenSlide's colours; the generic TIFF's are YCbCr with reduced-resolution pages."""
    _require(Path(NGINX).exists(), "nginx is missing (Debian package nginx; make test installs it)")
    source = synthetic_svs if kind == "svs" else synthetic_tiff
    slides = tmp_path / "slides"
    slides.mkdir()
    shutil.copy(source, slides / source.name)
    page = browser.new_page()
    try:
        with nginx_server(WEB, slides, tmp_path / "nginx") as (url, _):
            _open(page, f"{url}?slide=slides/{source.name}")
            assert page.evaluate("window.cwsViewer.slide.layout") == "tiff"
            x0, y0 = PLACES["ours"]
            shot = _show(page, x0, y0, VIEW_W, VIEW_H)
            reference = _reference(source, (x0, y0), 0, (VIEW_W, VIEW_H))
            _save(f"range-{kind}-level0", page, shot, reference)
            _assert_matches(f"range/{kind} level 0", shot, reference, mean=1.5, p99=12)
            shot = _show(page, 0, 0, VIEW_W * 4, VIEW_H * 4)
            with openslide.OpenSlide(str(source)) as slide:
                level = slide.get_best_level_for_downsample(4.01)
                factor = slide.level_downsamples[level]
            reference = _reference(source, (0, 0), level, (round(VIEW_W * 4 / factor), round(VIEW_H * 4 / factor)))
            if reference.shape[:2] != (VIEW_H, VIEW_W):
                small = Image.fromarray(reference.astype(np.uint8)).resize((VIEW_W, VIEW_H), Image.Resampling.BOX)
                reference = np.asarray(small).astype(np.int16)
            _save(f"range-{kind}-zoomed-out", page, shot, reference)
            _assert_matches(f"range/{kind} zoomed out", shot, reference, mean=3.0, p99=20)
            if kind == "svs":
                # The pixels above cannot show a missing Adobe marker (this writer's RGB tiles also
                # name their components R, G, B, which browsers honour); Aperio's name them 0, 1, 2.
                # So the bytes the browser decodes must be the CWS writer's standalone JPEG.
                with tifffile.TiffFile(source) as tif:
                    tiff_page = tif.pages[0]
                    assert tiff_page.photometric == 2  # RGB
                    handle = tif.filehandle
                    handle.seek(tiff_page.dataoffsets[5])
                    tile = handle.read(tiff_page.databytecounts[5])
                    tables = tiff_page.jpegtables
                made = page.evaluate(
                    """async ([tile, tables]) => {
                        const bytes = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
                        const blob = TIFFSlide.standalone(bytes(tile), bytes(tables), true);
                        const out = new Uint8Array(await blob.arrayBuffer());
                        let text = "";
                        for (const b of out) text += String.fromCharCode(b);
                        return btoa(text);
                    }""",
                    [base64.b64encode(tile).decode(), base64.b64encode(tables).decode()],
                )
                assert base64.b64decode(made) == codecs.standalone_jpeg(tile, tables=tables, rgb=True)
    finally:
        page.close()
