"""Generic pyramidal TIFF and OME-TIFF output, read by libvips, OpenSlide, tifffile and Bio-Formats."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from composite.convert import ConversionReport, TiffOptions, WriteOptions, convert
from composite.synthetic import write_synthetic_slide
from tests.test_svs_writer import _bioformats, _series, openslide_level


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "source.svs"
    return write_synthetic_slide(path, width=1800, height=1300, min_level_size=200, mpp=0.5, magnification=20)


def _convert(source: Path, dst: Path, *, ome: bool = False) -> ConversionReport:
    return convert(source, dst, options=WriteOptions(workers=2, min_level_size=100, tiff=TiffOptions(ome=ome)))


def _vips(spec: str) -> dict[str, str]:
    if shutil.which("vipsheader") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("vipsheader missing under CI (make test installs libvips-tools)")
        pytest.skip("vipsheader missing (make test installs libvips-tools)")
    result = subprocess.run(["vipsheader", "-a", spec], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return dict(re.findall(r"^([\w-]+): (.*)$", result.stdout, re.MULTILINE))


def test_generic_tiff_levels_in_libvips_openslide_and_tifffile(source: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out.tif"
    report = _convert(source, dst)
    sizes = [(lvl.width, lvl.height) for lvl in report.levels]
    assert len(sizes) == 4 and report.format == "tiff"
    header = _vips(str(dst))
    assert int(header["n-pages"]) == len(sizes)
    assert float(header["xres"]) == pytest.approx(2000.0)  # px per mm at 0.5 um/px
    for page, (width, height) in enumerate(sizes):
        header = _vips(f"{dst}[page={page}]")
        assert (int(header["width"]), int(header["height"])) == (width, height)
    with openslide.OpenSlide(dst) as slide:
        assert slide.properties["openslide.vendor"] == "generic-tiff"
        assert slide.level_dimensions == tuple(sizes)
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.5)
    with tifffile.TiffFile(dst) as tif:
        assert not tif.is_svs and len(tif.pages) == len(sizes)
        assert [int(p.subfiletype) for p in tif.pages] == [0, 1, 1, 1]
        assert all("ImageDescription" not in p.tags for p in tif.pages)
        assert [lvl.shape[:2] for lvl in tif.series[0].levels] == [(h, w) for w, h in sizes]
    assert np.array_equal(openslide_level(dst, 1), openslide_level(source, 1))  # copied level


def test_ome_tiff_has_subifd_levels_and_associated_images(source: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out.ome.tif"
    report = _convert(source, dst, ome=True)
    with tifffile.TiffFile(dst) as tif:
        assert tif.is_ome
        assert len(tif.series[0].levels) == len(report.levels)
        assert len(tif.pages[0].tags["SubIFDs"].value) == len(report.levels) - 1
        assert [s.name for s in tif.series[1:]] == ["label", "macro"]
        assert 'PhysicalSizeX="0.5"' in tif.ome_metadata  # type: ignore[operator]
    header = _vips(str(dst))
    assert int(header["n-subifds"]) == len(report.levels) - 1
    for index, level in enumerate(report.levels[1:]):
        header = _vips(f"{dst}[subifd={index}]")
        assert (int(header["width"]), int(header["height"])) == (level.width, level.height)
    info = _bioformats(dst)
    assert "Checking file format [OME-TIFF]" in info
    series = _series(info)
    assert series[0] == {"Resolutions": len(report.levels), "Width": 1800, "Height": 1300}
    assert [(s["Width"], s["Height"]) for s in series[1:]] == [(387, 463), (1280, 463)]
