"""The reader contract: what every format composite reads must do (a new reader adds a source here).

Each source is written by a tool other than our writers (tifffile, Pillow, pydicom, the test
helpers), so a reader is never checked against output of our own code. Per reader: the format
module has the :class:`composite.registry.Reader` shape; levels have consistent dimensions and
downsamples; ``read_region`` equals the stored tiles decoded independently; associated images
decode to their declared size; damaged input gives a :class:`CompositeError`, never another
exception; and where OpenSlide reads the format, its pixels agree.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openslide
import pytest
from PIL import Image

from composite import codecs, detect_format, open_slide
from composite.errors import CompositeError
from composite.model import Slide
from composite.registry import FORMAT_MODULES, Reader, format_modules
from composite.synthetic import region
from tests.aci_support import pattern, write_tiff
from tests.cws_fixtures import write_levels_cws
from tests.test_dicom_files import write_wsi_instance

from .readers import assert_matches_openslide


@dataclass(frozen=True)
class Source:
    """A slide on disk, the reader that must open it, and how to damage a copy of it."""

    path: Path
    reader: str
    damaged: Path  # a copy with bytes cut short or garbled (a file, or one block/component of a directory)
    openslide: bool = False
    format: str = ""  # Slide.format when it is not the reader's name (an SVS read by the TIFF reader)


def _truncated(path: Path, out: Path, keep: float = 0.6) -> Path:
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * keep)])
    return out


def _svs(tmp: Path, synthetic_svs: Path) -> Source:
    return Source(synthetic_svs, "tiff", _truncated(synthetic_svs, tmp / "cut.svs"), openslide=True, format="svs")


def _tiff(tmp: Path, synthetic_tiff: Path) -> Source:
    return Source(synthetic_tiff, "tiff", _truncated(synthetic_tiff, tmp / "cut.tif"), openslide=True)


def _cws(tmp: Path, synthetic_svs: Path) -> Source:
    good = write_levels_cws(synthetic_svs, tmp / "cws")
    bad = tmp / "cws-damaged"
    shutil.copytree(good, bad)
    block = bad / "Da5.jpg"
    block.write_bytes(block.read_bytes()[:200])
    return Source(good, "cws", bad)


def _aci(tmp: Path, synthetic_svs: Path) -> Source:
    for directory in (tmp / "aci", tmp / "aci-damaged"):
        directory.mkdir()
        for i in range(3):
            write_tiff(directory / f"c{i}.tif", pattern(500, 600, i), downsamples=(1, 4), tile=128)
        (directory / "grid.aci").write_text("c0.tif 0 0\nc1.tif 0 600\nc2.tif 500 0\n")
    _truncated(tmp / "aci" / "c1.tif", tmp / "aci-damaged" / "c1.tif", keep=0.5)
    return Source(tmp / "aci" / "grid.aci", "aci", tmp / "aci-damaged" / "grid.aci")


def _image(tmp: Path, synthetic_svs: Path) -> Source:
    path = tmp / "picture.jpg"
    Image.fromarray(region(0, 0, 700, 500)).save(path, quality=92)
    damaged = tmp / "garbled.jpg"  # libjpeg decodes a cut-short JPEG (grey rest): garble its headers
    damaged.write_bytes(path.read_bytes()[:2] + bytes(range(256)) * 4)
    return Source(path, "image", damaged)


def _dicom(tmp: Path, synthetic_svs: Path) -> Source:
    from pydicom.uid import generate_uid

    for name in ("dicom", "dicom-damaged"):
        directory = tmp / name
        directory.mkdir()
        uid = generate_uid()
        write_wsi_instance(directory / "l0.dcm", region(0, 0, 300, 200), series_uid=uid)
        write_wsi_instance(directory / "l1.dcm", region(0, 0, 75, 50, downsample=4), series_uid=uid)
    _truncated(tmp / "dicom" / "l0.dcm", tmp / "dicom-damaged" / "l0.dcm", keep=0.7)
    return Source(tmp / "dicom" / "l0.dcm", "dicom", tmp / "dicom-damaged" / "l0.dcm", openslide=True)


SOURCES: dict[str, Callable[[Path, Path], Source]] = {
    "svs": _svs,
    "tiff": _tiff,
    "cws": _cws,
    "aci": _aci,
    "image": _image,
    "dicom": _dicom,
}


@pytest.fixture(params=sorted(SOURCES))
def source(request: pytest.FixtureRequest, tmp_path: Path, synthetic_svs: Path, synthetic_tiff: Path) -> Source:
    name = request.param
    made = SOURCES[name](tmp_path, synthetic_tiff if name == "tiff" else synthetic_svs)
    return made


def test_every_registered_reader_has_a_source() -> None:
    names = {module.NAME for module in format_modules()}
    assert names == {"dicom", "tiff", "cws", "aci", "image"} and len(FORMAT_MODULES) == len(names)
    assert {maker.__name__.lstrip("_") for maker in SOURCES.values()} >= {"cws", "aci", "image", "dicom"}


def test_the_reader_has_the_protocol_shape(source: Source) -> None:
    module = detect_format(source.path)
    assert isinstance(module, Reader)
    assert source.reader == module.NAME and module.sniff(source.path)


def test_dimensions_and_downsamples(source: Source) -> None:
    with open_slide(source.path) as slide:
        assert slide.format == (source.format or source.reader)
        width, height = slide.dimensions
        assert slide.level_downsamples[0] == 1.0
        assert list(slide.level_downsamples) == sorted(slide.level_downsamples)
        for (w, h), ds in zip(slide.level_dimensions, slide.level_downsamples, strict=True):
            # within a pixel, or 1% where a format stores its own rounded level sizes
            assert abs(w - width / ds) <= 1 + w / 100 and abs(h - height / ds) <= 1 + h / 100
        assert slide.read_region((0, 0), slide.level_count - 1, (5, 5)).shape == (5, 5, 3)


def _decoded_independently(slide: Slide, level: int, col: int, row: int) -> np.ndarray | None:
    """A stored JPEG tile decoded by Pillow (made standalone, with the Adobe marker RGB needs)."""
    lvl = slide.levels[level]
    encoding = lvl.encoding
    data = lvl.read_encoded_tile(col, row)
    if encoding is None or data is None or encoding.compression != "jpeg":
        return None
    jpeg = codecs.standalone_jpeg(data, tables=encoding.jpeg_tables, rgb=encoding.rgb)
    with Image.open(__import__("io").BytesIO(jpeg)) as image:
        return np.asarray(image.convert("RGB"))


def test_read_region_equals_the_stored_tiles(source: Source) -> None:
    checked = 0
    with open_slide(source.path) as slide:
        for index, level in enumerate(slide.levels):
            grid = level.grid
            for col, row in {(0, 0), (grid.cols - 1, grid.rows - 1)}:
                tile = _decoded_independently(slide, index, col, row)
                if tile is None:
                    continue
                box = grid.tile_box(col, row)
                ours = level.read_region(box.x, box.y, box.width, box.height)
                theirs = tile[: box.height, : box.width]
                assert ours.shape == theirs.shape
                assert np.abs(ours.astype(int) - theirs).max() <= 2, (index, col, row)
                checked += 1
    if source.reader in ("tiff", "cws", "dicom"):
        assert checked > 0  # these sources store JPEG tiles: the check must have run


def test_associated_images_decode_to_their_size(source: Source) -> None:
    with open_slide(source.path) as slide:
        for name, image in slide.associated.items():
            pixels = slide.associated_images[name]
            assert pixels.shape == (image.height, image.width, 3) and pixels.dtype == np.uint8
        if source.path.suffix == ".svs":
            assert {"thumbnail", "label", "macro"} <= set(slide.associated)


def _read_everything(path: Path) -> None:
    with open_slide(path) as slide:
        for level in slide.levels:
            level.read_region(0, 0, level.width, level.height)
        for name in slide.associated:
            slide.associated_images[name]


def test_damaged_input_is_a_clean_error(source: Source) -> None:
    _read_everything(source.path)  # the intact source reads whole
    with pytest.raises(CompositeError):
        _read_everything(source.damaged)


def test_openslide_agrees(source: Source) -> None:
    if not source.openslide:
        pytest.skip(f"OpenSlide does not read {source.reader} sources of this kind")
    with open_slide(source.path) as slide, openslide.OpenSlide(str(source.path)) as theirs:
        assert slide.level_dimensions[0] == theirs.level_dimensions[0]
        width, height = slide.dimensions
        assert_matches_openslide(slide, (width // 3, height // 3), 0, (200, 150))
