"""DICOM WSI reading: OpenSlide's test series and series built with pydicom, checked against OpenSlide."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import openslide
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import generate_uid

from composite import open_slide
from composite.convert import convert
from composite.errors import CompositeError, FormatError, TileReadError, UnsupportedFormatError
from composite.synthetic import region
from tests.cli import CLI

from .readers import assert_matches_openslide
from .test_dicom_files import write_wsi_instance


@pytest.fixture
def boxes(openslide_data: Path, tmp_path: Path) -> Path:
    """OpenSlide's DICOM test series (VOLUME + THUMBNAIL) copied into a directory of its own."""
    for name in ("boxes_0.dcm", "boxes_1.dcm"):
        shutil.copy(openslide_data / name, tmp_path / name)
    return tmp_path


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-instance series: sparse JPEG level 0 with two tiles missing, J2K level 1, raw label."""
    directory = tmp_path_factory.mktemp("series")
    uid = generate_uid()
    write_wsi_instance(
        directory / "l0.dcm", region(0, 0, 300, 200), series_uid=uid, sparse=True, missing=[(1, 1), (3, 0)]
    )
    low = region(0, 0, 75, 50, downsample=4)
    write_wsi_instance(directory / "l1.dcm", low, series_uid=uid, codec="jpeg2000")
    write_wsi_instance(directory / "label.dcm", low[:40, :40], series_uid=uid, kind="LABEL", codec="none", tile=40)
    return directory


def test_openslide_dicom_opens_and_equals_openslide(boxes: Path) -> None:
    for path in (boxes / "boxes_0.dcm", boxes / "boxes_1.dcm", boxes):
        with open_slide(path) as slide, openslide.OpenSlide(boxes / "boxes_0.dcm") as theirs:
            assert slide.format == "dicom"
            assert slide.level_dimensions == theirs.level_dimensions
            assert slide.mpp == pytest.approx(
                (float(theirs.properties["openslide.mpp-x"]), float(theirs.properties["openslide.mpp-y"]))
            )
            assert slide.magnification == float(theirs.properties["openslide.objective-power"])
            assert set(slide.associated) == set(theirs.associated_images) == {"thumbnail"}
            thumb = np.asarray(theirs.associated_images["thumbnail"])[:, :, :3]
            assert np.array_equal(slide.associated_images["thumbnail"], thumb)
            ours = slide.read_region((0, 0), 0, (16, 16))
            assert np.array_equal(ours, np.asarray(theirs.read_region((0, 0), 0, (16, 16)))[:, :, :3])
            assert slide.levels[0].encoding is not None and slide.levels[0].encoding.compression == "jpeg"
            assert slide.levels[0].encoding.rgb  # PhotometricInterpretation RGB with an Adobe marker
            assert slide.properties["dicom.Modality"] == "SM"


def test_open_reads_headers_only(boxes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    real = os.pread

    def counting(fd: int, size: int, offset: int) -> bytes:
        reads.append(size)
        return real(fd, size, offset)

    monkeypatch.setattr(os, "pread", counting)
    with open_slide(boxes / "boxes_0.dcm") as slide:
        assert reads == []  # no frame (nor the offset table) read while opening
        slide.read_region((0, 0), 0, (4, 4))
        assert reads


def test_built_series_equals_openslide(series: Path) -> None:
    with open_slide(series / "l1.dcm") as slide:
        assert slide.level_dimensions == ((300, 200), (75, 50))
        assert [lv.encoding.compression if lv.encoding else None for lv in slide.levels] == ["jpeg", "jpeg2000"]
        assert slide.mpp == pytest.approx((0.25, 0.25)) and slide.magnification == 40
        for level, size in enumerate(slide.level_dimensions):
            assert_matches_openslide(slide, (0, 0), level, size, tolerance=0)
            assert_matches_openslide(slide, (40, 32), level, (50, 40), tolerance=0)  # on both grids
        with openslide.OpenSlide(series / "l0.dcm") as theirs:
            label = np.asarray(theirs.associated_images["label"])[:, :, :3]
        assert np.array_equal(slide.associated_images["label"], label)


def test_sparse_missing_tiles_are_white_and_absent(series: Path) -> None:
    with open_slide(series) as slide:
        level = slide.levels[0]
        assert level.read_encoded_tile(1, 1) is None and level.read_encoded_tile(3, 0) is None
        assert (level.read_tile(1, 1) == 255).all()
        assert level.read_encoded_tile(0, 0) is not None
        # present tiles are the original pixels (JPEG q95)
        assert np.abs(level.read_tile(2, 2).astype(int) - region(128, 128, 64, 64)[:, :, :].astype(int)).max() < 40


def test_frames_are_the_stored_bytes(series: Path) -> None:
    ds = pydicom.dcmread(series / "l0.dcm")
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    positions = [
        (
            (int(g.PlanePositionSlideSequence[0].ColumnPositionInTotalImagePixelMatrix) - 1) // 64,
            (int(g.PlanePositionSlideSequence[0].RowPositionInTotalImagePixelMatrix) - 1) // 64,
        )
        for g in ds.PerFrameFunctionalGroupsSequence
    ]
    with open_slide(series / "l0.dcm") as slide:
        for frame, (col, row) in zip(frames, positions, strict=True):
            # fragments have even length: the pad byte after EOI is not part of the JPEG
            assert slide.levels[0].read_encoded_tile(col, row) == frame.removesuffix(b"\x00")


@pytest.mark.parametrize("has_bot", [True, False])
def test_frames_split_into_fragments(tmp_path: Path, has_bot: bool) -> None:
    original = write_wsi_instance(tmp_path / "a.dcm", region(0, 0, 128, 128), series_uid=generate_uid())
    ds = pydicom.dcmread(original)
    frames = [f.removesuffix(b"\x00") for f in generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames))]
    # two fragments per frame; without a Basic Offset Table frames are found by their SOI markers
    ds.PixelData = encapsulate(frames, fragments_per_frame=2, has_bot=has_bot)
    split = tmp_path / "split" / "a.dcm"
    split.parent.mkdir()
    ds.save_as(split)
    with open_slide(split) as slide, openslide.OpenSlide(original) as theirs:
        assert [slide.levels[0].read_encoded_tile(c, r) for r in range(2) for c in range(2)] == frames
        expected = np.asarray(theirs.read_region((0, 0), 0, (128, 128)))[:, :, :3]
        assert np.array_equal(slide.read_region((0, 0), 0, (128, 128)), expected)


def test_uncompressed_frames(tmp_path: Path) -> None:
    path = write_wsi_instance(tmp_path / "raw.dcm", region(0, 0, 100, 70), series_uid=generate_uid(), codec="none")
    with open_slide(path) as slide:
        assert np.array_equal(slide.read_region((0, 0), 0, (100, 70)), region(0, 0, 100, 70))
        assert_matches_openslide(slide, (0, 0), 0, (100, 70), tolerance=0)


def test_dicom_to_svs_copies_jpeg_frames(series: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.svs"
    report = convert(series, out)
    assert report.levels[0].method == "copy" and report.levels[0].copied_tiles == 18  # 20 tiles, 2 missing
    with tifffile.TiffFile(out) as tif, open_slide(series) as source:
        page = tif.pages[0]
        for index, (col, row) in enumerate((c, r) for r in range(4) for c in range(5)):
            stored = source.levels[0].read_encoded_tile(col, row)
            if stored is not None:  # the tile's entropy-coded data is the DICOM frame's
                tif.filehandle.seek(page.dataoffsets[index])
                tile = tif.filehandle.read(page.databytecounts[index])
                assert stored[stored.index(b"\xff\xda") :].rstrip(b"\x00") == tile[tile.index(b"\xff\xda") :]
    with openslide.OpenSlide(out) as svs, openslide.OpenSlide(series / "l0.dcm") as dicom:
        theirs = np.asarray(dicom.read_region((0, 0), 0, (300, 200)))
        ours = np.asarray(svs.read_region((0, 0), 0, (300, 200)))
        inside = theirs[:, :, 3] == 255
        assert np.array_equal(ours[:, :, :3][inside], theirs[:, :, :3][inside])
        assert (ours[:, :, :3][~inside] == 255).all()


def test_directory_rules(series: Path, tmp_path: Path) -> None:
    other = tmp_path / "two"
    other.mkdir()
    shutil.copy(series / "l0.dcm", other / "a.dcm")
    write_wsi_instance(other / "b.dcm", region(0, 0, 64, 64), series_uid=generate_uid())
    with pytest.raises(FormatError, match="2 whole-slide series"):
        open_slide(other)
    with open_slide(other / "b.dcm") as slide:  # a file picks its own series
        assert slide.dimensions == (64, 64)


def test_bad_dicom_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f" + b"x" * 20)
    result = subprocess.run([*CLI, "info", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "bad.dcm" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_damaged_frame_is_a_tile_error(series: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.dcm"
    data = (series / "l0.dcm").read_bytes()
    path.write_bytes(data[: len(data) - 3000])  # the last frames and the sequence end are gone
    with open_slide(path) as slide, pytest.raises(TileReadError, match=r"cut\.dcm"):
        slide.read_region((0, 0), 0, (300, 200))


def test_without_pydicom_says_how_to_install(boxes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(UnsupportedFormatError, match=r"pip install composite\[dicom\]") as err:
        open_slide(boxes / "boxes_0.dcm")
    assert isinstance(err.value, CompositeError)


def test_exports_of_a_dicom_series_match_openslide(series: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [*CLI, "export", str(series / "l0.dcm"), str(tmp_path), "--associated", "--levels", "0,1", "--format", "png"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    with openslide.OpenSlide(series / "l0.dcm") as theirs:
        for level, size in enumerate(theirs.level_dimensions):
            rgba = np.asarray(theirs.read_region((0, 0), level, size))
            inside = rgba[:, :, 3] == 255
            with Image.open(tmp_path / f"level{level}.png") as image:
                ours = np.asarray(image.convert("RGB"))
            assert np.array_equal(ours[inside], rgba[:, :, :3][inside])
            assert (ours[~inside] == 255).all()  # missing sparse tiles are white
        with Image.open(tmp_path / "label.png") as image:
            assert np.array_equal(
                np.asarray(image.convert("RGB")), np.asarray(theirs.associated_images["label"])[:, :, :3]
            )
