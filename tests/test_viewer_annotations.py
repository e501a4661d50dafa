"""The viewer's annotation overlay in headless Chromium: a sidecar GeoJSON / ImageScope XML found on
a plain static host and through our server's slide list, outlines drawn where the level-0
coordinates say, names on hover (holes excluded), the toggle, and files dropped onto the page.

Screenshots go to test-artifacts/viewer/annotations-*.png.
"""

from __future__ import annotations

import io
import itertools
import json
import shutil
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from benchmarks.http_servers import composite_server, http_server
from composite.convert import WriteOptions, convert
from tests.annotation_fixtures import IMAGESCOPE_XML, QUPATH_GEOJSON, TUMOUR_RING
from tests.test_viewer_browser import ARTIFACTS, WEB, _open, browser  # noqa: F401  (browser: a fixture)

pytestmark = pytest.mark.slow
TUMOUR_RED = (200, 0, 0)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, synthetic_svs: Path) -> Path:
    """site/: the viewer, slides/geo (annotations.geojson inside), slides/xml (annotations.xml), slides/bare."""
    site = tmp_path_factory.mktemp("annotated-site")
    shutil.copytree(WEB, site, dirs_exist_ok=True)
    convert(synthetic_svs, site / "slides" / "geo", to="cws", options=WriteOptions(parents=True))
    shutil.copytree(site / "slides" / "geo", site / "slides" / "xml")
    shutil.copytree(site / "slides" / "geo", site / "slides" / "bare")
    (site / "slides" / "geo" / "annotations.geojson").write_text(QUPATH_GEOJSON)
    (site / "slides" / "xml" / "annotations.xml").write_text(IMAGESCOPE_XML)
    return site


def _screen(page: Any, points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Level-0 points -> pixels of the viewer element."""
    return [
        tuple(xy)
        for xy in page.evaluate(
            """(points) => points.map(([x, y]) => {
                const p = window.cwsViewer.viewer.world.getItemAt(0).imageToViewerElementCoordinates(
                    new OpenSeadragon.Point(x, y));
                return [p.x, p.y];
            })""",
            [list(p) for p in points],
        )
    ]


def _shot(page: Any, name: str) -> NDArray[np.int16]:
    page.wait_for_function("window.cwsViewer.whenLoaded()", timeout=30_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"annotations-{name}-page.png"))
    png = page.screenshot(clip=page.locator("#viewer").bounding_box())
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def _near_colour(image: NDArray[np.int16], xy: tuple[float, float], colour: tuple[int, int, int]) -> bool:
    """Some pixel within 2 px of ``xy`` has ``colour`` (the outline is 2 px wide, antialiased)."""
    x, y = round(xy[0]), round(xy[1])
    patch = image[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3]
    return bool((np.abs(patch - np.array(colour)).max(axis=2) <= 40).any())


def _edge_midpoints(ring: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    return [((a[0] + b[0]) / 2, (a[1] + b[1]) / 2) for a, b in itertools.pairwise(ring)]


def _hover(page: Any, level0: tuple[float, float]) -> str | None:
    (x, y), box = _screen(page, [level0])[0], page.locator("#viewer").bounding_box()
    page.mouse.move(box["x"] + x, box["y"] + y)
    page.wait_for_timeout(100)
    return page.evaluate(
        "(() => { const t = document.getElementById('annotation-tip'); return t.hidden ? null : t.textContent; })()"
    )


def test_sidecar_geojson_on_a_static_host(browser: Any, site: Path) -> None:  # noqa: F811
    page = browser.new_page()
    try:
        with http_server(site) as url:
            _open(page, f"{url}?slide=slides/geo/")
            page.wait_for_function("window.cwsViewer.annotations.regions.length === 3")
            assert page.evaluate("window.cwsViewer.annotations.source") == "annotations.geojson"
            assert page.locator("#annotation-classes li").all_text_contents() == [
                "Tumor: 1",
                "Stroma: 1",
                "Tumor: Mitosis: 1",
            ]
            page.evaluate("window.cwsViewer.showRegion(100, 1150, 1300, 1000)")
            shot = _shot(page, "geojson")
            edges = _screen(page, _edge_midpoints(TUMOUR_RING))
            outside = _screen(
                page,
                [(x, y + 40) for x, y in _edge_midpoints(TUMOUR_RING)[:1]]
                + [(x - 40, y) for x, y in _edge_midpoints(TUMOUR_RING)[3:4]],
            )
            drawn = [_near_colour(shot, xy, TUMOUR_RED) for xy in edges]
            assert all(drawn), f"outline missing at edge midpoints {drawn} (see {ARTIFACTS})"
            assert not any(_near_colour(shot, xy, TUMOUR_RED) for xy in outside), "outline where there is no edge"
            assert _hover(page, (900, 1400)) == "tumour A \u2014 Tumor"
            assert _hover(page, (650, 1650)) is None, "inside the hole there is no region"
            page.locator("#annotations-toggle").uncheck()
            hidden = _shot(page, "geojson-hidden")
            assert not any(_near_colour(hidden, xy, TUMOUR_RED) for xy in edges)
            assert _hover(page, (900, 1400)) is None
            page.locator("#annotations-toggle").check()
            assert _near_colour(_shot(page, "geojson-again"), edges[0], TUMOUR_RED)
            _open(page, f"{url}?slide=slides/bare/")
            page.wait_for_function("window.cwsViewer.slide.url.endsWith('/bare/')")
            page.wait_for_timeout(300)
            assert page.evaluate("window.cwsViewer.annotations.regions.length") == 0
            assert page.locator("#annotations").is_hidden()
    finally:
        page.close()


def test_server_lists_annotations_and_the_viewer_reads_imagescope_xml(browser: Any, site: Path) -> None:  # noqa: F811
    page = browser.new_page()
    try:
        with composite_server(site / "slides") as (url, _):
            with urllib.request.urlopen(url + "api/slides") as response:
                listed = {s["name"]: s["annotations"] for s in json.load(response)}
            assert listed == {
                "bare": None,
                "geo": "slides/geo/annotations.geojson",
                "xml": "slides/xml/annotations.xml",
            }
            _open(page, f"{url}?slide=slides/xml/")
            page.wait_for_function("window.cwsViewer.annotations.regions.length === 6")
            page.evaluate("window.cwsViewer.showRegion(1500, 700, 1500, 1200)")
            _shot(page, "imagescope")
            assert _hover(page, (2050, 1200)) == "E1 \u2014 Tumour"
            assert _hover(page, (2700, 1780)) == "S1 \u2014 Stroma"
    finally:
        page.close()


def test_dropped_files_and_hostile_xml(browser: Any, site: Path) -> None:  # noqa: F811
    page = browser.new_page()
    try:
        with http_server(site) as url:
            _open(page, f"{url}?slide=slides/bare/")

            def drop(text: str, name: str) -> None:
                data = page.evaluate_handle(
                    "([text, name]) => {"
                    " const d = new DataTransfer(); d.items.add(new File([text], name)); return d; }",
                    [text, name],
                )
                page.dispatch_event("#viewer", "drop", {"dataTransfer": data})

            drop(IMAGESCOPE_XML, "case.xml")
            page.wait_for_function("window.cwsViewer.annotations.regions.length === 6")
            assert page.evaluate("window.cwsViewer.annotations.source") == "case.xml"
            page.evaluate("window.cwsViewer.showRegion(0, 0, 3000, 2200)")
            _shot(page, "dropped")
            assert _hover(page, (1000, 700)) == "T1 \u2014 Tumour"
            laughs = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "bbbbbbbb">]><Annotations>&b;</Annotations>'
            drop(laughs, "laughs.xml")
            page.wait_for_function("document.getElementById('message').textContent.includes('DTD')")
            assert page.evaluate("window.cwsViewer.annotations.source") == "case.xml"  # the last good file stays
    finally:
        page.close()
