"""SVS output proven by independent readers: OpenSlide (metadata and pixels), tifffile, Bio-Formats."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import openslide
import pytest
import tifffile
from numpy.typing import NDArray

import composite
from composite import codecs
from composite.codecs import TileEncoding
from composite.convert import ConversionReport, TiffOptions, WriteOptions, convert
from composite.geometry import TileGrid
from composite.model import Level, Slide
from composite.resample import box_downsample
from composite.synthetic import region, write_synthetic_slide
from tests.readers import psnr

ROOT = Path(__file__).resolve().parent.parent
BIOFORMATS_JAR = Path(os.environ.get("BIOFORMATS_JAR", ROOT / ".cache" / "bioformats" / "bioformats_package.jar"))


def openslide_level(path: Path, level: int) -> NDArray[np.uint8]:
    """A whole level as OpenSlide shows it (RGB)."""
    with openslide.OpenSlide(path) as slide:
        size = slide.level_dimensions[level]
        return np.asarray(slide.read_region((0, 0), level, size).convert("RGB"))


def reference_level(
    source: Path, downsample: float, size: tuple[int, int], *, base_only: bool = False
) -> NDArray[np.uint8]:
    """What a level of ``downsample`` should show: the source's level there, or box means of one above.

    ``base_only``: the source was converted from level 0 alone, so start from level 0.
    """
    with openslide.OpenSlide(source) as slide:
        index = 0 if base_only else slide.get_best_level_for_downsample(downsample + 0.5)
        ratio = downsample / slide.level_downsamples[index]
    pixels = openslide_level(source, index)
    while ratio > 3.5:  # in 4x steps, the way the writer computes levels
        pixels = box_downsample(pixels, 4)
        ratio /= 4
    if round(ratio) >= 2:
        pixels = box_downsample(pixels, round(ratio))
    return pixels[: size[1], : size[0]]


def check_svs(
    path: Path, source: Path, report: ConversionReport, *, min_psnr: float = 38.0, base_only: bool = False
) -> None:
    """OpenSlide sees an Aperio slide with the source's metadata, and every level's pixels are close."""
    with openslide.OpenSlide(source) as src, openslide.OpenSlide(path) as out:
        assert out.properties["openslide.vendor"] == "aperio"
        assert out.level_count == len(report.levels)
        assert out.level_dimensions == tuple((lvl.width, lvl.height) for lvl in report.levels)
        for key in ("openslide.mpp-x", "openslide.mpp-y", "openslide.objective-power"):
            assert float(out.properties[key]) == pytest.approx(float(src.properties[key]))
        expected = {"thumbnail", *(set(src.associated_images) & {"label", "macro"})}
        assert set(out.associated_images) == expected
        thumb = out.associated_images["thumbnail"]
        assert max(thumb.size) < max(out.level_dimensions[-1])
        for name in expected - {"thumbnail"}:
            assert out.associated_images[name].size == src.associated_images[name].size
    for index, level in enumerate(report.levels):
        got = openslide_level(path, index)
        want = reference_level(source, level.downsample, (level.width, level.height), base_only=base_only)
        assert want.shape == got.shape
        value = psnr(got, want)
        assert value >= min_psnr, f"level {index} ({level.method}): PSNR {value:.1f} dB"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2000 x 1500 Aperio SVS (RGB JPEG, 240 px tiles) with levels at 4x and 16x, label, macro."""
    path = tmp_path_factory.mktemp("src") / "source.svs"
    return write_synthetic_slide(path, width=2000, height=1500, min_level_size=200, mpp=0.4990, magnification=20)


def _convert(source: Path, tmp_path: Path, name: str, **options: Any) -> tuple[Path, ConversionReport]:
    options.setdefault("min_level_size", 100)
    dst = tmp_path / name
    report = convert(source, dst, options=WriteOptions(workers=2, **options))
    assert report.destination == dst and dst.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"
    return dst, report


def test_byte_copy_keeps_tiles_and_pixels(source: Path, tmp_path: Path) -> None:
    dst, report = _convert(source, tmp_path, "copy.svs")
    assert [lvl.method for lvl in report.levels] == ["copy", "copy", "copy", "downsample"]
    assert report.associated == ["thumbnail", "label", "macro"]
    check_svs(dst, source, report)
    with tifffile.TiffFile(source) as src, tifffile.TiffFile(dst) as out:
        src_levels = src.series[0].levels
        out_levels = out.series[0].levels
        for index in range(3):
            a, b = src_levels[index].keyframe, out_levels[index].keyframe
            assert a.jpegtables == b.jpegtables
            assert a.databytecounts == b.databytecounts
            assert b.photometric == tifffile.PHOTOMETRIC.RGB
    for index in range(3):
        assert np.array_equal(openslide_level(dst, index), openslide_level(source, index))


def test_reencode_to_other_tile_size(source: Path, tmp_path: Path) -> None:
    dst, report = _convert(source, tmp_path, "retile.svs", tile_size=(256, 128))
    assert [lvl.method for lvl in report.levels] == ["reencode", "reencode", "reencode", "downsample"]
    check_svs(dst, source, report)
    with tifffile.TiffFile(dst) as tif:
        assert {(p.tilewidth, p.tilelength) for p in tif.series[0].levels[0].pages} == {(256, 128)}
        # edge tiles are full-size: every tile's JPEG frame is 256 x 128
        page = tif.series[0].levels[0].keyframe
        fh = tif.filehandle
        fh.seek(page.dataoffsets[-1])
        last = fh.read(page.databytecounts[-1])
        assert codecs.jpeg_info(last).width == 256 and codecs.jpeg_info(last).height == 128


def test_one_level_source_gets_downsampled_levels(source: Path, tmp_path: Path) -> None:
    with composite.open_slide(source) as slide:
        one = Slide(
            format="test",
            path=slide.path,
            levels=slide.levels[:1],
            mpp=slide.mpp,
            magnification=slide.magnification,
            properties=slide.properties,
            associated=slide.associated,
        )
        dst = tmp_path / "one.svs"
        report = convert(one, dst, options=WriteOptions(workers=2, min_level_size=100))
    assert [lvl.method for lvl in report.levels] == ["copy", "downsample", "downsample", "downsample"]
    check_svs(dst, source, report, base_only=True)


def test_lzw_is_lossless(source: Path, tmp_path: Path) -> None:
    dst, report = _convert(source, tmp_path, "lzw.svs", compression="lzw", min_level_size=400)
    with tifffile.TiffFile(dst) as tif:
        assert {p.compression for p in tif.series[0].levels[0].pages} == {tifffile.COMPRESSION.LZW}
        # tiles were written in column stripes and placed by TileOffsets, not by file order
        offsets = list(tif.series[0].levels[0].keyframe.dataoffsets)
        assert offsets != sorted(offsets)
    for index in range(len(report.levels)):
        assert np.array_equal(openslide_level(dst, index), openslide_level(source, index))


def test_jpeg2000_is_aperio_33005_and_openslide_reads_it(source: Path, tmp_path: Path) -> None:
    dst, report = _convert(source, tmp_path, "j2k.svs", compression="jpeg2000", min_level_size=400)
    with tifffile.TiffFile(dst) as tif:
        codes = {int(lvl.keyframe.compression) for lvl in tif.series[0].levels}
        assert codes == {33005}
    check_svs(dst, source, report)


def test_ycbcr_option_tags_ycbcr_and_colours_stay_right(source: Path, tmp_path: Path) -> None:
    dst, report = _convert(source, tmp_path, "ycc.svs", tile_size=(256, 256), ycbcr=True)
    with tifffile.TiffFile(dst) as tif:
        page = tif.series[0].levels[0].keyframe
        assert page.photometric == tifffile.PHOTOMETRIC.YCBCR and page.tags["YCbCrSubSampling"].value == (2, 2)
    # 4:2:0 blurs chroma edges (PSNR ~30 dB here), but wrong tags would shift colours by tens of levels.
    got, want = openslide_level(dst, 0), openslide_level(source, 0)
    assert np.abs(got.mean(axis=(0, 1)) - want.mean(axis=(0, 1))).max() < 1.5
    check_svs(dst, source, report, min_psnr=25)


def test_tifffile_sees_svs_series_and_descriptions(source: Path, tmp_path: Path) -> None:
    dst, report = _convert(source, tmp_path, "series.svs")
    with tifffile.TiffFile(dst) as tif:
        assert tif.is_svs and not tif.is_bigtiff
        assert [s.name for s in tif.series] == ["Baseline", "Thumbnail", "Label", "Macro"]
        assert len(tif.series[0].levels) == len(report.levels)
        pages = tif.pages
        assert [p.is_tiled for p in pages] == [True, False, True, True, True, False, False]
        assert [int(p.subfiletype) for p in pages] == [0, 0, 0, 0, 0, 1, 9]
        assert pages[5].compression == tifffile.COMPRESSION.LZW and pages[6].compression == tifffile.COMPRESSION.JPEG
        assert pages[5].description == "Aperio Image Library v12.0.15\nlabel 387x463"
        assert all(len(p.tags.getall("ImageDescription") or []) == 1 for p in pages)
        meta = tifffile.tifffile.svs_description_metadata(pages[0].description)
        assert meta["AppMag"] == 20 and meta["MPP"] == pytest.approx(0.499)
        assert meta["ScanScope ID"] == "SYNTH01" and meta["Filename"] == "synthetic-0"
        assert pages[0].description.split("\r\n")[1].startswith("2000x1500 [0,0 2000x1500] (240x240) JPEG/RGB")


@pytest.mark.parametrize(
    ("mode", "threshold", "expected"), [("auto", 1000, True), ("auto", None, False), ("yes", None, True)]
)
def test_bigtiff_switch(source: Path, tmp_path: Path, mode: str, threshold: int | None, expected: bool) -> None:
    tiff = TiffOptions(bigtiff=mode, **({} if threshold is None else {"bigtiff_threshold": threshold}))  # type: ignore[arg-type]
    dst, report = _convert(source, tmp_path, "big.svs", tiff=tiff, min_level_size=400)
    with tifffile.TiffFile(dst) as tif:
        assert tif.is_bigtiff is expected and tif.is_svs
    with openslide.OpenSlide(dst) as slide:
        assert slide.properties["openslide.vendor"] == "aperio" and slide.level_count == len(report.levels)


def _bioformats(path: Path, *flags: str) -> str:
    if not BIOFORMATS_JAR.is_file() or shutil.which("java") is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{BIOFORMATS_JAR} or java missing under CI (run make test)")
        pytest.skip("Bio-Formats jar or java missing (make test installs them)")
    cmd = ["java", "-cp", str(BIOFORMATS_JAR), "loci.formats.tools.ImageInfo", "-nopix", "-no-upgrade", "-noflat"]
    result = subprocess.run([*cmd, *flags, str(path)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def _series(info: str) -> list[dict[str, int]]:
    series = []
    for block in re.split(r"\nSeries #\d+ :\n", info)[1:]:
        fields = dict(re.findall(r"\t(Width|Height|Resolutions) = (\d+)", block))
        series.append({k: int(v) for k, v in fields.items()})
    return series


def test_bioformats_reads_svs(source: Path, tmp_path: Path) -> None:
    dst, report = _convert(source, tmp_path, "bf.svs", tile_size=(256, 256))
    info = _bioformats(dst)
    assert "Checking file format [Aperio SVS]" in info
    series = _series(info)
    # Bio-Formats shows the pyramid (with its resolutions), then label and macro; it hides the thumbnail.
    assert series[0] == {"Resolutions": len(report.levels), "Width": 2000, "Height": 1500}
    assert [(s["Width"], s["Height"]) for s in series[1:]] == [(387, 463), (1280, 463)]


def test_ycbcr_jpeg_tiff_source_is_copied_with_its_photometric(synthetic_tiff: Path, tmp_path: Path) -> None:
    dst, report = _convert(synthetic_tiff, tmp_path, "from_tiff.svs")
    assert report.levels[0].method == "copy" and report.levels[0].tile_width == 256
    with tifffile.TiffFile(dst) as tif:
        page = tif.pages[0]
        assert page.photometric == tifffile.PHOTOMETRIC.YCBCR and page.tags["YCbCrSubSampling"].value == (2, 2)
    for index, level in enumerate(report.levels):
        if level.method == "copy":
            assert np.array_equal(openslide_level(dst, index), openslide_level(synthetic_tiff, index))


def test_real_aperio_slide_round_trips(openslide_data: Path, tmp_path: Path) -> None:
    source = openslide_data / "small.svs"
    dst, report = _convert(source, tmp_path, "small.svs")
    assert [(lvl.method, lvl.tile_width) for lvl in report.levels] == [("copy", 64)]
    assert np.array_equal(openslide_level(dst, 0), openslide_level(source, 0))
    with openslide.OpenSlide(source) as src, openslide.OpenSlide(dst) as out:
        for key, value in src.properties.items():
            if key.startswith("aperio.") or key in ("openslide.mpp-x", "openslide.objective-power"):
                assert out.properties[key] == value, key
        assert out.associated_images["thumbnail"].size == (15, 15)


def test_generic_tiff_without_jpeg_is_reencoded(openslide_data: Path, tmp_path: Path) -> None:
    source = openslide_data / "boxes.tiff"
    dst, report = _convert(source, tmp_path, "boxes.svs", min_level_size=64)
    # own levels at 1x and 4x (deflate: re-encoded); 16x from the 8x level, halved
    assert [lvl.method for lvl in report.levels] == ["reencode", "reencode", "downsample"]
    with openslide.OpenSlide(dst) as out:
        assert out.properties["openslide.vendor"] == "aperio"
        assert float(out.properties["openslide.mpp-x"]) == pytest.approx(352.7777798337701)
        assert "openslide.objective-power" not in out.properties
    for index, level in enumerate(report.levels):
        want = reference_level(source, level.downsample, (level.width, level.height))
        assert psnr(openslide_level(dst, index), want) >= 38, index


class _CompleteJpegTiles:
    """Tiles stored as complete JPEGs whose tables differ per tile (like CWS blocks of mixed quality)."""

    def __init__(self, grid: TileGrid, *, rgb: bool) -> None:
        self.grid = grid
        self.rgb = rgb
        self.encoding = TileEncoding("jpeg", rgb=rgb)

    def read_encoded(self, col: int, row: int) -> bytes:
        tw, th = self.grid.tile_width, self.grid.tile_height
        tile = region(col * tw, row * th, tw, th)
        return codecs.encode_jpeg(tile, quality=70 + 5 * ((col + row) % 3), rgb=self.rgb)

    def read_tile(self, col: int, row: int) -> NDArray[np.uint8]:
        return codecs.decode_jpeg(self.read_encoded(col, row), rgb=self.rgb)


@pytest.mark.parametrize("rgb", [True, False])
def test_copied_tiles_with_differing_tables_stay_exact(tmp_path: Path, rgb: bool) -> None:
    grid = TileGrid(700, 500, 256, 256)
    reader = _CompleteJpegTiles(grid, rgb=rgb)
    slide = Slide(format="test", path=tmp_path / "tiles", levels=[Level(grid, 1.0, reader)], mpp=(0.5, 0.5))
    dst = tmp_path / "mixed.svs"
    report = convert(slide, dst, options=WriteOptions(workers=2, min_level_size=1024))
    assert report.levels[0].method == "copy" and report.levels[0].copied_tiles == grid.tile_count
    with tifffile.TiffFile(dst) as tif:
        page = tif.pages[0]
        assert page.photometric == (tifffile.PHOTOMETRIC.RGB if rgb else tifffile.PHOTOMETRIC.YCBCR)
        tables = page.jpegtables
        assert tables == codecs.split_jpeg_tables(reader.read_encoded(0, 0))[0]
        with dst.open("rb") as fh:
            stored = []
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
                fh.seek(offset)
                stored.append(fh.read(count))
    # tiles sharing the first tile's tables are abbreviated; the others are complete streams
    complete = [any(m == 0xDB for m, _, _ in codecs.iter_jpeg_segments(data)) for data in stored]
    assert complete == [(col + row) % 3 != 0 for col, row in grid.indices()]
    expected = np.zeros((500, 700, 3), np.uint8)
    for col, row in grid.indices():
        box = grid.tile_box(col, row)
        expected[box.y : box.bottom, box.x : box.right] = reader.read_tile(col, row)[: box.height, : box.width]
    assert np.abs(openslide_level(dst, 0).astype(int) - expected).max() <= 1
