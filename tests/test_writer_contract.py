"""The writer contract: what every writer registered in ``composite.convert.WRITERS`` must do.

A new writer (the DICOM writer of the next issue) implements :class:`composite.plan.Writer`,
is registered in ``WRITERS``, and adds its row to :data:`EXPECTED`; these tests then hold it to:
the protocol; output that reopens with the planned dimensions and downsamples; level-0 tiles
byte-copied from a JPEG source (the entropy-coded data identical) and reported so; the associated
images its container keeps; agreement of an independent reader (OpenSlide and tifffile for
TIFF-based outputs, an INI reader of the tests' own for CWS); and nothing at the destination when
the process is killed mid-write.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from composite import codecs, open_slide
from composite.convert import WRITERS, ConversionReport, TiffOptions, WriteOptions, convert, writer_for
from composite.plan import Writer

from .cws_reference import compose_level
from .readers import psnr


@dataclass(frozen=True)
class Expected:
    """What one writer's output holds: its suffix, options, associated images, independent reader."""

    to: str
    suffix: str
    options: WriteOptions
    associated: frozenset[str]
    # "openslide" (and tifffile), "tifffile", "cws-ini", "pieces" (each piece by OpenSlide),
    # "openslide-dicom" (OpenSlide opening the level-0 instance of the series)
    independent: str
    reread: bool = True  # our reader lists the associated images again (not OME-TIFF's: tifffile does)


EXPECTED: dict[str, Expected] = {
    "svs": Expected("svs", ".svs", WriteOptions(), frozenset({"thumbnail", "label", "macro"}), "openslide"),
    "tiff": Expected("tiff", ".tif", WriteOptions(), frozenset(), "openslide"),
    "ome": Expected(
        "tiff", ".ome.tif", WriteOptions(tiff=TiffOptions(ome=True)), frozenset({"label", "macro"}), "tifffile", False
    ),
    "cws": Expected("cws", "", WriteOptions(), frozenset({"thumbnail", "label", "macro"}), "cws-ini"),
    "aci": Expected("aci", ".aci", WriteOptions(min_level_size=256), frozenset(), "pieces"),
    "dicom": Expected("dicom", "", WriteOptions(), frozenset({"label", "macro"}), "openslide-dicom"),
}


def test_every_registered_writer_is_in_the_contract() -> None:
    assert {expected.to for expected in EXPECTED.values()} == set(WRITERS)
    for name in WRITERS:
        writer = writer_for(name)
        assert isinstance(writer, Writer) and writer.name == name


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def written(
    request: pytest.FixtureRequest, synthetic_svs: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Expected, Path, ConversionReport]:
    expected = EXPECTED[request.param]
    dst = tmp_path_factory.mktemp(f"out-{request.param}") / f"slide{expected.suffix}"
    report = convert(synthetic_svs, dst, to=expected.to, options=expected.options)
    return expected, dst, report


def _scan_data(jpeg: bytes) -> bytes:
    end = next(end for marker, _, end in codecs.iter_jpeg_segments(jpeg) if marker == 0xDA)
    return jpeg[end:]


def test_output_reopens_with_the_planned_levels(
    written: tuple[Expected, Path, ConversionReport], synthetic_svs: Path
) -> None:
    expected, dst, report = written
    assert report.destination == dst and report.format == expected.to
    with open_slide(synthetic_svs) as source, open_slide(dst) as out:
        assert out.dimensions == source.dimensions
        assert [level.index for level in report.levels] == list(range(len(report.levels)))
        for planned, (width, height), ds in zip(
            report.levels, out.level_dimensions, out.level_downsamples, strict=False
        ):
            assert (planned.width, planned.height) == (width, height)
            assert abs(planned.downsample - ds) <= 0.02 * ds
        assert len(out.levels) >= len(report.levels) if expected.to == "aci" else len(out.levels) == len(report.levels)


def test_level0_tiles_are_byte_copied(written: tuple[Expected, Path, ConversionReport], synthetic_svs: Path) -> None:
    expected, dst, report = written
    level0 = report.levels[0]
    assert level0.method == "copy" and level0.compression == "jpeg"
    with open_slide(synthetic_svs) as source:
        grid = source.levels[0].grid
        if expected.to != "aci":  # ACI counts the tiles of every piece
            assert level0.copied_tiles == grid.tile_count
        out = open_slide(_first_piece(dst) if expected.to == "aci" else dst)
        with out:
            for col, row in {(0, 0), (1, 1), (grid.cols - 1, 0)}:
                if expected.to == "aci" and (col, row) != (0, 0):
                    continue
                ours = out.levels[0].read_encoded_tile(col, row)
                theirs = source.levels[0].read_encoded_tile(col, row)
                assert ours is not None and theirs is not None
                assert _scan_data(ours) == _scan_data(theirs)


def _first_piece(manifest: Path) -> Path:
    pieces = manifest.with_name(manifest.stem + "_pieces")
    return sorted(pieces.glob("r*_c*"))[0]


def test_associated_images(written: tuple[Expected, Path, ConversionReport], synthetic_svs: Path) -> None:
    expected, dst, report = written
    assert set(report.associated) == expected.associated | ({"ss1"} if expected.to == "cws" else set())
    with open_slide(synthetic_svs) as source:
        sizes = {name: source.associated_images[name].shape for name in expected.associated & {"label", "macro"}}
    if not expected.reread:
        with tifffile.TiffFile(dst) as tif:
            named = {series.name: series.shape for series in tif.series}
        assert {name: named.get(name) for name in sizes} == sizes
        return
    with open_slide(dst) as out:
        assert expected.associated <= set(out.associated)
        assert {name: out.associated_images[name].shape for name in sizes} == sizes


def _ours(dst: Path, box: tuple[int, int, int, int]) -> np.ndarray:
    with open_slide(dst) as slide:
        return slide.levels[0].read_region(*box)


def test_an_independent_reader_agrees(written: tuple[Expected, Path, ConversionReport]) -> None:
    expected, dst, report = written
    box = (700, 500, 480, 360)
    x, y, w, h = box
    if expected.independent == "cws-ini":
        theirs = compose_level(dst / "FinalScan.ini")[y : y + h, x : x + w]
        assert np.array_equal(_ours(dst, box), theirs)
        return
    if expected.independent == "openslide-dicom":
        with openslide.OpenSlide(str(dst / "level-0.dcm")) as slide:
            assert slide.level_dimensions == tuple((level.width, level.height) for level in report.levels)
            theirs = np.asarray(slide.read_region((x, y), 0, (w, h)))[:, :, :3]
        assert np.array_equal(_ours(dst, box), theirs)
        return
    paths = sorted(dst.with_name(dst.stem + "_pieces").glob("r*_c*")) if expected.independent == "pieces" else [dst]
    for path in paths:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            assert series.shape[:2] == (report.levels[0].height, report.levels[0].width) or expected.to == "aci"
            level0 = series.levels[0].asarray()
        if expected.independent == "tifffile":
            assert psnr(level0[y : y + h, x : x + w], _ours(path, box)) > 40
            continue
        with openslide.OpenSlide(str(path)) as slide, open_slide(path) as ours:
            assert slide.level_dimensions == ours.level_dimensions
            size = (min(w, ours.dimensions[0]), min(h, ours.dimensions[1]))
            origin = (min(x, ours.dimensions[0] - size[0]), min(y, ours.dimensions[1] - size[1]))
            rgba = np.asarray(slide.read_region(origin, 0, size))[:, :, :3]
            assert np.abs(rgba.astype(int) - ours.read_region(origin, 0, size)).max() <= 2


KILLER = """
import os, signal, sys
from composite.convert import WriteOptions, convert
def die(stage, done, total):
    if done:
        os.kill(os.getpid(), signal.SIGKILL)
convert(sys.argv[1], sys.argv[2], to=sys.argv[3], options=WriteOptions(tile_size=(256, 256), workers=1), progress=die)
"""


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_killed_mid_write_leaves_nothing_at_the_destination(name: str, synthetic_svs: Path, tmp_path: Path) -> None:
    expected = EXPECTED[name]
    dst = tmp_path / f"slide{expected.suffix}"
    result = subprocess.run([sys.executable, "-c", KILLER, str(synthetic_svs), str(dst), expected.to], check=False)
    assert result.returncode == -signal.SIGKILL
    assert not dst.exists()
    assert all(entry.name.startswith(".") for entry in tmp_path.iterdir())  # only hidden .partial leftovers
