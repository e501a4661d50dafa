"""`wsi-composite export`: files match OpenSlide's pixels of the same level/region/associated image."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile
from numpy.typing import NDArray
from PIL import Image

from composite import codecs, open_slide
from composite.errors import LimitError
from composite.geometry import TileGrid
from composite.model import Level, Slide
from composite.tools.export import ExportOptions, export_slide
from tests.cli import run as run_cli

from .readers import openslide_region, psnr

run = partial(run_cli, "export")  # wsi-composite export ARGS...


def load(path: Path) -> NDArray[np.uint8]:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def assert_close(ours: NDArray[np.uint8], theirs: NDArray[np.uint8], tolerance: int = 2) -> None:
    assert ours.shape == theirs.shape
    diff = np.abs(ours.astype(int) - theirs.astype(int)).max()
    assert diff <= tolerance, f"max difference {diff}"


def test_whole_levels_png_equal_openslide(synthetic_svs: Path, tmp_path: Path) -> None:
    result = run(str(synthetic_svs), str(tmp_path), "--levels", "0,1", "--format", "png")
    assert result.returncode == 0, result.stderr
    with openslide.OpenSlide(synthetic_svs) as theirs:
        for level in (0, 1):
            expected = np.asarray(theirs.read_region((0, 0), level, theirs.level_dimensions[level]))[:, :, :3]
            assert_close(load(tmp_path / f"level{level}.png"), expected)


def test_region_at_level_equals_openslide(synthetic_svs: Path, tmp_path: Path) -> None:
    result = run(str(synthetic_svs), str(tmp_path), "--region", "1000,400,1600,1200", "--level", "1", "--format", "png")
    assert result.returncode == 0, result.stderr
    with openslide.OpenSlide(synthetic_svs) as theirs:
        ds = theirs.level_downsamples[1]
    expected, inside = openslide_region(synthetic_svs, (1000, 400), 1, (round(1600 / ds), round(1200 / ds)))
    assert inside.all()
    assert_close(load(tmp_path / "region_1000_400_1600x1200_level1.png"), expected)


def test_region_at_downsample_is_box_average_of_openslide_level0(synthetic_svs: Path, tmp_path: Path) -> None:
    result = run(
        str(synthetic_svs), str(tmp_path), "--region", "90,210,900,600", "--downsample", "3", "--format", "png"
    )
    assert result.returncode == 0, result.stderr
    level0, _ = openslide_region(synthetic_svs, (90, 210), 0, (900, 600))
    expected = np.asarray(Image.fromarray(level0).resize((300, 200), Image.Resampling.BOX))
    assert_close(load(tmp_path / "region_90_210_900x600_ds3.png"), expected)


def test_region_partly_outside_is_clipped(synthetic_svs: Path, tmp_path: Path) -> None:
    result = run(str(synthetic_svs), str(tmp_path), "--region", "2800,2000,500,500", "--format", "png")
    assert result.returncode == 0, result.stderr
    out = load(tmp_path / "region_2800_2000_200x200_level0.png")
    expected, _ = openslide_region(synthetic_svs, (2800, 2000), 0, (200, 200))
    assert_close(out, expected)


def test_tiff_export_streams_tiles_and_matches(synthetic_svs: Path, tmp_path: Path) -> None:
    result = run(str(synthetic_svs), str(tmp_path), "--levels", "0", "--format", "tiff", "--compression", "lzw")
    assert result.returncode == 0, result.stderr
    path = tmp_path / "level0.tif"
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.is_tiled and (page.imagewidth, page.imagelength) == (3000, 2200)
        ours = page.asarray()
    with openslide.OpenSlide(synthetic_svs) as theirs:
        expected = np.asarray(theirs.read_region((0, 0), 0, (3000, 2200)))[:, :, :3]
    assert_close(ours, expected)
    with openslide.OpenSlide(path) as exported:  # a generic tiled TIFF OpenSlide opens
        assert exported.dimensions == (3000, 2200)
        assert_close(np.asarray(exported.read_region((0, 0), 0, (3000, 2200)))[:, :, :3], expected)


def test_whole_level_tiff_copies_the_stored_tiles(synthetic_svs: Path, tmp_path: Path) -> None:
    result = run(str(synthetic_svs), str(tmp_path), "--levels", "1", "--format", "tiff")
    assert result.returncode == 0, result.stderr
    assert "(copied)" in result.stdout
    with tifffile.TiffFile(synthetic_svs) as src, tifffile.TiffFile(tmp_path / "level1.tif") as out:
        old, new = src.series[0].levels[1].keyframe, out.pages[0]
        assert len(out.pages) == 1 and (new.tilewidth, new.tilelength) == (old.tilewidth, old.tilelength)
        for index in (0, len(old.dataoffsets) // 2, len(old.dataoffsets) - 1):
            src.filehandle.seek(old.dataoffsets[index])
            out.filehandle.seek(new.dataoffsets[index])
            stored = src.filehandle.read(old.databytecounts[index])
            # the same bytes, with the Adobe colour marker generic TIFF readers need (docs/convert.md)
            assert codecs.with_adobe_rgb(stored) == out.filehandle.read(new.databytecounts[index])
    with openslide.OpenSlide(synthetic_svs) as theirs, openslide.OpenSlide(tmp_path / "level1.tif") as exported:
        expected = np.asarray(theirs.read_region((0, 0), 1, theirs.level_dimensions[1]))[:, :, :3]
        assert_close(np.asarray(exported.read_region((0, 0), 0, exported.dimensions))[:, :, :3], expected, 0)


def test_region_tiff_is_streamed_by_tile_rows(synthetic_svs: Path, tmp_path: Path) -> None:
    args = ("--region", "300,200,2100,1500", "--downsample", "2", "--format", "tiff")
    assert run(str(synthetic_svs), str(tmp_path / "lzw"), *args, "--compression", "lzw").returncode == 0
    assert run(str(synthetic_svs), str(tmp_path / "jpeg"), *args).returncode == 0
    name = "region_300_200_2100x1500_ds2.tif"
    level0, _ = openslide_region(synthetic_svs, (300, 200), 0, (2100, 1500))
    expected = np.asarray(Image.fromarray(level0).resize((1050, 750), Image.Resampling.BOX))
    with tifffile.TiffFile(tmp_path / "lzw" / name) as tif:
        page = tif.pages[0]
        assert page.is_tiled and (page.imagewidth, page.imagelength) == (1050, 750)
        assert_close(page.asarray(), expected)  # band by band equals the whole-image box filter
    with openslide.OpenSlide(tmp_path / "jpeg" / name) as exported:  # YCbCr JPEG tiles, via OpenSlide
        # 4:2:0 costs about 30 dB on this saturated synthetic stain; wrong colours give < 20
        assert psnr(np.asarray(exported.read_region((0, 0), 0, (1050, 750)))[:, :, :3], expected) > 30


def test_jpeg_export_looks_right(synthetic_svs: Path, tmp_path: Path) -> None:
    result = run(str(synthetic_svs), str(tmp_path), "--levels", "1", "--quality", "95")
    assert result.returncode == 0, result.stderr
    with openslide.OpenSlide(synthetic_svs) as theirs:
        expected = np.asarray(theirs.read_region((0, 0), 1, theirs.level_dimensions[1]))[:, :, :3]
    assert psnr(load(tmp_path / "level1.jpg"), expected) > 30


def test_associated_images_match_openslide(synthetic_svs: Path, tmp_path: Path) -> None:
    result = run(str(synthetic_svs), str(tmp_path), "--associated", "--format", "png")
    assert result.returncode == 0, result.stderr
    with openslide.OpenSlide(synthetic_svs) as theirs:
        assert set(theirs.associated_images) == {"thumbnail", "label", "macro"}
        for name, image in theirs.associated_images.items():
            assert_close(load(tmp_path / f"{name}.png"), np.asarray(image.convert("RGB")))


def test_jpeg_associated_image_is_byte_copied(openslide_data: Path, tmp_path: Path) -> None:
    slide_path = openslide_data / "small.svs"
    with open_slide(slide_path) as slide:
        copyable = [name for name, image in slide.associated.items() if image.encoded is not None]
        done = export_slide(slide, tmp_path, associated=True)
    assert copyable, "small.svs has a single-strip JPEG thumbnail"
    copied = {item.path.stem for item in done if item.copied}
    assert copied == set(copyable)
    with openslide.OpenSlide(slide_path) as theirs:
        for name in copied:
            assert_close(load(tmp_path / f"{name}.jpg"), np.asarray(theirs.associated_images[name].convert("RGB")))


def test_default_exports_associated_and_top_level(synthetic_svs: Path, tmp_path: Path) -> None:
    result = run(str(synthetic_svs), str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["label.jpg", "level0.jpg", "macro.jpg", "thumbnail.jpg"]


def test_top_skips_levels_over_the_memory_budget(synthetic_svs: Path, tmp_path: Path) -> None:
    # level 0 (3000 x 2200) needs 19.8 MB; level 1 (750 x 550) 1.2 MB
    result = run(str(synthetic_svs), str(tmp_path), "--top", "1", "--memory-budget", "0.005", "--format", "png")
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["level1.png"]


def test_level_over_budget_is_refused_with_advice(synthetic_svs: Path, tmp_path: Path) -> None:
    result = run(str(synthetic_svs), str(tmp_path), "--levels", "0", "--memory-budget", "0.005")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "--format tiff" in result.stderr and "--region" in result.stderr and str(synthetic_svs) in result.stderr
    assert not list(tmp_path.iterdir())


class _Unreadable:
    encoding = None

    def read_encoded(self, col: int, row: int) -> bytes | None:
        raise AssertionError("a refused export must not read pixels")

    def read_tile(self, col: int, row: int) -> None:
        raise AssertionError("a refused export must not read pixels")


def test_level_wider_than_jpeg_allows_is_refused(tmp_path: Path) -> None:
    level = Level(TileGrid(70_000, 256, 256, 256), 1.0, _Unreadable())
    slide = Slide(format="test", path=tmp_path / "wide", levels=[level])
    with pytest.raises(LimitError, match="65,500"):
        export_slide(slide, tmp_path / "out", levels=[0], options=ExportOptions(format="jpeg", memory_budget=10**12))
    with pytest.raises(LimitError, match="no level fits"):
        export_slide(slide, tmp_path / "out", top=1, options=ExportOptions(format="jpeg", memory_budget=10**12))


def test_bad_requests_are_one_line_errors(synthetic_svs: Path, tmp_path: Path) -> None:
    outside = run(str(synthetic_svs), str(tmp_path), "--region", "5000,5000,10,10")
    assert outside.returncode == 2 and "outside" in outside.stderr and "Traceback" not in outside.stderr
    no_level = run(str(synthetic_svs), str(tmp_path), "--levels", "7")
    assert no_level.returncode == 2 and "level 7" in no_level.stderr
    assert run(str(synthetic_svs), str(tmp_path), "--level", "1").returncode == 2  # --level needs --region
    assert run(str(synthetic_svs), str(tmp_path), "--region", "1,2,3").returncode == 2
    first = run(str(synthetic_svs), str(tmp_path), "--levels", "1")
    assert first.returncode == 0
    again = run(str(synthetic_svs), str(tmp_path), "--levels", "1")
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert run(str(synthetic_svs), str(tmp_path), "--levels", "1", "--overwrite").returncode == 0
    missing = run(str(tmp_path / "nope.svs"), str(tmp_path))
    assert missing.returncode == 2 and "nope.svs" in missing.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
