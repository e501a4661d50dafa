"""CWS writer, judged by independent readers: the §1.4 reference reader, OpenSlide, Pillow, tifffile."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import openslide
import pytest
import tifffile
from numpy.typing import NDArray
from PIL import Image

from composite import codecs
from composite.cli import main as cli_main
from composite.convert import WriteOptions, convert
from composite.errors import OutputExistsError, UnsupportedFormatError
from composite.formats.cws import companions as cws_companions
from composite.registry import open_slide
from composite.resample import box_downsample
from composite.synthetic import write_synthetic_slide

from .cws_reference import compose_level, read_ini
from .cws_scanner import write_scanner_slide
from .readers import psnr


def _openslide_level(path: Path, level: int = 0) -> NDArray[np.uint8]:
    with openslide.OpenSlide(str(path)) as slide:
        size = slide.level_dimensions[level]
        return np.asarray(slide.read_region((0, 0), level, size))[:, :, :3].copy()


def _level_sections(directory: Path) -> list[dict[str, str]]:
    sections = read_ini(directory / "FinalScan.ini")
    count = int(sections["Header"]["ilevels"])
    return [sections[f"Level{k}"] for k in range(count)]


def _compose(directory: Path, level: dict[str, str]) -> NDArray[np.uint8]:
    return compose_level(directory / level["tinifile"], crop=(int(level["iwidth"]), int(level["iheight"])))


def _scan_data(jpeg: bytes) -> bytes:
    """The entropy-coded data: everything after the SOS segment."""
    end = next(end for marker, _, end in codecs.iter_jpeg_segments(jpeg) if marker == 0xDA)
    return jpeg[end:]


@pytest.fixture(scope="module")
def pyramid_svs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8400 x 2400 Aperio SVS, JPEG 240 px tiles, own levels 2100 and 525 px wide, no stamps."""
    path = tmp_path_factory.mktemp("src") / "wide.svs"
    return write_synthetic_slide(path, width=8400, height=2400, tile_size=240, stamp=False, quality=95)


@pytest.fixture(scope="module")
def copied_cws(pyramid_svs: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """The default conversion of ``pyramid_svs``, with the hashes of every JPEG decoded meanwhile."""
    decoded: list[int] = []
    real = codecs.decode_jpeg

    def counting(data: bytes, **kwargs: Any) -> NDArray[np.uint8]:
        decoded.append(hash(bytes(data)))
        return real(data, **kwargs)

    dst = tmp_path_factory.mktemp("out") / "wide"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(codecs, "decode_jpeg", counting)
        report = convert(pyramid_svs, dst, to="cws")
    assert [level.method for level in report.levels] == ["copy", "copy", "copy"]
    return dst, decoded


def test_layout_follows_the_documented_convention(copied_cws: tuple[Path, list[int]]) -> None:
    directory, _ = copied_cws
    header = read_ini(directory / "FinalScan.ini")["Header"]
    assert header["ilevels"] == "3" and header["tmpp"] == "0.25" and header["dmagnification"] == "40"
    assert "MPP = 0.2500" in header["tdescription"]
    levels = _level_sections(directory)
    assert [lvl["tinifile"] for lvl in levels] == ["FinalScan.ini", "ScanLevel1.ini", "ScanSlide.ini"]
    assert [lvl["izoom"] for lvl in levels] == ["1", "4", "16"]
    assert max(int(levels[-1]["iwidth"]), int(levels[-1]["iheight"])) < 2048
    text = (directory / "FinalScan.ini").read_text()
    blocks = re.findall(r"^\[(\w+)\]\nx=(\d+)\ny=(\d+)\nz=0$", text, re.MULTILINE)
    assert [name for name, _, _ in blocks] == [f"Da{n}" for n in range(35 * 10)]  # row-major, level 0 only
    assert int(blocks[0][1]) > int(blocks[1][1]) and blocks[0][2] == blocks[1][2]  # x grows to the left
    assert "[L1Da0]" in (directory / "ScanLevel1.ini").read_text()
    for name in ("SlideThumb.jpg", "Ss1.jpg", "Label.jpg", "Macro.jpg"):
        assert (directory / name).is_file()
    with Image.open(directory / "SlideThumb.jpg") as thumb:
        assert thumb.width == 1024
    with Image.open(directory / "Ss1.jpg") as ss1:
        assert ss1.size == (525, 150)  # 1/16 of 8400 x 2400


def test_level0_byte_copy_decodes_nothing_and_keeps_entropy_data(
    pyramid_svs: Path, copied_cws: tuple[Path, list[int]]
) -> None:
    directory, decoded = copied_cws
    assert decoded, "the counting decoder saw nothing: it was not in the path"
    with tifffile.TiffFile(pyramid_svs) as tif:
        page = tif.pages[0]
        with open(pyramid_svs, "rb") as fh:
            tiles = []
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
                fh.seek(offset)
                tiles.append(fh.read(count))
    blocks = [(directory / f"Da{n}.jpg").read_bytes() for n in range(len(tiles))]
    assert not set(decoded) & {hash(t) for t in tiles}, "a source level-0 tile was decoded"
    assert not set(decoded) & {hash(b) for b in blocks}, "a level-0 block was decoded"
    for tile, block in zip(tiles, blocks, strict=True):
        assert _scan_data(block) == _scan_data(tile)
        assert codecs.has_adobe_marker(block)  # Aperio RGB: the marker browsers need


def test_reference_reader_level0_equals_openslide(pyramid_svs: Path, copied_cws: tuple[Path, list[int]]) -> None:
    directory, _ = copied_cws
    levels = _level_sections(directory)
    ours = _compose(directory, levels[0])
    assert np.array_equal(ours, _openslide_level(pyramid_svs, 0))
    # The copied lower levels are OpenSlide's too, block by block in Pillow.
    for k in (1, 2):
        assert np.array_equal(_compose(directory, levels[k]), _openslide_level(pyramid_svs, k))


def test_lower_levels_match_a_box_downsample(pyramid_svs: Path, copied_cws: tuple[Path, list[int]]) -> None:
    directory, _ = copied_cws
    levels = _level_sections(directory)
    base = _compose(directory, levels[0])
    for level in levels[1:]:
        expected = box_downsample(base, int(level["izoom"]))
        ours = _compose(directory, level)
        h, w = min(ours.shape[0], expected.shape[0]), min(ours.shape[1], expected.shape[1])
        assert abs(ours.shape[0] - expected.shape[0]) <= 1 and abs(ours.shape[1] - expected.shape[1]) <= 1
        assert psnr(ours[:h, :w], expected[:h, :w]) >= 35


def test_reencoded_scanner_blocks(pyramid_svs: Path, tmp_path: Path) -> None:
    dst = tmp_path / "scanner"
    options = WriteOptions(tile_size=(752, 480), quality=90)
    report = convert(pyramid_svs, dst, to="cws", options=options)
    assert report.levels[0].method == "reencode"
    levels = _level_sections(dst)
    assert (levels[0]["iblockwidth"], levels[0]["iblockheight"]) == ("752", "480")
    ours = _compose(dst, levels[0])
    assert ours.shape == (2400, 8400, 3)
    assert psnr(ours, _openslide_level(pyramid_svs, 0)) >= 38
    for level in levels[1:]:
        expected = box_downsample(ours, int(level["izoom"]))
        got = _compose(dst, level)
        h, w = min(got.shape[0], expected.shape[0]), min(got.shape[1], expected.shape[1])
        assert psnr(got[:h, :w], expected[:h, :w]) >= 35


def test_single_level_source_gets_computed_levels(tmp_path: Path) -> None:
    src = write_synthetic_slide(tmp_path / "flat.svs", width=4600, height=1000, stamp=False, min_level_size=10**6)
    report = convert(src, tmp_path / "flat", to="cws")
    assert [lvl.method for lvl in report.levels] == ["copy", "downsample"]
    levels = _level_sections(tmp_path / "flat")
    assert [lvl["tinifile"] for lvl in levels] == ["FinalScan.ini", "ScanSlide.ini"]
    base = _compose(tmp_path / "flat", levels[0])
    assert np.array_equal(base, _openslide_level(src, 0))
    small = _compose(tmp_path / "flat", levels[1])
    assert psnr(small, box_downsample(base, 4)[: small.shape[0], : small.shape[1]]) >= 35


def test_small_slide_is_one_ini(tmp_path: Path) -> None:
    src = write_synthetic_slide(tmp_path / "small.svs", width=1500, height=900, min_level_size=10**6)
    convert(src, tmp_path / "small", to="cws")
    assert sorted(p.name for p in (tmp_path / "small").glob("*.ini")) == ["FinalScan.ini"]
    assert np.array_equal(compose_level(tmp_path / "small" / "FinalScan.ini"), _openslide_level(src, 0))


def test_ycbcr_tiff_blocks_decode_with_openslide_colours(synthetic_tiff: Path, tmp_path: Path) -> None:
    report = convert(synthetic_tiff, tmp_path / "ycc", to="cws")
    assert report.levels[0].method == "copy"
    levels = _level_sections(tmp_path / "ycc")
    assert np.array_equal(_compose(tmp_path / "ycc", levels[0]), _openslide_level(synthetic_tiff, 0))


def test_svs_to_cws_to_svs_keeps_level0(copied_cws: tuple[Path, list[int]], pyramid_svs: Path, tmp_path: Path) -> None:
    directory, _ = copied_cws
    report = convert(directory, tmp_path / "back.svs")
    assert report.levels[0].method == "copy"
    with openslide.OpenSlide(str(tmp_path / "back.svs")) as slide:
        assert slide.properties["openslide.vendor"] == "aperio"
    assert np.array_equal(_openslide_level(tmp_path / "back.svs", 0), _openslide_level(pyramid_svs, 0))


def test_scanner_directory_reblocked_into_a_pyramid(tmp_path: Path) -> None:
    scan = write_scanner_slide(tmp_path / "scan", missing=None, planes=("u1",))
    report = convert(scan.path, tmp_path / "regular", to="cws", options=WriteOptions(tile_size=(256, 256)))
    assert report.levels[0].method == "reencode"
    levels = _level_sections(tmp_path / "regular")
    ours = _compose(tmp_path / "regular", levels[0])
    assert psnr(ours, scan.expected) >= 38
    # The focal plane travels as Da<N>_u1.jpg and reads back as one.
    with open_slide(tmp_path / "regular") as slide:
        assert sorted(slide.focal_planes) == ["u1"]
        plane = slide.focal_planes["u1"][0].read_region(0, 0, *slide.dimensions)
        assert slide.levels[0].encoding is not None  # our output is a copyable grid again
    assert psnr(plane, scan.planes["u1"]) >= 38


def test_destination_rules(pyramid_svs: Path, tmp_path: Path) -> None:
    small = write_synthetic_slide(tmp_path / "s.svs", width=600, height=500, min_level_size=10**6)
    dst = tmp_path / "dst"
    dst.mkdir()
    with open_slide(small) as slide:
        convert(slide, dst, to="cws")  # an existing empty directory is fine
        assert (dst / "FinalScan.ini").is_file()
        with pytest.raises(OutputExistsError, match="--overwrite"):
            convert(slide, dst, to="cws")
        (dst / "keep.txt").write_text("old")
        convert(slide, dst, to="cws", options=WriteOptions(overwrite=True))
        assert not (dst / "keep.txt").exists()
        with pytest.raises(UnsupportedFormatError, match="CWS blocks are jpeg, not lzw"):
            convert(slide, tmp_path / "lzw", to="cws", options=WriteOptions(compression="lzw"))


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = write_synthetic_slide(tmp_path / "s.svs", width=600, height=500, min_level_size=10**6)

    def fail(*args: object, **kwargs: object) -> list[str]:
        raise RuntimeError("disk full")

    monkeypatch.setattr(cws_companions, "write_companions", fail)  # runs alongside the levels
    with pytest.raises(RuntimeError), open_slide(small) as slide:
        convert(slide, tmp_path / "out", to="cws")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.svs"]


def test_cli_convert_to_cws(synthetic_svs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "cli"
    assert cli_main(["convert", str(synthetic_svs), str(dst), "--to", "cws", "--quiet"]) == 0
    assert "level 0: 3000 x 2200" in capsys.readouterr().out
    assert cli_main(["convert", str(synthetic_svs), str(dst), "--to", "cws", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli_main(["info", str(dst)]) == 0
    out = capsys.readouterr().out
    assert "[cws]" in out and "thumbnail: 1024 x" in out


def test_every_block_decodes_in_pillow_like_openslide(synthetic_svs: Path, tmp_path: Path) -> None:
    convert(synthetic_svs, tmp_path / "c", to="cws")
    with openslide.OpenSlide(str(synthetic_svs)) as reference:
        for k, level in enumerate(_level_sections(tmp_path / "c")):
            ini = read_ini(tmp_path / "c" / level["tinifile"])
            zoom = int(level["izoom"])
            blocks = sorted(name for name, values in ini.items() if "x" in values)
            cols = math.ceil(int(level["iwidth"]) / 240)
            for name in blocks:
                number = int(name.split("Da")[1])
                col, row = number % cols, number // cols
                with Image.open(tmp_path / "c" / f"{name}.jpg") as image:
                    pixels = np.asarray(image.convert("RGB"))
                w = min(240, int(level["iwidth"]) - col * 240)
                h = min(240, int(level["iheight"]) - row * 240)
                location = (col * 240 * zoom, row * 240 * zoom)
                theirs = np.asarray(reference.read_region(location, k, (w, h)))[:, :, :3]
                assert np.array_equal(pixels[:h, :w], theirs), f"{name} differs from OpenSlide"


@pytest.mark.parametrize("suffix", [".svs", ".tif"])
def test_scanner_directory_to_tiff(tmp_path: Path, suffix: str) -> None:
    """Overlapping scanner blocks have nothing to copy: composed, re-encoded, and OpenSlide agrees."""
    scan = write_scanner_slide(tmp_path / "scan", missing=None, planes=())
    dst = tmp_path / f"scan{suffix}"
    report = convert(scan.path, dst)
    assert report.levels[0].method == "reencode"
    assert psnr(_openslide_level(dst, 0), scan.expected) >= 38


def test_real_aperio_file_round_trips(openslide_data: Path, tmp_path: Path) -> None:
    """OpenSlide's small.svs (a real ImageScope export: 64-px tiles over a 16-px image) is copied."""
    src = openslide_data / "small.svs"
    report = convert(src, tmp_path / "small", to="cws")
    assert report.levels[0].method == "copy" and report.levels[0].copied_tiles == 1
    assert np.array_equal(compose_level(tmp_path / "small" / "FinalScan.ini"), _openslide_level(src, 0))
    with open_slide(tmp_path / "small") as slide:
        assert slide.mpp == (0.499, 0.499) and slide.magnification == 20


def test_cws_to_cws_copies_every_block(copied_cws: tuple[Path, list[int]], tmp_path: Path) -> None:
    directory, _ = copied_cws
    report = convert(directory, tmp_path / "again", to="cws")
    assert [level.method for level in report.levels] == ["copy", "copy", "copy"]
    for name in ("Da0.jpg", "Da349.jpg", "L1Da3.jpg", "L2Da2.jpg"):
        assert (tmp_path / "again" / name).read_bytes() == (directory / name).read_bytes()
    assert (tmp_path / "again" / "FinalScan.ini").read_text() == (directory / "FinalScan.ini").read_text().replace(
        "tWebSlideTitle=wide.svs", "tWebSlideTitle=wide"
    )


def test_companions_come_from_the_smallest_level_that_holds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 9000 x 2200 slide: Ss1 is 563 x 138 (1/16, rounded up) and the source's 1/16 level is one
    pixel short (562 x 137); Ss1 is made from that level (its last row and column repeated), not
    by decoding the 1/4 level again, and the thumbnail (1024 px) from the 1/4 level; both match
    those levels as tifffile reads them. The 1/4 level is twice the thumbnail: its JPEG tiles are
    decoded at half scale (DCT scaling), each once."""
    src = write_synthetic_slide(tmp_path / "s.svs", width=9000, height=2200)
    read: list[tuple[int, int]] = []
    scaled: list[tuple[tuple[int, int], int]] = []
    scaled_tile = cws_companions.scaled_tile

    def counted_scaled(level: Any, col: int, row: int, scale: int) -> Any:
        scaled.append((level.dimensions, scale))
        return scaled_tile(level, col, row, scale)

    monkeypatch.setattr(cws_companions, "scaled_tile", counted_scaled)
    with open_slide(src) as slide:
        for level in slide.levels:
            inner = level.reader.read_tile

            def counted(col: int, row: int, inner: Any = inner, size: tuple[int, int] = level.dimensions) -> Any:
                read.append(size)
                return inner(col, row)

            level.reader.read_tile = counted  # type: ignore[method-assign]
        assert [lvl.dimensions for lvl in slide.levels] == [(9000, 2200), (2250, 550), (562, 137)]
        convert(slide, tmp_path / "out", to="cws")
    assert (9000, 2200) not in read
    assert (2250, 550) not in read and scaled == [((2250, 550), 2)] * (10 * 3)  # once, at half scale
    with tifffile.TiffFile(src) as tif:
        quarter, sixteenth = (page.asarray() for page in list(tif.pages)[1:] if page.is_tiled)

    def as_written(pixels: NDArray[np.uint8]) -> NDArray[np.uint8]:  # companions are YCbCr 4:2:0 JPEG at Q90
        return codecs.decode_jpeg(codecs.encode_jpeg(np.ascontiguousarray(pixels), quality=90))

    padded = np.pad(sixteenth, ((0, 1), (0, 1), (0, 0)), mode="edge")
    stretched = np.asarray(Image.fromarray(sixteenth).resize((563, 138), Image.Resampling.BOX))
    with Image.open(tmp_path / "out" / "Ss1.jpg") as image:
        ss1 = np.asarray(image.convert("RGB"))
    assert ss1.shape == (138, 563, 3)
    assert psnr(ss1, as_written(padded)) >= 45 and psnr(ss1, as_written(stretched)) < 30  # pixels not moved
    reference = np.asarray(Image.fromarray(box_downsample(quarter, 2)).resize((1024, 250), Image.Resampling.BOX))
    with Image.open(tmp_path / "out" / "SlideThumb.jpg") as image:
        assert image.size == (1024, 250)
        assert psnr(np.asarray(image.convert("RGB")), as_written(reference)) >= 30  # resized strip by strip


def test_dct_scaled_companions_match_the_full_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The thumbnail of a 10,000 px slide from its 2,500 px level decoded at half scale by libjpeg
    is the one a full decode and a 2x2 box filter give, to within JPEG noise (and the half-scale
    path is the one taken: it fails when DCT scaling is switched off)."""
    src = write_synthetic_slide(tmp_path / "s.svs", width=10000, height=7500)
    with open_slide(src) as slide:
        size, _ = cws_companions._sizes(slide)
        level = cws_companions._source_level(slide.levels, size)
        assert level.dimensions == (2500, 1875) and cws_companions._dct_scaled(level, 2)[1] == 2
        scaled = np.concatenate([strip.copy() for strip in cws_companions._reduced(level, size)])
        monkeypatch.setattr(cws_companions, "_dct_scaled", lambda level, factor: (level, 1))
        full = np.concatenate([strip.copy() for strip in cws_companions._reduced(level, size)])
    assert scaled.shape == full.shape == (768, 1024, 3)
    assert psnr(scaled, full) >= 45
