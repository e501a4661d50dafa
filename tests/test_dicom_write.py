"""DICOM WSI output: valid (dciodvfy), read by wsidicom and OpenSlide as the source, frames copied.

Every series written here is checked by three independent readers (ours, wsidicom, OpenSlide 4)
against the source's pixels: equal on the copy path, PSNR >= 40 dB where tiles are re-encoded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import openslide
import pydicom
import pytest
import tifffile
from numpy.typing import NDArray
from wsidicom import WsiDicom

from composite import codecs, open_slide
from composite.cli import main
from composite.convert import WriteOptions, convert
from composite.formats.dicom.write.frames import use_extended_table

from .readers import psnr

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG2000 = "1.2.840.10008.1.2.4.91"


def _dciodvfy() -> str:
    path = shutil.which("dciodvfy")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("dciodvfy (Debian dicom3tools) is missing under CI")
        pytest.skip("dciodvfy is not installed (apt-get install dicom3tools; make .stamp-apt)")
    return path


def assert_valid(directory: Path) -> None:
    """dciodvfy reports no error for any instance of ``directory``."""
    tool = _dciodvfy()
    files = sorted(directory.glob("*.dcm"))
    assert files
    for path in files:
        done = subprocess.run([tool, str(path)], capture_output=True, text=True, check=False)
        errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]
        assert not errors, f"{path.name}: {errors}"
        assert "VLWholeSlideMicroscopyImage" in done.stdout + done.stderr


def _whole(path: Path, level: int, size: tuple[int, int]) -> NDArray[np.uint8]:
    with openslide.OpenSlide(str(path)) as slide:
        return np.asarray(slide.read_region((0, 0), level, size))[:, :, :3]


def _wsidicom(directory: Path, level: int, size: tuple[int, int]) -> NDArray[np.uint8]:
    with WsiDicom.open(directory) as slide:
        number = slide.levels[level].level  # wsidicom numbers levels by log2 of their downsample
        return np.asarray(slide.read_region((0, 0), number, size).convert("RGB"))


def assert_readers_agree(source: Path, directory: Path, *, min_psnr: float | None = None) -> None:
    """Ours, OpenSlide and wsidicom read ``directory`` as OpenSlide reads ``source``, level by level:
    identical (``min_psnr`` None) or at least ``min_psnr`` dB."""
    level0 = sorted(directory.glob("level-0.dcm"))[0]
    with open_slide(source) as src, open_slide(directory) as ours:
        # the written pyramid stops at 1024 px as every writer's does: its levels are the source's
        assert ours.level_dimensions == src.level_dimensions[: ours.level_count]
        for index, size in enumerate(ours.level_dimensions):
            want = _whole(source, index, size)
            for name, got in (
                ("ours", ours.read_region((0, 0), index, size)),
                ("openslide", _whole(level0, index, size)),
                ("wsidicom", _wsidicom(directory, index, size)),
            ):
                assert got.shape == want.shape, name
                if min_psnr is None:
                    assert np.array_equal(got, want), (
                        f"{name} level {index}: max diff {np.abs(got.astype(int) - want).max()}"
                    )
                else:
                    assert psnr(got, want) >= min_psnr, f"{name} level {index}: {psnr(got, want):.1f} dB"


@pytest.fixture(scope="module")
def copied(synthetic_svs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dicom") / "copy"
    convert(synthetic_svs, out, to="dicom")
    return out


def _stored_tiles(path: Path) -> tuple[list[bytes], bytes]:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        tiles = []
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
            tif.filehandle.seek(offset)
            tiles.append(tif.filehandle.read(count))
        return tiles, page.jpegtables


def test_copy_is_valid_and_every_reader_sees_the_source(synthetic_svs: Path, copied: Path) -> None:
    assert sorted(p.name for p in copied.iterdir()) == ["label.dcm", "level-0.dcm", "level-1.dcm", "overview.dcm"]
    assert_valid(copied)
    assert_readers_agree(synthetic_svs, copied)


def test_level0_frames_are_the_source_tiles(synthetic_svs: Path, copied: Path) -> None:
    tiles, tables = _stored_tiles(synthetic_svs)
    ds = pydicom.dcmread(copied / "level-0.dcm")
    assert ds.file_meta.TransferSyntaxUID == JPEG_BASELINE
    assert ds.PhotometricInterpretation == "RGB"  # Aperio's JPEG holds RGB samples
    assert ds.DimensionOrganizationType == "TILED_FULL"
    frames = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=ds.NumberOfFrames))
    assert len(frames) == len(tiles)
    for frame, tile in zip(frames, tiles, strict=True):
        expected = codecs.with_adobe_rgb(codecs.merge_jpeg_tables(tile, tables))
        assert frame.rstrip(b"\x00") == expected.rstrip(b"\x00")


def test_dicom_back_to_svs_gives_the_source_tiles(synthetic_svs: Path, copied: Path, tmp_path: Path) -> None:
    back = tmp_path / "back.svs"
    convert(copied, back)
    assert _stored_tiles(back) == _stored_tiles(synthetic_svs)


def test_header_attributes(synthetic_svs: Path, copied: Path) -> None:
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(copied.glob("*.dcm"))]
    assert len({h.StudyInstanceUID for h in headers}) == len({h.SeriesInstanceUID for h in headers}) == 1
    assert len({h.SOPInstanceUID for h in headers}) == len(headers)
    assert {h.ImageType[2] for h in headers} == {"VOLUME", "LABEL", "OVERVIEW"}
    level0 = pydicom.dcmread(copied / "level-0.dcm", stop_before_pixels=True)
    with open_slide(synthetic_svs) as src:
        mpp, power = src.mpp, src.magnification
    spacing = level0.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    assert [float(v) for v in spacing] == pytest.approx([mpp[1] / 1000, mpp[0] / 1000])
    assert float(level0.OpticalPathSequence[0].ObjectiveLensPower) == power
    assert (level0.TotalPixelMatrixColumns, level0.TotalPixelMatrixRows) == (3000, 2200)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber"):
        assert level0.get(keyword) in ("", None), f"{keyword} was invented: {level0.get(keyword)!r}"
    assert level0.LossyImageCompression == "01" and float(level0.LossyImageCompressionRatio) > 1


def test_reencoded_levels_within_40_db(synthetic_svs: Path, tmp_path: Path) -> None:
    out = tmp_path / "dcm"
    report = convert(synthetic_svs, out, to="dicom", options=WriteOptions(tile_size=(256, 256), workers=2))
    assert [level.method for level in report.levels] == ["reencode", "reencode"]
    assert_valid(out)
    assert_readers_agree(synthetic_svs, out, min_psnr=40)


def test_uncompressed_frames_are_lossless(synthetic_svs: Path, tmp_path: Path) -> None:
    out = tmp_path / "dcm"
    convert(synthetic_svs, out, to="dicom", options=WriteOptions(compression="none", tile_size=(512, 512)))
    ds = pydicom.dcmread(out / "level-0.dcm", stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert_valid(out)
    want = _whole(synthetic_svs, 0, (3000, 2200))
    assert np.array_equal(_whole(out / "level-0.dcm", 0, (3000, 2200)), want)
    assert np.array_equal(_wsidicom(out, 0, (3000, 2200)), want)


def test_ycbcr_frames(synthetic_svs: Path, tmp_path: Path) -> None:
    out = tmp_path / "dcm"
    options = WriteOptions(tile_size=(256, 256), quality=95, extra={"ycbcr": True, "drop_label": True})
    convert(synthetic_svs, out, to="dicom", options=options)
    assert pydicom.dcmread(out / "level-0.dcm", stop_before_pixels=True).PhotometricInterpretation == "YBR_FULL_422"
    assert_valid(out)
    assert_readers_agree(synthetic_svs, out, min_psnr=32)  # 4:2:0 chroma: the user traded quality for size


def test_jpeg2000_tiles_copied(synthetic_svs: Path, tmp_path: Path) -> None:
    j2k = tmp_path / "j2k.svs"
    convert(synthetic_svs, j2k, options=WriteOptions(compression="jpeg2000", quality=90))
    out = tmp_path / "dcm"
    report = convert(j2k, out, to="dicom")
    assert report.levels[0].method == "copy" and report.levels[0].copied_tiles > 0
    ds = pydicom.dcmread(out / "level-0.dcm", stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == JPEG2000
    assert_valid(out)
    assert_readers_agree(j2k, out)
    back = tmp_path / "back.svs"
    convert(out, back)
    assert _stored_tiles(back)[0] == _stored_tiles(j2k)[0]


def test_extended_offset_table(synthetic_svs: Path, tmp_path: Path) -> None:
    assert use_extended_table(200_000, 256 * 256 * 3) and not use_extended_table(1000, 256 * 256 * 3)
    out = tmp_path / "dcm"
    convert(synthetic_svs, out, to="dicom", options=WriteOptions(extra={"offset_table": "extended"}))
    ds = pydicom.dcmread(out / "level-0.dcm", stop_before_pixels=True)
    assert len(ds.ExtendedOffsetTable) == 8 * ds.NumberOfFrames
    assert_valid(out)
    assert_readers_agree(synthetic_svs, out)


def test_drop_label_and_macro_uids_and_metadata(
    synthetic_svs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = tmp_path / "meta.json"
    given = {"PatientName": "Doe^Jane", "PatientID": "P-17", "StudyDate": "20260102", "ContainerIdentifier": "S-1"}
    meta.write_text(json.dumps(given))
    out = tmp_path / "dcm"
    argv = ["convert", str(synthetic_svs), str(out), "--to", "dicom", "--drop-label", "--drop-macro", "--quiet"]
    argv += ["--study-uid", "1.2.3.4", "--series-uid", "1.2.3.4.5", "--metadata", str(meta)]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["level-0.dcm", "level-1.dcm"]
    for path in out.iterdir():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == ("1.2.3.4", "1.2.3.4.5")
        assert {k: str(ds.get(k)) for k in given} == given
    assert_valid(out)
    capsys.readouterr()
    meta.write_text(json.dumps({"PatientNmae": "x"}))
    assert main([*argv[:5], "--metadata", str(meta), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "PatientNmae" in err[0]
    meta.write_text(json.dumps({"StudyDate": "2026-01-02"}))
    assert main([*argv[:5], "--metadata", str(meta), "--overwrite"]) == 2
    assert "StudyDate" in capsys.readouterr().err
    assert main([*argv[:5], "--study-uid", "1.02.x", "--overwrite"]) == 2
    assert "1.02.x" in capsys.readouterr().err


def test_no_lzw_in_dicom(synthetic_svs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dcm"
    assert main(["convert", str(synthetic_svs), str(out), "--to", "dicom", "--compression", "lzw", "--quiet"]) == 2
    assert "lzw" in capsys.readouterr().err and not out.exists()


def test_batch_writes_a_series_per_slide(synthetic_svs: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    sources = tmp_path / "in"
    sources.mkdir()
    shutil.copy(synthetic_svs, sources / "a.svs")
    out = tmp_path / "out"
    assert main(["batch", str(sources), str(out), "--to", "dicom", "--processes", "1", "--quiet"]) == 0
    assert sorted(p.name for p in (out / "a").iterdir()) == ["label.dcm", "level-0.dcm", "level-1.dcm", "overview.dcm"]
    assert_valid(out / "a")
    assert main(["batch", str(sources), str(out), "--to", "dicom", "--series-uid", "1.2.3", "--quiet"]) == 2
