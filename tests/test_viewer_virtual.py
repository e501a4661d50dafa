"""The viewer, unchanged, on slides that are not CWS: headless Chromium shows an SVS, a DICOM series
and an ACI mosaic served by ``wsi-composite serve`` as virtual CWS directories, and what it draws
matches an independent reading of the source (OpenSlide for the SVS and for the SVS the DICOM
series was copied from; Pillow's decoding of the mosaic's camera JPEGs, placed by hand).

Screenshots and screenshot|reference pairs go to test-artifacts/viewer/ (``virtual-*``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from benchmarks.http_servers import composite_server
from tests.test_viewer_browser import (  # noqa: F401 - browser is a fixture
    ARTIFACTS,
    PLACES,
    VIEW_H,
    VIEW_W,
    _assert_matches,
    _open,
    _reference,
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
