"""CWS reader: scanner-style directories read back as their ground truth, and bad INI files."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from composite.cli import main as cli_main
from composite.errors import CompositeError, FormatError, UnsafePathError
from composite.formats.cws import MissingBlocksWarning
from composite.registry import detect_format, open_slide

from .cws_reference import compose_level
from .cws_scanner import BLOCK_H, BLOCK_W, write_scanner_slide


def _red_pixels(pixels: np.ndarray) -> int:
    return int(((pixels[:, :, 0] > 200) & (pixels[:, :, 1] < 60) & (pixels[:, :, 2] < 60)).sum())


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.fixture(scope="module")
def scanner(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return write_scanner_slide(tmp_path_factory.mktemp("scan") / "slide", overview_ds=4)


def test_scanner_directory_reads_as_ground_truth(scanner) -> None:  # type: ignore[no-untyped-def]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        slide = open_slide(scanner.path)
    missing = [w for w in caught if issubclass(w.category, MissingBlocksWarning)]
    assert len(missing) == 1 and "Da6.jpg" in str(missing[0].message)  # one warning listing the block
    assert isinstance(missing[0].message, MissingBlocksWarning) and missing[0].message.missing == ["Da6.jpg"]
    assert slide.format == "cws"
    level0 = slide.read_region((0, 0), 0, slide.dimensions)
    # Red strips show only beside the missing block, where nothing covers them.
    assert _red_pixels(level0) == _red_pixels(scanner.expected) > 0
    assert _max_diff(level0, scanner.expected) <= 1
    # The missing block (col 1, row 1) is white where no neighbour overlaps it.
    x, y = 1 * (BLOCK_W - 16) + 32, 1 * (BLOCK_H - 16) + 32
    assert (level0[y : y + 400, x : x + 600] == 255).all()
    # Cropped edge column: beyond the 300-px JPEG, up to the nominal block edge, is white.
    assert (level0[:, 3 * (BLOCK_W - 16) + 300 :] == 255).all()
    # Overlapping blocks give a virtual grid of the nominal block size, nothing to byte-copy.
    assert (slide.levels[0].grid.tile_width, slide.levels[0].grid.tile_height) == (BLOCK_W, BLOCK_H)
    assert slide.levels[0].encoding is None and slide.levels[0].read_encoded_tile(0, 0) is None


def test_scanner_levels_planes_and_metadata(scanner) -> None:  # type: ignore[no-untyped-def]
    with pytest.warns(MissingBlocksWarning):
        slide = open_slide(scanner.path / "FinalScan.INI")  # the INI file itself also opens
    assert slide.level_count == 2 and slide.level_downsamples == (1.0, 4.0)
    level1 = slide.levels[1].read_region(0, 0, *slide.level_dimensions[1])
    assert _max_diff(level1, scanner.overview) <= 1
    assert sorted(slide.focal_planes) == ["d1", "u1"]
    for plane, expected in scanner.planes.items():
        pixels = slide.focal_planes[plane][0].read_region(0, 0, *slide.dimensions)
        assert _max_diff(pixels, expected) <= 1
    assert slide.mpp == (0.25, 0.25)  # tMPP
    assert slide.magnification == 40  # dMagnification=%MAGNIFICATION% is missing: AppMag
    assert slide.properties["aperio.Scanner"] == "TEST"
    assert slide.properties["cws.dMagnification"] == "%MAGNIFICATION%"


def test_reference_reader_agrees_on_scanner_input(scanner) -> None:  # type: ignore[no-untyped-def]
    """The independent reader must itself be right before it can judge our writer."""
    assert _max_diff(compose_level(scanner.path / "FinalScan.INI"), scanner.expected) <= 1


def test_shuffled_sections_and_level0_crop(tmp_path: Path) -> None:
    truth = write_scanner_slide(tmp_path / "s", shuffle=True, true_size=(2500, 1300), missing=None, planes=())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing missing: no warning
        slide = open_slide(truth.path)
    assert slide.dimensions == (2500, 1300)
    pixels = slide.read_region((0, 0), 0, (2500, 1300))
    assert _red_pixels(pixels) == 0, "a block further left or higher was painted on top"
    assert _max_diff(slide.read_region((0, 0), 0, (2500, 1300)), truth.expected) <= 1


def test_block_file_names_match_case_insensitively(tmp_path: Path) -> None:
    truth = write_scanner_slide(tmp_path / "s", missing=None, planes=())
    (truth.path / "Da0.jpg").rename(truth.path / "DA0.JPG")
    slide = open_slide(truth.path)
    assert _max_diff(slide.read_region((0, 0), 0, slide.dimensions), truth.expected) <= 1


def test_opening_reads_no_block(tmp_path: Path) -> None:
    truth = write_scanner_slide(tmp_path / "s", missing=None, planes=())
    for block in truth.path.glob("Da*.jpg"):
        block.write_bytes(b"not a jpeg")  # opening must not notice: it reads only INI files
    slide = open_slide(truth.path)
    assert slide.dimensions == truth.expected.shape[1::-1]
    with pytest.raises(CompositeError, match=r"Da\d+\.jpg"):
        slide.read_region((0, 0), 0, (10, 10))


def test_hundred_thousand_blocks_open_from_the_ini_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No block file exists: such a level is refused as mostly empty (docs/limits.md) unless that
    # limit is lifted, as here, to time opening from the INI alone.
    monkeypatch.setattr("composite.formats.cws.placement.MAX_EMPTY_PIXELS", 10**12)
    monkeypatch.setattr("composite.formats.cws.placement.MAX_EMPTY_CELLS", 10**6)
    lines = ["[Header]", "iImageWidth=240", "iImageHeight=240", "lXStepSize=960", "lYStepSize=960"]
    for n in range(100_000):
        col, row = n % 400, n // 400
        lines += [f"[Da{n}]", f"x={2_000_000 - 960 * col}", f"y={2_000_000 - 960 * row}", "z=0"]
    (tmp_path / "FinalScan.ini").write_text("\n".join(lines))
    with pytest.warns(MissingBlocksWarning, match="100000 block file") as record:
        slide = open_slide(tmp_path)
    assert len(record) == 1 and len(record[0].message.missing) == 100_000  # type: ignore[union-attr]
    assert "and 99990 more" in str(record[0].message)
    assert slide.dimensions == (96_000, 60_000)
    assert slide.levels[0].grid.tile_count == 100_000


def test_info_cli_on_a_cws_directory(scanner, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert cli_main(["info", str(scanner.path)]) == 0
    captured = capsys.readouterr()
    assert "[cws]" in captured.out and "2960 x 1408" in captured.out and "focal planes: d1, u1" in captured.out
    # The missing block is one warning line, like an error line, with no Python source in it.
    assert captured.err.splitlines() == [
        f"wsi-composite: warning: {scanner.path}: 1 block file(s) missing, drawn white: Da6.jpg"
    ]


def _header(**overrides: str) -> list[str]:
    keys = {"iImageWidth": "240", "iImageHeight": "240", "lXStepSize": "960", "lYStepSize": "960"}
    keys.update(overrides)
    return ["[Header]", *(f"{k}={v}" for k, v in keys.items())]


_BLOCKS = ["[Da0]", "x=10000", "y=10000", "[Da1]", "x=9040", "y=10000"]


@pytest.mark.parametrize(
    ("lines", "line", "message", "error"),
    [
        (_header(), 5, "no image blocks", FormatError),
        (
            [*_header(), "[Da0]", "x=10000", "y=10000", "[Da1]", "x=99999999999", "y=1"],
            10,
            "outside any stage",
            FormatError,
        ),
        (_header() + _BLOCKS + ["[Da2]", "x=-2000000000", "y=10000"], 12, "sane range", FormatError),
        (_header(lXStepSize="-960") + _BLOCKS, 4, "must be a positive", FormatError),
        (_header(lYStepSize="96000000000") + _BLOCKS, 5, "absurd", FormatError),
        (_header(iImageWidth="0") + _BLOCKS, 2, "not a block size", FormatError),
        ([*_header(), "[Da0]", "x=ten", "y=10000"], 7, "integer stage coordinate", FormatError),
        ([*_header(), "this line is junk", *_BLOCKS], 6, "expected '[Section]'", FormatError),
        ([*_header(), "[../escape]", "x=1", "y=1"], 6, "not a plain file name", UnsafePathError),
        ([*_header(), "[Level1]", "tIniFile=../other.ini", *_BLOCKS], 7, "not a plain file name", UnsafePathError),
    ],
)
def test_bad_ini_names_file_and_line(
    tmp_path: Path, lines: list[str], line: int, message: str, error: type[Exception]
) -> None:
    ini = tmp_path / "FinalScan.ini"
    ini.write_text("\r\n".join(lines) + "\r\n")
    with pytest.raises(error, match=re.escape(message)) as raised:
        open_slide(tmp_path)
    assert str(raised.value).startswith(f"{ini}:{line}: ")
    assert "\n" not in str(raised.value)


def test_binary_file_named_finalscan_ini(tmp_path: Path) -> None:
    ini = tmp_path / "FinalScan.ini"
    ini.write_bytes(b"[Header]\r\niImageWidth=240\r\n" + bytes(range(256)) * 4)
    assert detect_format(tmp_path).NAME == "cws"
    with pytest.raises(FormatError, match="binary data") as raised:
        open_slide(tmp_path)
    assert str(raised.value).startswith(f"{ini}:3: ")


def test_bad_ini_on_the_command_line_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "FinalScan.ini").write_text("\n".join(_header(lXStepSize="-5") + _BLOCKS))
    assert cli_main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FinalScan.ini:4:" in err[0] and "Traceback" not in err[0]
