"""Shared fixtures: the OpenSlide project's real slides, and synthetic slides made per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from composite.synthetic import write_synthetic_slide

ROOT = Path(__file__).resolve().parent.parent
OPENSLIDE_DATA = ROOT.parent / "shared" / "data" / "openslide"


@pytest.fixture(autouse=True)
def narrow_stripes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-encoded levels in stripes of 720 px, so the small test slides span several stripes
    (the default, 8192 px, would give one) and every writer test checks out-of-order tiles."""
    monkeypatch.setattr("composite.tiling.STRIPE_PX", 720)


@pytest.fixture(scope="session")
def openslide_data() -> Path:
    """../shared/data/openslide: skipped when absent, except under CI where that is a failure."""
    if not OPENSLIDE_DATA.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{OPENSLIDE_DATA} is missing under CI")
        pytest.skip(f"{OPENSLIDE_DATA} is absent (the OpenSlide test slides live in ../shared)")
    return OPENSLIDE_DATA


@pytest.fixture(scope="session")
def synthetic_svs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3000 x 2200 Aperio SVS: RGB JPEG 240-px tiles, 2 levels, thumbnail, label, macro."""
    path = tmp_path_factory.mktemp("synthetic") / "synthetic.svs"
    return write_synthetic_slide(path, width=3000, height=2200, tile_size=240, min_level_size=512)


@pytest.fixture(scope="session")
def synthetic_tiff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2500 x 1900 generic pyramidal TIFF: YCbCr JPEG 256-px tiles, 3 levels."""
    path = tmp_path_factory.mktemp("synthetic") / "synthetic.tif"
    return write_synthetic_slide(
        path, width=2500, height=1900, tile_size=256, layout="tiff", ycbcr=True, min_level_size=200
    )


@pytest.fixture(scope="session")
def imagescope_xml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/annotation_fixtures.py's ImageScope XML (every region type, a hole, two layers) as a file."""
    from .annotation_fixtures import IMAGESCOPE_XML

    path = tmp_path_factory.mktemp("annotations") / "slide.xml"
    path.write_text(IMAGESCOPE_XML)
    return path
