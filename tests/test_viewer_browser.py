"""The viewer in a real browser: headless Debian Chromium (driven by Playwright with the system
executable) shows CWS slides served by our server, by ``python -m http.server`` and by nginx, and
what it draws at level 0 (and at the lower levels) matches OpenSlide's pixels of the source SVS.

Screenshots (the page, and screenshot|reference pairs) are kept under test-artifacts/viewer/.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openslide
import pytest
from numpy.typing import NDArray
from PIL import Image

from benchmarks.http_servers import NGINX, composite_server, http_server, nginx_server
from composite.convert import WriteOptions, convert
from tests.cws_fixtures import write_scanner_cws

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
WEB = REPO / "composite" / "web"
ARTIFACTS = REPO / "test-artifacts" / "viewer"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEW_W, VIEW_H = 480, 360  # the viewer element, in CSS pixels = screen pixels (scale factor 1)
# Level-0 places with tissue that straddle block seams: 240-px blocks at x=2160, y=960 (ours);
# 752x480 scanner blocks overlapping 16 px, seams at x=736 and y=464 (scanner).
PLACES = {"ours": (1925, 845), "scanner": (560, 320)}


def _require(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (required under CI)")
        pytest.skip(why)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (Debian package chromium; make test installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "playwright is not installed (pip extra 'test')")
        raise
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 260 + VIEW_W + 40, "height": VIEW_H + 160},
            device_scale_factor=1,
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, synthetic_svs: Path) -> Path:
    """site/: the viewer files, and site/slides/{ours,scanner} made from the synthetic SVS."""
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(WEB, site, dirs_exist_ok=True)
    report = convert(synthetic_svs, site / "slides" / "ours", to="cws", options=WriteOptions(parents=True))
    assert report.format == "cws"
    write_scanner_cws(synthetic_svs, site / "slides" / "scanner")
    return site


def _reference(svs: Path, location: tuple[int, int], level: int, size: tuple[int, int]) -> NDArray[np.int16]:
    """OpenSlide's pixels, composited over white like the viewer's background."""
    with openslide.OpenSlide(str(svs)) as slide:
        rgba = slide.read_region(location, level, size)
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB")).astype(np.int16)


def _open(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_function(
        "window.cwsViewer && window.cwsViewer.slide && window.cwsViewer.viewer.world.getItemCount() > 0",
        timeout=30_000,
    )
    page.add_style_tag(
        content=f"html, body {{ height: auto; }}"
        f" body {{ grid-template-columns: 260px {VIEW_W}px; grid-template-rows: auto {VIEW_H}px; }}"
        f" #viewer {{ width: {VIEW_W}px; height: {VIEW_H}px; }}"
    )
    page.wait_for_function(
        f"window.cwsViewer.viewer.viewport.getContainerSize().x === {VIEW_W}"
        f" && window.cwsViewer.viewer.viewport.getContainerSize().y === {VIEW_H}"
    )


def _show(page: Any, x0: int, y0: int, w: int, h: int) -> NDArray[np.int16]:
    """Fit level-0 box (x0, y0, w, h) to the viewer, wait for its tiles, return the viewer's pixels."""
    page.evaluate("([x, y, w, h]) => window.cwsViewer.showRegion(x, y, w, h)", [x0, y0, w, h])
    page.wait_for_function("window.cwsViewer.whenLoaded()", timeout=30_000)
    box = page.locator("#viewer").bounding_box()
    png = page.screenshot(clip=box)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def _centre(image: NDArray[np.int16]) -> NDArray[np.int16]:
    """The middle half of each axis: away from the navigator, the buttons and the scale bar."""
    h, w = image.shape[:2]
    return image[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]


def _save(name: str, page: Any, shot: NDArray[np.int16], reference: NDArray[np.int16]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-page.png"))
    pair = np.concatenate([shot, np.full((shot.shape[0], 8, 3), 0, np.int16), reference], axis=1)
    Image.fromarray(pair.astype(np.uint8)).save(ARTIFACTS / f"{name}-viewer-vs-openslide.png")


def _assert_matches(
    name: str, shot: NDArray[np.int16], reference: NDArray[np.int16], *, mean: float, p99: float
) -> None:
    diff = np.abs(_centre(shot) - _centre(reference))
    # The comparison must be able to fail: the same view shifted by 6 px differs clearly.
    shifted = np.abs(_centre(shot)[6:, 6:] - _centre(reference)[:-6, :-6])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with open(ARTIFACTS / "metrics.txt", "a") as log:
        log.write(
            f"{name}: mean {diff.mean():.2f} p99 {np.percentile(diff, 99):.1f} max {diff.max()}"
            f" (6-px shift: mean {shifted.mean():.2f})\n"
        )
    assert _centre(reference).std() > 20, f"{name}: the reference has no detail; pick another place"
    assert shifted.mean() > 3 * max(diff.mean(), 1.0), f"{name}: comparison not sensitive to position"
    assert diff.mean() <= mean and np.percentile(diff, 99) <= p99, (
        f"{name}: viewer differs from OpenSlide: mean {diff.mean():.2f}, p99 {np.percentile(diff, 99):.1f},"
        f" max {diff.max()} (see {ARTIFACTS})"
    )


def _check_slide(page: Any, base: str, slide: str, svs: Path, host: str) -> None:
    _open(page, f"{base}?slide=slides/{slide}/")
    assert page.evaluate("window.cwsViewer.viewer.drawer.getType()") == "webgl"  # draws tiles 1:1, no seams
    x0, y0 = PLACES[slide]
    shot = _show(page, x0, y0, VIEW_W, VIEW_H)
    reference = _reference(svs, (x0, y0), 0, (VIEW_W, VIEW_H))
    _save(f"{host}-{slide}-level0", page, shot, reference)
    # Ours: JPEG blocks copied byte for byte, so identical pixels; scanner fixture: re-encoded at Q95.
    _assert_matches(f"{host}/{slide} level 0", shot, reference, mean=1.5, p99=12)
    assert page.evaluate("document.getElementById('scalebar').textContent") == "20 \u00b5m"  # 0.25 um/px
    # Zoomed out 4x (ours: the ScanSlide level, copied from the SVS's own level 1) and 8x (scanner:
    # the ScanSlide overview, which starts 400 px up-left of FinalScan and must be aligned by stage).
    factor = 4 if slide == "ours" else 8
    shot = _show(page, 0, 0, VIEW_W * factor, VIEW_H * factor)
    if slide == "ours":
        reference = _reference(svs, (0, 0), 1, (VIEW_W, VIEW_H))
    else:
        full = _reference(svs, (0, 0), 0, (VIEW_W * factor, VIEW_H * factor)).astype(np.uint8)
        reference = np.asarray(Image.fromarray(full).resize((VIEW_W, VIEW_H), Image.Resampling.BOX)).astype(np.int16)
    _save(f"{host}-{slide}-zoomed-out", page, shot, reference)
    _assert_matches(f"{host}/{slide} zoomed out", shot, reference, mean=3.0, p99=20)


@pytest.mark.parametrize("slide", ["ours", "scanner"])
def test_viewer_on_our_server(browser: Any, site: Path, synthetic_svs: Path, slide: str) -> None:
    page = browser.new_page()
    try:
        with composite_server(site / "slides") as (url, _):
            _check_slide(page, url, slide, synthetic_svs, "composite")
    finally:
        page.close()


@pytest.mark.parametrize("slide", ["ours", "scanner"])
def test_viewer_on_python_http_server(browser: Any, site: Path, synthetic_svs: Path, slide: str) -> None:
    page = browser.new_page()
    try:
        with http_server(site) as url:
            _check_slide(page, url, slide, synthetic_svs, "http.server")
            assert page.locator("#slides").is_hidden()  # no api/slides on a plain static host
            if slide == "ours":  # companions found by their conventional names
                page.wait_for_function("!document.getElementById('label').hidden")
                assert page.evaluate("document.querySelector('#thumbnail img').naturalWidth") > 0
    finally:
        page.close()


@pytest.mark.parametrize("slide", ["ours", "scanner"])
def test_viewer_on_nginx(browser: Any, site: Path, synthetic_svs: Path, slide: str, tmp_path: Path) -> None:
    _require(Path(NGINX).exists(), "nginx is missing (Debian package nginx; make test installs it)")
    page = browser.new_page()
    try:
        with nginx_server(WEB, site / "slides", tmp_path / "nginx") as (url, _):  # the package's own composite/web/
            _check_slide(page, url, slide, synthetic_svs, "nginx")
    finally:
        page.close()


def test_slide_list_and_companions_on_our_server(browser: Any, site: Path) -> None:
    page = browser.new_page()
    try:
        with composite_server(site / "slides") as (url, _):
            page.goto(url)
            page.wait_for_function("window.cwsViewer && window.cwsViewer.slide")
            links = page.locator("#slide-list a")
            assert links.all_text_contents() == ["ours", "scanner"]
            assert page.locator("#title").text_content() == "ours"  # the first slide opens by itself
            for kind in ("thumbnail", "label", "macro"):
                page.wait_for_function(f"!document.getElementById('{kind}').hidden")
            links.nth(1).click()
            page.wait_for_function("window.cwsViewer.slide.layout === 'scanner'")
            assert page.url.endswith("?slide=slides%2Fscanner%2F")
            assert page.locator("#title").text_content() == "scanner"
            page.wait_for_function("document.getElementById('thumbnail').hidden")  # the scanner has none
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.wait_for_function("window.cwsViewer.whenLoaded()")
            page.screenshot(path=str(ARTIFACTS / "composite-slide-list.png"))
    finally:
        page.close()


def test_bad_slide_url_shows_a_message(browser: Any, site: Path) -> None:
    page = browser.new_page()
    try:
        with http_server(site) as url:
            page.goto(f"{url}?slide=slides/missing/")
            page.wait_for_function("document.getElementById('message').textContent !== ''")
            text = page.locator("#message").text_content()
            assert "slides/missing/FinalScan.ini: not found" in text
            page.goto(f"{url}?slide=javascript:alert(1)")
            page.wait_for_function("document.getElementById('message').textContent !== ''")
            assert "not an http(s) URL" in page.locator("#message").text_content()
    finally:
        page.close()


def test_glass_left_out_is_painted_with_the_background_colour(browser: Any, tmp_path: Path) -> None:
    """--skip-glass lists no block there; the viewer paints tBackgroundColor, not white."""
    from composite.synthetic import write_synthetic_slide
    from composite.synthetic_glass import GlassScene

    from .cws_reference import read_ini

    width, height, tile = 4800, 3600, 240
    svs = write_synthetic_slide(
        tmp_path / "g.svs", width=width, height=height, stamp=False, scene=GlassScene(width=width, height=height)
    )
    site = tmp_path / "site"
    shutil.copytree(WEB, site)
    convert(svs, site / "slides" / "glass", to="cws", options=WriteOptions(skip_glass=True, parents=True))
    sections = read_ini(site / "slides" / "glass" / "FinalScan.ini")
    background = np.array([int(v) for v in sections["Header"]["tbackgroundcolor"].split(",")])
    cols = -(-width // tile)
    listed = {(int(n[2:]) % cols, int(n[2:]) // cols) for n, v in sections.items() if "x" in v and n.startswith("Da")}
    # A view whose blocks are all left out: the top edge, right of the pinned top-left block.
    x0, y0 = 2 * tile, 0
    blocks = {(c, r) for c in range(x0 // tile, (x0 + VIEW_W) // tile + 1) for r in range((VIEW_H // tile) + 1)}
    assert not blocks & listed and tuple(background) != (255, 255, 255)
    page = browser.new_page()
    try:
        with http_server(site) as url:
            _open(page, f"{url}?slide=slides/glass/")
            shot = _centre(_show(page, x0, y0, VIEW_W, VIEW_H))
    finally:
        page.close()
    assert np.abs(shot - background).max() <= 2, f"viewer shows {shot.reshape(-1, 3).mean(0)}, not {background}"
